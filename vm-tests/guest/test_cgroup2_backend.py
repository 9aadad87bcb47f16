"""Cgroup2Backend on a real 6.1 kernel (numa=fake=8, v2): pages go where zoned puts them.

Runs inside a vm-tests guest (``ZONED_VM_CGROUP=v2``). Allocations are small (TCG is
slow). Every wait is bounded by a deadline; no test sleeps.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.support.cgroups import CountingFs
from tests.support.numa import anon_pages_per_node, stray_bytes
from tests.support.procs import AllocatingChild
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import WriteRefused
from zoned.kernel.cgroupfs import CgroupFs
from zoned.model.host import Event, EventKind
from zoned.model.sizes import MIB

from .cgtools import remove_tree, write
from .conftest import BOOT, Finding

pytestmark = pytest.mark.boot(cgroup="v2", numa="8")  # nodes 1-6 by id

ROOT = Path("/sys/fs/cgroup")
PARENT = "zoned-vmtest-cg2"
PAGE = os.sysconf("SC_PAGE_SIZE")

# Waits for a process to start and touch ~100 MB: seconds under TCG, so generous bounds.
START_S = 60.0
MIGRATE_S = 120.0


def allocator(fs: CgroupFs, cgroup: str, nbytes: int) -> AllocatingChild:
    """A child that allocates ``nbytes`` of anonymous memory inside ``cgroup``."""
    return AllocatingChild(nbytes, partial(fs.move_pid, cgroup))


def fds_on(suffix: str) -> list[int]:
    """This process's open fds whose file path ends with ``suffix``."""
    out: list[int] = []
    for p in Path("/proc/self/fd").iterdir():
        try:
            target = str(p.readlink())
        except OSError:
            continue  # the listing's own fd, closed meanwhile
        if target.endswith(suffix):
            out.append(int(p.name))
    return out


def wait_for(
    backend: Cgroup2Backend, want: Callable[[Event], bool], deadline_s: float
) -> tuple[Event | None, list[Event]]:
    """Events until one matches ``want`` or the deadline passes: (match, all seen)."""
    end = time.monotonic() + deadline_s
    seen: list[Event] = []
    while (left := end - time.monotonic()) > 0:
        for ev in backend.wait(left):
            seen.append(ev)
            if want(ev):
                return ev, seen
    return None, seen


def decl(name: str) -> ContainerDecl:
    return ContainerDecl(name, Amount.nodes(1), Amount.nodes(2))


@pytest.fixture
def backends() -> Iterator[list[Cgroup2Backend]]:
    made: list[Cgroup2Backend] = []
    remove_tree(ROOT / PARENT, ROOT)
    yield made
    for b in made:
        b.close()
    write(ROOT / "cgroup.procs", str(os.getpid()))  # prepare() moved this process
    remove_tree(ROOT / PARENT, ROOT)


def new_backend(made: list[Cgroup2Backend], fs: CgroupFs | None = None) -> Cgroup2Backend:
    b = Cgroup2Backend(ROOT, PARENT, fs=fs)
    made.append(b)
    return b


@pytest.fixture
def allocators() -> Iterator[list[AllocatingChild]]:
    made: list[AllocatingChild] = []
    yield made
    for a in made:
        a.stop()


