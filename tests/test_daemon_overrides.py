"""Overrides checked against what the holder uses, ``--force``, and ``--wait``'s exit codes,
end to end on the paced simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import CONFIG, SCENARIO, Running, running, wait_for
from zoned.cli.main import main

# web grows to 300M anon: more than one 256M node holds, so it is lent node 3.
GROWN = SCENARIO.replace(
    "  web:\n    - {idle_s: 100000}",
    "  web:\n    - {ramp: {anon: 300M, over_s: 2}}\n    - {idle_s: 100000}",
)
GROWN_CONFIG = CONFIG.replace(
    "web:   {min: {nodes: 1}, max: {nodes: 2}", "web:   {min: {nodes: 1}, max: {nodes: 3}"
)


def web(r: Running) -> dict[str, Any]:
    return next(c for c in r.status()["containers"] if c["name"] == "web")


def grown(r: Running) -> None:
    def ready() -> bool:
        return r.owners()[3] == "web" and web(r)["anon"] >= 300 << 20 and not r.status()["pending"]

    wait_for(ready, "web grown onto node 3", deadline_s=20.0)


@pytest.mark.parametrize(
    "req",
    [{"cmd": "reclaim", "node": 3}, {"cmd": "lend", "node": 1, "container": "batch"}],
)
def test_taking_a_node_the_holders_anon_needs_is_refused_with_numbers(
    tmp_path: Path, req: dict[str, object]
) -> None:
    with running(tmp_path, config=GROWN_CONFIG, scenario=GROWN) as r:
        grown(r)
        before = r.owners()
        resp = r.call(**req)
        assert resp["ok"] is False
        node = req["node"]
        assert resp["error"].startswith("refused: web uses 300M anon")
        assert f"without node {node} its node {4 - int(str(node))} holds 256M" in resp["error"]
        assert resp["error"].endswith("it would not fit (OOM kill); --force to take it anyway")
        assert r.owners() == before


def test_force_takes_it_and_the_log_says_forced(tmp_path: Path) -> None:
    with running(tmp_path, config=GROWN_CONFIG, scenario=GROWN) as r:
        grown(r)
        assert r.call(cmd="reclaim", node=3, force="yes")["error"] == (
            '"force" must be true or false'
        )
        resp = r.call(cmd="reclaim", node=3, force=True)
        assert resp["ok"], resp
        started = [
            d
            for d in r.status()["decisions"]
            if d["what"] == "return node 3 from web to the pool" and d["outcome"] == "started"
        ]
        assert len(started) == 1
        assert "zoned reclaim 3 --force; forced: web uses 300M anon" in started[0]["reason"]


def test_cli_refusal_exits_1_with_the_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(tmp_path, config=GROWN_CONFIG, scenario=GROWN) as r:
        grown(r)
        assert main(["reclaim", "3", "--wait", "--socket", str(r.socket)]) == 1
        # the last line: a daemon thread's log records may come before it
        err = capsys.readouterr().err.splitlines()[-1]
        assert err.startswith("zoned reclaim: refused: web uses 300M anon")


def test_wait_follows_to_done_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(tmp_path) as r:
        assert main(["lend", "3", "batch", "--wait", "--socket", str(r.socket)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "started: lend node 3 to batch"
        assert out[-1].startswith("lend node 3 to batch: done in ")
        assert r.owners()[3] == "batch"


def test_wait_exits_3_when_the_daemon_gives_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faulty = (
        SCENARIO
        + "faults:\n  - {kind: set_nodes_error, container: batch, errno: EBUSY, times: 3}\n"
    )
    with running(tmp_path, scenario=faulty) as r:
        assert main(["lend", "3", "batch", "--wait", "--socket", str(r.socket)]) == 3
        out = capsys.readouterr().out.splitlines()
        assert out[-1].startswith("lend node 3 to batch: gave up after 3 attempts")


def test_wait_exits_5_at_its_timeout_and_the_hand_over_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(tmp_path) as r:
        argv = ["lend", "3", "batch", "--wait", "--timeout", "0", "--socket", str(r.socket)]
        assert main(argv) == 5
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "started: lend node 3 to batch",
            "lend node 3 to batch: not ended after 0s (--timeout); it goes on in the daemon",
        ]
        wait_for(lambda: r.owners()[3] == "batch", "node 3 lent all the same")


def test_wait_exits_5_when_its_deadline_passes_while_the_hand_over_moves_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 200M on node 1 moving at 1M/s: 200 s of virtual time, 40 s of real time at x5.
    slow = (
        GROWN.replace("anon: 300M", "anon: 200M")
        + "faults:\n  - {kind: slow_migration, container: web, bandwidth: 1M, times: 5}\n"
    )
    with running(tmp_path, config=GROWN_CONFIG, scenario=slow) as r:
        sock = ["--socket", str(r.socket)]
        wait_for(
            lambda: (
                web(r)["anon"] >= 200 << 20
                and web(r)["nodes"] == [1, 3]
                and not r.status()["pending"]
            ),
            "web at 200M, lent node 3",
        )
        assert main(["reclaim", "1", "--wait", "--timeout", "0.5", *sock]) == 5
        out = capsys.readouterr().out.splitlines()
        assert out[-1].endswith("not ended after 0.5s (--timeout); it goes on in the daemon")
