"""Cgroup1Backend on a real 6.1 kernel (numa=fake=8, v1 cpuset + memory under /run).

Two containers on different nodes, ~100 MiB of anonymous memory each: v1's
``memory.numa_stat`` (pages) and ``/proc/PID/numa_maps`` show the pages where zoned put
them; then one container's node is moved (``cpuset.memory_migrate=1``) and the pages
follow. Every wait is bounded; no test sleeps. Measured numbers go to findings (and by
hand to docs/kernel-checks.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.suite import ProcessWorkload, Watch
from tests.support.cgroups import remove_cgroup_tree
from tests.support.numa import anon_pages_per_node, numa_stat_pages
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.model.host import EventKind
from zoned.model.sizes import MIB

from .conftest import Finding

pytestmark = pytest.mark.boot(kernel="6.1", cgroup="v1", numa="8")  # nodes 3 and 4

CPUSET = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
MEMORY = Path(os.environ.get("ZONED_VM_CGROUP_V1_MEMORY", "/run/cgroup-v1/memory"))
PARENT = "zoned-vmtest-cg1"
PAGE = os.sysconf("SC_PAGE_SIZE")
SIZE = 100 * MIB
DEADLINE_S = 120.0


def nonzero(pages: dict[int, int], at_least: int = MIB // PAGE) -> set[int]:
    """Nodes holding at least 1 MiB (a stray page or two is no placement: measured, one
    page of the memcg's anon stayed on node 0)."""
    return {n for n, p in pages.items() if p >= at_least}


@pytest.fixture
def backend() -> Iterator[Cgroup1Backend]:
    for root in (CPUSET, MEMORY):
        remove_cgroup_tree(root, PARENT)
    b = Cgroup1Backend(
        parent=PARENT, cpuset_root=CPUSET, memory_root=MEMORY, enable_memory_pressure=False
    )
    try:
        yield b
    finally:
        b.close()
        for root in (CPUSET, MEMORY):
            remove_cgroup_tree(root, PARENT)


@pytest.fixture
def workloads() -> Iterator[list[ProcessWorkload]]:
    made: list[ProcessWorkload] = []
    yield made
    for w in made:
        w.stop()


def test_pages_go_where_zoned_puts_them_and_follow_a_move(
    backend: Cgroup1Backend, workloads: list[ProcessWorkload], finding: Finding
) -> None:
    b = backend
    b.ensure(ContainerDecl("a", Amount.nodes(1), Amount.nodes(2)), frozenset({2}))
    b.ensure(ContainerDecl("b", Amount.nodes(1), Amount.nodes(2)), frozenset({4}))
    assert (CPUSET / PARENT / "a" / "cpuset.memory_migrate").read_text().strip() == "1"
    wa = ProcessWorkload(SIZE // MIB, lambda pid: b.attach("a", pid))
    wb = ProcessWorkload(SIZE // MIB, lambda pid: b.attach("b", pid))
    workloads += [wa, wb]
    watch = Watch(b)
    assert wa.ready(watch, DEADLINE_S) and wb.ready(watch, DEADLINE_S)

    want = 0.95 * SIZE / PAGE
    sa, sb = numa_stat_pages(MEMORY / PARENT / "a"), numa_stat_pages(MEMORY / PARENT / "b")
    assert sa.get(2, 0) >= want, sa
    assert sb.get(4, 0) >= want, sb
    assert nonzero(sa) == {2} and nonzero(sb) == {4}, (sa, sb)
    ma, mb = anon_pages_per_node(wa.pid), anon_pages_per_node(wb.pid)
    assert ma.get(2, 0) >= want and nonzero(ma) == {2}, ma
    assert nonzero(mb) == {4}, mb
    u = b.usage("a")
    assert u.per_node[2].anon >= 0.95 * SIZE, u

    t0 = time.monotonic()
    op = b.start_set_nodes("a", frozenset({3}), DEADLINE_S)
    ev = watch.until(
        lambda e: e.kind is EventKind.OP_FINISHED and e.op == op, DEADLINE_S, "OP_FINISHED"
    )
    wall = time.monotonic() - t0
    res = b.op_result(op)
    sa_after = numa_stat_pages(MEMORY / PARENT / "a")
    total_after = numa_stat_pages(MEMORY / PARENT / "a", "total")
    ma_after = anon_pages_per_node(wa.pid)
    finding(
        "v1 cpuset.mems 2 -> 3 with memory_migrate=1, ~100 MiB anon (TCG)",
        {
            "seconds": round(res.seconds, 2),
            "wall": round(wall, 2),
            "left_behind_bytes": res.left_behind,
            "numa_stat_anon_pages": sa_after,
            "numa_stat_total_pages_off_node3": sum(p for n, p in total_after.items() if n != 3),
            "numa_maps_anon_pages": ma_after,
        },
    )
    assert ev.ok and res.ok, res
    assert res.nodes == frozenset({3})
    assert res.left_behind < 16 * MIB, res
    assert sa_after.get(3, 0) >= want and nonzero(sa_after) == {3}, sa_after
    assert ma_after.get(3, 0) >= want and nonzero(ma_after) == {3}, ma_after
    assert b.state("a").nodes == frozenset({3})
    assert nonzero(anon_pages_per_node(wb.pid)) == {4}  # the neighbour did not move
    assert nonzero(numa_stat_pages(MEMORY / PARENT / "b")) == {4}
