"""What the daemon's loop runs beside the engine: rules on exec, node hot-plug.

Each part is small and owned by ``zoned.service.daemon.Daemon``, which decides when it is on:

- :class:`RuleWiring` — a :class:`zoned.service.mover.RuleMover` whose process-connector fd
  sits in the loop's epoll, on only while some container declares ``match:`` (and never
  in a dry run or report-only mode: moving a process is a write). Opening the connector
  needs root/CAP_NET_ADMIN; when it cannot be opened the rules are off, with a warning
  that says why. Each moved process is logged at info with ``CONTAINER=``/``PID=``
  journal fields.
- :func:`topology_change` — what a re-read topology means for the zone map after a
  NODE_CHANGE uevent, in words (the engine keeps its node set; see docs/service.md).

The shared-zone re-warm's schedule is ``zoned.shared.rewarm``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from zoned.backends.base import Backend
from zoned.backends.fdloop import IN, FdHost
from zoned.config.decl import Declarations
from zoned.errors import ZonedError
from zoned.model.host import Event
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import OwnerKind, Topology, ZoneMap
from zoned.policy.rules import RuleSet
from zoned.service import sharedzone

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)


# -- rules on exec -----------------------------------------------------------------------


class Mover(Protocol):
    """What the daemon uses of :class:`zoned.service.mover.RuleMover`."""

    def start(self) -> list[str]: ...

    def fileno(self) -> int: ...

    def on_readable(self) -> list[str]: ...

    def set_rules(self, rules: RuleSet) -> None: ...

    def close(self) -> None: ...


#: Builds a mover: (backend, rules, proc_root) → Mover. The default is RuleMover.
MoverFactory = Callable[[Backend, RuleSet, Path], Mover]

# RuleMover's lines for a moved process: "moved pid 42 (/usr/bin/x) to web: <rule>" and
# "moved pid 43 to web: child of a matched process".
_MOVED = re.compile(r"^moved pid (\d+)(?: \(.*\))? to ([A-Za-z0-9_.-]+): ")


def default_mover(backend: Backend, rules: RuleSet, proc_root: Path) -> Mover:
    from zoned.service.mover import RuleMover

    return RuleMover(backend, rules, proc_root)


def log_mover_lines(lines: Sequence[str]) -> None:
    """Moves at info with journal fields (``CONTAINER=``, ``PID=``, ``ACTION=rule-move``);
    anything else the mover says at info as it is."""
    for line in lines:
        m = _MOVED.match(line)
        if m is None:
            log.info("rules: %s", line)
        else:
            fields = {"ACTION": "rule-move", "PID": m.group(1), "CONTAINER": m.group(2)}
            log.info("rules: %s", line, extra=fields)


@dataclass
class RuleWiring:
    """The rule mover in the daemon's loop; off while no container declares ``match:``."""

    backend: Backend
    proc_root: Path
    factory: MoverFactory = default_mover
    mover: Mover | None = None
    warnings: list[str] = field(default_factory=list)
    _fd: int | None = None

    def apply(self, decls: Declarations, host: FdHost, *, writes: bool = True) -> None:
        """Start, update or stop the mover for ``decls`` (at start and on every reload).
        ``writes=False`` (dry run, report-only): rules are declared but not applied."""
        rules = RuleSet.from_declarations(decls)
        if not rules:
            if self.mover is not None:
                log.info("rules: no container declares match: any more; process rules off")
                self.close(host)
            return
        if not writes:
            if self.mover is None:
                log.info("rules: match: is declared, but zoned writes nothing here: not applied")
            return
        if self.mover is not None:
            self.mover.set_rules(rules)
            log.info("rules: %d container(s) with match: rules", len(list(rules.containers())))
            return
        mover = self.factory(self.backend, rules, self.proc_root)
        try:
            lines = mover.start()
            fd = mover.fileno()
        except (OSError, ZonedError) as exc:
            mover.close()
            names = ", ".join(c.name for c in decls.containers if c.match)
            why = (
                f"process rules are off: the process connector cannot be opened ({exc}); "
                f"it needs root or CAP_NET_ADMIN. The match: rules of {names} are not applied"
            )
            log.warning("%s", why)
            self.warnings.append(why)
            return
        self.mover = mover
        self._fd = fd
        host.add_fd(fd, IN, self._on_readable)
        log_mover_lines(lines)

    def _on_readable(self, revents: int) -> list[Event]:
        if self.mover is not None:
            log_mover_lines(self.mover.on_readable())
        return []

    def close(self, host: FdHost) -> None:
        if self._fd is not None:
            host.remove_fd(self._fd)
            self._fd = None
        if self.mover is not None:
            self.mover.close()
            self.mover = None


