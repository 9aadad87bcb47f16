"""The Backend contract on fake trees: Cgroup1Backend on a fake v1 tree and Cgroup2Backend
on a fake v2 tree (tests/fakes/v1tree.py, tests/test_cgroup2_backend.py), both with 8 nodes.

A fake tree holds the kernel's texts and answers writes with the kernel's errnos, but no
memory is charged, no page moves and nothing signals: those items skip with that reason
and run for real on this machine and in the VM. What the fakes do check on every run,
without root: creation with exact nodes, adoption writing nothing, a restart adopting,
the op protocol, EINVAL for a missing node, processes, release and CgroupGone.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.suite import BackendContract, Cap, Harness, Plan, Watch, Workload, closing
from tests.fakes.sysfs import FakeSys, eight_node
from tests.fakes.v1tree import FakeV1Tree
from tests.fakes.v2fs import FakeV2Fs, RecordingLoop
from zoned.backends.base import Backend
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.errors import Unsupported
from zoned.kernel.cgroupfs import translated
from zoned.model.nodelist import parse_nodelist

PARENT = "zoned"
FAKE_LACKS = {
    Cap.MEMORY: "a fake tree charges no memory: usage files hold what the test wrote",
    Cap.MIGRATION: "a fake tree has no pages to move",
    Cap.NOTIFY: "no kernel behind a fake tree signals eventfds or kernfs files",
    Cap.OOM: "a fake tree has no memory to fill",
}
_pids = itertools.count(42000)


class FakeWorkload:
    """A pid in the fake cgroup.procs; nothing runs and nothing is allocated."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def ready(self, watch: Watch, deadline_s: float) -> bool:
        return True

    def stop(self) -> None:
        """Nothing runs."""


def dirs_under(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_dir())


class FakeV1Harness(Harness):
    name = "fake-v1"
    settle_s = 0.1  # nothing signals here: a short look is enough

    def __init__(self, tmp: Path) -> None:
        self.lacks = FAKE_LACKS
        self.tree = FakeV1Tree(tmp / "v1", nodes="0-7")
        self.sysfs: FakeSys = eight_node(tmp / "host")
        self.made: list[Backend] = []

    def backend(self, plan: Plan | None = None) -> Backend:
        b = Cgroup1Backend(
            parent=PARENT,
            cpuset_root=self.tree.cpuset_root,
            memory_root=self.tree.memory_root,
            proc_root=self.sysfs.proc_root,
            sys_root=self.sysfs.sys_root,
            enable_memory_pressure=False,
            fs_factory=self.tree.fs_for,
        )
        self.made.append(b)
        return b

    def nodes(self) -> list[int]:
        return list(range(1, 8))

    def missing_node(self) -> int:
        return 8

    def writes(self) -> int:
        fss = (self.tree.cpuset, self.tree.memory)
        settings = sum(1 for fs in fss for w in fs.writes if w[1] != "cgroup.event_control")
        return settings + sum(dirs_under(fs.root) for fs in fss)

    def spawn(self, b: Backend, name: str, anon_mib: int) -> Workload:
        w = FakeWorkload(next(_pids))
        b.attach(name, w.pid)
        return w

    def remove(self, watch: Watch, name: str) -> None:
        self.tree.remove(f"{PARENT}/{name}")

    def close(self) -> None:
        for b in self.made:
            b.close()


class ContractV2Fs(FakeV2Fs):
    """FakeV2Fs that refuses nodes the host does not have, as the kernel does (EINVAL,
    measured on 6.1 and 6.12) instead of granting the parent's set."""

    def write(self, cgroup: str, file: str, value: str) -> None:
        if file == "cpuset.mems":
            online = parse_nodelist(self.read("", "cpuset.mems.effective"))
            if not parse_nodelist(value) <= online:
                with translated(f"write {value!r} to {self.path(cgroup, file)}", writing=True):
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        super().write(cgroup, file, value)


class FakeV2Harness(Harness):
    name = "fake-v2"
    settle_s = 0.1
    pid = 4242  # zoned's own process as the fake /proc knows it

    def __init__(self, tmp: Path) -> None:
        self.lacks = FAKE_LACKS
        self.fs = ContractV2Fs(tmp / "cgroup")
        self.sysfs: FakeSys = eight_node(tmp / "host")
        self.own_cgroup("user.slice/session-1.scope")
        self.made: list[Backend] = []

    def own_cgroup(self, path: str) -> None:
        p = self.sysfs.proc_root / str(self.pid) / "cgroup"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"0::/{path}\n")

    def backend(self, plan: Plan | None = None) -> Backend:
        leaf = f"{PARENT}/zoned.daemon"
        if self.fs.exists(leaf) and str(self.pid) in self.fs.read(leaf, "cgroup.procs").split():
            self.own_cgroup(leaf)  # what /proc/PID/cgroup says after an earlier prepare()
        b = Cgroup2Backend(
            self.fs.root,
            PARENT,
            sys_root=self.sysfs.sys_root,
            proc_root=self.sysfs.proc_root,
            fs=self.fs,
            pid=self.pid,
            loop=RecordingLoop(),
        )
        self.made.append(b)
        return b

    def nodes(self) -> list[int]:
        return list(range(1, 8))

    def missing_node(self) -> int:
        return 8

    def writes(self) -> int:
        return len(self.fs.writes) + dirs_under(self.fs.root)

    def spawn(self, b: Backend, name: str, anon_mib: int) -> Workload:
        w = FakeWorkload(next(_pids))
        try:
            b.attach(name, w.pid)
        except Unsupported:
            self.fs.move_pid(f"{PARENT}/{name}", w.pid)
        return w

    def remove(self, watch: Watch, name: str) -> None:
        shutil.rmtree(self.fs.path(f"{PARENT}/{name}"))

    def close(self) -> None:
        for b in self.made:
            b.close()


@pytest.fixture(params=["fake-v1", "fake-v2"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h: Harness = FakeV1Harness(tmp_path) if request.param == "fake-v1" else FakeV2Harness(tmp_path)
    with closing(h):
        yield h


class TestFakeContract(BackendContract):
    """Every contract item a fake tree can show, on v1 and v2."""
