"""Processes the real-kernel tests start and follow."""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from zoned.kernel.proc import children

from .waiting import read_line, tell

# Reads "go" (sent once it is in its cgroup, so every page lands on the container's
# nodes), touches every page of argv[1] bytes, prints "ready", holds until stdin closes.
ALLOCATOR = r"""
import sys
n = int(sys.argv[1])
sys.stdin.readline()
b = bytearray(n)
for i in range(0, n, 4096):
    b[i] = 1
print("ready", flush=True)
sys.stdin.readline()
"""


class AllocatingChild:
    """A child python that allocates ``nbytes`` of anonymous memory once it has been put
    into its cgroup; see :data:`ALLOCATOR`."""

    def __init__(self, nbytes: int, move: Callable[[int], None]) -> None:
        """``move(pid)`` puts the child into the container before it allocates."""
        self.proc = subprocess.Popen(
            # -S: no site import; the child needs only sys, and starts faster under TCG
            [sys.executable, "-S", "-c", ALLOCATOR, str(nbytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        try:
            move(self.pid)
            tell(self.proc, "go")
        except BaseException:
            self.stop()
            raise
        self.started = time.monotonic()

    def said_ready(self, deadline_s: float) -> bool:
        """Whether it said ready (False on EOF: killed); fails at the deadline."""
        return read_line(self.proc, deadline_s) == "ready"

    def wait_ready(self, timeout_s: float) -> bool:
        """True when it printed ready; False on EOF (killed) or timeout."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                return False
        return self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


def descendants(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """Every process below ``pid`` (children, their children, …) right now."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(proc, todo.pop()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out