# -- node hot-plug -----------------------------------------------------------------------


def topology_change(old: Topology, new: Topology, zmap: ZoneMap) -> tuple[list[str], list[str]]:
    """(info lines, warnings) for a topology re-read after a NODE_CHANGE.

    A warning when a node the zone map holds went away (or lost all its memory), when a
    new memory node appeared, or when an owned node's size changed: zoned keeps its zone
    map as it is until a reload or restart re-places (the engine has no way to change its
    node set while running).
    """
    before = {n.id: n.mem_total for n in old.nodes if n.mem_total > 0}
    after = {n.id: n.mem_total for n in new.nodes if n.mem_total > 0}
    gone = sorted(before.keys() - after.keys())
    added = sorted(after.keys() - before.keys())
    resized = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    info = [
        f"topology re-read: {len(after)} memory node(s) ({format_nodelist(after)})"
        + (f"; offline: {format_nodelist(gone)}" if gone else "")
        + (f"; new: {format_nodelist(added)}" if added else "")
        + (
            "; resized: "
            + ", ".join(f"{n} {format_size(before[n])} → {format_size(after[n])}" for n in resized)
            if resized
            else ""
        )
    ]
    warnings: list[str] = []

    def owner(n: int) -> str:
        if n not in zmap.assignments:
            return "not in the zone map"
        o = zmap.owner(n)
        return f"held by {o.container}" if o.kind is OwnerKind.CONTAINER else o.kind.value

    if gone:
        warnings.append(
            "node(s) went offline: "
            + ", ".join(f"{n} ({owner(n)})" for n in gone)
            + "; zoned keeps its zone map until a restart re-places"
        )
    if added:
        warnings.append(
            f"new memory node(s) {format_nodelist(added)} came online; zoned does not use "
            "them until a restart places them"
        )
    owned = [n for n in resized if n in zmap.assignments]
    if owned:
        warnings.append(
            "node(s) changed size: "
            + ", ".join(f"{n} ({owner(n)})" for n in owned)
            + "; capacities and tripwires follow at the next restart"
        )
    return info, warnings


# -- started and fed by the daemon -------------------------------------------------------


def reapply_rules(d: Daemon, new: Declarations) -> None:
    """After a reload: the ``match:`` rules of the new declarations."""
    if d.rules is not None and d._host is not None and d.engine is not None:
        d.rules.apply(new, d._host, writes=not d.engine.dry_run)
        _note_rule_warnings(d)


def start(d: Daemon, decls: Declarations) -> None:
    assert d.backend is not None and d._host is not None and d.engine is not None
    d.host_topology = d.topology
    d.rules = RuleWiring(d.backend, d.opts.roots.proc, d._mover_factory or default_mover)
    d.rules.apply(decls, d._host, writes=not d.engine.dry_run)
    _note_rule_warnings(d)
    if d._node_events_factory is not None and d.engine.juggle:
        try:
            src = d._node_events_factory()
        except OSError as exc:
            why = f"node hot-plug is not watched: the uevent socket cannot be opened ({exc})"
            log.warning("%s", why)
            d.warnings.append(why)
        else:
            d.node_events = src
            d._host.add_fd(src.fileno(), IN, lambda revents: src.drain())
    sharedzone.plan_rewarm(d)


def _note_rule_warnings(d: Daemon) -> None:
    assert d.rules is not None
    d.warnings += [w for w in d.rules.warnings if w not in d.warnings]


def on_node_change(d: Daemon, changes: list[Event]) -> None:
    """Re-read the topology after NODE_CHANGE events (one re-read per loop round) and
    say what changed; the engine keeps its node set (docs/service.md, "The loop")."""
    assert d.backend is not None and d.engine is not None
    what = "; ".join(ev.detail or "node change" for ev in changes[:4])
    if len(changes) > 4:
        what += f"; and {len(changes) - 4} more"
    try:
        new = d.backend.topology()
    except ZonedError as exc:
        log.warning("node change (%s): cannot re-read the topology: %s", what, exc)
        return
    d.topology_reads += 1
    old = d.host_topology or new
    d.host_topology = new
    info, warnings = topology_change(old, new, d.engine.zonemap)
    log.info("node change (%s): %s", what, "; ".join(info))
    for w in warnings:
        log.warning("node change: %s", w)
        if w not in d.warnings:
            d.warnings.append(w)


__all__ = [
    "Mover",
    "MoverFactory",
    "RuleWiring",
    "default_mover",
    "log_mover_lines",
    "on_node_change",
    "reapply_rules",
    "start",
    "topology_change",
]
