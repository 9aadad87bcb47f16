"""Control requests (``status``, ``lend``, ``reclaim``, ``reload``, ``events``) on the daemon.

Each request is checked against the zone map, ``min``/``max``, what is moving and, for the
container a node is taken from, what it uses (``zoned.policy.overrides``; ``"force": true``
skips that last check only, and the reason says "forced"); a refusal is a ``ControlError``
whose text the client prints. Runs on the loop's thread.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from zoned.errors import ControlError
from zoned.model.actions import Lend, Reclaim, Return
from zoned.model.nodelist import format_nodelist
from zoned.model.zonemap import (
    FREE,
    Owner,
    OwnerKind,
)
from zoned.policy.decide import keeps_min, may_grow
from zoned.policy.overrides import check_take
from zoned.service import engines
from zoned.service import status as zstatus
from zoned.service.control import Client

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)


def handle(d: Daemon, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
    assert d.engine is not None
    cmd = req["cmd"]
    try:
        if cmd == "status":
            info = d.info()  # counters before this request's own step
            _fresh(d)
            n = req.get("decisions", 15)
            return {
                "ok": True,
                "result": zstatus.build(d.engine, info, decisions=n if isinstance(n, int) else 15),
            }
        if cmd == "lend":
            return _override(d, c, req, lend=True)
        if cmd == "reclaim":
            return _override(d, c, req, lend=False)
        if cmd == "reload":
            result = d.reload(allow_empty=req.get("allow_empty") is True)
            return {
                "ok": result["ok"],
                "result": result,
                **({} if result["ok"] else {"error": result["error"]}),
            }
        if cmd == "engine-admit":
            return engines.handle_admit(d, req)
        if cmd == "events":
            _follow(d, c, req)
            return None
    except ControlError as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": False,
        "error": f"unknown command {cmd!r} (status, lend, reclaim, reload, events)",
    }


def _fresh(d: Daemon, max_age_s: float = 1.0) -> None:
    """Step now if the last snapshot is older than ``max_age_s`` (engine seconds), so
    a status shows current usage; the step is what the fallback poll would do."""
    e = d.engine
    assert e is not None and d.backend is not None
    snap = e.last_snapshot
    if snap is None or d.backend.now() - snap.at > max_age_s:
        e.step([])
        d.steps += 1
        d._after_change()


def _follow(d: Daemon, c: Client, req: dict[str, Any]) -> None:
    assert d.engine is not None and d.backend is not None and d.server
    c.following = True
    d.server.send(c, {"ok": True, "result": {"following": True}})
    n = req.get("history", 0)
    if isinstance(n, int) and n > 0:
        now, wall = d.backend.now(), time.time()
        for rec in d.engine.log[-n:]:
            d.server.send(c, {"event": zstatus.record_doc(rec, now, wall, d._speed)})


def _override(d: Daemon, c: Client, req: dict[str, Any], *, lend: bool) -> dict[str, Any]:
    """``lend`` / ``reclaim``: check the request against the map, min and max, what is
    moving and what the holder uses, then start it (ControlError with the reason when
    refused)."""
    e = d.engine
    assert e is not None
    node = req.get("node")
    if not isinstance(node, int):
        raise ControlError('"node" must be a node number')
    if e.dry_run:
        raise ControlError("refused: zoned runs as a dry run and writes nothing")
    if not e.juggle:
        raise ControlError("refused: zoned does not juggle on this host (one memory node)")
    e.step([])  # a fresh snapshot: what is moving now, and node sizes
    d._after_change()
    zmap = e.zonemap
    if node not in zmap.assignments:
        raise ControlError(
            f"no node {node} (this machine has nodes {format_nodelist(zmap.assignments)})"
        )
    owner = zmap.owner(node)
    if owner.kind in (OwnerKind.RESERVED, OwnerKind.SHARED, OwnerKind.MEMORYLESS):
        raise ControlError(f"refused: node {node} is {owner.kind.value}; only pool nodes move")
    snap = e.last_snapshot
    assert snap is not None
    if node in snap.busy_nodes:
        raise ControlError(f"refused: node {node} is moving ({'; '.join(e.pending())})")
    force = req.get("force", False)
    if not isinstance(force, bool):
        raise ControlError('"force" must be true or false')
    who = f"operator (uid {c.cred.uid}, pid {c.cred.pid})"
    action: Lend | Reclaim | Return
    if lend:
        action = _lend_action(d, node, owner, req.get("container"), who, force=force)
    else:
        if owner.kind is not OwnerKind.CONTAINER or owner.container is None:
            raise ControlError(f"refused: node {node} is free already")
        _check_donor(d, owner.container, node)
        forced = _check_take(d, owner.container, node, force)
        action = Return(node, owner.container, f"{who}: zoned reclaim {node}{forced}")
    if "; forced: " in action.reason:
        log.warning("forced override by %s: %s (%s)", who, action.describe(), action.reason)
    else:
        log.info("override by %s: %s", who, action.describe())
    e.override(action)
    d._after_change()
    return {"ok": True, "result": {"started": action.describe(), "pending": list(e.pending())}}


def _caps(d: Daemon, nodes: frozenset[int]) -> list[int]:
    assert d.engine is not None and d.engine.last_snapshot is not None
    sizes = d.engine.last_snapshot.nodes
    return [sizes[n].usable for n in nodes if n in sizes]


def _check_busy(d: Daemon, name: str) -> None:
    assert d.engine is not None and d.engine.last_snapshot is not None
    v = d.engine.last_snapshot.containers.get(name)
    if v is not None and v.pending:
        raise ControlError(f"refused: {name} is busy ({'; '.join(v.pending)})")


def _check_donor(d: Daemon, donor: str, node: int) -> None:
    """``donor`` may give ``node`` away: it keeps its min and has nothing in flight."""
    e = d.engine
    assert e is not None
    decl = e.decls.container(donor)
    left = e.zonemap.nodes_of(donor) - {node}
    if not keeps_min(decl, _caps(d, left), e.decls.host.headroom_pct):
        raise ControlError(
            f"refused: {donor} would fall below its min ({decl.min}) without node {node}"
        )
    _check_busy(d, donor)


def _check_take(d: Daemon, holder: str, node: int, force: bool) -> str:
    """What to add to the reason of taking ``node`` from ``holder``: nothing when its
    usage allows it (``zoned.policy.overrides``); when it does not, a ControlError with
    the numbers, or with ``force`` the words of what is forced past."""
    e = d.engine
    assert e is not None and e.last_snapshot is not None
    verdict = check_take(
        e.last_snapshot, holder, e.zonemap.nodes_of(holder), node, e.decls.policy.tripwire_pct
    )
    if verdict.ok:
        return ""
    if not force:
        raise ControlError(verdict.refusal())
    return f" --force; forced: {verdict.words}"


def _lend_action(
    d: Daemon, node: int, owner: Owner, to: object, who: str, *, force: bool
) -> Lend | Reclaim:
    e = d.engine
    assert e is not None
    if not isinstance(to, str):
        raise ControlError('"container" must be a container name')
    decls = e.decls
    try:
        decl = decls.container(to)
    except KeyError:
        names = ", ".join(x.name for x in decls.containers)
        raise ControlError(f"no container {to!r} is declared ({names})") from None
    if to not in e.managed:
        raise ControlError(f"refused: {to} is not managed (its cgroup is missing)")
    if owner == Owner.of(to):
        raise ControlError(f"refused: {to} already holds node {node}")
    _check_busy(d, to)
    held = e.zonemap.nodes_of(to)
    if not may_grow(decl, _caps(d, held), decls.host.headroom_pct):
        raise ControlError(f"refused: {to} is at its max ({decl.max}) with {len(held)} node(s)")
    why = f"{who}: zoned lend {node} {to}"
    if owner == FREE:
        return Lend(node, to, why)
    assert owner.container is not None
    _check_donor(d, owner.container, node)
    why += _check_take(d, owner.container, node, force)
    return Reclaim(node, owner.container, to, why)
