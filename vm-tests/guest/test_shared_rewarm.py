"""The daemon re-warms the shared zone early when its page cache is evicted (6.1, v2).

``zoned run`` with node 7 as the shared zone, one 32 MiB shared path and
``rewarm_interval_s: 600`` (so the timer explains nothing that follows here):

1. the re-warm after start puts the whole file on node 7 (seconds from ready);
2. the file is evicted (``POSIX_FADV_DONTNEED`` on it alone, see ``_evict``) as soon as
   the daemon's log says that re-warm ended, before any later step: node 7's FilePages
   falls by the file (32 MiB of at most ~250), more than ``rewarm_drop_pct`` (5), so the
   daemon logs "re-warm now" once the 10 s gap after the last re-warm has passed (asserted:
   not sooner), and the file is back on node 7 within ``WAIT_S`` of the eviction;
3. control: the same daemon reloaded with ``rewarm_drop_pct: 0`` (early re-warm off), the
   same eviction at the same point after a re-warm, and the file stays evicted for
   ``WAIT_S`` (no "re-warm now", no re-warm). A second daemon started with 0 would add
   its start and first re-warm (6-8 s measured here, more on a busy host) for the same
   comparison; the reload also shows the setting applies without a restart.

The file lives on the project share (9p, ``cache=loose``: ordinary, evictable page cache,
as in test_shared_zone.py); the guest's only local file systems are tmpfs, whose pages
are shmem and are neither dropped by ``DONTNEED``/``drop_caches`` nor placed by reading.

Steps drive the schedule (a step is where the drop is seen): with no container there are
no events, so steps come only at ``--fallback-poll``; 1 s here instead of the default 5 s
bounds the detection after the gap at 1 s. Evicting right at the end checks that the peak
the drop is measured from is the level read when the re-warm ended: taken at the next step
instead (before commit 6a865dc), this eviction was that step's baseline and never a drop.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zoned.service.sharedzone import REWARM_EARLY_GAP_S
from zoned.shared.pages import where

from .cgtools import remove_tree
from .conftest import PROJECT, RUN_DIR, Finding
from .scenario_support import START_S, Run, wait_for

pytestmark = pytest.mark.boot(kernel=("6.1", "newest"), cgroup="v2", numa="8")

MIB = 1 << 20
FILE_MIB = 32
SHARED = 7
POLL_S = 1.0  # the daemon's --fallback-poll: how often a step can see the drop
WAIT_S = 25.0  # the eviction's re-warm must finish within this; the control waits as long
FIRST_S = 60.0  # daemon ready -> first re-warm done, under TCG on a busy host
NOW = "re-warm now"
DONE = "shared zone re-warmed:"


class RewarmRun(Run):
    """A scenario run whose daemon steps every ``POLL_S`` (``Run`` starts it at the default 5 s)."""

    def start_daemon(self) -> float:
        cfg = self.tmp / "zoned.yaml"
        cfg.write_text(yaml.safe_dump(self.config))
        t0 = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zoned", "run", "-v", "--config", str(cfg),
                 "--socket", str(self.socket), "--state-dir", str(self.tmp / "state"),
                 "--fallback-poll", str(POLL_S)],
                cwd=PROJECT, stdout=log, stderr=log,
            )  # fmt: skip
        wait_for(lambda: self.alive() and self.socket.exists(), "the control socket", START_S)
        return time.monotonic() - t0

    def count(self, text: str) -> int:
        return self.daemon_log().count(text)

    def ended(self, runs: int, deadline_s: float) -> float:
        """Wait for the ``runs``-th "re-warmed" line, polling fast (the daemon's next step
        is up to POLL_S away: the eviction must come before it); returns when seen."""
        end = time.monotonic() + deadline_s
        while self.count(DONE) < runs:
            self.alive()
            if time.monotonic() > end:
                pytest.fail(f"no re-warm #{runs} ended within {deadline_s:g}s")
            time.sleep(0.02)
        return time.monotonic()


@contextlib.contextmanager
def rewarm_run(tmp: Path, config: dict[str, Any]) -> Iterator[RewarmRun]:
    """As ``scenario_support.scenario``: cleaned up (daemon, cgroups) whatever happens."""
    run = RewarmRun("shared-rewarm", tmp, {"config": config})
    for parent, root in zip(run.parents, run.roots, strict=True):
        remove_tree(parent, root)
    try:
        yield run
    finally:
        run.close()
    assert not any(p.exists() for p in run.parents)


def _cold_file(path: Path, mib: int) -> Path:
    with path.open("wb") as f:
        f.write(os.urandom(mib * MIB))
        f.flush()
        os.fsync(f.fileno())
    _evict(path)
    return path


def _evict(path: Path) -> None:
    """Drop ``path`` alone from the page cache. Chosen over ``drop_caches``: it touches no
    other file's cache (the interpreter's and the venv's, read over 9p by everything
    after this test), and node 7's drop is then exactly this file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    left = where(path, locate=False).resident
    assert left == 0, f"{path}: {left} bytes still cached after POSIX_FADV_DONTNEED"


