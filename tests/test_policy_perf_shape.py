"""The cost of ``decide`` grows no faster than linearly with containers and nodes.

Counted, not timed: the number of Python lines of zoned executed by one ``decide`` call
(``sys.settrace``), on the synthetic hosts of bench/decision_cost.py. A rescan of every
container for each candidate (the old ``Declarations.container`` lookup, a donor search
per receiver) shows up as a count that grows with the square of the size.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from zoned.policy.decide import decide

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("decision_cost", ROOT / "bench/decision_cost.py")
assert _spec is not None and _spec.loader is not None
bench: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

ZONED = str(ROOT / "zoned")


def lines_run(nodes: int, containers: int, storm: bool) -> int:
    """Lines of zoned/ executed by one decide() on the bench's synthetic host."""
    snap, decls, zm, state = bench.world(nodes, containers, storm)
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(ZONED) else None

    sys.settrace(tracer)
    try:
        decide(snap, decls, zm, state, bench.NOW)
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("storm", [False, True], ids=["event", "storm"])
def test_linear_in_containers(storm: bool) -> None:
    small, large = lines_run(64, 100, storm), lines_run(64, 1000, storm)
    assert large <= 12 * small, (small, large)  # 10x the containers, ~10x the work


@pytest.mark.parametrize("storm", [False, True], ids=["event", "storm"])
def test_linear_in_nodes(storm: bool) -> None:
    small, large = lines_run(64, 50, storm), lines_run(640, 50, storm)
    assert large <= 12 * small, (small, large)  # 10x the nodes, ~10x the work
