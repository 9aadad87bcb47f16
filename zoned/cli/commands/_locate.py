"""Finding a container's cgroup without the daemon: the options and ``locate``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from zoned.config.decl import Declarations
from zoned.config.load import load
from zoned.config.paths import DEFAULT_PATH
from zoned.errors import ZonedError
from zoned.kernel.cgrouptree import CgroupTree
from zoned.kernel.roots import PROC_ROOT
from zoned.model.process import container_path
from zoned.service.sdscope import localize_here


def add_locate_args(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--cgroup-root`` and ``--proc-root``: what ``locate``
    needs to find a container's cgroup."""
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_PATH,
        metavar="FILE",
        help=f"the main declarations file (drop-ins beside it); default: {DEFAULT_PATH}",
    )
    p.add_argument(
        "--cgroup-root",
        type=Path,
        metavar="DIR",
        help="where the hierarchy is (v1: DIR/cpuset and DIR/memory); default: from mountinfo",
    )
    p.add_argument(
        "--proc-root",
        type=Path,
        default=PROC_ROOT,
        metavar="DIR",
        help="where /proc is (tests point it at a fake tree); default: /proc",
    )


@dataclass(frozen=True)
class Located:
    """A declared container and where its cgroup is on this host."""

    decls: Declarations
    name: str
    path: str  # relative to the hierarchy root
    tree: CgroupTree


def locate(
    config: Path,
    name: str,
    *,
    cgroup_root: Path | None = None,
    proc_root: Path = PROC_ROOT,
    must_exist: bool = True,
) -> Located:
    """Read the configuration, find the container's cgroup. Raises ConfigError,
    Unsupported, or ZonedError with a plain message (unknown name, cgroup missing)."""
    decls = localize_here(load(config), proc_root, cgroup_root)  # under systemd: the scope
    try:
        decl = decls.container(name)
    except KeyError:
        known = ", ".join(c.name for c in decls.containers) or "none"
        raise ZonedError(f"no container {name!r} in {config} (declared: {known})") from None
    path = container_path(decls.host.parent, name, decl.cgroup)
    tree = CgroupTree.find(proc_root, cgroup_root, decls.host.hierarchy)
    missing = tree.missing(path)
    if must_exist and missing:
        raise ZonedError(
            f"container {name} has no cgroup at {missing[0]}: is the zoned daemon running?"
            " (it creates containers' cgroups when it starts)"
        )
    return Located(decls, name, path, tree)
