"""Parser for cgroup v1 ``memory.numa_stat``.

``total=<pages> N0=<pages> N1=<pages>`` per line, for ``total``, ``file``, ``anon``,
``unevictable`` and their ``hierarchical_*`` forms (counts in pages; ``total`` = file +
anon + unevictable LRU pages). Per-node memory of the machine (``nodeN/meminfo``) is read by
``zoned.kernel.topology``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from zoned.errors import BackendError
from zoned.model.host import NodeUsage


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
