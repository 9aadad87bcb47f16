"""What the policy sees: one frozen picture of the host, built by the engine each step.

The policy never reads files or asks the backend; everything it decides on is here, so a
test can build a snapshot by hand and check the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class ContainerView:
    """One container now (bytes; times in seconds on the engine's clock)."""

    name: str
    nodes: frozenset[int]  # the nodes the zone map gives it
    current: int  # everything its memcg holds
    anon: int  # anonymous memory
    file: int  # page cache, shmem included
    per_node: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    tripwire: int | None = None  # what the engine last armed
    last_change: float | None = None  # when it last gained or lost a node
    stalled: bool = False  # a pressure event (PSI trigger: real stall) arrived this step
    stall_ms: int = 0  # the stall it reported ("some" ms per PSI window), 0 if unknown
    tripped: bool = False  # a tripwire event arrived this step (a wake-up, not a decision)
    oom_kills: int = 0  # kernel OOM kills reported this step
    pending: tuple[str, ...] = ()  # operations in flight that involve it, in words
    shmem: int = 0  # the part of ``file`` that cannot be dropped without swap (tmpfs)
    # When the usage figures above were read (None: at the snapshot's time). The engine
    # re-reads a quiet container only every sweep; a rate is measured from this time.
    read_at: float | None = None

    def read_time(self, now: float) -> float:
        """When its figures were read: ``read_at``, or ``now`` if that is unknown."""
        return now if self.read_at is None else self.read_at

    @property
    def unreclaimable(self) -> int:
        """What the kernel cannot drop: everything but droppable page cache (anon, shmem,
        kernel memory).

        Never less than ``anon + shmem``; this is what "anon" means in reasons."""
        return max(self.anon + self.shmem, self.current - (self.file - self.shmem))


@dataclass(frozen=True)
class NodeView:
    """One memory node now (bytes); ``reserve``: what the kernel keeps free there."""

    id: int
    total: int
    free: int
    file: int = 0
    reserve: int = 0

    @property
    def usable(self) -> int:
        """What containers can fill: MemTotal less the kernel's reserve."""
        return self.total - self.reserve


@dataclass(frozen=True)
class Snapshot:
    """The host at time ``at``: containers by name, memory nodes by id, and the nodes that
    an operation in flight is moving (nobody else may take them)."""

    at: float
    containers: Mapping[str, ContainerView]
    nodes: Mapping[int, NodeView]
    busy_nodes: frozenset[int] = frozenset()

    def capacity(self, nodes: frozenset[int] | set[int]) -> int:
        """What containers can fill on ``nodes`` (bytes: ``NodeView.usable``); unknown
        nodes count as 0."""
        return sum(self.nodes[n].usable for n in nodes if n in self.nodes)
