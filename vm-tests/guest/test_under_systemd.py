"""zoned.service under systemd 252 as PID 1 (the boot of ``vm-tests/systemd_boot.py``).

Runs only in that boot (``ZONED_VM_SYSTEMD=1``), after zoned.service reported READY=1:
its STATUS= line, the CLI on the default socket, journal fields, a lend seen by the
kernel, ``systemctl reload`` good and bad, the watchdog restarting a hung loop (and the
restart adopting the zones), and ``systemctl stop`` leaving the containers in their zones.
Every wait has a deadline; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_for as support_wait_for
from zoned.control import request

from .cgtools import read
from .conftest import PROJECT, Finding, parse_list

pytestmark = pytest.mark.skipif(
    os.environ.get("ZONED_VM_SYSTEMD") != "1", reason="runs only in the systemd boot"
)

SOCKET = Path("/run/zoned/control.sock")
CG = Path("/sys/fs/cgroup/zoned")
CONFIG = Path("/etc/zoned/zoned.yaml")


def wait_for(cond: Callable[[], Any], what: str, deadline_s: float = 120.0) -> Any:
    return support_wait_for(cond, what, deadline_s)


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def prop(name: str) -> str:
    return sh("systemctl", "show", "-p", name, "--value", "zoned.service").stdout.strip()


def status() -> dict[str, Any]:
    resp = request(SOCKET, {"cmd": "status", "decisions": 50}, timeout_s=60)
    assert resp["ok"], resp
    doc: dict[str, Any] = resp["result"]
    return doc


def holds(name: str) -> list[int]:
    return next((c["nodes"] for c in status()["containers"] if c["name"] == name), [])


def effective(name: str) -> list[int]:
    return parse_list(read(CG / name / "cpuset.mems.effective"))


def zoned_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoned", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_zoned_service_under_systemd(finding: Finding) -> None:
    wait_for(lambda: prop("ActiveState") == "active", "zoned.service active")
    main_pid = int(prop("MainPID"))
    # STATUS= is the summary line; the daemon stayed in its own cgroup (MemoryMin= applies)
    text = wait_for(lambda: prop("StatusText"), "STATUS=")
    assert text == "8 nodes: 2 lent, 1 reserved, 5 free; 2 containers"
    own = Path(f"/proc/{main_pid}/cgroup").read_text().strip()
    assert own == "0::/system.slice/zoned.service", own
    finding("zoned.service cgroup", own)
    assert read(Path("/proc") / str(main_pid) / "oom_score_adj") == "-900"

    p = zoned_cli("status")
    assert p.returncode == 0, p.stderr
    assert "8 nodes: 2 lent, 1 reserved, 5 free; 2 containers" in p.stdout
    web = holds("web")
    assert effective("web") == web

    # journal: the engine's decisions carry structured fields
    j = sh("journalctl", "-u", "zoned", "CONTAINER=web", "-o", "json", "--no-pager")
    entries = [json.loads(line) for line in j.stdout.splitlines() if line.startswith("{")]
    assert entries, j.stdout + j.stderr
    assert {e.get("ACTION") for e in entries} >= {"admit", "tripwire"}
    assert all(e.get("SYSLOG_IDENTIFIER") == "zoned" for e in entries)

    # an override, seen by the kernel
    free = min(n["node"] for n in status()["nodes"] if n["owner"] == "free")
    p = zoned_cli("lend", str(free), "web")
    assert p.returncode == 0, p.stderr
    wait_for(lambda: free in holds("web") and not status()["pending"], "lend")
    assert effective("web") == sorted([*web, free])
    assert prop("StatusText") == "8 nodes: 3 lent, 1 reserved, 4 free; 2 containers"

    # systemctl reload: a good config applies, a bad one is refused and logged
    good = CONFIG.read_text() + "  extra: {min: {nodes: 1}, max: {nodes: 1}}\n"
    CONFIG.write_text(good)
    assert sh("systemctl", "reload", "zoned").returncode == 0
    extra = wait_for(lambda: holds("extra"), "reload adds extra")
    assert effective("extra") == extra
    CONFIG.write_text("containers:\n  web: {min: lots}\n")
    assert sh("systemctl", "reload", "zoned").returncode == 0
    wait_for(
        lambda: "reload refused" in sh("journalctl", "-u", "zoned", "--no-pager").stdout,
        "the refusal in the journal",
    )
    assert [c["name"] for c in status()["containers"]] == ["web", "batch", "extra"]
    CONFIG.write_text(good)

    watchdog_then_stop(main_pid, finding)


def watchdog_then_stop(main_pid: int, finding: Finding) -> None:
    """A hung loop is killed and restarted and the restart adopts the zones; then
    ``systemctl stop`` leaves the containers in their zones."""
    before = {n["node"]: n["owner"] for n in status()["nodes"]}
    t0 = time.monotonic()
    os.kill(main_pid, signal.SIGSTOP)
    wait_for(lambda: prop("MainPID") not in ("0", str(main_pid)), "a new main pid", 180)
    wait_for(lambda: prop("ActiveState") == "active", "active again", 180)
    finding("watchdog restart after SIGSTOP (s)", round(time.monotonic() - t0, 1))
    assert int(prop("NRestarts")) >= 1
    assert {n["node"]: n["owner"] for n in status()["nodes"]} == before
    admits = [d for d in status()["decisions"] if d["kind"] == "admit"]
    assert {d["outcome"] for d in admits} == {"adopted"}

    mems = {c: read(CG / c / "cpuset.mems") for c in ("web", "batch", "extra")}
    assert sh("systemctl", "stop", "zoned").returncode == 0
    assert prop("ActiveState") == "inactive"
    assert {c: read(CG / c / "cpuset.mems") for c in ("web", "batch", "extra")} == mems
    p = zoned_cli("status")
    assert p.returncode == 1
    assert p.stderr == (
        "zoned status: no daemon at /run/zoned/control.sock (is zoned.service running?)\n"
    )
