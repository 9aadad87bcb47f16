"""The options that point a command at another machine's kernel files, as one ``HostRoots``.

``--sysfs-root``, ``--proc-root`` (tests point them at fake trees) and ``--cgroup-root``;
``roots(args)`` builds the run's ``HostRoots`` once, and the command passes its parts down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoned.kernel.roots import PROC_ROOT, SYS_ROOT, HostRoots


def add_root_args(p: argparse.ArgumentParser, *, cgroup: bool = False) -> None:
    """Add ``--sysfs-root`` and ``--proc-root`` (and ``--cgroup-root`` if ``cgroup``)."""
    if cgroup:
        p.add_argument("--cgroup-root", type=Path, metavar="DIR", help="default: host.cgroup_root")
    p.add_argument(
        "--sysfs-root", type=Path, default=SYS_ROOT, metavar="DIR", help=f"default: {SYS_ROOT}"
    )
    p.add_argument(
        "--proc-root", type=Path, default=PROC_ROOT, metavar="DIR", help=f"default: {PROC_ROOT}"
    )


def roots(args: argparse.Namespace) -> HostRoots:
    """The roots the options name (unset ones: the live machine's)."""
    return HostRoots(
        sys=getattr(args, "sysfs_root", None) or SYS_ROOT,
        proc=getattr(args, "proc_root", None) or PROC_ROOT,
        cgroup=getattr(args, "cgroup_root", None),
    )
