"""Where a process's or a cgroup's pages are, from the kernel's own files (the oracle)."""

from __future__ import annotations

import re
from pathlib import Path

_NODE_PAGES = re.compile(r"\bN(\d+)=(\d+)")


def anon_pages_per_node(pid: int) -> dict[int, int]:
    """Pages per node of the process's private anonymous mappings (``/proc/PID/numa_maps``)."""
    out: dict[int, int] = {}
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        if "file=" in line or "anon=" not in line:
            continue
        for node, pages in _NODE_PAGES.findall(line):
            out[int(node)] = out.get(int(node), 0) + int(pages)
    return out


def stray_bytes(pages: dict[int, int], nodes: set[int], page: int = 4096) -> int:
    """Bytes of ``pages`` (pages per node) that lie outside ``nodes``."""
    return sum(n for node, n in pages.items() if node not in nodes) * page


def numa_stat_pages(memcg: Path, item: str = "anon") -> dict[int, int]:
    """Pages per node of one v1 ``memory.numa_stat`` line (``anon=<total> N0=<pages> …``)
    of the memory cgroup directory ``memcg``."""
    for line in (memcg / "memory.numa_stat").read_text().splitlines():
        if line.startswith(f"{item}="):
            return {int(n): int(p) for n, p in _NODE_PAGES.findall(line)}
    raise AssertionError(f"no {item}= line in {memcg}/memory.numa_stat")
