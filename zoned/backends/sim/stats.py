"""What the simulator records: a ``Sample`` every ``sample_ms``, and run statistics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zoned.backends.sim.state import _Ctr
from zoned.model.host import (
    Event,
    NodeUsage,
)


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


def collect_stats(ctrs: Iterable[_Ctr], events: Sequence[Event], now: float) -> SimStats:
    """The run's statistics so far, from the containers' counters and every event."""
    ctrs = list(ctrs)
    counts: dict[str, int] = {}
    for e in events:
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
        for c in ctrs
    }
    return SimStats(
        duration_s=now,
        containers=cs,
        bytes_migrated=sum(c.bytes_migrated for c in ctrs),
        events=counts,
    )
