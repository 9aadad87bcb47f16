"""File access inside one cgroup hierarchy, under an injected root, with errno translation.

Both real backends go through this class; it is the boundary where ``OSError`` becomes
zoned's own exceptions:

- ENOENT / ENODEV on a cgroup's directory or files: ``CgroupGone`` (an ordinary outcome);
- EINVAL, ENOSPC, EBUSY, EACCES, EPERM, EAGAIN, ENOMEM, ERANGE on a write: ``WriteRefused``;
- anything else: ``BackendError``; the errno is always kept.

Cgroup names are paths relative to the hierarchy root (``"zoned/web"``; ``""`` is the root).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zoned.errors import BackendError, CgroupGone, WriteRefused
from zoned.kernel.faults import before_write

_GONE = {errno.ENOENT, errno.ENODEV, errno.ESRCH}
_REFUSED = {
    errno.EINVAL,
    errno.ENOSPC,
    errno.EBUSY,
    errno.EACCES,
    errno.EPERM,
    errno.EAGAIN,
    errno.ENOMEM,
    errno.EOPNOTSUPP,
    errno.ERANGE,  # measured: cpuset.mems "999999" on 6.18
}


@contextmanager
def translated(what: str, *, writing: bool = False) -> Iterator[None]:
    """Translate an OSError raised inside the block; ``what`` names the file and action."""
    try:
        yield
    except OSError as exc:
        code = exc.errno or 0
        name = errno.errorcode.get(code, str(code))
        if code in _GONE:
            raise CgroupGone(f"{what}: gone ({name})", code) from exc
        if writing and code in _REFUSED:
            raise WriteRefused(f"{what}: refused by the kernel ({name})", code) from exc
        raise BackendError(f"{what}: {exc.strerror or name} ({name})", code) from exc


class CgroupFs:
    """One mounted hierarchy (v2, or one v1 controller's) at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, cgroup: str, file: str | None = None) -> Path:
        p = self.root / cgroup if cgroup else self.root
        return p / file if file else p

    def exists(self, cgroup: str) -> bool:
        return self.path(cgroup).is_dir()

    def has_file(self, cgroup: str, file: str) -> bool:
        return self.path(cgroup, file).exists()

    def read(self, cgroup: str, file: str) -> str:
        """The file's whole text, stripped of the trailing newline."""
        p = self.path(cgroup, file)
        with translated(f"read {p}"):
            return p.read_text().rstrip("\n")

    def read_int(self, cgroup: str, file: str) -> int | None:
        """An integer file; ``max`` (no limit) is None."""
        text = self.read(cgroup, file).strip()
        if text == "max":
            return None
        try:
            return int(text)
        except ValueError as exc:
            raise BackendError(f"{self.path(cgroup, file)}: not a number: {text!r}") from exc

    def read_keyed(self, cgroup: str, file: str) -> dict[str, int]:
        """A flat keyed file (``memory.events``, ``memory.stat``): ``key value`` per line."""
        out: dict[str, int] = {}
        for line in self.read(cgroup, file).splitlines():
            key, _, value = line.partition(" ")
            if key and value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out

    def write(self, cgroup: str, file: str, value: str) -> None:
        """One ``write(2)`` of ``value``, as the kernel expects (no read-modify-write)."""
        p = self.path(cgroup, file)
        with translated(f"write {value!r} to {p}", writing=True):
            before_write(str(p), value)
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)

    def write_if_changed(self, cgroup: str, file: str, value: str) -> bool:
        """Write only when the file does not already read ``value``; True when written."""
        if self.read(cgroup, file).strip() == value.strip():
            return False
        self.write(cgroup, file, value)
        return True

    def mkdir(self, cgroup: str) -> bool:
        """Create the cgroup (parents must exist); True when created, False when present."""
        p = self.path(cgroup)
        try:
            with translated(f"mkdir {p}", writing=True):
                before_write(str(p), "mkdir")
                p.mkdir()
        except BackendError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def rmdir(self, cgroup: str) -> bool:
        """Remove an empty cgroup; True when removed, False when it was already gone."""
        p = self.path(cgroup)
        try:
            with translated(f"rmdir {p}", writing=True):
                before_write(str(p), "rmdir")
                p.rmdir()
        except CgroupGone:
            return False
        return True

    def children(self, cgroup: str) -> list[str]:
        """Child cgroups' names (relative to the root), sorted."""
        p = self.path(cgroup)
        with translated(f"list {p}"):
            names = sorted(e.name for e in os.scandir(p) if e.is_dir(follow_symlinks=False))
        return [f"{cgroup}/{n}" if cgroup else n for n in names]

    def pids(self, cgroup: str, file: str = "cgroup.procs") -> tuple[int, ...]:
        """PIDs listed in ``cgroup.procs`` (or ``tasks`` for threads on v1)."""
        return tuple(int(x) for x in self.read(cgroup, file).split())

    def move_pid(self, cgroup: str, pid: int, file: str = "cgroup.procs") -> None:
        """Move a process (v1 ``tasks``: a thread) into the cgroup."""
        self.write(cgroup, file, str(pid))
