"""The daemon's shared-zone duties: the shared tmpfs at start and reload, and the re-warm.

The re-warm runs on the loop's worker pool once after admission, then
``policy.rewarm_interval_s`` after the previous one ended, sooner when the shared nodes'
page cache falls ``policy.rewarm_drop_pct`` below its peak (``RewarmSchedule``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zoned.backends.base import Backend
from zoned.backends.fdloop import Outcome
from zoned.config.decl import Declarations, TmpfsDecl
from zoned.errors import ZonedError
from zoned.model.host import Event, OpKind
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import MIB, format_size
from zoned.model.zonemap import (
    SHARED,
)
from zoned.shared.rewarm import RewarmSchedule, rewarm_summary
from zoned.shared.tmpfs import ensure as ensure_shared_tmpfs
from zoned.shared.zone import HELPER_TIMEOUT_S, SHARED_LEAF
from zoned.shared.zone import rewarm as shared_rewarm

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)

# Prefix of the warnings about the shared tmpfs: each mount run replaces the last ones.
TMPFS_WARNING = "shared tmpfs: "
# An early re-warm (page cache dropped) never starts sooner than this after the last one
# ended, so a shared zone too small for its files is not re-read back to back.
REWARM_EARLY_GAP_S = 10.0


def rewarm_on_worker(
    backend: Backend, nodes: frozenset[int], paths: Sequence[str], budget_bytes_per_s: float
) -> object:
    """The daemon's re-warm on a worker: zoned.shared was made on the loop's thread."""
    return shared_rewarm(backend, nodes, paths, budget_bytes_per_s, ensure=False)


# -- the daemon --------------------------------------------------------------------------


def mount_tmpfs(d: Daemon, decls: Declarations) -> None:
    """Mount ``host.shared_tmpfs`` on the shared zone's nodes (zoned.shared.tmpfs), before
    READY=1. A failure is logged as an error and kept among the warnings (``zoned
    status``): the zones do not depend on it, and a restart would not mend it. Not in
    a private mount namespace (containers would not see the tmpfs), nor on the
    simulator; a dry run only logs what it would do. Never unmounted on stop."""
    tmpfs = decls.host.shared_tmpfs
    e = d.engine
    # What an earlier run (start, an earlier reload) warned about is replaced.
    d.warnings = [w for w in d.warnings if not w.startswith(TMPFS_WARNING)]
    if not tmpfs or d._tmpfs_mount is None or e is None:
        return
    nodes = e.zonemap.nodes_with(SHARED)
    try:
        report = ensure_shared_tmpfs(
            tmpfs,
            nodes,
            proc_root=d.opts.roots.proc,
            dry_run=e.dry_run,
            mount=d._tmpfs_mount,
            refuse_private_namespace=True,
        )
    except ZonedError as exc:
        failures = [f"not mounted: {exc}"]
    else:
        failures = []
        for out in report.outcomes:
            line = out.line(report.dry_run)
            if out.ok:
                log.info("shared tmpfs: %s", line)
            else:
                failures.append(line)
    for line in failures:
        log.error("shared tmpfs: %s", line)
        d.warnings.append(f"{TMPFS_WARNING}{line}")


def reload_tmpfs(d: Daemon, old: tuple[TmpfsDecl, ...], new: Declarations) -> None:
    """After a reload: mount new mount points, remount changed ones. One no longer
    declared stays mounted (unmounting would destroy its files), said in the log."""
    if new.host.shared_tmpfs == old:
        return
    paths = {t.path for t in new.host.shared_tmpfs}
    for t in old:
        if t.path not in paths:
            log.info("shared tmpfs: %s no longer declared; left mounted", t.path)
    mount_tmpfs(d, new)


def plan_rewarm(d: Daemon) -> None:
    """Schedule the shared-zone re-warm at once when it is wanted and not scheduled
    (after admission, after a reload that declares shared paths); unschedule it when
    it is not wanted (so no periodic wake-up without shared paths)."""
    e, sched = d.engine, d.rewarm
    assert e is not None and d.backend is not None
    on = (
        d._rewarm_fn is not None
        and d._fdloop is not None
        and not e.dry_run
        and RewarmSchedule.wanted(e.decls, e.zonemap) is not None
    )
    if not on:
        sched.next_at = None
    elif sched.next_at is None and sched.running_op is None:
        sched.next_at = d.backend.now()


def observe_cache(d: Daemon) -> None:
    """Hand the shared nodes' page cache (from the step's snapshot) to the re-warm
    schedule: a drop of ``policy.rewarm_drop_pct`` brings the next re-warm forward."""
    e, backend = d.engine, d.backend
    assert e is not None and backend is not None
    snap = e.last_snapshot
    if snap is None or d.rewarm.next_at is None:
        return
    nodes = e.zonemap.nodes_with(SHARED)
    file_bytes = sum(snap.nodes[n].file for n in nodes if n in snap.nodes)
    pct = e.decls.policy.rewarm_drop_pct
    if d.rewarm.observe(backend.now(), file_bytes, pct / 100, REWARM_EARLY_GAP_S):
        log.info(
            "shared zone: page cache on node %s fell to %s (peak %s, more than %g%% down): "
            "re-warm now",
            format_nodelist(nodes),
            format_size(file_bytes),
            format_size(d.rewarm.peak_file_bytes),
            pct,
        )


def start_rewarm(d: Daemon) -> None:
    e, loop, fn, backend = d.engine, d._fdloop, d._rewarm_fn, d.backend
    assert e is not None and loop is not None and fn is not None and backend is not None
    want = RewarmSchedule.wanted(e.decls, e.zonemap)
    if want is None:
        d.rewarm.next_at = None
        return
    nodes, paths = want
    budget = e.decls.policy.rewarm_mib_s * MIB
    if d._rewarm_prepare is not None:
        try:  # on this thread: a backend's ensure registers fds with the loop
            d._rewarm_prepare(backend, nodes)
        except ZonedError as exc:
            log.warning("shared zone re-warm: cannot make %s: %s", SHARED_LEAF, exc)
            d.rewarm.finished(backend.now(), e.decls.policy.rewarm_interval_s)
            return

    def job() -> Outcome:
        d._rewarm_report = fn(backend, nodes, paths, budget)
        return Outcome()

    op = loop.submit(OpKind.REWARM, SHARED_LEAF, job, HELPER_TIMEOUT_S)
    d.rewarm.started(op)
    log.debug(
        "shared zone re-warm started (op %d): %d path(s) into node %s at %g MiB/s",
        op,
        len(paths),
        format_nodelist(nodes),
        e.decls.policy.rewarm_mib_s,
    )


def rewarm_done(d: Daemon, ev: Event) -> None:
    e, loop = d.engine, d._fdloop
    assert e is not None and loop is not None and d.backend is not None
    with contextlib.suppress(KeyError):
        loop.op_result(ev.op or 0)
    report, d._rewarm_report = d._rewarm_report, None
    # The peak a drop is measured from, read at the end (before the line that says so):
    # left to the next step, an eviction before that step (up to fallback_poll_s later)
    # would be that step's baseline, never seen as a drop.
    try:
        mem = d.backend.node_memory()
        cached = sum(mem[n].file for n in e.zonemap.nodes_with(SHARED) if n in mem)
    except (OSError, ZonedError):
        cached = 0
    if ev.ok:
        log.info("shared zone re-warmed: %s", rewarm_summary(report))
    else:
        log.warning("shared zone re-warm failed: %s", ev.detail)
    d.rewarm.finished(d.backend.now(), e.decls.policy.rewarm_interval_s, cached)
    plan_rewarm(d)
