"""Every reload's outcome is one log record with ``RELOAD=`` and ``REASON=`` (journal fields
under systemd), so a refused reload is findable: ``journalctl -u zoned RELOAD=refused``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import CONFIG, running
from zoned.service import logsetup, reconfigure


def outcomes(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.__dict__["RELOAD"], r.__dict__["REASON"])
        for r in caplog.records
        if "RELOAD" in r.__dict__
    ]


def test_each_reload_logs_its_result(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zoned.service")
    with running(tmp_path) as r:
        assert r.call(cmd="reload")["ok"]
        r.config.write_text(CONFIG.replace("priority: 0}", "priority: 3}"))
        assert r.call(cmd="reload")["ok"]
        r.config.write_text("containers:\n  web: {min: lots}\n")
        assert not r.call(cmd="reload")["ok"]
    got = outcomes(caplog)
    assert [k for k, _ in got] == ["unchanged", "applied", "refused"]
    assert got[1][1] == "batch: priority 0 → 3"
    assert "zoned.yaml:2" in got[2][1] and "web.min" in got[2][1], got[2]
    assert all("\n" not in why for _, why in got)


def test_the_reason_is_one_bounded_line() -> None:
    fields = reconfigure.result_fields("refused", ["a\n  b", "x" * 5000])
    assert fields["RELOAD"] == "refused"
    assert fields["REASON"].startswith("a b; xxx") and fields["REASON"].endswith("...")
    assert len(fields["REASON"]) == reconfigure.REASON_MAX


def test_the_journal_handler_sends_the_result_fields() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        handler = logsetup.setup(logging.INFO, journal=True)
        sent: list[dict[str, Any]] = []
        handler.send = lambda MESSAGE, **kw: sent.append({"MESSAGE": MESSAGE, **kw})  # type: ignore[attr-defined]
        logging.getLogger("zoned.service.reconfigure").error(
            "reload refused", extra=reconfigure.result_fields("refused", ["f:1:1: bad"])
        )
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    assert (sent[0]["RELOAD"], sent[0]["REASON"]) == ("refused", "f:1:1: bad")
    assert sent[0]["PRIORITY"] == "3"
