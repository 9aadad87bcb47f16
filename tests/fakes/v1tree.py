"""A fake cgroup v1 cpuset + memory tree in a tmp dir, with the kernel's own file contents.

The contents were copied from the build machine's kernel (6.18, one node, two CPUs): a
fresh child cgroup of each hierarchy, and the root's cpuset files. ``FakeCgroupFs`` stands
in for ``CgroupFs`` where a plain directory cannot act like kernfs:

- ``mkdir`` populates the new cgroup with the kernel's files (a fresh child's contents);
- ``write`` replaces the file's contents (kernfs takes each write whole), records it in
  ``writes``, mirrors ``cpuset.{cpus,mems}`` into ``cpuset.effective_*`` and answers a few
  writes with the errnos the kernel gave (ENOSPC for a task in an empty cpuset, EINVAL for
  an offline node, EACCES for mems outside the parent's);
- ``before_read`` hooks run before each read (to remove a cgroup between two reads).

Also writes ``proc/self/mountinfo`` (the machine's lines, re-pointed at the tmp dir) and a
one-node ``sys/devices/system/node``.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from zoned.kernel.cgroupfs import CgroupFs, translated
from zoned.kernel.faults import before_write
from zoned.model.nodelist import parse_nodelist

NO_LIMIT = "9223372036854771712"  # PAGE_COUNTER_MAX * 4096: "no limit" as v1 prints it

CPUSET_ROOT = {
    "cgroup.clone_children": "0",
    "cgroup.procs": "1",
    "cgroup.sane_behavior": "0",
    "cpuset.cpu_exclusive": "1",
    "cpuset.cpus": "0-1",
    "cpuset.effective_cpus": "0-1",
    "cpuset.effective_mems": "0",
    "cpuset.mem_exclusive": "1",
    "cpuset.mem_hardwall": "0",
    "cpuset.memory_migrate": "0",
    "cpuset.memory_pressure": "0",
    "cpuset.memory_pressure_enabled": "0",
    "cpuset.memory_spread_page": "0",
    "cpuset.memory_spread_slab": "0",
    "cpuset.mems": "0",
    "cpuset.sched_load_balance": "1",
    "cpuset.sched_relax_domain_level": "-1",
    "notify_on_release": "0",
    "release_agent": "",
    "tasks": "1",
}

CPUSET_CHILD = {
    "cgroup.clone_children": "0",
    "cgroup.procs": "",
    "cpuset.cpu_exclusive": "0",
    "cpuset.cpus": "",
    "cpuset.effective_cpus": "",
    "cpuset.effective_mems": "",
    "cpuset.mem_exclusive": "0",
    "cpuset.mem_hardwall": "0",
    "cpuset.memory_migrate": "0",
    "cpuset.memory_pressure": "0",
    "cpuset.memory_spread_page": "0",
    "cpuset.memory_spread_slab": "0",
    "cpuset.mems": "",
    "cpuset.sched_load_balance": "1",
    "cpuset.sched_relax_domain_level": "-1",
    "notify_on_release": "0",
    "tasks": "",
}

EMPTY_NUMA_STAT = """\
total=0 N0=0
file=0 N0=0
anon=0 N0=0
unevictable=0 N0=0
hierarchical_total=0 N0=0
hierarchical_file=0 N0=0
hierarchical_anon=0 N0=0
hierarchical_unevictable=0 N0=0"""

# The root memcg's numa_stat on the build machine (pages; a busy cgroup, one node).
ROOT_NUMA_STAT = """\
total=5427 N0=5427
file=609 N0=609
anon=374 N0=374
unevictable=4444 N0=4444
hierarchical_total=90617 N0=90617
hierarchical_file=83556 N0=83556
hierarchical_anon=2617 N0=2617
hierarchical_unevictable=4444 N0=4444"""

_STAT_KEYS = [
    "cache",
    "rss",
    "rss_huge",
    "shmem",
    "mapped_file",
    "dirty",
    "writeback",
    "workingset_refault_anon",
    "workingset_refault_file",
    "swap",
    "swapcached",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
]


def memory_stat(values: dict[str, int] | None = None) -> str:
    """A v1 ``memory.stat`` in the kernel's order: own counters, the limits, ``total_*``."""
    v = values or {}
    lines = [f"{k} {v.get(k, 0)}" for k in _STAT_KEYS]
    lines += [f"hierarchical_memory_limit {NO_LIMIT}", f"hierarchical_memsw_limit {NO_LIMIT}"]
    lines += [f"total_{k} {v.get('total_' + k, v.get(k, 0))}" for k in _STAT_KEYS]
    return "\n".join(lines)


