"""The event loop behind real backends' ``wait()``: epoll over kernel fds, plus workers.

Two parts, one wake-up path:

- **fd sources.** A source registers an fd with the epoll events it needs and a callback
  ``(revents) -> list[Event]``:

  - cgroup v2 notification files (``memory.events``, ``cgroup.events``) and PSI triggers
    (``memory.pressure``) signal with ``EPOLLPRI`` (kernfs reports ``EPOLLERR|EPOLLPRI``
    for a modified file, so ``EPOLLERR`` alone does not mean "gone" there; for a PSI
    trigger ``EPOLLERR`` does mean the cgroup was removed);
  - eventfds (v1 ``cgroup.event_control`` registrations) are readable: ``EPOLLIN``.

  epoll is level-triggered here, so **a callback must consume its condition** (re-read the
  notification file from offset 0 on the same fd, read the eventfd's 8 bytes; a PSI poll
  consumes itself) **or remove its fd**; otherwise ``wait`` spins on it.

- **workers.** Slow operations (a ``cpuset.mems`` write blocks while pages migrate;
  ``memory.reclaim``) run on a small thread pool via :meth:`FdLoop.submit`. A finished
  operation posts to an eventfd, so ``wait`` wakes at once and returns an ``OP_FINISHED``
  event; its :class:`OpResult` is kept until :meth:`FdLoop.op_result` takes it.

  Deadlines count from ``submit``. An operation still queued or running at its deadline is
  reported as failed (``ETIMEDOUT``) at the deadline. A thread stuck in the kernel cannot
  be interrupted: it is left to finish, the pool starts a replacement worker so capacity
  is kept, and the late outcome is logged, kept in :attr:`FdLoop.late` and reported as a
  second ``OP_FINISHED`` for the same op (its result replaces the timed-out one): a caller
  that waits for a write still in the kernel learns when it really returned.

``wait`` does nothing while nothing happens: the only timed wake-ups are the caller's
timeout and the earliest pending deadline. There is no periodic polling in this module.
All times come from one monotonic clock (injectable for tests).

Thread-safety: everything except :meth:`FdLoop.post` and the workers' completion path must
be called from the engine's thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from zoned.errors import ZonedError
from zoned.model.host import Event, EventKind, OpKind, OpResult

log = logging.getLogger(__name__)

#: epoll event masks sources ask for.
PRI = select.EPOLLPRI  # cgroup v2 notification files, PSI triggers
IN = select.EPOLLIN  # eventfds, pipes, sockets
ERR = select.EPOLLERR  # always reported by epoll, whether asked for or not
HUP = select.EPOLLHUP

#: A source's callback: given the revents mask, return what happened (may be empty).
FdCallback = Callable[[int], list[Event]]


class FdHost(Protocol):
    """Where a part's fds are watched: an :class:`FdLoop`, the daemon's loop, the paced sim."""

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None: ...

    def remove_fd(self, fd: int) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What a slow operation's function returns; the pool adds op id, kind, time taken.

    A function may also raise ``ZonedError`` (e.g. ``WriteRefused``) or ``OSError``: that
    becomes a failed result with the message and errno.
    """

    ok: bool = True
    nodes: frozenset[int] = frozenset()
    left_behind: int = 0
    reclaimed: int = 0
    error: str = ""
    errno: int | None = None


OpFn = Callable[[], Outcome]


