"""What the container-engine guest tests (podman, docker) share: a busybox image rootfs,
zoned's daemon with one engine declaration, and the grow-in-a-container scenario.

The scenario: a container whose first command prints its ``Mems_allowed_list`` and the
``numa_maps`` of its heap and stack, then grows ``GROW_MIB`` with stress-ng (more than one
node) and prints its cgroup's ``memory.peak``. zoned must admit it as ``web@<name>``, lend
it a second node before the kernel OOM-kills, and return its nodes when it stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from zoned.service.client import request

from .cgtools import remove_tree
from .conftest import PROJECT, RUN_DIR, Finding
from .scenario_support import ROOT, Kmsg, wait_for

GROW_MIB = 300  # more than one node (208-252 MiB), under the tripwire of two (>= 353 MiB)
RUN_S = 90  # stress-ng --timeout, a backstop: it ends after two passes over its memory

SCRIPT = (
    "{wait}grep Mems_allowed_list /proc/self/status; "
    "grep -E ' (heap|stack) ' /proc/self/numa_maps; "
    f"stress-ng --vm 1 --vm-bytes {GROW_MIB}M --vm-keep --vm-ops 2 --timeout {RUN_S}s -q; "
    # the container's own cgroup (a private cgroup namespace): its high-water mark
    "rc=$?; echo peak $(cat /sys/fs/cgroup/memory.peak); exit $rc"
)

#: For a container the watcher must find: wait (up to 3 min) until zoned has written its
#: cgroup's cpuset.mems (the container's own cgroup namespace), since the watcher asks the
#: engine's inspect after the cgroup appears (1-10 s under TCG on a busy host).
WAIT_FOR_ZONE = (
    'i=0; while [ -z "$(cat /sys/fs/cgroup/cpuset.mems)" ] && [ $i -lt 900 ]; '
    "do sleep 0.2; i=$((i+1)); done; "
)

#: The control's script: the same growth, pinned to one node by the engine itself.
CONTROL = (
    f"stress-ng --vm 1 --vm-bytes {GROW_MIB}M --vm-keep --vm-ops 2 --timeout 15s -q; "
    "echo oom_kill $(grep oom_kill /sys/fs/cgroup/memory.events)"
)


def need(commands: Sequence[str], package: str, path: str | None = None) -> None:
    """Skip (fail under CI=true) unless every command is on ``path`` (default: PATH)."""
    missing = [c for c in commands if shutil.which(c, path=path) is None]
    if not missing:
        return
    why = f"{', '.join(missing)} not installed on the host (.ci/setup test installs {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, 60 s, then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def busybox_rootfs_tar(store: Path) -> Path:
    """A tar of a busybox-static rootfs (sh, grep, cat, sleep, head, echo) with ``lib`` and
    ``lib64`` pointing into ``usr`` (the host's /usr is bound in at run time)."""
    rootfs = store / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "usr"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for tool in ("sh", "grep", "cat", "sleep", "head", "echo"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    for link in ("lib", "lib64"):  # Debian's merged /usr
        (rootfs / link).symlink_to(f"usr/{link}")
    tar = store / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def status(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            pytest.fail(f"zoned exited with {self.proc.returncode}:\n{self.log.read_text()}")
        resp = request(self.socket, {"cmd": "status", "decisions": 200}, timeout_s=60)
        assert resp["ok"], resp
        doc: dict[str, Any] = resp["result"]
        return doc

    def holders(self) -> dict[str, list[int]]:
        return {name: c["nodes"] for name, c in self.managed().items()}

    def managed(self) -> dict[str, dict[str, Any]]:
        doc = self.status()
        return {c["name"]: c for c in doc["containers"] if c.get("managed")}

    def owner_of(self, node: int) -> str:
        return str(next(n["owner"] for n in self.status()["nodes"] if n["node"] == node))

    def free_node(self) -> int:
        return next(int(n["node"]) for n in self.status()["nodes"] if n["owner"] == "free")


@contextmanager
def zoned_daemon(
    store: Path, env: Mapping[str, str], engine: dict[str, Any], parent: str
) -> Iterator[Daemon]:
    """zoned run with ``web: {min 1 node, max 3 nodes, engine: <engine>}`` under ``parent``;
    its log is kept in the run directory as ``zoned-<parent>.log``."""
    # The host's own processes (the engines' daemons, this pytest, zoned) run outside every
    # zone: when node 0 fills they spill onto node 1, next in the kernel's fallback order
    # (seen: 64 MiB of others' anon on node 1 when a container admitted there was
    # OOM-killed at 121 MiB, under its tripwire). Reserve it too, as an operator would.
    config = {
        "host": {"reserved_nodes": [0, 1], "parent": parent},
        "policy": {"cooldown_s": 1, "idle_return_s": 600},
        "containers": {"web": {"min": {"nodes": 1}, "max": {"nodes": 3}, "engine": engine}},
    }
    cfg = store / "zoned.yaml"
    cfg.write_text(yaml.safe_dump(config))
    sock, log = store / "zoned.sock", store / "zoned.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zoned", "run", "-v", "--config", str(cfg), "--socket",
             str(sock), "--state-dir", str(store / "state")],
            cwd=PROJECT, env=dict(env), stdout=out, stderr=out,
        )  # fmt: skip
    d = Daemon(proc, sock, log)
    try:
        wait_for(lambda: proc.poll() is None and sock.exists(), "zoned's socket", 120)
        yield d
    finally:
        stop(proc)
        if RUN_DIR.is_dir():  # the host keeps it with the run's logs
            shutil.copy(log, RUN_DIR / f"zoned-{parent}.log")
        remove_tree(ROOT / parent, ROOT)


def grow_in_container(
    d: Daemon,
    argv: Sequence[str],
    *,
    instance: str,
    label: str,
    cwd: Path,
    env: Mapping[str, str],
    finding: Finding,
) -> None:
    """Run the engine's ``argv`` (a container running :data:`SCRIPT`) and check the
    scenario: admitted as ``instance`` with its first pages on its zone, lent a node, no
    OOM kill, nodes back in the pool once it stops. ``label`` names the finding."""
    kmsg = Kmsg()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = wait_for(lambda: d.holders().get(instance), f"{instance} admitted", 120)
        admitted_s = time.monotonic() - t0
        most = list(first)
        cap0 = peak = 0
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            view = d.managed().get(instance)
            if view is not None:
                cap0 = cap0 or view["capacity"]
                peak = max(peak, view["anon"] or 0)
                if len(view["nodes"]) > len(most):
                    most = view["nodes"]
            time.sleep(0.5)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    killed = kmsg.killed()
    kmsg.close()
    lines = out.splitlines()
    finding(
        f"{label}: run",
        {
            "first_nodes": first,
            "most_nodes": most,
            "admitted_after_s": round(admitted_s, 1),
            "first_capacity_mib": cap0 >> 20,
            "peak_anon_mib": peak >> 20,
            "run_s": round(time.monotonic() - t0, 1),
            "stdout": lines[:5],
            "stderr": err.strip().splitlines()[-3:],
        },
    )
    assert proc.returncode == 0, (proc.returncode, out, err)
    mems = next(ln for ln in lines if ln.startswith("Mems_allowed_list:"))
    assert mems.split()[1] == ",".join(map(str, first)), (mems, first)
    numa = [ln for ln in lines if " heap " in ln or " stack " in ln]
    assert numa, lines
    for ln in numa:
        pages = [f for f in ln.split() if f.startswith("N") and "=" in f]
        assert pages and all(f"N{n}=" in " ".join(pages) for n in first), ln
        assert all(int(f[1:].split("=")[0]) in first for f in pages), (ln, first)
    assert len(most) >= 2, f"zoned lent nothing to {instance}: {most}"
    # memory.peak counts the binary's page cache too; status's anon samples may miss the top
    peaks = [int(w[1]) for w in (ln.split() for ln in lines) if w[:1] == ["peak"] and w[1:2]]
    peak = max([peak, *peaks])
    assert peak > cap0, f"{instance} never grew past its first node: {peak} <= {cap0}"
    assert killed == [], f"OOM kills while zoned lent: {killed}"
    # Stopped: its cgroup is removed, its nodes go back to the pool, the instance is dropped.
    wait_for(lambda: instance not in d.holders(), f"{instance} gone", 60)
    owners = {n: d.owner_of(n) for n in most}
    assert all(o == "free" for o in owners.values()), owners
    decisions = [x for x in d.status()["decisions"] if instance in x.get("what", "")]
    assert any(x["kind"] == "lend" for x in decisions), decisions


def control_is_killed(
    d: Daemon,
    run: subprocess.CompletedProcess[str],
    *,
    node: int,
    name: str,
    label: str,
    kmsg: Kmsg,
    finding: Finding,
) -> None:
    """The control ran :data:`CONTROL` pinned to ``node`` by the engine: the kernel must have
    OOM-killed it (the lend in the scenario was needed) and zoned must not have adopted it."""
    killed = kmsg.killed()
    kmsg.close()
    finding(f"{label} without a lend", {"node": node, "killed": killed, "stdout": run.stdout})
    assert run.returncode == 0, run.stderr
    assert killed, f"stress-ng fitted node {node} alone: the lend was not needed"
    assert name not in " ".join(d.holders()), d.holders()
