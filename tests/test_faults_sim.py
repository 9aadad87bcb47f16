"""The fault-injection suite on a fake four-node v1 tree (see tests/support/faultsim.py):
a kill at every named point of admission, lend, reclaim/evacuation and directed reclaim,
and EBUSY/ENOSPC/EINVAL/ENOENT at every write, each followed by a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.faultsim import (
    ERRNOS,
    Host,
    Tally,
    clean_run,
    count_writes,
    passes,
    problems,
    run_errno,
    run_kill,
)
from zoned.kernel.faults import POINTS


def test_the_steps_without_faults_are_consistent(tmp_path: Path) -> None:
    from tests.support.faultsim import steps

    h = Host(tmp_path)
    steps(h)
    h.settle()
    assert problems(h) == []
    h.stop()


# A fake tree moves no processes: tests/test_faults_v1.py kills at the attach points.
KILL_POINTS = [p for p in POINTS if not p.startswith("attach.")]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_point_then_a_restart_is_consistent(tmp_path: Path, point: str) -> None:
    """At every pass: admission passes each admit point once per container, a hand-over
    passes set_nodes for the evacuation and for the give, reclaim lowers in steps."""
    _, seen = clean_run(tmp_path / "clean")
    mine = [(p, n) for p, n in passes(seen) if p == point]
    assert mine, f"the steps never pass {point}"
    tally = Tally()
    for p, n in mine:
        run_kill(tmp_path / f"k{n}", p, tally, n)
    assert tally.points == [f"{p}#{n}" for p, n in mine]  # each reached: the kill happened
    assert tally.failures == []


@pytest.mark.parametrize("code", ERRNOS, ids=lambda c: __import__("errno").errorcode[c])
def test_an_errno_at_each_write_is_one_line_and_consistent(tmp_path: Path, code: int) -> None:
    writes = count_writes(tmp_path / "count")
    assert writes > 10
    tally = Tally()
    for nth in range(writes):
        run_errno(tmp_path / f"w{nth}", nth, code, tally)
    assert len(tally.injected) == writes
    assert tally.failures == []
