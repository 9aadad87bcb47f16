"""The STATUS= line, the status document's text form, and one-line events."""

from __future__ import annotations

from typing import Any

from zoned.cli.statusview import render, render_event
from zoned.model.zonemap import FREE, MEMORYLESS, RESERVED, SHARED, Assignment, Owner, ZoneMap
from zoned.service.status import summary_line
from zoned.service.systemd import Notifier, watchdog_interval


def zmap(*owners: Owner) -> ZoneMap:
    return ZoneMap({i: Assignment(i, o, "r") for i, o in enumerate(owners)})


def test_summary_line_counts_each_kind() -> None:
    m = zmap(
        RESERVED,
        Owner.of("a"),
        Owner.of("a"),
        Owner.of("b"),
        Owner.of("c"),
        Owner.of("d"),
        SHARED,
        FREE,
    )
    assert summary_line(m, 4) == "8 nodes: 5 lent, 1 shared, 1 reserved, 1 free; 4 containers"
    assert summary_line(zmap(RESERVED, FREE), 1, pending=2) == (
        "2 nodes: 1 reserved, 1 free; 1 container; 2 hand-overs in flight"
    )
    assert summary_line(zmap(RESERVED, MEMORYLESS), 0) == (
        "2 nodes: 1 reserved, 1 memoryless; 0 containers"
    )


def test_notifier_sends_status_only_when_it_changes() -> None:
    sent: list[str] = []

    def send(m: str) -> bool:
        sent.append(m)
        return True

    n = Notifier(env={}, send=send)
    n.ready("a")
    assert n.status("a") is False
    assert n.status("b") is True
    n.watchdog()
    assert sent[0].startswith("READY=1\nSTATUS=a\nMAINPID=")
    assert sent[1:] == ["STATUS=b", "WATCHDOG=1"]


def test_notifier_silent_without_systemd() -> None:
    n = Notifier(env={})
    assert not n.enabled
    n.ready("x")
    assert n.sent == []


def test_watchdog_interval_is_half_and_only_for_us() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7) == 15.0
    assert watchdog_interval({}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}, 7) is None


def doc() -> dict[str, Any]:
    node = {"total": 256 << 20, "free": 100 << 20, "since": 940.0, "busy": False}
    ctr = {
        "managed": True,
        "capacity": 512 << 20,
        "current": 300 << 20,
        "anon": 200 << 20,
        "tripwire": 435 << 20,
        "headroom_pct": 60.9,
        "min": {"value": 1, "unit": "nodes"},
        "max": {"value": 3, "unit": "nodes"},
        "priority": 10,
        "oom_kills": 0,
        "pending": [],
        "file": 0,
        "usable": 0,
        "shared": False,
    }
    return {
        "schema": "zoned/status/v1",
        "now": 1000.0,
        "daemon": {
            "pid": 42,
            "started": 400.0,
            "uptime_s": 600.0,
            "backend": "cgroup v1",
            "config": "/etc/zoned/zoned.yaml",
            "socket": "s",
            "dry_run": False,
            "juggle": True,
            "warnings": [],
            "wakeups": 3,
            "reload_pending": False,
        },
        "summary": "3 nodes: 2 lent, 1 reserved; 1 container",
        "nodes": [
            {**node, "node": 0, "owner": "reserved", "kind": "reserved", "reason": "host"},
            {**node, "node": 1, "owner": "web", "kind": "container", "reason": "web: min"},
            {
                **node,
                "node": 12,
                "owner": "web",
                "kind": "container",
                "reason": "lent",
                "busy": True,
                "free": None,
            },
        ],
        "containers": [{**ctr, "name": "web", "nodes": [1, 12]}],
        "pending": ["lend node 12 to web (give)"],
        "decisions": [
            {
                "at": 990.0,
                "kind": "lend",
                "what": "lend node 12 to web",
                "reason": "web: anon crossed tripwire",
                "outcome": "started",
            }
        ],
    }


def test_render_aligns_columns_and_marks_moving_nodes() -> None:
    text = render(doc())
    lines = text.splitlines()
    assert lines[0].startswith("zoned: up 10m00s (since ") and lines[0].endswith(
        "pid 42, backend cgroup v1"
    )
    assert lines[2] == "3 nodes: 2 lent, 1 reserved; 1 container"
    head = next(ln for ln in lines if ln.startswith("NODE"))
    rows = lines[lines.index(head) + 1 : lines.index(head) + 4]
    # right-aligned columns end where their header ends
    size_end = head.index("SIZE") + len("SIZE")
    assert {r[:size_end].rstrip()[-4:] for r in rows} == {"256M"}
    assert rows[2].startswith("  12  web *")
    assert rows[2].split()[4] == "-"  # unknown free memory shows as "-"
    assert "(* moving: a hand-over is in flight)" in lines
    chead = next(ln for ln in lines if ln.startswith("CONTAINER"))
    crow = lines[lines.index(chead) + 1]
    assert crow.split() == [
        "web",
        "1,12",
        "512M",
        "300M",
        "200M",
        "435M",
        "61%",
        "1",
        "node",
        "3",
        "nodes",
        "10",
        "0",
    ]
    assert "  lend node 12 to web (give)" in lines
    assert "RECENT DECISIONS (last 1, newest last; one line per hand-over)" in lines


def test_render_says_dry_run_and_warnings() -> None:
    d = doc()
    d["daemon"] |= {"dry_run": True, "juggle": False, "warnings": ["one memory node"]}
    d["pending"], d["decisions"] = [], []
    text = render(d)
    assert "  ! DRY RUN: decides and logs, writes nothing" in text
    assert "  ! not juggling: reports usage only" in text
    assert "  ! one memory node" in text
    assert "IN FLIGHT: nothing" in text and "RECENT DECISIONS: none yet" in text


def test_render_event_one_line() -> None:
    line = render_event(
        {
            "at": 0.0,
            "kind": "lend",
            "what": "lend node 3 to web",
            "reason": "web: why",
            "outcome": "started",
        }
    )
    assert line.endswith("  lend             lend node 3 to web [started]: web: why")
    assert "\n" not in line
