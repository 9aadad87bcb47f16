"""Where a process's or a cgroup's pages are, from the kernel's own files (the oracle)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
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


_SYS_SET_MEMPOLICY = 238  # x86_64 (arch/x86/entry/syscalls/syscall_64.tbl)
_MPOL_DEFAULT, _MPOL_BIND = 0, 2


def _set_mempolicy(mode: int, nodes: frozenset[int]) -> None:
    import ctypes
    import os

    bits = 64
    words = max(nodes, default=0) // bits + 1
    mask = (ctypes.c_ulong * words)()
    for n in nodes:
        mask[n // bits] |= 1 << (n % bits)
    libc = ctypes.CDLL(None, use_errno=True)
    maxnode = words * bits + 1 if nodes else 0
    arg = mask if nodes else None
    if libc.syscall(_SYS_SET_MEMPOLICY, mode, arg, ctypes.c_ulong(maxnode)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), f"set_mempolicy({mode}, {sorted(nodes)})")


@contextlib.contextmanager
def memory_bound_to(nodes: frozenset[int]) -> Iterator[None]:
    """This process's (and its future children's) memory on ``nodes`` only, until the end
    of the block: keeps a test's own allocations off the nodes it measures. A child moved
    into a cpuset gets its policy remapped onto the cpuset's nodes (mpol_rebind_task)."""
    _set_mempolicy(_MPOL_BIND, nodes)
    try:
        yield
    finally:
        _set_mempolicy(_MPOL_DEFAULT, frozenset())
