"""The rule mover: processes into the containers whose ``match:`` rules claim them.

It reads processes with ``zoned.kernel.proc`` and moves them through
``zoned.kernel.cgrouptree.CgroupTree``'s hierarchies (through the backend's ``attach``).

- ``RuleMover`` classifies processes as they exec (``zoned.kernel.procwatch``) and attaches the
  ones a container's ``match:`` rules claim, their forked children too.

Wiring the mover into the daemon's loop (the daemon owns the loop; this owns the moves)::

    mover = RuleMover(backend, RuleSet.from_declarations(decls), proc_root)
    for line in mover.start():           # subscribe, then classify what already runs
        log.info("%s", line)
    loop.add_fd(mover.fileno(), IN, lambda revents: [log.info("%s", l) for l in
                                                     mover.on_readable()])
    ...
    mover.set_rules(RuleSet.from_declarations(new_decls))   # on reload
    mover.close()                                           # on exit

``on_readable`` does bounded work per call (``ProcWatch.limit`` datagrams) and never
blocks; the backend's ``attach`` is two small cgroup writes per moved process.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from zoned.backends.base import Backend
from zoned.errors import BackendError, CgroupGone
from zoned.kernel.proc import all_pids, children, proc_cgroup, read_proc
from zoned.kernel.procwatch import ProcEvent, ProcEventKind, ProcWatch
from zoned.kernel.roots import PROC_ROOT
from zoned.model.process import ProcInfo, cgroup_within
from zoned.policy.rules import RuleSet, Verdict

log = logging.getLogger(__name__)

AttachFn = Callable[[str, int], None]

# ---------------------------------------------------------------------------------------
# The mover

Outcome = Literal[
    "moved", "followed", "already", "no_match", "gone_before_read", "gone_before_move", "failed"
]


@dataclass(frozen=True)
class Move:
    """What became of one process the mover looked at (for observers and benchmarks)."""

    pid: int
    outcome: Outcome
    container: str | None = None
    event_ns: int = 0  # the kernel's timestamp of the exec/fork (0: found by a scan)
    done_ns: int = 0  # CLOCK_MONOTONIC when the outcome was known


@dataclass
class MoverStats:
    execs: int = 0
    forks_followed: int = 0
    moved: int = 0
    gone_before_read: int = 0
    gone_before_move: int = 0
    failed: int = 0
    overruns: int = 0
    rescans: int = 0


@dataclass
class _Tracked:
    """Pids recently moved (or followed) by rules, so their forks follow them. Bounded."""

    cap: int
    pids: OrderedDict[int, str] = field(default_factory=OrderedDict)

    def add(self, pid: int, container: str) -> None:
        self.pids[pid] = container
        self.pids.move_to_end(pid)
        while len(self.pids) > self.cap:
            self.pids.popitem(last=False)


class RuleMover:
    """Moves processes into containers by their ``match:`` rules, as they exec.

    ``target`` is a Backend (its ``attach``) or an ``attach(container, pid)`` function.
    Races handled: a process that exits before it is read or moved (debug log, counted);
    a matched process that forked before it was moved (its children, found in
    ``/proc/PID/task/*/children``, are moved after it, recursively); forks of a matched
    process seen later (FORK events: the child follows its parent); lost events (socket
    overrun: a full ``/proc`` rescan, logged). Never moves pid 1, itself, kernel threads,
    or processes already in a declared container.
    """

    def __init__(
        self,
        target: Backend | AttachFn,
        rules: RuleSet,
        proc_root: Path = PROC_ROOT,
        *,
        watch: ProcWatch | None = None,
        self_pid: int | None = None,
        on_move: Callable[[Move], None] | None = None,
        max_tracked: int = 65536,
    ) -> None:
        self._attach: AttachFn = target.attach if isinstance(target, Backend) else target
        self.rules = rules
        self.proc_root = proc_root
        self.watch = watch
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.on_move = on_move
        self.stats = MoverStats()
        self._tracked = _Tracked(max_tracked)

    # -- wiring ----------------------------------------------------------------------

    def start(self) -> list[str]:
        """Subscribe to process events (if no watch was given), then classify the
        processes already running: in this order, so none starts unseen in between."""
        if self.watch is None:
            self.watch = ProcWatch()
        lines = [f"watching process events (receive buffer {self.watch.rcvbuf} bytes)"]
        return lines + self.classify_running()

    def fileno(self) -> int:
        if self.watch is None:
            raise RuntimeError("RuleMover.start() first")
        return self.watch.fileno()

    def on_readable(self) -> list[str]:
        """Handle the events waiting now (bounded work, never blocks); log lines back."""
        if self.watch is None:
            return []
        return self.handle(self.watch.drain())

    def set_rules(self, rules: RuleSet) -> None:
        """New rules (on reload); processes already moved stay where they are."""
        self.rules = rules

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    # -- work ------------------------------------------------------------------------

    def handle(self, events: Iterable[ProcEvent]) -> list[str]:
        """Act on events in order; an OVERRUN ends with one full rescan."""
        lines: list[str] = []
        overrun = False
        tracked = self._tracked.pids
        for ev in events:
            if ev.kind is ProcEventKind.EXEC:
                self.stats.execs += 1
                lines += self._classify(ev.pid, ev.timestamp_ns)
            elif ev.kind is ProcEventKind.FORK:
                container = tracked.get(ev.parent)
                if container is not None:
                    lines += self._follow(ev.pid, container, ev.timestamp_ns)
            elif ev.kind is ProcEventKind.EXIT:
                tracked.pop(ev.pid, None)
            else:
                overrun = True
        if overrun:
            self.stats.overruns += 1
            lines.append("process events were lost (socket overrun, ENOBUFS): rescanning /proc")
            lines += self.classify_running()
        return lines

    def classify_running(self) -> list[str]:
        """Classify every process running now (at start, and after lost events)."""
        if not self.rules:
            return []
        self.stats.rescans += 1
        lines: list[str] = []
        for pid in all_pids(self.proc_root):
            lines += self._classify(pid, 0, scanning=True)
        return lines

    def _record(self, pid: int, outcome: Outcome, container: str | None, event_ns: int) -> None:
        if self.on_move is not None:
            self.on_move(Move(pid, outcome, container, event_ns, time.monotonic_ns()))

    def _classify(self, pid: int, event_ns: int, scanning: bool = False) -> list[str]:
        if pid in (1, self.self_pid) or not self.rules:
            return []
        info = read_proc(self.proc_root, pid)
        if info is None or info.exe is None:
            if not scanning:
                self.stats.gone_before_read += 1
                log.debug("pid %d exited before it was read, ignoring", pid)
                self._record(pid, "gone_before_read", None, event_ns)
            return []
        verdict = self.rules.classify(info)
        if verdict is None:
            self._record(pid, "no_match", None, event_ns)
            return []
        return self._move(info, verdict, event_ns)

    def _move(self, info: ProcInfo, verdict: Verdict, event_ns: int) -> list[str]:
        pid, container = info.pid, verdict.container
        if not self._attach_one(pid, container, event_ns, "moved"):
            return []
        self._tracked.add(pid, container)
        lines = [f"moved pid {pid} ({info.exe}) to {container}: {verdict.rule}"]
        # Children forked before the move stayed behind; their FORK events may already
        # have been handled (the parent was not tracked yet), so look now.
        for child in children(self.proc_root, pid):
            lines += self._follow(child, container, event_ns)
        return lines

    def _follow(self, pid: int, container: str, event_ns: int) -> list[str]:
        """Move a child of a matched process (and its own children) unless already in."""
        path = self.rules.paths.get(container)
        here = proc_cgroup(self.proc_root, pid)
        if here is None:
            return []
        if path is not None and cgroup_within(here, path):
            self._tracked.add(pid, container)  # forked after its parent moved: inherited
            return []
        if self.rules.container_at(here) not in (None, container):
            return []  # put into another container meanwhile: leave it
        if not self._attach_one(pid, container, event_ns, "followed"):
            return []
        self.stats.forks_followed += 1
        self._tracked.add(pid, container)
        lines = [f"moved pid {pid} to {container}: child of a matched process"]
        for child in children(self.proc_root, pid):
            lines += self._follow(child, container, event_ns)
        return lines

    def _attach_one(self, pid: int, container: str, event_ns: int, outcome: Outcome) -> bool:
        try:
            self._attach(container, pid)
        except CgroupGone as exc:
            if exc.errno == errno.ESRCH or not (self.proc_root / str(pid)).exists():
                self.stats.gone_before_move += 1
                log.debug("pid %d exited before it was moved to %s, ignoring", pid, container)
                self._record(pid, "gone_before_move", container, event_ns)
                return False
            self.stats.failed += 1
            log.warning("cannot move pid %d to %s: %s", pid, container, exc)
            self._record(pid, "failed", container, event_ns)
            return False
        except BackendError as exc:
            self.stats.failed += 1
            log.warning("cannot move pid %d to %s: %s", pid, container, exc)
            self._record(pid, "failed", container, event_ns)
            return False
        self.stats.moved += 1
        self._record(pid, outcome, container, event_ns)
        return True
