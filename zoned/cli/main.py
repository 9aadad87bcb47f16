"""The ``zoned`` command: argument parsing and dispatch to ``zoned.cli.commands.*``.

Each command module exposes ``register(subparsers) -> None``, which adds its parser and sets
``func`` to a ``(args) -> int`` function. Errors that are zoned's own (``ZonedError``) are
printed to stderr as one line each and give their ``exit_status``: 78 (EX_CONFIG) for an
invalid configuration, else 1; usage errors give 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from zoned import __version__
from zoned.cli.commands._index import HELP
from zoned.errors import ZonedError

COMMANDS = tuple(HELP)  # in the order ``zoned --help`` lists them

DESCRIPTION = """\
zoned gives containers memory zones: whole fake-NUMA nodes (numa=fake=N) handed out
through cgroup cpusets, and moved between containers at runtime under memory pressure.
"""


def selected_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, or None when it names none (help, version, a typo)."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None, *, every: bool = False) -> argparse.ArgumentParser:
    """The parser with ``only`` fully registered (its module imported), or, with no
    ``only``, every command from its name and help line alone (``zoned --help``); with
    ``every``, every command fully registered (for the man page and shell completion).

    Importing a command module imports what it runs (the daemon, the simulator, numpy), so
    a run imports only its own command's module and ``zoned --help`` none: they start fast,
    which matters most under QEMU's TCG, where imports cost ten times as much.
    """
    parser = argparse.ArgumentParser(
        prog="zoned",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zoned {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = COMMANDS if every else (only,) if only else ()
    if chosen:
        for name in chosen:
            module = name.replace("-", "")  # oci-hook is zoned/cli/commands/ocihook.py
            importlib.import_module(f"zoned.cli.commands.{module}").register(sub)
    else:
        for name, line in HELP.items():
            sub.add_parser(name, help=line)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(selected_command(argv))
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except ZonedError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"zoned {args.command}: {line}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
