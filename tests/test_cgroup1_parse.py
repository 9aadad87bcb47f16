"""Parsers the v1 backend relies on, fed with the kernel's own text (from the build machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.v1tree import ROOT_NUMA_STAT, FakeV1Tree, memory_stat
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.errors import BackendError, Unsupported
from zoned.kernel import v1stat as memstat
from zoned.kernel.hierarchy import find_v1_controller, parse_mountinfo, v1_roots
from zoned.model.host import NodeUsage

REAL_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_mountinfo_finds_v1_controllers() -> None:
    mounts = parse_mountinfo(REAL_MOUNTINFO)
    assert [m.mount_point.name for m in mounts] == ["cpuset", "memory", "systemd", "unified"]
    assert find_v1_controller(mounts, "cpuset").mount_point == Path("/sys/fs/cgroup/cpuset")
    assert find_v1_controller(mounts, "memory").mount_point == Path("/sys/fs/cgroup/memory")
    # name=systemd is a named hierarchy, not a controller
    assert mounts[2].controllers == frozenset()
    assert mounts[3].version == 2


def test_mountinfo_optional_fields_escapes_and_bind_mounts() -> None:
    text = (
        "50 31 0:31 /sub /run/a\\040b rw shared:5 master:1 - cgroup cgroup rw,cpuset,cpu\n"
        "51 31 0:31 / /run/whole rw - cgroup cgroup rw,cpuset,cpu\n"
    )
    mounts = parse_mountinfo(text)
    assert mounts[0].mount_point == Path("/run/a b")
    assert mounts[0].controllers == frozenset({"cpuset", "cpu"})
    # the mount showing the whole hierarchy wins over a bind mount of a subtree
    assert find_v1_controller(mounts, "cpuset").mount_point == Path("/run/whole")


def test_v1_roots_missing_controller_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(
        "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    with pytest.raises(Unsupported, match=r"memory|cpuset"):
        v1_roots(tmp_path)
    with pytest.raises(Unsupported, match="cannot read"):
        v1_roots(tmp_path / "nowhere")


def test_v1_roots_from_fake_proc(tmp_path: Path) -> None:
    tree = FakeV1Tree(tmp_path)
    assert v1_roots(tree.proc_root) == (tree.cpuset_root, tree.memory_root)


def test_numa_stat_v1_pages_to_bytes() -> None:
    numa = memstat.parse_numa_stat_v1(ROOT_NUMA_STAT, 4096)
    assert numa["total"].total == 5427 * 4096
    assert numa["hierarchical_file"].nodes == {0: 83556 * 4096}
    # per-node usage counts the subtree (hierarchical_*), unevictable as "other"
    assert memstat.per_node_usage(numa) == {
        0: NodeUsage(anon=2617 * 4096, file=83556 * 4096, other=4444 * 4096)
    }


def test_numa_stat_v1_several_nodes_and_no_hierarchical_lines() -> None:
    text = "total=30 N0=10 N1=20\nfile=12 N0=2 N1=10\nanon=18 N0=8 N1=10\nunevictable=0 N0=0 N1=0"
    numa = memstat.parse_numa_stat_v1(text, 4096)
    per = memstat.per_node_usage(numa)
    assert per[1] == NodeUsage(anon=10 * 4096, file=10 * 4096, other=0)
    assert per[0].total == 10 * 4096


@pytest.mark.parametrize("bad", ["total 5 N0=5", "total=5 X0=5", "total=5 N0=x", "total=a"])
def test_numa_stat_v1_rejects_what_the_kernel_never_writes(bad: str) -> None:
    with pytest.raises(BackendError, match="numa_stat"):
        memstat.parse_numa_stat_v1(bad, 4096)


def test_memory_stat_keys_through_cgroupfs(tmp_path: Path) -> None:
    tree = FakeV1Tree(tmp_path)
    tree.memory.mkdir("c")
    tree.set_memory("c", "memory.stat", memory_stat({"rss": 5, "total_rss": 7, "cache": 3}))
    stat = tree.memory.read_keyed("c", "memory.stat")
    assert (stat["rss"], stat["total_rss"], stat["total_cache"]) == (5, 7, 3)
    assert stat["hierarchical_memory_limit"] == 9223372036854771712


def test_backend_topology_and_node_memory_from_the_fake_sys(tmp_path: Path) -> None:
    tree = FakeV1Tree(tmp_path)
    b = Cgroup1Backend(
        proc_root=tree.proc_root,
        sys_root=tree.sys_root,
        enable_memory_pressure=False,
        fs_factory=tree.fs_for,
    )
    try:
        (n0,) = b.topology().nodes
        assert (n0.id, n0.mem_free, n0.cpus, n0.distances) == (0, 3852664 * 1024, (0, 1), (10,))
        assert b.node_memory()[0].file == 289212 * 1024
        assert b.topology().fake_numa == "4"
    finally:
        b.close()
