"""The daemon end to end on the paced simulator: status, overrides, events, reload."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.daemon import CONFIG, running, wait_for
from tests.support.jsondocs import parse as parse_json
from zoned.cli.main import main
from zoned.cli.statusview import render
from zoned.errors import ControlError
from zoned.service.client import follow, request


def test_ready_with_status_line_and_status_matches_config(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        assert r.sent[0].startswith("READY=1\nSTATUS=4 nodes: 2 lent, 1 reserved, 1 free; ")
        assert "2 containers" in r.sent[0]
        doc = r.status()
        assert doc["summary"] == "4 nodes: 2 lent, 1 reserved, 1 free; 2 containers"
        owners = {n["node"]: n["owner"] for n in doc["nodes"]}
        assert owners == {0: "reserved", 1: "web", 2: "batch", 3: "free"}
        by = {c["name"]: c for c in doc["containers"]}
        assert set(by) == {"web", "batch"}
        assert by["web"]["managed"] and by["web"]["priority"] == 10
        assert by["web"]["min"] == {"value": 1, "unit": "nodes"}
        assert by["web"]["max"] == {"value": 2, "unit": "nodes"}
        assert by["web"]["capacity"] == 256 << 20
        assert by["web"]["tripwire"] == int((256 << 20) * 0.85)
        assert doc["daemon"]["config"] == str(r.config)
        assert any(d["kind"] == "admit" and d["outcome"] == "created" for d in doc["decisions"])
        text = render(doc)
        assert "NODE  OWNER" in text and "CONTAINER  NODES" in text
        # the node table: one row per node, the reason last and whole
        rows = [ln for ln in text.splitlines() if ln[:4].strip().isdigit()]
        assert [int(ln[:4]) for ln in rows] == [0, 1, 2, 3]
        assert rows[1].split()[1] == "web" and rows[1].endswith("web: min 1 node")


def test_lend_then_reclaim_overrides(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        resp = r.call(cmd="lend", node=3, container="web")
        assert resp == {"ok": True, "result": resp["result"]}
        assert resp["result"]["started"] == "lend node 3 to web"
        wait_for(lambda: r.owners()[3] == "web" and not r.status()["pending"], "node 3 lent")
        doc = r.status()
        lent = next(n for n in doc["nodes"] if n["node"] == 3)
        assert lent["reason"].startswith("operator (uid 0")
        resp = r.call(cmd="reclaim", node=3)
        assert resp["ok"], resp
        wait_for(lambda: r.owners()[3] == "free" and not r.status()["pending"], "node 3 back")
        assert r.sent[-1].startswith("STATUS=4 nodes: 2 lent, 1 reserved, 1 free")


@pytest.mark.parametrize(
    ("req", "error"),
    [
        ({"cmd": "lend", "node": 0, "container": "web"}, "node 0 is reserved"),
        ({"cmd": "lend", "node": 9, "container": "web"}, "no node 9"),
        ({"cmd": "lend", "node": 3, "container": "nosuch"}, "no container 'nosuch'"),
        ({"cmd": "lend", "node": 2, "container": "web"}, "batch would fall below its min"),
        ({"cmd": "lend", "node": 1, "container": "web"}, "web already holds node 1"),
        ({"cmd": "reclaim", "node": 1}, "web would fall below its min"),
        ({"cmd": "reclaim", "node": 3}, "node 3 is free already"),
        ({"cmd": "reclaim", "node": "x"}, '"node" must be a node number'),
        ({"cmd": "frobnicate"}, "unknown command 'frobnicate'"),
    ],
)
def test_overrides_refused_with_reasons(tmp_path: Path, req: dict[str, object], error: str) -> None:
    with running(tmp_path) as r:
        before = r.owners()
        resp = r.call(**req)
        assert resp["ok"] is False
        assert error in resp["error"]
        assert r.owners() == before


def test_lend_beyond_max_refused(tmp_path: Path) -> None:
    cfg = CONFIG.replace("max: {nodes: 2}, priority: 10", "max: {nodes: 1}, priority: 10")
    with running(tmp_path, config=cfg) as r:
        resp = r.call(cmd="lend", node=3, container="web")
        assert not resp["ok"] and "web is at its max (1 node)" in resp["error"]


def test_events_stream_decisions_as_they_happen(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        stream = follow(r.socket, {"cmd": "events", "history": 2}, timeout_s=10.0)
        first = next(stream)
        assert first == {"ok": True, "result": {"following": True}}
        history = [next(stream)["event"] for _ in range(2)]
        assert all(set(e) >= {"at", "kind", "what", "reason", "outcome"} for e in history)
        assert r.call(cmd="lend", node=3, container="batch")["ok"]
        seen = []
        for obj in stream:
            seen.append(obj["event"])
            if obj["event"]["outcome"].startswith("done"):
                break
        assert [e["what"] for e in seen][:1] == ["lend node 3 to batch"]
        assert seen[0]["outcome"] == "started"
        stream.close()  # type: ignore[attr-defined]  # a generator


def test_reload_good_then_bad_keeps_the_old(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        r.config.write_text(
            CONFIG.replace("priority: 0}", "priority: 3}")
            + "  extra: {min: {nodes: 1}, max: {nodes: 1}}\n"
        )
        resp = r.call(cmd="reload")
        assert resp["ok"], resp
        changes = resp["result"]["changes"]
        assert "batch: priority 0 → 3" in changes
        assert any(c.startswith("added extra") for c in changes)
        doc = r.status()
        by = {c["name"]: c for c in doc["containers"]}
        assert by["extra"]["managed"] and by["extra"]["nodes"] == [3]
        assert by["batch"]["priority"] == 3
        assert doc["summary"] == "4 nodes: 3 lent, 1 reserved; 3 containers"

        r.config.write_text("containers:\n  web: {min: lots}\n")
        resp = r.call(cmd="reload")
        assert resp["ok"] is False
        assert "zoned.yaml" in resp["error"]
        doc2 = r.status()
        assert [c["name"] for c in doc2["containers"]] == ["web", "batch", "extra"]
        assert doc2["summary"] == doc["summary"]

        # a removed container is released and its node goes back to the pool
        r.config.write_text(CONFIG)
        resp = r.call(cmd="reload")
        assert resp["ok"] and "removed extra" in resp["result"]["changes"]
        assert r.owners()[3] == "free"


def test_reload_refuses_host_changes(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        r.config.write_text(CONFIG.replace("reserved_nodes: [0]", "reserved_nodes: [0, 3]"))
        resp = r.call(cmd="reload")
        assert not resp["ok"] and "host.reserved_nodes changed" in resp["error"]


def test_corrupt_or_foreign_hints_never_stop_a_start(tmp_path: Path) -> None:
    with running(tmp_path, state="{not json") as r:
        assert r.status()["summary"].startswith("4 nodes")
        # the daemon rewrote the hints with its map
        doc = json.loads((r.state_dir / "state.json").read_text())
        assert doc["version"] == 1 and doc["nodes"]["1"]["owner"] == "web"


def test_no_daemon_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "none.sock"
    with pytest.raises(ControlError, match=r"no daemon at .*none\.sock \(is zoned\.service"):
        request(sock, {"cmd": "status"})
    for argv in (["status"], ["lend", "3", "web"], ["reclaim", "3"], ["reload"], ["events"]):
        assert main([*argv, "--socket", str(sock)]) == 1
        err = capsys.readouterr().err
        assert err == (f"zoned {argv[0]}: no daemon at {sock} (is zoned.service running?)\n")


def test_cli_status_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running(tmp_path) as r:
        assert main(["status", "--socket", str(r.socket)]) == 0
        out = capsys.readouterr().out
        assert "4 nodes: 2 lent, 1 reserved, 1 free; 2 containers" in out
        assert main(["status", "--json", "--socket", str(r.socket)]) == 0
        assert parse_json(capsys.readouterr().out)["schema"] == "zoned/status/v1"
        assert main(["lend", "0", "web", "--socket", str(r.socket)]) == 1
        assert "node 0 is reserved" in capsys.readouterr().err


def _as_uid(uid: int, fn: Callable[[], object]) -> object:
    """Run ``fn`` in a forked child that dropped to ``uid``; return its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, json.dumps(fn()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"child failed ({status})"
    return json.loads(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid")
def test_unprivileged_client_may_read_but_not_change() -> None:
    # pytest's tmp_path is root-only (0700); uid 65534 must be able to reach the socket.
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp)) as r:
        Path(tmp).chmod(0o755)
        r.socket.chmod(0o666)  # let uid 65534 connect at all; SO_PEERCRED must still refuse
        sock = r.socket
        got = _as_uid(
            65534,
            lambda: [
                request(sock, {"cmd": "lend", "node": 3, "container": "web"}),
                request(sock, {"cmd": "reload"}),
                request(sock, {"cmd": "status"})["ok"],
            ],
        )
        assert isinstance(got, list)
        lend, reload, read_ok = got
        assert lend["ok"] is False
        assert lend["error"] == "lend changes the zone map: allowed to root, not to uid 65534"
        assert reload["ok"] is False and "not to uid 65534" in reload["error"]
        assert read_ok is True
        assert r.owners()[3] == "free"


