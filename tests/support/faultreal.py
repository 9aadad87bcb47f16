"""The real-v1 fault suite's steps and checks (tests/test_faults_v1.py, bench/fault_points.py).

The steps (admission, process moves, a node-set write, a directed reclaim, release) run
through the v1 backend in a ``zoned-test-<pid>-…`` subtree with two ``sleep`` processes; a
restart is a new backend admitting both containers, as the daemon does. See the test module.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cgroups import remove_cgroup_tree
from tests.support.faults import ErrnoAt
from tests.support.realhost import V1_CPUSET, V1_MEMORY
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import ZonedError
from zoned.kernel import faults
from zoned.kernel.proc import proc_v1_paths
from zoned.model.host import EventKind

N0 = frozenset({0})
NO_LIMIT = "9223372036854771712"
NAMES = ("web", "other")
STEPS = ("admit", "attach", "move", "set_nodes", "reclaim", "release")
SERIAL = itertools.count()

# Run one step (after admission, as a daemon start does) in its own process.
STEP = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.support.faultreal import run_step
run_step(sys.argv[2], sys.argv[3], Path(sys.argv[4]), [int(p) for p in sys.argv[5:]])
"""


def backend(parent: str, state: Path) -> Cgroup1Backend:
    return Cgroup1Backend(
        parent=parent,
        cpuset_root=V1_CPUSET,
        memory_root=V1_MEMORY,
        enable_memory_pressure=False,  # host-wide switch: never flipped here
        pressure_level=None,
        watch_oom=False,
        state_dir=state,
    )


def admit(b: Cgroup1Backend) -> None:
    for name in NAMES:
        b.ensure(ContainerDecl(name, Amount.nodes(1), Amount.nodes(1)), N0)


def wait_op(b: Cgroup1Backend, op: int) -> None:
    for _ in range(100):  # bounded: 100 waits of at most 0.1 s
        if any(ev.kind is EventKind.OP_FINISHED and ev.op == op for ev in b.wait(0.1)):
            return


def run_step(parent: str, step: str, state: Path, pids: list[int]) -> None:
    """Start (admit both containers), then do ``step``. Errors end it with one line."""
    b = backend(parent, state)
    try:
        admit(b)
        if step == "attach":
            b.attach("web", pids[0])
            b.attach("other", pids[1])
        elif step == "move":
            b.attach("web", pids[1])
        elif step == "set_nodes":
            wait_op(b, b.start_set_nodes("web", N0, 10.0))
        elif step == "reclaim":
            wait_op(b, b.start_reclaim("web", 1 << 20, 10.0))
        elif step == "release":
            for name in NAMES:
                b.release(name)
    finally:
        b.close()


@dataclass
class Box:
    parent: str
    state: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def where(self, pid: int) -> tuple[str | None, str | None] | None:
        """(cpuset, memcg) as container names (None: outside the box); None when dead."""
        paths = proc_v1_paths(Path("/proc"), pid)
        if paths is None:
            return None

        def name(path: str) -> str | None:
            if path == self.parent or path.startswith(self.parent + "/"):
                return path[len(self.parent) + 1 :] or "(parent)"
            return None

        return name(paths["cpuset"]), name(paths["memory"])

    def lost_and_split(self) -> tuple[list[str], list[str]]:
        lost: list[str] = []
        split: list[str] = []
        for p in self.procs:
            w = self.where(p.pid) if p.poll() is None else None
            if w is None:
                lost.append(f"pid {p.pid} died")
            elif w[0] != w[1]:
                split.append(f"pid {p.pid}: cpuset {w[0]}, memcg {w[1]}")
            elif w[0] not in (None, *NAMES):
                lost.append(f"pid {p.pid} in {w[0]}")
        return lost, split

    def problems(self) -> list[str]:
        """After a restart: what is not as it must be."""
        lost, split = self.lost_and_split()
        return self.cgroup_problems() + lost + split

    def cgroup_problems(self) -> list[str]:
        """Both containers in both hierarchies with node 0, no lowered limit, nothing else."""
        out: list[str] = []
        for name in NAMES:
            path = f"{self.parent}/{name}"
            if not ((V1_CPUSET / path).is_dir() and (V1_MEMORY / path).is_dir()):
                out.append(f"{name} is not in both hierarchies")
                continue
            mems = (V1_CPUSET / path / "cpuset.effective_mems").read_text().strip()
            if mems != "0":
                out.append(f"{name}: effective mems {mems!r}")
            limit = (V1_MEMORY / path / "memory.limit_in_bytes").read_text().strip()
            if limit != NO_LIMIT:
                out.append(f"{name}: memory.limit_in_bytes left at {limit}")
        for root in (V1_CPUSET, V1_MEMORY):
            extra = {d.name for d in (root / self.parent).iterdir() if d.is_dir()} - set(NAMES)
            if extra:
                out.append(f"{root.name}: undeclared cgroups {sorted(extra)}")
        return out


def start_box(box: Box) -> None:
    for _ in range(2):
        box.procs.append(subprocess.Popen(["sleep", "600"], start_new_session=True))


