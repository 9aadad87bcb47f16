"""Fake sysfs/procfs (and other kernel file) trees for tests, holding the kernel's own text.

``FakeSys(tmp_path)`` lays out ``<root>/sys`` and ``<root>/proc`` like the real roots, so
code under test takes ``fs.sys_root`` / ``fs.proc_root`` where it would take ``/sys`` and
``/proc``. ``write(relpath, text)`` is the primitive everything else uses; use it for any
tree (cgroupfs too: ``fs.write("cgroup/zoned/cpuset.mems", "1-2\\n")``).

    fs = (FakeSys(tmp_path)
          .node(0, total_mib=208, free_mib=120, file_mib=40, cpus="0-1")
          .node(1, total_mib=256, free_mib=250)
          .cmdline("root=/dev/vda1 numa=fake=2")
          .numa_balancing(0)
          .build())
    read_topology(fs.sys_root, fs.proc_root)

Text formats are copied from the kernel's printers: ``nodeN/meminfo`` from
drivers/base/node.c node_read_meminfo (6.x, x86-64 with THP, as a 6.18 kernel prints it),
``distance`` from node_read_distance, node lists as ``%*pbl``, ``/proc/meminfo`` from
fs/proc/meminfo.c. Regenerate the checked-in 8-node tree with
``python -m tests.fakes.sysfs --write-8node``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zoned.model.nodelist import format_nodelist

DATA = Path(__file__).parent.parent / "data"

# Field order of node_read_meminfo (drivers/base/node.c, 6.x on x86-64: no HIGHMEM, no
# SHADOW_CALL_STACK, THP on, no UNACCEPTED_MEMORY); checked line for line against a 6.18
# kernel's node0/meminfo. Before 6.x FileHugePages/FilePmdMapped had one space less.
NODE_MEMINFO_FIELDS = (
    "MemTotal",
    "MemFree",
    "MemUsed",
    "SwapCached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Mlocked",
    "Dirty",
    "Writeback",
    "FilePages",
    "Mapped",
    "AnonPages",
    "Shmem",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "AnonHugePages",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "FileHugePages",
    "FilePmdMapped",
)


def node_meminfo_text(node_id: int, kb: dict[str, int]) -> str:
    """``nodeN/meminfo`` as the kernel prints it; fields not in ``kb`` are 0 kB."""
    lines = []
    for name in NODE_MEMINFO_FIELDS:
        # "Node %d MemTotal:       %8lu kB": label padded to 16 with the colon, then %8lu.
        label = f"{name}:"
        lines.append(f"Node {node_id} {label:<16}{kb.get(name, 0):>8} kB")
    for name in ("HugePages_Total", "HugePages_Free", "HugePages_Surp"):
        # hugetlb_report_node_meminfo: "Node %d HugePages_Total: %5u"
        lines.append(f"Node {node_id} {name + ':':<16} {0:>5}")
    return "\n".join(lines) + "\n"


def proc_meminfo_text(kb: dict[str, int]) -> str:
    """``/proc/meminfo`` (fs/proc/meminfo.c: "%-16s%8lu kB"-like) for the given fields."""
    order = (
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SwapCached",
        "Active",
        "Inactive",
        "Active(anon)",
        "Inactive(anon)",
        "Active(file)",
        "Inactive(file)",
        "Unevictable",
        "Mlocked",
        "SwapTotal",
        "SwapFree",
        "Dirty",
        "Writeback",
        "AnonPages",
        "Mapped",
        "Shmem",
        "KReclaimable",
        "Slab",
        "SReclaimable",
        "SUnreclaim",
        "KernelStack",
        "PageTables",
        "SecPageTables",
        "NFS_Unstable",
        "Bounce",
        "WritebackTmp",
        "CommitLimit",
        "Committed_AS",
        "VmallocTotal",
        "VmallocUsed",
        "VmallocChunk",
        "Percpu",
        "AnonHugePages",
        "ShmemHugePages",
        "ShmemPmdMapped",
        "FileHugePages",
        "FilePmdMapped",
    )
    lines = [f"{name + ':':<16}{kb.get(name, 0):>8} kB" for name in order]
    lines += [
        f"{'HugePages_Total:':<16}{0:>8}",
        f"{'HugePages_Free:':<16}{0:>8}",
        f"{'HugePages_Rsvd:':<16}{0:>8}",
        f"{'HugePages_Surp:':<16}{0:>8}",
        f"{'Hugepagesize:':<16}{2048:>8} kB",
        f"{'Hugetlb:':<16}{0:>8} kB",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class _Node:
    id: int
    total_kb: int
    free_kb: int
    file_kb: int
    cpus: str
    distances: tuple[int, ...] | None
    meminfo: str | None  # verbatim text, replacing the generated one


def _kb(mib: float) -> int:
    return round(mib * 1024)


class FakeSys:
    """Builder of a fake ``sys``/``proc`` pair under ``root``; chain calls, then ``build()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys_root = root / "sys"
        self.proc_root = root / "proc"
        self._nodes: dict[int, _Node] = {}
        self._cmdline = "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro console=ttyS0"
        self._balancing: int | None = 0
        self._numa = True
        self._has_memory: str | None = None  # None: derived from node sizes
        self._omit: list[str] = []

    # -- primitive ----------------------------------------------------------------
    def write(self, relpath: str, text: str) -> FakeSys:
        """Write ``text`` to ``root/relpath``, creating directories. Returns self."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii")
        return self

    def sys(self, relpath: str, text: str) -> FakeSys:
        """Write a file under the sysfs root (``devices/system/node/online``...)."""
        return self.write(f"sys/{relpath}", text)

    def proc(self, relpath: str, text: str) -> FakeSys:
        """Write a file under the procfs root (``cmdline``, ``sys/kernel/...``)."""
        return self.write(f"proc/{relpath}", text)

    # -- declarative parts, written by build() ---------------------------------------
    def node(
        self,
        node_id: int,
        total_mib: float,
        free_mib: float | None = None,
        file_mib: float = 0.0,
        *,
        cpus: str = "0-1",
        distances: Sequence[int] | None = None,
        meminfo: str | None = None,
    ) -> FakeSys:
        """An online node. ``free_mib`` defaults to 90% of total; ``distances`` to 10
        to every online node (one socket, as fake NUMA makes); ``cpus`` is a cpulist
        (``""`` for none). ``meminfo`` replaces the generated file text verbatim."""
        free = _kb(total_mib * 0.9 if free_mib is None else free_mib)
        self._nodes[node_id] = _Node(
            node_id,
            _kb(total_mib),
            free,
            _kb(file_mib),
            cpus,
            tuple(distances) if distances is not None else None,
            meminfo,
        )
        return self

    def cmdline(self, text: str) -> FakeSys:
        self._cmdline = text
        return self

    def numa_balancing(self, value: int | None) -> FakeSys:
        """``kernel.numa_balancing``; None leaves the file out (no CONFIG_NUMA_BALANCING)."""
        self._balancing = value
        return self

    def no_numa(self) -> FakeSys:
        """CONFIG_NUMA=n: no ``devices/system/node``; nodes only feed ``/proc/meminfo``."""
        self._numa = False
        return self

    def has_memory(self, nodelist: str) -> FakeSys:
        """Override ``has_memory`` (default: the nodes with a non-zero total)."""
        self._has_memory = nodelist
        return self

    def omit(self, relpath: str) -> FakeSys:
        """Remove ``root/relpath`` after building (to test a missing file)."""
        self._omit.append(relpath)
        return self

    def build(self) -> FakeSys:
        """Write every file. Returns self (``sys_root``/``proc_root`` are ready)."""
        self.sys_root.mkdir(parents=True, exist_ok=True)
        self.proc_root.mkdir(parents=True, exist_ok=True)
        nodes = [self._nodes[k] for k in sorted(self._nodes)]
        ids = [n.id for n in nodes]
        base = "devices/system/node"
        all_cpus = sorted({c for n in nodes for c in _cpus(n.cpus)})
        if self._numa and nodes:
            online = format_nodelist(ids)
            memory = self._has_memory
            if memory is None:
                memory = format_nodelist(n.id for n in nodes if n.total_kb > 0)
            with_cpus = format_nodelist(n.id for n in nodes if n.cpus)
            for name, value in (
                ("online", online),
                ("possible", online),
                ("has_memory", memory),
                ("has_normal_memory", memory),
                ("has_cpu", with_cpus[:1] if with_cpus else ""),
            ):
                self.sys(f"{base}/{name}", value + "\n")
            for n in nodes:
                d = f"{base}/node{n.id}"
                kb = _node_fields(n)
                self.sys(f"{d}/meminfo", n.meminfo or node_meminfo_text(n.id, kb))
                self.sys(f"{d}/cpulist", n.cpus + "\n")
                self.sys(f"{d}/cpumap", _cpumap(n.cpus) + "\n")
                dist = n.distances or tuple(10 for _ in ids)
                self.sys(f"{d}/distance", " ".join(str(x) for x in dist) + "\n")
        if all_cpus:
            self.sys("devices/system/cpu/online", format_nodelist(all_cpus) + "\n")
        self.proc("meminfo", proc_meminfo_text(_machine_fields(nodes)))
        self.proc("cmdline", self._cmdline + "\n")
        if self._balancing is not None:
            self.proc("sys/kernel/numa_balancing", f"{self._balancing}\n")
        for rel in self._omit:
            path = self.root / rel
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return self


def _cpus(cpulist: str) -> list[int]:
    from zoned.model.nodelist import parse_nodelist

    return sorted(parse_nodelist(cpulist))


def _cpumap(cpulist: str) -> str:
    mask = sum(1 << c for c in _cpus(cpulist))
    return f"{mask:x}"


def _node_fields(n: _Node) -> dict[str, int]:
    """Plausible, self-consistent meminfo fields for a node (kB)."""
    used = n.total_kb - n.free_kb
    file_kb = min(n.file_kb, max(used, 0))
    anon = max(0, (used - file_kb) // 3)
    active_file = file_kb // 3
    slab = max(0, min(used - file_kb - anon, n.total_kb // 40))
    return {
        "MemTotal": n.total_kb,
        "MemFree": n.free_kb,
        "MemUsed": used,
        "Active": anon // 2 + active_file,
        "Inactive": anon - anon // 2 + file_kb - active_file,
        "Active(anon)": anon // 2,
        "Inactive(anon)": anon - anon // 2,
        "Active(file)": active_file,
        "Inactive(file)": file_kb - active_file,
        "FilePages": file_kb,
        "Mapped": file_kb // 5,
        "AnonPages": anon,
        "KernelStack": 64 if n.total_kb else 0,
        "PageTables": anon // 50,
        "KReclaimable": slab * 3 // 4,
        "Slab": slab,
        "SReclaimable": slab * 3 // 4,
        "SUnreclaim": slab - slab * 3 // 4,
    }


def _machine_fields(nodes: Sequence[_Node]) -> dict[str, int]:
    total: dict[str, int] = {}
    for n in nodes:
        for key, value in _node_fields(n).items():
            total[key] = total.get(key, 0) + value
    file_kb = total.get("FilePages", 0)
    buffers = file_kb // 50
    total["Buffers"] = buffers
    total["Cached"] = file_kb - buffers  # fs/proc/meminfo.c: FilePages - swapcache - buffers
    total["MemAvailable"] = total.get("MemFree", 0) + file_kb // 2
    total["VmallocTotal"] = 34359738367
    total["CommitLimit"] = total.get("MemTotal", 0) // 2
    return total


# ------------------------------------------------------------------- static trees

# A 2 GiB QEMU guest booted with numa=fake=8 (Debian 12, 6.1, 2 CPUs), as it shows itself
# after boot: node 0 is smaller (kernel image, low 1 MiB, DMA reserves), the last node a
# little smaller (early memblock allocations are top-down), the rest ~252 MiB each
# (256 MiB less their struct pages). Every CPU is listed on every node: numa_add_cpu maps
# a CPU to each fake node of its physical node (mm/numa_emulation.c).
EIGHT_NODE_KB = (
    (215_732, 112_604, 61_448),
    (257_812, 249_120, 3_912),
    (257_880, 251_316, 2_204),
    (257_880, 250_964, 2_660),
    (257_880, 251_808, 1_756),
    (257_880, 251_060, 2_488),
    (257_880, 250_412, 3_140),
    (254_148, 236_332, 10_580),
)
EIGHT_NODE_CMDLINE = (
    "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro console=ttyS0 numa=fake=8 panic=-1"
)


def eight_node(root: Path) -> FakeSys:
    """Build the 8-node guest tree under ``root`` (``root/sys``, ``root/proc``)."""
    fs = FakeSys(root).cmdline(EIGHT_NODE_CMDLINE).numa_balancing(0)
    for nid, (total, free, file_kb) in enumerate(EIGHT_NODE_KB):
        fs.node(nid, total / 1024, free / 1024, file_kb / 1024, cpus="0-1")
    return fs.build()


def write_8node(data: Path = DATA) -> tuple[Path, Path]:
    """(Re)write ``data/sys-8node`` and ``data/proc-8node``; returns (sys, proc)."""
    sys_dir, proc_dir = data / "sys-8node", data / "proc-8node"
    scratch = data / ".8node-build"
    for d in (sys_dir, proc_dir, scratch):
        if d.exists():
            shutil.rmtree(d)
    fs = eight_node(scratch)
    fs.sys_root.rename(sys_dir)
    fs.proc_root.rename(proc_dir)
    shutil.rmtree(scratch)
    return sys_dir, proc_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.sysfs", description=__doc__)
    parser.add_argument(
        "--write-8node", action="store_true", help="rewrite tests/data/{sys,proc}-8node"
    )
    args = parser.parse_args(argv)
    if not args.write_8node:
        parser.print_usage(sys.stderr)
        return 2
    for path in write_8node():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
