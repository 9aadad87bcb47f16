"""The hand-over state machine: reclaim → evacuate → drain → node reclaim → give, one node
at a time.

A hand-over (``Transfer``) moves one node from a donor (or the free pool) to a receiver.
Each phase is one slow backend operation; the next phase starts when the backend reports
``OP_FINISHED`` for the last. An evacuation whose write timed out while the kernel keeps
migrating is DRAIN: each step checks the donor's pages on the node, and the node is handed
on once they are gone (at most ``DRAINED_BYTES`` left) or ``migrate_timeout_s`` has passed
again. Where more than ``DRAINED_BYTES`` of the donor's pages are still on the node then
(page cache: a ``cpuset.mems`` write migrates only what its tasks map) and the kernel can
reclaim one node (``Backend.can_reclaim_node``, ``policy.node_reclaim``), NODE_RECLAIM asks
it to reclaim that much from the node alone: the node has one owner, so that is directed
reclaim of the donor there. Its pages are measured again and the node handed on; the done
record says what was reclaimed on the node and what was left behind. A failed phase
re-reads what the host holds, reconciles the map and retries (at most ``max_attempts``) or
gives up and puts the containers on hold; a failed node reclaim only hands the node on.

One writer per container: an operation on a container starts only when no other one is in
flight on it (a later phase waits, ``Transfer.waiting``), so two nodes lent in one decision
are two writes one after the other, each of the whole node set the map holds when it
starts. A ``cpuset.mems`` write that outlives its deadline is still in the kernel: the
hand-over keeps waiting for its real end (the backend reports it late) instead of writing
again behind it, and is not done before the write returned with the effective mems asked.
Where the tripwire throttles inside the kernel (``Backend.raise_tripwire_before_give``:
v2's ``memory.high`` holds an allocating task that may hold the mmap or VMA lock the
``cpuset.mems`` write needs), the receiver's tripwire is raised to its new capacity while
the write is in flight, once every task may allocate on the new node
(``Backend.mems_reached``; the engine looks every ``RAISE_LOOK_S`` meanwhile): sooner, a
task the write has not reached yet would fill the old node.

``HandOvers`` is the part of ``zoned.engine.Engine`` that runs transfers and keeps the map
and the decision log; the engine (its subclass) owns the state it declares below.
"""

from __future__ import annotations

import errno as _errno
import logging
from collections.abc import MutableSet
from dataclasses import dataclass
from enum import Enum

from zoned.backends.base import Backend
from zoned.config.decl import Declarations
from zoned.errors import BackendError, CgroupGone
from zoned.model.actions import (
    Action,
    DirectedReclaim,
    Reclaim,
    Return,
    kind_of,
)
from zoned.model.decisions import Code, ContainerStats, LogRecord, subjects
from zoned.model.host import OpKind, OpResult
from zoned.model.nodelist import nodes_word
from zoned.model.sizes import MIB, format_size
from zoned.model.snapshot import Snapshot
from zoned.model.zonemap import FREE, SHARED, Assignment, Owner, OwnerKind, ZoneMap

# The engine's logger: the journal handler reads its records' fields (zoned.service.logsetup).
log = logging.getLogger("zoned.engine")


class Phase(Enum):
    RECLAIM = "directed reclaim"
    EVACUATE = "evacuate"
    DRAIN = "drain"  # the write ended (timed out) but pages are still moving off the node
    NODE_RECLAIM = "node reclaim"  # nodeN/reclaim of what the donor left on the node
    GIVE = "give"
    DONE = "done"


