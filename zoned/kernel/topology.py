"""The machine's NUMA nodes as the kernel shows them, read under injectable roots.

Everything is read from ``sys_root`` (normally ``/sys``) and ``proc_root`` (normally
``/proc``) and nowhere else, so tests and demos run on fake trees (``tests/fakesys.py``).
Formats follow the kernel's own printers:

- ``devices/system/node/{online,has_memory}``: ``"%*pbl\\n"`` node lists (``0-7``).
- ``nodeN/meminfo``: ``"Node %d MemTotal:       %8lu kB\\n"`` ... (drivers/base/node.c,
  node_read_meminfo); HugePages_* lines carry no unit; kernels before 2.6.2x began with
  a blank line.
- ``nodeN/distance``: one number per *online* node, space separated, in node-id order
  (node_read_distance).
- ``nodeN/cpulist``: ``"%*pbl\\n"``; empty for a CPU-less node.
- ``/proc/cmdline``: ``numa=fake=<N>|<size>[MG]|<N>U`` (mm/numa_emulation.c).
- ``/proc/sys/kernel/numa_balancing``: 0 off; 1 normal, 2 memory tiering (a bit mask).

Every failure is a ``TopologyError`` naming the path and what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from zoned.config.decl import Amount, AmountUnit
from zoned.errors import TopologyError
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.model.nodelist import format_nodelist, parse_nodelist
from zoned.model.sizes import KIB, MIB, format_size
from zoned.model.zonemap import NodeInfo, Topology

NODE_DIR = Path("devices/system/node")

# mm/numa_emulation.c: FAKE_NODE_MIN_SIZE, the kernel refuses smaller fake nodes.
FAKE_NODE_MIN_SIZE = 32 * MIB
# Many nodes make every allocation walk a longer zonelist (linux-mm, 2006-09-15: with 64
# fake nodes a kernel build's system time "went through the roof"). Prefer few.
PREFERRED_MAX_NODES = 16
HARD_MAX_NODES = 64
# Nodes are never exactly total/N (holes, memmap, the kernel image on node 0, the last
# node takes the remainder): plan with this fraction of a node's nominal size as usable.
USABLE_FRACTION = 0.9
# With no declared containers: aim for nodes of about this size (fine enough to lend).
DEFAULT_NODE_TARGET = 256 * MIB

_MEMINFO_LINE = re.compile(r"^Node\s+(\d+)\s+([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?\s*$")
_PROC_MEMINFO_LINE = re.compile(r"^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?\s*$")


# ---------------------------------------------------------------------------- reading


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="strict")
    except FileNotFoundError as exc:
        raise TopologyError(f"{path}: missing") from exc
    except UnicodeDecodeError as exc:
        raise TopologyError(f"{path}: not text the kernel writes ({exc.reason})") from exc
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _nodelist(path: Path) -> frozenset[int]:
    text = _read(path)
    try:
        return parse_nodelist(text)
    except ValueError as exc:
        raise TopologyError(f"{path}: not a node list ({text.strip()!r}): {exc}") from exc


def parse_node_meminfo(text: str, node_id: int, where: str = "meminfo") -> dict[str, int]:
    """Fields of a ``nodeN/meminfo`` text, in bytes (HugePages_* counts stay counts).

    Raises TopologyError on a line the kernel would not print or another node's line.
    """
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # old kernels began the file with a blank line
        m = _MEMINFO_LINE.match(line)
        if not m:
            raise TopologyError(f"{where}: line {lineno}: cannot read {line.strip()!r}")
        nid, key, value = int(m.group(1)), m.group(2), int(m.group(3))
        if nid != node_id:
            raise TopologyError(f"{where}: line {lineno}: about node {nid}, not node {node_id}")
        out[key] = value if key.startswith("HugePages_") else value * KIB
    return out


def parse_proc_meminfo(text: str, where: str = "meminfo") -> dict[str, int]:
    """Fields of a ``/proc/meminfo`` text, in bytes (HugePages_* counts stay counts)."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _PROC_MEMINFO_LINE.match(line)
        if not m:
            raise TopologyError(f"{where}: line {lineno}: cannot read {line.strip()!r}")
        key, value = m.group(1), int(m.group(2))
        out[key] = value * KIB if line.rstrip().endswith("kB") else value
    return out


def _need(fields: Mapping[str, int], keys: Sequence[str], where: Path) -> None:
    missing = [k for k in keys if k not in fields]
    if missing:
        raise TopologyError(f"{where}: no {', '.join(missing)} line")


