"""Per node, from ``/proc/zoneinfo``: free pages on per-CPU lists, and the ``min``
watermarks (the reserve no container can fill; ``parse_min_watermarks``).

A page freed by a task goes first to its CPU's list for that zone (a "pageset"), not back
to the buddy allocator, and ``MemFree`` counts only the buddy's pages: so ``MemTotal -
MemFree`` of a node counts as used what sits free on those lists. Since 6.7 the kernel
tunes each list's ``high`` by itself (``mm: add framework for PCP high auto-tuning``,
commit 90b41691b988) and lets it grow to ``high_max``. Measured in 2 GiB ``numa=fake=8``
guests with 2 CPUs (docs/kernel-checks.md): up to 17.8 MiB on one ~250 MiB node on
7.3.4, moving by several MiB within seconds; 0.3-6.1 MiB per node on 6.1.
``/proc/zoneinfo`` is the only place the kernel prints them: a ``count:`` line (pages)
per CPU under each zone's ``pagesets``.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable
from pathlib import Path

from zoned.errors import TopologyError

_ZONE = re.compile(r"^Node\s+(\d+),\s+zone\s+\S+", re.MULTILINE)
_COUNT = re.compile(r"^\s+count:\s+(\d+)\s*$", re.MULTILINE)
_MIN = re.compile(r"^\s+min\s+(\d+)\s*$", re.MULTILINE)


def _per_node(text: str, line: re.Pattern[str], what: str, page_size: int) -> dict[int, int]:
    """Bytes of the page counts ``line`` matches, added up per node: each belongs to the
    ``Node N, zone X`` header above it. Raises TopologyError on one before any header."""
    heads = [(m.start(), int(m.group(1))) for m in _ZONE.finditer(text)]
    out = {node: 0 for _, node in heads}
    i = -1
    for m in line.finditer(text):
        while i + 1 < len(heads) and heads[i + 1][0] < m.start():
            i += 1
        if i < 0:
            raise TopologyError(f"zoneinfo: a {what} before any 'Node N, zone' line")
        out[heads[i][1]] += int(m.group(1)) * page_size
    return out


def parse_pcp_free(text: str, page_size: int = mmap.PAGESIZE) -> dict[int, int]:
    """Bytes on the per-CPU free lists of each node in a ``/proc/zoneinfo`` text (0 for a
    node whose zones show no pagesets). Raises TopologyError when it is not one."""
    return _per_node(text, _COUNT, "pageset count", page_size)


def parse_min_watermarks(text: str, page_size: int = mmap.PAGESIZE) -> dict[int, int]:
    """Bytes each node keeps free for the kernel: its zones' ``min`` watermarks. An
    allocation that would take a node below them reclaims, then OOM-kills inside a
    cpuset: no container can use them. Raises TopologyError when it is not a zoneinfo."""
    return _per_node(text, _MIN, "min watermark", page_size)


def _read(proc_root: Path, parse: Callable[[str], dict[int, int]]) -> dict[int, int]:
    path = proc_root / "zoneinfo"
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read: {exc}") from exc
    try:
        return parse(text)
    except TopologyError as exc:
        raise TopologyError(f"{path}: {exc}") from exc


def read_pcp_free(proc_root: Path) -> dict[int, int]:
    """:func:`parse_pcp_free` of ``<proc_root>/zoneinfo``; {} when the file is missing (a
    kernel without it, or a fake tree that does not model it). Raises TopologyError when
    it cannot be read or is not a zoneinfo text."""
    return _read(proc_root, parse_pcp_free)


def read_min_watermarks(proc_root: Path) -> dict[int, int]:
    """:func:`parse_min_watermarks` of ``<proc_root>/zoneinfo``; as ``read_pcp_free``."""
    return _read(proc_root, parse_min_watermarks)