@dataclass
class Transfer:
    """One hand-over in flight (mutable, engine-internal)."""

    action: Action
    phase: Phase
    node: int | None = None
    donor: str | None = None
    receiver: str | None = None
    reclaim_bytes: int = 0
    op: int | None = None
    op_container: str = ""
    expect: frozenset[int] | None = None  # SET_NODES: what the container must hold after
    attempts: int = 0
    started: float = 0.0
    cancelled: bool = False
    first: DirectedReclaim | None = None  # the directed reclaim this hand-over starts with
    left_behind: int = 0
    migrated: int = 0  # bytes the evacuation moved
    freed: int = 0  # bytes that left the node because they were freed (exits), not moved
    elsewhere: int = 0  # the donor's bytes on its other nodes when the evacuation started
    drain_until: float = 0.0
    node_reclaim_tried: bool = False
    node_left: int = 0  # NODE_RECLAIM: the donor's bytes on the node before it
    node_reclaimed: int = 0  # what left the node during NODE_RECLAIM
    node_reclaim_note: str = ""  # why it fell short, when it did
    waiting: bool = False  # its next operation waits for another one on the same container
    raise_pending: bool = False  # GIVE: raise the tripwire once every task has the node
    in_kernel_since: float | None = None  # its write outlived the deadline; still running

    def involves(self, name: str) -> bool:
        return name in (self.donor, self.receiver)


# While a GIVE waits to raise the receiver's tripwire, the engine looks this often.
RAISE_LOOK_S = 0.1

# A node counts as evacuated when the donor has no more than this on it: the kernel leaves
# a few pages behind (measured: ~3 MiB of shared-library pages after a 300 MiB migration).
DRAINED_BYTES = 16 * MIB


def node_reclaim_wanted(left: int, enabled: bool, kernel_can: bool, tried: bool) -> bool:
    """Whether a node just taken from a donor that still has ``left`` bytes on it is
    reclaimed there before it is handed on: once, when the policy allows it, the kernel
    can, and more than ``DRAINED_BYTES`` are left."""
    return enabled and kernel_can and not tried and left > DRAINED_BYTES


