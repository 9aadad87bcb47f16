"""The dealt static-zones baseline: the whole pool handed out at start, min first."""

from __future__ import annotations

from zoned.backends.sim import Isolation, loads_scenario
from zoned.baseline import dealt_layout, run_baseline, static_layout

SCENARIO = """\
topology: {count: 9, size: 256M}
config:
  host: {reserved_nodes: [0]}
  containers:
    big:   {min: {nodes: 1}, max: {nodes: 6}}
    small: {min: {nodes: 1}, max: {nodes: 2}, priority: 5}
    tiny:  {min: {nodes: 1}, max: 256M}
"""


def test_every_pool_node_is_dealt_min_first_then_by_share_of_max() -> None:
    sc = loads_scenario(SCENARIO)
    mins = static_layout(sc)
    dealt = dealt_layout(sc)
    for name, nodes in mins.items():
        assert nodes <= dealt[name]  # each keeps what placement gave it
    everyone = set().union(*dealt.values())
    assert everyone == set(range(1, 9))  # all 8 pool nodes handed out, none twice
    assert sum(len(v) for v in dealt.values()) == 8
    # shares of 8 nodes by max 6 : 2 : 1 are 5.3 : 1.8 : 0.9; nobody past its max
    assert {k: len(v) for k, v in dealt.items()} == {"big": 5, "small": 2, "tiny": 1}


def test_nodes_nobody_may_take_stay_free() -> None:
    sc = loads_scenario(SCENARIO.replace("max: {nodes: 6}", "max: {nodes: 2}"))
    assert sum(len(v) for v in dealt_layout(sc).values()) == 5  # 2 + 2 + 1 of 8


def test_the_dealt_run_keeps_its_layout() -> None:
    sc = loads_scenario(SCENARIO)
    r = run_baseline(sc, Isolation.ZONES, layout=dealt_layout(sc))
    assert r.layout == dealt_layout(sc)