def do_steps(box: Box, upto: str) -> None:
    """The steps before ``upto``, in this process (each as its own daemon start)."""
    for step in STEPS[: STEPS.index(upto)]:
        run_step(box.parent, step, box.state, box.pids)


def charge_page_cache(box: Box) -> None:
    """Directed reclaim lowers the limit only below a usage: give web 4 MiB of clean page
    cache (dirty pages answer EBUSY), read by this process from inside web's memcg."""
    here = proc_v1_paths(Path("/proc"), os.getpid())
    assert here is not None
    box.state.mkdir(parents=True, exist_ok=True)
    cache = box.state / "cache.bin"
    with cache.open("wb") as f:
        f.write(b"x" * (4 << 20))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    (V1_MEMORY / box.parent / "web" / "cgroup.procs").write_text(str(os.getpid()))
    try:
        cache.read_bytes()
    finally:
        (V1_MEMORY / here["memory"] / "cgroup.procs").write_text(str(os.getpid()))


# Which step passes each point (the first that does).
POINT_STEP = {
    "admit.parent_created": "admit",
    "admit.cpuset_created": "admit",
    "admit.cpus_written": "admit",
    "admit.mems_written": "admit",
    "admit.memory_created": "admit",
    "attach.cpuset_moved": "attach",
    "attach.memory_moved": "attach",
    "set_nodes.started": "set_nodes",
    "set_nodes.mems_written": "set_nodes",
    "reclaim.limit_lowered": "reclaim",
    "reclaim.limit_restored": "reclaim",
    "release.memory_removed": "release",
}


NOT_KILLED = "not killed"


def kill_at(box: Box, point: str, nth: int = 1) -> list[str]:
    """Run the steps before ``point``'s, then its step in a child process that SIGKILLs
    itself at the ``nth`` pass of ``point``; restart; the problems found (empty:
    consistent; ``NOT_KILLED…`` when the step passes it fewer times)."""
    start_box(box)
    step = POINT_STEP[point]
    do_steps(box, step)
    if step == "reclaim":
        charge_page_cache(box)
    root = str(Path(__file__).resolve().parent.parent.parent)
    child = subprocess.run(
        [sys.executable, "-c", STEP, root, box.parent, step, str(box.state), *map(str, box.pids)],
        env={**os.environ, faults.ENV: f"{point}@{nth}"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    if child.returncode != -signal.SIGKILL:
        why = child.stderr.decode()[-500:]
        return [f"{NOT_KILLED} at {point}@{nth} (exit {child.returncode}): {why}"]
    restarted = backend(box.parent, box.state)
    try:
        admit(restarted)
    finally:
        restarted.close()
    return box.problems()


def cleanup(box: Box) -> None:
    for p in box.procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    for root in (V1_CPUSET, V1_MEMORY):
        remove_cgroup_tree(root, box.parent)


@dataclass
class Found:
    """What the errno runs found: writes per run, runs, and problems by kind."""

    writes: int = 0
    runs: int = 0
    lost: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.lost + self.split + self.other


def one_errno_run(parent: str, state: Path, nth: int, code: int, found: Found) -> int:
    """Run every step with the ``nth`` write answered by ``code`` (nth -1: none), restart,
    check into ``found``; returns how many writes the steps made."""
    box = Box(parent, state)
    try:
        start_box(box)
        inject = ErrnoAt(nth, code)
        errors: list[str] = []
        with faults.installed(inject.point, inject.write):
            for step in STEPS:
                try:
                    run_step(box.parent, step, box.state, box.pids)
                except ZonedError as exc:
                    errors.append(str(exc))
        what = f"{errno.errorcode.get(code)} at write {nth} ({inject.hit})"
        if nth >= 0 and inject.hit is None:
            found.other.append(f"{what}: never reached")
        found.other += [f"{what}: a multi-line error {e!r}" for e in errors if "\n" in e]
        restarted = backend(box.parent, box.state)
        try:
            admit(restarted)
        finally:
            restarted.close()
        lost, split = box.lost_and_split()
        found.lost += [f"{what}: {p}" for p in lost]
        found.split += [f"{what}: {p}" for p in split]
        found.other += [f"{what}: {p}" for p in box.cgroup_problems()]
        return inject.count
    finally:
        cleanup(box)


CODES = (errno.EBUSY, errno.ENOSPC, errno.EINVAL, errno.ENOENT)


def errno_matrix(tmp: Path, codes_for: Callable[[int], Sequence[int]]) -> Found:
    """Each write answered by each of ``codes_for(nth)``, each run checked."""
    serial = itertools.count()
    found = Found()

    def parent() -> str:
        return f"zoned-test-{os.getpid()}-e{next(SERIAL)}"

    found.writes = one_errno_run(parent(), tmp / "count", -1, 0, found)
    for nth in range(found.writes):
        for code in codes_for(nth):
            one_errno_run(parent(), tmp / f"run{next(serial)}", nth, code, found)
            found.runs += 1
    return found
