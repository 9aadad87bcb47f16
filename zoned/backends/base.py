"""The one interface between the engine and a host.

A backend does I/O and never decides. Three implementations: ``cgroup2`` (unified
hierarchy), ``cgroup1`` (split cpuset and memory hierarchies) and ``sim`` (a deterministic
simulated host on a virtual clock).

The loop is the same on every host::

    while True:
        events = backend.wait(timeout_s)   # real: epoll; sim: advances virtual time
        actions = policy(snapshot, ...)
        ... backend.start_set_nodes(...)    # returns at once; the end comes as an event

Slow operations (a ``cpuset.mems`` write migrates pages and blocks until done; directed
reclaim) are started and return an operation id at once; their end arrives as an
``OpFinished`` event, so one slow write never blocks the handling of other events.

Errors are ``zoned.errors.BackendError`` subclasses; a vanished cgroup is ``CgroupGone``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from zoned.config.decl import ContainerDecl
from zoned.errors import Unsupported
from zoned.model.zonemap import Topology

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
    """A node's memory now (bytes), from ``nodeN/meminfo`` or the simulator."""

    total: int
    free: int
    file: int


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
    REWARM = "rewarm"  # the daemon's shared-zone re-warm (zoned.shared.rewarm) on a worker


@dataclass(frozen=True)
class OpResult:
    """How a finished slow operation ended; the backend keeps it until ``op_result`` asks."""

    op: int
    kind: OpKind
    container: str
    ok: bool
    nodes: frozenset[int] = frozenset()  # SET_NODES: what the kernel now holds (effective)
    left_behind: int = 0  # SET_NODES: bytes still on nodes no longer allowed
    reclaimed: int = 0  # RECLAIM: bytes actually reclaimed
    error: str = ""
    errno: int | None = None
    seconds: float = 0.0  # how long it took


# ---------------------------------------------------------------------------------------


class Backend(abc.ABC):
    """What the engine needs from a host. Implementations must be safe to call from the
    engine's thread only; slow work runs on their own workers and is reported as events.
    """

    name: str = "abstract"

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds on this host's clock (monotonic; virtual on the simulated host)."""

    @abc.abstractmethod
    def topology(self) -> Topology:
        """The nodes with their current free memory."""

    @abc.abstractmethod
    def node_memory(self) -> Mapping[int, NodeMemory]:
        """Each memory node's total, free and file memory now."""

    @abc.abstractmethod
    def existing(self) -> Mapping[str, CgroupState]:
        """Containers already present under zoned's parent (or at adopted paths), by name:
        what a restart adopts without rewriting anything."""

    @abc.abstractmethod
    def ensure(self, decl: ContainerDecl, nodes: frozenset[int]) -> CgroupState:
        """Create the container's cgroup (or adopt ``decl.cgroup``) with ``nodes``.

        Writes nothing that already holds the right value. A freshly created cgroup has no
        pages, so setting its nodes here is quick and synchronous.
        """

    @abc.abstractmethod
    def release(self, name: str) -> None:
        """Stop managing a container: remove the cgroup zoned created if it is empty, leave
        adopted ones as they are. Missing is not an error."""

    @abc.abstractmethod
    def state(self, name: str) -> CgroupState:
        """What the host holds for the container now. Raises CgroupGone."""

    @abc.abstractmethod
    def usage(self, name: str) -> Usage:
        """The container's memory now. Raises CgroupGone."""

    @abc.abstractmethod
    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        """Begin giving the container exactly ``nodes`` (pages on removed nodes migrate).

        Returns an operation id at once; an OP_FINISHED event with that id follows.
        """

    @abc.abstractmethod
    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        """Begin directed reclaim of ``nbytes`` from the container (page cache first).

        Returns an operation id at once; an OP_FINISHED event with that id follows.
        """

    @abc.abstractmethod
    def op_result(self, op: int) -> OpResult:
        """The result of a finished operation (KeyError if unknown or not finished)."""

    @abc.abstractmethod
    def arm_tripwire(self, name: str, nbytes: int) -> None:
        """Fire one TRIPWIRE event when the container's usage crosses ``nbytes``.

        Re-arming replaces the previous tripwire. Raises CgroupGone.
        """

    @abc.abstractmethod
    def processes(self, name: str) -> Sequence[int]:
        """PIDs in the container now (empty if gone)."""

    @abc.abstractmethod
    def wait(self, timeout_s: float | None) -> list[Event]:
        """Block until at least one event or ``timeout_s`` passes; return what happened.

        Does nothing while nothing happens (no busy polling). The simulated host advances
        its virtual clock instead of sleeping.
        """

    def attach(self, name: str, pid: int) -> None:
        """Move a process, all its threads, into the container.

        Optional: backends that cannot move processes raise ``Unsupported`` (the default).
        Raises CgroupGone when the container's cgroup or the process is gone (ESRCH).
        """
        raise Unsupported(f"the {self.name} backend cannot move processes")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file descriptors and workers. Safe to call twice."""
