"""Parsers for the kernel's memory statistics files, and per-node memory from sysfs.

- v1 ``memory.numa_stat``: ``total=<pages> N0=<pages> N1=<pages>`` per line, for
  ``total``, ``file``, ``anon``, ``unevictable`` and their ``hierarchical_*`` forms
  (counts in pages; ``total`` = file + anon + unevictable LRU pages).
- ``/sys/devices/system/node/nodeN/meminfo``: ``Node N MemTotal:   4810964 kB``.

The sysfs root is injected (``/sys`` on a real host, a tmp dir in tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zoned.backends.base import NodeMemory, NodeUsage
from zoned.cgroupfs import translated
from zoned.errors import BackendError
from zoned.model import NodeInfo
from zoned.nodelist import parse_nodelist


@dataclass(frozen=True)
class NumaLine:
    """One line of v1 ``memory.numa_stat``, converted to bytes."""

    total: int
    nodes: Mapping[int, int] = field(default_factory=dict)


def parse_numa_stat_v1(text: str, page_size: int) -> dict[str, NumaLine]:
    """Parse v1 ``memory.numa_stat`` into ``key → NumaLine`` (bytes, not pages).

    Raises BackendError on a line the kernel would not write.
    """
    out: dict[str, NumaLine] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parsed = _numa_line(line, page_size)
        if parsed is None:
            raise BackendError(f"memory.numa_stat: cannot parse {line!r}")
        out[parsed[0]] = parsed[1]
    return out


def _numa_line(line: str, page_size: int) -> tuple[str, NumaLine] | None:
    parts = line.split()
    key, sep, total = parts[0].partition("=")
    if not sep or not total.isdigit():
        return None
    nodes: dict[int, int] = {}
    for part in parts[1:]:
        name, _, pages = part.partition("=")
        if not (name.startswith("N") and name[1:].isdigit() and pages.isdigit()):
            return None
        nodes[int(name[1:])] = int(pages) * page_size
    return key, NumaLine(int(total) * page_size, nodes)


def per_node_usage(numa: Mapping[str, NumaLine]) -> dict[int, NodeUsage]:
    """Per-node anon/file/other from a parsed v1 numa_stat, counting the whole subtree
    (``hierarchical_*`` when present, the cgroup's own lines otherwise)."""

    def line(name: str) -> NumaLine:
        return numa.get(f"hierarchical_{name}") or numa.get(name) or NumaLine(0)

    anon, file, unevictable = line("anon"), line("file"), line("unevictable")
    nodes = set(anon.nodes) | set(file.nodes) | set(unevictable.nodes)
    return {
        n: NodeUsage(
            anon=anon.nodes.get(n, 0),
            file=file.nodes.get(n, 0),
            other=unevictable.nodes.get(n, 0),
        )
        for n in sorted(nodes)
    }


def parse_node_meminfo(text: str) -> dict[str, int]:
    """Parse ``nodeN/meminfo`` into ``field → bytes`` (kB values scaled; page counts such
    as ``HugePages_Total`` kept as they are)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        # "Node 0 MemTotal: 4810964 kB" or "Node 0 HugePages_Total: 0"
        if len(parts) < 4 or parts[0] != "Node":
            continue
        key = parts[2].rstrip(":")
        try:
            value = int(parts[3])
        except ValueError:
            continue
        out[key] = value * 1024 if len(parts) > 4 and parts[4] == "kB" else value
    return out


def _node_dir(sys_root: Path) -> Path:
    return sys_root / "devices" / "system" / "node"


def online_nodes(sys_root: Path) -> frozenset[int]:
    """The online nodes (``node/online``)."""
    p = _node_dir(sys_root) / "online"
    with translated(f"read {p}"):
        return parse_nodelist(p.read_text())


def node_memory(sys_root: Path) -> dict[int, NodeMemory]:
    """Each online node's total, free and file memory now."""
    out: dict[int, NodeMemory] = {}
    for n in sorted(online_nodes(sys_root)):
        p = _node_dir(sys_root) / f"node{n}" / "meminfo"
        with translated(f"read {p}"):
            info = parse_node_meminfo(p.read_text())
        out[n] = NodeMemory(
            total=info.get("MemTotal", 0),
            free=info.get("MemFree", 0),
            file=info.get("FilePages", 0),
        )
    return out


def node_infos(sys_root: Path) -> tuple[NodeInfo, ...]:
    """The online nodes with sizes, CPUs and distances, in id order."""
    out: list[NodeInfo] = []
    for n, mem in node_memory(sys_root).items():
        d = _node_dir(sys_root) / f"node{n}"
        with translated(f"read {d}"):
            cpus = tuple(sorted(parse_nodelist((d / "cpulist").read_text())))
            dist_file = d / "distance"
            dist = (
                tuple(int(x) for x in dist_file.read_text().split()) if dist_file.exists() else ()
            )
        out.append(NodeInfo(n, mem.total, mem.free, mem.file, cpus, dist))
    return tuple(out)
