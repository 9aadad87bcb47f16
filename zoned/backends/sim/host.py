"""The simulated host: nodes, containers, page cache and anon, reclaim, migration, OOM.

Everything runs on a virtual clock in fixed ticks (``SimKnobs.step_ms``, 10 ms by
default) and is deterministic given its inputs: the only randomness is seeded (workload
walks). ``wait`` jumps straight over quiet stretches (no allocation, no operation in
flight), so a 30-minute scenario of mostly steady containers takes a fraction of a second.

The model, tick by tick, for each live container in creation order:

* **Allocation.** The workload's pending bytes are allocated at ``alloc_rate`` (or the
  phase's own rate), anon first, then page cache (reads). Pages go only to the
  container's allowed nodes (its cpuset), lowest node id first. When those nodes are full,
  page cache on them is reclaimed first (the container's own, then other containers'
  cache on the same nodes, as the node's LRU would), at ``reclaim_rate``; the time that
  takes is "some" stall. Anonymous memory is never reclaimed: there is **no swap**.
* **OOM.** When the allowed nodes hold no more free memory or reclaimable cache, the
  allocation blocks ("some" and "full" stall). After ``oom_after_ms`` (10 ms: one tick) of
  blocking the kernel kills the workload (measured: the cpuset-constrained OOM kill came
  after ~10 ms of stall, before any PSI trigger fired). Its anon is freed, its page cache
  stays charged. The event is OOM_KILL alone for a cpuset OOM (``oom_kill`` counts, ``oom``
  does not); with a memcg limit (``Isolation.MEMCG``) it is OOM then OOM_KILL.
* **Tripwire = memory.high.** ``arm_tripwire(n)`` fires one TRIPWIRE event when a charge
  takes usage (anon + cache, all nodes) over ``n``. While usage is above it the container's
  own cache is reclaimed first, then allocation is throttled to ``throttle_rate`` and each
  throttled tick counts as "some" stall: the slowdown that buys zoned time (measured on
  6.1). ``throttle_rate=None`` models a v1 threshold: event only, no throttling.
* **PSI.** Per container, "some" stall summed over a sliding ``psi_window_ms``; when it
  reaches ``psi_some_ms`` one PRESSURE event fires, at most one per window.
* **Migration.** ``start_set_nodes`` changes the allowed nodes at once (new allocations go
  to the new nodes, as the kernel does before it migrates) and moves the pages on removed
  nodes at ``migrate_bandwidth`` (default 125 MiB/s: measured 300 MiB in 2.4 s under
  TCG; real hardware is much faster). ``leave_behind`` bytes (default 3 MiB, measured:
  shared-library pages) stay on the removed nodes, cache first. Destination nodes make
  room by reclaiming page cache; pages that still do not fit stay behind
  (``migrate_overflow="leave"``, the kernel's way: its migration allocations use
  __GFP_THISNODE, which never OOM-kills) or, with ``"oom_kill"``, cache is dropped and
  the container is OOM-killed. Writes to one container are serialized, as the kernel's
  blocking write is. A write past its deadline ends with ok=False, errno ETIMEDOUT, and
  the migration finishes in the background.
* **Reclaim.** ``start_reclaim`` reclaims the container's page cache (node with the most
  first) at ``reclaim_rate``; less than asked ends with ok=False, errno EAGAIN, as
  ``memory.reclaim`` does.
* **Node memory.** free = size - base use - what every container holds on the node.

Assumptions: no swap; each workload is one process (a kill ends it); "some" stall is
every stalled ms (reclaim at ``reclaim_rate``, throttled or blocked ticks), "full" only
ticks with no progress at all (blocked, or throttled to nothing); cache freed by an
exiting or killed process stays charged until reclaimed; there is no kswapd (reclaim
happens in the allocating task, or through ``start_reclaim``).

Beyond ``Backend``: ``advance(seconds)`` and ``run_until(at_s)`` run the clock whatever
happens; ``history`` (a ``Sample`` every ``sample_ms``), ``events`` (all events ever
reported), ``stats()`` (``SimStats``), ``ticks_worked`` (ticks computed one by one).

Isolation modes (for baselines): ``ZONES`` (containers use the nodes they are given;
with no engine calling ``start_set_nodes`` they keep their initial nodes: static zones),
``NONE`` (every container may use every unreserved node) and ``MEMCG`` (the same, plus a
fixed memory.max per container: OOM when exceeded).
"""

from __future__ import annotations

import errno as errno_mod
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from zoned.backends.base import Backend
from zoned.backends.sim.faults import Fault, Gone, PartialMigration, SetNodesError, SlowMigration
from zoned.backends.sim.workload import Frees, WorkloadRun, WorkloadSpec
from zoned.config.decl import AmountUnit, ContainerDecl
from zoned.errors import CgroupGone, Unsupported, WriteRefused
from zoned.model.host import (
    CgroupState,
    Event,
    EventKind,
    NodeMemory,
    NodeUsage,
    OpKind,
    OpResult,
    Usage,
    is_internal,
)
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import GIB, MIB, format_size
from zoned.model.zonemap import NodeInfo, Topology


