"""The metrics page as a scraper reads it: parsed with prometheus_client's own parser,
one quantity per metric in base units, counters present at 0 before their first event,
hand-overs and reloads counted (from an engine on the simulator and from a daemon)."""

from __future__ import annotations

import errno
import platform
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import CONFIG, running, wait_for
from tests.test_engine import CACHED_DONOR, GROW, ctr, engine, engine_on, host
from tests.test_metrics import DEMO, run_demo, scrape
from zoned import __version__
from zoned.backends.sim import load_scenario
from zoned.backends.sim.faults import Gone, SetNodesError, SlowMigration
from zoned.engine import Engine
from zoned.model.sizes import MIB
from zoned.policy.placement import place
from zoned.service.metrics import HANDOVER_KINDS, HANDOVER_OUTCOMES, RELOAD_RESULTS, Metrics

# name → type, as the parser reports them (a counter's name without ``_total``).
FAMILIES = {
    "zoned_build_info": "gauge",
    "zoned_node_owner": "gauge",
    "zoned_node_memory_total_bytes": "gauge",
    "zoned_node_memory_free_bytes": "gauge",
    "zoned_container_memory_bytes": "gauge",
    "zoned_container_anon_bytes": "gauge",
    "zoned_container_unreclaimable_bytes": "gauge",
    "zoned_container_file_bytes": "gauge",
    "zoned_container_capacity_bytes": "gauge",
    "zoned_container_tripwire_bytes": "gauge",
    "zoned_container_headroom_ratio": "gauge",
    "zoned_container_nodes": "gauge",
    "zoned_decisions": "counter",
    "zoned_tripwire_to_action_seconds": "histogram",
    "zoned_oom_kills": "counter",
    "zoned_handovers": "counter",
    "zoned_handovers_in_flight": "gauge",
    "zoned_handover_duration_seconds": "histogram",
    "zoned_handover_migrated_bytes": "counter",
    "zoned_handover_left_behind_bytes": "counter",
    "zoned_reloads": "counter",
    "zoned_config_last_reload_success": "gauge",
    "zoned_config_last_reload_timestamp_seconds": "gauge",
}


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Metric], sample: str, **labels: str) -> float | None:
    """The value of the sample named ``sample`` with exactly ``labels``, or None."""
    for f in fams.values():
        for s in f.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


def gauges(text: str) -> str:
    """The per-container gauge lines of a page."""
    return "\n".join(ln for ln in text.splitlines() if ln.startswith("zoned_container_"))


def page(m: Metrics) -> dict[str, Metric]:
    return families(generate_latest(m.registry).decode())


def test_one_quantity_per_metric_in_base_units() -> None:
    """Every zoned family has the name and type of the table; no label mixes
    quantities (the old ``what=current|anon|…``); byte figures are the snapshot's."""
    e, m = run_demo(90.0)
    fams = page(m)
    ours = {n: f.type for n, f in fams.items() if n.startswith("zoned_")}
    assert ours == FAMILIES
    for f in fams.values():
        assert all("what" not in s.labels for s in f.samples), f.name
    snap = e.last_snapshot
    assert snap is not None
    for name, c in snap.containers.items():
        for metric, want in (
            ("zoned_container_memory_bytes", c.current),
            ("zoned_container_anon_bytes", c.anon),
            ("zoned_container_unreclaimable_bytes", c.unreclaimable),
            ("zoned_container_file_bytes", c.file),
            ("zoned_container_capacity_bytes", snap.capacity(c.nodes)),
        ):
            assert value(fams, metric, container=name) == want, (metric, name)
    # A sum over a label now means something: the zones never hold more than the host.
    total = sum(s.value for s in fams["zoned_node_memory_total_bytes"].samples)
    assert total == sum(n.total for n in snap.nodes.values())
    held = sum(s.value for s in fams["zoned_container_capacity_bytes"].samples)
    assert 0 < held <= total


def test_counters_exist_at_zero_before_any_event() -> None:
    """Right after admission (no step, no hand-over, no reload, no OOM kill) every counter
    series a query or an alert needs is there at 0."""
    sc = load_scenario(DEMO)
    b = sc.backend()
    e = Engine(b, sc.decls, place(b.topology(), sc.decls).zonemap)
    e.admit()
    m = Metrics()
    m.update(e)
    fams = page(m)
    for c in sc.decls.containers:
        for metric in (
            "zoned_oom_kills_total",
            "zoned_handover_migrated_bytes_total",
            "zoned_handover_left_behind_bytes_total",
        ):
            assert value(fams, metric, container=c.name) == 0.0, (metric, c.name)
    for kind in HANDOVER_KINDS:
        assert value(fams, "zoned_handover_duration_seconds_count", kind=kind) == 0.0
        for outcome in HANDOVER_OUTCOMES:
            assert value(fams, "zoned_handovers_total", kind=kind, outcome=outcome) == 0.0
    for result in RELOAD_RESULTS:
        assert value(fams, "zoned_reloads_total", result=result) == 0.0
    assert value(fams, "zoned_config_last_reload_success") == 1.0  # the file it started with


