"""Engine containers in the daemon (paced simulator): the OCI hook's admission request,
refusals with their policy, the instance's end, and reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.daemon import running, wait_for
from zoned.backends.paced import PacedSim
from zoned.model.engines import EngineContainer
from zoned.model.zonemap import FREE
from zoned.service import engines
from zoned.service.daemon import Daemon, Options
from zoned.service.systemd import Notifier

SCENARIO = """\
name: engines
duration_s: 100000
topology: {count: 4, size: 256M}
config:
  host: {reserved_nodes: [0]}
  containers:
    db: {min: {nodes: 1}}
workloads:
  db:
    - {idle_s: 100000}
"""

CONFIG = """\
host: {reserved_nodes: [0]}
containers:
  db: {min: {nodes: 1}}
  web: {min: {nodes: 1}, max: {nodes: 2}, engine: {podman: {name: "web-*"}}}
  big: {min: {nodes: 3}, engine: {label: zoned.container=big, on_refusal: unzoned}}
"""
ID = "0123456789abcdef" * 4


def admit(r: Any, name: str, cgroup: str, **extra: Any) -> dict[str, Any]:
    req = {"cmd": "engine-admit", "cgroup": cgroup, "engine": "podman", "id": ID, "name": name}
    return r.call(**req, **extra)  # type: ignore[no-any-return]


def test_hook_request_admits_refuses_and_the_end_frees(tmp_path: Path) -> None:
    with running(tmp_path, config=CONFIG, scenario=SCENARIO) as r:
        assert r.owners() == {0: "reserved", 1: "db", 2: "free", 3: "free"}
        cg = f"libpod_parent/libpod-{ID}"
        resp = admit(r, "web-1", f"/{cg}")
        assert resp == {"ok": True, "matched": True, "container": "web@web-1", "nodes": [2]}
        assert r.owners()[2] == "web@web-1"
        by = {c["name"]: c for c in r.status()["containers"]}
        assert by["web@web-1"]["managed"]
        # the watcher (or a second hook run) asking again changes nothing
        assert admit(r, "web-1", cg)["nodes"] == [2]
        # no declaration matches: the hook lets it start, nothing changes
        assert admit(r, "db-1", "libpod_parent/libpod-ffff")["matched"] is False
        # no room for big's min: refused, with its declaration's policy
        resp = admit(r, "x", "libpod_parent/libpod-big", annotations={"zoned.container": "big"})
        assert resp["ok"] is False and resp["on_refusal"] == "unzoned"
        assert "no room for its min (3 nodes)" in resp["error"]
        # reload keeps the running instance
        assert r.call(cmd="reload")["ok"]
        assert r.owners()[2] == "web@web-1"


def test_instance_gone_returns_its_nodes_and_is_forgotten(tmp_path: Path) -> None:
    # One thread: the daemon started but not looping, stepped by hand.
    (tmp_path / "sc.yaml").write_text(SCENARIO)
    (tmp_path / "zoned.yaml").write_text(CONFIG)
    opts = Options(
        config=tmp_path / "zoned.yaml",
        backend=f"sim:{tmp_path / 'sc.yaml'}",
        socket=tmp_path / "s.sock",
        state_dir=tmp_path / "run",
    )
    d = Daemon(opts, notifier=Notifier(env={}, send=lambda m: True), install_signals=False)
    d.start()
    try:
        c = EngineContainer("podman", ID, "web-1")
        assert engines.admit(d, c, "libpod_parent/libpod-a")["nodes"] == [2]
        assert d.engine is not None and d.backend is not None
        paced = d.backend
        assert isinstance(paced, PacedSim)
        paced.sim._vanish("web@web-1")
        d.engine.step(paced.sim.wait(1.0))
        engines.after_step(d)
        assert d.engine.zonemap.owner(2) == FREE
        assert [x.name for x in d.engine.decls.containers] == ["db"]
        assert d.engine_containers == {}
        # the same engine container name may come back, in another cgroup
        assert engines.admit(d, c, "libpod_parent/libpod-b")["container"] == "web@web-1"
    finally:
        d.stop()
        d._shutdown()


def test_admission_needs_root(tmp_path: Path) -> None:
    from zoned.service.control import MUTATING

    assert "engine-admit" in MUTATING


def test_reload_without_the_declaration_releases_its_instances(tmp_path: Path) -> None:
    with running(tmp_path, config=CONFIG, scenario=SCENARIO) as r:
        assert admit(r, "web-1", "libpod_parent/libpod-a")["nodes"] == [2]
        r.config.write_text(CONFIG.replace("  web:", "  other:").replace("web-*", "other-*"))
        resp = r.call(cmd="reload")
        assert resp["ok"], resp
        assert r.owners()[2] == "free"
        assert "web@web-1" not in {c["name"] for c in r.status()["containers"]}
        wait_for(lambda: r.daemon.engine_containers == {}, "the instance forgotten")


def test_a_container_found_running_keeps_the_free_nodes_its_cgroup_holds(tmp_path: Path) -> None:
    # A restarted zoned: the watcher's start-up scan finds the container still on node 3.
    root = tmp_path / "cgroup"
    (root / "libpod_parent" / "libpod-held").mkdir(parents=True)
    (root / "libpod_parent" / "libpod-held" / "cpuset.mems").write_text("3\n")
    (root / "libpod_parent" / "libpod-new").mkdir()
    (root / "libpod_parent" / "libpod-new" / "cpuset.mems").write_text("\n")
    config = CONFIG.replace("host: {", f"host: {{cgroup_root: {root}, ")
    with running(tmp_path, config=config, scenario=SCENARIO) as r:
        assert admit(r, "web-1", "libpod_parent/libpod-held")["nodes"] == [3]
        by = {n["node"]: n for n in r.status()["nodes"]}
        assert by[3]["reason"] == "web@web-1: its cgroup held them when admitted"
        # a fresh container's cgroup names none: placed as usual (node 2 is the free one)
        assert admit(r, "web-2", "libpod_parent/libpod-new")["nodes"] == [2]


def test_keep_held_only_free_nodes_that_keep_min() -> None:
    from zoned.config.load import loads
    from zoned.policy.engines import keep_held

    web = loads(CONFIG).templates[0]  # min 1 node
    big = loads(CONFIG).templates[1]  # min 3 nodes
    sizes = dict.fromkeys(range(4), 256 << 20)
    free = frozenset({2, 3})
    assert keep_held(web, frozenset({3}), free, sizes, 15.0) == frozenset({3})
    assert keep_held(web, frozenset({1, 3}), free, sizes, 15.0) is None  # 1 is db's
    assert keep_held(web, frozenset(), free, sizes, 15.0) is None
    assert keep_held(big, frozenset({2, 3}), free, sizes, 15.0) is None  # under its min
