"""When the shared zone is re-warmed: once after admission, then
``policy.rewarm_interval_s`` after the previous one ended, at ``policy.rewarm_mib_s``; sooner
when the shared nodes' page cache drops. Only while shared paths and a shared zone are
declared. The daemon runs it on its loop's worker pool (``zoned.service.sharedzone``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zoned.backends.base import Backend
from zoned.config.decl import Declarations
from zoned.model.sizes import format_size
from zoned.model.zonemap import SHARED, ZoneMap
from zoned.shared.zone import WarmReport, declared_paths

#: (backend, shared nodes, paths, budget bytes/s) → a report (logged); blocking.
RewarmFn = Callable[[Backend, frozenset[int], Sequence[str], float], object]


@dataclass
class RewarmSchedule:
    """When the next re-warm is due, on the backend's clock. ``None``: not due (off, or
    one is running)."""

    next_at: float | None = None
    running_op: int | None = None
    runs: int = 0
    brought_forward: int = 0  # re-warms made due early by a page-cache drop
    ended_at: float | None = None
    peak_file_bytes: int = 0  # the shared nodes' FilePages, most seen since the last end

    @staticmethod
    def wanted(decls: Declarations, zmap: ZoneMap) -> tuple[frozenset[int], list[str]] | None:
        """(shared nodes, paths) when there is something to re-warm, else None."""
        nodes = frozenset(zmap.nodes_with(SHARED))
        paths = declared_paths(decls)
        return (nodes, paths) if nodes and paths else None

    def started(self, op: int) -> None:
        self.running_op, self.next_at = op, None
        self.runs += 1

    def finished(self, now: float, interval_s: float, file_bytes: int = 0) -> None:
        """A re-warm ended at ``now``. ``file_bytes``: the shared nodes' ``FilePages`` read
        then, the first peak a drop is measured from. Without it (0) the first step's
        reading is, so an eviction before that step is never seen as a drop."""
        self.running_op, self.next_at = None, now + interval_s
        self.ended_at, self.peak_file_bytes = now, file_bytes

    def observe(self, now: float, file_bytes: int, drop_frac: float, min_gap_s: float) -> bool:
        """Note the shared nodes' page cache (``FilePages`` summed) seen at ``now``.

        When it has fallen more than ``drop_frac`` below the most seen since the last
        re-warm ended, and that end is at least ``min_gap_s`` ago, the next re-warm is
        brought forward to ``now``; returns True then. Does nothing while one runs, before
        the first has ended, or with ``drop_frac`` 0 (off). The gap keeps a shared zone too
        small for its files from being re-read back to back.
        """
        if self.running_op is not None or self.ended_at is None or self.next_at is None:
            return False
        self.peak_file_bytes = max(self.peak_file_bytes, file_bytes)
        dropped = file_bytes < self.peak_file_bytes * (1.0 - drop_frac)
        if drop_frac <= 0 or not dropped or now - self.ended_at < min_gap_s:
            return False
        if self.next_at <= now:
            return False  # already due
        self.next_at = now
        self.brought_forward += 1
        return True


def rewarm_summary(report: object) -> str:
    """One line about a finished re-warm (a ``zoned.shared.zone.WarmReport``, or anything)."""
    if not isinstance(report, WarmReport):
        return str(report)
    read = sum(f.read for f in report.files)
    bad = [f.path for f in report.files if f.error]
    return f"{len(report.files)} file(s), {format_size(read)} re-read in {report.seconds:g} s" + (
        f"; {len(bad)} failed ({', '.join(bad[:3])})" if bad else ""
    )