MEMORY_CHILD = {
    "cgroup.clone_children": "0",
    "cgroup.event_control": "",
    "cgroup.procs": "",
    "memory.failcnt": "0",
    "memory.force_empty": "",
    "memory.limit_in_bytes": NO_LIMIT,
    "memory.max_usage_in_bytes": "0",
    "memory.memsw.limit_in_bytes": NO_LIMIT,
    "memory.memsw.usage_in_bytes": "0",
    "memory.move_charge_at_immigrate": "0",
    "memory.numa_stat": EMPTY_NUMA_STAT,
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0",
    "memory.pressure_level": "",
    "memory.soft_limit_in_bytes": NO_LIMIT,
    "memory.stat": memory_stat(),
    "memory.swappiness": "60",
    "memory.usage_in_bytes": "0",
    "memory.use_hierarchy": "1",
    "notify_on_release": "0",
    "tasks": "",
}

MEMORY_ROOT = {
    **MEMORY_CHILD,
    "memory.numa_stat": ROOT_NUMA_STAT,
    "memory.usage_in_bytes": "371277824",
}

NODE0_MEMINFO = """\
Node 0 MemTotal:        4810964 kB
Node 0 MemFree:         3852664 kB
Node 0 MemUsed:          958300 kB
Node 0 SwapCached:            0 kB
Node 0 Active:           198448 kB
Node 0 Inactive:         551960 kB
Node 0 FilePages:        289212 kB
Node 0 AnonPages:        479368 kB
Node 0 HugePages_Total:     0
Node 0 HugePages_Free:      0
Node 0 HugePages_Surp:      0
"""

MOUNTINFO = """\
31 23 0:28 / {root}/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / {root}/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / {root}/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / {root}/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / {root}/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def _fill(d: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (d / name).write_text(text + "\n" if text else "")


class FakeCgroupFs(CgroupFs):
    """``CgroupFs`` over a plain directory that behaves like a v1 hierarchy (see module)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.kind = "cpuset" if (root / "cpuset.mems").exists() else "memory"
        self.writes: list[tuple[str, str, str]] = []
        self.before_read: list[Callable[[str, str], None]] = []
        # Run before each write is applied; may raise OSError as the kernel would.
        self.before_write: list[Callable[[str, str, str], None]] = []

    def read(self, cgroup: str, file: str) -> str:
        for hook in self.before_read:
            hook(cgroup, file)
        return super().read(cgroup, file)

    def mkdir(self, cgroup: str) -> bool:
        created = super().mkdir(cgroup)
        if created:
            _fill(self.path(cgroup), CPUSET_CHILD if self.kind == "cpuset" else MEMORY_CHILD)
        return created

    def rmdir(self, cgroup: str) -> bool:
        """Like the kernel: EBUSY while it has tasks or child cgroups; files go with it."""
        p = self.path(cgroup)
        if not p.is_dir():
            return False
        busy = any(e.is_dir() for e in p.iterdir()) or (p / "cgroup.procs").read_text().strip()
        with translated(f"rmdir {p}", writing=True):
            if busy:
                raise OSError(errno.EBUSY, "Device or resource busy")
            shutil.rmtree(p)
        return True

    def write(self, cgroup: str, file: str, value: str) -> None:
        p = self.path(cgroup, file)
        with translated(f"write {value!r} to {p}", writing=True):
            if not p.exists():
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(p))
            before_write(str(p), value)  # the fault-injection suite's hook, as in CgroupFs
            for hook in self.before_write:
                hook(cgroup, file, value)
            self._check(cgroup, file, value)
            self.writes.append((cgroup, file, value))
            if not value:
                return  # a zero-length write never reaches the kernel
            text = value if value.endswith("\n") else value + "\n"
            if file in ("cgroup.procs", "tasks"):
                pids = sorted({*p.read_text().split(), value.strip()}, key=int)
                text = "\n".join(pids) + "\n"
            if file != "cgroup.event_control":
                p.write_text(text)
            if file in ("cpuset.cpus", "cpuset.mems"):
                eff = "cpuset.effective_" + file.removeprefix("cpuset.")
                self.path(cgroup, eff).write_text(text)

    def _check(self, cgroup: str, file: str, value: str) -> None:
        """The kernel's answers to a few writes, with its errnos (measured on 6.18)."""
        if self.kind != "cpuset" or not value:
            return
        if file in ("cgroup.procs", "tasks"):
            for need in ("cpuset.cpus", "cpuset.mems"):
                if not self.path(cgroup, need).read_text().strip():
                    raise OSError(errno.ENOSPC, "No space left on device")
        if file == "cpuset.mems":
            nodes = parse_nodelist(value)
            online = parse_nodelist(self.path("", "cpuset.mems").read_text())
            if not nodes <= online:
                raise OSError(errno.EINVAL, "Invalid argument")
            parent = cgroup.rsplit("/", 1)[0] if "/" in cgroup else ""
            if not nodes <= parse_nodelist(self.path(parent, "cpuset.mems").read_text()):
                raise OSError(errno.EACCES, "Permission denied")


