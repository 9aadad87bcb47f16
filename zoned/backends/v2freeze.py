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
the write needs: the write goes ahead with the others frozen, at once when every task not
stopped sleeps in the throttle, else after ``FREEZE_WAIT_S``. The engine raises the
tripwire as soon as the tasks still running have the new node (frozen ones cannot
allocate: ``Cgroup2Backend.mems_reached``), and then the rest stay frozen until the write
returns (``keep``); without that raise they are thawed after ``HOLD_S`` more. The log
names the tasks that did not stop and where they wait.

A freeze is noted under the state directory first (``v2-freeze.<path>``): a daemon killed
between freeze and thaw would leave the container frozen for good, so the next start
thaws what a note says zoned froze (``heal``). A cgroup someone else froze is left alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from zoned.errors import BackendError, CgroupGone
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.proc import wchan

log = logging.getLogger("zoned.backends.cgroup2")

# How long to wait for every task to stop: a throttled fault finishes within the
# throttle's 2 s; a task stuck longer (a MAP_POPULATE throttled inside the call) is not
# waited for: the write goes ahead with the others still frozen.
FREEZE_WAIT_S = 2.5
# How long the others stay frozen then: such a write waited 59-91 s in the 6.1 and 7.3
# guests (eight workers inside MADV_POPULATE_WRITE), the whole container stopped with it.
HOLD_S = 2.5
_POLL_S = 0.01
# Where a frozen v2 task waits: do_freezer_trap (7.3), inlined into get_signal (6.1).
_TRAPS = frozenset({"do_freezer_trap", "get_signal"})
_NAMED = 4  # tasks named in the log line when the freeze is incomplete
# Where memory.high's throttle sleeps (6.1; 7.3 adds the underscores).
_THROTTLE = frozenset({"mem_cgroup_handle_over_high", "__mem_cgroup_handle_over_high"})
_LOOK_S = 0.1  # how often the wait looks at where the tasks not stopped yet are


def stopped(proc_root: Path, tid: int) -> bool:
    """Whether thread ``tid`` waits in the freezer's trap."""
    return wchan(proc_root, tid) in _TRAPS


def not_stopped(fs: CgroupFs, proc_root: Path, path: str) -> list[tuple[int, str]]:
    """(TID, where it waits: a kernel function, "0" when it runs) for the threads of
    ``path`` that the freezer has not stopped yet; [] when the cgroup is gone."""
    try:
        tids = fs.pids(path, "cgroup.threads")
    except CgroupGone:
        return []
    out = []
    for tid in tids:
        where = wchan(proc_root, tid)
        if where is not None and where not in _TRAPS:
            out.append((tid, where))
    return out


def _named(late: list[tuple[int, str]]) -> str:
    words = [f"{tid} in {where if where != '0' else 'user space'}" for tid, where in late]
    more = f" and {len(words) - _NAMED} more" if len(words) > _NAMED else ""
    return ", ".join(words[:_NAMED]) + more or "all stopped since"


class Freezer:
    """Freezes and thaws containers around widening writes, with undo notes."""

    def __init__(
        self,
        fs: CgroupFs,
        state_dir: Path | None,
        proc_root: Path,
        wait_s: float = FREEZE_WAIT_S,
        hold_s: float = HOLD_S,
    ) -> None:
        self.fs = fs
        self.state_dir = state_dir
        self.proc_root = proc_root
        self.wait_s = wait_s
        self.hold_s = hold_s
        self._lock = threading.Lock()
        self._frozen: set[str] = set()  # paths zoned holds frozen now
        self._holds: dict[str, threading.Timer] = {}  # incomplete freezes: their thaw timers

    def _note(self, path: str) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"v2-freeze.{quote(path, safe='')}"

    @contextmanager
    def around_write(self, path: str) -> Iterator[bool]:
        """Hold ``path`` frozen while the body (a widening write) runs, and thaw it after;
        yields True when zoned froze it. A freeze that is not complete within ``wait_s``
        is kept (the tasks it stopped do not allocate meanwhile) for at most ``hold_s``
        more: a write blocked behind a task the freezer cannot stop then goes on with the
        rest thawed, so the container is not stopped for the whole stall."""
        if not self._freeze(path):
            yield False
            return
        with self._lock:
            self._frozen.add(path)
        try:  # the wait reads the cgroup, which may vanish: undo the freeze all the same
            if not self._wait_frozen(path):
                timer = threading.Timer(self.hold_s, self._thaw_late, (path,))
                timer.daemon = True
                with self._lock:
                    self._holds[path] = timer
                timer.start()
            yield True
        finally:
            with self._lock:
                timer_left = self._holds.pop(path, None)
                self._frozen.discard(path)
            if timer_left is not None:
                timer_left.cancel()
            self.thaw(path)

    def holds_frozen(self, path: str) -> bool:
        """Whether zoned holds ``path`` frozen now (its stopped tasks cannot allocate)."""
        with self._lock:
            return path in self._frozen

    def keep(self, path: str) -> bool:
        """Keep ``path``'s stopped tasks frozen until the write returns (no thaw on the
        timer): the tripwire was raised for the tasks still running, and a thawed task the
        write has not reached would fill the old node. True when a timer was stopped."""
        with self._lock:
            timer = self._holds.pop(path, None)
        if timer is None:
            return False
        timer.cancel()
        log.info(
            "%s: kept frozen until the write returns (the running tasks may use the new node)", path
        )
        return True

    def _freeze(self, path: str) -> bool:
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
        return True

    def _wait_frozen(self, path: str) -> bool:
        """True once every task stopped; False after ``wait_s``, or as soon as every task
        still running sleeps in the ``memory.high`` throttle (logged with who did not)."""
        start = time.monotonic()
        look = start + _LOOK_S
        while (now := time.monotonic()) < start + self.wait_s:
            if "frozen 1" in self.fs.read(path, "cgroup.events"):
                log.info("%s: frozen in %.2fs", path, now - start)
                return True
            if now >= look:
                # Asleep there, a task allocates nothing; if it sleeps inside one system
                # call (a populate) it stops only when the call ends, and waiting for it
                # lets that call creep on past the tripwire toward the node's end (7.3: a
                # single MAP_POPULATE OOM-killed during the 2.5 s wait).
                look = now + _LOOK_S
                late = not_stopped(self.fs, self.proc_root, path)
                if late and all(where in _THROTTLE for _, where in late):
                    log.info(
                        "%s: not stopped after %.2fs, asleep in the memory.high throttle: "
                        "%s; writing, the rest thawed after %gs more",
                        path,
                        now - start,
                        _named(late),
                        self.hold_s,
                    )
                    return False
            time.sleep(_POLL_S)
        log.info(
            "%s: not every task stopped within %gs (%s); writing, the rest thawed after %gs more",
            path,
            self.wait_s,
            _named(not_stopped(self.fs, self.proc_root, path)),
            self.hold_s,
        )
        return False

    def _thaw_late(self, path: str) -> None:
        with self._lock:
            if self._holds.pop(path, None) is None:
                return  # kept meanwhile
            self._frozen.discard(path)
        log.info("%s: the write is still in the kernel after %gs more; thawed", path, self.hold_s)
        try:
            self.fs.write(path, "cgroup.freeze", "0")
        except BackendError as exc:  # gone meanwhile: the write's own end reports it
            log.info("%s: thawing: %s", path, exc)

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
