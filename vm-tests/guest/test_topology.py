"""The guest's NUMA topology as the kernel shows it, and as ``zoned topology`` reports it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import Finding, has_command, node_mem_total, online_nodes, parse_list, zoned

MIB = 1024 * 1024
NUMA = os.environ.get("ZONED_VM_NUMA", "")


def expected_node_count() -> int:
    if not NUMA.isdigit():
        pytest.skip(f"numa=fake={NUMA} does not say how many nodes to expect")
    return int(NUMA)


def test_kernel_made_the_fake_nodes() -> None:
    assert f"numa=fake={NUMA}" in Path("/proc/cmdline").read_text().split()
    nodes = online_nodes()
    assert nodes == list(range(expected_node_count()))
    total = sum(node_mem_total(n) for n in nodes)
    mem_total_kib = int(Path("/proc/meminfo").read_text().split()[1])
    # The nodes add up to what the whole machine reports.
    assert abs(total - mem_total_kib * 1024) < MIB
    for n in nodes:
        # 2 GiB / 8: about 256 MiB each, never exactly (holes, the kernel image, memmap).
        assert 128 * MIB < node_mem_total(n) < 384 * MIB, n


def test_every_node_lists_every_cpu_at_distance_10() -> None:
    cpus = parse_list(Path("/sys/devices/system/cpu/online").read_text())
    nodes = online_nodes()
    for n in nodes:
        node = Path(f"/sys/devices/system/node/node{n}")
        assert parse_list((node / "cpulist").read_text()) == cpus
        distances = [int(d) for d in (node / "distance").read_text().split()]
        assert distances == [10] * len(nodes), n


def test_numa_balancing_disabled_by_the_command_line() -> None:
    assert Path("/proc/sys/kernel/numa_balancing").read_text().strip() == "0"


@pytest.mark.skipif(not has_command("topology"), reason="zoned topology is not written yet")
def test_zoned_topology_json_matches_sysfs() -> None:
    report = json.loads(zoned("topology", "--json").stdout)
    assert report["fake_numa"] == NUMA
    assert report["numa_balancing"] is False
    ids = [node["id"] for node in report["nodes"]]
    assert ids == online_nodes()
    for node in report["nodes"]:
        assert node["mem_total"] == node_mem_total(node["id"]), node
        assert node["has_memory"] is True
        assert node["distances"] == [10] * len(ids)
    assert report["total_bytes"] == sum(node_mem_total(n) for n in ids)
    # fake NUMA is on: nothing to recommend without --config.
    assert report["recommendation"] is None


def test_every_cpu_belongs_to_the_first_fake_node(finding: Finding) -> None:
    # numa_emulation.c maps each CPU to the first fake node of its physical node, so
    # "local" allocations prefer node 0 (KERNEL-NOTES).
    homes = {}
    for cpu in parse_list(Path("/sys/devices/system/cpu/online").read_text()):
        links = sorted(p.name for p in Path(f"/sys/devices/system/cpu/cpu{cpu}").glob("node*"))
        homes[cpu] = links
    finding("cpu -> node links", {str(k): v for k, v in homes.items()})
    assert all(links == ["node0"] for links in homes.values()), homes
