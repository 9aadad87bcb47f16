"""Engine containers' cgroups: where podman and docker put them, and seeing them appear.

Where the engines' containers live in the v2 tree (measured in the VM, docs/containers.md)::

    libpod_parent/libpod-<id>               podman, cgroupfs manager
    machine.slice/libpod-<id>.scope         podman, systemd manager (crun's leaf is
                                            .../container inside it)
    system.slice/docker-<id>.scope          docker, systemd driver
    docker/<id>                             docker, cgroupfs driver

:class:`CgroupDirWatch` is an inotify watch on those parents (and on the root, for a
parent that appears later): mkdir and rmdir on cgroupfs raise IN_CREATE / IN_DELETE like
on any file system. It only reads.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
from pathlib import Path

from zoned.errors import BackendError, EngineError

_ID = r"[0-9a-f]{12,64}"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("podman", re.compile(rf"^libpod_parent/libpod-({_ID})$")),
    ("podman", re.compile(rf"^machine\.slice/libpod-({_ID})\.scope(/container)?$")),
    ("docker", re.compile(rf"^system\.slice/docker-({_ID})\.scope$")),
    ("docker", re.compile(rf"^docker/({_ID})$")),
)
#: The parents the watcher watches, relative to the cgroup root.
PARENTS = ("libpod_parent", "machine.slice", "system.slice", "docker")


def parse_engine_cgroup(path: str) -> tuple[str, str] | None:
    """(engine, container id) of an engine container's cgroup path (relative to the
    root, leading / allowed), or None when the path is not one."""
    rel = path.strip("/")
    for engine, pattern in _PATTERNS:
        m = pattern.match(rel)
        if m:
            return engine, m.group(1)
    return None


def cgroup_of(proc_root: Path, pid: int) -> str:
    """The v2 cgroup of ``pid`` (relative to the root), from ``/proc/PID/cgroup``'s
    ``0::`` line. Raises EngineError when the process is gone or has no v2 line."""
    p = proc_root / str(pid) / "cgroup"
    try:
        text = p.read_text()
    except OSError as exc:
        raise EngineError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip().strip("/")
    raise EngineError(f"{p}: no cgroup v2 line (0::); zoned admits engine containers on v2 only")


def conmon_name(proc_root: Path, pid: int, depth: int = 6) -> str | None:
    """The podman container name that conmon was started with (``-n NAME``), found among
    the ancestors of ``pid`` (the OCI hook runs under crun, under conmon); None when no
    conmon is among the first ``depth`` ancestors."""
    for _ in range(depth):
        base = proc_root / str(pid)
        try:
            args = (base / "cmdline").read_bytes().split(b"\0")
            stat = (base / "stat").read_text()
        except OSError:
            return None
        if args and args[0].rsplit(b"/", 1)[-1] == b"conmon":
            for i, a in enumerate(args[:-1]):
                if a in (b"-n", b"--name"):
                    return args[i + 1].decode(errors="replace")
            return None
        try:
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the comm
        except (IndexError, ValueError):
            return None
        if pid <= 1:
            return None
    return None


_IN_CREATE, _IN_DELETE, _IN_ONLYDIR, _IN_ISDIR = 0x100, 0x200, 0x01000000, 0x40000000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


class CgroupDirWatch:
    """Inotify on the engines' parent cgroups; :meth:`drain` returns the engine cgroups
    created and removed since the last call, as paths relative to the root. Never blocks."""

    def __init__(self, cgroup_root: Path, parents: tuple[str, ...] = PARENTS) -> None:
        self.root = cgroup_root
        self.parents = parents
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise BackendError(f"inotify_init1: {os.strerror(err)}", err)
        self.fd: int = fd
        self._wds: dict[int, str] = {}
        try:
            self._add("")
            for p in parents:
                if (cgroup_root / p).is_dir():
                    self._add(p)
        except BackendError:
            self.close()
            raise

    def fileno(self) -> int:
        return self.fd

    def _add(self, rel: str) -> None:
        path = str(self.root / rel) if rel else str(self.root)
        wd = self._libc.inotify_add_watch(
            self.fd, os.fsencode(path), _IN_CREATE | _IN_DELETE | _IN_ONLYDIR
        )
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT and rel:  # a parent removed meanwhile: an ordinary race
                return
            raise BackendError(f"inotify_add_watch {path}: {os.strerror(err)}", err)
        self._wds[wd] = rel

    def existing(self) -> list[str]:
        """Engine cgroups present now (the systemd manager's ``container`` leaf included)."""
        return [c for p in self.parents for c in self._children(p)]

    def _children(self, parent: str) -> list[str]:
        """The engine cgroups directly under ``parent`` now ([] if it is gone)."""
        try:
            names = sorted(e.name for e in os.scandir(self.root / parent) if e.is_dir())
        except OSError:
            return []
        return [f"{parent}/{n}" for n in names if parse_engine_cgroup(f"{parent}/{n}")]

    def drain(self) -> tuple[list[str], list[str]]:
        """(created, removed) engine cgroups since the last call."""
        created: list[str] = []
        removed: list[str] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                raise BackendError(f"read inotify: {exc.strerror}", exc.errno) from exc
            if not buf:
                break
            at = 0
            while at + _EVENT.size <= len(buf):
                wd, mask, _cookie, size = _EVENT.unpack_from(buf, at)
                name = buf[at + _EVENT.size : at + _EVENT.size + size].rstrip(b"\0")
                at += _EVENT.size + size
                parent = self._wds.get(wd)
                if parent is None or not mask & _IN_ISDIR:
                    continue
                rel = f"{parent}/{os.fsdecode(name)}" if parent else os.fsdecode(name)
                if parent == "" and rel in self.parents and mask & _IN_CREATE:
                    self._add(rel)
                    # What the engine made in it before the watch was in place raised no
                    # event (docker makes docker/ and docker/<id> back to back).
                    created += [c for c in self._children(rel) if c not in created]
                elif parse_engine_cgroup(rel):
                    out = created if mask & _IN_CREATE else removed
                    if rel not in out:
                        out.append(rel)
        return created, removed

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
