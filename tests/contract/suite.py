"""What every Backend must do, written once and run against every host.

A runner module subclasses :class:`BackendContract` (pytest collects the subclass, named
``Test...``) and provides a ``harness`` fixture yielding a :class:`Harness` for its host.
The hosts and where they run:

- ``tests/test_contract_sim.py``: SimBackend (virtual clock);
- ``tests/test_contract_fake.py``: Cgroup1Backend and Cgroup2Backend on fake trees;
- ``tests/test_contract_real_v1.py``: Cgroup1Backend on this machine's v1 (root, 1 node);
- ``vm-tests/guest/test_contract.py``: Cgroup2Backend (6.1, 6.12) and Cgroup1Backend
  (6.1) in QEMU guests with ``numa=fake=8``.

A harness states what its host cannot do as :class:`Cap` flags with a reason (a fake tree
has no memory to charge; a one-node machine cannot move pages); those contract items skip
with that reason. Everything else must hold on every host.

Clocks: every wait is bounded by a deadline on the backend's own clock (``now()``:
monotonic on real hosts, virtual on the simulator), so the same test drives both. No test
sleeps: it waits for events, a child's answer, or a deadline.
"""

from __future__ import annotations

import abc
import contextlib
import errno
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from tests.support.cgroups import CountingFs
from tests.support.procs import AllocatingChild
from zoned.backends.base import Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import BackendError, CgroupGone, Unsupported
from zoned.kernel.cgroupfs import CgroupFs
from zoned.model.host import Event, EventKind, OpKind

MIB = 1 << 20


class Cap(Enum):
    """What a host can show. A harness lists the ones it lacks, with the reason."""

    WRITES = "writes"  # the harness sees every cgroup write: adoption must write nothing
    RESTART = "restart"  # the host outlives a backend instance: a new one adopts
    MEMORY = "memory"  # workloads really allocate and usage follows them
    MIGRATION = "migration"  # ≥ 2 nodes with real pages: pages follow a node move
    NOTIFY = "notify"  # the host signals changes: TRIPWIRE and GONE events
    OOM = "oom"  # a zone can be filled safely: the kernel's OOM kill


@dataclass(frozen=True)
class Plan:
    """What a test will do, for hosts that must know it up front (the simulator fixes
    workloads and faults when it is built): container → MiB its workload allocates, and
    the containers an outsider will remove. Real hosts ignore it."""

    workloads: Mapping[str, int] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()


class Watch:
    """Every event a backend reported during a test, and bounded waits for more."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.seen: list[Event] = []

    def pump(self, seconds: float) -> list[Event]:
        """Collect events for ``seconds`` of the backend's clock; return the new ones."""
        start = len(self.seen)
        end = self.b.now() + seconds
        while (left := end - self.b.now()) > 0:
            if not self._wait(left):
                break
        return self.seen[start:]

    def _wait(self, left: float) -> bool:
        """One ``wait``; False when it neither reported nor moved the clock (what is left
        is below the clock's resolution: the simulator's ticks)."""
        was = self.b.now()
        got = self.b.wait(left)
        self.seen += got
        return bool(got) or self.b.now() > was

    def until(self, want: Callable[[Event], bool], deadline_s: float, what: str) -> Event:
        """The first event (seen before or arriving now) matching ``want``; fails at the
        deadline with everything seen."""
        end = self.b.now() + deadline_s
        checked = 0
        while True:
            for ev in self.seen[checked:]:
                if want(ev):
                    return ev
            checked = len(self.seen)
            left = end - self.b.now()
            if left <= 0 or not self._wait(left):
                pytest.fail(f"no {what} within {deadline_s} s; events: {self.seen}")

    def count(self, kind: EventKind, container: str) -> int:
        return sum(1 for e in self.seen if e.kind is kind and e.container == container)


class Workload(Protocol):
    """A process in a container that allocates anonymous memory once, then holds it."""

    pid: int

    def ready(self, watch: Watch, deadline_s: float) -> bool:
        """True once the allocation is done; False if the process died (was killed)."""
        ...

    def stop(self) -> None: ...


