"""Which mount holds which cgroup controller, from ``/proc/self/mountinfo``.

The proc root is injected so tests can hand in a fake ``mountinfo``. Only cgroup mounts
are returned; the mount points are the paths mountinfo names (not re-rooted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoned.errors import Unsupported

# Super-block options of a v1 cgroup mount that are not controller names.
_NOT_CONTROLLERS = {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"}


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup mount: where it is and which controllers it carries (empty for v2)."""

    mount_point: Path
    root: str  # the part of the hierarchy this mount shows ("/" unless a bind mount)
    version: int  # 1 or 2
    controllers: frozenset[str]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts listed in a mountinfo text, in file order."""
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        opts = set(fields[sep + 3].split(","))
        controllers = frozenset(o for o in opts if o not in _NOT_CONTROLLERS and "=" not in o)
        mounts.append(
            CgroupMount(
                mount_point=Path(_unescape(fields[4])),
                root=_unescape(fields[3]),
                version=2 if fstype == "cgroup2" else 1,
                controllers=controllers if fstype == "cgroup" else frozenset(),
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


def v1_roots(proc_root: Path = Path("/proc")) -> tuple[Path, Path]:
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
