"""Where the kernel's file systems are: one object for /sys, /proc and the cgroup mount.

Every reader takes its root as a parameter (tests point them at fake trees); the
defaults below are the only place the live machine's paths are written down. The CLI
builds one ``HostRoots`` from ``--sysfs-root``/``--proc-root``/``--cgroup-root`` and
passes its parts down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The live machine's sysfs and procfs mount points.
SYS_ROOT = Path("/sys")
PROC_ROOT = Path("/proc")
#: Where the daemon keeps its hints (``zoned.service.statefile``).
RUN_DIR = Path("/run/zoned")


@dataclass(frozen=True)
class HostRoots:
    """The roots one run reads the kernel under. ``cgroup`` None: found from mountinfo
    (or the configuration's ``host.cgroup_root``)."""

    sys: Path = SYS_ROOT
    proc: Path = PROC_ROOT
    cgroup: Path | None = None

    @classmethod
    def under(cls, base: Path) -> HostRoots:
        """A fake machine's roots: ``base/sys``, ``base/proc``, ``base/sys/fs/cgroup``."""
        return cls(base / "sys", base / "proc", base / "sys" / "fs" / "cgroup")