class Isolation(Enum):
    ZONES = "zones"  # cpusets: each container on the nodes it is given
    NONE = "none"  # no isolation: every container may use every unreserved node
    MEMCG = "memcg"  # every unreserved node, plus a fixed memory.max per container


@dataclass(frozen=True)
class SimNode:
    """A simulated memory node: ``size`` bytes, ``base`` of them used by host and kernel."""

    id: int
    size: int
    base: int = 0


@dataclass(frozen=True)
class SimKnobs:
    """The model's constants. Rates are bytes per second of virtual time."""

    step_ms: int = 10  # clock resolution; also the OOM kill delay's granularity
    sample_ms: int = 1000  # history sampling period
    alloc_rate: int = 1 * GIB  # how fast a workload faults memory in, unhindered
    throttle_rate: int | None = 16 * MIB  # allocation above memory.high; None: no throttle
    reclaim_rate: int = 1 * GIB  # page-cache reclaim throughput (direct and memory.reclaim)
    migrate_bandwidth: int = 125 * MIB  # measured under TCG: 300 MiB in 2.4 s
    leave_behind: int = 3 * MIB  # measured: shared-library pages stayed after a migration
    oom_after_ms: int = 10  # blocked allocation time before the kernel's OOM kill
    psi_some_ms: int = 100  # PRESSURE when "some" stall in a window reaches this...
    psi_window_ms: int = 1000  # ...window
    migrate_overflow: Literal["leave", "oom_kill"] = "leave"

    def __post_init__(self) -> None:
        if self.step_ms <= 0 or self.sample_ms < self.step_ms:
            raise ValueError("step_ms must be > 0 and sample_ms >= step_ms")
        if min(self.alloc_rate, self.reclaim_rate, self.migrate_bandwidth) <= 0:
            raise ValueError("rates must be above zero")


# ---------------------------------------------------------------------------------------
# What the simulator records


@dataclass(frozen=True)
class Sample:
    """The host at one instant of the history."""

    at: float
    nodes: Mapping[str, frozenset[int]]  # each live container's allowed nodes (cpuset)
    usage: Mapping[str, Mapping[int, NodeUsage]]  # container → node → bytes (nonzero only)
    free: Mapping[int, int]  # node → free bytes
    phase: Mapping[str, str]  # container → workload phase ("ramp", "hold", "dead", ...)

    def owners(self) -> dict[int, tuple[str, ...]]:
        """node → the containers allowed on it (one each under zones, all when unconfined)."""
        out: dict[int, list[str]] = {n: [] for n in self.free}
        for name, nodes in self.nodes.items():
            for n in sorted(nodes):
                out.setdefault(n, []).append(name)
        return {n: tuple(v) for n, v in out.items()}

    def total(self, container: str) -> int:
        return sum(u.total for u in self.usage.get(container, {}).values())


@dataclass(frozen=True)
class ContainerStats:
    """One container over the whole run. Times in seconds of virtual time."""

    name: str
    peak_usage: int
    peak_anon: int
    stall_some_s: float
    stall_full_s: float
    throttled_s: float
    oom_kills: int
    oom_events: int  # memcg-limit OOMs (memory.events "oom"); 0 for cpuset OOMs
    kill_times: tuple[float, ...]
    restarts: int
    bytes_migrated: int
    migrations: int
    tripwires: int
    pressure_events: int
    finished: bool  # the workload ran all its phases (or exited) and is alive or exited
    gone: bool


@dataclass(frozen=True)
class SimStats:
    """The run as a whole."""

    duration_s: float
    containers: Mapping[str, ContainerStats]
    bytes_migrated: int
    events: Mapping[str, int]  # EventKind value → count

    @property
    def oom_kills(self) -> int:
        return sum(c.oom_kills for c in self.containers.values())

    @property
    def stall_some_s(self) -> float:
        return sum(c.stall_some_s for c in self.containers.values())


# ---------------------------------------------------------------------------------------
# Internal state


@dataclass
class _Op:
    id: int
    kind: OpKind
    container: str
    called: int  # tick of the call
    deadline: int  # tick
    nodes: frozenset[int] = frozenset()
    target: int = 0  # RECLAIM: bytes asked
    started: int | None = None  # SET_NODES: tick the write began (queued before)
    from_nodes: frozenset[int] = frozenset()
    keep: int = 0  # bytes to leave on from_nodes
    bw_tick: int = 0
    done_bytes: int = 0  # moved or reclaimed
    reported: bool = False


