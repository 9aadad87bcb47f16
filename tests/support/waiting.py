"""Waits with deadlines: a poll of a condition, a line from a child's pipe, a rule mover fed
from its fd. Each fails the test at its deadline; none sleeps without one."""

from __future__ import annotations

import select
import selectors
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from zoned.service.mover import RuleMover


def wait_for(cond: Callable[[], Any], what: str, deadline_s: float, poll_s: float = 0.2) -> Any:
    """Poll ``cond`` (``poll_s`` apart) until it returns something true, and return that;
    fail after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:g}s waiting for {what}")
        select.select([], [], [], poll_s)


def wait_until(done: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Poll ``done`` 1 ms apart until true; the seconds it took. Fails at the deadline."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > deadline_s:
            pytest.fail(f"not within {deadline_s} s: {what}")
        select.select([], [], [], 0.001)
    return time.monotonic() - start


def read_line(p: subprocess.Popen[str], deadline_s: float) -> str:
    """The child's next line, stripped; fails at the deadline (EOF gives "")."""
    assert p.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        if not sel.select(deadline_s):
            pytest.fail(f"pid {p.pid} said nothing within {deadline_s} s")
    return p.stdout.readline().strip()


def tell(p: subprocess.Popen[str], line: str) -> None:
    """Send the child one line on its stdin."""
    assert p.stdin is not None
    p.stdin.write(line + "\n")
    p.stdin.flush()


def run_until(m: RuleMover, done: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Feed the mover what the connector has (select() on its fd) until ``done``; the
    seconds it took."""
    start = time.monotonic()
    while not done():
        left = deadline_s - (time.monotonic() - start)
        if left <= 0:
            pytest.fail(f"not within {deadline_s} s: {what} (stats {m.stats})")
        ready, _, _ = select.select([m.fileno()], [], [], min(left, 0.05))
        if ready:
            m.on_readable()
    return time.monotonic() - start
