"""Exit statuses: an invalid configuration exits 78 (EX_CONFIG), which the unit's
``RestartPreventExitStatus=`` keeps from a restart loop (``zoned run`` with a bad file:
tests/test_daemon.py); other zoned errors exit 1."""

from __future__ import annotations

import pytest

from zoned.cli.main import main
from zoned.errors import EX_CONFIG, ConfigError, PlacementError, ZonedError


def test_the_mapping() -> None:
    assert EX_CONFIG == 78
    assert ConfigError([]).exit_status == EX_CONFIG
    assert ZonedError("x").exit_status == 1
    assert PlacementError("x").exit_status == 1


def test_other_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    # (--fallback-poll 0 was the example; it is a usage error now: test_cli_seconds.py)
    assert main(["run", "--group", "zoned-no-such-group"]) == 1
    assert "--group zoned-no-such-group: no such group" in capsys.readouterr().err
