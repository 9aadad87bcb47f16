"""What a host reports, as plain frozen data: usage, cgroup state, events, op results.

Backends fill these; the engine, the kernel readers and the service read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

# zoned's own cgroups under its parent (the v2 daemon leaf, the shared-zone helper's
# cgroup) start with this; they are never containers, and declarations may not use it.
INTERNAL_PREFIX = "zoned."


def is_internal(name: str) -> bool:
    """Whether ``name`` is one of zoned's own cgroups rather than a container."""
    return name.startswith(INTERNAL_PREFIX)


# ---------------------------------------------------------------------------------------
# What a backend reports


@dataclass(frozen=True)
class NodeUsage:
    """A container's memory on one node, in bytes."""

    anon: int = 0
    file: int = 0
    other: int = 0  # kernel stacks, slab and the like counted per node where the kernel does

    @property
    def total(self) -> int:
        return self.anon + self.file + self.other


@dataclass(frozen=True)
class Usage:
    """A container's memory as its memcg reports it (bytes)."""

    current: int  # memory.current / memory.usage_in_bytes: everything charged
    anon: int
    file: int  # page cache as memory.stat counts it, shmem included
    per_node: Mapping[int, NodeUsage] = field(default_factory=dict)
    # The part of ``file`` that cannot be dropped without swap: tmpfs and shared anonymous
    # memory (memory.stat ``shmem``). Measured in the VM: a container filling its zones
    # with shmem was never grown while this counted as droppable page cache.
    shmem: int = 0


@dataclass(frozen=True)
class NodeMemory:
    """A node's memory now (bytes), from ``nodeN/meminfo`` or the simulator. ``reserve``:
    what the kernel keeps free there (its zones' ``min`` watermarks), usable by no
    container."""

    total: int
    free: int
    file: int
    reserve: int = 0


@dataclass(frozen=True)
class CgroupState:
    """What the host holds for a container right now."""

    name: str
    path: str  # cgroup path relative to the hierarchy root
    nodes: frozenset[int]  # the effective memory nodes (cpuset.mems.effective)
    pids: tuple[int, ...] = ()
    tripwire: int | None = None  # bytes, when one is armed


# ---------------------------------------------------------------------------------------
# Events: one stream from every source


class EventKind(Enum):
    TRIPWIRE = "tripwire"  # usage crossed the armed tripwire (memory.high / threshold)
    PRESSURE = "pressure"  # PSI trigger or v1 pressure level
    OOM = "oom"  # the memcg hit its limit (memory.events oom / oom_control)
    OOM_KILL = "oom_kill"  # the kernel killed a process of the container
    GONE = "gone"  # the cgroup vanished
    OP_FINISHED = "op_finished"  # a started slow operation ended (ok or not)
    NODE_CHANGE = "node_change"  # a node went online or offline (uevent)


@dataclass(frozen=True)
class Event:
    """Something happened at ``at`` (seconds on the backend's clock)."""

    kind: EventKind
    at: float
    container: str | None = None
    detail: str = ""  # a few words for logs: "some 120ms/1s", "oom_kill 1", "EBUSY"
    value: int | None = None  # bytes (usage at the tripwire), a counter, ...
    op: int | None = None  # with OP_FINISHED: the operation id
    ok: bool = True  # with OP_FINISHED: whether it succeeded
    errno: int | None = None  # with OP_FINISHED and ok=False, when an OS error caused it


class OpKind(Enum):
    SET_NODES = "set_nodes"
    RECLAIM = "reclaim"
    NODE_RECLAIM = "node_reclaim"  # nodeN/reclaim: one node, every memcg on it
    REWARM = "rewarm"  # the daemon's shared-zone re-warm (zoned.shared.zone.rewarm) on a worker


@dataclass(frozen=True)
class OpResult:
    """How a finished slow operation ended; the backend keeps it until ``op_result`` asks."""

    op: int
    kind: OpKind
    container: str
    ok: bool
    nodes: frozenset[int] = frozenset()  # SET_NODES: what the kernel now holds (effective)
    left_behind: int = 0  # SET_NODES: bytes still on nodes no longer allowed
    reclaimed: int = 0  # RECLAIM: bytes actually reclaimed; NODE_RECLAIM: the node's drop
    error: str = ""
    errno: int | None = None
    seconds: float = 0.0  # how long it took
