"""Parsing cgroup v2 memory files, on texts captured from a 6.1 guest (numa=fake=8).

Captured in vm-tests (Debian 6.1, TCG, 2 GiB, numa=fake=8): a cgroup with
``cpuset.mems=3`` holding a Python process that touched 60 MiB.
"""

from __future__ import annotations

import pytest

from zoned.errors import BackendError
from zoned.kernel.psi import check_spec, describe, trigger_spec
from zoned.kernel.v2stat import (
    bytes_outside,
    parse_controllers,
    parse_flat_keyed,
    parse_numa_stat,
    per_node_usage,
)
from zoned.model.host import NodeUsage

NODES8 = " ".join(f"N{n}=0" for n in range(8))


def numa_line(item: str, **per_node: int) -> str:
    return item + "".join(f" N{n}={per_node.get(f'n{n}', 0)}" for n in range(8))


NUMA_STAT_61 = (
    "\n".join(
        [
            numa_line("anon", n3=67977216),
            numa_line("file", n3=7553024),
            numa_line("kernel_stack"),
            numa_line("pagetables", n3=180224),
            numa_line("sec_pagetables"),
            numa_line("shmem"),
            numa_line("file_mapped", n3=4485120),
            numa_line("file_dirty"),
            numa_line("file_writeback"),
            numa_line("swapcached"),
            numa_line("anon_thp"),
            numa_line("file_thp"),
            numa_line("shmem_thp"),
            numa_line("inactive_anon", n3=67973120),
            numa_line("active_anon", n3=4096),
            numa_line("inactive_file", n3=7540736),
            numa_line("active_file", n3=12288),
            numa_line("unevictable"),
            numa_line("slab_reclaimable", n0=51272, n3=68504, n7=200),
            numa_line("slab_unreclaimable", n0=12352),
            numa_line("workingset_refault_anon"),
            numa_line("workingset_refault_file"),
            numa_line("workingset_activate_anon"),
            numa_line("workingset_activate_file"),
            numa_line("workingset_restore_anon"),
            numa_line("workingset_restore_file"),
            numa_line("workingset_nodereclaim"),
        ]
    )
    + "\n"
)

MEMORY_STAT_61 = """\
anon 67977216
file 7553024
kernel 339968
kernel_stack 0
pagetables 180224
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 4485120
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 67973120
active_anon 4096
inactive_file 7540736
active_file 12288
unevictable 0
slab_reclaimable 119976
slab_unreclaimable 12352
slab 132328
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgscan_kswapd 0
pgscan_direct 0
pgsteal_kswapd 0
pgsteal_direct 0
pgfault 16775
pgmajfault 23
pgrefill 0
pgactivate 3
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
zswpin 0
zswpout 0
thp_fault_alloc 0
thp_collapse_alloc 0
"""

MEMORY_EVENTS_61 = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"


def test_numa_stat_61() -> None:
    numa = parse_numa_stat(NUMA_STAT_61)
    assert len(numa) == 27
    assert numa["anon"][3] == 67977216
    assert set(numa["anon"]) == set(range(8))
    assert numa["slab_reclaimable"] == {0: 51272, 1: 0, 2: 0, 3: 68504, 4: 0, 5: 0, 6: 0, 7: 200}


def test_per_node_usage_counts_kernel_memory_as_other() -> None:
    usage = per_node_usage(parse_numa_stat(NUMA_STAT_61))
    assert usage[3] == NodeUsage(anon=67977216, file=7553024, other=180224 + 68504)
    assert usage[0] == NodeUsage(other=51272 + 12352)
    assert usage[5] == NodeUsage()


def test_bytes_outside_counts_user_pages_only() -> None:
    numa = parse_numa_stat(NUMA_STAT_61)
    assert bytes_outside(numa, {3}) == 0  # slab on N0/N7 is not a user page
    assert bytes_outside(numa, {1, 2}) == 67977216 + 7553024


def test_numa_stat_only_lists_memory_nodes() -> None:
    # for_each_node_state(nid, N_MEMORY): a memoryless node has no column.
    numa = parse_numa_stat("anon N0=4096 N2=8192\nfile N0=0 N2=0\n")
    assert per_node_usage(numa) == {0: NodeUsage(anon=4096), 2: NodeUsage(anon=8192)}


@pytest.mark.parametrize(
    "bad",
    [
        "total=10 N0=5 N1=5",  # v1 format
        "anon N0=5 junk",
        "anon N0=-1",
        "anon X0=5",
    ],
)
def test_numa_stat_rejects_what_v2_does_not_print(bad: str) -> None:
    with pytest.raises(BackendError, match="cannot parse"):
        parse_numa_stat(bad)


def test_memory_stat_and_events() -> None:
    stat = parse_flat_keyed(MEMORY_STAT_61, "memory.stat")
    assert (stat["anon"], stat["file"], stat["slab"]) == (67977216, 7553024, 132328)
    events = parse_flat_keyed(MEMORY_EVENTS_61, "memory.events")
    assert events == dict.fromkeys(("low", "high", "max", "oom", "oom_kill", "oom_group_kill"), 0)
    with pytest.raises(BackendError):
        parse_flat_keyed("high one\n", "memory.events")


def test_controllers() -> None:
    assert parse_controllers("cpuset cpu io memory hugetlb pids rdma misc\n") >= {
        "cpuset",
        "memory",
    }
    assert parse_controllers("\n") == frozenset()


def test_psi_trigger_spec_follows_61_limits() -> None:
    assert trigger_spec("some", 100_000, 1_000_000) == "some 100000 1000000"
    assert describe("full 50000 2000000") == "full 50ms/2000ms"
    for args in [(0, 1_000_000), (2_000_000, 1_000_000), (1000, 400_000), (1000, 11_000_000)]:
        with pytest.raises(ValueError):
            trigger_spec("some", *args)
    for bad in ["some 100000", "partial 1 1000000", "some x 1000000", "full 0 1000000"]:
        with pytest.raises(ValueError):
            check_spec(bad)
    assert check_spec("full 50000 2000000") == "full 50000 2000000"
