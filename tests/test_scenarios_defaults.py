"""The overcommit bench's scenarios run zoned with its shipped defaults (issue 17): a
scenario that tuned the engine for itself would make the headline figures something a
user does not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoned.backends.sim import load_scenario
from zoned.config.decl import PolicyDecl

SCENARIOS = Path(__file__).parent.parent / "config" / "scenarios"


@pytest.mark.parametrize("name", ["staggered", "burst", "walks", "overcommit", "runaway"])
def test_bench_scenarios_leave_the_engine_at_its_defaults(name: str) -> None:
    assert load_scenario(SCENARIOS / f"{name}.yaml").decls.policy == PolicyDecl()