@dataclass
class _Ctr:
    name: str
    decl: ContainerDecl
    path: str
    index: int
    nodes: frozenset[int]
    anon: dict[int, int] = field(default_factory=dict)
    file: dict[int, int] = field(default_factory=dict)
    spec: WorkloadSpec | None = None
    run: WorkloadRun | None = None
    pid: int | None = None
    lives: int = 0
    restart_at: int | None = None
    tripwire: int | None = None
    tripwire_fired: bool = False
    limit: int | None = None
    gone: bool = False
    ops: list[_Op] = field(default_factory=list)  # SET_NODES queue, the first runs
    reclaims: list[_Op] = field(default_factory=list)
    blocked_ms: int = 0
    psi: deque[tuple[int, float]] = field(default_factory=deque)
    psi_sum: float = 0.0
    last_pressure: int | None = None
    # stats
    peak_usage: int = 0
    peak_anon: int = 0
    some_s: float = 0.0
    full_s: float = 0.0
    throttled_s: float = 0.0
    oom_kills: int = 0
    oom_events: int = 0
    kill_times: list[float] = field(default_factory=list)
    restarts: int = 0
    bytes_migrated: int = 0
    migrations: int = 0
    tripwires: int = 0
    pressure_events: int = 0

    @property
    def anon_total(self) -> int:
        return sum(self.anon.values())

    @property
    def file_total(self) -> int:
        return sum(self.file.values())

    @property
    def usage(self) -> int:
        return self.anon_total + self.file_total

    @property
    def alive(self) -> bool:
        return self.run is not None and not self.run.exited and not self.gone


@dataclass
class _TickState:
    """What one container's charges did in one tick."""

    reclaimed: int = 0
    throttled: bool = False
    blocked: bool = False
    memcg_oom: bool = False
    over_high: bool = False
    throttle_left: int = 0
    placed: int = 0


# ---------------------------------------------------------------------------------------


