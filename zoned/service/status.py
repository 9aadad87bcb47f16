"""The status document (``zoned status --json``) and the ``STATUS=`` line.

``build(engine, info)`` turns the engine's state into plain JSON-able data;
``zoned.cli.statusview.render`` turns it into the text operators read. Times in the
document are Unix times (the engine's clock is converted with ``info.wall_now - (engine_now - t)``).
Both documents follow docs/json.md: schemas ``zoned/status/v1`` and ``zoned/event/v1``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoned.engine import Engine
from zoned.model.decisions import LogRecord, record_fields
from zoned.model.jsondoc import envelope
from zoned.model.zonemap import OwnerKind, ZoneMap
from zoned.policy.placement import usable


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
    kernel: Mapping[str, Any] | None = None  # zoned.kernel.capabilities.to_doc; None: simulated


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
    """A decision's fields (in the status document's ``decisions`` and each event)."""
    return {"at": round(wall, 3), **record_fields(rec)}


def record_doc(
    rec: LogRecord, engine_now: float, wall_now: float, speed: float = 1.0
) -> dict[str, Any]:
    """One decision as a ``zoned/event/v1`` document (a line of ``zoned events --json``).
    ``speed``: engine seconds per real second (the paced simulator may run faster)."""
    return {**envelope("event"), **_record(rec, wall_now - (engine_now - rec.at) / speed)}


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
    reserve = {n: v.reserve for n, v in snap.nodes.items()} if snap is not None else {}
    nodes = [
        {
            "node": a.node,
            "owner": str(a.owner),
            "kind": a.owner.kind.value,
            "since": w(a.since),
            "reason": a.reason,
            "total": sizes.get(a.node),
            "free": free.get(a.node),
            "reserve": reserve.get(a.node),
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
                "min": d.min.as_json(),
                "max": d.max.as_json(),
                "priority": d.priority,
                "shared": d.shared,
                "pending": list(v.pending) if v is not None else [],
                "oom_kills": st.oom_kills if st else 0,
                "nodes_gained": st.nodes_gained if st else 0,
                "nodes_lost": st.nodes_lost if st else 0,
            }
        )
    return {
        **envelope("status"),
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
        "kernel": dict(info.kernel) if info.kernel is not None else None,
    }
