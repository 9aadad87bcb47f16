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

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from zoned.errors import TopologyError
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.model.nodelist import parse_nodelist
from zoned.model.sizes import KIB
from zoned.model.zonemap import NodeInfo, Topology

NODE_DIR = Path("devices/system/node")

_MEMINFO_LINE = re.compile(r"^Node\s+(\d+)\s+([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?\s*$")
# The fields the engine's per-step read needs, in kB, each on a line of its own.
_STEP_FIELDS = re.compile(
    r"^Node[ \t]+(\d+)[ \t]+(MemTotal|MemFree|FilePages):[ \t]+(\d+)[ \t]+kB[ \t]*$", re.M
)
# The same, for every line at once: no pattern part may cross a line end.
_MEMINFO_LINES = re.compile(
    r"^Node[ \t]+(\d+)[ \t]+([A-Za-z0-9_()]+):[ \t]+(\d+)(?:[ \t]+kB)?[ \t]*$", re.M
)
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
    # The engine reads every node's meminfo each step (64 nodes: ~2.7 ms line by line):
    # one pass of the same pattern over the text; line by line only to say what is wrong.
    found = _MEMINFO_LINES.findall(text)
    want = str(node_id)
    if len(found) == sum(1 for line in text.splitlines() if line.strip()) and all(
        n == want for n, _, _ in found
    ):
        return {
            key: int(value) if key.startswith("HugePages_") else int(value) * KIB
            for _, key, value in found
        }
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
    ``has_memory`` and those three lines of each ``nodeN/meminfo``.

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
        fields = _step_fields(_read(path), nid, path)
        _need(fields, ("MemTotal", "MemFree", "FilePages"), path)
        out[nid] = (fields["MemTotal"], fields["MemFree"], fields["FilePages"])
    return out


def _step_fields(text: str, node_id: int, path: Path) -> dict[str, int]:
    """The three fields ``read_node_memory`` needs from a ``nodeN/meminfo`` text, in bytes.

    Only their lines are read: at 64 nodes on every engine step the whole file's ~50
    lines were most of the cost (``read_topology`` still checks every line). Raises
    TopologyError on a line of another node or a field missing (or not a number in kB).
    """
    out: dict[str, int] = {}
    for nid, key, value in _STEP_FIELDS.findall(text):
        if int(nid) != node_id:
            raise TopologyError(f"{path}: {key} about node {nid}, not node {node_id}")
        out[key] = int(value) * KIB
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
