"""The sandbox the real exec/adopt/rule tests share (no tests here; import ``box_fixture``).

Each test gets its own ``zoned-test-<pid>-<n>`` cgroup under both v1 roots, with the
containers ``web`` and ``other`` created by the v1 backend, and a config file naming them.
Processes are started in their own session and killed by process group afterwards; what
is left in the subtree (only this test's processes can be there) is parked at the root
and the subtree removed, children first. Waits have deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import V1_CPUSET, V1_MEMORY
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.classify import children
from zoned.decl import Amount, ContainerDecl

_serial = itertools.count()
PROC = Path("/proc")
N0 = frozenset({0})


class Box:
    """One test's cgroup subtree, config and processes."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.roots = (V1_CPUSET, V1_MEMORY)
        self.config = tmp / "zoned.yaml"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.backend = Cgroup1Backend(
            parent=name,
            cpuset_root=V1_CPUSET,
            memory_root=V1_MEMORY,
            enable_memory_pressure=False,  # host-wide switch: never flipped by tests
            pressure_level=None,
            watch_oom=False,
        )
        self.marker = f"zoned-test-marker-{os.getpid()}-{name.rsplit('-', 1)[-1]}"

    def create(self, match: str = "[]", *extra: ContainerDecl) -> None:
        """Create web and other (and ``extra``), write the config with web's ``match``."""
        for c in ("web", "other"):
            self.backend.ensure(ContainerDecl(c, Amount.nodes(1), Amount.nodes(1)), N0)
        for decl in extra:
            self.backend.ensure(decl, N0)
        adopted = "".join(
            f"  {d.name}: {{min: 1M, cgroup: {d.cgroup}}}\n" for d in extra if d.cgroup
        )
        self.config.write_text(
            f"host: {{parent: {self.name}, reserved_nodes: []}}\n"
            "containers:\n"
            f"  web: {{min: 1M, match: {match}}}\n"
            "  other: {min: 1M}\n" + adopted
        )

    def path(self, container: str) -> str:
        return f"{self.name}/{container}"

    def pids(self, cgroup: str, root: Path = V1_CPUSET, file: str = "cgroup.procs") -> set[int]:
        return {int(x) for x in (root / cgroup / file).read_text().split()}

    def spawn(self, argv: Sequence[str], executable: str | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            list(argv), executable=executable, start_new_session=True, stdin=subprocess.DEVNULL
        )
        self.procs.append(p)
        return p

    def zoned(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the zoned CLI as a separate process."""
        return subprocess.run(
            [sys.executable, "-m", "zoned", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def cleanup(self) -> None:
        self.backend.close()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for root in self.roots:
            remove_tree(root, self.name)


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(PROC, todo.pop()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def remove_tree(root: Path, name: str, deadline_s: float = 10.0) -> None:
    """Park what is left at the root and remove the subtree, children first."""
    top = root / name
    if not top.is_dir():
        return
    dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
    end = time.monotonic() + deadline_s
    for d in dirs:
        while True:
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    (root / "cgroup.procs").write_text(pid)
            try:
                d.rmdir()
                break
            except OSError as exc:  # a killed task may still be exiting: EBUSY for a moment
                if exc.errno != errno.EBUSY or time.monotonic() > end:
                    raise
                select.select([], [], [], 0.01)


def wait_until(done: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Poll ``done`` (1 ms apart) until true; the seconds it took. Fails at the deadline."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > deadline_s:
            pytest.fail(f"not within {deadline_s} s: {what}")
        select.select([], [], [], 0.001)
    return time.monotonic() - start


@pytest.fixture(name="box")
def box_fixture(real_v1: tuple[Path, Path], tmp_path: Path) -> Iterator[Box]:
    b = Box(f"zoned-test-{os.getpid()}-p{next(_serial)}", tmp_path)
    try:
        yield b
    finally:
        b.cleanup()
