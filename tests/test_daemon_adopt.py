"""Restart adoption: the host's cgroups decide the map; hints only explain it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from zoned.config.decl import Declarations
from zoned.config.diff import config_diff
from zoned.config.load import loads
from zoned.model.hints import Hint
from zoned.model.host import CgroupState
from zoned.model.zonemap import (
    FREE,
    RESERVED,
    SHARED,
    Assignment,
    NodeInfo,
    Owner,
    Topology,
    ZoneMap,
)
from zoned.policy.adopt import initial_map
from zoned.service import statefile

MIB = 1 << 20
TOPO = Topology(tuple(NodeInfo(i, 256 * MIB, 200 * MIB, 0) for i in range(6)))
DECLS = loads(
    "host: {reserved_nodes: [0], shared: 1}\n"
    "containers:\n"
    "  web: {min: {nodes: 1}, max: {nodes: 3}, priority: 10, shared: true}\n"
    "  batch: {min: {nodes: 1}, max: {nodes: 2}}\n"
)


def st(name: str, *nodes: int) -> CgroupState:
    return CgroupState(name, f"zoned/{name}", frozenset(nodes))


def owners(zmap: ZoneMap) -> dict[int, str]:
    return {a.node: str(a.owner) for a in zmap}


def start(
    existing: dict[str, CgroupState],
    hints: dict[int, Hint] | None = None,
    decls: Declarations = DECLS,
) -> tuple[ZoneMap, list[str]]:
    return initial_map(TOPO, decls, existing, hints or {}, now=100.0, wall_now=1000.0)


def test_fresh_start_is_the_placement() -> None:
    zmap, notes = start({})
    assert owners(zmap) == {0: "reserved", 1: "web", 2: "batch", 3: "free", 4: "free", 5: "shared"}
    assert notes == []


def test_restart_keeps_what_the_host_holds_even_when_placement_differs() -> None:
    # web grew to nodes 3-4 under the last run; batch sits on node 1
    zmap, notes = start({"web": st("web", 3, 4, 5), "batch": st("batch", 1)})
    assert owners(zmap) == {0: "reserved", 1: "batch", 2: "free", 3: "web", 4: "web", 5: "shared"}
    assert any("web: adopted on node 3-4" in n for n in notes)


def test_inconsistent_cgroup_is_placed_afresh_with_a_reason() -> None:
    # batch holds the reserved node; web lacks the shared zone it is declared to use
    zmap, notes = start({"web": st("web", 2), "batch": st("batch", 0, 1)})
    assert "batch: not adopted as it is: it holds node 0, which is not a pool node" in " ".join(
        notes
    )
    assert "web: not adopted as it is: it lacks the shared zone" in " ".join(notes)
    assert zmap.owner(0) == RESERVED
    assert len(zmap.nodes_of("web")) == 1 and len(zmap.nodes_of("batch")) == 1


def test_two_containers_claiming_one_node_first_wins() -> None:
    zmap, notes = start({"web": st("web", 2, 5), "batch": st("batch", 2)})
    assert zmap.nodes_of("web") == {2}
    assert zmap.nodes_of("batch") != {2}
    assert any("held by another container too" in n for n in notes)


def test_above_max_is_not_adopted() -> None:
    zmap, notes = start({"batch": st("batch", 1, 2, 3)})
    assert any("batch: not adopted as it is: it holds more than its max" in n for n in notes)
    assert len(zmap.nodes_of("batch")) == 1


def test_hints_explain_but_never_decide() -> None:
    hints = {
        3: Hint("web", "web: anon 200M crossed tripwire; lent node 3", 950.0),
        1: Hint("batch", "stale: batch had it", 900.0),  # host says web has 1
    }
    zmap, _ = start({"web": st("web", 1, 3, 5)}, hints)
    a3 = zmap.assignments[3]
    assert a3.owner == Owner.of("web") and a3.reason.startswith("web: anon 200M")
    assert a3.since == pytest.approx(50.0)  # 50 s before now on the engine's clock
    a1 = zmap.assignments[1]
    assert a1.owner == Owner.of("web") and a1.reason == "web: held on the host at start"
    assert a1.since == 100.0


def test_hints_round_trip_and_corrupt_files_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    zmap = ZoneMap(
        {
            0: Assignment(0, RESERVED, "host", 10.0),
            1: Assignment(1, FREE, "pool", 20.0),
            2: Assignment(2, SHARED, "shared", 0.0),
        }
    )
    assert statefile.save(tmp_path, zmap, engine_now=30.0, wall_now=1000.0)
    hints = statefile.load(tmp_path)
    assert hints[1] == Hint("free", "pool", 990.0)
    for bad in (
        "{not json",
        json.dumps({"version": 99, "nodes": {}}),
        json.dumps({"version": 1, "nodes": {"x": {}}}),
        "\xff\xfe",
        "[]",
    ):
        (tmp_path / "state.json").write_text(bad)
        with caplog.at_level(logging.WARNING):
            assert statefile.load(tmp_path) == {}
    assert "ignoring" in caplog.text
    assert statefile.load(tmp_path / "missing") == {}


def test_hints_unwritable_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not statefile.save(blocker / "sub", ZoneMap({}), engine_now=0.0, wall_now=0.0)


def test_config_diff_words() -> None:
    new = loads(
        "host: {reserved_nodes: [0], shared: 1}\npolicy: {cooldown_s: 20}\n"
        "containers:\n"
        "  web: {min: {nodes: 1}, max: {nodes: 4}, priority: 10, shared: false}\n"
        "  db: {min: {nodes: 1}}\n"
    )
    refusals, changes = config_diff(DECLS, new)
    assert refusals == [
        "web.shared changed (True → False): remove the container, reload, then declare it "
        "again (or restart)"
    ]
    assert changes == [
        "added db (min 1 node, max 1 node, priority 0)",
        "policy.cooldown_s 10.0 → 20.0",
        "removed batch",
        "web: max 3 nodes → 4 nodes",
    ]
