"""Freezing a v2 container for the moment a ``cpuset.mems`` write widens it.

The write updates the container's tasks one at a time, and each update waits for that
task's mmap (or VMA) lock. A task that ``memory.high`` throttles inside a page fault (a
transparent huge page is charged 512 pages at once, past the batch that is throttled at
once) holds that lock for up to the throttle's 2 s, so with eight workers the write took
3.4 s on 6.1, and the tasks it had not reached yet went on allocating on the old node
until it was full: an OOM kill while the node was on its way. Frozen (``cgroup.freeze``),
no task allocates and none holds a lock in a fault, so the write is quick and nothing
fills the old node meanwhile; the container is thawed as soon as the write returns.

A freeze is noted under the state directory first (``v2-freeze.<path>``): a daemon killed
between freeze and thaw would leave the container frozen for good, so the next start
thaws what a note says zoned froze (``heal``). A cgroup someone else froze is left alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import quote

from zoned.errors import BackendError
from zoned.kernel.cgroupfs import CgroupFs

log = logging.getLogger("zoned.backends.cgroup2")

# How long to wait for every task to stop: a throttled fault finishes within the
# throttle's 2 s; a task stuck longer (a MAP_POPULATE throttled inside the call) is not
# waited for: the write goes ahead, frozen or not.
FREEZE_WAIT_S = 2.5
_POLL_S = 0.01


class Freezer:
    """Freezes and thaws containers around widening writes, with undo notes."""

    def __init__(self, fs: CgroupFs, state_dir: Path | None) -> None:
        self.fs = fs
        self.state_dir = state_dir

    def _note(self, path: str) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"v2-freeze.{quote(path, safe='')}"

    def freeze(self, path: str) -> bool:
        """Freeze ``path`` and wait (bounded) until its tasks stopped; True when zoned
        froze it (then ``thaw`` must follow), False when it cannot or need not."""
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
        end = time.monotonic() + FREEZE_WAIT_S
        while time.monotonic() < end:
            if "frozen 1" in fs.read(path, "cgroup.events"):
                break
            time.sleep(_POLL_S)
        else:
            log.info("%s: not every task stopped within %gs; writing anyway", path, FREEZE_WAIT_S)
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
