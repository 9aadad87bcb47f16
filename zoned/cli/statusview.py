"""The status document as text: what ``zoned status`` and ``zoned events`` print.

The daemon sends the document (``zoned.service.status.build``); the client renders it, so
``--json`` and text always show the same facts.
"""

from __future__ import annotations

import time
from typing import Any

from zoned.cli.render import table
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size

# -- text --------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _size(v: Any) -> str:
    return format_size(int(v)) if isinstance(v, int) else "-"


def _amount(a: dict[str, Any]) -> str:
    """``{"value": 1, "unit": "nodes"}`` as ``1 node`` (a min or max, as declared; the
    client imports no zoned.config to say it)."""
    n = int(a["value"])
    if a["unit"] == "nodes":
        return f"{n} node" + ("" if n == 1 else "s")
    return format_size(n)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def render(doc: dict[str, Any]) -> str:
    """The status for people: header, nodes, containers, hand-overs, recent decisions."""
    d = doc["daemon"]
    now = float(doc["now"])
    mode = []
    if d["dry_run"]:
        mode.append("DRY RUN: decides and logs, writes nothing")
    if not d["juggle"]:
        mode.append("not juggling: reports usage only")
    out = [
        f"zoned: up {_ago(d['uptime_s'])} (since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d['started']))}), pid {d['pid']}, "
        f"backend {d['backend']}",
        f"config {d['config']}",
        doc["summary"],
    ]
    out += [f"  ! {m}" for m in mode]
    out += [f"  ! {wn}" for wn in d["warnings"]]
    if d["reload_pending"]:
        out.append("  ! a reload waits for the hand-overs in flight to finish")
    out.append("")
    rows = []
    for n in doc["nodes"]:
        owner = n["owner"] + (" *" if n["busy"] else "")
        rows.append(
            [
                str(n["node"]),
                owner,
                _size(n["total"]),
                _size(n["free"]),
                _ago(now - n["since"]),
                n["reason"],
            ]
        )
    out.append(table(["NODE", "OWNER", "SIZE", "FREE", "FOR", "WHY"], rows, right={0, 2, 3, 4}))
    if any(n["busy"] for n in doc["nodes"]):
        out.append("(* moving: a hand-over is in flight)")
    out.append("")
    rows = []
    for c in doc["containers"]:
        name = c["name"] if c["managed"] else f"{c['name']} (not managed)"
        hr = c["headroom_pct"]
        rows.append(
            [
                name,
                format_nodelist(c["nodes"]) or "-",
                _size(c["capacity"]),
                _size(c["current"]),
                _size(c["anon"]),
                _size(c["tripwire"]),
                f"{hr:.0f}%" if hr is not None else "-",
                _amount(c["min"]),
                _amount(c["max"]),
                str(c["priority"]),
                str(c["oom_kills"]),
            ]
        )
    out.append(
        table(
            [
                "CONTAINER",
                "NODES",
                "CAPACITY",
                "USED",
                "ANON",
                "TRIPWIRE",
                "HEADROOM",
                "MIN",
                "MAX",
                "PRIO",
                "OOM",
            ],
            rows,
            right={2, 3, 4, 5, 6, 9, 10},
        )
    )
    out.append(
        "(USED: all the memcg holds; ANON: what cannot be dropped; HEADROOM: capacity "
        "not taken by ANON)"
    )
    out.append("")
    if doc["pending"]:
        out.append("IN FLIGHT")
        out += [f"  {p}" for p in doc["pending"]]
    else:
        out.append("IN FLIGHT: nothing")
    out.append("")
    recs = doc["decisions"]
    if recs:
        out.append(f"RECENT DECISIONS (last {len(recs)}, newest last)")
        out.append(
            table(
                ["TIME", "KIND", "WHAT", "OUTCOME", "REASON"],
                [[_clock(r["at"]), r["kind"], r["what"], r["outcome"], r["reason"]] for r in recs],
            )
        )
    else:
        out.append("RECENT DECISIONS: none yet")
    return "\n".join(out)


def render_event(rec: dict[str, Any]) -> str:
    """One decision as one line (``zoned events``)."""
    return (
        f"{_clock(rec['at'])}  {rec['kind']:<16} {rec['what']}: {rec['reason']} [{rec['outcome']}]"
    )
