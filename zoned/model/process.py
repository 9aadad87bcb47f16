"""A process as the rules see it, and cgroup paths relative to a hierarchy's root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProcInfo:
    """What the rules look at, as read from ``/proc/PID`` (see ``zoned.kernel.proc``).

    ``cgroup`` is the process's cgroup relative to the hierarchy root, without a leading
    slash (``""`` is the root); on v1 the cpuset hierarchy's. None fields were unreadable.
    """

    pid: int
    exe: str | None
    cmdline: tuple[str, ...] = ()
    uid: int | None = None
    user: str | None = None
    cgroup: str | None = None

    @property
    def command(self) -> str:
        """argv joined by single spaces (what ``cmdline`` patterns see)."""
        return " ".join(self.cmdline)


def norm_cgroup(path: str) -> str:
    """A cgroup path without leading or trailing slashes."""
    return path.strip("/")


def cgroup_within(path: str, top: str) -> bool:
    """Whether cgroup ``path`` is ``top`` or below it (both relative to the root)."""
    path, top = norm_cgroup(path), norm_cgroup(top)
    return not top or path == top or path.startswith(top + "/")


def container_path(parent: str, name: str, cgroup: str | None) -> str:
    """A container's cgroup path relative to the root: the adopted one or ``parent/name``."""
    if cgroup:
        return norm_cgroup(cgroup)
    parent = norm_cgroup(parent)
    return f"{parent}/{name}" if parent else name
