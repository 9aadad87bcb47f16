"""Scenario files, determinism, long runs, and baselines without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoned.backends.sim import (
    Alloc,
    Hold,
    Isolation,
    Ramp,
    SimBackend,
    SimNode,
    Walk,
    WorkloadSpec,
    load_scenario,
    loads_scenario,
    parse_workload,
)
from zoned.baseline import run_baseline
from zoned.config.decl import Amount, AmountUnit, ContainerDecl
from zoned.errors import ConfigError
from zoned.model.host import EventKind
from zoned.model.sizes import MIB

SCENARIO = """\
duration_s: 1800
topology:
  nodes: [288M, 256M, {size: 256M, base: 8M}, 256M, 208M]
  base: {0: 96M}
config:
  containers:
    web: {min: 200M, max: 600M, priority: 10}
    batch: {min: {nodes: 1}, max: {nodes: 2}}
sim:
  migrate_bandwidth: 250M/s
  sample_ms: 1000
workloads:
  web:
    restart: true
    loop: true
    phases:
      - {ramp: {anon: 150M, over_s: 30}}
      - {walk: {anon_mean: 150M, sd: 30M, seed: 3, for_s: 120, every_s: 5}}
      - {free: {anon: all}}
      - {idle_s: 100}
  batch:
    - {file: 100M}
    - {walk: {anon_mean: 80M, sd: 20M, for_s: 600, every_s: 2}}
    - {hold_s: 60}
faults:
  - {kind: set_nodes_error, container: web, errno: EBUSY}
"""


def test_scenario_file_reads_every_section(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(SCENARIO)
    sc = load_scenario(p)
    assert sc.name == "s" and sc.duration_s == 1800
    assert [(n.id, n.size // MIB, n.base // MIB) for n in sc.nodes] == [
        (0, 288, 96),
        (1, 256, 0),
        (2, 256, 8),
        (3, 256, 0),
        (4, 208, 0),
    ]
    assert [c.name for c in sc.decls.containers] == ["web", "batch"]
    assert sc.decls.container("batch").max.unit is AmountUnit.NODES
    assert sc.knobs.migrate_bandwidth == 250 * MIB
    assert sc.knobs.psi_some_ms == sc.decls.policy.psi_some_ms
    web = sc.workloads["web"]
    assert web.restart and web.loop
    assert web.phases[0] == Ramp(over_s=30, anon=150 * MIB)
    assert web.phases[1] == Walk(anon_mean=150 * MIB, sd=30 * MIB, for_s=120, seed=3, every_s=5)
    assert len(sc.faults) == 1


def test_count_and_size_topology() -> None:
    sc = loads_scenario("topology: {count: 8, size: 256M}\nconfig: {}\n")
    assert len(sc.nodes) == 8
    assert sc.nodes[0].base == 64 * MIB and sc.nodes[1].base == 0


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("config: {}\nworkloads:\n  ghost: []\n", "s.yaml:3:10", "workloads.ghost"),
        (
            "config:\n  containers:\n    a: {min: 1M, max: 2M}\nworkloads:\n  a:\n"
            "    - {ramp: {anon: 1M}}\n",
            "s.yaml:6:14",
            "missing 'over_s'",
        ),
        (
            "config:\n  containers:\n    a: {min: 1M, max: 2M}\nworkloads:\n  a:\n"
            "    - {jump: 3}\n",
            "s.yaml:6:14",
            "workloads.a[0].jump",
        ),
        ("config: {}\ntopology: {count: 2, size: lots}\n", "s.yaml:2:28", "topology.size"),
        ("config: {}\nsim: {step_ms: 0}\n", "s.yaml:2:16", "sim.step_ms"),
        ("config: {}\nfaults: [{kind: boom}]\n", "s.yaml:2:17", "faults[0].kind"),
        ("config:\n  containers:\n    a: {min: many}\n", "s.yaml:3:14", "containers.a.min"),
        ("topology: {count: 2}\n", "s.yaml", "missing 'config'"),
        ("config: {}\nconfig: {}\n", "s.yaml:2:1", "written twice"),
    ],
)
def test_problems_point_at_the_line(text: str, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as exc:
        loads_scenario(text, "s.yaml")
    msg = str(exc.value)
    assert where in msg and what in msg


def test_workload_shorthands() -> None:
    spec = parse_workload(
        [{"anon": "10M"}, {"file": "5M"}, {"alloc": {"anon": "1M", "rate": "2M/s"}}, {"hold_s": 1}]
    )
    assert spec.phases == (
        Alloc(anon=10 * MIB),
        Alloc(file=5 * MIB),
        Alloc(anon=MIB, rate=2 * MIB),
        Hold(1.0),
    )
    with pytest.raises(ConfigError, match="loop"):
        parse_workload({"loop": True, "phases": [{"anon": "1M"}]})


def _run(text: str) -> tuple[object, ...]:
    sc = loads_scenario(text, "s.yaml")
    r = run_baseline(sc, Isolation.ZONES)
    return (r.history, r.events, r.stats)


def test_same_scenario_same_history() -> None:
    first, second = _run(SCENARIO), _run(SCENARIO)
    assert first == second
    other_seed = SCENARIO.replace("seed: 3", "seed: 4")
    assert _run(other_seed)[0] != first[0]


def test_thirty_minutes_jump_over_quiet_stretches() -> None:
    sc = loads_scenario(SCENARIO, "s.yaml")
    sim = sc.backend()
    for d in sc.decls.containers:
        sim.ensure(d, frozenset({1}) if d.name == "web" else frozenset({2}))
    sim.run_until(sc.duration_s)
    assert sim.now() == 1800
    assert len(sim.history) == 1800  # one sample a second
    # 180 000 ticks of 10 ms, but only the busy ones (mostly ramps) are computed one by one
    assert sim.ticks_worked < 30_000
    walk_steps = {round(s.total("batch") / MIB) for s in sim.history[40:600]}
    assert len(walk_steps) > 50  # the walk really moved


def test_history_samples_record_nodes_usage_and_phase() -> None:
    sc = loads_scenario(SCENARIO, "s.yaml")
    r = run_baseline(sc, Isolation.ZONES, layout={"web": frozenset({1}), "batch": frozenset({3})})
    s = r.history[9]
    assert s.at == 10.0
    assert s.nodes == {"web": frozenset({1}), "batch": frozenset({3})}
    assert s.owners()[1] == ("web",) and s.owners()[2] == ()
    assert s.phase == {"web": "ramp", "batch": "walk"}
    assert set(s.usage["web"]) == {1} and s.usage["web"][1].anon == 50 * MIB
    assert s.free[1] == 256 * MIB - 50 * MIB


def test_baselines_differ_where_isolation_does() -> None:
    text = """\