def fake_numa_arg(cmdline: str) -> str | None:
    """The argument of the last ``numa=fake=`` on a kernel command line, or None.

    Words after ``--`` go to init, not to the kernel. The kernel's early_param runs for
    each ``numa=`` in turn, so the last ``fake=`` wins.
    """
    found: str | None = None
    for word in cmdline.split():
        if word == "--":
            break
        if word.startswith("numa=fake="):
            found = word[len("numa=fake=") :]
    return found


def _numa_balancing(path: Path) -> bool | None:
    if not path.exists():
        return None  # kernel without CONFIG_NUMA_BALANCING
    text = _read(path).strip()
    try:
        value = int(text)
    except ValueError as exc:
        raise TopologyError(f"{path}: expected a number, found {text!r}") from exc
    if value < 0:
        raise TopologyError(f"{path}: expected 0 or a mode bit mask, found {value}")
    return value != 0


def _read_node(node_dir: Path, nid: int, online_count: int, memory: bool) -> NodeInfo:
    d = node_dir / f"node{nid}"
    if not d.is_dir():
        raise TopologyError(f"{d}: missing, but node {nid} is online")
    meminfo_path = d / "meminfo"
    fields = parse_node_meminfo(_read(meminfo_path), nid, str(meminfo_path))
    _need(fields, ("MemTotal", "MemFree", "FilePages"), meminfo_path)
    cpus = tuple(sorted(_nodelist(d / "cpulist")))
    dist_path = d / "distance"
    dist_text = _read(dist_path)
    try:
        distances = tuple(int(x) for x in dist_text.split())
    except ValueError as exc:
        raise TopologyError(f"{dist_path}: not numbers: {dist_text.strip()!r}") from exc
    if len(distances) != online_count:
        raise TopologyError(
            f"{dist_path}: {len(distances)} distances for {online_count} online nodes"
        )
    total, free, file_pages = fields["MemTotal"], fields["MemFree"], fields["FilePages"]
    if not memory:
        # Not in has_memory (N_MEMORY): cpuset.mems refuses it, so it holds nothing usable.
        total = free = file_pages = 0
    return NodeInfo(nid, total, free, file_pages, cpus, distances)


def _single_node(sys_root: Path, proc_root: Path, cmdline: str, balancing: bool | None) -> Topology:
    """CONFIG_NUMA=n: one node built from /proc/meminfo."""
    path = proc_root / "meminfo"
    fields = parse_proc_meminfo(_read(path), str(path))
    _need(fields, ("MemTotal", "MemFree", "Cached"), path)
    # fs/proc/meminfo.c: Cached = NR_FILE_PAGES - swap cache - buffers.
    file_pages = fields["Cached"] + fields.get("Buffers", 0) + fields.get("SwapCached", 0)
    cpu_online = sys_root / "devices/system/cpu/online"
    cpus = tuple(sorted(_nodelist(cpu_online))) if cpu_online.exists() else ()
    node = NodeInfo(0, fields["MemTotal"], fields["MemFree"], file_pages, cpus, (10,))
    return Topology((node,), fake_numa_arg(cmdline), balancing, cmdline.strip())


def read_topology(sys_root: Path = SYS_ROOT, proc_root: Path = PROC_ROOT) -> Topology:
    """The online nodes (id order), the numa=fake= argument and kernel.numa_balancing.

    Reads only under ``sys_root`` and ``proc_root``. A node outside ``has_memory`` is
    reported with zero sizes. Without ``devices/system/node`` (CONFIG_NUMA=n) the machine
    is one node built from ``/proc/meminfo``. Raises TopologyError.
    """
    if not sys_root.is_dir():
        raise TopologyError(f"{sys_root}: not a directory (the sysfs root)")
    if not proc_root.is_dir():
        raise TopologyError(f"{proc_root}: not a directory (the procfs root)")
    cmdline = _read(proc_root / "cmdline").replace("\0", " ")
    balancing = _numa_balancing(proc_root / "sys/kernel/numa_balancing")
    node_dir = sys_root / NODE_DIR
    if not node_dir.is_dir():
        return _single_node(sys_root, proc_root, cmdline, balancing)
    online = _nodelist(node_dir / "online")
    if not online:
        raise TopologyError(f"{node_dir / 'online'}: no online nodes")
    has_memory_path = node_dir / "has_memory"
    memory = _nodelist(has_memory_path) if has_memory_path.exists() else online
    nodes = tuple(_read_node(node_dir, n, len(online), n in memory) for n in sorted(online))
    return Topology(nodes, fake_numa_arg(cmdline), balancing, cmdline.strip())


