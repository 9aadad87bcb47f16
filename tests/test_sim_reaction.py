"""The simulator's crash-loop backoff and the engine's reaction delay (SimKnobs.reaction_*).

Knobs as in test_sim_physics: 8 MiB allocated per 10 ms tick, so a 256M node fills in
0.32 s and the kill comes one tick later.
"""

from __future__ import annotations

import statistics

import pytest

from zoned.backends.sim import Alloc, Hold, SimBackend, SimKnobs, SimNode, WorkloadSpec
from zoned.backends.sim.reaction import Reaction
from zoned.backends.sim.workload import parse_workload
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import ConfigError
from zoned.model.host import EventKind
from zoned.model.sizes import MIB

KNOBS = SimKnobs(
    alloc_rate=800 * MIB,
    reclaim_rate=1000 * MIB,
    throttle_rate=16 * MIB,
    migrate_bandwidth=125 * MIB,
    leave_behind=0,
)
FIXED = SimKnobs(  # a delay of exactly 50 ms: p50 == p99 leaves no spread
    alloc_rate=800 * MIB,
    migrate_bandwidth=125 * MIB,
    leave_behind=0,
    reaction_p50_ms=50,
    reaction_p99_ms=50,
)


def make(spec: WorkloadSpec | None, knobs: SimKnobs = KNOBS) -> SimBackend:
    nodes = [SimNode(i, 256 * MIB, 64 * MIB if i == 0 else 0) for i in range(4)]
    sim = SimBackend(nodes, workloads={"a": spec} if spec else {}, knobs=knobs)
    sim.ensure(ContainerDecl("a", Amount.nodes(1), Amount.nodes(3)), frozenset({1}))
    return sim


def kill_times(sim: SimBackend, seconds: float) -> list[float]:
    return [round(e.at, 2) for e in sim.advance(seconds) if e.kind is EventKind.OOM_KILL]


def test_restarts_back_off_doubling_up_to_the_cap() -> None:
    spec = WorkloadSpec((Alloc(anon=300 * MIB),), restart=True, restart_max_s=4.0)
    sim = make(spec)
    # each life dies 0.33 s in; the waits before restarting are 1, 2, 4, 4 s
    assert kill_times(sim, 13) == [0.33, 1.66, 3.99, 8.32, 12.65]


def test_a_long_life_resets_the_backoff() -> None:
    spec = WorkloadSpec((Hold(10.0), Alloc(anon=300 * MIB)), restart=True, restart_max_s=4.0)
    sim = make(spec)
    # each life lasts 10.33 s >= 2 x 4 s, so every restart waits the first 1 s
    assert kill_times(sim, 35) == [10.33, 21.66, 32.99]


def test_without_a_cap_every_restart_waits_the_same() -> None:
    sim = make(WorkloadSpec((Alloc(anon=300 * MIB),), restart=True))
    assert kill_times(sim, 5) == [0.33, 1.66, 2.99, 4.32]


def test_restart_max_s_is_read_and_checked() -> None:
    spec = parse_workload({"restart": True, "restart_max_s": 60, "phases": [{"anon": "1M"}]})
    assert spec.restart_max_s == 60.0
    with pytest.raises(ConfigError, match="restart_max_s"):
        parse_workload(
            {"restart": True, "restart_delay_s": 5, "restart_max_s": 2, "phases": [{"anon": "1M"}]}
        )


def test_a_write_lands_after_the_reaction_delay() -> None:
    sim = make(None, FIXED)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    assert sim.state("a").nodes == frozenset({1})  # the engine is still reading and deciding
    sim.advance(0.04)
    assert sim.state("a").nodes == frozenset({1})
    sim.advance(0.01)
    assert sim.state("a").nodes == frozenset({2})
    sim.advance(1)
    assert sim.op_result(op).seconds == pytest.approx(0.05)


def test_a_delayed_tripwire_fires_when_it_lands() -> None:
    sim = make(WorkloadSpec((Alloc(anon=100 * MIB),)), FIXED)
    sim.advance(1)
    sim.arm_tripwire("a", 50 * MIB)  # below usage: fires as soon as it is written
    assert sim.state("a").tripwire is None  # not written yet
    events = sim.wait(0)  # the engine's step ends when its write lands
    assert [(e.kind, round(e.at, 2)) for e in events] == [(EventKind.TRIPWIRE, 1.05)]
    assert sim.state("a").tripwire == 50 * MIB


def test_what_happens_during_a_step_is_seen_when_the_step_is_done() -> None:
    sim = make(WorkloadSpec((Alloc(anon=300 * MIB),)), FIXED)  # OOM-killed at 0.33 s
    assert sim.wait(0.3) == [] and sim.now() == pytest.approx(0.3)
    # the step after that wait only read (no write), and reading took a draw: 50 ms
    events = sim.wait(0.01)
    assert [(e.kind, round(e.at, 2)) for e in events] == [(EventKind.OOM_KILL, 0.33)]
    assert sim.now() == pytest.approx(0.35)


def test_one_draw_per_engine_step() -> None:
    knobs = SimKnobs(reaction_p50_ms=40, reaction_p99_ms=80, reaction_seed=7)
    sim = make(None, knobs)
    sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    sim.arm_tripwire("a", 200 * MIB)
    assert len(sim.reaction.drawn) == 1  # both writes of one step land together
    sim.wait(0.5)
    sim.start_set_nodes("a", frozenset({3}), deadline_s=60)
    assert len(sim.reaction.drawn) == 2


def test_the_delay_follows_the_measured_distribution_and_its_seed() -> None:
    draws = [Reaction(41.7, 72.5, seed=3).draw() for _ in range(1)]
    assert draws == [Reaction(41.7, 72.5, seed=3).draw()]
    r = Reaction(41.7, 72.5, seed=3)
    xs = sorted(r.draw() * 1000 for _ in range(4000))
    assert statistics.median(xs) == pytest.approx(41.7, rel=0.05)
    assert xs[int(0.99 * len(xs))] == pytest.approx(72.5, rel=0.1)
    assert Reaction(0, 0, seed=1).draw() == 0.0


def test_a_scenario_sets_the_reaction_and_rejects_a_p99_below_the_p50() -> None:
    from zoned.backends.sim import loads_scenario

    base = "config: {containers: {a: {min: {nodes: 1}, max: {nodes: 2}}}}\n"
    sc = loads_scenario(base + "sim: {reaction_p50_ms: 41.7, reaction_p99_ms: 72.5}\n")
    assert (sc.knobs.reaction_p50_ms, sc.knobs.reaction_p99_ms) == (41.7, 72.5)
    with pytest.raises(ConfigError, match="reaction"):
        loads_scenario(base + "sim: {reaction_p50_ms: 50, reaction_p99_ms: 10}\n")