def _resident(path: Path) -> int:
    return where(path, locate=False).resident  # mincore only: reads nothing in


def _on_shared(path: Path) -> dict[int, int]:
    """The file's resident bytes by node; asserts all of it is on node 7."""
    got = where(path)
    size = FILE_MIB * MIB
    assert got.resident == size and got.nodes == {SHARED: size}, (
        f"{path}: {got.resident / MIB:.1f} MiB resident, by node (MiB) "
        f"{ {n: round(b / MIB, 1) for n, b in got.nodes.items()} }"
    )
    return got.nodes


def _config(path: Path) -> dict[str, Any]:
    return {
        "host": {
            "cgroup_root": "/sys/fs/cgroup",
            "hierarchy": "v2",
            "parent": f"zoned-vmtest-rewarm-{os.getpid()}",
            "reserved_nodes": [0],
            "shared": [SHARED],
            "shared_paths": [str(path)],
        },
        "policy": {"rewarm_interval_s": 600},  # rewarm_drop_pct: the default (5)
        "containers": {},
    }


def _node_file_mib(node: int) -> float:
    for line in Path(f"/sys/devices/system/node/node{node}/meminfo").read_text().splitlines():
        fields = line.split()
        if fields[2] == "FilePages:":
            return int(fields[3]) / 1024
    raise AssertionError(f"node{node}/meminfo has no FilePages")


def test_daemon_rewarms_evicted_shared_file_early(tmp_path: Path, finding: Finding) -> None:
    path = _cold_file(RUN_DIR / f"shared-rewarm-{os.getpid()}.bin", FILE_MIB)
    size = FILE_MIB * MIB
    numbers: dict[str, Any] = {}
    try:
        with rewarm_run(tmp_path, _config(path)) as run:
            numbers["daemon_ready_s"] = round(run.start_daemon(), 1)
            t_ready = time.monotonic()

            # 1. the re-warm after start
            wait_for(lambda: _resident(path) == size, "the first re-warm", FIRST_S)
            numbers["ready_to_resident_s"] = round(time.monotonic() - t_ready, 1)
            _on_shared(path)
            numbers["node7_file_mib_warm"] = round(_node_file_mib(SHARED), 1)
            t_end = run.ended(1, FIRST_S)

            # 2. evicted at the end: brought forward (after the 10 s gap), back on node 7
            _evict(path)
            t_evict = time.monotonic()
            numbers["node7_file_mib_evicted"] = round(_node_file_mib(SHARED), 1)
            wait_for(lambda: run.count(NOW) >= 1, f"'{NOW}' in the daemon's log", WAIT_S)
            t_now = time.monotonic()
            wait_for(lambda: _resident(path) == size, "the early re-warm", WAIT_S)
            t_back = time.monotonic()
            _on_shared(path)
            numbers |= {
                "evict_after_end_s": round(t_evict - t_end, 1),
                "evict_to_rewarm_now_s": round(t_now - t_evict, 1),
                "rewarm_now_after_end_s": round(t_now - t_end, 1),
                "evict_to_resident_s": round(t_back - t_evict, 1),
                "rewarm_now_to_resident_s": round(t_back - t_now, 1),
            }
            assert t_back - t_evict <= WAIT_S, numbers  # wait_for failed otherwise
            # the gap: not brought forward sooner than 10 s after the last re-warm ended
            # (t_end is when the test saw that end: up to a poll late, hence the slack)
            assert t_now - t_end >= REWARM_EARLY_GAP_S - 1.5, numbers
            line = next(x for x in run.daemon_log().splitlines() if NOW in x)
            numbers["log"] = line[line.find("shared zone") :]
            t_end = run.ended(2, WAIT_S)

            # 3. control: early re-warm off by a reload, the same eviction, nothing comes
            run.config["policy"]["rewarm_drop_pct"] = 0
            cfg = tmp_path / "zoned.yaml"
            cfg.write_text(yaml.safe_dump(run.config))
            got = run.call({"cmd": "reload"})["result"]
            assert any("policy.rewarm_drop_pct" in c for c in got["changes"]), got
            _evict(path)
            t_evict = time.monotonic()
            numbers["control_evict_after_end_s"] = round(t_evict - t_end, 1)
            while time.monotonic() - t_evict < WAIT_S:
                assert run.count(NOW) == 1 and run.count(DONE) == 2, run.daemon_log()[-2000:]
                time.sleep(0.5)
            left = _resident(path)
            numbers["control_resident_after_wait_mib"] = round(left / MIB, 1)
            assert left == 0, numbers
            assert run.count(NOW) == 1 and run.count(DONE) == 2
            run.alive()
    finally:
        finding("shared re-warm: daemon on the real kernel (s, MiB)", numbers)
        path.unlink(missing_ok=True)