class _State(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    TIMED_OUT = "timed_out"


@dataclass
class _Job:
    op: int
    kind: OpKind
    container: str
    fn: OpFn
    submitted: float
    deadline: float  # absolute, on the loop's clock
    state: _State = _State.QUEUED
    started: float | None = None


@dataclass(frozen=True)
class LateResult:
    """An operation that finished after it had been reported as timed out."""

    result: OpResult
    late_by_s: float


@dataclass
class _Source:
    fd: int
    mask: int
    callback: FdCallback
    seq: int = 0  # registration order; a source added during dispatch skips that round


@dataclass
class _Completion:
    job: _Job
    outcome: Outcome
    finished: float
    unexpected: BaseException | None = field(default=None)


class FdLoop:
    """epoll over registered fds + a worker pool that wakes it. See the module docstring."""

    def __init__(
        self,
        *,
        workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
        name: str = "zoned-op",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._clock = clock
        self._name = name
        self._epoll = select.epoll()
        # Workers and post() write here; wait() reads it. Non-blocking: reading an eventfd
        # whose counter is 0 would otherwise block the engine.
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakefd, IN)
        self._sources: dict[int, _Source] = {}
        self._seq = 0
        self._lock = threading.Lock()  # guards _jobs, _done, _posted, _live
        self._jobs: dict[int, _Job] = {}
        self._done: list[_Completion] = []
        self._posted: list[Event] = []
        self._results: dict[int, OpResult] = {}
        self._next_op = 1
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._size = workers
        self._live = 0  # workers not stuck past a deadline
        self._threads: list[threading.Thread] = []
        self._closed = False
        #: Operations that finished after their deadline had been reported (newest last).
        self.late: list[LateResult] = []
        for _ in range(workers):
            self._spawn_worker()

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    # -- fd sources ----------------------------------------------------------------------

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None:
        """Watch ``fd`` for ``mask`` (``PRI``, ``IN``); ``callback(revents)`` on readiness.

        The callback must consume the condition or call :meth:`remove_fd` (level-triggered).
        One registration per fd; the caller keeps ownership of the fd and must
        :meth:`remove_fd` before closing it.
        """
        if fd in self._sources:
            raise ValueError(f"fd {fd} is already registered")
        self._epoll.register(fd, mask)
        self._seq += 1
        self._sources[fd] = _Source(fd, mask, callback, self._seq)

    def remove_fd(self, fd: int) -> None:
        """Stop watching ``fd``. Unknown fds are ignored (a callback may remove itself)."""
        if self._sources.pop(fd, None) is None:
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            # Already closed by its owner: epoll dropped it with the last reference.
            log.debug("fd %d was closed before remove_fd, ignoring", fd)

    def watched(self) -> frozenset[int]:
        return frozenset(self._sources)

    def post(self, *events: Event) -> None:
        """Hand events to the next ``wait`` from any thread (netlink readers, signals)."""
        with self._lock:
            self._posted.extend(events)
        self._wake()

    # -- slow operations -----------------------------------------------------------------

    def submit(self, kind: OpKind, container: str, fn: OpFn, deadline_s: float) -> int:
        """Run ``fn`` on a worker; returns the op id at once. ``deadline_s`` counts from now.

        The end arrives as one ``OP_FINISHED`` event from ``wait``: ok, failed, or timed
        out (``errno == ETIMEDOUT``) when the deadline passed first.
        """
        if self._closed:
            raise RuntimeError("FdLoop is closed")
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        now = self._clock()
        with self._lock:
            op = self._next_op
            self._next_op += 1
            job = _Job(op, kind, container, fn, now, now + deadline_s)
            self._jobs[op] = job
        self._queue.put(job)
        return op

    def op_result(self, op: int) -> OpResult:
        """The result of a finished operation; taken (a second call raises KeyError)."""
        return self._results.pop(op)

    def pending(self) -> frozenset[int]:
        """Operations submitted and not yet reported."""
        with self._lock:
            return frozenset(self._jobs)

    # -- waiting -------------------------------------------------------------------------

    def wait(self, timeout_s: float | None) -> list[Event]:
        """Block until at least one event or ``timeout_s`` passes (None: no limit)."""
        end = None if timeout_s is None else self._clock() + max(0.0, timeout_s)
        while True:
            remaining = None if end is None else max(0.0, end - self._clock())
            events = self.poll_once(remaining)
            if events:
                return events
            if end is not None and self._clock() >= end:
                return []

    def poll_once(self, timeout_s: float | None) -> list[Event]:
        """One epoll round: wait at most ``timeout_s`` (or the next deadline), dispatch.

        May return an empty list (a source fired with nothing to report, a late result
        was logged, the timeout passed).
        """
        timeout = self._poll_timeout(timeout_s)
        ready = self._epoll_wait(timeout)
        events: list[Event] = []
        seq_at_poll = self._seq
        for fd, revents in ready:
            if fd == self._wakefd:
                self._drain_wakefd()
                continue
            src = self._sources.get(fd)
            if src is None or src.seq > seq_at_poll:
                continue  # removed (or replaced) by an earlier callback in this round
            events.extend(src.callback(revents))
        events.extend(self._collect())
        return events

    def _poll_timeout(self, timeout_s: float | None) -> float:
        """epoll timeout in seconds (-1: forever), shortened to the next op deadline."""
        with self._lock:
            deadlines = [
                j.deadline
                for j in self._jobs.values()
                if j.state in (_State.QUEUED, _State.RUNNING)
            ]
            if self._done or self._posted:
                return 0.0
        limit = -1.0 if timeout_s is None else max(0.0, timeout_s)
        if deadlines:
            until = max(0.0, min(deadlines) - self._clock())
            limit = until if limit < 0 else min(limit, until)
        return limit

    def _epoll_wait(self, timeout: float) -> list[tuple[int, int]]:
        if timeout > 0:
            # epoll rounds its timeout down to whole milliseconds; round up instead so a
            # deadline 0.4 ms away does not become a busy 0 ms poll.
            timeout = (int(timeout * 1000) + 1) / 1000
        return self._epoll.poll(timeout)

    def _wake(self) -> None:
        # Under the lock so a late worker never writes to a closed (and maybe reused) fd.
        with self._lock:
            if self._wakefd >= 0:
                os.eventfd_write(self._wakefd, 1)

    def _drain_wakefd(self) -> None:
        with contextlib.suppress(BlockingIOError):  # another round already read it
            os.eventfd_read(self._wakefd)

    def _collect(self) -> list[Event]:
        """Completions, expired deadlines and posted events → Events."""
        now = self._clock()
        out: list[Event] = []
        with self._lock:
            done, self._done = self._done, []
            posted, self._posted = self._posted, []
            expired = [
                j
                for j in self._jobs.values()
                if j.state in (_State.QUEUED, _State.RUNNING) and j.deadline <= now
            ]
            for j in expired:
                if j.state is _State.RUNNING:
                    # Its thread is stuck in the kernel; keep the pool's capacity.
                    self._live -= 1
                    self._spawn_worker_locked()
                j.state = _State.TIMED_OUT
                del self._jobs[j.op]
        out.extend(posted)
        for j in expired:
            where = "running" if j.started is not None else "still queued"
            msg = (
                f"timed out after {j.deadline - j.submitted:.3g} s ({where}); "
                "the kernel may still complete it"
            )
            res = OpResult(
                op=j.op,
                kind=j.kind,
                container=j.container,
                ok=False,
                error=msg,
                errno=errno.ETIMEDOUT,
                seconds=now - j.submitted,
            )
            log.warning("op %d %s %s: %s", j.op, j.kind.value, j.container, msg)
            out.append(self._finish(res, now))
        for c in done:
            res = self._result_of(c)
            if c.job.state is _State.TIMED_OUT:
                late = LateResult(res, c.finished - c.job.deadline)
                self.late.append(late)
                log.warning(
                    "op %d %s %s finished %.3g s after its deadline: ok=%s %s",
                    res.op,
                    res.kind.value,
                    res.container,
                    late.late_by_s,
                    res.ok,
                    res.error,
                )
            out.append(self._finish(res, now))
        return out

    def _finish(self, res: OpResult, now: float) -> Event:
        self._results[res.op] = res
        detail = "ok" if res.ok else res.error
        return Event(
            EventKind.OP_FINISHED,
            now,
            container=res.container,
            detail=detail,
            op=res.op,
            ok=res.ok,
            errno=res.errno,
        )

    @staticmethod
    def _result_of(c: _Completion) -> OpResult:
        o, j = c.outcome, c.job
        return OpResult(
            op=j.op,
            kind=j.kind,
            container=j.container,
            ok=o.ok,
            nodes=o.nodes,
            left_behind=o.left_behind,
            reclaimed=o.reclaimed,
            error=o.error,
            errno=o.errno,
            seconds=c.finished - j.submitted,
        )

    # -- workers -------------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        with self._lock:
            self._spawn_worker_locked()

    def _spawn_worker_locked(self) -> None:
        self._live += 1
        t = threading.Thread(
            target=self._worker, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state is not _State.QUEUED:
                    continue  # timed out while queued: already reported, never started
                job.state = _State.RUNNING
                job.started = self._clock()
            self._run(job)
            with self._lock:
                if job.state is _State.TIMED_OUT:
                    # This thread was replaced while stuck; rejoin only if short-handed.
                    if self._live >= self._size:
                        return
                    self._live += 1

    def _run(self, job: _Job) -> None:
        outcome: Outcome | None = None
        try:
            outcome = job.fn()
        except ZonedError as exc:
            outcome = Outcome(ok=False, error=str(exc), errno=getattr(exc, "errno", None))
        except OSError as exc:
            outcome = Outcome(ok=False, error=str(exc), errno=exc.errno)
        finally:
            if outcome is None:
                # A bug in fn: the exception propagates (threading.excepthook logs it) and
                # this thread ends; report the op as failed and keep the pool's size.
                outcome = Outcome(ok=False, error="internal error in the operation (see log)")
                with self._lock:
                    if job.state is not _State.TIMED_OUT:  # else replaced already
                        self._live -= 1
                        self._spawn_worker_locked()
            self._complete(job, outcome)

    def _complete(self, job: _Job, outcome: Outcome) -> None:
        now = self._clock()
        with self._lock:
            if job.state is _State.RUNNING:
                job.state = _State.DONE
                self._jobs.pop(job.op, None)
            self._done.append(_Completion(job, outcome, now))
        self._wake()

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop idle workers and close the epoll and eventfd. Safe to call twice.

        Registered source fds belong to their owners and are not closed. Threads stuck in
        the kernel are daemon threads and are not waited for.
        """
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        self._sources.clear()
        self._epoll.close()
        with self._lock:
            os.close(self._wakefd)
            self._wakefd = -1

    def __enter__(self) -> FdLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
