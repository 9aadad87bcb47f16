"""Who creates zoned's parent cgroup: systemd (a delegated scope) or zoned on cgroupfs.

Pure: which path runs on a host (``choose``), the scope's name and cgroup, and the
declarations as the daemon runs them (``localize``). The effects are in
``zoned.service.sdscope``; docs/service.md, "Who owns the containers' cgroups".
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from zoned.config.decl import Declarations, Delegation
from zoned.errors import Unsupported

Mode = Literal["systemd", "cgroupfs"]
SLICE = "zoned.slice"
ANCHOR_LEAF = "zoned.anchor"  # zoned.* names are never containers (model.host.is_internal)
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def choose(setting: Delegation, hierarchy: str, pid1_systemd: bool) -> Mode:
    """Which path creates zoned's parent: systemd on v2 under systemd, else cgroupfs.

    ``auto`` picks; ``systemd`` insists (Unsupported, with why, where it cannot be);
    ``cgroupfs`` is the direct path everywhere.
    """
    possible = hierarchy == "v2" and pid1_systemd
    if setting == "cgroupfs" or (setting == "auto" and not possible):
        return "cgroupfs"
    if not possible:
        why = "cgroup v1 is in use" if hierarchy != "v2" else "PID 1 is not systemd"
        raise Unsupported(
            f"host.delegation: systemd was asked for, but {why}; use auto or cgroupfs"
        )
    return "systemd"


def _escape(path: str) -> str:
    """A cgroup path as systemd escapes a path into a unit name (``systemd-escape -p``)."""
    out = []
    for i, ch in enumerate(path.strip("/")):
        if ch == "/":
            out.append("-")
        elif ch in _UNIT_CHARS and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)


def scope_unit(parent: str) -> str:
    """The scope's name for ``host.parent``: ``zoned`` → ``zoned-containers.scope``."""
    return f"{_escape(parent)}-containers.scope"


def scope_cgroup(parent: str) -> str:
    """The scope's cgroup (relative to the root): where zoned's containers go."""
    return f"{SLICE}/{scope_unit(parent)}"


def localize(decls: Declarations, mode: Mode) -> Declarations:
    """The declarations as the daemon runs them: under systemd, ``host.parent`` is the
    scope's cgroup (applied to every load, so a reload compares like with like and a
    changed ``parent`` still asks for a restart)."""
    if mode != "systemd":
        return decls
    host = dataclasses.replace(decls.host, parent=scope_cgroup(decls.host.parent))
    return dataclasses.replace(decls, host=host)
