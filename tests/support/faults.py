"""Hooks for the fault-injection suite (``zoned.kernel.faults``): a kill at a named point,
and an errno at the n-th write."""

from __future__ import annotations

import os
import threading

from zoned.errors import BackendError
from zoned.kernel.faults import Killed


class Killer:
    """Dies at ``target`` (its ``nth`` pass): raises ``Killed`` there and at every later
    point and write, so the kernel keeps what it held at that instant, as after kill -9
    (a ``finally`` that would restore something cannot write). On a worker thread it
    raises BackendError instead, which ends that operation (Killed would only end the
    thread)."""

    def __init__(self, target: str, nth: int = 1) -> None:
        """Die the ``nth`` time (from 1) ``target`` is passed."""
        self.target = target
        self.nth = nth
        self.dead = False
        self.seen: list[str] = []

    def point(self, name: str) -> None:
        self.seen.append(name)
        if name == self.target and self.seen.count(name) == self.nth:
            self.dead = True
        if self.dead:
            self._die(name)

    def write(self, path: str, value: str) -> None:
        if self.dead:
            self._die(f"write {value!r} to {path}")

    @staticmethod
    def _die(what: str) -> None:
        if threading.current_thread() is threading.main_thread():
            raise Killed(what)
        raise BackendError(f"killed before {what}")


class ErrnoAt:
    """Answers the ``nth`` write (mkdir and rmdir count, from 0) with ``code``, once."""

    def __init__(self, nth: int, code: int) -> None:
        self.nth = nth
        self.code = code
        self.count = 0
        self.hit: str | None = None
        self.points: list[str] = []  # every fault point passed, in order

    def point(self, name: str) -> None:
        self.points.append(name)

    def write(self, path: str, value: str) -> None:
        n, self.count = self.count, self.count + 1
        if n == self.nth:
            self.hit = f"{value!r} to {path}"
            raise OSError(self.code, os.strerror(self.code), path)