def test_pages_go_where_zoned_puts_them_and_follow_a_move(
    backends: list[Cgroup2Backend], allocators: list[AllocatingChild], finding: Finding
) -> None:
    b = new_backend(backends)
    b.ensure(decl("a"), frozenset({2}))
    b.ensure(decl("b"), frozenset({4}))
    own = Path("/proc/self/cgroup").read_text().strip()
    assert own == f"0::/{PARENT}/zoned.daemon"  # the no-internal-process rule, kept
    size = 100 * MIB
    a = allocator(b.fs, f"{PARENT}/a", size)
    bb = allocator(b.fs, f"{PARENT}/b", size)
    allocators += [a, bb]
    assert a.wait_ready(START_S) and bb.wait_ready(START_S)

    ua, ub = b.usage("a"), b.usage("b")
    assert ua.per_node[2].anon >= 0.95 * size, ua
    assert ub.per_node[4].anon >= 0.95 * size, ub
    assert sum(u.anon for n, u in ua.per_node.items() if n != 2) < 1 * MIB
    assert sum(u.anon for n, u in ub.per_node.items() if n != 4) < 1 * MIB
    maps_a = anon_pages_per_node(a.pid)
    assert maps_a.get(2, 0) * PAGE >= 0.95 * size, maps_a
    # A few interpreter-startup pages can predate the move into the cgroup and stay put.
    assert stray_bytes(maps_a, {2}) < 1 * MIB, maps_a
    maps_b = anon_pages_per_node(bb.pid)
    assert stray_bytes(maps_b, {4}) < 1 * MIB, maps_b

    t0 = time.monotonic()
    op = b.start_set_nodes("a", frozenset({3}), MIGRATE_S)
    ev, seen = wait_for(b, lambda e: e.kind is EventKind.OP_FINISHED and e.op == op, MIGRATE_S)
    took = time.monotonic() - t0
    assert ev is not None, seen
    res = b.op_result(op)
    finding(
        "v2 cpuset.mems write moving ~100 MiB anon (TCG): seconds, left behind",
        {"seconds": round(res.seconds, 2), "wall": round(took, 2), "left_behind": res.left_behind},
    )
    assert res.ok, res
    assert res.nodes == frozenset({3})
    assert res.left_behind < 16 * MIB  # shared library pages may stay behind
    ua = b.usage("a")
    assert ua.per_node[3].anon >= 0.95 * size, ua
    assert ua.per_node[2].anon < 1 * MIB, ua
    maps_a = anon_pages_per_node(a.pid)
    assert stray_bytes(maps_a, {3}) < 1 * MIB, maps_a
    assert b.state("a").nodes == frozenset({3})
    after_b = anon_pages_per_node(bb.pid)
    assert after_b.get(4, 0) * PAGE >= 0.95 * size, after_b  # the neighbour did not move
    assert stray_bytes(after_b, {4}) < 1 * MIB, after_b


def test_tripwire_and_psi_trigger(
    backends: list[Cgroup2Backend], allocators: list[AllocatingChild], finding: Finding
) -> None:
    b = new_backend(backends)
    b.ensure(decl("t"), frozenset({5}))
    psi_fds = fds_on(f"{PARENT}/t/memory.pressure")
    assert len(psi_fds) == 1  # the trigger's fd is open (and armed: a second write is EBUSY)
    fd = psi_fds[0]
    with pytest.raises(OSError) as info:
        os.write(fd, b"some 100000 1000000\0")
    assert info.value.errno == errno.EBUSY
    finding("v2 second PSI trigger on one fd", errno.errorcode[errno.EBUSY])

    wire = 60 * MIB
    b.arm_tripwire("t", wire)
    alloc = allocator(b.fs, f"{PARENT}/t", 100 * MIB)
    allocators.append(alloc)
    ev, seen = wait_for(b, lambda e: e.kind is EventKind.TRIPWIRE, START_S)
    assert ev is not None, seen
    latency = time.monotonic() - alloc.started
    events_text = b.fs.read(f"{PARENT}/t", "memory.events")
    finding(
        "v2 memory.high tripwire: usage at the TRIPWIRE event, s after the child began",
        {"usage": ev.value, "tripwire": wire, "s": round(latency, 2), "events": events_text},
    )
    assert ev.container == "t"
    assert ev.value is not None and ev.value >= wire
    # Throttled above memory.high, the allocation stalls: the PSI trigger should fire.
    pev, seen2 = wait_for(b, lambda e: e.kind is EventKind.PRESSURE, 30.0)
    finding(
        "v2 PSI some 100ms/1s under memory.high throttling: fired, s after the child began",
        {"fired": pev is not None, "s": round(time.monotonic() - alloc.started, 2)},
    )
    assert [e.kind for e in seen + seen2].count(EventKind.TRIPWIRE) == 1  # once per arming
    b.disarm_tripwire("t")
    assert alloc.wait_ready(START_S)
    assert pev is not None, seen2


