"""Journal logging: structured fields on the engine's decisions, plain stderr elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from zoned.model.actions import Lend, Reclaim, SetTripwire
from zoned.model.decisions import LogRecord
from zoned.service import logsetup


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_under_systemd_by_environment() -> None:
    assert logsetup.under_systemd({"JOURNAL_STREAM": "8:1234"})
    assert logsetup.under_systemd({"INVOCATION_ID": "abc"})
    assert not logsetup.under_systemd({"TERM": "xterm"})


@pytest.mark.parametrize(
    ("rec", "fields"),
    [
        (
            LogRecord(
                1.0,
                "lend",
                "lend node 3 to web",
                "web: anon over",
                "started",
                Lend(3, "web", "web: anon over"),
            ),
            {"ACTION": "lend", "CONTAINER": "web", "NODE": "3", "OUTCOME": "started"},
        ),
        (
            LogRecord(
                1.0,
                "reclaim",
                "reclaim node 4 from batch for web",
                "why",
                "done",
                Reclaim(4, "batch", "web", "why"),
            ),
            {"CONTAINER": "web", "NODE": "4", "DONOR": "batch"},
        ),
        (
            LogRecord(
                1.0,
                "tripwire",
                "tripwire of db at 1G",
                "db: cap",
                "armed",
                SetTripwire("db", 1 << 30, "db: cap"),
            ),
            {"CONTAINER": "db", "ACTION": "tripwire"},
        ),
        (
            LogRecord(1.0, "admit", "create web on node 1", "placement", "created"),
            {"CONTAINER": "web", "ACTION": "admit"},
        ),
        (
            LogRecord(1.0, "gone", "api vanished", "api: cgroup vanished", "nodes freed"),
            {"CONTAINER": "api"},
        ),
        (
            LogRecord(1.0, "note", "no action", "cache: usage 435M of 512M ...", "noted"),
            {"CONTAINER": "cache", "REASON": "cache: usage 435M of 512M ..."},
        ),
    ],
)
def test_decision_fields(rec: LogRecord, fields: dict[str, str]) -> None:
    got = logsetup.decision_fields(rec)
    assert got.items() >= fields.items()


def test_decision_fields_carry_the_code_and_what_was_measured() -> None:
    a = Reclaim(4, "batch", "web", "why")
    what = "reclaim node 4 from batch for web"
    done = LogRecord(
        1.0,
        "reclaim",
        what,
        "why",
        "done in 2.5s; 185M migrated",
        a,
        code="done",
        seconds=2.5,
        migrated=185 << 20,
        freed=0,
        left_behind=3 << 20,
    )
    got = logsetup.decision_fields(done)
    assert (
        got.items()
        >= {
            "CODE": "done",
            "SECONDS": "2.5",
            "MIGRATED_BYTES": str(185 << 20),
            "FREED_BYTES": "0",
            "LEFT_BEHIND_BYTES": str(3 << 20),
        }.items()
    )
    assert "RECLAIMED_BYTES" not in got  # not measured: no field, rather than an empty one
    started = LogRecord(1.0, "reclaim", what, "why", "started", a, code="started")
    assert logsetup.decision_fields(started)["CODE"] == "started"
    assert "SECONDS" not in logsetup.decision_fields(started)


def test_journal_handler_sends_the_fields(restore_root: None) -> None:
    rec = LogRecord(
        1.0,
        "lend",
        "lend node 3 to web",
        "web: anon over",
        "started",
        Lend(3, "web", "web: anon over"),
    )
    handler = logsetup.setup(logging.INFO, journal=True, latest=lambda: rec)
    sent: list[tuple[str, dict[str, Any]]] = []

    def send(MESSAGE: str, **kw: Any) -> None:
        sent.append((MESSAGE, kw))

    handler.send = send  # type: ignore[attr-defined]
    logging.getLogger("zoned.engine").info("%s%s: %s [%s]", "", rec.what, rec.reason, rec.outcome)
    logging.getLogger("zoned.daemon").info("ready: %s", "8 nodes")
    (msg, kw), (msg2, kw2) = sent
    assert msg == "lend node 3 to web: web: anon over [started]"
    assert (kw["CONTAINER"], kw["NODE"], kw["ACTION"]) == ("web", "3", "lend")
    assert kw["REASON"] == "web: anon over"
    assert kw["SYSLOG_IDENTIFIER"] == "zoned"
    assert msg2 == "ready: 8 nodes" and "CONTAINER" not in kw2


def test_plain_stderr_without_systemd(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logsetup.setup(logging.INFO, journal=False)
    logging.getLogger("zoned.daemon").warning("one memory node")
    err = capsys.readouterr().err
    assert err.endswith(" WARNING zoned.daemon: one memory node\n")
