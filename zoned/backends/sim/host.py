"""The simulated host as a ``Backend``: what the engine reads and writes, and ``wait``.

The model itself (allocation, reclaim, OOM, tripwires, PSI, node memory) is
``zoned.backends.sim.physics``; migration and reclaim operations are
``zoned.backends.sim.migration``; what a run records is ``zoned.backends.sim.stats``.
Beyond ``Backend``: ``advance(seconds)`` and ``run_until(at_s)`` run the clock whatever
happens; ``history`` (a ``Sample`` every ``sample_ms``), ``events`` (all events ever
reported), ``stats()`` (``SimStats``), ``ticks_worked`` (ticks computed one by one).
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Mapping, Sequence

from zoned.backends.base import Backend
from zoned.backends.sim.migration import SimMigration
from zoned.backends.sim.state import Isolation, _Ctr
from zoned.backends.sim.stats import SimStats, collect_stats
from zoned.config.decl import ContainerDecl
from zoned.errors import CgroupGone, Unsupported, WriteRefused
from zoned.model.host import (
    CgroupState,
    Event,
    NodeMemory,
    NodeUsage,
    OpKind,
    OpResult,
    Usage,
    is_internal,
)
from zoned.model.nodelist import format_nodelist
from zoned.model.zonemap import NodeInfo, Topology


class SimBackend(SimMigration, Backend):
    """A deterministic simulated host (the model: ``zoned.backends.sim.physics``).

    ``workloads`` maps container names to what their process does; a container starts its
    workload when ``ensure`` creates it. ``reserved`` nodes are never given to containers
    in the unconfined modes. ``memcg_limits`` (MEMCG mode) maps names to memory.max bytes;
    missing names get their declared ``max`` (a node count times the mean unreserved node
    size when ``max`` is in nodes).
    """

    name = "sim"

    def topology(self) -> Topology:
        mem = self.node_memory()
        ids = list(self._nodes)
        infos = tuple(
            NodeInfo(
                id=n,
                mem_total=mem[n].total,
                mem_free=mem[n].free,
                file_pages=mem[n].file,
                distances=tuple(10 if m == n else 20 for m in ids),
            )
            for n in ids
        )
        return Topology(nodes=infos, fake_numa=f"{len(ids)} (simulated)", numa_balancing=False)

    def node_memory(self) -> Mapping[int, NodeMemory]:
        files = dict.fromkeys(self._nodes, 0)
        for c in self._ctrs.values():
            for n, b in c.file.items():
                files[n] += b
        return {
            n: NodeMemory(total=node.size, free=node.size - self._used[n], file=files[n])
            for n, node in self._nodes.items()
        }

    def existing(self) -> Mapping[str, CgroupState]:
        return {
            name: self._state(c)
            for name, c in self._ctrs.items()
            if not c.gone and not is_internal(name)
        }

    def state(self, name: str) -> CgroupState:
        return self._state(self._live(name))

    def usage(self, name: str) -> Usage:
        c = self._live(name)
        anon, file = c.anon, c.file
        # The engine reads every container each step: one pass, each total summed once.
        per = {}
        for n in sorted(anon.keys() | file.keys()):
            a, f = anon.get(n, 0), file.get(n, 0)
            if a or f:
                per[n] = NodeUsage(anon=a, file=f)
        anon_total, file_total = sum(anon.values()), sum(file.values())
        return Usage(
            current=anon_total + file_total, anon=anon_total, file=file_total, per_node=per
        )

    def processes(self, name: str) -> Sequence[int]:
        c = self._ctrs.get(name)
        if c is None or c.gone or c.pid is None:
            return ()
        return (c.pid,)

    def op_result(self, op: int) -> OpResult:
        return self._results[op]

    def _state(self, c: _Ctr) -> CgroupState:
        pids = (c.pid,) if c.pid is not None else ()
        return CgroupState(c.name, c.path, c.nodes, pids, c.tripwire)

    def _live(self, name: str) -> _Ctr:
        c = self._ctrs.get(name)
        if c is None or c.gone:
            raise CgroupGone(f"{name}: no such cgroup", errno_mod.ENOENT)
        return c

    def ensure(self, decl: ContainerDecl, nodes: frozenset[int]) -> CgroupState:
        """Create (or find) the container and start its workload.

        Under ZONES an empty ``nodes`` acts as the parent's whole set (cgroup v2's
        effective-mems rule); on an existing container with pages, new nodes apply at once
        with no migration time (use ``start_set_nodes`` for that). Unconfined modes ignore
        ``nodes``.
        """
        if self.isolation is Isolation.ZONES:
            bad = nodes - self._memory_nodes()
            if bad:
                raise WriteRefused(
                    f"{decl.name}: cpuset.mems {format_nodelist(nodes)}: no memory on "
                    f"{format_nodelist(bad)}",
                    errno_mod.EINVAL,
                )
            eff = nodes or self._memory_nodes()
        else:
            eff = self.unconfined_nodes
        c = self._ctrs.get(decl.name)
        if c is not None and not c.gone:
            c.decl = decl
            if c.nodes != eff:
                c.nodes = eff
                self._migrate_now(c, eff)
            return self._state(c)
        c = _Ctr(
            name=decl.name,
            decl=decl,
            path=decl.cgroup or f"{self._parent}/{decl.name}",
            index=len(self._ctrs),
            nodes=eff,
            spec=self._workloads.get(decl.name),
        )
        if self.isolation is Isolation.MEMCG:
            c.limit = self._memcg_limits.get(decl.name, self._default_limit(decl))
        self._ctrs[decl.name] = c
        self._start_workload(c, self._tick)
        return self._state(c)

    def release(self, name: str) -> None:
        c = self._ctrs.get(name)
        if c is None or c.gone or c.alive:
            return  # adopted or still populated: left as it is
        self._free_all(c)
        c.gone = True

    def arm_tripwire(self, name: str, nbytes: int) -> None:
        """memory.high := ``nbytes``, after the engine's reaction delay (SimKnobs).
        Arming at or below current usage fires at once."""
        c = self._live(name)
        due = self._write_due()
        if due > self._tick:
            c.high_due = (due, nbytes)
            return
        c.high_due = None
        self._set_high(c, nbytes)

    def disarm_tripwire(self, name: str) -> None:
        """memory.high := max (sim only; the engine re-arms instead)."""
        c = self._live(name)
        c.tripwire = None

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        c = self._live(name)
        if self.isolation is not Isolation.ZONES:
            raise Unsupported(f"{name}: the {self.isolation.value} mode has no zones to move")
        op = self._new_op(OpKind.SET_NODES, name, deadline_s, nodes=nodes)
        op.not_before = self._write_due()
        c.ops.append(op)
        if len(c.ops) == 1 and op.not_before <= self._tick:
            self._begin_set_nodes(c, op)
        return op.id

    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        c = self._live(name)
        op = self._new_op(OpKind.RECLAIM, name, deadline_s, target=nbytes)
        op.not_before = self._write_due()
        c.reclaims.append(op)
        if nbytes <= 0:
            self._finish_reclaim(c, op)
        return op.id

    def can_reclaim_node(self, node: int) -> bool:
        """``SimKnobs.node_reclaim`` (a 6.16+ kernel's ``nodeN/reclaim``) on a memory node."""
        return self.knobs.node_reclaim and node in self._memory_nodes()

    def start_node_reclaim(self, name: str, node: int, nbytes: int, deadline_s: float) -> int:
        """Page cache on ``node``, ``name``'s first then anyone's, at ``reclaim_rate``;
        less than asked ends with EAGAIN, as the kernel's file does."""
        if not self.can_reclaim_node(node):
            raise Unsupported(f"node{node}/reclaim: not on this simulated kernel")
        c = self._live(name)
        op = self._new_op(
            OpKind.NODE_RECLAIM, name, deadline_s, target=nbytes, nodes=frozenset({node})
        )
        op.not_before = self._write_due()
        c.reclaims.append(op)
        if nbytes <= 0:
            self._finish_reclaim(c, op)
        return op.id

    def wait(self, timeout_s: float | None) -> list[Event]:
        """Advance the virtual clock until an event happens or ``timeout_s`` passes.

        Events already due return at once. With ``timeout_s=None`` and nothing left that
        could ever happen, returns ``[]`` without moving the clock.

        With the engine's reaction modelled (``SimKnobs.reaction_*``) the engine's step
        between two waits took time: its writes land after one draw (``_write_due``), a
        step without writes still took a draw for its reads, and until then the engine
        was busy: whatever happened meanwhile is returned when the step is done.
        """
        start = self._tick
        busy = self._end_step()
        try:
            if busy > self._tick:
                out = self._run_to(busy)
                if out:
                    return out
            left = None if timeout_s is None else timeout_s - (self._tick - start) * self._dt
            return self._wait(None if left is None else max(0.0, left))
        finally:
            self._step_began = self._tick

    def _end_step(self) -> int:
        """The tick at which the engine's step since the last ``wait`` is done."""
        due, self._step_due = self._step_due, None
        if due is not None:
            return due
        if not self.reaction.enabled or self._step_began is None:
            return self._tick
        return self._step_began + self._ticks(self.reaction.draw())

    def _run_to(self, tick: int) -> list[Event]:
        out: list[Event] = []
        while self._tick < tick:
            out.extend(self._wait((tick - self._tick) * self._dt))
        out.extend(self._pending)
        self._pending = []
        return out

    def _wait(self, timeout_s: float | None) -> list[Event]:
        end = None if timeout_s is None else self._tick + self._ticks(timeout_s)
        while not self._pending:
            if end is not None and self._tick >= end:
                break
            if self._quiet():
                wake = self._next_wake()
                if wake is None and end is None:
                    break
                target = min(x for x in (wake, end) if x is not None)
                if target > self._tick:
                    self._jump(target)
                    continue
            self._step()
        out, self._pending = self._pending, []
        return out

    def advance(self, seconds: float) -> list[Event]:
        """Run the clock ``seconds`` forward whatever happens; return every event. Not an
        engine's wait: it charges no reaction time, and writes after it are a new step's."""
        self._step_due = None
        self._step_began = None
        end = self._tick + self._ticks(seconds)
        out: list[Event] = []
        while self._tick < end or self._pending:
            out.extend(self._wait((end - self._tick) * self._dt))
        return out

    def run_until(self, at_s: float) -> list[Event]:
        """Run the clock to ``at_s`` (no-op if already past); return every event."""
        return self.advance(max(0.0, at_s - self.now()))

    def stats(self) -> SimStats:
        return collect_stats(self._ctrs.values(), self.events, self.now())
