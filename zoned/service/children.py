"""Child processes whose output the daemon's loop reads: a few at once, the rest queued,
each reaped without waiting for it.

A burst of container starts must not fork one process each: at most ``limit`` children
run; up to ``queue_max`` more wait their turn in order (one is skipped at its turn when
``wanted(key)`` says it is no longer needed); beyond that a submission is dropped, with
one warning per spell of a full queue. A child's stdout is read as it comes
(non-blocking, on the loop). At EOF the child may still be running (it closed its stdout
early): then its pidfd is watched and it is reaped (``waitpid(WNOHANG)`` through
``Popen.poll``) when it ends, so nothing here waits for a child. Where ``pidfd_open``
fails it is reaped at the next :meth:`Children.expire`, which the daemon calls after every
step. A child running past ``timeout_s`` (checked by :meth:`Children.expire`) or printing
more than ``max_bytes`` is killed; its end is then reported as any other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zoned.backends.fdloop import IN, FdHost
from zoned.model.host import Event

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 1.0  # at shutdown, for a killed child to be reaped (SIGKILL: at once)


@dataclass(frozen=True)
class Ended:
    """A child's end: its key, exit status (negative: killed by that signal), output."""

    key: str
    argv: tuple[str, ...]
    rc: int
    out: bytes
    took_s: float


@dataclass
class Child:
    key: str
    argv: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    started: float
    out: bytearray = field(default_factory=bytearray)
    eof: bool = False  # stdout closed and unwatched; waiting for the exit
    pidfd: int = -1  # watched once eof came before the exit


class Children:
    """At most ``limit`` children at once, ``queue_max`` more queued; see the module."""

    def __init__(
        self,
        host: FdHost,
        on_end: Callable[[Ended], None],
        *,
        name: str,
        limit: int,
        queue_max: int,
        max_bytes: int,
        timeout_s: float,
        wanted: Callable[[str], bool] = lambda key: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or queue_max < 0:
            raise ValueError("limit must be >= 1 and queue_max >= 0")
        self._host = host
        self._on_end = on_end
        self._name = name  # the log lines' prefix
        self.limit = limit
        self.queue_max = queue_max
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._wanted = wanted
        self._clock = clock
        self.running: dict[str, Child] = {}
        self.queued: dict[str, tuple[str, ...]] = {}  # in submission order
        self.dropped = 0  # submissions refused with the queue full, in all
        self._spell = 0  # dropped since the queue was last not full

    def __contains__(self, key: object) -> bool:
        return key in self.running or key in self.queued

    def submit(self, key: str, argv: tuple[str, ...]) -> bool:
        """Run ``argv`` for ``key`` now, or queue it; False when dropped (queue full).
        A key running or queued already is not submitted twice."""
        if key in self:
            return True
        if len(self.running) < self.limit:
            self._spawn(key, argv)
            return True
        if len(self.queued) < self.queue_max:
            self.queued[key] = argv
            return True
        self.dropped += 1
        self._spell += 1
        if self._spell == 1:
            log.warning(
                "%s: %d running and %d queued already: %s dropped (and any more until one "
                "is taken)",
                self._name,
                len(self.running),
                len(self.queued),
                key,
            )
        return False

    def _spawn(self, key: str, argv: tuple[str, ...]) -> None:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            log.warning("%s: %s: cannot run %s: %s, ignoring", self._name, key, argv[0], exc)
            return
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        child = Child(key, argv, proc, self._clock())
        self.running[key] = child
        self._host.add_fd(proc.stdout.fileno(), IN, lambda revents: self._on_output(child))

    def _on_output(self, child: Child) -> list[Event]:
        stdout = child.proc.stdout
        assert stdout is not None
        while True:
            try:
                chunk = os.read(stdout.fileno(), 65536)
            except BlockingIOError:
                return []
            if not chunk:
                break
            child.out += chunk
            if len(child.out) > self.max_bytes:
                child.proc.kill()  # its EOF follows; the output is not kept growing
                del child.out[self.max_bytes :]
        self._host.remove_fd(stdout.fileno())
        stdout.close()
        child.eof = True
        self._reap(child)
        return []

    def _reap(self, child: Child) -> None:
        """End ``child`` if it has exited; else watch its pidfd (never wait for it)."""
        if child.proc.poll() is not None:
            self._end(child)
            return
        if child.pidfd >= 0:
            return  # watched already: a spurious wake-up
        try:
            child.pidfd = os.pidfd_open(child.proc.pid)
        except OSError as exc:  # ENOSYS before 5.3, EMFILE: reaped by expire() instead
            log.debug(
                "%s: %s: no pidfd (%s); reaped after a later step", self._name, child.key, exc
            )
            return
        self._host.add_fd(child.pidfd, IN, lambda revents: self._on_exit(child))

    def _on_exit(self, child: Child) -> list[Event]:
        self._reap(child)
        return []

    def _end(self, child: Child) -> None:
        if child.pidfd >= 0:
            self._host.remove_fd(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = -1
        self.running.pop(child.key, None)
        self._next()
        rc = child.proc.returncode
        took = self._clock() - child.started
        self._on_end(Ended(child.key, child.argv, rc, bytes(child.out), took))

    def _next(self) -> None:
        """Start queued children while there is room."""
        while self.queued and len(self.running) < self.limit:
            key = next(iter(self.queued))
            argv = self.queued.pop(key)
            if self._spell:
                log.warning("%s: %d dropped while the queue was full", self._name, self._spell)
                self._spell = 0
            if not self._wanted(key):
                log.debug("%s: %s is not needed any more, not run", self._name, key)
                continue
            self._spawn(key, argv)

    def expire(self) -> None:
        """Kill children older than ``timeout_s`` (their end is reported as usual), and
        reap those whose exit no pidfd watches."""
        now = self._clock()
        for child in list(self.running.values()):
            if child.eof and child.pidfd < 0:
                self._reap(child)
                if child.key not in self.running:
                    continue
            if now - child.started > self.timeout_s and child.proc.poll() is None:
                log.warning(
                    "%s: %s: %s still running after %gs, killed",
                    self._name,
                    child.key,
                    child.argv[0],
                    self.timeout_s,
                )
                child.proc.kill()

    def close(self) -> None:
        """Kill every child, forget the queue; nothing is reported."""
        self.queued.clear()
        for child in list(self.running.values()):
            child.proc.kill()
            if not child.eof:
                assert child.proc.stdout is not None
                self._host.remove_fd(child.proc.stdout.fileno())
                child.proc.stdout.close()
            if child.pidfd >= 0:
                self._host.remove_fd(child.pidfd)
                os.close(child.pidfd)
            # SIGKILLed: reaped at once, unless stuck in the kernel (then left a zombie).
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(CLOSE_WAIT_S)
        self.running.clear()
