"""Text output for people: fitted to the terminal, one line per hand-over, ``status --watch``,
and every command's --help (description, examples, exit statuses; docs/cli.md in step)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.daemon import running
from zoned.cli.commands import _index
from zoned.cli.commands import status as status_cmd
from zoned.cli.main import build_parser, main
from zoned.cli.render import DEFAULT_WIDTH
from zoned.cli.report import ContainerSummary, format_summary
from zoned.cli.statusview import one_line_each, render, render_event
from zoned.errors import ControlError

ROOT = Path(__file__).resolve().parent.parent
LONG = "web: anon 880M of 1G capacity crossed tripwire 85%; no free node; " * 3


def rec(at: float, kind: str, what: str, outcome: str, reason: str = LONG) -> dict[str, Any]:
    return {"at": at, "kind": kind, "what": what, "reason": reason, "outcome": outcome}


def status_doc() -> dict[str, Any]:
    """A status document with long reasons, warnings and hand-overs, as the daemon sends."""
    ctr = {
        "managed": True,
        "capacity": 1 << 30,
        "current": 900 << 20,
        "anon": 880 << 20,
        "tripwire": 870 << 20,
        "headroom_pct": 14.1,
        "min": {"value": 1, "unit": "nodes"},
        "max": {"value": 3, "unit": "nodes"},
        "priority": 10,
        "oom_kills": 1,
    }
    node = {"total": 512 << 20, "free": 100 << 20, "since": 900.0, "busy": False}
    return {
        "schema": "zoned/status/v1",
        "now": 1000.0,
        "daemon": {
            "pid": 42,
            "started": 400.0,
            "uptime_s": 600.0,
            "backend": "sim (a-scenario-with-a-rather-long-name.yaml, x20)",
            "config": "/etc/zoned/zoned.yaml",
            "dry_run": False,
            "juggle": True,
            "warnings": ["the shared zone is declared but " + LONG],
            "reload_pending": False,
        },
        "summary": "6 nodes: 3 lent, 1 reserved, 2 free; 2 containers; 1 hand-over in flight",
        "nodes": [
            {**node, "node": 0, "owner": "reserved", "reason": "declared reserved"},
            {**node, "node": 5, "owner": "web", "reason": LONG, "busy": True},
        ],
        "containers": [
            {**ctr, "name": "web", "nodes": [1, 4, 5]},
            {**ctr, "name": "a-batch-container-with-a-long-name", "nodes": [2, 3]},
        ],
        "pending": ["reclaim node 4 from batch for web (evacuate: " + LONG + ")"],
        "decisions": [
            rec(980.0, "lend", "lend node 4 to batch", "started"),
            rec(980.0, "tripwire", "tripwire of batch at 870M", "armed", "batch: capacity 1G"),
            rec(980.2, "lend", "lend node 4 to batch", "done in 0.2s"),
            rec(990.0, "reclaim", "reclaim node 4 from batch for web", "started"),
            rec(
                991.0,
                "reclaim",
                "reclaim node 4 from batch for web",
                "evacuate: the write is still in the kernel after 1s; waiting for it to return",
            ),
        ],
    }


# -- the width rule ----------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 100, 132])
def test_status_fits_the_width(width: int) -> None:
    lines = render(status_doc(), width).splitlines()
    assert max(len(ln) for ln in lines) <= width
    assert "NODE  OWNER" in "\n".join(lines)


def test_status_wide_cuts_nothing() -> None:
    text = render(status_doc(), None)
    assert max(len(ln) for ln in text.splitlines()) > 200
    assert LONG in text and "..." not in text
    assert "PRIO" in text and "KIND" in text  # every column


def test_status_command_fits_columns_unless_wide(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(status_cmd, "call", lambda args, req: status_doc())
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["status"]) == 0
    fitted = capsys.readouterr().out.splitlines()
    assert max(len(ln) for ln in fitted) <= 80
    assert main(["status", "--wide"]) == 0
    assert max(len(ln) for ln in capsys.readouterr().out.splitlines()) > 80


def test_status_not_a_terminal_uses_the_default_width(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(status_cmd, "call", lambda args, req: status_doc())
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["status"]) == 0  # captured: stdout is no terminal
    assert max(len(ln) for ln in capsys.readouterr().out.splitlines()) <= DEFAULT_WIDTH


def test_event_line_fits_the_width_and_keeps_the_outcome() -> None:
    r = rec(0.0, "reclaim", "reclaim node 4 from batch for web", "done in 10.4s; 115M migrated")
    line = render_event(r, 80)
    assert len(line) <= 80 and "[done in 10.4s; 115M migrated]" in line
    assert line.endswith("...")
    whole = render_event(r)
    assert whole.endswith(LONG) and "reclaim " in whole.split("reclaim node")[0]


# -- one line per hand-over ----------------------------------------------------------------


def test_a_finished_hand_over_is_one_line_with_its_outcome() -> None:
    recs = status_doc()["decisions"][:3]
    rows = one_line_each(recs, now=1000.0)
    lends = [r for r in rows if r["what"] == "lend node 4 to batch"]
    assert len(lends) == 1
    assert lends[0]["outcome"] == "done in 0.2s" and lends[0]["at"] == 980.0


def test_a_running_hand_over_says_so_with_its_time_and_progress() -> None:
    rows = one_line_each(status_doc()["decisions"], now=1000.0)
    running_ = [r for r in rows if r["what"].startswith("reclaim node 4")]
    assert len(running_) == 1
    assert running_[0]["outcome"].startswith("running 10s (evacuate: the write is still")


def test_a_hand_over_started_again_after_its_end_is_a_new_line() -> None:
    recs = [
        rec(1.0, "lend", "lend node 4 to web", "started"),
        rec(2.0, "lend", "lend node 4 to web", "gave up after 3 attempts: EBUSY; holding off 5s"),
        rec(9.0, "lend", "lend node 4 to web", "started"),
        rec(9.5, "lend", "lend node 4 to web", "done in 0.5s"),
    ]
    outs = [r["outcome"] for r in one_line_each(recs, now=10.0)]
    assert outs == ["gave up after 3 attempts: EBUSY; holding off 5s", "done in 0.5s"]


def test_status_text_lists_each_hand_over_once_and_folds_armed_tripwires() -> None:
    text = render(status_doc(), 100)
    assert text.count("lend node 4 to batch") == 1
    assert "started" not in text
    assert "tripwire of batch" not in text
    assert "(1 tripwire setting not listed; --wide lists them)" in text
    assert "tripwire of batch at 870M" in render(status_doc(), None)


# -- status --watch ----------------------------------------------------------------------


def test_watch_on_a_pipe_prints_snapshots_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(tmp_path) as r:
        argv = ["status", "--socket", str(r.socket), "--watch", "0.05", "--count", "2"]
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # no screen control on a pipe
    snaps = out.split("\n\nzoned: up ")
    assert len(snaps) == 2
    assert out.count("zoned: up ") == 2
    assert all("NODE  OWNER" in s for s in snaps)


def test_watch_says_in_one_line_when_the_daemon_goes_away(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[Any] = [status_doc(), ControlError("no daemon at /run/zoned/control.sock\nx")]

    def call(args: argparse.Namespace, req: dict[str, Any]) -> Any:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    monkeypatch.setattr(status_cmd, "call", call)
    assert main(["status", "--watch", "0.01"]) == 1
    err = capsys.readouterr().err
    assert err == "zoned status: the daemon went away (no daemon at /run/zoned/control.sock)\n"


def test_watch_ends_with_0_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(status_cmd, "call", lambda args, req: status_doc())
    monkeypatch.setattr(status_cmd, "time", SimpleNamespace(sleep=interrupted))
    assert main(["status", "--watch"]) == 0


def test_watch_on_a_terminal_fits_its_height_keeping_the_newest_decisions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(json=False, wide=False, decisions=15)
    doc = status_doc()
    doc["decisions"] = [
        rec(900.0 + i, "admit", f"create c{i} on node 1", "created") for i in range(15)
    ]
    tall = status_cmd._show(args, doc)
    text = status_cmd._show(args, doc, rows=30)
    assert len(tall.splitlines()) >= 30 and len(text.splitlines()) < 30
    assert "create c14 on node 1" in text and "create c0 on node 1" not in text


def test_watch_refuses_a_non_positive_interval(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", "--watch", "0"])
    assert exc.value.code == 2
    assert "--watch: '0' is out of range: expected more than 0" in capsys.readouterr().err


# -- --help --------------------------------------------------------------------------------


def command_help(name: str) -> str:
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text: str = sub.choices[name].format_help()
    return text


@pytest.mark.parametrize("name", list(_index.HELP))
def test_every_command_is_described_with_examples_and_exit_statuses(name: str) -> None:
    text = command_help(name)
    assert "``" not in text
    head = text.split("options:")[0]
    assert len(head.split("\n\n")) >= 3, "a description after the usage lines"
    assert "\nexamples:\n  zoned " + name in text
    assert "\nexit status:\n" in text
    for code, _ in _index.exit_codes(name):
        assert f"\n  {code:<4} " in text
    assert "zoned." not in _index.HELP[name] and "see zoned" not in text


@pytest.mark.parametrize("action", ["warm", "where", "mount"])
def test_shared_actions_are_described_too(action: str) -> None:
    parser = build_parser("shared")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shared = sub.choices["shared"]
    inner = next(a for a in shared._actions if isinstance(a, argparse._SubParsersAction))
    text = inner.choices[action].format_help()
    assert f"\nexamples:\n  zoned shared {action}" in text
    assert "\nexit status:\n" in text and "``" not in text


def test_usage_help_line_says_what_it_shows() -> None:
    assert "ownership" not in _index.HELP["usage"]
    assert "memory" in _index.HELP["usage"]


def test_docs_list_every_commands_exit_statuses() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert _index.exit_codes_markdown() in page


# -- the demo's summary ----------------------------------------------------------------------


def test_summary_says_how_many_nodes_were_held_at_the_end_and_which() -> None:
    row = ContainerSummary("web", 1 << 30, 1 << 29, 1.0, 0, 2, 1, 0, (3, 4))
    none = ContainerSummary("batch", 0, 0, None, 0, 0, 0, 0, ())
    lines = format_summary([row, none]).splitlines()
    assert lines[0].endswith("held at end")
    assert lines[1].endswith("2 nodes (3-4)") and lines[2].endswith("0 nodes")