class FakeV1Tree:
    """``<tmp>/cgroup/{cpuset,memory}``, ``<tmp>/proc``, ``<tmp>/sys`` as on the build machine."""

    def __init__(self, tmp: Path, nodes: str = "0") -> None:
        """``nodes``: the online memory nodes (the machine has only node 0)."""
        self.tmp = tmp
        self.cpuset_root = tmp / "cgroup" / "cpuset"
        self.memory_root = tmp / "cgroup" / "memory"
        self.proc_root = tmp / "proc"
        self.sys_root = tmp / "sys"
        self.cpuset_root.mkdir(parents=True)
        self.memory_root.mkdir(parents=True)
        _fill(
            self.cpuset_root, {**CPUSET_ROOT, "cpuset.mems": nodes, "cpuset.effective_mems": nodes}
        )
        _fill(self.memory_root, MEMORY_ROOT)
        (self.proc_root / "self").mkdir(parents=True)
        (self.proc_root / "self" / "mountinfo").write_text(MOUNTINFO.format(root=tmp))
        (self.proc_root / "cmdline").write_text("console=ttyS0 numa=fake=4 quiet\n")
        (self.proc_root / "sys" / "kernel").mkdir(parents=True)
        (self.proc_root / "sys" / "kernel" / "numa_balancing").write_text("0\n")
        node = self.sys_root / "devices" / "system" / "node"
        (node / "node0").mkdir(parents=True)
        (node / "online").write_text("0\n")
        (node / "node0" / "meminfo").write_text(NODE0_MEMINFO)
        (node / "node0" / "cpulist").write_text("0-1\n")
        (node / "node0" / "distance").write_text("10\n")
        self.cpuset = FakeCgroupFs(self.cpuset_root)
        self.memory = FakeCgroupFs(self.memory_root)

    def fs_for(self, root: Path) -> CgroupFs:
        """The fs factory to hand to the backend: the same fake objects for both roots."""
        return self.cpuset if root == self.cpuset_root else self.memory

    def make(self, path: str, *, cpus: str = "0-1", mems: str = "0", migrate: str = "1") -> None:
        """A cgroup in both hierarchies, already set up (as a previous run left it); missing
        parents are made with the root's nodes."""
        if "/" in path and not self.cpuset.exists(path.rsplit("/", 1)[0]):
            self.make(path.rsplit("/", 1)[0], cpus=cpus, mems=self.cpuset.read("", "cpuset.mems"))
        self.cpuset.mkdir(path)
        self.memory.mkdir(path)
        for file, value in (
            ("cpuset.cpus", cpus),
            ("cpuset.effective_cpus", cpus),
            ("cpuset.mems", mems),
            ("cpuset.effective_mems", mems),
            ("cpuset.memory_migrate", migrate),
        ):
            self.cpuset.path(path, file).write_text(value + "\n")

    def set_memory(self, path: str, file: str, text: str) -> None:
        """What the kernel would show in a memory file (usage, stat, numa_stat ...)."""
        self.memory.path(path, file).write_text(text + "\n")

    def remove(self, path: str) -> None:
        """The cgroup vanishes from both hierarchies (as after someone's rmdir)."""
        for root in (self.cpuset_root, self.memory_root):
            shutil.rmtree(root / path, ignore_errors=True)

    def snapshot(self) -> dict[str, tuple[int, str]]:
        """Every file's (mtime_ns, contents) under both roots, to prove nothing was written."""
        out: dict[str, tuple[int, str]] = {}
        for root in (self.cpuset_root, self.memory_root):
            for dirpath, _, files in os.walk(root):
                for f in files:
                    p = Path(dirpath) / f
                    out[str(p)] = (p.stat().st_mtime_ns, p.read_text())
        return out
