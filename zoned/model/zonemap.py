"""Plain frozen data about the machine and the zone map."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class NodeInfo:
    """One NUMA node as the kernel shows it (sizes in bytes, from ``nodeN/meminfo``)."""

    id: int
    mem_total: int
    mem_free: int
    file_pages: int
    cpus: tuple[int, ...] = ()
    distances: tuple[int, ...] = ()  # to node 0, 1, ... in ``node/online`` order

    @property
    def has_memory(self) -> bool:
        return self.mem_total > 0


@dataclass(frozen=True)
class Topology:
    """The machine: its online nodes in id order, and what the boot said about NUMA."""

    nodes: tuple[NodeInfo, ...]
    fake_numa: str | None = None  # the argument of numa=fake= on the kernel command line
    numa_balancing: bool | None = None  # kernel.numa_balancing; None when unknown
    cmdline: str = ""

    def node(self, node_id: int) -> NodeInfo:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes)

    @property
    def memory_node_ids(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes if n.has_memory)


class OwnerKind(Enum):
    RESERVED = "reserved"
    SHARED = "shared"
    FREE = "free"
    CONTAINER = "container"
    MEMORYLESS = "memoryless"  # a node with no memory can be owned by nobody


@dataclass(frozen=True)
class Owner:
    kind: OwnerKind
    container: str | None = None

    def __str__(self) -> str:
        return (
            self.container
            if self.kind is OwnerKind.CONTAINER and self.container
            else (self.kind.value)
        )

    @classmethod
    def of(cls, container: str) -> Owner:
        return cls(OwnerKind.CONTAINER, container)


RESERVED = Owner(OwnerKind.RESERVED)
SHARED = Owner(OwnerKind.SHARED)
FREE = Owner(OwnerKind.FREE)
MEMORYLESS = Owner(OwnerKind.MEMORYLESS)


@dataclass(frozen=True)
class Assignment:
    """Who owns a node, since when (seconds on the engine's clock), and why."""

    node: int
    owner: Owner
    reason: str
    since: float = 0.0


@dataclass(frozen=True)
class ZoneMap:
    """node → Assignment; exactly one owner per node by construction."""

    assignments: Mapping[int, Assignment] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Assignment]:
        return iter(self.assignments[n] for n in sorted(self.assignments))

    def owner(self, node: int) -> Owner:
        return self.assignments[node].owner

    def nodes_of(self, container: str) -> frozenset[int]:
        return frozenset(n for n, a in self.assignments.items() if a.owner == Owner.of(container))

    def nodes_with(self, owner: Owner) -> frozenset[int]:
        return frozenset(n for n, a in self.assignments.items() if a.owner == owner)

    def with_assignment(self, a: Assignment) -> ZoneMap:
        """A new map with ``a`` replacing whatever owned ``a.node``."""
        d = dict(self.assignments)
        d[a.node] = a
        return ZoneMap(d)
