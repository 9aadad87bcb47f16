"""Options taking seconds (and other rates): finite, bounded, refused as usage errors (2)."""

from __future__ import annotations

import pytest

from zoned.cli.main import build_parser, main

BAD = [
    (["reclaim", "1", "--wait", "--timeout", "-5"], "--timeout", "'-5' is out of range"),
    (["reclaim", "1", "--wait", "--timeout", "inf"], "--timeout", "'inf' is not a finite"),
    (["lend", "1", "web", "--wait", "--timeout", "nan"], "--timeout", "'nan' is not a finite"),
    (["lend", "1", "web", "--timeout", "1e9"], "--timeout", "expected 0 to 86400 seconds"),
    (["oci-hook", "--wait", "-1"], "--wait", "'-1' is out of range: expected 0 to 600"),
    (["oci-hook", "--wait", "NaN"], "--wait", "'NaN' is not a finite number of seconds"),
    (["run", "--fallback-poll", "0"], "--fallback-poll", "expected more than 0 and at most"),
    (["run", "--fallback-poll=-inf"], "--fallback-poll", "'-inf' is not a finite"),
    (["run", "--sim-speed", "nan"], "--sim-speed", "'nan' is not a finite number of simulated"),
    (["run", "--sim-speed", "0"], "--sim-speed", "'0' is out of range"),
    (["status", "--watch", "infinity"], "--watch", "'infinity' is not a finite"),
    (["status", "--watch", "1e6"], "--watch", "'1e6' is out of range"),
    (["usage", "--rate", "0"], "--rate", "'0' is out of range: expected more than 0"),
    (["usage", "--rate", "fast"], "--rate", "'fast' is not a number of pages per second"),
]


@pytest.mark.parametrize(("argv", "option", "why"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_seconds_are_usage_errors_naming_option_and_value(
    argv: list[str], option: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Parsed only: nothing runs, whatever the parser lets through.
    with pytest.raises(SystemExit) as exc:
        build_parser(argv[0]).parse_args(argv)
    assert exc.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"zoned {argv[0]}: error: argument {option}: ")
    assert why in last


def test_a_negative_timeout_exits_2_before_asking_the_daemon(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reclaim", "1", "--wait", "--timeout", "-5", "--socket", "/nonexistent/s"])
    assert exc.value.code == 2  # it was 1, as if the daemon had refused
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "zoned reclaim: error: argument --timeout: '-5' is out of range: "
        "expected 0 to 86400 seconds"
    )


def test_a_long_value_is_quoted_shortened(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("status").parse_args(["status", "--watch", "x" * 5000])
    last = capsys.readouterr().err.splitlines()[-1]
    assert f"'{'x' * 40}'... is not a number of seconds" in last and len(last) < 120


@pytest.mark.parametrize(
    ("argv", "dest", "want"),
    [
        (["reclaim", "1", "--timeout", "0"], "timeout", 0.0),  # give up at once
        (["lend", "1", "web", "--timeout", "86400"], "timeout", 86400.0),
        (["oci-hook", "--wait", "0"], "wait", 0.0),  # ask once
        (["oci-hook"], "wait", 10.0),
        (["run", "--fallback-poll", "0.5", "--sim-speed", "8"], "fallback_poll", 0.5),
        (["status", "--watch"], "watch", 2.0),
        (["status", "--watch", "0.05"], "watch", 0.05),
        (["usage", "--rate", "1e6"], "rate", 1e6),
    ],
)
def test_good_values_pass(argv: list[str], dest: str, want: float) -> None:
    assert getattr(build_parser(argv[0]).parse_args(argv), dest) == want