class Harness(abc.ABC):
    """One host the contract runs on. Owns everything it creates and removes it in
    :meth:`close`, whatever happened."""

    name: str = "abstract"
    #: Caps this host lacks → why (the contract items needing them skip with that); set
    #: by each harness's ``__init__`` (some only know once they look at the host).
    lacks: Mapping[Cap, str]
    alloc_mib: int = 64  # a workload's ordinary allocation
    oom_mib: int = 0  # an allocation larger than one zone (with Cap.OOM)
    deadline_s: float = 60.0  # bound for any one wait on this host
    settle_s: float = 0.5  # how long "no more events" is watched for
    event_s: float = 10.0  # bound for an event that follows something already seen

    def need(self, cap: Cap) -> None:
        if cap in self.lacks:
            pytest.skip(f"{self.name}: {self.lacks[cap]}")

    def has(self, cap: Cap) -> bool:
        return cap not in self.lacks

    @abc.abstractmethod
    def backend(self, plan: Plan | None = None) -> Backend:
        """A new backend instance over this harness's own parent cgroup."""

    @abc.abstractmethod
    def nodes(self) -> list[int]:
        """Memory nodes containers may be given (node 0 left out where there are more)."""

    @abc.abstractmethod
    def missing_node(self) -> int:
        """A node id that does not exist on this host."""

    def writes(self) -> int:
        """Settings written and cgroups made so far (eventfd registrations excluded)."""
        raise NotImplementedError(f"{self.name} cannot count writes")

    @abc.abstractmethod
    def spawn(self, b: Backend, name: str, anon_mib: int) -> Workload:
        """Start a process in container ``name`` that allocates ``anon_mib`` MiB."""

    @abc.abstractmethod
    def remove(self, watch: Watch, name: str) -> None:
        """Remove the container's cgroup behind the backend's back (an outsider's rmdir)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every process and remove every cgroup this harness made."""


def decl(name: str) -> ContainerDecl:
    return ContainerDecl(name, Amount.nodes(1), Amount.nodes(2))


# ---------------------------------------------------------------------------------------
# Pieces real hosts share (this machine and the VM guests)


class ProcessWorkload(AllocatingChild):
    """A child python in a real cgroup that allocates ``anon_mib`` MiB; see
    :class:`tests.support.procs.AllocatingChild`."""

    def __init__(self, anon_mib: int, move: Callable[[int], None]) -> None:
        """``move(pid)`` puts the child into the container before it allocates."""
        super().__init__(anon_mib * MIB, move)

    def ready(self, watch: Watch, deadline_s: float) -> bool:
        # The backend's kernel notifications stay pending (level-triggered fds, eventfd
        # counters) while this waits on the child; the next Watch call collects them.
        return self.said_ready(deadline_s)


class RealHarness(Harness):
    """Shared by real hosts: children, backends and the cgroup subtree to clean up."""

    def __init__(self, lacks: Mapping[Cap, str]) -> None:
        self.lacks = lacks
        self.made: list[Backend] = []
        self.children: list[ProcessWorkload] = []
        self.counters: list[CountingFs] = []

    def counting(self, root: Path) -> CgroupFs:
        fs = CountingFs(root)
        self.counters.append(fs)
        return fs

    def writes(self) -> int:
        return sum(len(fs.writes) for fs in self.counters)

    @abc.abstractmethod
    def move(self, b: Backend, name: str, pid: int) -> None:
        """Put ``pid`` into the container (Backend.attach where the backend has it)."""

    def spawn(self, b: Backend, name: str, anon_mib: int) -> Workload:
        w = ProcessWorkload(anon_mib, lambda pid: self.move(b, name, pid))
        self.children.append(w)
        return w

    def close_processes_and_backends(self) -> None:
        for w in self.children:
            w.stop()
        for b in self.made:
            b.close()


# ---------------------------------------------------------------------------------------
# The contract


