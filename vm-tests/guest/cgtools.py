"""Small helpers for poking a real cgroup tree inside the guest."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.cgroups import remove_cgroup_tree


def write(path: Path, value: str) -> str:
    """Write ``value`` with one write(2); return "ok" or the errno's name (e.g. "EINVAL")."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    finally:
        os.close(fd)
    return "ok"


def read(path: Path) -> str:
    return path.read_text().strip()


def remove_tree(path: Path, root: Path) -> None:
    """Move every task under ``path`` back to ``root`` and remove the cgroups, leaves first."""
    remove_cgroup_tree(root, str(path.relative_to(root)))


@contextlib.contextmanager
def sleeper() -> Iterator[int]:
    """A process that exists for the duration of the block; yields its pid."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=30)
