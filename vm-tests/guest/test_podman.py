"""Containers that podman starts get zones (issue 15): through zoned's OCI hook, and
through the watcher when no hook runs.

Debian's podman + crun, rootful, cgroupfs manager (no systemd in this guest), storage
(vfs) on the guest's /tmp tmpfs, an image ``podman import``ed from a busybox-static rootfs
with the host's /usr bound in read-only (for stress-ng; the guest's root is the host's
over 9p). One daemon for both tests, with the declaration::

    web: {min: {nodes: 1}, max: {nodes: 3}, engine: {podman: {name: "web-*"}}}

(a) hook: the container's first command sees ``Mems_allowed_list`` = its zone and its
first pages (``numa_maps`` of that first process) are on its node; stress-ng then grows
past one node and is not OOM-killed while zoned lends; when the container stops its nodes
return to the pool. (b) the same through the watcher (no hook; the container waits a few
seconds first, since the watcher asks ``podman inspect`` after the cgroup appears).
(c) the control: the same workload in a container podman pins to one node itself is
OOM-killed, so the lend in (a) and (b) was needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from zoned.service.client import request

from .cgtools import remove_tree
from .conftest import PROJECT, RUN_DIR, Finding
from .scenario_support import ROOT, Kmsg, wait_for

pytestmark = pytest.mark.boot(kernel="6.1", numa="8", cgroup="v2")

IMAGE = "localhost/zoned-test:latest"
GROW_MIB = 300  # more than one node (208-252 MiB), under the tripwire of two (>= 353 MiB)
RUN_S = 90  # stress-ng --timeout, a backstop: it ends after two passes over its memory


def _need_podman() -> None:
    missing = [c for c in ("podman", "crun", "conmon") if shutil.which(c) is None]
    if not missing:
        return
    why = f"{', '.join(missing)} not installed on the host (.ci/setup test installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@dataclass
class Podman:
    store: Path
    hooks: Path
    env: dict[str, str]
    import_s: float = 0.0

    def argv(self, *args: str, hooks: bool = False) -> list[str]:
        s = self.store
        glob = [
            "podman",
            "--root", str(s / "root"),
            "--runroot", str(s / "run"),
            "--storage-driver", "vfs",
            "--network-config-dir", str(s / "networks"),
            "--events-backend", "file",
            "--cgroup-manager", "cgroupfs",
            "--hooks-dir", str(self.hooks if hooks else s / "nohooks"),
        ]  # fmt: skip
        return [*glob, *args]

    def run(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.store,  # conmon writes an "oom" file into its working directory
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    _need_podman()
    store = tmp_path_factory.mktemp("podstore")
    for d in ("root", "run", "networks", "nohooks", "hooks", "tmp"):
        (store / d).mkdir()
    # storage.conf: the daemon's `podman inspect` finds the same store through it.
    conf = store / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{store}/root"\nrunroot = "{store}/run"\n'
    )
    # containers.conf: off the read-only root for every podman command, inspect included
    # (without network_config_dir: "mkdir /etc/containers/networks: read-only file system").
    engine = store / "containers.conf"
    engine.write_text(
        f'[engine]\nevents_logger = "file"\nevents_logfile_path = "{store}/events.log"\n'
        f'cgroup_manager = "cgroupfs"\n[network]\nnetwork_config_dir = "{store}/networks"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(conf),
        "CONTAINERS_CONF": str(engine),
        "TMPDIR": str(store / "tmp"),
    }
    rootfs = store / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "usr"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for tool in ("sh", "grep", "cat", "sleep", "head", "echo"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    for link in ("lib", "lib64"):  # Debian's merged /usr: the host's /usr is bound in
        (rootfs / link).symlink_to(f"usr/{link}")
    tar = store / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    p = Podman(store, store / "hooks", env)
    t0 = time.monotonic()
    done = p.run("import", str(tar), IMAGE)
    assert done.returncode == 0, done.stderr
    p.import_s = round(time.monotonic() - t0, 1)
    hook = {
        "version": "1.0.0",
        "hook": {
            "path": sys.executable,
            "args": [sys.executable, "-m", "zoned", "oci-hook", "--socket", f"{store}/zoned.sock"],
            "env": [f"PYTHONPATH={PROJECT}", "PATH=/usr/bin:/bin"],
        },
        "when": {"annotations": {"^io\\.zoned\\.container$": ".+"}},
        "stages": ["createRuntime"],
    }
    (p.hooks / "zoned.json").write_text(json.dumps(hook))
    yield p
    p.run("rm", "-af", timeout_s=60)


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


@pytest.fixture(scope="module")
def daemon(podman: Podman) -> Iterator[Daemon]:
    config = {
        "host": {"reserved_nodes": [0], "parent": "zoned-vmtest-podman"},
        "policy": {"cooldown_s": 1, "idle_return_s": 600},
        "containers": {
            "web": {
                "min": {"nodes": 1},
                "max": {"nodes": 3},
                "engine": {"podman": {"name": "web-*"}},
            }
        },
    }
    cfg = podman.store / "zoned.yaml"
    cfg.write_text(yaml.safe_dump(config))
    sock, log = podman.store / "zoned.sock", podman.store / "zoned.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zoned", "run", "-v", "--config", str(cfg), "--socket",
             str(sock), "--state-dir", str(podman.store / "state")],
            cwd=PROJECT, env=podman.env, stdout=out, stderr=out,
        )  # fmt: skip
    d = Daemon(proc, sock, log)
    try:
        wait_for(lambda: proc.poll() is None and sock.exists(), "zoned's socket", 120)
        yield d
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        if RUN_DIR.is_dir():  # the host keeps it with the run's logs
            shutil.copy(log, RUN_DIR / "zoned-podman.log")
        remove_tree(ROOT / "zoned-vmtest-podman", ROOT)


SCRIPT = (
    "{wait}grep Mems_allowed_list /proc/self/status; "
    "grep -E ' (heap|stack) ' /proc/self/numa_maps; "
    f"stress-ng --vm 1 --vm-bytes {GROW_MIB}M --vm-keep --vm-ops 2 --timeout {RUN_S}s -q; "
    # the container's own cgroup (podman's private cgroup namespace): its high-water mark
    "rc=$?; echo peak $(cat /sys/fs/cgroup/memory.peak); exit $rc"
)


def _container(
    podman: Podman, d: Daemon, name: str, *, hooks: bool, wait: str, finding: Finding
) -> None:
    kmsg = Kmsg()
    args = ["run", "--rm", "--network", "none", "--name", name, "-v", "/usr:/usr:ro"]
    if hooks:
        args += ["--annotation", "io.zoned.container=web"]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        podman.argv(*args, IMAGE, "sh", "-c", SCRIPT.format(wait=wait), hooks=hooks),
        cwd=podman.store,
        env=podman.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    instance = f"web@{name}"
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
    killed = kmsg.killed()
    kmsg.close()
    lines = out.splitlines()
    finding(
        f"podman {'hook' if hooks else 'watcher'}: run",
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


def test_hook_gives_the_zone_before_the_first_instruction(
    podman: Podman, daemon: Daemon, finding: Finding
) -> None:
    finding("podman: import s", podman.import_s)
    _container(podman, daemon, "web-hook", hooks=True, wait="", finding=finding)


def test_watcher_gives_a_zone_to_a_container_started_without_the_hook(
    podman: Podman, daemon: Daemon, finding: Finding
) -> None:
    _container(podman, daemon, "web-watch", hooks=False, wait="sleep 6; ", finding=finding)


def test_without_a_lend_the_same_container_is_oom_killed_on_one_node(
    podman: Podman, daemon: Daemon, finding: Finding
) -> None:
    """The control: pinned to one node by podman itself (``--cpuset-mems``, a name no
    declaration matches), the same workload does not fit and the kernel OOM-kills."""
    node = next(int(n["node"]) for n in daemon.status()["nodes"] if n["owner"] == "free")
    kmsg = Kmsg()
    script = (
        f"stress-ng --vm 1 --vm-bytes {GROW_MIB}M --vm-keep --vm-ops 2 --timeout 15s -q; "
        "echo oom_kill $(grep oom_kill /sys/fs/cgroup/memory.events)"
    )
    done = podman.run(
        "run", "--rm", "--network", "none", "--name", "bare-1", "-v", "/usr:/usr:ro",
        "--cpuset-mems", str(node), IMAGE, "sh", "-c", script,
    )  # fmt: skip
    killed = kmsg.killed()
    kmsg.close()
    finding("podman without a lend", {"node": node, "killed": killed, "stdout": done.stdout})
    assert done.returncode == 0, done.stderr
    assert killed, f"stress-ng fitted node {node} alone: the lend was not needed"
    assert "bare-1" not in " ".join(daemon.holders()), daemon.holders()
