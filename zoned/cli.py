"""The ``zoned`` command: argument parsing and dispatch to ``zoned.commands.*``.

Each command module exposes ``register(subparsers) -> None``, which adds its parser and sets
``func`` to a ``(args) -> int`` function. Errors that are zoned's own (``ZonedError``) are
printed to stderr as one line each and give exit status 1; usage errors give 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from zoned import __version__
from zoned.errors import ZonedError

# In the order ``zoned --help`` lists them.
COMMANDS = (
    "check",
    "topology",
    "plan",
    "simulate",
    "demo",
    "run",
    "status",
    "lend",
    "reclaim",
    "events",
    "reload",
    "exec",
    "adopt",
    "usage",
    "sharing",
    "shared",
)

DESCRIPTION = """\
zoned gives containers memory zones: whole fake-NUMA nodes (numa=fake=N) handed out
through cgroup cpusets, and moved between containers at runtime under memory pressure.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoned",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zoned {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"zoned.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"zoned.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except ZonedError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"zoned {args.command}: {line}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