class HandOvers:
    """Transfers in flight, the zone map and the decision log (``Engine``'s base)."""

    backend: Backend
    decls: Declarations
    dry_run: bool
    max_attempts: int
    log: list[LogRecord]
    stats: dict[str, ContainerStats]
    managed: MutableSet[str]
    last_snapshot: Snapshot | None
    _map: ZoneMap
    _transfers: list[Transfer]
    _by_op: dict[int, Transfer]
    _tripwires: dict[str, int]
    _last_change: dict[str, float]
    _last_need: dict[str, float]
    _blocked: dict[str, tuple[float, str]]

    def _begin(self, t: Transfer, now: float) -> None:
        self._transfers.append(t)
        if t.first is not None:
            f = t.first
            self._record(kind_of(f), f.describe(), f.reason, "started", f, code="started")
        self._record(
            kind_of(t.action),
            t.action.describe(),
            t.action.reason,
            "started",
            t.action,
            code="started",
        )
        self._advance(t, now)

    def _target(self, t: Transfer) -> str | None:
        """The container the operation of ``t``'s current phase writes to."""
        if t.phase in (Phase.RECLAIM, Phase.EVACUATE):
            return t.donor
        if t.phase is Phase.GIVE:
            return t.receiver
        return None

    def _writing_to(self, name: str, other_than: Transfer) -> bool:
        return any(
            o is not other_than
            and o.op is not None
            and o.op in self._by_op
            and o.op_container == name
            for o in self._transfers
        )

    def _start_waiting(self, now: float) -> None:
        """Start the phases that waited for their container's previous operation."""
        for t in list(self._transfers):
            target = self._target(t)
            if t.waiting and (target is None or not self._writing_to(target, t)):
                t.waiting = False
                self._advance(t, now)

    def _advance(self, t: Transfer, now: float) -> None:
        """Start the operation of ``t``'s current phase (or finish it), or leave it
        waiting while another operation on the same container is in flight."""
        deadline = self.decls.policy.migrate_timeout_s
        target = self._target(t)
        if target is not None and self._writing_to(target, t):
            t.waiting = True
            return
        try:
            if t.phase is Phase.RECLAIM:
                assert t.donor is not None
                t.op_container, t.expect = t.donor, None
                t.op = self.backend.start_reclaim(t.donor, t.reclaim_bytes, deadline)
            elif t.phase is Phase.EVACUATE:
                assert t.donor is not None and t.node is not None
                held = self._map.nodes_of(t.donor)
                if t.node not in held:  # the host already dropped it (after a reconcile)
                    self._drain(t, now)
                    return
                t.reclaim_bytes, t.elsewhere = self._split(t.donor, t.node)
                t.op_container, t.expect = t.donor, self._mems(t.donor, held - {t.node})
                t.op = self.backend.start_set_nodes(t.donor, t.expect, deadline)
            elif t.phase is Phase.NODE_RECLAIM:
                assert t.donor is not None and t.node is not None
                t.op_container, t.expect = t.donor, None
                t.op = self.backend.start_node_reclaim(t.donor, t.node, t.node_left, deadline)
            elif t.phase is Phase.GIVE:
                assert t.receiver is not None and t.node is not None
                self._assign(t.node, Owner.of(t.receiver), t.action.reason, now)
                t.op_container = t.receiver
                t.expect = self._mems(t.receiver, self._map.nodes_of(t.receiver))
                t.raise_pending = self.backend.raise_tripwire_before_give
                t.op = self.backend.start_set_nodes(t.receiver, t.expect, deadline)
            else:
                self._done(t, now)
                return
        except BackendError as exc:
            t.op = None
            if t.phase is Phase.NODE_RECLAIM:  # not fatal: hand it on as it is
                t.node_reclaim_note = str(exc)
                self._evacuated(t, now, t.node_left)
                return
            self._failed(t, now, str(exc))
            return
        self._by_op[t.op] = t

    def _raise_when_reached(self) -> None:
        """Raise the tripwire of each receiver whose write in flight has reached all of
        its tasks (see the module docstring)."""
        for t in self._transfers:
            if not (t.raise_pending and t.receiver is not None and t.expect is not None):
                continue
            if t.op is None or t.op not in self._by_op:
                t.raise_pending = False
            elif self.backend.mems_reached(t.receiver, t.expect):
                t.raise_pending = False
                self._raise_tripwire(t.receiver)

    def next_look(self) -> float | None:
        """Seconds until the engine wants to step again with no event, if it does."""
        return RAISE_LOOK_S if any(t.raise_pending for t in self._transfers) else None

    def _raise_tripwire(self, name: str) -> None:
        """Arm ``name``'s tripwire at its capacity as the map now says (before the write
        that gives it the node), if that is higher than the armed one."""
        snap = self.last_snapshot
        if snap is None:
            return
        cap = snap.capacity(self._map.nodes_of(name))
        level = int(cap * self.decls.policy.tripwire_pct / 100.0)
        if level <= self._tripwires.get(name, 0):
            return
        try:
            self.backend.arm_tripwire(name, level)
        except BackendError as exc:
            log.warning("%s: raising the tripwire before the write: %s", name, exc)
            return
        self._tripwires[name] = level
        self._record(
            "tripwire",
            f"set {name}'s tripwire to {format_size(level)}",
            f"{name}: every task may use its new node; raised to the new capacity while "
            "the write is in flight, so a task the old one holds can finish what the "
            "write waits for",
            "armed",
            code="done",
            container=name,
        )

    def _finished(self, op: int, now: float) -> None:
        t = self._by_op.pop(op, None)
        if t is None:
            log.debug("op %d finished but is not ours, ignoring", op)
            return
        try:
            self._finished_op(t, op, now)
        finally:
            self._start_waiting(now)

    def _finished_op(self, t: Transfer, op: int, now: float) -> None:
        try:
            r: OpResult | None = self.backend.op_result(op)
        except KeyError:
            r = None
        if t.cancelled:
            self._transfers.remove(t)
            self._reconcile(
                {n for n in (t.donor, t.receiver) if n is not None and n in self.managed}
            )
            return
        if t.phase is Phase.NODE_RECLAIM:
            self._node_reclaimed(t, now, r)
            return
        if (
            r is not None
            and r.kind is OpKind.SET_NODES
            and r.errno == _errno.ETIMEDOUT
            and "(running)" in (r.error or "")
        ):
            # The write is still in the kernel (pages migrating, or waiting for a lock a
            # task holds): writing again would queue behind it. Wait for its real end.
            self._by_op[op] = t
            if t.in_kernel_since is None:
                t.in_kernel_since = now
                self._record(
                    kind_of(t.action),
                    t.action.describe(),
                    t.action.reason,
                    f"{t.phase.value}: the write is still in the kernel after "
                    f"{r.seconds:.0f}s; waiting for it to return",
                    t.action,
                    code="waiting",
                    seconds=r.seconds,
                )
            return
        if r is None:
            self._failed(t, now, f"op {op}: no result")
            return
        if r.kind is OpKind.RECLAIM:
            # Reclaim that fell short is not fatal: the migration moves what fits.
            short = "" if r.ok else f" ({r.error or 'fell short'})"
            f = t.first if t.first is not None else t.action
            self._record(
                kind_of(f),
                f.describe(),
                f.reason,
                f"done in {r.seconds:.1f}s: reclaimed {format_size(r.reclaimed)}{short}",
                f,
                code="done",
                seconds=r.seconds,
                reclaimed=r.reclaimed,
            )
            if t.node is None:  # a directed reclaim alone: that was all
                self._transfers.remove(t)
                return
            t.phase = Phase.EVACUATE
            self._advance(t, now)
            return
        if not r.ok:
            err = r.error or "failed"
            name = _errno.errorcode.get(r.errno, str(r.errno)) if r.errno else ""
            if name and name not in err:
                err += f" ({name})"
            self._failed(t, now, err)
            return
        if t.expect is not None and r.nodes != t.expect:
            self._failed(
                t,
                now,
                f"asked for {nodes_word(t.expect)}, host granted {nodes_word(r.nodes)}",
            )
            return
        if t.phase is Phase.EVACUATE:
            self._evacuated(t, now, r.left_behind)
        else:  # GIVE
            assert t.receiver is not None
            self._last_change[t.receiver] = now
            self._last_need[t.receiver] = now
            self.stats.setdefault(t.receiver, ContainerStats()).nodes_gained += 1
            t.phase = Phase.DONE
            self._advance(t, now)

    def _split(self, name: str, node: int) -> tuple[int, int]:
        """``name``'s bytes on ``node`` and on its other nodes (0, 0 when it is gone)."""
        try:
            per_node = self.backend.usage(name).per_node
        except CgroupGone:
            return 0, 0
        on = per_node.get(node)
        rest = sum(u.total for n, u in per_node.items() if n != node)
        return (on.total if on is not None else 0), rest

    def _drain(self, t: Transfer, now: float) -> None:
        """The donor no longer holds the node; wait (level-checked each step) until its
        pages have left it, or the migration deadline passes, before handing it on."""
        assert t.donor is not None and t.node is not None
        left, _ = self._split(t.donor, t.node)
        if t.phase is not Phase.DRAIN:
            t.phase = Phase.DRAIN
            t.drain_until = now + self.decls.policy.migrate_timeout_s
        if left <= DRAINED_BYTES or now >= t.drain_until:
            self._evacuated(t, now, left)

    def _node_reclaimed(self, t: Transfer, now: float, r: OpResult | None) -> None:
        """NODE_RECLAIM ended (short or not, it is not fatal): measure the donor's pages on
        the node again and hand it on."""
        assert t.donor is not None and t.node is not None
        left, _ = self._split(t.donor, t.node)
        # What left the node meanwhile counts as reclaimed only as far as the node's used
        # memory fell during the reclaim; the rest was freed (7.3: a donor killed as the
        # evacuation began freed 80M while the reclaim got EAGAIN with 0 B).
        done = r.reclaimed if r is not None else 0
        t.node_reclaimed = min(max(t.node_left - left, 0), done)
        if r is None or not r.ok:
            t.node_reclaim_note = "no result" if r is None else (r.error or "fell short")
        self._evacuated(t, now, left)

    def _evacuated(self, t: Transfer, now: float, left: int = 0) -> None:
        """The node is off the donor: reclaim what it left there first where that is
        wanted (``node_reclaim_wanted``), then count what moved and what was freed and
        hand it on.

        What left the node either moved to the donor's other nodes, was reclaimed on the
        node, or was freed (its processes exited or freed it): "migrated" is only what
        arrived elsewhere, at most what left."""
        assert t.donor is not None and t.node is not None
        can = self.backend.can_reclaim_node(t.node)
        if node_reclaim_wanted(left, self.decls.policy.node_reclaim, can, t.node_reclaim_tried):
            t.node_reclaim_tried = True
            t.node_left = left
            t.phase = Phase.NODE_RECLAIM
            self._advance(t, now)
            return
        self._last_change[t.donor] = now
        gone = max(t.reclaim_bytes - left, 0)
        _, elsewhere = self._split(t.donor, t.node)
        moved = min(gone, max(elsewhere - t.elsewhere, 0))
        st = self.stats.setdefault(t.donor, ContainerStats())
        st.nodes_lost += 1
        st.bytes_migrated += moved
        st.bytes_left_behind += left
        t.left_behind = left
        t.migrated = moved
        t.freed = max(gone - moved - t.node_reclaimed, 0)
        if t.receiver is not None:
            t.phase = Phase.GIVE
        else:
            self._assign(t.node, FREE, f"returned by {t.donor}", now)
            t.phase = Phase.DONE
        self._advance(t, now)

    def _done(self, t: Transfer, now: float) -> None:
        if t in self._transfers:
            self._transfers.remove(t)
        words = f"done in {now - t.started:.1f}s"
        if isinstance(t.action, Reclaim | Return):
            words += f"; {format_size(t.migrated)} migrated"
            # Pages freed while the node was evacuated were not moved: say which it was.
            if t.freed >= MIB:
                words += f", {format_size(t.freed)} freed (not migrated: exits or frees)"
        if t.node_reclaim_tried:
            words += f", {format_size(t.node_reclaimed)} reclaimed on node {t.node} (nodeN/reclaim"
            words += f": {t.node_reclaim_note})" if t.node_reclaim_note else ")"
        # The kernel leaves a few pages behind (shared libraries); say so, it is normal.
        if t.left_behind:
            words += f", {format_size(t.left_behind)} left behind"
        moved = isinstance(t.action, Reclaim | Return)
        self._record(
            kind_of(t.action),
            t.action.describe(),
            t.action.reason,
            words,
            t.action,
            code="done",
            seconds=now - t.started,
            migrated=t.migrated if moved else None,
            freed=t.freed if moved else None,
            left_behind=t.left_behind,
            reclaimed=t.node_reclaimed if t.node_reclaim_tried else None,
        )

    def _failed(self, t: Transfer, now: float, error: str) -> None:
        t.attempts += 1
        involved = {n for n in (t.donor, t.receiver) if n is not None}
        self._reconcile(involved & set(self.managed))
        if any(n not in self.managed for n in involved):
            if t not in self._transfers:  # _reconcile found it gone: _gone ended it in the log
                log.info("%s: %s (a container vanished)", t.action.describe(), error)
                return
            self._transfers.remove(t)
            self._record(
                kind_of(t.action),
                t.action.describe(),
                t.action.reason,
                f"abandoned: a container vanished ({error})",
                t.action,
                code="cancelled",
            )
            return
        if t.attempts < self.max_attempts:
            self._record(
                kind_of(t.action),
                t.action.describe(),
                t.action.reason,
                f"{t.phase.value} failed: {error}; retrying ({t.attempts + 1}/{self.max_attempts})",
                t.action,
                code="retrying",
            )
            self._advance(t, now)
            return
        self._transfers.remove(t)
        hold = self.decls.policy.cooldown_s
        why = f"gave up on {t.action.describe()} after {t.attempts} attempts: {error}"
        for n in involved:
            self._blocked[n] = (now + hold, why)
        self._record(
            kind_of(t.action),
            t.action.describe(),
            t.action.reason,
            f"gave up after {t.attempts} attempts: {error}; holding off {hold:g}s",
            t.action,
            code="failed",
            seconds=now - t.started,
        )
        log.warning("%s", why)

    # -- the map -------------------------------------------------------------------------

    def _mems(self, name: str, own: frozenset[int]) -> frozenset[int]:
        """What ``name``'s cpuset must hold: its own nodes, plus the shared zone if it may
        use it."""
        try:
            shared = self.decls.container(name).shared
        except KeyError:
            shared = False
        return own | self._map.nodes_with(SHARED) if shared else own

    def _own(self, held: frozenset[int]) -> frozenset[int]:
        """``held`` without the shared zone: the nodes the map gives to one container."""
        return held - self._map.nodes_with(SHARED)

    def _assign(self, node: int, owner: Owner, reason: str, now: float) -> None:
        self._map = self._map.with_assignment(Assignment(node, owner, reason, now))

    def _reconcile(self, names: set[str]) -> None:
        """Make the map say what the host holds for ``names`` (after a failed write)."""
        now = self.backend.now()
        for name in sorted(names):
            try:
                held = self._own(self.backend.state(name).nodes)
            except CgroupGone:
                self._gone(name, now)
                continue
            mapped = self._map.nodes_of(name)
            for n in sorted(mapped - held):
                self._assign(n, FREE, f"{name} does not hold it after a failed write", now)
            for n in sorted(held - mapped):
                other = self._map.assignments.get(n)
                if other is not None and other.owner.kind is OwnerKind.CONTAINER:
                    log.warning(
                        "node %d: host gives it to %s, map said %s; following the host",
                        n,
                        name,
                        other.owner,
                    )
                self._assign(n, Owner.of(name), f"the host says {name} holds it", now)
            if mapped != held:
                log.info(
                    "%s: map corrected from %s to %s (what the host holds)",
                    name,
                    nodes_word(mapped),
                    nodes_word(held),
                )

    def _gone(self, name: str, now: float) -> None:
        if name not in self.managed:
            return
        self.managed.remove(name)
        nodes = self._map.nodes_of(name)
        for n in sorted(nodes):
            self._assign(n, FREE, f"{name}'s cgroup vanished", now)
        for t in list(self._transfers):
            if t.involves(name):
                if t.op is not None and t.op in self._by_op:
                    t.cancelled = True  # its OP_FINISHED reconciles the other side
                else:
                    self._transfers.remove(t)
                if t.node is not None and t.receiver == name and t.phase is Phase.GIVE:
                    self._assign(t.node, FREE, f"{name}'s cgroup vanished", now)
                # Every hand-over ends in the log (``zoned lend --wait`` follows it there).
                self._record(
                    kind_of(t.action),
                    t.action.describe(),
                    t.action.reason,
                    f"abandoned: {name}'s cgroup vanished",
                    t.action,
                    code="cancelled",
                )
        self._record(
            "gone",
            f"{name} vanished",
            f"{name}: cgroup vanished; {nodes_word(nodes)} back to the pool",
            "nodes freed",
            code="noted",
            container=name,
        )

    # -- log -----------------------------------------------------------------------------

    def _describe(self, t: Transfer) -> str:
        state = t.phase.value
        if t.waiting:
            state += ", waiting for the write before it"
        elif t.in_kernel_since is not None:
            state += ", write still in the kernel"
        return f"{t.action.describe()} ({state})"

    def _record(
        self,
        kind: str,
        what: str,
        reason: str,
        outcome: str,
        action: Action | None = None,
        *,
        code: Code,
        container: str | None = None,
        seconds: float | None = None,
        migrated: int | None = None,
        freed: int | None = None,
        left_behind: int | None = None,
        reclaimed: int | None = None,
    ) -> None:
        """Log a decision; who and which node come from ``action`` (or ``container``)."""
        who, node, donor = subjects(action)
        rec = LogRecord(
            self.backend.now(),
            kind,
            what,
            reason,
            outcome,
            action,
            code=code,
            container=container or who,
            node=node,
            donor=donor,
            seconds=None if seconds is None else round(seconds, 3),
            migrated=migrated,
            freed=freed,
            left_behind=left_behind,
            reclaimed=reclaimed,
        )
        self.log.append(rec)
        prefix = "would have: " if outcome == "would have" else ""
        log.info("%s%s: %s [%s]", prefix, what, reason, outcome)