def test_cpuset_oom_kill_is_reported(
    backends: list[Cgroup2Backend], allocators: list[AllocatingChild], finding: Finding
) -> None:
    b = new_backend(backends)
    b.ensure(decl("o"), frozenset({6}))
    node6 = b.node_memory()[6].total
    alloc = allocator(b.fs, f"{PARENT}/o", node6 + 64 * MIB)  # more than the zone holds
    allocators.append(alloc)
    ev, seen = wait_for(b, lambda e: e.kind is EventKind.OOM_KILL, START_S)
    assert ev is not None, seen
    counters = b.fs.read_keyed(f"{PARENT}/o", "memory.events")
    finding("v2 cpuset OOM: memory.events", counters)
    assert counters["oom_kill"] >= 1
    assert not alloc.wait_ready(START_S)  # killed: EOF, not ready
    assert EventKind.OOM not in [e.kind for e in seen]  # a cpuset OOM is not a memcg OOM


def test_errnos_through_the_backend(
    backends: list[Cgroup2Backend], allocators: list[AllocatingChild], finding: Finding
) -> None:
    b = new_backend(backends)
    b.ensure(decl("e"), frozenset({1}))
    op = b.start_set_nodes("e", frozenset({99}), MIGRATE_S)
    ev, seen = wait_for(b, lambda e: e.op == op, MIGRATE_S)
    assert ev is not None, seen
    finding("v2 cpuset.mems=99 (no such node) via the backend", ev.errno)
    assert (ev.ok, ev.errno) == (False, errno.EINVAL)
    alloc = allocator(b.fs, f"{PARENT}/e", 4 * MIB)
    allocators.append(alloc)
    assert alloc.wait_ready(START_S)
    if BOOT["kernel"] not in ("6.1", "6.12"):
        # 7.3 accepts it (test_cgroup_v2.py::test_emptying_mems_of_populated_cpuset): the
        # cgroup falls back to its parent's nodes. zoned never writes an empty set.
        b.fs.write(f"{PARENT}/e", "cpuset.mems", "\n")
        finding("v2 emptying cpuset.mems of a populated cgroup via CgroupFs", "ok")
        parent = b.fs.read(PARENT, "cpuset.mems.effective").strip()
        assert b.fs.read(f"{PARENT}/e", "cpuset.mems.effective").strip() == parent
        return
    with pytest.raises(WriteRefused) as info:
        b.fs.write(f"{PARENT}/e", "cpuset.mems", "\n")
    finding("v2 emptying cpuset.mems of a populated cgroup via CgroupFs", info.value.errno_name)
    assert info.value.errno == errno.ENOSPC
    assert b.state("e").nodes == frozenset({1})


def test_restart_writes_nothing_and_gone_is_reported(
    backends: list[Cgroup2Backend], allocators: list[AllocatingChild], finding: Finding
) -> None:
    b1 = new_backend(backends)
    b1.ensure(decl("r"), frozenset({2, 3}))
    b1.ensure(decl("g"), frozenset({1}))
    b1.arm_tripwire("r", 100 * MIB)
    alloc = allocator(b1.fs, f"{PARENT}/r", 8 * MIB)
    allocators.append(alloc)
    assert alloc.wait_ready(START_S)
    b1.close()
    backends.remove(b1)

    fs = CountingFs(ROOT)
    b2 = new_backend(backends, fs)
    found = b2.existing()
    assert sorted(found) == ["g", "r"]
    assert found["r"].pids == (alloc.pid,)
    assert found["r"].tripwire == 100 * MIB
    b2.ensure(decl("r"), frozenset({2, 3}))
    b2.ensure(decl("g"), frozenset({1}))
    b2.arm_tripwire("r", 100 * MIB)
    assert fs.writes == []  # no page migrated, no process moved, nothing rewritten

    t0 = time.monotonic()
    (ROOT / PARENT / "g").rmdir()
    ev, seen = wait_for(b2, lambda e: e.kind is EventKind.GONE, 30.0)
    assert ev is not None, seen
    finding(
        "v2 rmdir of a watched cgroup: which fd reported it, s after rmdir",
        {"detail": ev.detail, "s": round(time.monotonic() - t0, 3)},
    )
    assert ev.container == "g"
