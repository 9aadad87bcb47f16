"""The simulated host's inputs (nodes, knobs, isolation mode) and internal state."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from zoned.backends.sim.workload import WorkloadRun, WorkloadSpec
from zoned.config.decl import ContainerDecl
from zoned.model.host import (
    OpKind,
)
from zoned.model.sizes import GIB, MIB


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
    # A 6.16+ kernel's nodeN/reclaim (Backend.can_reclaim_node); off by default, as on the
    # 6.1 the model was measured on.
    node_reclaim: bool = False
    # The engine's reaction time: every write of one engine step (the step's reads,
    # decision and writes) takes effect this long after the step began, drawn per step
    # from a log-normal with this median and 99th percentile (0: at once, in the step's
    # own tick), seeded. Measured (docs/benchmarks.md, "Tripwire to action"): kernel
    # event to cpuset.mems write 41.7 / 72.5 ms p50 / p99 under TCG on 6.1: TCG_REACTION.
    reaction_p50_ms: float = 0.0
    reaction_p99_ms: float = 0.0
    reaction_seed: int = 0

    def __post_init__(self) -> None:
        if self.step_ms <= 0 or self.sample_ms < self.step_ms:
            raise ValueError("step_ms must be > 0 and sample_ms >= step_ms")
        if min(self.alloc_rate, self.reclaim_rate, self.migrate_bandwidth) <= 0:
            raise ValueError("rates must be above zero")
        if self.reaction_p50_ms < 0 or self.reaction_p99_ms < self.reaction_p50_ms:
            raise ValueError("reaction: need 0 <= reaction_p50_ms <= reaction_p99_ms")


# The measured tripwire → write distribution (6.1 under QEMU TCG, end to end), p50 / p99 ms.
TCG_REACTION = (41.7, 72.5)


@dataclass
class _Op:
    id: int
    kind: OpKind
    container: str
    called: int  # tick of the call
    deadline: int  # tick
    nodes: frozenset[int] = frozenset()  # SET_NODES: asked; NODE_RECLAIM: the node
    target: int = 0  # RECLAIM, NODE_RECLAIM: bytes asked
    started: int | None = None  # SET_NODES: tick the write began (queued before)
    from_nodes: frozenset[int] = frozenset()
    keep: int = 0  # bytes to leave on from_nodes
    bw_tick: int = 0
    done_bytes: int = 0  # moved or reclaimed
    reported: bool = False
    not_before: int = 0  # tick: the engine's write reaches the kernel (reaction delay)


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
    # (run, tick): ``run`` has no work before ``tick`` (not busy; ``next_wake`` is
    # ``tick``), so the physics skips it until then. Valid only while ``run`` is ``self.run``:
    # nothing but its own ``advance`` changes a run that waits.
    asleep: tuple[WorkloadRun, int] | None = None
    pid: int | None = None
    lives: int = 0
    restart_at: int | None = None
    life_start: int = 0  # tick the current life began
    kill_streak: int = 0  # OOM kills in a row (each life shorter than the backoff reset)
    tripwire: int | None = None
    tripwire_fired: bool = False
    high_due: tuple[int, int] | None = None  # (tick, bytes): a delayed memory.high write
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
