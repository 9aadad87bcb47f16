"""Where containers' cgroups are on this host, and moving a process into one.

v1: the cpuset and memory hierarchies, moved into cpuset first; v2: the one hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zoned.errors import Unsupported
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.hierarchy import find_v1_controller, parse_mountinfo
from zoned.kernel.roots import PROC_ROOT
from zoned.model.process import norm_cgroup


@dataclass(frozen=True)
class CgroupTree:
    """The hierarchies a process is moved through: v1 ``(cpuset, memory)`` roots, in the
    order of the moves (cpuset first: the process's next allocations land on its nodes),
    or the one v2 root."""

    version: Literal[1, 2]
    roots: tuple[Path, ...]

    @classmethod
    def find(
        cls,
        proc_root: Path = PROC_ROOT,
        cgroup_root: Path | None = None,
        prefer: str = "auto",
    ) -> CgroupTree:
        """``cgroup_root`` given: v1 when it holds ``cpuset/`` and ``memory/`` mounts,
        v2 when it holds ``cgroup.controllers``. Otherwise from
        ``<proc_root>/self/mountinfo``. ``prefer``: auto, v1 or v2. Raises Unsupported."""
        if cgroup_root is not None:
            v1 = (cgroup_root / "cpuset", cgroup_root / "memory")
            if prefer != "v2" and (v1[0] / "cpuset.mems").exists() and v1[1].is_dir():
                return cls(1, v1)
            if prefer != "v1" and (cgroup_root / "cgroup.controllers").exists():
                return cls(2, (cgroup_root,))
            raise Unsupported(f"no cgroup hierarchy with cpuset and memory at {cgroup_root}")
        mi = proc_root / "self" / "mountinfo"
        try:
            mounts = parse_mountinfo(mi.read_text())
        except OSError as exc:
            raise Unsupported(f"cannot read {mi}: {exc.strerror}") from exc
        if prefer != "v2":
            try:
                cpuset = find_v1_controller(mounts, "cpuset").mount_point
                memory = find_v1_controller(mounts, "memory").mount_point
                return cls(1, (cpuset, memory))
            except Unsupported:
                if prefer == "v1":
                    raise
        for m in mounts:
            if m.version == 2 and prefer != "v1":
                return cls(2, (m.mount_point,))
        raise Unsupported("neither cgroup v1 cpuset+memory nor cgroup v2 is mounted")

    def dirs(self, cgroup: str) -> list[Path]:
        """The cgroup's directory in each hierarchy."""
        path = norm_cgroup(cgroup)
        return [root / path if path else root for root in self.roots]

    def procs_files(self, cgroup: str) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs(cgroup)]

    def missing(self, cgroup: str) -> list[Path]:
        """The cgroup's directories that do not exist (empty: it is there everywhere)."""
        return [d for d in self.dirs(cgroup) if not d.is_dir()]

    def attach(self, cgroup: str, pid: int) -> None:
        """Move a process (its whole thread group) into ``cgroup`` in every hierarchy.
        Raises CgroupGone (cgroup or process gone: ESRCH), WriteRefused."""
        path = norm_cgroup(cgroup)
        for root in self.roots:
            CgroupFs(root).move_pid(path, pid)
