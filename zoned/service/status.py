"""The status document (``zoned status --json``), its text form, and the ``STATUS=`` line.

``build(engine, info)`` turns the engine's state into plain JSON-able data; ``render``
turns that data into the aligned text operators read. The client renders, so ``--json``
and text always show the same facts. Times in the document are Unix times (the engine's
clock is converted with ``info.wall_now - (engine_now - t)``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zoned.cli.render import table
from zoned.engine import Engine, LogRecord
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import OwnerKind, ZoneMap
from zoned.policy.placement import usable

SCHEMA = 1


@dataclass(frozen=True)
class DaemonInfo:
    """What the daemon knows about itself, for the header."""

    pid: int
    started_wall: float
    backend: str
    config: str
    socket: str
    dry_run: bool = False
    juggle: bool = True
    warnings: tuple[str, ...] = field(default=())
    wakeups: int = 0  # loop rounds (epoll returns) since start
    steps: int = 0  # engine steps since start
    speed: float = 1.0  # engine seconds per real second (a paced simulation may be faster)
    reload_pending: bool = False


def summary_line(zonemap: ZoneMap, containers: int, pending: int = 0) -> str:
    """``8 nodes: 5 lent, 1 shared, 1 reserved, 1 free; 4 containers`` (the STATUS= line).

    Kinds with no node are left out; hand-overs in flight are added when there are any.
    """
    kinds = Counter(a.owner.kind for a in zonemap)
    parts = [
        f"{kinds[k]} {word}"
        for k, word in (
            (OwnerKind.CONTAINER, "lent"),
            (OwnerKind.SHARED, "shared"),
            (OwnerKind.RESERVED, "reserved"),
            (OwnerKind.FREE, "free"),
            (OwnerKind.MEMORYLESS, "memoryless"),
        )
        if kinds[k]
    ]
    n = len(zonemap.assignments)
    line = f"{n} node{'s' if n != 1 else ''}: {', '.join(parts) or 'none'}; "
    line += f"{containers} container{'s' if containers != 1 else ''}"
    if pending:
        line += f"; {pending} hand-over{'s' if pending != 1 else ''} in flight"
    return line


def _record(rec: LogRecord, wall: float) -> dict[str, Any]:
    return {
        "at": round(wall, 3),
        "kind": rec.kind,
        "what": rec.what,
        "reason": rec.reason,
        "outcome": rec.outcome,
    }


def record_doc(
    rec: LogRecord, engine_now: float, wall_now: float, speed: float = 1.0
) -> dict[str, Any]:
    """One decision as JSON data (for ``zoned events`` too). ``speed``: engine seconds per
    real second (the paced simulator may run faster than real time)."""
    return _record(rec, wall_now - (engine_now - rec.at) / speed)


def build(
    engine: Engine,
    info: DaemonInfo,
    *,
    decisions: int = 15,
    wall_now: float | None = None,
) -> dict[str, Any]:
    """The whole status as plain data; see the module docstring."""
    wall = time.time() if wall_now is None else wall_now
    now = engine.backend.now()

    def w(t: float) -> float:
        return round(wall - (now - t) / info.speed, 3)

    snap = engine.last_snapshot
    zmap = engine.zonemap
    busy = snap.busy_nodes if snap is not None else frozenset()
    sizes = {n: v.total for n, v in snap.nodes.items()} if snap is not None else {}
    free = {n: v.free for n, v in snap.nodes.items()} if snap is not None else {}
    nodes = [
        {
            "node": a.node,
            "owner": str(a.owner),
            "kind": a.owner.kind.value,
            "since": w(a.since),
            "reason": a.reason,
            "total": sizes.get(a.node),
            "free": free.get(a.node),
            "busy": a.node in busy,
        }
        for a in zmap
    ]
    headroom = engine.decls.host.headroom_pct
    containers = []
    for d in engine.decls.containers:
        own = zmap.nodes_of(d.name)
        cap = sum(sizes.get(n, 0) for n in own)
        v = snap.containers.get(d.name) if snap is not None else None
        st = engine.stats.get(d.name)
        unrecl = v.unreclaimable if v is not None else None
        containers.append(
            {
                "name": d.name,
                "managed": d.name in engine.managed,
                "nodes": sorted(own),
                "capacity": cap,
                "usable": usable(cap, headroom),
                "current": v.current if v is not None else None,
                "anon": unrecl,
                "file": v.file if v is not None else None,
                "tripwire": v.tripwire if v is not None else None,
                "headroom_pct": (
                    round(100.0 * (cap - unrecl) / cap, 1) if cap and unrecl is not None else None
                ),
                "min": str(d.min),
                "max": str(d.max),
                "priority": d.priority,
                "shared": d.shared,
                "pending": list(v.pending) if v is not None else [],
                "oom_kills": st.oom_kills if st else 0,
                "nodes_gained": st.nodes_gained if st else 0,
                "nodes_lost": st.nodes_lost if st else 0,
            }
        )
    return {
        "schema": SCHEMA,
        "daemon": {
            "pid": info.pid,
            "started": round(info.started_wall, 3),
            "uptime_s": round(wall - info.started_wall, 1),
            "backend": info.backend,
            "config": info.config,
            "socket": info.socket,
            "dry_run": info.dry_run,
            "juggle": info.juggle,
            "warnings": list(info.warnings),
            "wakeups": info.wakeups,
            "steps": info.steps,
            "reload_pending": info.reload_pending,
        },
        "summary": summary_line(zmap, len(engine.managed), len(engine.pending())),
        "nodes": nodes,
        "containers": containers,
        "pending": list(engine.pending()),
        "decisions": [_record(r, w(r.at)) for r in engine.log[-decisions:]] if decisions else [],
        "now": round(wall, 3),
    }


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
                c["min"],
                c["max"],
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
