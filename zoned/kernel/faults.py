"""Named fault points, for the fault-injection suite (tests/test_faults_*.py).

A backend calls ``fault_point("attach.cpuset_moved")`` between two writes, and every
cgroupfs write passes through ``before_write``. Both do nothing (one dict lookup) unless

- the environment variable ``ZONED_FAULT_POINT`` names the point (an fnmatch pattern,
  optionally ``@N``: the N-th time it is passed, from 1): the process then kills itself
  with SIGKILL there, exactly as ``kill -9`` would; or
- a test installed a hook with :func:`installed`: the hook sees each point's name (and
  each write) and may raise, e.g. :class:`Killed` to stop the daemon without cleanup, or
  an ``OSError`` carrying the errno the kernel might answer.

Point names are ``<step>.<what is done>``; :data:`POINTS` lists them all.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase

ENV = "ZONED_FAULT_POINT"

#: Every named point, in the order a step passes them (docs/security.md counts them).
POINTS: tuple[str, ...] = (
    "admit.parent_created",
    "admit.cpuset_created",
    "admit.cpus_written",
    "admit.mems_written",
    "admit.memory_created",
    "attach.cpuset_moved",
    "attach.memory_moved",
    "set_nodes.started",  # lend/give, evacuate: the op runs, nothing written yet
    "set_nodes.mems_written",
    "reclaim.limit_lowered",
    "reclaim.limit_restored",
    "release.memory_removed",
)


class Killed(BaseException):
    """Raised by a test's hook to end the daemon at a point as ``kill -9`` would: it is
    no ZonedError nor Exception, so nothing on the way up handles it or cleans up."""


PointHook = Callable[[str], None]
WriteHook = Callable[[str, str], None]  # (path of the file or cgroup, value)

_hooks: list[tuple[PointHook, WriteHook | None]] = []
_passes = [0]  # how often the point ZONED_FAULT_POINT names was passed


def fault_point(name: str) -> None:
    """Do nothing, unless a hook or ``ZONED_FAULT_POINT`` names this point (see module)."""
    if _hooks:
        _hooks[-1][0](name)
        return
    want = os.environ.get(ENV)
    if not want:
        return
    pattern, _, nth = want.partition("@")
    if fnmatchcase(name, pattern):
        _passes[0] += 1
        if not nth or _passes[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)


def before_write(path: str, value: str) -> None:
    """Called by ``CgroupFs`` before each write(2), mkdir and rmdir (value ``mkdir`` /
    ``rmdir``); a hook may raise OSError here as the kernel would."""
    if _hooks:
        write = _hooks[-1][1]
        if write is not None:
            write(path, value)


@contextmanager
def installed(point: PointHook, write: WriteHook | None = None) -> Iterator[None]:
    """Install hooks for the duration of the block (tests only; not thread-safe to nest)."""
    _hooks.append((point, write))
    try:
        yield
    finally:
        _hooks.remove((point, write))