class SimBackend(Backend):
    """A deterministic simulated host (see the module docstring for the model).

    ``workloads`` maps container names to what their process does; a container starts its
    workload when ``ensure`` creates it. ``reserved`` nodes are never given to containers
    in the unconfined modes. ``memcg_limits`` (MEMCG mode) maps names to memory.max bytes;
    missing names get their declared ``max`` (a node count times the mean unreserved node
    size when ``max`` is in nodes).
    """

    name = "sim"

    def __init__(
        self,
        nodes: Sequence[SimNode],
        *,
        workloads: Mapping[str, WorkloadSpec] | None = None,
        faults: Sequence[Fault] = (),
        knobs: SimKnobs | None = None,
        isolation: Isolation = Isolation.ZONES,
        reserved: Iterable[int] = (0,),
        memcg_limits: Mapping[str, int] | None = None,
        parent: str = "zoned",
    ) -> None:
        if not nodes:
            raise ValueError("a host needs at least one node")
        self.knobs = knobs or SimKnobs()
        self.isolation = isolation
        self._nodes = {n.id: n for n in sorted(nodes, key=lambda n: n.id)}
        self._used = {n.id: n.base for n in self._nodes.values()}  # base + containers
        self._workloads = dict(workloads or {})
        self._faults = list(faults)
        self._fault_uses = [getattr(f, "times", 1) for f in self._faults]
        self._gone_applied: set[int] = set()
        self._reserved = frozenset(reserved)
        self._memcg_limits = dict(memcg_limits or {})
        self._parent = parent
        self._ctrs: dict[str, _Ctr] = {}
        self._tick = 0
        self._pending: list[Event] = []
        self._ops: dict[int, _Op] = {}
        self._results: dict[int, OpResult] = {}
        self._next_op = 1
        self.events: list[Event] = []  # every event ever reported, in order
        self.history: list[Sample] = []  # one Sample every sample_ms
        self.ticks_worked = 0  # ticks computed one by one (the rest were jumped over)
        k = self.knobs
        self._dt = k.step_ms / 1000.0
        self._sample_ticks = max(1, k.sample_ms // k.step_ms)
        self._psi_window = max(1, k.psi_window_ms // k.step_ms)

    # -- clock --------------------------------------------------------------------------

    def now(self) -> float:
        return self._tick * self.knobs.step_ms / 1000.0

    def _ticks(self, seconds: float) -> int:
        return max(0, math.ceil(seconds * 1000.0 / self.knobs.step_ms - 1e-9))

    def _per_tick(self, rate: int) -> int:
        return max(1, rate * self.knobs.step_ms // 1000)

    # -- Backend: reading ---------------------------------------------------------------

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
        per = {
            n: NodeUsage(anon=c.anon.get(n, 0), file=c.file.get(n, 0))
            for n in sorted(set(c.anon) | set(c.file))
            if c.anon.get(n, 0) or c.file.get(n, 0)
        }
        return Usage(current=c.usage, anon=c.anon_total, file=c.file_total, per_node=per)

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

    # -- Backend: writing ---------------------------------------------------------------

    @property
    def unconfined_nodes(self) -> frozenset[int]:
        """The nodes every container may use in the NONE and MEMCG modes."""
        return frozenset(n for n, nd in self._nodes.items() if nd.size > 0) - self._reserved

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
        """memory.high := ``nbytes``. Arming at or below current usage fires at once."""
        c = self._live(name)
        c.tripwire = nbytes
        c.tripwire_fired = False
        if c.usage >= nbytes:
            self._fire_tripwire(c)

    def disarm_tripwire(self, name: str) -> None:
        """memory.high := max (sim only; the engine re-arms instead)."""
        c = self._live(name)
        c.tripwire = None

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        c = self._live(name)
        if self.isolation is not Isolation.ZONES:
            raise Unsupported(f"{name}: the {self.isolation.value} mode has no zones to move")
        op = self._new_op(OpKind.SET_NODES, name, deadline_s, nodes=nodes)
        c.ops.append(op)
        if len(c.ops) == 1:
            self._begin_set_nodes(c, op)
        return op.id

    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        c = self._live(name)
        op = self._new_op(OpKind.RECLAIM, name, deadline_s, target=nbytes)
        c.reclaims.append(op)
        if nbytes <= 0:
            self._finish_reclaim(c, op)
        return op.id

    def _new_op(self, kind: OpKind, name: str, deadline_s: float, **kw: object) -> _Op:
        op = _Op(
            id=self._next_op,
            kind=kind,
            container=name,
            called=self._tick,
            deadline=self._tick + max(1, self._ticks(deadline_s)),
            **kw,  # type: ignore[arg-type]
        )
        self._next_op += 1
        self._ops[op.id] = op
        return op

    # -- waiting ------------------------------------------------------------------------

    def wait(self, timeout_s: float | None) -> list[Event]:
        """Advance the virtual clock until an event happens or ``timeout_s`` passes.

        Events already due return at once. With ``timeout_s=None`` and nothing left that
        could ever happen, returns ``[]`` without moving the clock.
        """
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
        """Run the clock ``seconds`` forward whatever happens; return every event."""
        end = self._tick + self._ticks(seconds)
        out: list[Event] = []
        while self._tick < end or self._pending:
            out.extend(self.wait((end - self._tick) * self._dt))
        return out

    def run_until(self, at_s: float) -> list[Event]:
        """Run the clock to ``at_s`` (no-op if already past); return every event."""
        return self.advance(max(0.0, at_s - self.now()))

    # -- stats --------------------------------------------------------------------------

    def stats(self) -> SimStats:
        counts: dict[str, int] = {}
        for e in self.events:
            counts[e.kind.value] = counts.get(e.kind.value, 0) + 1
        cs = {
            c.name: ContainerStats(
                name=c.name,
                peak_usage=c.peak_usage,
                peak_anon=c.peak_anon,
                stall_some_s=round(c.some_s, 6),
                stall_full_s=round(c.full_s, 6),
                throttled_s=round(c.throttled_s, 6),
                oom_kills=c.oom_kills,
                oom_events=c.oom_events,
                kill_times=tuple(c.kill_times),
                restarts=c.restarts,
                bytes_migrated=c.bytes_migrated,
                migrations=c.migrations,
                tripwires=c.tripwires,
                pressure_events=c.pressure_events,
                finished=c.run is not None and (c.run.done or c.run.exited),
                gone=c.gone,
            )
            for c in self._ctrs.values()
        }
        return SimStats(
            duration_s=self.now(),
            containers=cs,
            bytes_migrated=sum(c.bytes_migrated for c in self._ctrs.values()),
            events=counts,
        )

    # -- the engine of the simulation ---------------------------------------------------

    def _memory_nodes(self) -> frozenset[int]:
        return frozenset(n for n, nd in self._nodes.items() if nd.size > 0)

    def _default_limit(self, decl: ContainerDecl) -> int:
        if decl.max.unit is AmountUnit.BYTES:
            return decl.max.value
        pool = [self._nodes[n].size for n in sorted(self.unconfined_nodes)]
        mean = sum(pool) // len(pool) if pool else 0
        return decl.max.value * mean

    def _emit(self, kind: EventKind, c: _Ctr | None, **kw: object) -> None:
        e = Event(kind, self.now(), c.name if c else None, **kw)  # type: ignore[arg-type]
        self._pending.append(e)
        self.events.append(e)

    def _start_workload(self, c: _Ctr, tick: int) -> None:
        if c.spec is None:
            return
        start = max(tick, self._ticks(c.spec.start_s)) if c.lives == 0 else tick
        c.run = WorkloadRun(c.spec, c.name, self._dt, start)
        c.lives += 1
        c.pid = 1000 + 100 * c.index + c.lives
        c.restart_at = None
        c.blocked_ms = 0

    def _quiet(self) -> bool:
        for c in self._ctrs.values():
            if c.gone:
                continue
            if c.ops or c.reclaims:
                return False
            if c.alive and c.run is not None and c.run.busy():
                return False
            if c.alive and c.run is not None:
                w = c.run.next_wake(self._tick)
                if w is not None and w <= self._tick:
                    return False
        return True

    def _next_wake(self) -> int | None:
        wakes: list[int] = []
        for c in self._ctrs.values():
            if c.gone:
                continue
            if c.restart_at is not None:
                wakes.append(c.restart_at)
            if c.alive and c.run is not None:
                w = c.run.next_wake(self._tick)
                if w is not None:
                    wakes.append(w)
        for i, f in enumerate(self._faults):
            if isinstance(f, Gone) and i not in self._gone_applied:
                wakes.append(self._ticks(f.at_s) - 1)  # the tick that ends at at_s
        later = [w for w in wakes if w > self._tick]
        if len(later) < len(wakes):
            return self._tick  # something due now
        return min(later) if later else None

    def _jump(self, target: int) -> None:
        """Move the clock over a quiet stretch, recording the samples it passes."""
        st = self._sample_ticks
        nxt = (self._tick // st + 1) * st
        while nxt <= target:
            self._tick = nxt
            self._sample()
            nxt += st
        self._tick = target
        for c in self._ctrs.values():
            c.blocked_ms = 0
            self._psi_trim(c)

    def _step(self) -> None:
        """One tick from ``k`` to ``k + 1``. The clock reads ``k + 1`` while the tick is
        worked out, so everything it causes is reported at the tick's end."""
        k = self._tick
        self._tick = k + 1
        self.ticks_worked += 1
        for i, f in enumerate(self._faults):
            if isinstance(f, Gone) and i not in self._gone_applied and self._ticks(f.at_s) <= k + 1:
                self._gone_applied.add(i)
                self._vanish(f.container)
        for c in self._ctrs.values():
            if not c.gone and c.restart_at is not None and c.restart_at <= k:
                c.restarts += 1
                self._start_workload(c, k)
        states: dict[str, _TickState] = {}
        for c in list(self._ctrs.values()):
            if not c.gone:
                st = self._run_container(c, k)
                if st is not None:
                    states[c.name] = st
        for c in list(self._ctrs.values()):
            if not c.gone:
                self._run_ops(c, k)
        for c in self._ctrs.values():
            if c.gone:
                continue
            st = states.get(c.name)
            if st is not None:
                self._account(c, st)
            if (
                c.tripwire is not None
                and not c.tripwire_fired
                and (c.usage >= c.tripwire or (st is not None and st.over_high))
            ):
                self._fire_tripwire(c)
            c.peak_usage = max(c.peak_usage, c.usage)
            c.peak_anon = max(c.peak_anon, c.anon_total)
        if self._tick % self._sample_ticks == 0:
            self._sample()

    def _run_container(self, c: _Ctr, k: int) -> _TickState | None:
        run = c.run
        if run is None or not c.alive:
            return None
        frees = run.advance(k, c.anon_total)
        self._apply_frees(c, frees)
        if run.exited:
            self._free_anon(c)
            c.pid = None
            return None
        if not run.busy():
            c.blocked_ms = 0
            return None
        st = _TickState(throttle_left=self._per_tick(self.knobs.throttle_rate or 1))
        budget = self._per_tick(run.rate or self.knobs.alloc_rate)
        want_anon = min(run.pending_anon, budget)
        got_anon = self._charge(c, "anon", want_anon, st) if want_anon else 0
        want_file = min(run.pending_file, budget - got_anon) if not st.blocked else 0
        got_file = self._charge(c, "file", want_file, st) if want_file > 0 else 0
        run.allocated(anon=got_anon, file=got_file)
        st.placed = got_anon + got_file
        if st.blocked:
            c.blocked_ms += self.knobs.step_ms
            if c.blocked_ms >= self.knobs.oom_after_ms:
                self._oom_kill(c, memcg=st.memcg_oom)
        else:
            c.blocked_ms = 0
        return st

    def _account(self, c: _Ctr, st: _TickState) -> None:
        dt = self._dt
        some = st.reclaimed / self.knobs.reclaim_rate
        if st.throttled or st.blocked:
            some = dt
        some = min(dt, some)
        full = dt if st.blocked or (st.throttled and st.placed == 0) else 0.0
        c.some_s += some
        c.full_s += full
        if st.throttled:
            c.throttled_s += dt
        if some > 0:
            c.psi.append((self._tick, some))
            c.psi_sum += some
        self._psi_trim(c)
        limit = self.knobs.psi_some_ms / 1000.0
        if c.psi_sum >= limit - 1e-9 and (
            c.last_pressure is None or self._tick - c.last_pressure >= self._psi_window
        ):
            c.last_pressure = self._tick
            c.pressure_events += 1
            ms = round(c.psi_sum * 1000)
            self._emit(
                EventKind.PRESSURE,
                c,
                detail=f"some {ms}ms/{self.knobs.psi_window_ms}ms",
                value=ms,
            )

    def _psi_trim(self, c: _Ctr) -> None:
        while c.psi and c.psi[0][0] <= self._tick - self._psi_window:
            c.psi_sum -= c.psi.popleft()[1]
        if not c.psi:
            c.psi_sum = 0.0

    def _fire_tripwire(self, c: _Ctr) -> None:
        c.tripwire_fired = True
        c.tripwires += 1
        self._emit(
            EventKind.TRIPWIRE,
            c,
            detail=f"high {format_size(c.usage)} >= {format_size(c.tripwire or 0)}",
            value=c.usage,
        )

    def _sample(self) -> None:
        live = [c for c in self._ctrs.values() if not c.gone]
        self.history.append(
            Sample(
                at=self.now(),
                nodes={c.name: c.nodes for c in live},
                usage={
                    c.name: {
                        n: NodeUsage(anon=c.anon.get(n, 0), file=c.file.get(n, 0))
                        for n in sorted(set(c.anon) | set(c.file))
                        if c.anon.get(n, 0) or c.file.get(n, 0)
                    }
                    for c in live
                },
                free={n: nd.size - self._used[n] for n, nd in self._nodes.items()},
                phase={c.name: self._phase(c) for c in live},
            )
        )

    def _phase(self, c: _Ctr) -> str:
        if c.run is None:
            return "empty"
        if c.pid is None and c.restart_at is not None:
            return "dead"
        if c.pid is None and not c.run.exited:
            return "dead"
        return c.run.label

    # -- memory -------------------------------------------------------------------------

    def _free_on(self, nodes: Iterable[int]) -> int:
        return sum(self._nodes[n].size - self._used[n] for n in nodes)

    def _put(self, c: _Ctr, kind: str, node: int, nbytes: int) -> None:
        d = c.anon if kind == "anon" else c.file
        d[node] = d.get(node, 0) + nbytes
        if d[node] == 0:
            del d[node]
        self._used[node] += nbytes

    def _charge(self, c: _Ctr, kind: str, want: int, st: _TickState) -> int:
        """Place up to ``want`` bytes of ``kind`` for ``c``; returns what was placed."""
        allowed = want
        usage = c.usage
        if c.limit is not None and usage + allowed > c.limit:
            r = self._reclaim_cache(c, usage + allowed - c.limit, None, own_only=True)
            st.reclaimed += r
            usage -= r
            room = max(0, c.limit - usage)
            if allowed > room:
                allowed = room
                st.blocked = st.memcg_oom = True
        if c.tripwire is not None and usage + allowed > c.tripwire:
            st.over_high = True
            if self.knobs.throttle_rate is not None:
                r = self._reclaim_cache(c, usage + allowed - c.tripwire, None, own_only=True)
                st.reclaimed += r
                usage -= r
                under = max(0, c.tripwire - usage)
                if allowed > under:
                    over = min(allowed - under, st.throttle_left)
                    st.throttle_left -= over
                    st.throttled = True
                    allowed = under + over
        placed = self._place(c, kind, allowed, st)
        if placed < allowed:
            st.blocked = True
        return placed

    def _place(self, c: _Ctr, kind: str, nbytes: int, st: _TickState) -> int:
        """First fit over the allowed nodes by id, reclaiming their cache when full."""
        nodes = sorted(c.nodes)
        short = nbytes - self._free_on(nodes)
        if short > 0:
            st.reclaimed += self._reclaim_cache(c, short, nodes, own_only=False)
        left = nbytes
        for n in nodes:
            if left <= 0:
                break
            take = min(left, self._nodes[n].size - self._used[n])
            if take > 0:
                self._put(c, kind, n, take)
                left -= take
        return nbytes - left

    def _reclaim_cache(
        self, c: _Ctr, nbytes: int, nodes: Sequence[int] | None, own_only: bool
    ) -> int:
        """Drop up to ``nbytes`` of page cache: ``c``'s own first, then (unless
        ``own_only``) other containers' cache on ``nodes``. ``nodes=None``: anywhere."""
        got = 0
        victims = [c] + ([] if own_only else [o for o in self._ctrs.values() if o is not c])
        for v in victims:
            for n in sorted(v.file) if nodes is None else nodes:
                if got >= nbytes:
                    return got
                take = min(v.file.get(n, 0), nbytes - got)
                if take > 0:
                    self._put(v, "file", n, -take)
                    got += take
        return got

    def _apply_frees(self, c: _Ctr, frees: Frees) -> None:
        if frees.anon is None:
            self._free_anon(c)
        elif frees.anon > 0:
            self._drop(c, "anon", frees.anon)
        if frees.file is None:
            self._drop(c, "file", c.file_total)
        elif frees.file > 0:
            self._drop(c, "file", frees.file)

    def _drop(self, c: _Ctr, kind: str, nbytes: int) -> None:
        """Free from the highest node down (the most recently filled go first)."""
        d = c.anon if kind == "anon" else c.file
        for n in sorted(d, reverse=True):
            if nbytes <= 0:
                break
            take = min(d[n], nbytes)
            self._put(c, kind, n, -take)
            nbytes -= take

    def _free_anon(self, c: _Ctr) -> None:
        for n in list(c.anon):
            self._put(c, "anon", n, -c.anon[n])

    def _free_all(self, c: _Ctr) -> None:
        self._free_anon(c)
        for n in list(c.file):
            self._put(c, "file", n, -c.file[n])

    def _oom_kill(self, c: _Ctr, memcg: bool) -> None:
        c.peak_usage = max(c.peak_usage, c.usage)
        c.peak_anon = max(c.peak_anon, c.anon_total)
        if memcg:
            c.oom_events += 1
            self._emit(EventKind.OOM, c, value=c.oom_events)
        c.oom_kills += 1
        c.kill_times.append(self.now())
        why = "memcg" if memcg else "cpuset"
        self._emit(
            EventKind.OOM_KILL,
            c,
            detail=f"oom_kill {c.oom_kills} ({why}, pid {c.pid})",
            value=c.oom_kills,
        )
        self._free_anon(c)
        assert c.run is not None
        c.run.pending_anon = c.run.pending_file = 0
        c.run.done = True
        c.pid = None
        c.blocked_ms = 0
        if c.spec is not None and c.spec.restart:
            c.restart_at = self._tick + self._ticks(c.spec.restart_delay_s)

    def _vanish(self, name: str) -> None:
        c = self._ctrs.get(name)
        if c is None or c.gone:
            return
        for op in c.ops + c.reclaims:
            if not op.reported:
                self._report(op, ok=False, error="cgroup vanished", errno=errno_mod.ENOENT)
        c.ops.clear()
        c.reclaims.clear()
        self._free_all(c)
        c.gone = True
        c.pid = None
        c.restart_at = None
        self._emit(EventKind.GONE, c, detail="cgroup removed")

    # -- operations ---------------------------------------------------------------------

    def _take_fault(self, c: _Ctr, kinds: tuple[type, ...]) -> Fault | None:
        for i, f in enumerate(self._faults):
            if not isinstance(f, kinds) or self._fault_uses[i] <= 0:
                continue
            assert isinstance(f, (SetNodesError, PartialMigration, SlowMigration))
            if f.container not in (None, c.name) or self.now() + 1e-9 < f.after_s:
                continue
            self._fault_uses[i] -= 1
            return f
        return None

    def _begin_set_nodes(self, c: _Ctr, op: _Op) -> None:
        op.started = self._tick
        bad = op.nodes - self._memory_nodes()
        err = self._take_fault(c, (SetNodesError,))
        if bad:
            self._fail_set(c, op, f"no memory on {format_nodelist(bad)}", errno_mod.EINVAL)
            return
        if not op.nodes and c.usage > 0:
            self._fail_set(c, op, "cannot empty the mems of a populated cpuset", errno_mod.ENOSPC)
            return
        if isinstance(err, SetNodesError):
            self._fail_set(c, op, "injected fault", err.errno)
            return
        op.from_nodes = c.nodes - op.nodes
        c.nodes = op.nodes or self._memory_nodes()
        on_from = sum(c.anon.get(n, 0) + c.file.get(n, 0) for n in op.from_nodes)
        keep = min(self.knobs.leave_behind, on_from)
        partial = self._take_fault(c, (PartialMigration,))
        if isinstance(partial, PartialMigration):
            extra = partial.leave if partial.leave is not None else 0
            if partial.fraction is not None:
                extra = int(on_from * partial.fraction)
            keep = min(on_from, max(keep, extra))
        op.keep = keep
        bw = self.knobs.migrate_bandwidth
        slow = self._take_fault(c, (SlowMigration,))
        if isinstance(slow, SlowMigration):
            bw = slow.bandwidth if slow.bandwidth is not None else int(bw / (slow.factor or 1.0))
        op.bw_tick = self._per_tick(bw)
        c.migrations += 1
        if on_from <= keep:
            self._finish_set(c, op)

    def _fail_set(self, c: _Ctr, op: _Op, why: str, code: int) -> None:
        self._report(
            op,
            ok=False,
            error=f"cpuset.mems {format_nodelist(op.nodes)}: {errno_mod.errorcode.get(code, code)}"
            f" ({why})",
            errno=code,
        )
        self._pop_set(c, op)

    def _finish_set(self, c: _Ctr, op: _Op) -> None:
        if not op.reported:
            self._report(op, ok=True)
        self._pop_set(c, op)

    def _pop_set(self, c: _Ctr, op: _Op) -> None:
        if c.ops and c.ops[0] is op:
            c.ops.pop(0)
            if c.ops:
                self._begin_set_nodes(c, c.ops[0])

    def _report(self, op: _Op, ok: bool, error: str = "", errno: int | None = None) -> None:
        op.reported = True
        c = self._ctrs[op.container]
        left = sum(
            c.anon.get(n, 0) + c.file.get(n, 0)
            for n in c.anon.keys() | c.file.keys()
            if n not in c.nodes
        )
        res = OpResult(
            op=op.id,
            kind=op.kind,
            container=op.container,
            ok=ok,
            nodes=c.nodes if op.kind is OpKind.SET_NODES else frozenset(),
            left_behind=left if op.kind is OpKind.SET_NODES else 0,
            reclaimed=op.done_bytes if op.kind is OpKind.RECLAIM else 0,
            error=error,
            errno=errno,
            seconds=(self._tick - op.called) * self._dt,
        )
        self._results[op.id] = res
        detail = "ok" if ok else (errno_mod.errorcode.get(errno, str(errno)) if errno else error)
        self._emit(
            EventKind.OP_FINISHED,
            c,
            detail=f"{op.kind.value} {detail}",
            op=op.id,
            ok=ok,
            errno=errno,
            value=res.reclaimed if op.kind is OpKind.RECLAIM else res.left_behind,
        )

    def _run_ops(self, c: _Ctr, k: int) -> None:
        if c.ops and c.ops[0].started is not None and c.ops[0].started <= k:
            self._migrate_tick(c, c.ops[0])
        for op in list(c.reclaims):
            self._reclaim_tick(c, op)
        for op in c.ops + c.reclaims:
            if not op.reported and self._tick >= op.deadline:
                self._report(
                    op,
                    ok=False,
                    error=f"{op.kind.value} not done by its deadline",
                    errno=errno_mod.ETIMEDOUT,
                )
                if op.kind is OpKind.RECLAIM:
                    c.reclaims.remove(op)

    def _migrate_tick(self, c: _Ctr, op: _Op) -> None:
        budget = op.bw_tick
        on_from = sum(c.anon.get(n, 0) + c.file.get(n, 0) for n in op.from_nodes)
        budget = min(budget, on_from - op.keep)
        moved = 0
        stuck = False
        dest = sorted(c.nodes)
        # anon first: what stays behind (``keep``) is cache first, like shared libraries
        for kind in ("anon", "file"):
            d = c.anon if kind == "anon" else c.file
            for n in sorted(op.from_nodes):
                while budget > 0 and d.get(n, 0) > 0:
                    chunk = min(budget, d[n])
                    room = self._free_on(dest)
                    if room < chunk:
                        self._reclaim_cache(c, chunk - room, dest, own_only=False)
                        room = self._free_on(dest)
                    if room <= 0:
                        stuck = True
                        break
                    chunk = min(chunk, room)
                    self._put(c, kind, n, -chunk)
                    left = chunk
                    for m in dest:
                        take = min(left, self._nodes[m].size - self._used[m])
                        if take > 0:
                            self._put(c, kind, m, take)
                            left -= take
                    budget -= chunk
                    moved += chunk
        c.bytes_migrated += moved
        op.done_bytes += moved
        on_from = sum(c.anon.get(n, 0) + c.file.get(n, 0) for n in op.from_nodes)
        if stuck and self.knobs.migrate_overflow == "oom_kill":
            for n in op.from_nodes:
                if c.file.get(n, 0):
                    self._put(c, "file", n, -c.file[n])
            if any(c.anon.get(n, 0) for n in op.from_nodes) and c.alive:
                self._oom_kill(c, memcg=False)
            stuck = False
            on_from = 0
        if on_from <= op.keep or stuck or moved == 0:
            self._finish_set(c, op)

    def _reclaim_tick(self, c: _Ctr, op: _Op) -> None:
        budget = min(self._per_tick(self.knobs.reclaim_rate), op.target - op.done_bytes)
        while budget > 0 and c.file:
            n = max(c.file, key=lambda m: (c.file[m], -m))
            take = min(budget, c.file[n])
            self._put(c, "file", n, -take)
            budget -= take
            op.done_bytes += take
        if op.done_bytes >= op.target or not c.file:
            self._finish_reclaim(c, op)

    def _finish_reclaim(self, c: _Ctr, op: _Op) -> None:
        if not op.reported:
            if op.done_bytes >= op.target:
                self._report(op, ok=True)
            else:
                self._report(
                    op,
                    ok=False,
                    error=f"reclaimed {format_size(op.done_bytes)} of {format_size(op.target)}",
                    errno=errno_mod.EAGAIN,
                )
        if op in c.reclaims:
            c.reclaims.remove(op)

    def _migrate_now(self, c: _Ctr, nodes: frozenset[int]) -> None:
        """Move pages off nodes outside ``nodes`` at once (ensure on an existing cgroup)."""
        for kind in ("anon", "file"):
            d = c.anon if kind == "anon" else c.file
            for n in [m for m in sorted(d) if m not in nodes]:
                amount = d[n]
                left = amount
                for m in sorted(nodes):
                    take = min(left, self._nodes[m].size - self._used[m])
                    if take > 0:
                        self._put(c, kind, n, -take)
                        self._put(c, kind, m, take)
                        left -= take
