"""Parse ``/proc/PID/numa_maps``: where a process's mapped pages are, node by node.

One line per VMA, as ``show_numa_map`` (fs/proc/task_mmu.c) prints it::

    7f1c2a000000 default file=/usr/lib/libc.so.6 mapped=40 mapmax=12 N0=30 N3=10 kernelpagesize_kB=4
    55d0c1a00000 bind:2-3 heap anon=512 dirty=512 N2=500 N3=12 kernelpagesize_kB=4

Fields after the address and the policy, each optional: ``file=<path>`` (seq_path with
``\\n``, ``\\t``, space and ``=`` escaped as ``\\ooo`` octal) or ``heap`` or ``stack``
(``stack:<tid>`` on old kernels), ``huge``, ``anon=``, ``dirty=``, ``mapped=`` (printed
only when it differs from both anon and dirty), ``mapmax=`` (highest mapcount, only when
> 1), ``swapcache=``, ``active=``, ``writeback=``, ``N<node>=<pages>`` and
``kernelpagesize_kB=``. A VMA with no present page prints no counts at all.

Counts are of pages *mapped by this process* (present PTEs), not of the page cache: a
file page in the cache but not mapped here does not show. Two processes mapping the same
page both count it; ``mapmax`` > 1 says someone else maps pages of this VMA too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zoned.errors import NumaMapsError

_OCTAL = re.compile(r"\\([0-7]{3})")
_NODE = re.compile(r"^N(\d+)=(\d+)$")


@dataclass(frozen=True)
class NumaVma:
    """One VMA's line. ``nodes``: node → pages present there; sizes in pages of
    ``page_size`` bytes (4 KiB, or the huge page size for hugetlb VMAs)."""

    start: int
    policy: str
    file: str | None = None  # unescaped path; "(deleted)" suffix kept as the kernel prints
    kind: str = "anon"  # "file", "heap", "stack" or "anon" (other anonymous mappings)
    huge: bool = False
    anon: int = 0
    dirty: int = 0
    mapmax: int = 1
    nodes: Mapping[int, int] = field(default_factory=dict)
    page_size: int = 4096

    @property
    def pages(self) -> int:
        """Pages present in this VMA (``md->pages``: the sum of the node counts)."""
        return sum(self.nodes.values())

    @property
    def file_pages(self) -> int:
        """Present pages that are not anonymous: page cache (or shmem) pages mapped here."""
        return max(0, self.pages - self.anon) if self.kind == "file" else 0

    def bytes_by_node(self) -> dict[int, int]:
        return {n: p * self.page_size for n, p in self.nodes.items()}


def unescape(path: str) -> str:
    """Undo seq_path's ``\\ooo`` escapes (space, tab, newline, ``=``, backslash)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), path)


def parse_line(line: str) -> NumaVma:
    """One numa_maps line; raises NumaMapsError on anything the kernel would not print."""
    parts = line.split()
    if len(parts) < 2:
        raise NumaMapsError(f"numa_maps: too few fields in {line!r}")
    try:
        start = int(parts[0], 16)
    except ValueError as exc:
        raise NumaMapsError(f"numa_maps: bad address in {line!r}") from exc
    policy = parts[1]
    file: str | None = None
    kind = "anon"
    huge = False
    counts: dict[str, int] = {}
    nodes: dict[int, int] = {}
    page_kb = 4
    for tok in parts[2:]:
        if tok.startswith("file="):
            file, kind = unescape(tok[5:]), "file"
        elif tok in {"heap", "stack"} or tok.startswith("stack:"):
            kind = "heap" if tok == "heap" else "stack"
        elif tok == "huge":
            huge = True
        elif m := _NODE.match(tok):
            nodes[int(m.group(1))] = int(m.group(2))
        else:
            key, eq, value = tok.partition("=")
            if not eq or not value.isdigit():
                raise NumaMapsError(f"numa_maps: unknown field {tok!r} in {line!r}")
            if key == "kernelpagesize_kB":
                page_kb = int(value)
            else:
                counts[key] = int(value)
    return NumaVma(
        start=start,
        policy=policy,
        file=file,
        kind=kind,
        huge=huge,
        anon=counts.get("anon", 0),
        dirty=counts.get("dirty", 0),
        mapmax=counts.get("mapmax", 1),
        nodes=nodes,
        page_size=page_kb * 1024,
    )


def parse_numa_maps(text: str) -> list[NumaVma]:
    """Every line of a numa_maps file (blank lines ignored)."""
    return [parse_line(line) for line in text.splitlines() if line.strip()]


def read_numa_maps(proc_root: Path, pid: int) -> list[NumaVma] | None:
    """The process's VMAs, or None when it is gone (or is a kernel thread: empty file).

    Permission errors propagate: reading another user's numa_maps needs ptrace access.
    """
    try:
        text = (proc_root / str(pid) / "numa_maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_numa_maps(text)


@dataclass
class NodeBytes:
    """Bytes by node of one process or container, split into anonymous and file pages."""

    anon: dict[int, int] = field(default_factory=dict)
    file: dict[int, int] = field(default_factory=dict)

    def total(self) -> dict[int, int]:
        out = dict(self.anon)
        for n, b in self.file.items():
            out[n] = out.get(n, 0) + b
        return out


def split_vma(v: NumaVma) -> tuple[dict[int, int], dict[int, int]]:
    """(anon bytes by node, file bytes by node) of one VMA.

    numa_maps gives one node histogram per VMA, not one per page type: a file VMA with
    COW-ed (anonymous) pages has its anon pages spread over the nodes in proportion.
    """
    total = v.pages
    by_node = v.bytes_by_node()
    if v.kind != "file":
        return by_node, {}
    if total == 0 or v.anon == 0:
        return {}, by_node
    share = v.anon / total
    anon = {n: round(b * share) for n, b in by_node.items()}
    return anon, {n: b - anon[n] for n, b in by_node.items()}


def file_bytes_by_path(vmas: Iterable[NumaVma]) -> dict[str, dict[int, int]]:
    """Mapped file bytes per path and node (VMAs of one path summed: one process's view)."""
    out: dict[str, dict[int, int]] = {}
    for v in vmas:
        if v.kind != "file" or v.file is None:
            continue
        _, file = split_vma(v)
        dest = out.setdefault(v.file, {})
        for n, b in file.items():
            if b:
                dest[n] = dest.get(n, 0) + b
    return out


def anon_bytes_by_node(vmas: Iterable[NumaVma]) -> dict[int, int]:
    """Anonymous bytes per node over all VMAs."""
    out: dict[int, int] = {}
    for v in vmas:
        anon, _ = split_vma(v)
        for n, b in anon.items():
            if b:
                out[n] = out.get(n, 0) + b
    return out
