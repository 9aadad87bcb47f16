"""cgroup v1 cpuset and memory hierarchies (mounted under /run by the guest's init), and the
KERNEL-NOTES [check] items about v1 that they can confirm."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cgtools import read, remove_tree, sleeper, write
from .conftest import Finding, online_nodes

pytestmark = pytest.mark.boot(cgroup="v1", numa="8")  # hard-coded node ids

CPUSET = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
MEMORY = Path(os.environ.get("ZONED_VM_CGROUP_V1_MEMORY", "/run/cgroup-v1/memory"))


@pytest.fixture
def cs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh cpuset under the v1 root."""
    assert (CPUSET / "cpuset.mems").exists(), f"no v1 cpuset hierarchy at {CPUSET}"
    path = CPUSET / f"zoned-vmtest-{request.node.name}"
    remove_tree(path, CPUSET)
    path.mkdir()
    yield path
    remove_tree(path, CPUSET)


def test_hierarchies_are_mounted() -> None:
    nodes = online_nodes()
    assert read(CPUSET / "cpuset.mems") == f"0-{max(nodes)}"
    assert (MEMORY / "memory.usage_in_bytes").exists()
    assert (MEMORY / "cgroup.event_control").exists()


def test_new_cpuset_starts_empty_and_refuses_tasks(cs: Path, finding: Finding) -> None:
    assert read(cs / "cpuset.mems") == ""
    with sleeper() as pid:
        result = write(cs / "cgroup.procs", str(pid))
    finding("v1 task into a cpuset without mems", result)
    assert result == "ENOSPC"


def test_mems_take_effect_and_migrate_flag(cs: Path) -> None:
    assert write(cs / "cpuset.cpus", read(CPUSET / "cpuset.cpus")) == "ok"
    assert write(cs / "cpuset.mems", "3") == "ok"
    assert read(cs / "cpuset.effective_mems") == "3"
    assert write(cs / "cpuset.memory_migrate", "1") == "ok"
    assert read(cs / "cpuset.memory_migrate") == "1"


def test_errnos(cs: Path, finding: Finding) -> None:
    missing = max(online_nodes()) + 1
    assert write(cs / "cpuset.cpus", read(CPUSET / "cpuset.cpus")) == "ok"
    no_node = write(cs / "cpuset.mems", str(missing))
    finding(f"v1 cpuset.mems={missing} (no such node)", no_node)
    assert no_node == "EINVAL"

    assert write(cs / "cpuset.mems", "1-2") == "ok"
    child = cs / "child"
    child.mkdir()
    assert write(child / "cpuset.cpus", read(cs / "cpuset.cpus")) == "ok"
    outside = write(child / "cpuset.mems", "3")
    finding("v1 child mems outside the parent's", outside)
    assert outside == "EACCES"
    assert write(child / "cpuset.mems", "2") == "ok"
    shrink = write(cs / "cpuset.mems", "1")
    finding("v1 shrinking a parent below its child's mems", shrink)
    assert shrink == "EBUSY"

    with sleeper() as pid:
        assert write(child / "cgroup.procs", str(pid)) == "ok"
        emptied = write(child / "cpuset.mems", "\n")
        after = read(child / "cpuset.mems")
    finding("v1 cpuset.mems='\\n' on a populated cpuset", emptied)
    assert emptied == "ENOSPC"
    assert after == "2"
