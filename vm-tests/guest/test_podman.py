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
return to the pool. (b) the same through the watcher (no hook; the container first
waits until zoned has written its ``cpuset.mems``, since the watcher asks ``podman
inspect`` after the cgroup appears).
(c) the control: the same workload in a container podman pins to one node itself is
OOM-killed, so the lend in (a) and (b) was needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import PROJECT, Finding
from .engine_support import (
    CONTROL,
    SCRIPT,
    WAIT_FOR_ZONE,
    Daemon,
    busybox_rootfs_tar,
    control_is_killed,
    grow_in_container,
    need,
    zoned_daemon,
)
from .scenario_support import Kmsg

pytestmark = pytest.mark.boot(kernel="6.1", numa="8", cgroup="v2")

IMAGE = "localhost/zoned-test:latest"


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
    need(("podman", "crun", "conmon"), "podman and crun")
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
    tar = busybox_rootfs_tar(store)
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


@pytest.fixture(scope="module")
def daemon(podman: Podman) -> Iterator[Daemon]:
    with zoned_daemon(
        podman.store, podman.env, {"podman": {"name": "web-*"}}, "zoned-vmtest-podman"
    ) as d:
        yield d


def _container(
    podman: Podman, d: Daemon, name: str, *, hooks: bool, wait: str, finding: Finding
) -> None:
    args = ["run", "--rm", "--network", "none", "--name", name, "-v", "/usr:/usr:ro"]
    if hooks:
        args += ["--annotation", "io.zoned.container=web"]
    argv = podman.argv(*args, IMAGE, "sh", "-c", SCRIPT.format(wait=wait), hooks=hooks)
    label = f"podman {'hook' if hooks else 'watcher'}"
    grow_in_container(
        d, argv, instance=f"web@{name}", label=label, cwd=podman.store, env=podman.env,
        finding=finding,
    )  # fmt: skip


def test_hook_gives_the_zone_before_the_first_instruction(
    podman: Podman, daemon: Daemon, finding: Finding
) -> None:
    finding("podman: import s", podman.import_s)
    _container(podman, daemon, "web-hook", hooks=True, wait="", finding=finding)


def test_watcher_gives_a_zone_to_a_container_started_without_the_hook(
    podman: Podman, daemon: Daemon, finding: Finding
) -> None:
    _container(podman, daemon, "web-watch", hooks=False, wait=WAIT_FOR_ZONE, finding=finding)


def test_without_a_lend_the_same_container_is_oom_killed_on_one_node(
    podman: Podman, daemon: Daemon, finding: Finding
) -> None:
    """The control: pinned to one node by podman itself (``--cpuset-mems``, a name no
    declaration matches), the same workload does not fit and the kernel OOM-kills."""
    node = daemon.free_node()
    kmsg = Kmsg()
    done = podman.run(
        "run", "--rm", "--network", "none", "--name", "bare-1", "-v", "/usr:/usr:ro",
        "--cpuset-mems", str(node), IMAGE, "sh", "-c", CONTROL,
    )  # fmt: skip
    control_is_killed(
        daemon, done, node=node, name="bare-1", label="podman", kmsg=kmsg, finding=finding
    )
