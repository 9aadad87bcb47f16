"""The fault-injection suite on the build machine's real cgroup v1 (root only).

Each case has its own ``zoned-test-<pid>-f<n>`` subtree with the containers ``web`` and
``other`` and two ``sleep`` processes, and removes it afterwards. The steps (admission,
process moves, a node-set write, a directed reclaim, release) run through the v1 backend.

- **kill -9**: the step that holds the named point runs in a child process with
  ``ZONED_FAULT_POINT`` set, which SIGKILLs itself there (zoned.kernel.faults);
- **errno**: each write of the steps is answered once with EBUSY, ENOSPC, EINVAL or ENOENT.

Then a restart (a new backend admitting both containers, as the daemon does) and the
checks: both containers exist in both hierarchies with what was asked, no limit is left
lowered, no undeclared cgroup is left, and no process is lost (dead, or somewhere else)
or split (its cpuset and memcg in different containers). The machine has one node, so
node-set writes rewrite node 0; the fake 4-node suite (test_faults_sim.py) moves nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faultreal import CODES, POINT_STEP, SERIAL, Box, cleanup, errno_matrix, kill_at
from tests.support.realhost import V1_CPUSET
from zoned.kernel import faults

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def root_flag_untouched() -> Iterator[None]:
    """The host-wide v1 flag is the same after each test (the flag test restores its own)."""
    flag = V1_CPUSET / "cpuset.memory_pressure_enabled"
    before = flag.read_text() if flag.exists() else None
    yield
    assert (flag.read_text() if flag.exists() else None) == before


@pytest.fixture
def box(real_v1: tuple[Path, Path], tmp_path: Path) -> Iterator[Box]:
    b = Box(f"zoned-test-{os.getpid()}-k{next(SERIAL)}", tmp_path / "run")
    try:
        yield b
    finally:
        cleanup(b)


def test_every_point_has_a_step() -> None:
    assert set(POINT_STEP) == set(faults.POINTS)


@pytest.mark.parametrize("point", faults.POINTS)
def test_kill_9_at_each_point_then_a_restart(box: Box, point: str) -> None:
    assert kill_at(box, point) == []
    print(f"kill -9 at {point}: restarted, 0 processes lost or split")


def test_an_errno_at_each_write_then_a_restart(real_v1: tuple[Path, Path], tmp_path: Path) -> None:
    """Each write once, the four errnos in turn (the whole matrix: bench/fault_points.py,
    or ZONED_FAULTS_FULL=1 here)."""
    if os.environ.get("ZONED_FAULTS_FULL") == "1":
        found = errno_matrix(tmp_path, lambda nth: CODES)
    else:
        found = errno_matrix(tmp_path, lambda nth: (CODES[nth % len(CODES)],))
    assert found.writes > 10
    assert found.runs >= found.writes
    assert found.problems == []
    print(f"errno injected {found.runs} times over {found.writes} writes: 0 lost, 0 split")
