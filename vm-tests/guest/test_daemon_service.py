"""``zoned run`` as a process on a real kernel (numa=fake=8, cgroup v1 and v2).

The daemon places the containers, answers ``zoned status``, carries out operator
overrides with real ``cpuset.mems`` writes, reloads on SIGHUP, stops on SIGTERM leaving
every container in its zones, and a restart adopts what the kernel holds. Every wait is
bounded by a deadline; no test sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_for
from zoned.service.controlclient import request

from .cgtools import read, remove_tree
from .conftest import BOOT, PROJECT, Finding, parse_list

PARENT = "zoned-vmtest-daemon"
# The summary line and node counts below are those of numa=fake=8.
pytestmark = pytest.mark.boot(numa="8")

START_S = 120.0  # python start-up and admission under TCG
MOVE_S = 120.0

if BOOT["cgroup"] == "v1":
    CPUSET = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
    MEMORY = Path(os.environ.get("ZONED_VM_CGROUP_V1_MEMORY", "/run/cgroup-v1/memory"))
    CGROUP_ROOT = CPUSET.parent
    EFFECTIVE = "cpuset.effective_mems"
    ROOTS: tuple[Path, ...] = (CPUSET, MEMORY)
else:
    CPUSET = MEMORY = CGROUP_ROOT = Path("/sys/fs/cgroup")
    EFFECTIVE = "cpuset.mems.effective"
    ROOTS = (CPUSET,)

CONFIG = f"""\
host:
  cgroup_root: {CGROUP_ROOT}
  hierarchy: {BOOT["cgroup"] or "auto"}
  parent: {PARENT}
  reserved_nodes: [0]
policy:
  cooldown_s: 1
containers:
  web:   {{min: {{nodes: 1}}, max: {{nodes: 3}}, priority: 10}}
  batch: {{min: {{nodes: 1}}, max: {{nodes: 2}}}}
"""


class Daemon:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "zoned.yaml"
        self.socket = tmp / "control.sock"
        self.state = tmp / "state"
        self.log = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zoned",
                    "run",
                    "--config",
                    str(self.config),
                    "--socket",
                    str(self.socket),
                    "--state-dir",
                    str(self.state),
                ],
                cwd=PROJECT,
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: self.alive() and self.socket.exists(), "the control socket", START_S)
        p = self.cli("status")  # the CLI's text form, once
        assert p.returncode == 0 and "CONTAINER" in p.stdout, p.stderr

    def alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"zoned exited with {self.proc.returncode}:\n{self.log.read_text()}")
        return True

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zoned", *args, "--socket", str(self.socket)],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        # In-process over the socket: a CLI start costs seconds of Python under TCG.
        resp = request(self.socket, {"cmd": "status", "decisions": 50}, timeout_s=60)
        assert resp["ok"], resp
        doc: dict[str, Any] = resp["result"]
        return doc

    def holds(self, name: str) -> list[int]:
        return next(c["nodes"] for c in self.status()["containers"] if c["name"] == name)

    def settled(self) -> bool:
        return not self.status()["pending"]

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def effective(name: str) -> list[int]:
    return parse_list(read(CPUSET / PARENT / name / EFFECTIVE))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    for root in ROOTS:
        remove_tree(root / PARENT, root)
    d = Daemon(tmp_path)
    d.config.write_text(CONFIG)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait(30)
    for root in ROOTS:
        remove_tree(root / PARENT, root)


def test_daemon_places_lends_reloads_stops_and_adopts(daemon: Daemon, finding: Finding) -> None:
    t0 = time.monotonic()
    daemon.start()
    finding("daemon ready (s, TCG)", round(time.monotonic() - t0, 1))
    doc = daemon.status()
    owners = {n["node"]: n["owner"] for n in doc["nodes"]}
    assert owners[0] == "reserved"
    web, batch = daemon.holds("web"), daemon.holds("batch")
    assert len(web) == 1 and len(batch) == 1
    assert effective("web") == web and effective("batch") == batch
    assert doc["summary"] == "8 nodes: 2 lent, 1 reserved, 5 free; 2 containers"

    # operator override: a real cpuset.mems write, seen in the kernel's effective set
    free = min(n for n, o in owners.items() if o == "free")
    p = daemon.cli("lend", str(free), "web")
    assert p.returncode == 0, p.stderr
    wait_for(lambda: free in daemon.holds("web") and daemon.settled(), "lend", MOVE_S)
    assert effective("web") == sorted([*web, free])
    p = daemon.cli("lend", "0", "web")
    assert p.returncode == 1 and "node 0 is reserved" in p.stderr
    p = daemon.cli("reclaim", str(batch[0]))
    assert p.returncode == 1 and "batch would fall below its min" in p.stderr
    p = daemon.cli("reclaim", str(free))
    assert p.returncode == 0, p.stderr
    wait_for(lambda: free not in daemon.holds("web") and daemon.settled(), "reclaim", MOVE_S)
    assert effective("web") == web

    # SIGHUP: a new container appears with its own cgroup
    daemon.config.write_text(CONFIG + "  extra: {min: {nodes: 1}, max: {nodes: 1}}\n")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    extra = wait_for(lambda: daemon.holds("extra"), "reload", START_S)
    assert effective("extra") == extra

    # SIGTERM: the containers keep their zones
    assert daemon.stop() == 0
    assert effective("web") == web and effective("extra") == extra
    assert not daemon.socket.exists()

    # restart: what the kernel holds is adopted, reasons come back from the hints
    before = {c: read(CPUSET / PARENT / c / "cpuset.mems") for c in ("web", "batch", "extra")}
    daemon.start()
    doc2 = daemon.status()
    assert {n["node"]: n["owner"] for n in doc2["nodes"]} == {
        n["node"]: n["owner"] for n in daemon_status_nodes(doc, extra)
    }
    after = {c: read(CPUSET / PARENT / c / "cpuset.mems") for c in ("web", "batch", "extra")}
    assert after == before
    admits = [d for d in doc2["decisions"] if d["kind"] == "admit"]
    assert {d["outcome"] for d in admits} == {"adopted"}
    assert daemon.stop() == 0
    finding("daemon decisions at restart", [d["outcome"] for d in admits])


def daemon_status_nodes(doc: dict[str, Any], extra: list[int]) -> list[dict[str, Any]]:
    """The first run's nodes with ``extra``'s node added by the reload."""
    out = []
    for n in doc["nodes"]:
        owner = "extra" if n["node"] in extra else n["owner"]
        out.append({**n, "owner": owner})
    return out