class BackendContract:
    """The contract items. A runner subclasses this as ``Test<Host>Contract`` next to a
    ``harness`` fixture."""

    # -- ensure, state, adoption ---------------------------------------------------------

    def test_ensure_creates_with_exactly_the_nodes(self, harness: Harness) -> None:
        b = harness.backend()
        nodes = harness.nodes()
        want = frozenset(nodes[:2])  # two nodes where the host has them: not just "one"
        st = b.ensure(decl("c"), want)
        assert st.nodes == want
        assert b.state("c").nodes == want
        assert b.existing()["c"].nodes == want
        assert list(b.processes("c")) == []
        one = frozenset(nodes[-1:])
        assert b.ensure(decl("d"), one).nodes == one
        assert b.state("c").nodes == want  # the neighbour is untouched

    def test_ensure_twice_writes_nothing(self, harness: Harness) -> None:
        b = harness.backend()
        want = frozenset(harness.nodes()[:1])
        first = b.ensure(decl("c"), want)
        before = harness.writes() if harness.has(Cap.WRITES) else 0
        again = b.ensure(decl("c"), want)
        assert again == first
        if harness.has(Cap.WRITES):
            assert harness.writes() == before
        watch = Watch(b)
        ops = [e for e in watch.pump(harness.settle_s) if e.kind is EventKind.OP_FINISHED]
        assert ops == []

    def test_restart_finds_and_adopts_without_writing(self, harness: Harness) -> None:
        harness.need(Cap.RESTART)
        plan = Plan(workloads={"r": 8})
        b1 = harness.backend(plan)
        want = frozenset(harness.nodes()[:1])
        b1.ensure(decl("r"), want)
        b1.ensure(decl("zoned.shared"), want)  # zoned's own cgroup: never listed
        w = harness.spawn(b1, "r", 8)
        assert w.ready(Watch(b1), harness.deadline_s)
        assert set(b1.existing()) == {"r"}
        b1.close()

        b2 = harness.backend(plan)
        found = b2.existing()
        assert set(found) == {"r"}
        assert found["r"].nodes == want
        assert found["r"].pids == (w.pid,)
        before = harness.writes() if harness.has(Cap.WRITES) else 0
        st = b2.ensure(decl("r"), want)
        assert (st.nodes, st.pids) == (want, (w.pid,))
        if harness.has(Cap.WRITES):
            assert harness.writes() == before  # no page migrated, no process moved

    # -- slow operations -----------------------------------------------------------------

    def test_set_nodes_ends_with_op_finished(self, harness: Harness) -> None:
        nodes = harness.nodes()
        src, dst = frozenset(nodes[:1]), frozenset(nodes[-1:])  # the same on one node
        mib = harness.alloc_mib
        b = harness.backend(Plan(workloads={"m": mib}))
        b.ensure(decl("m"), src)
        watch = Watch(b)
        w = harness.spawn(b, "m", mib)
        assert w.ready(watch, harness.deadline_s)
        if harness.has(Cap.MIGRATION):
            assert src != dst
            on_src = b.usage("m").per_node[min(src)].anon
            assert on_src >= 0.9 * mib * MIB, b.usage("m")

        op = b.start_set_nodes("m", dst, harness.deadline_s)
        ev = watch.until(
            lambda e: e.kind is EventKind.OP_FINISHED and e.op == op,
            harness.deadline_s,
            f"OP_FINISHED for op {op}",
        )
        assert (ev.ok, ev.container) == (True, "m"), ev
        res = b.op_result(op)
        assert (res.ok, res.nodes, res.container) == (True, dst, "m"), res
        assert b.state("m").nodes == dst
        if harness.has(Cap.MIGRATION):
            u = b.usage("m")
            assert u.per_node[min(dst)].anon >= 0.9 * mib * MIB, u
            assert sum(nu.anon for n, nu in u.per_node.items() if n not in dst) < 4 * MIB, u
            assert res.left_behind < 16 * MIB, res  # shared-library pages may stay

    def test_a_node_that_does_not_exist_is_refused(self, harness: Harness) -> None:
        b = harness.backend()
        have = frozenset(harness.nodes()[:1])
        missing = frozenset({harness.missing_node()})
        b.ensure(decl("e"), have)
        op = b.start_set_nodes("e", missing, harness.deadline_s)
        ev = Watch(b).until(
            lambda e: e.kind is EventKind.OP_FINISHED and e.op == op,
            harness.deadline_s,
            f"OP_FINISHED for op {op}",
        )
        assert (ev.ok, ev.errno) == (False, errno.EINVAL), ev
        res = b.op_result(op)
        assert (res.ok, res.errno) == (False, errno.EINVAL), res
        assert b.state("e").nodes == have
        with pytest.raises(BackendError) as info:
            b.ensure(decl("f"), missing)
        assert info.value.errno == errno.EINVAL

    def test_node_reclaim_where_the_host_can(self, harness: Harness) -> None:
        node = harness.nodes()[0]
        b = harness.backend()
        b.ensure(decl("r"), frozenset({node}))
        if not b.can_reclaim_node(node):
            with pytest.raises(Unsupported):
                b.start_node_reclaim("r", node, MIB, harness.deadline_s)
            pytest.skip(f"{harness.name}: no nodeN/reclaim on this host")
        op = b.start_node_reclaim("r", node, MIB, harness.deadline_s)
        ev = Watch(b).until(
            lambda e: e.kind is EventKind.OP_FINISHED and e.op == op,
            harness.deadline_s,
            f"OP_FINISHED for op {op}",
        )
        # EAGAIN: the node had less than asked to give, the kernel's ordinary answer
        assert ev.ok or ev.errno == errno.EAGAIN, ev
        res = b.op_result(op)
        assert (res.kind, res.container) == (OpKind.NODE_RECLAIM, "r"), res
        assert b.state("r").nodes == frozenset({node})

    # -- memory and processes ------------------------------------------------------------

    def test_processes_lists_the_started_pid(self, harness: Harness) -> None:
        b = harness.backend(Plan(workloads={"p": 4}))
        b.ensure(decl("p"), frozenset(harness.nodes()[:1]))
        w = harness.spawn(b, "p", 4)
        assert w.ready(Watch(b), harness.deadline_s)
        assert list(b.processes("p")) == [w.pid]
        assert b.state("p").pids == (w.pid,)

    def test_usage_reflects_an_allocation(self, harness: Harness) -> None:
        harness.need(Cap.MEMORY)
        mib = harness.alloc_mib
        nodes = frozenset(harness.nodes()[:1])
        b = harness.backend(Plan(workloads={"u": mib}))
        b.ensure(decl("u"), nodes)
        before = b.usage("u")
        w = harness.spawn(b, "u", mib)
        assert w.ready(Watch(b), harness.deadline_s)
        after = b.usage("u")
        grown = after.current - before.current
        assert grown >= 0.9 * mib * MIB, (before, after)
        assert after.anon - before.anon >= 0.9 * mib * MIB, (before, after)
        assert after.anon > after.file, after  # anon dominated
        on_nodes = sum(after.per_node[n].anon for n in nodes if n in after.per_node)
        assert on_nodes >= 0.9 * mib * MIB, after

    # -- release and removal -------------------------------------------------------------

    def test_release_removes_a_created_container(self, harness: Harness) -> None:
        b = harness.backend(Plan(workloads={"busy": 4}))
        nodes = frozenset(harness.nodes()[:1])
        b.ensure(decl("x"), nodes)
        b.ensure(decl("busy"), nodes)
        w = harness.spawn(b, "busy", 4)
        assert w.ready(Watch(b), harness.deadline_s)
        b.release("x")
        assert "x" not in b.existing()
        with pytest.raises(CgroupGone):
            b.state("x")
        b.release("x")  # missing is not an error
        b.release("busy")  # populated: left as it is
        assert list(b.processes("busy")) == [w.pid]

    def test_removed_cgroup_raises_cgroup_gone(self, harness: Harness) -> None:
        b = harness.backend(Plan(removed=frozenset({"g"})))
        b.ensure(decl("g"), frozenset(harness.nodes()[:1]))
        harness.remove(Watch(b), "g")
        with pytest.raises(CgroupGone):
            b.state("g")
        with pytest.raises(CgroupGone):
            b.usage("g")
        assert list(b.processes("g")) == []

    def test_removed_cgroup_reports_gone(self, harness: Harness) -> None:
        harness.need(Cap.NOTIFY)
        b = harness.backend(Plan(removed=frozenset({"g"})))
        b.ensure(decl("g"), frozenset(harness.nodes()[:1]))
        b.ensure(decl("stay"), frozenset(harness.nodes()[:1]))
        watch = Watch(b)
        harness.remove(watch, "g")
        ev = watch.until(lambda e: e.kind is EventKind.GONE, harness.deadline_s, "GONE")
        assert ev.container == "g"
        watch.pump(harness.settle_s)
        assert watch.count(EventKind.GONE, "g") == 1, watch.seen
        assert watch.count(EventKind.GONE, "stay") == 0, watch.seen

    # -- notifications -------------------------------------------------------------------

    def test_tripwire_fires_once_when_crossed(self, harness: Harness) -> None:
        harness.need(Cap.NOTIFY)
        harness.need(Cap.MEMORY)
        mib = harness.alloc_mib
        b = harness.backend(Plan(workloads={"t": mib}))
        b.ensure(decl("t"), frozenset(harness.nodes()[:1]))
        wire = mib // 2 * MIB
        b.arm_tripwire("t", wire)
        watch = Watch(b)
        assert watch.pump(0.0) == []  # nothing before anything is allocated
        w = harness.spawn(b, "t", mib)
        ev = watch.until(lambda e: e.kind is EventKind.TRIPWIRE, harness.deadline_s, "TRIPWIRE")
        assert ev.container == "t"
        assert ev.value is not None and ev.value >= wire, ev
        # The allocation goes on above the wire (v2 throttles it at memory.high and may
        # hold it there: the contract does not say it completes); no second event.
        watch.pump(harness.settle_s)
        assert watch.count(EventKind.TRIPWIRE, "t") == 1, watch.seen
        w.stop()

    def test_oom_kill_when_anon_exceeds_the_zone(self, harness: Harness) -> None:
        harness.need(Cap.OOM)
        b = harness.backend(Plan(workloads={"o": harness.oom_mib}))
        node = harness.nodes()[-1]
        zone = b.node_memory()[node].total
        assert harness.oom_mib * MIB > zone  # the allocation cannot fit its zone
        b.ensure(decl("o"), frozenset({node}))
        watch = Watch(b)
        w = harness.spawn(b, "o", harness.oom_mib)
        assert not w.ready(watch, harness.deadline_s)  # killed before it got there
        ev = watch.until(lambda e: e.kind is EventKind.OOM_KILL, harness.event_s, "OOM_KILL")
        assert ev.container == "o"
        w.stop()  # reaped: a zombie is no process of the container either way
        assert list(b.processes("o")) == []


H = TypeVar("H", bound=Harness)


@contextlib.contextmanager
def closing(h: H) -> Iterator[H]:
    """Yield the harness; close it whatever the test did."""
    try:
        yield h
    finally:
        h.close()
