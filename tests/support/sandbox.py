"""The sandbox the real exec/adopt/rule tests share (no tests here; import ``box_fixture``).

Each test gets its own ``zoned-test-<pid>-<n>`` cgroup under both v1 roots, with the
containers ``web`` and ``other`` created by the v1 backend, and a config file naming them.
Processes are started in their own session and killed by process group afterwards; what
is left in the subtree (only this test's processes can be there) is parked at the root
and the subtree removed, children first. Waits have deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.cgroups import remove_cgroup_tree
from tests.support.realhost import V1_CPUSET, V1_MEMORY
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl

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
            remove_cgroup_tree(root, self.name)


@pytest.fixture(name="box")
def box_fixture(real_v1: tuple[Path, Path], tmp_path: Path) -> Iterator[Box]:
    b = Box(f"zoned-test-{os.getpid()}-p{next(_serial)}", tmp_path)
    try:
        yield b
    finally:
        b.cleanup()