def test_handover_counts_durations_and_bytes_follow_the_engine() -> None:
    """The demo's hand-overs, counted from the decision log and the engine's totals: one
    ``done`` per finished hand-over, one duration each, and the exact bytes migrated and
    left behind by each donor."""
    e, m = run_demo(90.0)
    fams = page(m)
    for kind in HANDOVER_KINDS:
        done = sum(r.kind == kind and r.outcome.startswith("done") for r in e.log)
        assert value(fams, "zoned_handovers_total", kind=kind, outcome="done") == done
        assert value(fams, "zoned_handover_duration_seconds_count", kind=kind) == done
    assert value(fams, "zoned_handovers_total", kind="reclaim", outcome="done") == 2
    moved = sum(st.bytes_migrated for st in e.stats.values())
    left = sum(st.bytes_left_behind for st in e.stats.values())
    assert moved > 0 and left > 0
    migrated = fams["zoned_handover_migrated_bytes"].samples
    assert sum(s.value for s in migrated if s.name.endswith("_total")) == moved
    behind = fams["zoned_handover_left_behind_bytes"].samples
    assert sum(s.value for s in behind if s.name.endswith("_total")) == left
    # the reclaims took time on the simulator's clock (evacuating batch's pages)
    assert (value(fams, "zoned_handover_duration_seconds_sum", kind="reclaim") or 0) > 0
    assert value(fams, "zoned_handovers_in_flight") == 0


def run_with_metrics(e: Engine, until: float) -> Metrics:
    m = Metrics()
    e.run(until, observer=lambda eng, _events: m.update(eng))
    return m


def test_a_handover_that_gives_up_is_counted_failed() -> None:
    b = host(GROW, faults=[SetNodesError(errno.ENOSPC, "web", times=3)])
    e = engine(b, ctr("web"), cooldown_s=10)
    fams = page(run_with_metrics(e, 8))
    assert value(fams, "zoned_handovers_total", kind="lend", outcome="failed") == 1.0
    assert value(fams, "zoned_handovers_total", kind="lend", outcome="done") == 0.0
    assert value(fams, "zoned_handover_duration_seconds_count", kind="lend") == 0.0


def test_a_handover_whose_donor_vanishes_is_counted_cancelled_once() -> None:
    """batch's cgroup vanishes while its node is being evacuated (slowly): the reclaim
    ends "abandoned", which is neither done (the word contains it) nor counted twice."""
    b = host(
        CACHED_DONOR,
        nodes=4,
        faults=[SlowMigration("batch", bandwidth=1 * MIB, times=5), Gone("batch", at_s=20)],
    )
    e = engine_on(
        b, {3: "batch"}, ctr("web", prio=10), ctr("batch"), cooldown_s=5, migrate_timeout_s=60
    )
    fams = page(run_with_metrics(e, 40))
    assert any(r.outcome.startswith("abandoned") for r in e.log)
    assert value(fams, "zoned_handovers_total", kind="reclaim", outcome="cancelled") == 1.0
    assert value(fams, "zoned_handovers_total", kind="reclaim", outcome="done") == 0.0
    assert value(fams, "zoned_handovers_in_flight") == 0.0
    done = value(fams, "zoned_decisions_total", kind="reclaim", outcome="done", reason="tripwire")
    assert done is None  # the decision counter no longer takes "abandoned" for "done"


