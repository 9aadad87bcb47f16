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

What a backend reports (usage, cgroup state, events, op results) is plain data in
``zoned.model.host``. Errors are ``zoned.errors.BackendError`` subclasses; a vanished
cgroup is ``CgroupGone``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from zoned.config.decl import ContainerDecl
from zoned.errors import Unsupported
from zoned.model.host import CgroupState, Event, NodeMemory, OpResult, Usage
from zoned.model.zonemap import Topology


class Backend(abc.ABC):
    """What the engine needs from a host. Implementations must be safe to call from the
    engine's thread only; slow work runs on their own workers and is reported as events.
    """

    name: str = "abstract"
    #: The tripwire holds an allocating task inside the kernel, possibly with its mmap lock
    #: held (v2's ``memory.high`` throttles inside one ``MAP_POPULATE``, and inside a
    #: fault that holds a VMA lock), and a ``cpuset.mems`` write needs that lock: the
    #: engine raises the receiver's tripwire to its new capacity while the write is in
    #: flight, as soon as every task may allocate on the new node (``mems_reached``; sooner
    #: would let a task not yet moved fill the old node). False where the held task holds
    #: no lock (v1's limit: it waits at the end of its page fault): the tripwire moves once
    #: the write returned.
    raise_tripwire_before_give: bool = False

    def release_hold(self, name: str) -> bool:
        """Stop holding the container's tasks at its tripwire, when the tripwire holds them
        (v1's limit with the OOM killer off) and nothing can be lent: the kernel then
        decides inside its zones, as without zoned. The tripwire still notifies; the next
        ``arm_tripwire`` holds again. True when a hold was released."""
        return False

    def mems_reached(self, name: str, nodes: frozenset[int]) -> bool:
        """Whether every task of the container may already allocate on all of ``nodes``
        (a ``cpuset.mems`` write updates the tasks one at a time, and may block on one).
        Hosts that cannot tell say True."""
        return True

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds on this host's clock (monotonic; virtual on the simulated host)."""

    @abc.abstractmethod
    def topology(self) -> Topology:
        """The nodes with their current free memory."""

    @abc.abstractmethod
    def node_memory(self) -> Mapping[int, NodeMemory]:
        """Each memory node's total, free and file memory now."""

    def node_free_lists(self) -> Mapping[int, int]:
        """Bytes each node holds free on per-CPU lists, which ``NodeMemory.free`` does
        not count ({} where the host cannot say). Read on demand, not every step."""
        return {}

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

    def can_reclaim_node(self, node: int) -> bool:
        """Whether :meth:`start_node_reclaim` can reclaim ``node`` on this host (the
        kernel's ``nodeN/reclaim``, Linux 6.16+). False by default."""
        return False

    def start_node_reclaim(self, name: str, node: int, nbytes: int, deadline_s: float) -> int:
        """Begin reclaiming ``nbytes`` from node ``node`` alone, on behalf of ``name`` (the
        kernel's reclaim names no cgroup: with zones a node has one owner, so this is
        directed reclaim of that owner's pages there). Returns an operation id at once; an
        OP_FINISHED event follows, its ``OpResult.reclaimed`` the node's used memory drop
        and EAGAIN when less than asked was reclaimed. Raises ``Unsupported`` where
        :meth:`can_reclaim_node` is False."""
        raise Unsupported(f"the {self.name} backend cannot reclaim one node")

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
