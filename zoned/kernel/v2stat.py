"""Parsers for cgroup v2 memory files (formats as printed by 6.1's mm/memcontrol.c).

- ``memory.numa_stat``: one line per item, ``<item> N<id>=<bytes> ...`` over the nodes
  that have memory (N_MEMORY), e.g. ``anon N0=0 N1=67977216``. Bytes, not pages (unlike
  v1). ``file`` includes ``shmem``; ``file_mapped``/``file_dirty`` are parts of ``file``.
- ``memory.stat``: ``<item> <value>`` per line; bytes for sizes, counts for events.
- ``memory.events`` / ``memory.events.local``: ``low high max oom oom_kill
  oom_group_kill`` (6.1), ``<key> <count>`` per line.
- ``cgroup.controllers`` / ``cgroup.subtree_control``: space separated names.

Captured from a 6.1 guest (``tests/test_cgroup2_parse.py`` keeps the real texts).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from zoned.errors import BackendError
from zoned.model.host import NodeUsage

# numa_stat items that count per-node kernel memory charged to the cgroup: NodeUsage.other.
OTHER_ITEMS = (
    "kernel_stack",
    "pagetables",
    "sec_pagetables",
    "slab_reclaimable",
    "slab_unreclaimable",
)


def parse_numa_stat(text: str, where: str = "memory.numa_stat") -> dict[str, dict[int, int]]:
    """``item → {node: bytes}``. Raises BackendError on a line the kernel would not print."""
    out: dict[str, dict[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        item, nodes = parts[0], {}
        for part in parts[1:]:
            name, sep, value = part.partition("=")
            if not (sep and name[:1] == "N" and name[1:].isdigit() and value.isdigit()):
                raise BackendError(f"{where}: cannot parse {line!r}")
            nodes[int(name[1:])] = int(value)
        if "=" in item:
            raise BackendError(f"{where}: v1 format? cannot parse {line!r}")
        out[item] = nodes
    return out


def per_node_usage(numa: Mapping[str, Mapping[int, int]]) -> dict[int, NodeUsage]:
    """anon / file / kernel memory per node from a parsed ``memory.numa_stat``."""
    nodes: set[int] = set()
    for per_node in numa.values():
        nodes.update(per_node)
    anon, file = numa.get("anon", {}), numa.get("file", {})
    return {
        n: NodeUsage(
            anon=anon.get(n, 0),
            file=file.get(n, 0),
            other=sum(numa.get(item, {}).get(n, 0) for item in OTHER_ITEMS),
        )
        for n in sorted(nodes)
    }


def bytes_outside(numa: Mapping[str, Mapping[int, int]], allowed: Set[int]) -> int:
    """User pages (anon + file) on nodes not in ``allowed``: what a migration left behind.

    Kernel memory (slab, page tables) is not counted: it cannot be migrated.
    """
    return sum(
        b for item in ("anon", "file") for n, b in numa.get(item, {}).items() if n not in allowed
    )


def parse_flat_keyed(text: str, where: str) -> dict[str, int]:
    """A flat keyed file (``memory.events``, ``memory.stat``): ``key value`` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise BackendError(f"{where}: cannot parse {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def parse_controllers(text: str) -> frozenset[str]:
    """``cgroup.controllers`` / ``cgroup.subtree_control``: ``cpuset cpu io memory``."""
    return frozenset(text.split())
