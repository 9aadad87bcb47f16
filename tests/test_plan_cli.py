"""``zoned plan`` through the CLI on the checked-in 8-node fake guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.sysfs import FakeSys
from tests.support.jsondocs import parse as parse_json
from zoned.cli.main import main
from zoned.config.load import ONE_NODE

ROOT = Path(__file__).resolve().parent.parent
TREE = ["--sysfs-root", str(ROOT / "tests/data/sys-8node")]
TREE += ["--proc-root", str(ROOT / "tests/data/proc-8node")]


def test_plan_table_for_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config", str(ROOT / "config/zoned.yaml"), *TREE]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:9] == [
        "NODE  OWNER     SIZE  REASON",
        "   0  reserved  211M  declared reserved (host and kernel)",
        "   1  batch     252M  batch: min 1 node",
        "   2  web       252M  web: min 400M (fits 85% of its zones)",
        "   3  web       252M  web: min 400M (fits 85% of its zones)",
        "   4  api       252M  api: min 200M (fits 85% of its zones)",
        "   5  cache     252M  cache: min 150M (fits 85% of its zones)",
        "   6  free      252M  free pool node, lent on demand",
        "   7  shared    248M  shared zone (1 by count)",
    ]


def test_plan_json_lists_every_node_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config", str(ROOT / "config/zoned.yaml"), *TREE, "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert [n["node"] for n in doc["nodes"]] == list(range(8))
    assert {c["name"]: c["nodes"] for c in doc["containers"]} == {
        "batch": [1],
        "cache": [5],
        "web": [2, 3],
        "api": [4],
    }


def test_plan_that_does_not_fit_fails_with_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text("containers:\n  big:\n    min: {nodes: 7}\n  small:\n    min: 100M\n")
    assert main(["plan", "--config", str(cfg), *TREE]) == 1
    err = capsys.readouterr().err
    assert "zoned plan: the containers' min does not fit the pool (7 nodes" in err
    assert "zoned plan:   small: min 100M does not fit in what is left" in err


def test_plan_reports_config_errors_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text("host:\n  reserved_nodes: [0, 9]\n")
    assert main(["plan", "--config", str(cfg), *TREE]) == 78  # EX_CONFIG
    err = capsys.readouterr().err
    assert err == (
        f"zoned plan: {cfg}:2:23: host.reserved_nodes[1]: found node 9, which this machine "
        "does not have; expected one of its nodes (0-7)\n"
    )


# -- a one-node host: check and plan give the same one line --------------------------


def test_one_node_host_plan_and_check_say_boot_with_fake_numa(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = FakeSys(tmp_path).node(0, 2048).build()
    one = ["--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)]
    config = str(ROOT / "config/zoned.yaml")
    assert main(["plan", "--config", config, *one]) == 78
    plan_err = capsys.readouterr().err
    assert plan_err == f"zoned plan: {ONE_NODE}\n"
    assert main(["check", config, *one]) == 1
    out, check_err = capsys.readouterr()
    assert check_err == f"{ONE_NODE}\n"
    assert ": ok" not in out
    assert "numa=fake=N" in ONE_NODE and "zoned topology" in ONE_NODE


def test_shared_count_beyond_the_pool_fails_check_as_plan_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two nodes, node 0 reserved: the pool is node 1, so two shared nodes cannot be had.
    fs = FakeSys(tmp_path / "t").node(0, 512).node(1, 512).build()
    two = ["--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)]
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text("host:\n  shared: 2\n")
    assert main(["check", str(cfg), *two]) == 1
    check_err = capsys.readouterr().err
    assert main(["plan", "--config", str(cfg), *two]) == 78
    plan_err = capsys.readouterr().err
    expected = (
        f"{cfg}:2:11: host.shared: found a count of 2 shared nodes; expected at most 1, "
        "the nodes with memory on this machine (0-1) less the reserved ones\n"
    )
    assert (check_err, plan_err) == (expected, f"zoned plan: {expected}")
