"""``zoned simulate`` and ``zoned demo``: exact outcomes of the bundled scenarios, the CLI,
JSON, the plot file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.jsondocs import parse as parse_json
from zoned.backends.sim import Sample as SimSample
from zoned.backends.sim import load_scenario
from zoned.cli.commands.demo import bundled_scenario
from zoned.cli.commands.simulate import MODES, SimRun, run_scenario, samples_from_history
from zoned.cli.main import main
from zoned.model.actions import DirectedReclaim, Lend, Reclaim, Return

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "config" / "scenarios").glob("*.yaml"))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo() -> SimRun:
    return run_scenario(bundled_scenario(), "zoned")


def steps(run: SimRun) -> list[tuple[int, str, int | None, str, str]]:
    """(second, kind, node, from, to) of every move the engine started."""
    out: list[tuple[int, str, int | None, str, str]] = []
    for r in run.log:
        if r.outcome != "started":
            continue
        a = r.action
        if isinstance(a, Lend):
            out.append((int(r.at), "lend", a.node, "free", a.to))
        elif isinstance(a, Reclaim):
            out.append((int(r.at), "reclaim", a.node, a.from_, a.to))
        elif isinstance(a, DirectedReclaim):
            out.append((int(r.at), "directed-reclaim", None, a.container, a.container))
        elif isinstance(a, Return):
            out.append((int(r.at), "return", a.node, a.from_, "free"))
    return out


def test_demo_runs_the_whole_ladder_exactly(demo: SimRun) -> None:
    assert steps(demo) == [
        (7, "lend", 4, "free", "batch"),  # batch's anon crosses 85% of one node
        (15, "lend", 5, "free", "batch"),  # ...and of two
        (55, "reclaim", 5, "batch", "web"),  # web needs; none free; batch is idle, prio 0
        (71, "directed-reclaim", None, "batch", "batch"),  # batch's cache would not fit
        (71, "reclaim", 4, "batch", "web"),  # ...so it is dropped, then node 4 evacuated
        (132, "return", 4, "web", "free"),  # web idle for idle_return_s (60 s)
        (192, "return", 5, "web", "free"),  # ...and again after another 60 s
    ]
    by = {r.name: r for r in demo.summary}
    assert [r.oom_kills for r in demo.summary] == [0, 0, 0]
    assert (by["web"].nodes_gained, by["web"].nodes_lost) == (2, 2)
    assert (by["batch"].nodes_gained, by["batch"].nodes_lost) == (2, 2)
    assert (by["cache"].nodes_gained, by["cache"].nodes_lost) == (0, 0)  # cache never grows
    assert by["batch"].bytes_migrated > 100 * 2**20  # node 4 was really evacuated
    assert by["web"].peak_anon == 1100 * 2**20
    reasons = [r.reason for r in demo.log if r.kind == "note"]
    assert any(x.startswith("cache:") and "page cache" in x for x in reasons)


def test_demo_without_zoned_kills_web_and_batch() -> None:
    static = run_scenario(bundled_scenario(), "static-zones")
    kills = {r.name: r.oom_kills for r in static.summary}
    assert kills == {"web": 1, "cache": 0, "batch": 1}
    assert [r.kind for r in static.log] == ["oom", "oom"]


def test_config_demo_is_the_bundled_file() -> None:
    cfg = ROOT / "config" / "scenarios" / "demo.yaml"
    pkg = ROOT / "zoned" / "data" / "scenarios" / "demo.yaml"
    assert cfg.read_bytes() == pkg.read_bytes()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_runs_in_every_mode(path: Path, mode: str) -> None:
    run = run_scenario(load_scenario(path), mode)
    assert run.samples and run.samples[-1].at >= run.scenario.duration_s - 1
    if mode != "zoned":
        assert all(r.nodes_gained == r.nodes_lost == 0 for r in run.summary)


def test_faults_scenario_outcomes() -> None:
    run = run_scenario(load_scenario(ROOT / "config" / "scenarios" / "faults.yaml"))
    outs = [r.outcome for r in run.log]
    assert any("EBUSY" in o and "retrying (2/3)" in o for o in outs)
    assert any("40M left behind" in o for o in outs)
    assert any(r.kind == "gone" and r.what == "batch vanished" for r in run.log)
    assert run.engine is not None and "batch" not in run.engine.managed
    assert run.oom_kills == 0


def test_dry_run_moves_nothing_but_says_what_it_would_do() -> None:
    run = run_scenario(bundled_scenario(), "zoned", dry_run=True)
    assert all(r.nodes_gained == r.nodes_lost == 0 for r in run.summary)
    assert {r.name: set(r.nodes_at_end) for r in run.summary} == {
        n: set(v) for n, v in run.placement.items()
    }
    would = [r for r in run.log if r.outcome == "would have"]
    assert would and all(r.what for r in would)
    assert run.oom_kills == 2  # nothing moved, so the same kills as static zones


def test_plot_without_matplotlib_says_which_extra_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import matplotlib` fail as when it is not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "zoned.cli.plot", raising=False)
    scenario = str(ROOT / "config" / "scenarios" / "cache-fill.yaml")
    assert main(["simulate", scenario, "--plot", str(tmp_path / "run.png")]) == 1
    # Only zoned's lines: a handler another test left on a closed stream may log here too.
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("zoned")]
    assert err == [
        "zoned simulate: the plot needs matplotlib, which is not installed: "
        "pip install 'zoned[plot]'"
    ]
    assert not (tmp_path / "run.png").exists()


def test_cli_simulate_text_json_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = str(ROOT / "config" / "scenarios" / "cache-fill.yaml")
    plot = tmp_path / "sub" / "run.png"
    assert main(["simulate", scenario, "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "lend node 3 to app" in text
    assert "app: anon 435M of 512M capacity crossed tripwire 85%; lent node 3 (free)" in text
    assert f"plot: {plot}" in text
    assert plot.read_bytes()[:8] == PNG
    assert main(["simulate", scenario, "--json", "--mode", "static-zones"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert doc["mode"] == "static-zones" and doc["plot"] is None
    assert {r["name"] for r in doc["summary"]} == {"reader", "app"}
    assert [d for d in doc["decisions"] if d["kind"] == "lend"] == []


def test_cli_simulate_bad_scenario_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration_s: 10\nconfig: {containers: {a: {min: 1G}}}\nworkloads: {b: []}\n")
    assert main(["simulate", str(bad)]) == 78  # EX_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("zoned simulate: ") and "bad.yaml" in err


def test_cli_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "demo.png"
    assert main(["demo", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "with zoned, OOM kills: none" in out
    assert "without zoned (static zones, same workloads), OOM kills: web 1 time" in out
    assert "reclaim node 4 from batch for web" in out
    assert out.rstrip().endswith(f"plot: {plot}")
    assert plot.read_bytes()[:8] == PNG


class CountingNodes(frozenset[int]):
    """A container's node set that counts the membership questions asked of it."""

    asked = 0

    def __contains__(self, n: object) -> bool:
        CountingNodes.asked += 1
        return super().__contains__(n)


def test_history_samples_cost_no_nodes_times_containers(tmp_path: Path) -> None:
    # 40 containers on 81 nodes: asking each container about each node was 3,240 questions
    # per sample (the simulator ran 42x real time at 512 nodes x 256 containers).
    path = tmp_path / "wide.yaml"
    path.write_text(
        "topology: {count: 81, size: 64M}\n"
        "config: {host: {reserved_nodes: [0]},"
        " containers: {a: {min: {nodes: 1}}}}\n"
    )
    sc = load_scenario(path)
    nodes = {f"c{i}": CountingNodes({2 * i + 1, 2 * i + 2}) for i in range(39)}
    nodes["wide"] = CountingNodes({78, 79, 1})  # node 1 then has two: unconfined
    h = SimSample(at=0.0, nodes=nodes, usage={}, free=dict.fromkeys(range(81), 0), phase={})
    CountingNodes.asked = 0
    (sample,) = samples_from_history(sc, [h], "zoned")
    assert CountingNodes.asked < 81
    assert sample.owners[0] == "reserved" and sample.owners[80] == "free"
    assert sample.owners[1] == "unconfined" and sample.owners[2] == "c0"
    assert sample.owners[79] == "wide" and sample.owners[77] == "c38"
