"""zoned.service under systemd 252 as PID 1 (the boot of ``vm-tests/systemd_boot.py``).

Runs only in that boot (``ZONED_VM_SYSTEMD=1``), after zoned.service reported READY=1:
its STATUS= line, the CLI on the default socket, journal fields, a lend seen by the
kernel, ``systemctl reload`` good and bad, the watchdog restarting a hung loop (and the
restart adopting the zones), and ``systemctl stop`` leaving the containers in their zones.
The shared tmpfs (``host.shared_tmpfs``, node 7): the unit's ExecStartPre mounts it in the
host's mount namespace (seen in PID 1's mountinfo), the sandboxed daemon keeps it without
a warning, and no reload, restart or stop unmounts it; a size change takes a restart.
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
from zoned.service.controlclient import request

from .cgtools import read
from .conftest import PROJECT, Finding, parse_list

pytestmark = pytest.mark.skipif(
    os.environ.get("ZONED_VM_SYSTEMD") != "1", reason="runs only in the systemd boot"
)

SOCKET = Path("/run/zoned/control.sock")
CG = Path("/sys/fs/cgroup/zoned")
CONFIG = Path("/etc/zoned/zoned.yaml")
TMPFS = "/srv/zoned-shared"  # as systemd_boot.ZONED_CONFIG declares it, 64M on node 7
MPOL = "mpol=bind:7"


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
    assert text == "8 nodes: 2 lent, 1 shared, 1 reserved, 4 free; 2 containers"
    own = Path(f"/proc/{main_pid}/cgroup").read_text().strip()
    assert own == "0::/system.slice/zoned.service", own
    finding("zoned.service cgroup", own)
    assert read(Path("/proc") / str(main_pid) / "oom_score_adj") == "-900"
    tmpfs_id = shared_tmpfs_at_start(main_pid, finding)

    p = zoned_cli("status")
    assert p.returncode == 0, p.stderr
    assert "8 nodes: 2 lent, 1 shared, 1 reserved, 4 free; 2 containers" in p.stdout
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
    assert prop("StatusText") == "8 nodes: 3 lent, 1 shared, 1 reserved, 3 free; 2 containers"

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
    # neither reload touched the tmpfs (the same mount, no warning about it)
    assert host_tmpfs()[0] == tmpfs_id
    assert tmpfs_warnings() == []

    watchdog_then_stop(main_pid, tmpfs_id, finding)


def watchdog_then_stop(main_pid: int, tmpfs_id: int, finding: Finding) -> None:
    """A hung loop is killed and restarted and the restart adopts the zones (and keeps the
    shared tmpfs); a size change of the tmpfs takes a restart; then ``systemctl stop``
    leaves the containers in their zones and the tmpfs mounted."""
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
    # the restart ran ExecStartPre again: it kept the mount, and so did the daemon
    assert host_tmpfs()[0] == tmpfs_id
    assert tmpfs_warnings() == []
    tmpfs_size_change(tmpfs_id, finding)

    mems = {c: read(CG / c / "cpuset.mems") for c in ("web", "batch", "extra")}
    assert sh("systemctl", "stop", "zoned").returncode == 0
    assert prop("ActiveState") == "inactive"
    assert {c: read(CG / c / "cpuset.mems") for c in ("web", "batch", "extra")} == mems
    mount_id, line = host_tmpfs()
    assert mount_id == tmpfs_id, line  # stopping never unmounts
    finding("shared tmpfs after systemctl stop (PID 1's mountinfo)", line)
    p = zoned_cli("status")
    assert p.returncode == 1
    assert p.stderr == (
        "zoned status: no daemon at /run/zoned/control.sock (is zoned.service running?)\n"
    )


# -- the shared tmpfs ---------------------------------------------------------------------


def mountinfo_at(pid: int | str, target: str) -> tuple[int, str] | None:
    """(mount id, line) of the topmost mount at ``target`` in ``/proc/PID/mountinfo``, parsed
    here rather than by zoned.shared.tmpfs, the code under test."""
    found: tuple[int, str] | None = None
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4] == target:
            found = (int(fields[0]), line)  # a mount stacked over another comes later
    return found


def mnt_ns(pid: int | str) -> str:
    return str(Path(f"/proc/{pid}/ns/mnt").readlink())


def host_tmpfs() -> tuple[int, str]:
    """The tmpfs at TMPFS as the host's mount namespace (PID 1's) shows it, bound to node 7."""
    assert mnt_ns("self") == mnt_ns(1)
    found = mountinfo_at(1, TMPFS)
    assert found is not None, f"nothing mounted at {TMPFS} in PID 1's mount namespace"
    mount_id, line = found
    fstype, _source, super_opts = line.split(" - ", 1)[1].split(" ")
    assert fstype == "tmpfs", line
    assert MPOL in super_opts.split(","), line
    return mount_id, line


def tmpfs_warnings() -> list[str]:
    p = zoned_cli("status", "--json")
    assert p.returncode == 0, p.stderr
    warnings: list[str] = json.loads(p.stdout)["daemon"]["warnings"]
    return [w for w in warnings if "tmpfs" in w]


def unit_journal() -> list[dict[str, Any]]:
    j = sh("journalctl", "-u", "zoned", "-o", "json", "--no-pager")
    return [json.loads(line) for line in j.stdout.splitlines() if line.startswith("{")]


def reload_lines() -> list[str]:
    messages = [str(e.get("MESSAGE", "")) for e in unit_journal()]
    return [m for m in messages if m.startswith("reload")]


def shared_tmpfs_at_start(main_pid: int, finding: Finding) -> int:
    """ExecStartPre mounted the tmpfs where the host sees it; the daemon, in its own mount
    namespace, saw it there, kept it and warned about nothing."""
    mount_id, line = host_tmpfs()
    assert "size=65536k" in line, line
    finding("shared tmpfs (PID 1's mountinfo)", line)
    ns_daemon, ns_host = mnt_ns(main_pid), mnt_ns(1)
    finding("daemon's mount namespace vs PID 1's", f"{ns_daemon} vs {ns_host}")
    assert ns_daemon != ns_host  # the sandbox: the daemon could not have mounted it for the host
    seen = mountinfo_at(main_pid, TMPFS)
    assert seen is not None and MPOL in seen[1], seen
    finding("shared tmpfs in the daemon's namespace", seen[1])
    assert tmpfs_warnings() == []

    messages = [str(e.get("MESSAGE", "")) for e in unit_journal()]
    # ExecStartPre's lines (journald keeps or strips their indentation: either is fine)
    pre = [m.strip() for m in messages if m.strip().startswith(f"{TMPFS}: ")]
    assert pre and pre[0].startswith(f"{TMPFS}: mounted with {MPOL},mode=1777,size=67108864"), (
        messages
    )
    finding("ExecStartPre's output", [m for m in messages if "shared tmpfs" in m or TMPFS in m])
    errors = [
        e
        for e in unit_journal()
        if "tmpfs" in str(e.get("MESSAGE", "")) and int(e.get("PRIORITY", 6)) < 6
    ]
    assert errors == [], errors
    kept = f"shared tmpfs: {TMPFS}: kept: already a tmpfs with {MPOL}"
    assert any(m.endswith(kept) for m in messages), messages
    probe_plus_namespace(finding)
    return mount_id


def probe_plus_namespace(finding: Finding) -> None:
    """Why the unit's ExecStartPre= uses nsenter: a "+" command of a unit with the same
    ReadWritePaths=/ProtectSystem= still runs in a mount namespace of its own."""
    out = Path("/run/zoned-plus-ns")
    p = sh(
        "systemd-run", "--wait", "--quiet", "-p", "ProtectSystem=strict",
        "-p", "ReadWritePaths=/sys/fs/cgroup", "-p", "RuntimeDirectory=zoned-probe",
        "-p", f"ExecStartPre=+/bin/sh -c 'readlink /proc/self/ns/mnt > {out}'", "/bin/true",
    )  # fmt: skip
    seen = out.read_text().strip() if out.exists() else f"(no probe: {p.stderr.strip()})"
    finding("ExecStartPre=+ mount namespace vs PID 1's", f"{seen} vs {mnt_ns(1)}")


def tmpfs_size_change(tmpfs_id: int, finding: Finding) -> None:
    """A reload cannot change the host's mount (the daemon is sandboxed); a restart's
    ExecStartPre remounts it, the same mount with the new size, and the daemon keeps it."""
    good = CONFIG.read_text()
    CONFIG.write_text(good.replace("size: 64M", "size: 96M"))
    before = len(reload_lines())
    assert sh("systemctl", "reload", "zoned").returncode == 0
    lines = wait_for(lambda: reload_lines()[before:], "the reload in the journal")
    finding("shared tmpfs size change: the daemon's reload lines", lines)
    mount_id, line = host_tmpfs()
    assert mount_id == tmpfs_id and "size=65536k" in line, line
    finding("shared tmpfs size change: warnings after reload", tmpfs_warnings())

    assert sh("systemctl", "restart", "zoned").returncode == 0
    wait_for(lambda: prop("ActiveState") == "active", "active after restart")
    mount_id, line = host_tmpfs()
    assert mount_id == tmpfs_id, line  # remounted, not mounted again over it
    assert "size=98304k" in line, line
    assert tmpfs_warnings() == []
    finding("shared tmpfs after a size change and restart", line)