def read_node_memory(
    sys_root: Path = SYS_ROOT, proc_root: Path = PROC_ROOT
) -> dict[int, tuple[int, int, int]]:
    """Each online node's (MemTotal, MemFree, FilePages) in bytes, reading only ``online``,
    ``has_memory`` and each ``nodeN/meminfo``.

    The engine asks for this on every step; ``read_topology`` also reads cpulists,
    distances and the command line, which was most of a step's time in the VM benchmark
    (31 of 38 ms from tripwire to write under TCG). Same errors as ``read_topology``.
    """
    node_dir = sys_root / NODE_DIR
    if not node_dir.is_dir():
        node = read_topology(sys_root, proc_root).nodes[0]
        return {node.id: (node.mem_total, node.mem_free, node.file_pages)}
    online = _nodelist(node_dir / "online")
    has_memory_path = node_dir / "has_memory"
    memory = _nodelist(has_memory_path) if has_memory_path.exists() else online
    out: dict[int, tuple[int, int, int]] = {}
    for nid in sorted(online):
        if nid not in memory:
            out[nid] = (0, 0, 0)
            continue
        path = node_dir / f"node{nid}" / "meminfo"
        fields = parse_node_meminfo(_read(path), nid, str(path))
        _need(fields, ("MemTotal", "MemFree", "FilePages"), path)
        out[nid] = (fields["MemTotal"], fields["MemFree"], fields["FilePages"])
    return out


def machine_memory(topology: Topology, proc_root: Path | None = None) -> int:
    """Bytes of RAM to plan a numa=fake= split with.

    The nodes' MemTotal sum, or ``/proc/meminfo`` MemTotal when that is larger (with
    deferred struct-page init the nodes can show less than the machine has). A missing or
    unreadable ``/proc/meminfo`` falls back to the nodes' sum.
    """
    total = sum(n.mem_total for n in topology.nodes)
    if proc_root is not None:
        try:
            text = (proc_root / "meminfo").read_text(encoding="ascii")
            total = max(total, parse_proc_meminfo(text).get("MemTotal", 0))
        except (OSError, UnicodeDecodeError, TopologyError):
            pass  # the nodes' sum is still a sound basis
    return total


# ---------------------------------------------------------------------- recommending


@dataclass(frozen=True)
class FakeNumaPlan:
    """A recommended ``numa=fake=`` boot parameter and why."""

    nodes: int
    node_bytes: int  # nominal size of one node (total / nodes); real ones vary a little
    reasons: tuple[str, ...] = field(default=())

    @property
    def param(self) -> str:
        return f"numa=fake={self.nodes}"

    def __str__(self) -> str:
        return self.param


def _nodes_for(amount: Amount, node_bytes: int) -> int:
    if amount.unit is AmountUnit.NODES:
        return amount.value
    usable = int(node_bytes * USABLE_FRACTION)
    return max(1, math.ceil(amount.value / usable))


