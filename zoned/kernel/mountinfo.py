"""``/proc/PID/mountinfo`` (proc(5)), parsed once for everything zoned reads from it: the
cgroup hierarchies (``zoned.kernel.hierarchy``), the shared tmpfs (``zoned.shared.tmpfs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoned.errors import Unsupported
from zoned.kernel.numamaps import unescape  # seq_file's \ooo escapes, as in numa_maps
from zoned.kernel.roots import PROC_ROOT


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/PID/mountinfo``."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    options: tuple[str, ...]  # per-mount: rw, nosuid, relatime, ...
    fstype: str
    source: str
    super_options: tuple[str, ...]  # per-superblock: rw, size=65536k, mpol=bind:7, ...

    def super_option(self, key: str) -> str | None:
        """The value of ``key=value`` among the super options (``""`` for a bare flag)."""
        for opt in self.super_options:
            name, sep, value = opt.partition("=")
            if name == key:
                return value if sep else ""
        return None


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every mount of a mountinfo text, in file order; malformed lines are skipped."""
    out: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        out.append(
            MountEntry(
                mount_id=mount_id,
                parent_id=parent_id,
                root=unescape(fields[3]),
                mount_point=unescape(fields[4]),
                options=tuple(fields[5].split(",")),
                fstype=fields[sep + 1],
                source=unescape(fields[sep + 2]),
                super_options=tuple(fields[sep + 3].split(",")),
            )
        )
    return out


def read_mounts(proc_root: Path = PROC_ROOT) -> list[MountEntry]:
    """This process's mounts. Raises Unsupported when mountinfo cannot be read."""
    path = proc_root / "self" / "mountinfo"
    try:
        return parse_mountinfo(path.read_text())
    except OSError as exc:
        raise Unsupported(f"cannot read {path}: {exc.strerror or exc}") from exc