def test_daemon_page_has_build_info_process_metrics_and_counts_a_handover(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.sock"
    with running(tmp_path, metrics=f"unix:{path}") as r:
        fams = families(scrape(path).split("\r\n\r\n", 1)[1])
        labels = {"version": __version__, "python": platform.python_version(), "backend": "sim"}
        assert value(fams, "zoned_build_info", **labels) == 1.0
        assert (value(fams, "process_resident_memory_bytes") or 0) > 0
        assert value(fams, "process_cpu_seconds_total") is not None
        assert fams["process_cpu_seconds"].type == "counter"
        assert "python_info" in fams
        assert value(fams, "zoned_handovers_total", kind="lend", outcome="done") == 0.0

        assert r.call(cmd="lend", node=3, container="web")["ok"]
        wait_for(lambda: r.owners()[3] == "web" and not r.status()["pending"], "lent")
        fams = families(scrape(path).split("\r\n\r\n", 1)[1])
        assert value(fams, "zoned_handovers_total", kind="lend", outcome="done") == 1.0
        assert value(fams, "zoned_handover_duration_seconds_count", kind="lend") == 1.0
        assert value(fams, "zoned_handovers_total", kind="lend", outcome="failed") == 0.0
        assert value(fams, "zoned_handovers_in_flight") == 0.0


def test_daemon_page_shows_a_refused_reload(tmp_path: Path) -> None:
    """A refused reload was invisible; now it is counted and the success gauge drops to 0
    until a reload applies. A container the reload removed leaves no gauge behind."""
    path = tmp_path / "metrics.sock"
    clock = [1_700_000_000.0]
    with running(tmp_path, metrics=f"unix:{path}") as r:
        m = r.daemon.metrics
        assert m is not None
        m._wall = lambda: clock[0]  # the reload's timestamp, on a clock the test sets

        r.config.write_text("containers:\n  web: {min: lots}\n")
        assert r.call(cmd="reload")["ok"] is False
        fams = families(scrape(path).split("\r\n\r\n", 1)[1])
        assert value(fams, "zoned_reloads_total", result="refused") == 1.0
        assert value(fams, "zoned_reloads_total", result="applied") == 0.0
        assert value(fams, "zoned_config_last_reload_success") == 0.0
        assert value(fams, "zoned_config_last_reload_timestamp_seconds") == clock[0]

        clock[0] += 60
        r.config.write_text(CONFIG.replace("  batch:", "  # batch:"))
        resp = r.call(cmd="reload")
        assert resp["ok"] and "removed batch" in resp["result"]["changes"], resp
        fams = families(scrape(path).split("\r\n\r\n", 1)[1])
        assert value(fams, "zoned_reloads_total", result="applied") == 1.0
        assert value(fams, "zoned_config_last_reload_success") == 1.0
        assert value(fams, "zoned_config_last_reload_timestamp_seconds") == clock[0]
        # batch's gauges go with the step that no longer sees it
        wait_for(lambda: 'container="batch"' not in gauges(scrape(path)), "batch's gauges gone")
        assert 'container="web"' in gauges(scrape(path))
        assert 'zoned_oom_kills_total{container="batch"} 0.0' in scrape(path)  # counters stay

        assert r.call(cmd="reload")["ok"]
        fams = families(scrape(path).split("\r\n\r\n", 1)[1])
        assert value(fams, "zoned_reloads_total", result="unchanged") == 1.0


def test_docs_list_every_metric_on_the_page() -> None:
    """docs/service.md's table names exactly the families the page has."""
    doc = (Path(__file__).parent.parent / "docs" / "service.md").read_text()
    named = set(re.findall(r"`(zoned_[a-z_]+)[{`]", doc))
    on_page = {n + "_total" if t == "counter" else n for n, t in FAMILIES.items()}
    assert named == on_page


def test_a_handover_cancelled_by_a_vanished_container_is_counted_cancelled_once() -> None:
    """When a container's GONE arrives while a write for it is in flight, the engine ends
    the hand-over with an "abandoned" record (``Transfer.cancelled``); the simulator
    reports the write's end first, so the test calls the engine's GONE path itself while
    batch's node is being evacuated. Counted once, as cancelled, never as done."""
    b = host(CACHED_DONOR, nodes=4, faults=[SlowMigration("batch", bandwidth=1 * MIB, times=5)])
    e = engine_on(
        b, {3: "batch"}, ctr("web", prio=10), ctr("batch"), cooldown_s=5, migrate_timeout_s=60
    )
    m = Metrics()
    e.run(15, observer=lambda eng, _events: m.update(eng))
    assert value(page(m), "zoned_handovers_in_flight") == 1.0
    e._gone("batch", b.now())
    e.run(80, observer=lambda eng, _events: m.update(eng))
    fams = page(m)
    ends = [r for r in e.log if r.kind == "reclaim" and r.outcome != "started"]
    assert [r.outcome.split(":")[0] for r in ends] == ["abandoned"]
    assert value(fams, "zoned_handovers_total", kind="reclaim", outcome="cancelled") == 1.0
    assert value(fams, "zoned_handovers_in_flight") == 0.0
