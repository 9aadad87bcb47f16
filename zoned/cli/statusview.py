"""The status document as text: what ``zoned status`` and ``zoned events`` print.

The daemon sends the document (``zoned.service.status.build``); the client renders it, so
``--json`` and text always show the same facts.
"""

from __future__ import annotations

import time
from typing import Any

from zoned.cli.render import clip, table, wrap
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


# Outcomes of a hand-over that is still going (``code`` when the daemon sends one, else the
# words ``zoned.handover`` writes).
_GOING_CODES = frozenset({"started", "waiting", "retrying"})


def _going(rec: dict[str, Any]) -> bool:
    code = rec.get("code")
    if isinstance(code, str):
        return code in _GOING_CODES
    out = str(rec["outcome"])
    return out == "started" or "still in the kernel" in out or "retrying" in out


def _started(rec: dict[str, Any]) -> bool:
    code = rec.get("code")
    return code == "started" if isinstance(code, str) else rec["outcome"] == "started"


def _armed(rec: dict[str, Any]) -> bool:
    """A tripwire set where it should be: routine, and the TRIPWIRE column shows it."""
    return str(rec["kind"]) == "tripwire" and str(rec["outcome"]) == "armed"


def one_line_each(recs: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The decisions with each hand-over on one line: its start time, its reason, and its
    last outcome (``running 12s`` while it goes on). A record is a hand-over's when an
    earlier ``started`` record has its kind and words; progress records (still in the
    kernel, retrying) fold into the same line."""
    rows: list[dict[str, Any]] = []
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in recs:
        key = (str(rec["kind"]), str(rec["what"]))
        row = open_.get(key)
        if row is not None:
            row["outcome"], row["last"] = rec["outcome"], rec
            if not _going(rec):
                del open_[key]
            continue
        row = dict(rec)
        rows.append(row)
        if _started(rec):
            open_[key] = row
    for row in open_.values():
        last = row.pop("last", None)
        progress = f" ({last['outcome']})" if last is not None else ""
        row["outcome"] = f"running {_ago(now - float(row['at']))}{progress}"
    for row in rows:
        row.pop("last", None)
    return rows


def render(doc: dict[str, Any], width: int | None = None, decisions: int | None = None) -> str:
    """The status for people: header, nodes, containers, hand-overs, recent decisions.

    ``width``: no line is longer (free text wraps, table columns shrink or are left out,
    routine tripwire settings are counted, not listed); None shows everything. Each
    hand-over is one line; ``decisions`` caps how many lines the decisions take (the
    document may hold more records than that, since hand-overs fold)."""
    d = doc["daemon"]
    now = float(doc["now"])
    mode = []
    if d["dry_run"]:
        mode.append("DRY RUN: decides and logs, writes nothing")
    if not d["juggle"]:
        mode.append("not juggling: reports usage only")
    out: list[str] = []
    for line in (
        f"zoned: up {_ago(d['uptime_s'])} (since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d['started']))}), pid {d['pid']}, "
        f"backend {d['backend']}",
        f"config {d['config']}",
        doc["summary"],
        *(f"  ! {m}" for m in mode),
        *(f"  ! {wn}" for wn in d["warnings"]),
    ):
        out += wrap(line, width, indent="    ")
    if d["reload_pending"]:
        out += wrap("  ! a reload waits for the hand-overs in flight to finish", width, "    ")
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
    out.append(
        table(
            ["NODE", "OWNER", "SIZE", "FREE", "FOR", "WHY"],
            rows,
            right={0, 2, 3, 4},
            width=width,
            shrink=[5, 1],
        )
    )
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
            width=width,
            shrink=[0, 1],
            optional=[9, 7, 8, 5, 3],
        )
    )
    out += wrap(
        "(USED: all the memcg holds; ANON: what cannot be dropped; HEADROOM: capacity "
        "not taken by ANON)",
        width,
    )
    out.append("")
    if doc["pending"]:
        out.append("IN FLIGHT")
        for p in doc["pending"]:
            out += wrap(f"  {p}", width, "  ")
    else:
        out.append("IN FLIGHT: nothing")
    out.append("")
    out += _decisions(doc["decisions"], now, width, decisions)
    return "\n".join(clip(line, width) for line in "\n".join(out).splitlines())


def _decisions(
    recs: list[dict[str, Any]], now: float, width: int | None, limit: int | None
) -> list[str]:
    rows = one_line_each(recs, now)
    hidden = 0
    if width is not None:
        hidden = sum(1 for r in rows if _armed(r))
        rows = [r for r in rows if not _armed(r)]
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    if not rows:
        return ["RECENT DECISIONS: none yet"] if not hidden else [_hidden(hidden)]
    out = [f"RECENT DECISIONS (last {len(rows)}, newest last; one line per hand-over)"]
    if width is None:
        out.append(
            table(
                ["TIME", "KIND", "WHAT", "OUTCOME", "REASON"],
                [[_clock(r["at"]), r["kind"], r["what"], r["outcome"], r["reason"]] for r in rows],
            )
        )
    else:
        # KIND is left out: WHAT starts with the same verb ("lend node 3 to web").
        out.append(
            table(
                ["TIME", "WHAT", "OUTCOME", "REASON"],
                [[_clock(r["at"]), r["what"], r["outcome"], r["reason"]] for r in rows],
                width=width,
                shrink=[3, 2],
                optional=[3],
                floor=20,
            )
        )
    if hidden:
        out.append(_hidden(hidden))
    return out


def _hidden(n: int) -> str:
    return f"({n} tripwire setting{'s' if n != 1 else ''} not listed; --wide lists them)"


def render_event(rec: dict[str, Any], width: int | None = None) -> str:
    """One decision as one line (``zoned events``), at most ``width`` characters: time,
    what, outcome, then the reason (cut first). ``width`` None: the whole line with the
    decision's kind."""
    if width is None:
        return (
            f"{_clock(rec['at'])}  {rec['kind']:<16} {rec['what']} [{rec['outcome']}]: "
            f"{rec['reason']}"
        )
    return clip(f"{_clock(rec['at'])}  {rec['what']} [{rec['outcome']}]: {rec['reason']}", width)
