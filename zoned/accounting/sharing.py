"""Recognise page sharing between containers from their processes' ``numa_maps``.

Under software zones a page is owned by whoever owns its node. A container's process that
maps a page on a node the container does not own is using someone else's memory:

- on the shared zone: expected (zoned warmed it there);
- on another container's node: that container faulted it first and pays for it (the
  "first toucher pays" problem of both zones and memcg);
- elsewhere (reserved, free pool): the host's page cache, or pages left behind by a move.

numa_maps counts pages per VMA and per process, so a page mapped by two processes of one
container would count twice. Per container, mapped file pages are therefore taken per
(file, node) as the **largest** count any one of its processes shows (processes mapping
the same file map mostly the same pages); anonymous pages are summed over processes (they
are private, but for copy-on-write after fork). For exact unique counts, ``zoned usage
--model partial`` reads PFNs from pagemap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zoned.accounting.ownership import Target
from zoned.kernel.numamaps import anon_bytes_by_node, file_bytes_by_path, read_numa_maps
from zoned.kernel.roots import PROC_ROOT

SHARED = "(shared zone)"
OTHER = "(other)"  # reserved, free or unknown nodes


@dataclass
class ContainerPages:
    """What one container's processes map, by node (bytes)."""

    name: str
    nodes: frozenset[int]
    files: dict[str, dict[int, int]] = field(default_factory=dict)  # path → node → bytes
    anon: dict[int, int] = field(default_factory=dict)
    processes: int = 0

    def file_by_node(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for per_node in self.files.values():
            for n, b in per_node.items():
                out[n] = out.get(n, 0) + b
        return out


def container_pages(t: Target, proc_root: Path = PROC_ROOT) -> ContainerPages:
    """Read every process of the container (those that exit meanwhile are skipped)."""
    out = ContainerPages(t.name, t.nodes)
    for pid in t.pids:
        vmas = read_numa_maps(proc_root, pid)
        if vmas is None:
            continue
        out.processes += 1
        for path, per_node in file_bytes_by_path(vmas).items():
            dest = out.files.setdefault(path, {})
            for n, b in per_node.items():
                dest[n] = max(dest.get(n, 0), b)
        for n, b in anon_bytes_by_node(vmas).items():
            out.anon[n] = out.anon.get(n, 0) + b
    return out


@dataclass(frozen=True)
class Share:
    """``mapper`` maps ``bytes`` of pages that live on ``owner``'s nodes."""

    mapper: str
    owner: str  # a container name, SHARED or OTHER
    file: int
    anon: int
    files: tuple[tuple[str, int], ...] = ()  # every file, largest first (bytes)

    @property
    def total(self) -> int:
        return self.file + self.anon


@dataclass
class SharingReport:
    """Per container: bytes on its own nodes; per (mapper, owner) pair: what it uses of
    others' memory."""

    own: dict[str, int]
    shares: list[Share]
    shared_nodes: frozenset[int]

    def between(self, mapper: str, owner: str) -> Share | None:
        for s in self.shares:
            if s.mapper == mapper and s.owner == owner:
                return s
        return None


def owner_of_nodes(containers: Iterable[ContainerPages], shared: frozenset[int]) -> dict[int, str]:
    """node → owner name (containers by their effective nodes; shared nodes win)."""
    out: dict[int, str] = {}
    for c in containers:
        for n in c.nodes:
            out[n] = c.name
    for n in shared:
        out[n] = SHARED
    return out


def _owner(c: ContainerPages, node: int, owners: dict[int, str]) -> str:
    # A node the container holds is its own, even if another container holds it too (a
    # misconfiguration, or a one-node host) and even if it is a shared node it may use.
    return c.name if node in c.nodes else owners.get(node, OTHER)


def analyse(containers: Sequence[ContainerPages], shared: frozenset[int]) -> SharingReport:
    """Split each container's mapped pages by the owner of the node they are on."""
    owners = owner_of_nodes(containers, shared)
    own: dict[str, int] = {}
    shares: list[Share] = []
    for c in containers:
        file_by: dict[str, int] = {}
        anon_by: dict[str, int] = {}
        files_by: dict[str, dict[str, int]] = {}
        for path, per_node in c.files.items():
            for n, b in per_node.items():
                who = _owner(c, n, owners)
                file_by[who] = file_by.get(who, 0) + b
                f = files_by.setdefault(who, {})
                f[path] = f.get(path, 0) + b
        for n, b in c.anon.items():
            who = _owner(c, n, owners)
            anon_by[who] = anon_by.get(who, 0) + b
        own[c.name] = file_by.pop(c.name, 0) + anon_by.pop(c.name, 0)
        files_by.pop(c.name, None)
        for who in sorted(set(file_by) | set(anon_by)):
            biggest = sorted(files_by.get(who, {}).items(), key=lambda kv: (-kv[1], kv[0]))
            shares.append(
                Share(
                    mapper=c.name,
                    owner=who,
                    file=file_by.get(who, 0),
                    anon=anon_by.get(who, 0),
                    files=tuple(biggest),
                )
            )
    return SharingReport(own=own, shares=shares, shared_nodes=shared)


def sharing(
    found: Sequence[Target], shared: frozenset[int], proc_root: Path = PROC_ROOT
) -> SharingReport:
    """Read and analyse; see :func:`analyse`."""
    return analyse([container_pages(t, proc_root) for t in found], shared)


def foreign_files(report: SharingReport) -> list[str]:
    """Paths some container maps on another container's nodes (promote candidates)."""
    out: dict[str, None] = {}
    for s in report.shares:
        if s.owner not in (SHARED, OTHER):
            out.update(dict.fromkeys(p for p, _ in s.files))
    return list(out)
