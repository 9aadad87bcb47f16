"""Systemd-native ownership: zoned's containers inside a scope systemd delegated to it.

On cgroup v2 with systemd as PID 1 (``host.delegation: auto`` or ``systemd``), systemd
owns the cgroup tree: nothing may be created below the root outside a delegated unit
(systemd's cgroup delegation rules). So zoned's parent is a transient scope unit,
``<parent>-containers.scope`` in ``zoned.slice``, started through D-Bus with
``Delegate=yes``; every cgroup zoned creates or writes is inside it::

    zoned.slice/zoned-containers.scope/              +cpuset +memory (zoned writes it)
    zoned.slice/zoned-containers.scope/zoned.anchor/ the anchor: a `sleep infinity`
    zoned.slice/zoned-containers.scope/<container>/  one leaf per container

systemd collects a scope with no process left, so the scope holds an anchor process; it
lives in a leaf of its own so that the scope's cgroup has no process and may enable
controllers for its children (the no-internal-process rule). The scope does not belong
to zoned.service: stopping or restarting zoned leaves it and the containers alone, and a
restart finds the scope active and adopts it (a dead anchor is replaced through
``AttachProcessesToUnit``). A scope stopped by hand takes its containers with it: an
ordinary vanished cgroup for the engine.

``zoned.policy.delegation`` says which path runs (pure); ``ensure_scope`` is the effect.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from zoned.config.decl import Declarations
from zoned.errors import BackendError, CgroupGone
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.cgrouptree import CgroupTree
from zoned.policy.delegation import ANCHOR_LEAF, SLICE, choose, localize, scope_cgroup, scope_unit
from zoned.service.sdbus import SystemdBus

log = logging.getLogger(__name__)

ANCHOR_WAIT_S = 10.0


def pid1_is_systemd(proc_root: Path) -> bool:
    """Whether PID 1 is systemd, from ``<proc>/1/comm`` (False when unreadable)."""
    try:
        return (proc_root / "1" / "comm").read_text().strip() == "systemd"
    except OSError:
        return False


def localize_here(
    decls: Declarations, proc_root: Path, cgroup_root: Path | None = None
) -> Declarations:
    """``decls`` with the parent the daemon uses on this host (commands that find
    containers without the daemon: ``exec``, ``adopt``, ``usage``, ...)."""
    pid1 = pid1_is_systemd(proc_root)
    if decls.host.delegation == "cgroupfs" or not (pid1 or decls.host.delegation == "systemd"):
        return decls  # no need to find the hierarchy: the direct path either way
    version = CgroupTree.find(proc_root, cgroup_root, decls.host.hierarchy).version
    return localize(decls, choose(decls.host.delegation, f"v{version}", pid1))


class Anchor(Protocol):
    """The anchor process as spawned (``subprocess.Popen`` is one)."""

    pid: int

    def kill(self) -> None: ...


def spawn_anchor() -> Anchor:
    """``sleep infinity`` in a session of its own, all standard fds on /dev/null."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    return subprocess.Popen(
        [sleep, "infinity"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def poll_until(cond: Callable[[], bool], deadline_s: float) -> bool:
    """Whether ``cond`` came true within ``deadline_s`` (checked every 20 ms)."""
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


@dataclass(frozen=True)
class Scope:
    """The delegated scope zoned's containers live in, and what ``ensure_scope`` did."""

    unit: str
    cgroup: str  # relative to the cgroup root: zoned's parent
    outcome: str  # "created", "adopted", "re-anchored", "absent" (a dry run)


def _cgroup_of(proc_root: Path, pid: int) -> str | None:
    try:
        text = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    return next((ln[3:].strip().strip("/") for ln in text.splitlines() if ln[:3] == "0::"), None)


def ensure_scope(
    bus: SystemdBus,
    fs: CgroupFs,
    proc_root: Path,
    parent: str,
    *,
    dry_run: bool = False,
    spawn: Callable[[], Anchor] | None = None,
    wait: Callable[[Callable[[], bool], float], bool] = poll_until,
) -> Scope:
    """Start the scope, or adopt the running one; raises BackendError with one line.

    Adopted: the scope is active; an anchor leaf left without a process gets a new
    anchor (and any process in the scope's own cgroup moves into the leaf). A dry run
    starts nothing and writes nothing.
    """
    spawn = spawn or spawn_anchor
    unit, cg = scope_unit(parent), scope_cgroup(parent)
    state = bus.active_state(unit)
    if state in ("active", "reloading") and fs.exists(cg):
        if dry_run:
            return Scope(unit, cg, "adopted")
        return Scope(unit, cg, _keep_anchored(bus, fs, unit, cg, spawn))
    if dry_run:
        log.info("dry run: would start %s (Delegate=yes) in %s", unit, SLICE)
        return Scope(unit, cg, "absent")
    if state == "failed":
        bus.reset_failed(unit)
    anchor = spawn()
    try:
        bus.start_scope(unit, SLICE, [anchor.pid], f"zoned's containers ({parent})")
        _check_arrived(
            wait(lambda: _cgroup_of(proc_root, anchor.pid) == cg, ANCHOR_WAIT_S),
            unit,
            anchor.pid,
            fs.path(cg),
        )
        fs.mkdir(f"{cg}/{ANCHOR_LEAF}")
        fs.move_pid(f"{cg}/{ANCHOR_LEAF}", anchor.pid)
    except BackendError:
        anchor.kill()
        raise
    log.info("started %s (Delegate=yes) in %s; anchor pid %d", unit, SLICE, anchor.pid)
    return Scope(unit, cg, "created")


def _check_arrived(arrived: bool, unit: str, pid: int, where: Path) -> None:
    if not arrived:
        raise BackendError(
            f"systemd: {unit} started, but its anchor (pid {pid}) was not in {where}"
            f" within {ANCHOR_WAIT_S:g} s"
        )


def _keep_anchored(
    bus: SystemdBus, fs: CgroupFs, unit: str, cg: str, spawn: Callable[[], Anchor]
) -> str:
    """The adopted scope's anchor leaf holds a process afterwards: "adopted" when it
    did, "re-anchored" when one was added."""
    leaf = f"{cg}/{ANCHOR_LEAF}"
    fs.mkdir(leaf)
    strays = fs.pids(cg)  # a start cut short before the anchor moved into its leaf
    for pid in strays:
        try:
            fs.move_pid(leaf, pid)
        except CgroupGone:
            log.info("pid %d left %s before moving into %s, ignoring", pid, cg, ANCHOR_LEAF)
    if fs.pids(leaf):
        log.info("adopted %s (%s)", unit, fs.path(cg))
        return "adopted"
    anchor = spawn()
    try:
        bus.attach(unit, f"/{ANCHOR_LEAF}", [anchor.pid])
    except BackendError:
        anchor.kill()
        raise
    log.warning(
        "%s had lost its anchor (its containers kept it alive); a new one is pid %d",
        unit,
        anchor.pid,
    )
    return "re-anchored"
