"""The capabilities probe (zoned.kernel.capabilities) against what each real kernel has.

Every boot: the probe's answer for each interface is checked against the kernel by another
route (a child cgroup's own files, a PSI trigger armed the way the backend arms it, the
mounts the boot made), and recorded as a finding. Measured in docs/kernel-checks.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoned.kernel.capabilities import RECLAIM_ARGS_PROBE, live_writer, probe, to_doc
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.psi import open_trigger
from zoned.kernel.roots import HostRoots

from .cgtools import remove_tree, write
from .conftest import BOOT, Finding, online_nodes, zoned

V2 = Path("/sys/fs/cgroup")
V1_CPUSET = os.environ.get("ZONED_VM_CGROUP_V1_CPUSET")
V1_MEMORY = os.environ.get("ZONED_VM_CGROUP_V1_MEMORY")


@pytest.fixture
def child() -> Iterator[Path]:
    """An empty child cgroup with the memory controller: on cgroup2 for v2 boots, in the v1
    memory hierarchy for v1 boots."""
    if BOOT["cgroup"] == "v1":
        assert V1_MEMORY is not None
        root = Path(V1_MEMORY)
    else:
        root = V2
        assert write(V2 / "cgroup.subtree_control", "+memory") == "ok"
    path = root / "zoned-capprobe"
    path.mkdir()
    try:
        yield path
    finally:
        remove_tree(path, root)


def test_probe_matches_the_kernel(child: Path, finding: Finding) -> None:
    roots = HostRoots()
    writer = live_writer(roots)
    assert writer is not None, "the guest's roots are the live ones"
    caps = probe(roots, writer)
    doc = to_doc(caps)
    finding("capabilities", {k: v for k, v in doc.items() if k != "jobs"})
    finding("capabilities: jobs", {j["job"]: j["path"] for j in doc["jobs"]})

    assert caps.release == os.uname().release
    node = online_nodes()[0]
    reclaim = Path(f"/sys/devices/system/node/node{node}/reclaim")
    assert (caps.node_reclaim is not None) == reclaim.exists()

    assert (caps.damon_sysfs is not None) == Path("/sys/kernel/mm/damon/admin").is_dir()
    assert (caps.psi is not None) == Path("/proc/pressure/memory").exists()

    # The numa_stat items are the kernel's, and hold what zoned reads.
    kernel_fields = tuple(
        line.split()[0].split("=")[0]
        for line in (child / "memory.numa_stat").read_text().splitlines()
    )
    assert caps.numa_stat_fields == kernel_fields
    assert {"anon", "file"} <= set(kernel_fields)

    if BOOT["cgroup"] == "v1":
        assert (caps.v1_cpuset, caps.v1_memory) == (Path(str(V1_CPUSET)), Path(str(V1_MEMORY)))
        assert caps.hierarchy == "v1"
        assert caps.memory_reclaim is None  # the hybrid cgroup2 carries no memory
        return
    assert caps.hierarchy == "v2" and caps.cgroup2 == V2
    assert caps.v1_cpuset is None and caps.v1_memory is None  # the boot mounted none
    # memory.reclaim and its arguments: the child answers as the root did.
    assert caps.memory_reclaim == V2 / "memory.reclaim"
    assert write(child / "memory.reclaim", RECLAIM_ARGS_PROBE) == caps.reclaim_args
    # A PSI trigger on a cgroup's memory.pressure, armed the way the backend arms it.
    trigger = open_trigger(CgroupFs(V2), child.name, "some 100000 1000000")
    os.close(trigger.fd)
    assert caps.psi_trigger == "ok"


def test_topology_prints_the_probe(finding: Finding) -> None:
    out = zoned("topology").stdout
    section = out[out.index("\nkernel: ") + 1 :]
    finding("zoned topology: capabilities section", section)
    assert section.startswith(f"kernel: {os.uname().release} ")
    node = online_nodes()[0]
    has = Path(f"/sys/devices/system/node/node{node}/reclaim").exists()
    assert ("nodeN/reclaim: yes" in section) == has
    assert "paths zoned uses:" in section
