"""Issue 14 on the build machine's real cgroup v1 (root only): the root flag is restored,
a move stopped between the two hierarchies is finished at restart, a refused memcg move is
retried or rolled back. Each test has its own ``zoned-test-<pid>-c<n>`` subtree, removed
afterwards; processes are ``sleep``s killed afterwards."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cgroups import remove_cgroup_tree
from tests.support.realhost import V1_CPUSET, V1_MEMORY
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import WriteRefused
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.proc import proc_v1_paths

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def root_flag_untouched() -> Iterator[None]:
    """The host-wide v1 flag is the same after each test (the flag test restores its own)."""
    flag = V1_CPUSET / "cpuset.memory_pressure_enabled"
    before = flag.read_text() if flag.exists() else None
    yield
    assert (flag.read_text() if flag.exists() else None) == before


PROC = Path("/proc")
N0 = frozenset({0})
FLAG = "cpuset.memory_pressure_enabled"
_serial = itertools.count()


def paths(pid: int) -> tuple[str, str]:
    p = proc_v1_paths(PROC, pid)
    assert p is not None, f"pid {pid} is gone"
    return p["cpuset"], p["memory"]


class Box:
    def __init__(self) -> None:
        self.name = f"zoned-test-{os.getpid()}-c{next(_serial)}"
        self.backends: list[Cgroup1Backend] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def backend(self, fs_factory: Callable[[Path], CgroupFs] = CgroupFs) -> Cgroup1Backend:
        b = Cgroup1Backend(
            parent=self.name,
            cpuset_root=V1_CPUSET,
            memory_root=V1_MEMORY,
            enable_memory_pressure=False,  # host-wide switch: never flipped here
            pressure_level=None,
            watch_oom=False,
            fs_factory=fs_factory,
        )
        self.backends.append(b)
        return b

    def sleep(self) -> int:
        p = subprocess.Popen(["sleep", "600"], start_new_session=True)
        self.procs.append(p)
        return p.pid


@pytest.fixture
def box(real_v1: tuple[Path, Path]) -> Iterator[Box]:
    b = Box()
    try:
        yield b
    finally:
        for be in b.backends:
            be.close()
        for p in b.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for root in (V1_CPUSET, V1_MEMORY):
            remove_cgroup_tree(root, b.name)


def test_the_root_flag_is_restored_at_stop(real_v1: tuple[Path, Path], tmp_path: Path) -> None:
    """The one root write allowed in tests: the real value is saved first and put back in a
    finalizer whatever happens."""
    flag = V1_CPUSET / FLAG
    saved = flag.read_text().strip()
    try:
        b = Cgroup1Backend(
            parent=f"zoned-test-{os.getpid()}-flag",
            cpuset_root=V1_CPUSET,
            memory_root=V1_MEMORY,
            enable_memory_pressure=True,
            state_dir=tmp_path,
            pressure_level=None,
            watch_oom=False,
        )
        assert flag.read_text().strip() == "1"
        b.close()
        assert flag.read_text().strip() == saved
    finally:
        if flag.read_text().strip() != saved:
            flag.write_text(saved)


def test_a_move_stopped_between_the_hierarchies_is_finished_at_restart(box: Box) -> None:
    web = ContainerDecl("web", Amount.nodes(1), Amount.nodes(1))
    box.backend().ensure(web, N0)
    pid = box.sleep()
    _, memcg_before = paths(pid)
    # kill -9 between the two writes: only the cpuset one was made
    (V1_CPUSET / box.name / "web" / "cgroup.procs").write_text(str(pid))
    assert paths(pid) == (f"{box.name}/web", memcg_before)  # split
    box.backend().ensure(web, N0)  # what a restart's admission does
    assert paths(pid) == (f"{box.name}/web", f"{box.name}/web")


class RefusingMemory(CgroupFs):
    """The real memory hierarchy, refusing the first ``times`` process moves with EBUSY."""

    def __init__(self, root: Path, times: int) -> None:
        super().__init__(root)
        self.times = times

    def move_pid(self, cgroup: str, pid: int, file: str = "cgroup.procs") -> None:
        if self.times > 0:
            self.times -= 1
            raise WriteRefused(f"write {pid} to {self.path(cgroup, file)}: EBUSY", errno.EBUSY)
        super().move_pid(cgroup, pid, file)


def refusing(times: int) -> Callable[[Path], CgroupFs]:
    return lambda root: RefusingMemory(root, times) if root == V1_MEMORY else CgroupFs(root)


def test_a_refused_memcg_move_is_retried(box: Box) -> None:
    b = box.backend(refusing(1))
    b.ensure(ContainerDecl("web", Amount.nodes(1), Amount.nodes(1)), N0)
    pid = box.sleep()
    b.attach("web", pid)
    assert paths(pid) == (f"{box.name}/web", f"{box.name}/web")


def test_a_memcg_move_refused_twice_is_rolled_back(box: Box) -> None:
    b = box.backend(refusing(2))
    b.ensure(ContainerDecl("web", Amount.nodes(1), Amount.nodes(1)), N0)
    pid = box.sleep()
    before = paths(pid)
    with pytest.raises(WriteRefused) as exc:
        b.attach("web", pid)
    assert exc.value.errno == errno.EBUSY
    assert paths(pid) == before  # back in its old cpuset: not split
