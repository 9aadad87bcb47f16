"""Which mount holds which cgroup controller, from ``/proc/self/mountinfo``.

The proc root is injected so tests can hand in a fake ``mountinfo``. Only cgroup mounts
are returned; the mount points are the paths mountinfo names (not re-rooted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoned.errors import Unsupported
from zoned.kernel import mountinfo
from zoned.kernel.roots import PROC_ROOT

# Super-block options of a v1 cgroup mount that are not controller names.
_NOT_CONTROLLERS = {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"}


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup mount: where it is and which controllers it carries (empty for v2)."""

    mount_point: Path
    root: str  # the part of the hierarchy this mount shows ("/" unless a bind mount)
    version: int  # 1 or 2
    controllers: frozenset[str]


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts listed in a mountinfo text, in file order."""
    mounts: list[CgroupMount] = []
    for m in mountinfo.parse_mountinfo(text):
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        opts = set(m.super_options)
        controllers = frozenset(o for o in opts if o not in _NOT_CONTROLLERS and "=" not in o)
        mounts.append(
            CgroupMount(
                mount_point=Path(m.mount_point),
                root=m.root,
                version=2 if m.fstype == "cgroup2" else 1,
                controllers=controllers if m.fstype == "cgroup" else frozenset(),
            )
        )
    return mounts


def find_v1_controller(mounts: list[CgroupMount], controller: str) -> CgroupMount:
    """The v1 mount carrying ``controller``; the one showing the whole hierarchy (root
    ``/``) wins over bind mounts of a subtree. Raises Unsupported when none does."""
    found = [m for m in mounts if m.version == 1 and controller in m.controllers]
    if not found:
        raise Unsupported(f"no cgroup v1 hierarchy with the {controller} controller is mounted")
    found.sort(key=lambda m: m.root != "/")
    return found[0]


def v1_roots(proc_root: Path = PROC_ROOT) -> tuple[Path, Path]:
    """The mount points of the v1 ``cpuset`` and ``memory`` hierarchies.

    Raises Unsupported when either is not mounted (e.g. the controllers are bound to v2).
    """
    mi = proc_root / "self" / "mountinfo"
    try:
        text = mi.read_text()
    except OSError as exc:
        raise Unsupported(f"cannot read {mi}: {exc.strerror}") from exc
    mounts = parse_mountinfo(text)
    return (
        find_v1_controller(mounts, "cpuset").mount_point,
        find_v1_controller(mounts, "memory").mount_point,
    )