def plan_fake_numa(
    total_bytes: int, containers: Sequence[tuple[Amount, Amount]] = ()
) -> FakeNumaPlan:
    """Choose N for ``numa=fake=N`` given the RAM and the containers' (min, max).

    Rules: node 0 stays reserved for the host; each container's ``min`` takes whole nodes
    (a node counts as 90% of total/N, since real nodes come out uneven); one spare node
    when any container may grow past its min (overcommit needs a node to lend); nodes of
    at least 32 MiB (FAKE_NODE_MIN_SIZE); a max given in nodes must fit in the nodes
    besides node 0; never more than 64 nodes and preferably at
    most 16 (zonelist walk cost); no fewer nodes than without containers (nodes of ~256
    MiB, 2 to 16 of them), so lending stays fine-grained. Among the fits, the fewest
    nodes whose rounding waste (whole nodes held beyond byte-sized mins) stays within
    1/8 of the RAM; else the least waste. The count form ``N`` rather than a size is
    recommended because it spreads the remainder over the nodes instead of leaving one
    odd-sized last node.

    Raises TopologyError when nothing fits.
    """
    max_nodes = min(HARD_MAX_NODES, total_bytes // FAKE_NODE_MIN_SIZE)
    if max_nodes < 2:
        raise TopologyError(
            f"{format_size(total_bytes)} of memory is too little for fake NUMA: "
            f"at least 2 nodes of {format_size(FAKE_NODE_MIN_SIZE)} are needed"
        )
    floor = max(2, min(PREFERRED_MAX_NODES, max_nodes, total_bytes // DEFAULT_NODE_TARGET))
    if not containers:
        n = floor
        size = total_bytes // n
        return FakeNumaPlan(
            n,
            size,
            (
                f"{n} nodes of ~{format_size(size)}: node 0 for the host, "
                f"{n - 1} to lend (no containers declared; aiming for ~"
                f"{format_size(DEFAULT_NODE_TARGET)} nodes, at most {PREFERRED_MAX_NODES})",
            ),
        )

    grows = any(_grows(lo, hi) for lo, hi in containers)
    spare = 1 if grows else 0
    byte_mins = [lo.value for lo, _ in containers if lo.unit is AmountUnit.BYTES]

    def fits(n: int) -> tuple[int, int] | None:
        size = total_bytes // n
        held = sum(_nodes_for(lo, size) for lo, _ in containers)
        if 1 + held + spare > n:
            return None
        if any(hi.unit is AmountUnit.NODES and hi.value > n - 1 for _, hi in containers):
            return None  # a max of K nodes needs K lendable nodes to mean anything
        waste = sum(_nodes_for(Amount.bytes_(b), size) * size - b for b in byte_mins)
        return held, max(0, waste)

    feasible: list[tuple[int, int, int]] = []  # (n, held, waste)
    for n in range(2, max_nodes + 1):
        r = fits(n)
        if r is not None:
            feasible.append((n, r[0], r[1]))
    if not feasible:
        need = sum(
            lo.value if lo.unit is AmountUnit.NODES else math.ceil(lo.value / FAKE_NODE_MIN_SIZE)
            for lo, _ in containers
        )
        raise TopologyError(
            f"the declared mins do not fit {format_size(total_bytes)} in at most "
            f"{max_nodes} fake nodes (they need at least {need} nodes plus node 0"
            + (" and a spare" if spare else "")
            + ")"
        )
    # Declared containers never make lending coarser than the no-container default.
    preferred = (
        [f for f in feasible if floor <= f[0] <= PREFERRED_MAX_NODES]
        or [f for f in feasible if f[0] <= PREFERRED_MAX_NODES]
        or feasible
    )
    budget = total_bytes // 8
    good = [f for f in preferred if f[2] <= budget]
    n, held, waste = good[0] if good else min(preferred, key=lambda f: (f[2], f[0]))
    size = total_bytes // n
    reasons = [
        f"{n} nodes of ~{format_size(size)}: node 0 reserved for the host, "
        f"{held} for the containers' mins, {n - 1 - held} free to lend",
    ]
    if spare:
        reasons.append("at least one spare node so a container can grow past its min")
    if byte_mins:
        reasons.append(f"whole-node rounding of the byte-sized mins holds {format_size(waste)}")
    if n > PREFERRED_MAX_NODES:
        reasons.append(
            f"more than {PREFERRED_MAX_NODES} nodes: every allocation walks a longer zonelist"
        )
    return FakeNumaPlan(n, size, tuple(reasons))


def _grows(lo: Amount, hi: Amount) -> bool:
    if lo.unit is hi.unit:
        return hi.value > lo.value
    return True  # mixed units: assume it may grow; a spare node is cheap insurance


def recommend_fake_numa(total_bytes: int, containers: Sequence[tuple[Amount, Amount]] = ()) -> str:
    """The boot parameter (``numa=fake=N``) that ``plan_fake_numa`` chooses."""
    return plan_fake_numa(total_bytes, containers).param


# -------------------------------------------------------------------------- warnings


def warnings(topology: Topology) -> list[str]:
    """Things about this machine that work against zoned, each with what to do."""
    out: list[str] = []
    mem_nodes = [n for n in topology.nodes if n.has_memory]
    if len(mem_nodes) <= 1:
        out.append(
            "only one NUMA node with memory: zoned needs the kernel booted with "
            "numa=fake=N to have zones to hand out"
        )
    elif topology.fake_numa is None:
        out.append(
            f"{len(mem_nodes)} nodes but no numa=fake= on the kernel command line: these are "
            "real NUMA nodes, so a zone is a whole socket's memory"
        )
    if topology.numa_balancing and len(topology.nodes) > 1:
        out.append(
            "kernel.numa_balancing is on: with fake NUMA every CPU is local to the first "
            "fake node of its socket (mm/numa_emulation.c), so automatic balancing keeps "
            "migrating pages toward node 0 and across zones; set kernel.numa_balancing=0"
        )
    memoryless = [n.id for n in topology.nodes if not n.has_memory]
    if memoryless:
        out.append(
            f"nodes {format_nodelist(memoryless)} have no memory: they cannot be given to a "
            "container (cpuset.mems refuses them)"
            if len(memoryless) > 1
            else f"node {memoryless[0]} has no memory: it cannot be given to a container "
            "(cpuset.mems refuses it)"
        )
    if len(mem_nodes) > 2 and mem_nodes[0].id == 0:
        others = median(n.mem_total for n in mem_nodes[1:])
        node0 = mem_nodes[0].mem_total
        if node0 < 0.9 * others:
            out.append(
                f"node 0 ({format_size(node0)}) is smaller than the others "
                f"({format_size(others)} typical): the kernel's own memory lives there; "
                "keep it reserved for the host"
            )
    return out