def test_run_with_invalid_config_exits_78_with_every_problem_and_applies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text("containers:\n  web: {min: lots}\n  db: {min: 1G, max: 512M}\n")
    sock = tmp_path / "control.sock"
    rc = main(
        [
            "run",
            "--config",
            str(cfg),
            "--socket",
            str(sock),
            "--state-dir",
            str(tmp_path / "state"),
            "--cgroup-root",
            str(tmp_path / "cgroup"),
        ]
    )
    assert rc == 78  # EX_CONFIG: the unit does not restart on it
    err = capsys.readouterr().err.splitlines()
    assert len(err) >= 2
    assert all(line.startswith(f"zoned run: {cfg}:") for line in err)
    assert any("containers.web.min" in line for line in err)
    assert not sock.exists() and not (tmp_path / "state").exists()


def test_reload_waits_for_hand_overs_in_flight(tmp_path: Path) -> None:
    with running(tmp_path) as r:
        engine = r.daemon.engine
        assert engine is not None
        # A hand-over in flight, as the engine reports it (real ones finish too fast on the
        # simulator to be caught mid-way by a test).
        engine.pending = lambda: ("return node 3 from batch to the pool (evacuate)",)  # type: ignore[method-assign]
        r.config.write_text(CONFIG.replace("priority: 0}", "priority: 1}"))
        resp = r.call(cmd="reload")
        assert resp["ok"] and resp["result"]["deferred"] is True
        doc = r.status()
        assert doc["daemon"]["reload_pending"] is True
        assert {c["name"]: c for c in doc["containers"]}["batch"]["priority"] == 0
        del engine.pending  # the hand-over ends; the next step applies the reload
        wait_for(
            lambda: {c["name"]: c for c in r.status()["containers"]}["batch"]["priority"] == 1,
            "the deferred reload",
        )
        doc = r.status()
        assert doc["daemon"]["reload_pending"] is False
        assert any(d["kind"] == "reload" for d in doc["decisions"])


# -- stopping ------------------------------------------------------------------------------

ONE_EMPTY = """\
name: test
duration_s: 100000
topology: {count: 4, size: 256M}
config:
  host: {reserved_nodes: [0]}
  containers:
    web:   {min: {nodes: 1}, max: {nodes: 2}}
    batch: {min: {nodes: 1}, max: {nodes: 2}}
workloads:
  web:
    - {idle_s: 100000}
"""


@pytest.mark.parametrize("release", [False, True])
def test_release_on_stop_removes_only_empty_containers(tmp_path: Path, release: bool) -> None:
    with running(tmp_path, scenario=ONE_EMPTY, release_on_stop=release) as r:
        backend = r.daemon.backend
        assert backend is not None
        assert set(backend.existing()) == {"web", "batch"}
    # web has a process: kept either way; batch is empty: removed only when asked
    assert set(backend.existing()) == ({"web"} if release else {"web", "batch"})
