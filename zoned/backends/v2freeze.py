"""Freezing a v2 container for the moment a ``cpuset.mems`` write widens it.

The write updates the container's tasks one at a time, and each update waits for that
task's mmap (or VMA) lock. A task that ``memory.high`` throttles inside a page fault (a
transparent huge page is charged 512 pages at once, past the batch that is throttled at
once) holds that lock for up to the throttle's 2 s, so with eight workers the write took
3.4 s on 6.1, and the tasks it had not reached yet went on allocating on the old node
until it was full: an OOM kill while the node was on its way. Frozen (``cgroup.freeze``),
no task allocates and none holds a lock in a fault, so the write is quick and nothing
fills the old node meanwhile; the container is thawed as soon as the write returns.

A task inside a long system call (a ``MAP_POPULATE`` or ``MADV_POPULATE_WRITE`` that
``memory.high`` throttles) cannot be frozen until the call returns, and it holds the lock
the write needs: then the freeze is given up after ``FREEZE_WAIT_S``, the container thawed
and the write goes ahead without it (the log names the tasks and where they wait).

A freeze is noted under the state directory first (``v2-freeze.<path>``): a daemon killed
between freeze and thaw would leave the container frozen for good, so the next start
thaws what a note says zoned froze (``heal``). A cgroup someone else froze is left alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import quote

from zoned.errors import BackendError, CgroupGone
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.proc import wchan

log = logging.getLogger("zoned.backends.cgroup2")

# How long to wait for every task to stop: a throttled fault finishes within the
# throttle's 2 s; a task stuck longer (a MAP_POPULATE throttled inside the call) is not
# waited for: the container is thawed and the write goes ahead.
FREEZE_WAIT_S = 2.5
_POLL_S = 0.01
_TRAP = "do_freezer_trap"  # where a frozen v2 task waits (kernel/cgroup/freezer.c callers)
_NAMED = 4  # tasks named in the log line when the freeze is incomplete


def not_stopped(fs: CgroupFs, proc_root: Path, path: str) -> list[str]:
    """ "TID in FUNCTION" for the threads of ``path`` that the freezer has not stopped yet
    (frozen ones wait in ``do_freezer_trap``); [] when the cgroup is gone."""
    try:
        tids = fs.pids(path, "cgroup.threads")
    except CgroupGone:
        return []
    out = []
    for tid in tids:
        where = wchan(proc_root, tid)
        if where is not None and where != _TRAP:
            out.append(f"{tid} in {where if where != '0' else 'user space'}")
    return out


class Freezer:
    """Freezes and thaws containers around widening writes, with undo notes."""

    def __init__(
        self, fs: CgroupFs, state_dir: Path | None, proc_root: Path, wait_s: float = FREEZE_WAIT_S
    ) -> None:
        self.fs = fs
        self.state_dir = state_dir
        self.proc_root = proc_root
        self.wait_s = wait_s

    def _note(self, path: str) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"v2-freeze.{quote(path, safe='')}"

    def freeze(self, path: str) -> bool:
        """Freeze ``path`` and wait (bounded) until its tasks stopped; True when they did
        (then ``thaw`` must follow), False when it cannot or need not, or when a task did
        not stop in time (then it is thawed again, and the log names the tasks)."""
        fs = self.fs
        if not fs.has_file(path, "cgroup.freeze") or not fs.read(path, "cgroup.procs").strip():
            return False
        if fs.read(path, "cgroup.freeze").strip() != "0":
            return False  # someone else froze it: theirs to thaw
        note = self._note(path)
        if note is not None:
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text("1\n")
        fs.write(path, "cgroup.freeze", "1")
        start = time.monotonic()
        end = start + self.wait_s
        while time.monotonic() < end:
            if "frozen 1" in fs.read(path, "cgroup.events"):
                log.info("%s: frozen in %.2fs", path, time.monotonic() - start)
                break
            time.sleep(_POLL_S)
        else:
            # A task still running is inside a long system call (a populate) that the
            # freezer cannot stop, holding the mmap lock the write waits for: the write
            # is not quick, and keeping the others frozen all that time would stop the
            # whole container. Thawed, they are held at the tripwire as before the lend.
            late = not_stopped(fs, self.proc_root, path)
            more = f" and {len(late) - _NAMED} more" if len(late) > _NAMED else ""
            log.info(
                "%s: not every task stopped within %gs (%s); thawed, writing without the freeze",
                path,
                self.wait_s,
                ", ".join(late[:_NAMED]) + more or "all stopped since",
            )
            self.thaw(path)
            return False
        return True

    def thaw(self, path: str) -> None:
        """Undo ``freeze`` (the note goes once the write is done)."""
        try:
            self.fs.write(path, "cgroup.freeze", "0")
        finally:
            note = self._note(path)
            if note is not None:
                note.unlink(missing_ok=True)

    def heal(self, path: str) -> bool:
        """At start: thaw ``path`` if a note says a killed zoned froze it; True if so."""
        note = self._note(path)
        if note is None or not note.exists():
            return False
        try:
            self.fs.write(path, "cgroup.freeze", "0")
            log.warning("%s: thawed (frozen by a zoned that died during a write)", path)
        except BackendError as exc:
            log.warning("%s: thawing after a crash: %s", path, exc)
        note.unlink(missing_ok=True)
        return True
