"""Declarations: exact messages for every bad fixture, the shipped example, ``zoned check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.jsondocs import parse as parse_json
from zoned.cli.commands import check as check_command
from zoned.cli.main import main
from zoned.config.decl import Amount, AmountUnit
from zoned.config.load import check_against_topology, load, loads, loads_many
from zoned.errors import ConfigError, Location, Problem
from zoned.kernel import topology as topology_module
from zoned.model.sizes import GIB, MIB
from zoned.model.zonemap import NodeInfo, Topology

TESTS = Path(__file__).parent
CONFIGS = TESTS / "configs"
REPO = TESTS.parent
EXAMPLE = REPO / "config" / "zoned.yaml"
SYS_8NODE = TESTS / "data" / "sys-8node"
PROC_8NODE = TESTS / "data" / "proc-8node"

NAME = (
    "expected a name of letters, digits, '_', '.' and '-', not starting with '.' nor 'zoned.'"
    " (it becomes a cgroup directory name; zoned.* are zoned's own)"
)
SIZE = "expected a size above zero like 768M, 2G or 1.5GiB, a number of bytes, or {nodes: N}"
ONCE = "expected each container defined once, in the main file or in one drop-in"
DROPIN = "expected only 'containers' (host and policy belong in the main file)"

# Every problem each fixture under configs/bad/ must produce, exactly and in this order,
# as read from inside the fixture's directory (so paths are relative).
EXPECTED: dict[str, list[str]] = {
    "unknown_key": [
        "zoned.yaml:2:3: host.reserve_nodes: found an unknown key; expected one of"
        " cgroup_root, hierarchy, parent, delegation, reserved_nodes, shared, headroom_pct,"
        " shared_paths, shared_tmpfs (did you mean 'reserved_nodes'?)",
        "zoned.yaml:4:3: policy.cooldown: found an unknown key; expected one of cooldown_s,"
        " idle_return_s, tripwire_pct, shrink_below_pct, psi_some_ms, psi_window_ms,"
        " migrate_timeout_s, reclaim_before_evacuate, node_reclaim, rewarm_interval_s,"
        " rewarm_mib_s, rewarm_drop_pct (did you mean 'cooldown_s'?)",
        "zoned.yaml:5:1: containres: found an unknown key; expected one of host, policy,"
        " containers (did you mean 'containers'?)",
    ],
    "wrong_type": [
        "zoned.yaml:2:14: host.hierarchy: found string 'v3'; expected one of auto, v1, v2",
        "zoned.yaml:3:19: host.reserved_nodes: found integer 0; expected a list of node ids,"
        " like [0, 1]",
        "zoned.yaml:5:15: policy.cooldown_s: found string 'ten'; expected seconds >= 0",
        "zoned.yaml:6:28: policy.reclaim_before_evacuate: found string 'yes';"
        " expected true or false",
        "zoned.yaml:10:15: containers.web.priority: found string 'high'; expected an integer >= 0",
        "zoned.yaml:11:13: containers.web.shared: found integer 1; expected true or false",
        "zoned.yaml:12:7: containers.db: found string '512M'; expected a mapping with keys"
        " min, max, priority, shared, cgroup, match, shared_paths, engine",
    ],
    "bad_size": [
        f"zoned.yaml:3:10: containers.a.min: found string '2X'; {SIZE}",
        f"zoned.yaml:4:10: containers.a.max: found string '2 nodes'; {SIZE}"
        " (write a node count as {nodes: 2})",
        f"zoned.yaml:6:10: containers.b.min: found string '-1G'; {SIZE}",
        f"zoned.yaml:8:10: containers.c.min: found integer 0; {SIZE}",
        "zoned.yaml:9:18: containers.c.max.nodes: found integer 0; expected a whole number"
        " of nodes, an integer >= 1",
    ],
    "duplicate_key": [
        "zoned.yaml:3:3: host.headroom_pct: found key 'headroom_pct' again"
        " (first at zoned.yaml:2:3); expected each key once",
        f"zoned.yaml:7:3: containers.web: found container 'web' again"
        f" (first defined at zoned.yaml:5:3); {ONCE}",
    ],
    "duplicate_dropin": [
        f"containers.d/a.yaml:2:3: containers.web: found container 'web' again"
        f" (first defined at zoned.yaml:2:3); {ONCE}",
        f"containers.d/b.yaml:2:3: containers.db: found container 'db' again"
        f" (first defined at containers.d/a.yaml:4:3); {ONCE}",
    ],
    "min_gt_max": [
        "zoned.yaml:3:10: containers.web.min: found min 2G above max 1G (at zoned.yaml:4:10);"
        " expected min <= max",
        "zoned.yaml:6:10: containers.batch.min: found min 3 nodes above max 2 nodes"
        " (at zoned.yaml:7:10); expected min <= max",
    ],
    "dropin_sections": [
        f"containers.d/extra.yaml:1:1: host: found a 'host' section in a drop-in; {DROPIN}",
        f"containers.d/extra.yaml:3:1: policy: found a 'policy' section in a drop-in; {DROPIN}",
    ],
    "bad_name": [
        f"zoned.yaml:2:3: containers..hidden: found container name '.hidden'; {NAME}",
        f"zoned.yaml:4:3: containers.my app: found container name 'my app'; {NAME}",
        f"zoned.yaml:6:3: containers.a/b: found container name 'a/b'; {NAME}",
        f"zoned.yaml:10:3: containers.zoned.shared: found container name 'zoned.shared'; {NAME}",
    ],
    "out_of_range": [
        "zoned.yaml:2:20: host.reserved_nodes[0]: found integer -1; expected a node id,"
        " an integer >= 0",
        "zoned.yaml:3:11: host.shared: found integer -2; expected a count of nodes"
        " (an integer >= 0) or a list of node ids, like [1]",
        "zoned.yaml:4:17: host.headroom_pct: found integer 100; expected a percentage >= 0"
        " and < 100",
        "zoned.yaml:6:17: policy.tripwire_pct: found integer 0; expected a percentage > 0"
        " and <= 100",
        "zoned.yaml:7:18: policy.psi_window_ms: found integer 100; expected milliseconds,"
        " an integer >= 500 and <= 10000",
        "zoned.yaml:8:15: policy.cooldown_s: found integer -1; expected seconds >= 0",
        "zoned.yaml:12:15: containers.web.priority: found integer -1; expected an integer >= 0",
    ],
    "cross_field": [
        "zoned.yaml:3:15: host.shared[1]: found node 1, which is in host.reserved_nodes;"
        " expected shared nodes that are not reserved",
        "zoned.yaml:5:16: policy.psi_some_ms: found psi_some_ms 2000 above psi_window_ms 1000;"
        " expected a stall no longer than its window",
        "zoned.yaml:6:15: policy.cooldown_s: found string 'soon'; expected seconds >= 0",
    ],
    "yaml_syntax": [
        "zoned.yaml:4:1: found invalid YAML (while parsing a flow sequence expected ',' or ']',"
        " but got '<stream end>'); expected well-formed YAML",
    ],
}


def test_every_bad_fixture_has_its_expected_messages() -> None:
    assert sorted(p.name for p in (CONFIGS / "bad").iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_fixture_reports_every_problem_exactly(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CONFIGS / "bad" / case)
    with pytest.raises(ConfigError) as info:
        load(Path("zoned.yaml"))
    assert [str(p) for p in info.value.problems] == EXPECTED[case]
    assert str(info.value) == "\n".join(EXPECTED[case])


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_check_command_prints_every_problem_and_fails(
    case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(CONFIGS / "bad" / case)
    assert main(["check", "--no-topology", "zoned.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "".join(line + "\n" for line in EXPECTED[case])


# -- the shipped example ----------------------------------------------------------------


def _where(path: Path, needle: str) -> Location:
    """The 1-based line and column of the first ``needle`` in ``path``."""
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        col = line.find(needle)
        if col >= 0:
            return Location(str(path), i, col + 1)
    raise AssertionError(f"{needle!r} not in {path}")


def test_example_config_parses_to_the_documented_values() -> None:
    d = load(EXAMPLE)
    web_yaml = REPO / "config" / "containers.d" / "web.yaml"
    batch_yaml = REPO / "config" / "containers.d" / "batch.yaml"
    assert d.files == (str(EXAMPLE), str(batch_yaml), str(web_yaml))  # drop-ins by name
    h = d.host
    assert (h.cgroup_root, h.hierarchy, h.parent) == ("/sys/fs/cgroup", "auto", "zoned")
    assert (h.reserved_nodes, h.shared_nodes, h.shared_count) == ((0,), (), 1)
    assert h.headroom_pct == 15.0
    p = d.policy
    assert (p.cooldown_s, p.idle_return_s, p.tripwire_pct, p.shrink_below_pct) == (
        10.0,
        60.0,
        85.0,
        50.0,
    )
    assert (p.psi_some_ms, p.psi_window_ms, p.migrate_timeout_s) == (100, 1000, 120.0)
    assert p.reclaim_before_evacuate is True
    by_name = {c.name: c for c in d.containers}
    assert [c.name for c in d.containers] == ["batch", "cache", "web", "api"]
    assert (by_name["batch"].min, by_name["batch"].max) == (Amount.nodes(1), Amount.nodes(4))
    assert (by_name["cache"].min, by_name["cache"].max) == (
        Amount.bytes_(150 * MIB),
        Amount.bytes_(600 * MIB),
    )
    assert (by_name["web"].min, by_name["web"].max) == (
        Amount.bytes_(400 * MIB),
        Amount.bytes_(GIB),
    )
    assert by_name["web"].shared and by_name["web"].priority == 10
    assert by_name["api"].max == Amount.nodes(3)
    assert by_name["api"].cgroup == "system.slice/api.service"
    assert by_name["batch"].cgroup is None and not by_name["batch"].shared
    # Locations point at the values and names as written.
    assert d.where("containers.api.cgroup") == _where(web_yaml, "system.slice/api.service")
    assert d.where("containers.web") == _where(web_yaml, "web:")
    assert d.where("host.reserved_nodes[0]") == _where(EXAMPLE, "0]")
    shared = _where(EXAMPLE, "  shared: 1")
    assert d.where("host.shared") == Location(
        shared.file, shared.line, shared.column + len("  shared: ")
    )


def test_example_min_fits_six_pool_nodes_and_max_overcommits() -> None:
    d = load(EXAMPLE)
    node = 252 * MIB  # a pool node of the 8-node fake guest in tests/data
    usable = node * (100 - d.host.headroom_pct) / 100

    def nodes(a: Amount) -> int:
        return a.value if a.unit is AmountUnit.NODES else -(-a.value // int(usable))

    assert sum(nodes(c.min) for c in d.containers) <= 6
    assert sum(nodes(c.max) for c in d.containers) > 6


def test_example_checks_ok_against_the_8_node_guest(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", str(EXAMPLE), "--sysfs-root", str(SYS_8NODE), "--proc-root", str(PROC_8NODE)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    # Only the shared-zone warnings (zoned.shared.shared_warnings) for shared: true containers.
    assert all(line.startswith(f"{EXAMPLE}: warning: ") for line in err.splitlines())
    assert out == (
        f"{EXAMPLE}: ok, 2 drop-ins, 4 containers (min 750M + 1 node, max 1.6G + 7 nodes),"
        " reserved nodes 0, shared zone 1 node; nodes checked against the topology (8 nodes)\n"
    )


def test_check_json_reports_containers_and_problems(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CONFIGS / "bad")
    argv = ["check", "--json", "--no-topology", str(EXAMPLE), "min_gt_max/zoned.yaml"]
    assert main(argv) == 1
    doc = parse_json(capsys.readouterr().out)
    assert (
        doc["schema"] == "zoned/check/v1" and doc["ok"] is False and doc["topology_nodes"] is None
    )
    good, bad = doc["configs"]
    assert good["ok"] is True and good["problems"] == []
    assert [c["name"] for c in good["containers"]] == ["batch", "cache", "web", "api"]
    assert good["containers"][0]["min"] == {"value": 1, "unit": "nodes"}
    assert bad["ok"] is False and bad["containers"] == [] and bad["summary"] is None
    first = bad["problems"][0]
    assert (first["file"], first["line"], first["column"]) == ("min_gt_max/zoned.yaml", 3, 10)
    assert first["message"] == (
        "containers.web.min: found min 2G above max 1G (at min_gt_max/zoned.yaml:4:10);"
        " expected min <= max"
    )
    assert first["text"] == "min_gt_max/zoned.yaml:3:10: " + first["message"]


def test_check_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check", "--no-topology", str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"{missing}: found no readable file (No such file or directory); expected YAML\n"
    )


# -- node references against a topology ------------------------------------------------


def four_nodes_3_memoryless() -> Topology:
    sizes = (256, 256, 256, 0)
    return Topology(tuple(NodeInfo(i, s * MIB, s * MIB // 2, 0) for i, s in enumerate(sizes)))


def test_unknown_and_memoryless_nodes_are_reported_at_their_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(CONFIGS / "nodes")
    d = load(Path("zoned.yaml"))
    assert [str(p) for p in check_against_topology(d, four_nodes_3_memoryless())] == [
        "zoned.yaml:4:23: host.reserved_nodes[1]: found node 9, which this machine does not"
        " have; expected one of its nodes (0-3)",
        "zoned.yaml:5:15: host.shared[1]: found node 3, which has no memory;"
        " expected a node with memory (0-2)",
    ]


def test_shared_count_above_memory_nodes_is_reported() -> None:
    d = loads("host:\n  shared: 4\n", "m.yaml")
    assert check_against_topology(d, four_nodes_3_memoryless()) == [
        Problem(
            Location("m.yaml", 2, 11),
            "host.shared: found a count of 4 shared nodes; expected at most 2, the nodes"
            " with memory on this machine (0-2) less the reserved ones",
        )
    ]
    assert check_against_topology(loads("host: {shared: 2}"), four_nodes_3_memoryless()) == []
    # Counted from the pool, as placement takes it: node 0 is reserved by default.
    assert len(check_against_topology(loads("host: {shared: 3}"), four_nodes_3_memoryless())) == 1


def test_check_command_reports_unknown_nodes_from_sysfs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(CONFIGS / "nodes")
    argv = ["check", "zoned.yaml", "--sysfs-root", str(SYS_8NODE), "--proc-root", str(PROC_8NODE)]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "zoned.yaml:4:23: host.reserved_nodes[1]: found node 9, which this machine does not"
        " have; expected one of its nodes (0-7)\n"
    )
    # Without a topology the same file is valid.
    assert main(["check", "--no-topology", "zoned.yaml"]) == 0


# -- loads: smaller cases ------------------------------------------------------------------


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, "t.yaml")
    return [str(p) for p in info.value.problems]


def test_empty_file_is_all_defaults() -> None:
    d = loads("")
    assert d.containers == () and d.host.reserved_nodes == (0,) and d.files == ("<string>",)


def test_max_defaults_to_min_and_locations_are_dotted() -> None:
    d = loads("host:\n  reserved_nodes: [0, 1]\ncontainers:\n  db: {min: 768M}\n", "m.yaml")
    assert d.container("db").max == d.container("db").min == Amount.bytes_(768 * MIB)
    assert d.where("host.reserved_nodes[1]") == Location("m.yaml", 2, 23)
    assert d.where("containers.db") == Location("m.yaml", 4, 3)
    assert d.where("containers.db.min") == Location("m.yaml", 4, 13)
    assert d.where("containers.db.max") == Location("m.yaml", 4, 3)  # falls back to the name


def test_shared_list_and_sizes_in_every_form() -> None:
    d = loads(
        "host: {shared: [6, 7]}\n"
        "containers:\n"
        "  a: {min: 1.5GiB, max: 2147483648}\n"
        "  b: {min: 512k, max: {nodes: 2}}\n"
    )
    assert (d.host.shared_nodes, d.host.shared_count) == ((6, 7), 0)
    assert d.container("a").min == Amount.bytes_(3 * GIB // 2)
    assert d.container("a").max == Amount.bytes_(2 * GIB)
    assert d.container("b").min == Amount.bytes_(512 * 1024)
    assert d.container("b").max == Amount.nodes(2)


def test_mixed_units_are_left_to_placement() -> None:
    d = loads("containers:\n  a: {min: {nodes: 3}, max: 100M}\n")
    assert d.container("a").min == Amount.nodes(3)


def test_missing_min_points_at_the_container() -> None:
    assert problems("containers:\n  a:\n    max: 1G\n") == [
        "t.yaml:2:3: containers.a: found no 'min'; expected min: a size above zero like 768M,"
        " 2G or 1.5GiB, a number of bytes, or {nodes: N}",
    ]


def test_not_a_mapping_and_nan_and_booleans() -> None:
    assert problems("- 1\n") == [
        "t.yaml:1:1: found a list; expected a mapping with keys host, policy, containers"
    ]
    assert problems("policy: {cooldown_s: .nan, tripwire_pct: true}\n") == [
        "t.yaml:1:22: policy.cooldown_s: found number .nan; expected seconds >= 0",
        "t.yaml:1:42: policy.tripwire_pct: found boolean true; expected a percentage > 0"
        " and <= 100",
    ]


def test_a_bad_reserved_list_does_not_invent_an_overlap() -> None:
    # reserved_nodes is invalid, so the shared/reserved check must not run on the default [0].
    assert problems("host: {reserved_nodes: [5, x], shared: [0]}\n") == [
        "t.yaml:1:28: host.reserved_nodes[1]: found string 'x'; expected a node id,"
        " an integer >= 0",
    ]


def test_drop_ins_in_order_through_loads_many() -> None:
    d = loads_many(
        [("main.yaml", "containers: {a: {min: 1G}}"), ("d.yaml", "containers: {b: {min: 1G}}")]
    )
    assert [c.name for c in d.containers] == ["a", "b"]
    assert d.where("containers.b") == Location("d.yaml", 1, 14)


# -- which topology zoned check uses -----------------------------------------------------


def test_check_skips_topology_when_the_machine_has_no_node_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(check_command, "LIVE_NODES", tmp_path / "absent")
    monkeypatch.chdir(CONFIGS / "nodes")
    assert main(["check", "zoned.yaml"]) == 0
    assert capsys.readouterr().out == (
        "zoned.yaml: ok, 0 drop-ins, 1 container (min 200M, max 200M), reserved nodes 0,9,"
        " shared nodes 2-3\n"
    )


def test_check_reads_the_live_topology_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[Path, Path]] = []

    def fake_read_topology(sys_root: Path, proc_root: Path) -> Topology:
        seen.append((sys_root, proc_root))
        return four_nodes_3_memoryless()

    monkeypatch.setattr(check_command, "LIVE_NODES", tmp_path)
    monkeypatch.setattr(topology_module, "read_topology", fake_read_topology)
    monkeypatch.chdir(CONFIGS / "nodes")
    assert main(["check", "zoned.yaml"]) == 1
    assert seen == [(Path("/sys"), Path("/proc"))]
    assert capsys.readouterr().err.splitlines() == [
        "zoned.yaml:4:23: host.reserved_nodes[1]: found node 9, which this machine does not"
        " have; expected one of its nodes (0-3)",
        "zoned.yaml:5:15: host.shared[1]: found node 3, which has no memory;"
        " expected a node with memory (0-2)",
    ]


def test_an_unreadable_topology_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(EXAMPLE), "--sysfs-root", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.startswith("zoned check: ")
