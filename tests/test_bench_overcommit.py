"""bench/overcommit.py's verdict: absolute stall budgets, containers killed apart from kill
events, a loss to no isolation named with its reason; and the model it runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from zoned.backends.sim import loads_scenario

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("overcommit_bench", ROOT / "bench/overcommit.py")
assert _spec is not None and _spec.loader is not None
oc: Any = importlib.util.module_from_spec(_spec)
sys.modules["overcommit_bench"] = oc  # its dataclasses look their module up there
_spec.loader.exec_module(oc)

M = 1 << 20


def row(policy: str, kills: dict[str, int], stall: dict[str, float], moved: int = 0) -> Any:
    return oc.Row(policy, sum(kills.values()), kills, sum(stall.values()), stall, moved, 0, ())


def pre(peak_nodes: int) -> Any:
    return oc.Precondition(7 * 256 * M, 7, 256 * M, 12 * 256 * M, 1400 * M, peak_nodes, 0)


def rows(zoned: Any, none: Any) -> dict[str, Any]:
    killed = row("x", {"a": 3, "b": 1}, {})
    return {
        "zoned": zoned,
        "static-dealt": killed,
        "static-min": killed,
        "static-limits": killed,
        "no-isolation": none,
    }


def test_stall_is_judged_against_an_absolute_budget_not_a_ratio_to_zero() -> None:
    none = row("no-isolation", {"a": 0, "b": 0}, {"a": 0.0, "b": 0.0})
    within = row("zoned", {"a": 0, "b": 0}, {"a": 0.3, "b": 0.2}, moved=8)  # 0.0625 s/lend
    assert oc.verdict(pre(7), rows(within, none)).met is True
    slow = row("zoned", {"a": 0, "b": 0}, {"a": 1.5, "b": 0.0}, moved=20)  # a over 1 s
    v = oc.verdict(pre(7), rows(slow, none))
    assert v.met is False and "worst container a 1.50 s" in v.words


def test_containers_killed_are_counted_apart_from_kill_events() -> None:
    r = row("static-dealt", {"a": 30, "b": 0, "c": 4}, {})
    assert (r.killed, r.kill_events) == (2, 34)


def test_a_loss_to_no_isolation_is_flagged_with_its_reason() -> None:
    none = row("no-isolation", {"a": 0}, {"a": 0.0})
    lost = row("zoned", {"a": 1}, {"a": 20.0}, moved=14)
    v = oc.verdict(pre(9), rows(lost, none))
    assert v.met is None and v.lost
    assert "zoned loses to no isolation" in v.words and "9 of 7" in v.words


def test_the_model_adds_the_reaction_delay_and_the_restart_backoff() -> None:
    sc = loads_scenario(
        "config: {containers: {a: {min: {nodes: 1}, max: {nodes: 2}}}}\n"
        "workloads: {a: {restart: true, phases: [{anon: 1M}]}}\n"
    )
    m = oc.with_model(sc)
    assert (m.knobs.reaction_p50_ms, m.knobs.reaction_p99_ms) == oc.REACTION
    assert m.workloads["a"].restart_max_s == oc.BACKOFF_MAX_S
    assert m.decls.policy == sc.decls.policy  # the engine's knobs are left as shipped


def test_the_verdict_takes_zoneds_worst_reaction_seed() -> None:
    none = row("no-isolation", {"a": 0, "b": 0}, {"a": 0.0, "b": 0.0})
    lucky = row("zoned", {"a": 0, "b": 0}, {"a": 0.3, "b": 0.2}, moved=8)
    unlucky = row("zoned", {"a": 0, "b": 0}, {"a": 0.5, "b": 0.4}, moved=8)  # 0.1125 s
    assert oc.verdict(pre(7), rows(lucky, none)).met is True
    v = oc.verdict(pre(7), rows(lucky, none), [unlucky])
    assert v.met is False and "0.113 s per lend (worst of 2 reaction seeds)" in v.words
