"""Reload: re-read the configuration and apply it to the running daemon as a difference.

An invalid file, one that cannot be read at all (any error while loading it is caught: a
reload never ends the daemon), a file that declares no containers while some are running
(unless ``allow_empty``: it would release every one of them) or a change that needs a
restart is refused (the running configuration is kept); a valid one waits while hand-overs
are in flight, then frees the nodes of removed containers, places added ones on free nodes
and lends to containers whose ``min`` rose.

Every reload ends in one log line whose record carries ``RELOAD=`` (``applied``,
``unchanged``, ``deferred`` or ``refused``) and ``REASON=`` (the changes, or the problems),
journal fields under systemd: ``journalctl -u zoned RELOAD=refused``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from zoned.config import load as zconfig
from zoned.config.decl import Declarations
from zoned.config.diff import config_diff
from zoned.engine import Engine
from zoned.errors import ConfigError, PlacementError, ZonedError
from zoned.model.actions import Lend
from zoned.model.decisions import LogRecord
from zoned.model.zonemap import (
    FREE,
    Assignment,
    OwnerKind,
    Topology,
)
from zoned.policy.decide import keeps_min
from zoned.policy.placement import place
from zoned.service import engines, sharedzone, sidecars

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)


EMPTY_REFUSED = (
    "{file} declares no containers: applying it would release every container"
    " (reload with zoned reload --allow-empty to do that)"
)


def reload(d: Daemon, allow_empty: bool = False) -> dict[str, Any]:
    """Re-read the configuration and apply it as a difference; see the module doc.

    Returns ``{"ok", "changes" | "error", "deferred"}``; never raises for a bad file.
    """
    e, topo = d.engine, d.topology
    assert e is not None and topo is not None and d.backend is not None
    if d.opts.config is None:
        return {"ok": False, "error": "no --config to reload (running a scenario's own)"}
    d.notifier.reloading()
    try:
        return _apply(d, e, topo, allow_empty)
    finally:
        d.notifier.reloaded()
        d._after_change()


REASON_MAX = 2000  # characters of the REASON= field: a journal entry stays readable


def result_fields(result: str, reasons: list[str]) -> dict[str, str]:
    """The journal fields of a reload's outcome: ``RELOAD=`` and a one-line ``REASON=``."""
    reason = " ".join("; ".join(reasons).split())
    if len(reason) > REASON_MAX:
        reason = reason[: REASON_MAX - 3] + "..."
    return {"RELOAD": result, "REASON": reason}


def _refuse(d: Daemon, problems: list[str]) -> dict[str, Any]:
    for p in problems:
        log.error("reload refused: %s", p)
    log.error(
        "reload refused; the running configuration is kept",
        extra=result_fields("refused", problems),
    )
    return {"ok": False, "error": "\n".join(problems), "problems": problems}


def _load(d: Daemon) -> Declarations | list[str]:
    """The configuration file's declarations, or why a reload must refuse it (each problem
    one line). Catches every error of loading: a reload never ends the daemon."""
    path = d.opts.config
    assert path is not None
    try:
        new = d.localize(zconfig.load(path))
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    except (ZonedError, OSError) as exc:
        return [f"{path}: cannot be loaded: {' '.join(str(exc).split())}"]
    except Exception as exc:
        log.exception("reload: loading %s failed", path)
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return [f"{path}: cannot be loaded ({what})"]
    return new


def _apply(d: Daemon, e: Engine, topo: Topology, allow_empty: bool) -> dict[str, Any]:
    loaded = _load(d)
    if not isinstance(loaded, Declarations):
        return _refuse(d, loaded)
    new = engines.carry(d, loaded)
    # Only a file that would release running containers needs asking for: a daemon that
    # runs no containers (a shared zone alone) reloads its policy like any other.
    if not new.containers and e.decls.containers and not allow_empty:
        return _refuse(d, [EMPTY_REFUSED.format(file=d.opts.config)])
    problems = zconfig.check_against_topology(new, topo)
    if problems and e.juggle:
        return _refuse(d, [str(p) for p in problems])
    refusals, changes = config_diff(e.decls, new)
    if refusals:
        return _refuse(d, refusals)
    if e.pending():
        d._reload_pending = True
        log.info(
            "reload waits for %d hand-over(s) in flight",
            len(e.pending()),
            extra=result_fields("deferred", changes),
        )
        return {"ok": True, "deferred": True, "changes": changes}
    d._reload_pending = False
    if not changes:
        log.info("reload: nothing changed", extra=result_fields("unchanged", []))
        return {"ok": True, "deferred": False, "changes": []}
    now = d.backend.now() if d.backend else 0.0
    zmap = e.zonemap
    before = {c.name for c in e.decls.containers}
    after = {c.name: c for c in new.containers}
    lends: list[Lend] = []
    if e.juggle:
        for name in before - after.keys():
            for n in sorted(zmap.nodes_of(name)):
                zmap = zmap.with_assignment(
                    Assignment(n, FREE, f"{name} no longer declared (reload)", now)
                )
        free_ids = zmap.nodes_with(FREE)
        added = [c for c in new.containers if c.name not in before]
        if added:
            sub = Topology(tuple(n for n in topo.nodes if n.id in free_ids))
            host = dataclasses.replace(new.host, reserved_nodes=(), shared_nodes=(), shared_count=0)
            try:
                placed = place(sub, dataclasses.replace(new, host=host, containers=tuple(added)))
            except PlacementError as exc:
                return _refuse(d, [f"the new containers do not fit the free nodes now: {exc}"])
            for a in placed.zonemap:
                if a.owner.kind is OwnerKind.CONTAINER:
                    zmap = zmap.with_assignment(dataclasses.replace(a, since=now))
        sizes = {n.id: n.mem_total for n in topo.nodes}
        spare = sorted(zmap.nodes_with(FREE), key=lambda n: (sizes[n], n))
        for c in new.containers:
            if c.name not in before:
                continue
            own = zmap.nodes_of(c.name)
            extra: list[int] = []
            while not keeps_min(c, [sizes[n] for n in (*own, *extra)], new.host.headroom_pct):
                if not spare:
                    return _refuse(
                        d, [f"{c.name}: its new min ({c.min}) needs more nodes than are free now"]
                    )
                extra.append(spare.pop(0))
            lends += [Lend(n, c.name, f"{c.name}: min raised to {c.min} (reload)") for n in extra]
    old_tmpfs = e.decls.host.shared_tmpfs
    e.reconfigure(new, zmap)
    for lend in lends:
        e.override(lend)
    sidecars.reapply_rules(d, new)
    sharedzone.reload_tmpfs(d, old_tmpfs, new)
    sharedzone.plan_rewarm(d)
    for ch in changes:
        log.info("reload: %s", ch)
    log.info("reload applied: %d change(s)", len(changes), extra=result_fields("applied", changes))
    e.log.append(
        LogRecord(
            now, "reload", "configuration reloaded", "; ".join(changes), "applied", code="done"
        )
    )
    return {"ok": True, "deferred": False, "changes": changes}
