"""Containers that docker starts get zones through zoned's watcher (issue 15).

Debian's ``docker.io`` 20.10 (dockerd, its own containerd, runc), rootful, cgroupfs driver
(``/sys/fs/cgroup/docker/<id>``; no systemd in this guest), ``vfs`` storage, data and
exec roots on the guest's tmpfs, no networking (``--bridge=none``, no iptables), a tmpfs
over ``/etc/docker`` (the guest's root is the host's over 9p, read-only, and dockerd
writes its trust key there). Docker 20.10 runs no OCI hooks, so the watcher is the one
way in: the container first waits until zoned has written its ``cpuset.mems``, since
the watcher asks ``docker inspect`` after the cgroup appears. The image is ``docker
import``ed from a busybox-static rootfs, with the host's /usr bound in read-only (for
stress-ng). The declaration::

    web: {min: {nodes: 1}, max: {nodes: 3}, engine: {docker: {name: "web-*"}}}

(a) the container grows past one node with stress-ng and is not OOM-killed while zoned
lends; its nodes return to the pool when it stops. (b) the control: the same workload in
a container docker pins to one node itself (``--cpuset-mems``) is OOM-killed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Finding
from .engine_support import (
    CONTROL,
    SCRIPT,
    WAIT_FOR_ZONE,
    Daemon,
    busybox_rootfs_tar,
    control_is_killed,
    grow_in_container,
    need,
    stop,
    zoned_daemon,
)
from .scenario_support import Kmsg, wait_for

pytestmark = pytest.mark.boot(kernel="6.1", numa="8", cgroup="v2")

IMAGE = "zoned-test:latest"
ETC_DOCKER = Path("/etc/docker")
# Debian's binaries first: another docker client in /usr/local/bin may not speak 20.10.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Docker:
    store: Path
    env: dict[str, str]
    ready_s: float = 0.0
    import_s: float = 0.0

    def run(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], cwd=self.store, env=self.env, capture_output=True, text=True,
            timeout=timeout_s, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    need(("dockerd", "containerd", "runc", "docker"), "docker.io", SYSTEM_PATH)
    store = tmp_path_factory.mktemp("dockstore")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(ETC_DOCKER)], check=True)
    env = {
        **os.environ,
        "PATH": f"{SYSTEM_PATH}:{os.environ.get('PATH', '')}",
        "DOCKER_HOST": f"unix://{store}/docker.sock",
        "DOCKER_CONFIG": str(store / "client"),
    }
    log = (store / "dockerd.log").open("ab")
    t0 = time.monotonic()
    dockerd = subprocess.Popen(
        ["dockerd", "--data-root", f"{store}/data", "--exec-root", f"{store}/exec",
         "--pidfile", f"{store}/docker.pid", "-H", env["DOCKER_HOST"],
         "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false",
         "--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs"],
        cwd=store, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    d = Docker(store, env)
    try:

        def up() -> bool:
            if dockerd.poll() is not None:
                pytest.fail(f"dockerd exited with {dockerd.returncode}: see dockerd.log")
            return d.run("version", timeout_s=30).returncode == 0

        wait_for(up, "dockerd to answer", 120)
        d.ready_s = round(time.monotonic() - t0, 1)
        tar = busybox_rootfs_tar(store)
        t1 = time.monotonic()
        done = d.run("import", str(tar), IMAGE)
        assert done.returncode == 0, done.stderr
        d.import_s = round(time.monotonic() - t1, 1)
        yield d
    finally:
        d.run("rm", "-f", *d.run("ps", "-aq").stdout.split(), timeout_s=60)
        stop(dockerd)
        log.close()
        subprocess.run(["umount", str(ETC_DOCKER)], check=False)


@pytest.fixture(scope="module")
def daemon(docker: Docker) -> Iterator[Daemon]:
    with zoned_daemon(
        docker.store, docker.env, {"docker": {"name": "web-*"}}, "zoned-vmtest-docker"
    ) as d:
        yield d


def test_watcher_gives_a_zone_to_a_docker_container(
    docker: Docker, daemon: Daemon, finding: Finding
) -> None:
    finding("docker: dockerd ready s, import s", [docker.ready_s, docker.import_s])
    name = "web-dock"
    argv = [
        "docker", "run", "--rm", "--network", "none", "--name", name, "-v", "/usr:/usr:ro",
        IMAGE, "sh", "-c", SCRIPT.format(wait=WAIT_FOR_ZONE),
    ]  # fmt: skip
    grow_in_container(
        daemon, argv, instance=f"web@{name}", label="docker watcher", cwd=docker.store,
        env=docker.env, finding=finding,
    )  # fmt: skip


def test_without_a_lend_the_same_docker_container_is_oom_killed_on_one_node(
    docker: Docker, daemon: Daemon, finding: Finding
) -> None:
    """The control: pinned to one node by docker itself (a name no declaration matches)."""
    node = daemon.free_node()
    kmsg = Kmsg()
    done = docker.run(
        "run", "--rm", "--network", "none", "--name", "bare-d", "-v", "/usr:/usr:ro",
        "--cpuset-mems", str(node), IMAGE, "sh", "-c", CONTROL,
    )  # fmt: skip
    control_is_killed(
        daemon, done, node=node, name="bare-d", label="docker", kmsg=kmsg, finding=finding
    )
