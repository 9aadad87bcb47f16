"""The guest's NUMA topology as the kernel shows it, and as zoned reads it.

Every boot: ``numa=fake=N`` (a node count) or the size form ``numa=fake=256M``. For the
size form the kernel's own account of the nodes it made (the ``Faking node N at [mem
A-B] (XMB)`` lines of the boot log) is the reference: its count and spans are checked
against the rule of arch/x86/mm/numa_emulation.c (each node gets at least the size in RAM,
holes skipped in 32 MiB steps; a remainder smaller than the size goes to the last node),
and the nodes sysfs and zoned report against it.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
from pathlib import Path

import pytest

from zoned.kernel.topology import read_topology
from zoned.model.sizes import parse_size

from .conftest import Finding, has_command, node_mem_total, online_nodes, parse_list, zoned

MIB = 1024 * 1024
FAKE_NODE_MIN_SIZE = 32 * MIB  # numa_emulation.c: the step a node grows by over a hole
NUMA = os.environ.get("ZONED_VM_NUMA", "")
SIZE_FORM = NUMA[-1:] in ("M", "G")


def boot_log() -> list[str]:
    """The kernel's log from the start (``/dev/kmsg`` read from its first record)."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    lines: list[str] = []
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten records: go on
                    continue
                if exc.errno == errno.EAGAIN:
                    return lines
                raise
            lines.append(rec.decode(errors="replace").split(";", 1)[-1].strip())
    finally:
        os.close(fd)


def faked_nodes() -> dict[int, tuple[int, int]]:
    """node → (start, end exclusive) of each ``Faking node`` line of the boot log."""
    out: dict[int, tuple[int, int]] = {}
    pat = re.compile(r"Faking node (\d+) at \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
    for line in boot_log():
        m = pat.search(line)
        if m:
            out[int(m.group(1))] = (int(m.group(2), 16), int(m.group(3), 16) + 1)
    return out


def system_ram() -> list[tuple[int, int]]:
    """The ``System RAM`` ranges of /proc/iomem (start, end exclusive)."""
    out = []
    for line in Path("/proc/iomem").read_text().splitlines():
        if line.startswith(" ") or not line.endswith(": System RAM"):
            continue
        lo, hi = line.split(" : ")[0].split("-")
        out.append((int(lo, 16), int(hi, 16) + 1))
    return out


def ram_in(start: int, end: int) -> int:
    return sum(max(0, min(end, hi) - max(start, lo)) for lo, hi in system_ram())


def expected_node_count() -> int:
    if NUMA.isdigit():
        return int(NUMA)
    if SIZE_FORM:
        return len(faked_nodes())
    pytest.skip(f"numa=fake={NUMA} does not say how many nodes to expect")


def test_kernel_made_the_fake_nodes(finding: Finding) -> None:
    assert f"numa=fake={NUMA}" in Path("/proc/cmdline").read_text().split()
    nodes = online_nodes()
    assert len(nodes) >= 2
    assert nodes == list(range(expected_node_count()))
    sizes = {n: node_mem_total(n) for n in nodes}
    finding("node MemTotal (kB)", {str(n): s // 1024 for n, s in sizes.items()})
    total = sum(sizes.values())
    mem_total_kib = int(Path("/proc/meminfo").read_text().split()[1])
    # The nodes add up to what the whole machine reports.
    assert abs(total - mem_total_kib * 1024) < MIB
    if NUMA.isdigit():
        # N nodes of about total/N each, never exactly (holes, the kernel image, memmap).
        for n, size in sizes.items():
            assert total / len(nodes) / 2 < size < total / len(nodes) * 1.5, (n, size)


@pytest.mark.skipif(not SIZE_FORM, reason="numa=fake=<size> only")
def test_size_form_makes_nodes_of_the_size_and_merges_the_remainder(finding: Finding) -> None:
    size = parse_size(NUMA)
    faked = faked_nodes()
    assert sorted(faked) == online_nodes(), faked
    spans = [faked[n] for n in sorted(faked)]
    ram = [ram_in(lo, hi) for lo, hi in spans]
    finding(
        "size form: node spans and RAM (MiB)",
        {
            str(n): [round((hi - lo) / MIB, 1), round(r / MIB, 1)]
            for n, ((lo, hi), r) in enumerate(zip(spans, ram, strict=True))
        },
    )
    # Contiguous, from the first RAM to the last.
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), spans
    assert spans[0][0] <= system_ram()[0][0] and spans[-1][1] >= system_ram()[-1][1]
    for n, r in enumerate(ram[:-1]):
        # at least the size in RAM; a node over a hole grows in 32 MiB steps
        assert size <= r < size + FAKE_NODE_MIN_SIZE, (n, spans[n], r)
    # the last node took the remainder, which was smaller than one more node
    assert size <= ram[-1] < 2 * size, ram
    for n, (lo, hi) in enumerate(spans):
        assert node_mem_total(n) <= hi - lo, (n, node_mem_total(n), hi - lo)


@pytest.mark.skipif(not SIZE_FORM, reason="numa=fake=<size> only")
def test_size_form_boot_is_uneven() -> None:
    """What this boot is for: node sizes that differ markedly (the merged last node)."""
    sizes = [node_mem_total(n) for n in online_nodes()]
    assert max(sizes) > 1.5 * min(sizes), sizes
    assert max(sizes) == sizes[-1], sizes


def test_zoned_reads_what_the_kernel_reports() -> None:
    topo = read_topology()
    assert [n.id for n in topo.nodes] == online_nodes()
    assert topo.fake_numa == NUMA
    assert topo.numa_balancing is False
    cpus = tuple(parse_list(Path("/sys/devices/system/cpu/online").read_text()))
    for node in topo.nodes:
        assert node.mem_total == node_mem_total(node.id), node
        assert node.cpus == cpus, node
        assert node.distances == (10,) * len(topo.nodes), node


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
