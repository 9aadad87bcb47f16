"""Where a file's cached pages are: how much is resident, and on which nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from zoned.kernel import mmcalls
from zoned.kernel.numamaps import read_numa_maps
from zoned.kernel.roots import PROC_ROOT


@dataclass
class Placement:
    """A file's page cache now: resident bytes, and bytes by node of those pages."""

    size: int
    resident: int
    nodes: dict[int, int] = field(default_factory=dict)

    def on(self, nodes: frozenset[int]) -> int:
        return sum(b for n, b in self.nodes.items() if n in nodes)


def _resident_offsets(vec: bytes) -> list[int]:
    return [i * mmcalls.PAGE for i, v in enumerate(vec) if v & 1]


def where(path: Path, *, locate: bool = True) -> Placement:
    """Resident bytes of ``path`` and, when ``locate``, their nodes (see module notes).

    Touches only resident pages, so it allocates nothing (bar a page evicted between
    mincore and the touch: then one page is read in on this process's nodes).
    """
    size = path.stat().st_size
    if size == 0:
        return Placement(0, 0)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        addr = mmcalls.map_file(fd, size)
    finally:
        os.close(fd)
    try:
        offs = _resident_offsets(mmcalls.resident(addr, size))
        out = Placement(size, min(size, len(offs) * mmcalls.PAGE))
        if locate and offs:
            mmcalls.touch(addr, offs)
            for v in read_numa_maps(PROC_ROOT, os.getpid()) or []:
                if v.start == addr:
                    out.nodes = v.bytes_by_node()
                    break
        return out
    finally:
        mmcalls.unmap(addr, size)