config:
  containers:
    a: {min: {nodes: 1}, max: {nodes: 2}}
    b: {min: {nodes: 1}, max: {nodes: 2}}
topology: {count: 3, size: 256M}
duration_s: 60
workloads:
  a: [{hold_s: 1}, {anon: 300M}]
  b: [{anon: 50M}]
"""
    sc = loads_scenario(text)
    zones = run_baseline(sc, Isolation.ZONES)
    none = run_baseline(sc, Isolation.NONE)
    memcg = run_baseline(sc, Isolation.MEMCG, memcg_limits={"a": 280 * MIB, "b": 100 * MIB})
    assert zones.stats.containers["a"].oom_kills == 1  # one 256M zone
    assert none.stats.containers["a"].oom_kills == 0  # 512M of pool shared
    assert none.layout["a"] == frozenset({1, 2})
    assert memcg.stats.containers["a"].oom_kills == 1
    assert memcg.stats.containers["a"].oom_events == 1
    assert [e.kind for e in memcg.events] == [EventKind.OOM, EventKind.OOM_KILL]


def test_walk_is_seeded_and_mean_reverting() -> None:
    def run(seed: int) -> list[int]:
        w = WorkloadSpec(phases=(Walk(anon_mean=100 * MIB, sd=10 * MIB, for_s=200, seed=seed),))
        sim = SimBackend([SimNode(0, 64 * MIB), SimNode(1, 512 * MIB)], workloads={"a": w})
        sim.ensure(ContainerDecl("a", Amount.nodes(1), Amount.nodes(1)), frozenset({1}))
        sim.run_until(200)
        return [s.total("a") for s in sim.history[20:]]

    xs = run(1)
    assert xs == run(1) and xs != run(2)
    mean = sum(xs) / len(xs)
    assert 80 * MIB < mean < 120 * MIB
    assert max(xs) - min(xs) > 10 * MIB
