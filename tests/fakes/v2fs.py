"""A fake cgroup v2 hierarchy (files in a temporary directory) and a loop that records fds."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from zoned.backends.fdloop import PRI, FdCallback, FdLoop
from zoned.kernel.cgroupfs import CgroupFs, translated
from zoned.model.host import Event
from zoned.model.nodelist import format_nodelist, parse_nodelist

LONG = 10.0
PID = 4242
ALL = "0-7"


def numa_stat(**per_node: dict[int, int]) -> str:
    items = ["anon", "file", "kernel_stack", "pagetables", "sec_pagetables", "shmem"]
    items += ["file_mapped", "slab_reclaimable", "slab_unreclaimable"]
    return "".join(
        item + "".join(f" N{n}={per_node.get(item, {}).get(n, 0)}" for n in range(8)) + "\n"
        for item in items
    )


EVENTS_ZERO = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
STAT_ZERO = "anon 0\nfile 0\nkernel 0\nkernel_stack 0\npagetables 0\nshmem 0\nslab 0\n"
PRESSURE_ZERO = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


def fresh_child(controllers: str, parent_mems: str) -> dict[str, str]:
    """A new 6.1 child cgroup's files (what the backend reads), by enabled controllers."""
    files = {
        "cgroup.controllers": controllers + "\n",
        "cgroup.subtree_control": "\n",
        "cgroup.procs": "",
        "cgroup.events": "populated 0\nfrozen 0\n",
        "cgroup.type": "domain\n",
    }
    if "cpuset" in controllers.split():
        files |= {"cpuset.mems": "\n", "cpuset.mems.effective": parent_mems + "\n"}
    if "memory" in controllers.split():
        files |= {
            "memory.current": "0\n",
            "memory.high": "max\n",
            "memory.max": "max\n",
            "memory.events": EVENTS_ZERO,
            "memory.stat": STAT_ZERO,
            "memory.numa_stat": numa_stat(),
            "memory.pressure": PRESSURE_ZERO,
            "memory.reclaim": "",
        }
    return files


class FakeV2Fs(CgroupFs):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        root.mkdir(parents=True, exist_ok=True)
        self.put(
            "",
            {
                "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
                "cgroup.subtree_control": "\n",
                "cgroup.procs": "1\n",
                "cpuset.mems.effective": ALL + "\n",
                "memory.numa_stat": numa_stat(),
            },
        )
        self.writes: list[tuple[str, str, str]] = []
        self.before_read: dict[tuple[str, str], Callable[[], None]] = {}
        self.before_write: dict[tuple[str, str], Callable[[], None]] = {}  # once, then gone
        self.refuse: dict[tuple[str, str], int] = {}  # (cgroup, file) -> errno

    def put(self, cgroup: str, files: dict[str, str]) -> None:
        for name, text in files.items():
            self.path(cgroup, name).write_text(text)

    def read(self, cgroup: str, file: str) -> str:
        hook = self.before_read.pop((cgroup, file), None)
        if hook is not None:
            hook()
        return super().read(cgroup, file)

    def mkdir(self, cgroup: str) -> bool:
        created = super().mkdir(cgroup)
        if created:
            parent = cgroup.rpartition("/")[0]
            ctl = super().read(parent, "cgroup.subtree_control").strip()
            self.put(cgroup, fresh_child(ctl, super().read(parent, "cpuset.mems.effective")))
        return created

    def write(self, cgroup: str, file: str, value: str) -> None:
        code = self.refuse.get((cgroup, file))
        if code is not None:
            with translated(f"write {value!r} to {self.path(cgroup, file)}", writing=True):
                raise OSError(code, os.strerror(code))
        hook = self.before_write.pop((cgroup, file), None)
        if hook is not None:
            hook()
        self.writes.append((cgroup, file, value))
        if file == "cgroup.subtree_control":
            have = super().read(cgroup, file).split()
            for tok in value.split():
                name = tok[1:]
                if tok[0] == "+" and name not in have:
                    have.append(name)
            order = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]
            value = " ".join(c for c in order if c in have)
        elif file == "cgroup.procs":
            value = (super().read(cgroup, file) + f"\n{value}").strip()
        elif file == "cpuset.mems":
            parent = cgroup.rpartition("/")[0]
            pe = parse_nodelist(super().read(parent, "cpuset.mems.effective"))
            eff = (parse_nodelist(value) & pe) or pe
            self.put(cgroup, {"cpuset.mems.effective": format_nodelist(eff) + "\n"})
        # kernfs takes each write whole; a regular file would keep a longer old tail
        with translated(f"write {value!r} to {self.path(cgroup, file)}", writing=True):
            self.path(cgroup, file).write_text(value)

    def rmdir(self, cgroup: str) -> bool:
        """kernfs: an empty cgroup goes with its files; one with processes is EBUSY."""
        p = self.path(cgroup)
        if not p.is_dir():
            return False
        if super().read(cgroup, "cgroup.procs").split():
            with translated(f"rmdir {p}", writing=True):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        shutil.rmtree(p)
        return True

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """Every file's text and mtime, by path."""
        return {
            str(p.relative_to(self.root)): (p.read_text(), p.stat().st_mtime_ns)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


class RecordingLoop(FdLoop):
    """An FdLoop whose fd sources are recorded (regular files cannot be epoll'ed)."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.sources: dict[int, tuple[int, FdCallback]] = {}

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None:
        assert fd not in self.sources
        self.sources[fd] = (mask, callback)

    def remove_fd(self, fd: int) -> None:
        self.sources.pop(fd, None)

    def fd_of(self, suffix: str) -> int:
        def target(fd: int) -> str:
            return str(Path(f"/proc/self/fd/{fd}").readlink()).removesuffix(" (deleted)")

        found = [fd for fd in self.sources if target(fd).endswith(suffix)]
        assert len(found) == 1, (suffix, found)
        return found[0]

    def fire(self, suffix: str, revents: int = PRI) -> list[Event]:
        fd = self.fd_of(suffix)
        return self.sources[fd][1](revents)
