"""What to do at each shared tmpfs mount point, decided from mountinfo and the path alone.

``plan`` is pure: given what is mounted (``zoned.kernel.mountinfo``), what is on disk at
the mount point (``probe_path``) and the shared nodes, it says mount, remount, keep or
refuse, with why. ``zoned.shared.tmpfs`` carries the decision out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from zoned.config.decl import TmpfsDecl
from zoned.kernel.mountinfo import MountEntry
from zoned.model.nodelist import format_nodelist, parse_nodelist
from zoned.model.sizes import format_size

# mount(2) flags (include/uapi/linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
NEW_MOUNT_FLAGS = MS_NOSUID | MS_NODEV

# Per-mount options as mountinfo's sixth field names them → the flag that keeps them.
_MOUNT_OPTION_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}

PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------
# mountinfo


def describe_mount(m: MountEntry) -> str:
    """``a tmpfs (mpol=bind:7, size 64M)``, ``an ext4 mount from /dev/sda1``: for reasons."""
    if m.fstype != "tmpfs":
        return f"a {m.fstype} mount from {m.source}"
    parts = [f"mpol={m.super_option('mpol')}" if m.super_option("mpol") else "no mpol"]
    size = shown_size(m)
    parts.append(f"size {format_size(size)}" if size is not None else "default size")
    if "ro" in m.options:
        parts.append("read-only")
    return f"a tmpfs ({', '.join(parts)})"


def top_mount(mounts: Sequence[MountEntry], target: str) -> MountEntry | None:
    """The mount visible at ``target``: of those there, the one no other one there is
    stacked on (a mount over a mount has the lower one as its parent)."""
    here = [m for m in mounts if m.mount_point == target]
    parents = {m.parent_id for m in here}
    top = [m for m in here if m.mount_id not in parents] or here
    return top[-1] if top else None


def shown_size(m: MountEntry) -> int | None:
    """A tmpfs's size limit in bytes as mountinfo shows it (``size=65536k``); None when
    not shown (the kernel's default, half of RAM)."""
    text = m.super_option("size")
    if not text:
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    scale = units.get(text[-1].lower(), 1)
    digits = text[:-1] if text[-1].lower() in units else text
    return int(digits) * scale if digits.isdigit() else None


@dataclass(frozen=True)
class Mpol:
    """A mount's memory policy as the kernel prints it: ``bind:7``, ``bind=static:5-7``."""

    mode: str
    flags: str = ""
    nodes: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Mpol:
        """Raises ValueError when the node list is not the kernel's format."""
        head, _, nodes = text.partition(":")
        mode, _, flags = head.partition("=")
        return cls(mode, flags, parse_nodelist(nodes))

    def __str__(self) -> str:
        flags = f"={self.flags}" if self.flags else ""
        nodes = f":{format_nodelist(self.nodes)}" if self.nodes else ""
        return f"{self.mode}{flags}{nodes}"


def bind(nodes: frozenset[int]) -> Mpol:
    return Mpol("bind", "", frozenset(nodes))


def mount_flags(m: MountEntry) -> int:
    """The flags that keep a mount's per-mount options across a remount. No atime option
    shown means strictatime."""
    flags = 0
    for opt in m.options:
        flags |= _MOUNT_OPTION_FLAGS.get(opt, 0)
    if not flags & (MS_NOATIME | MS_RELATIME):
        flags |= MS_STRICTATIME
    return flags


def _page_rounded(size: int) -> int:
    """tmpfs rounds a size limit up to whole pages (and shows it in KiB)."""
    return math.ceil(size / PAGE) * PAGE


# ---------------------------------------------------------------------------------------
# What is on disk at a mount point


class PathKind(Enum):
    MISSING = "missing"
    EMPTY_DIR = "an empty directory"
    DIR = "a directory with files in it"
    OTHER = "not a directory"


@dataclass(frozen=True)
class PathState:
    """What a declared mount point is now; ``resolved``: with symlinks resolved, as
    mountinfo names mount points."""

    kind: PathKind
    resolved: str


def probe_path(path: str) -> PathState:
    """The path's state on this machine (reads the filesystem; nothing is changed)."""
    resolved = os.path.realpath(path)
    try:
        if not Path(resolved).is_dir():
            kind = PathKind.OTHER if os.path.lexists(resolved) else PathKind.MISSING
        else:
            with os.scandir(resolved) as it:
                kind = PathKind.DIR if next(it, None) is not None else PathKind.EMPTY_DIR
    except OSError:
        kind = PathKind.OTHER
    return PathState(kind, resolved)


# ---------------------------------------------------------------------------------------
# The decision


class Verb(Enum):
    MOUNT = "mount"
    KEEP = "keep"
    REMOUNT = "remount"
    REFUSE = "refuse"


@dataclass(frozen=True)
class TmpfsAction:
    """What to do at one declared mount point, and why. ``flags`` and ``data`` are the
    mount(2) arguments (MS_REMOUNT is added for a remount)."""

    verb: Verb
    path: str  # as declared
    target: str  # where mount(2) goes: the path with symlinks resolved
    reason: str
    before: str  # what is there now, in words
    flags: int = 0
    data: str = ""
    create: bool = False  # the directory does not exist: make it first


def plan(
    declared: Sequence[TmpfsDecl],
    nodes: frozenset[int],
    mounts: Sequence[MountEntry],
    states: Mapping[str, PathState],
) -> list[TmpfsAction]:
    """One action per declared mount point, in declaration order (pure)."""
    return [_decide(d, nodes, mounts, states[d.path]) for d in declared]


def _decide(
    d: TmpfsDecl, nodes: frozenset[int], mounts: Sequence[MountEntry], st: PathState
) -> TmpfsAction:
    want = bind(nodes)
    target = st.resolved
    current = top_mount(mounts, target)

    def act(verb: Verb, reason: str, before: str, **kw: Any) -> TmpfsAction:
        return TmpfsAction(verb, d.path, target, reason, before, **kw)

    if not nodes:
        return act(Verb.REFUSE, "there is no shared zone to bind it to", _before(current, st))
    if current is None:
        if st.kind in (PathKind.DIR, PathKind.OTHER):
            why = (
                "mounting there would hide its files"
                if st.kind is PathKind.DIR
                else "a tmpfs needs a directory"
            )
            return act(Verb.REFUSE, f"{target} is {st.kind.value}: {why}", st.kind.value)
        data = f"mpol={want},mode={d.mode:04o}" + (f",size={d.size}" if d.size else "")
        missing = st.kind is PathKind.MISSING
        return act(
            Verb.MOUNT,
            "nothing is mounted there"
            + ("; the directory is missing (made first)" if missing else ""),
            st.kind.value,
            flags=NEW_MOUNT_FLAGS,
            data=data,
            create=missing,
        )
    before = describe_mount(current)
    if current.fstype != "tmpfs":
        return act(
            Verb.REFUSE,
            f"{before} is there: zoned mounts a tmpfs only on a free directory, or takes over a"
            " tmpfs",
            before,
        )
    changes: list[str] = []
    opts: list[str] = []
    shown = current.super_option("mpol")
    try:
        have = Mpol.parse(shown) if shown else None
    except ValueError:
        have = None
    if have != want:
        changes.append(
            f"its policy is {'mpol=' + shown if shown else 'the default (none)'}, the shared zone"
            f" wants mpol={want}"
        )
        opts.append(f"mpol={want}")
    if d.size is not None and shown_size(current) != _page_rounded(d.size):
        now = shown_size(current)
        changes.append(
            f"its size is {format_size(now) if now else 'the default'}, declared "
            f"{format_size(d.size)}"
        )
        opts.append(f"size={d.size}")
    if not changes:
        return act(Verb.KEEP, f"already a tmpfs with mpol={want}", before)
    reason = "; ".join(changes)
    if have != want and have is not None:
        reason += " (files created before keep their old policy)"
    return act(
        Verb.REMOUNT,
        reason,
        before,
        flags=mount_flags(current),
        data=",".join(opts),
    )


def _before(current: MountEntry | None, st: PathState) -> str:
    return describe_mount(current) if current is not None else st.kind.value
