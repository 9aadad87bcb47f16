"""The three ownership models of the linux-mm SoftwareZones page, measured on this host.

What each model charges a container (bytes):

- ``zones`` (software zones, what zoned enforces): everything that lives on the nodes the
  container owns — ``MemTotal - MemFree`` of each node in its ``cpuset.mems.effective``,
  less the free pages on the node's per-CPU lists (``zoned.kernel.zoneinfo``), whoever
  allocated it (its own pages, page cache it faulted, kernel allocations made
  there). Pages it maps on the shared zone or on another container's nodes are not its.
- ``static`` (static page ownership, memcg first touch): ``memory.current`` (v2) or
  ``memory.usage_in_bytes`` (v1) through the backend's ``usage()``. A page is charged to
  the cgroup that allocated it until it is freed, whoever maps it later.
- ``partial`` (partial page ownership): every page any of the container's processes maps,
  counted once per container (unique PFNs from ``/proc/PID/pagemap``), and charged to
  every container that maps it. Page cache that no process maps is charged to nobody.
  Needs CAP_SYS_ADMIN for the PFNs; see ``zoned.kernel.pagemap`` for its cost and bounds.

The container → cgroup → PIDs mapping comes from the backend (``state()``,
``processes()``, ``usage()``), built read-only: constructing it writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from zoned.backends.base import Backend
from zoned.config.decl import Declarations
from zoned.errors import CgroupGone
from zoned.kernel.pagemap import PagemapReader, PfnArray, ScanStats, sampling_stderr
from zoned.model.host import NodeMemory
from zoned.model.zonemap import Topology

MODELS = ("zones", "static", "partial")


def shared_nodes(decls: Declarations, topology: Topology) -> frozenset[int]:
    """The shared zone's nodes: the declared list, or ``shared_count`` pool nodes from
    the top of the node range (placement's rule 3)."""
    host = decls.host
    if host.shared_nodes:
        return frozenset(host.shared_nodes)
    if not host.shared_count:
        return frozenset()
    pool = [n for n in topology.memory_node_ids if n not in host.reserved_nodes]
    return frozenset(pool[-host.shared_count :])


@dataclass(frozen=True)
class Target:
    """One container as found on the host now."""

    name: str
    nodes: frozenset[int]
    pids: tuple[int, ...]


def targets(backend: Backend, names: Iterable[str]) -> tuple[list[Target], list[str]]:
    """(containers present, names whose cgroup is missing)."""
    found: list[Target] = []
    missing: list[str] = []
    for name in names:
        try:
            st = backend.state(name)
        except CgroupGone:
            missing.append(name)
            continue
        found.append(Target(name, st.nodes, tuple(backend.processes(name))))
    return found, missing


def zones_charge(
    nodes: Iterable[int], memory: Mapping[int, NodeMemory], free_lists: Mapping[int, int]
) -> int:
    """Bytes in use on ``nodes``: MemTotal - MemFree of each, less the free pages on its
    per-CPU lists (``free_lists``, bytes by node), which MemFree does not count."""
    return sum(
        max(memory[n].total - memory[n].free - free_lists.get(n, 0), 0)
        for n in nodes
        if n in memory
    )


@dataclass(frozen=True)
class Charge:
    """One container's charge under each model asked for (None: not measured)."""

    name: str
    nodes: frozenset[int]
    pids: int
    zones: int | None = None
    static: int | None = None
    partial: int | None = None
    partial_stderr: int | None = None  # bytes; 0 when not sampled


@dataclass
class UsageReport:
    """Charges per container, plus what the partial scan saw and cost."""

    charges: list[Charge]
    missing: list[str]
    shared_nodes: frozenset[int]
    shared_zone_used: int  # bytes in use on the shared nodes (charged to no container)
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)  # bytes both map
    sample: int = 1
    scan: ScanStats = field(default_factory=ScanStats)
    page_size: int = 4096


def partial_sets(found: Sequence[Target], reader: PagemapReader) -> dict[str, PfnArray]:
    """Each container's unique (sampled) PFNs over all its processes."""
    return {t.name: reader.union(t.pids) for t in found}


def overlaps(sets: Mapping[str, PfnArray], scale: int) -> dict[tuple[str, str], int]:
    """Pages (times ``scale``) mapped by both containers of each pair (name order)."""
    names = sorted(sets)
    out: dict[tuple[str, str], int] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = np.intersect1d(sets[a], sets[b], assume_unique=True)
            out[(a, b)] = len(both) * scale
    return out


def measure(
    backend: Backend,
    names: Sequence[str],
    models: Iterable[str],
    *,
    shared: frozenset[int] = frozenset(),
    reader: PagemapReader | None = None,
) -> UsageReport:
    """Charge each container present under each model in ``models``.

    ``partial`` needs ``reader`` (root with CAP_SYS_ADMIN; PagemapError otherwise).
    A container whose cgroup vanishes while being read is reported missing.
    """
    want = set(models)
    unknown = want - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models: {', '.join(sorted(unknown))}")
    found, missing = targets(backend, names)
    memory = backend.node_memory()
    zones = "zones" in want
    free_lists = backend.node_free_lists() if zones or shared else {}
    reader = reader if "partial" in want else None
    if "partial" in want and reader is None:
        raise ValueError("the partial model needs a PagemapReader")
    sets = partial_sets(found, reader) if reader is not None else {}
    page = reader.page_size if reader is not None else 4096
    sample = reader.sample if reader is not None else 1
    out: list[Charge] = []
    for t in found:
        static: int | None = None
        if "static" in want:
            try:
                static = backend.usage(t.name).current
            except CgroupGone:
                missing.append(t.name)
                continue
        partial = stderr = None
        if t.name in sets:
            n = len(sets[t.name])
            partial = n * sample * page
            stderr = round(sampling_stderr(n, sample) * page)
        out.append(
            Charge(
                name=t.name,
                nodes=t.nodes,
                pids=len(t.pids),
                zones=zones_charge(t.nodes - shared, memory, free_lists) if zones else None,
                static=static,
                partial=partial,
                partial_stderr=stderr,
            )
        )
    return UsageReport(
        charges=out,
        missing=missing,
        shared_nodes=shared,
        shared_zone_used=zones_charge(shared, memory, free_lists),
        overlaps=overlaps(sets, sample * page) if sets else {},
        sample=sample,
        scan=reader.stats if reader is not None else ScanStats(),
        page_size=page,
    )
