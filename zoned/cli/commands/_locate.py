"""Options shared by the commands that find a container's cgroup without the daemon."""

from __future__ import annotations

import argparse
from pathlib import Path

from zoned.config.load import DEFAULT_PATH


def add_locate_args(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--cgroup-root`` and ``--proc-root``: what ``zoned.classify.locate``
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
        default=Path("/proc"),
        metavar="DIR",
        help="where /proc is (tests point it at a fake tree); default: /proc",
    )
