"""``zoned status``: the zone map, usage against capacity, hand-overs, recent decisions."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from zoned.cli.argtypes import seconds
from zoned.cli.commands._client import add_socket, call
from zoned.cli.commands._index import describe
from zoned.cli.render import DEFAULT_WIDTH, terminal_width
from zoned.cli.statusview import render
from zoned.errors import ControlError

# Records asked for per decision line shown: a hand-over folds two or more records into one
# line and routine tripwire settings are not listed, so the last N lines need more records.
RECORDS_PER_LINE = 4
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen (ANSI; only written to a terminal)

DESCRIPTION = f"""\
Ask the running daemon (over its control socket) how things stand: who holds each node
and why, each container's memory against its capacity and tripwire, the hand-overs in
flight, and the recent decisions, one line per hand-over (a running one shows how long it
has been going).

Text fits the terminal: $COLUMNS, else the terminal's width, else {DEFAULT_WIDTH} columns
when stdout is not a terminal; long text is cut with "...", narrow terminals leave columns
out (a line says which) and routine tripwire settings are counted, not listed. --wide
shows everything; --json gives the whole document.

examples:
  zoned status
  zoned status --watch          # redraw every 2 s until Ctrl-C
  zoned status --wide -n 50 | less -S
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", **describe("status", DESCRIPTION))
    add_socket(p)
    p.add_argument("--json", action="store_true", help="the status document as JSON")
    p.add_argument("-n", "--decisions", type=int, default=15, help="recent decision lines shown")
    p.add_argument(
        "--wide", action="store_true", help="cut nothing and list everything, however wide"
    )
    p.add_argument(
        "--watch",
        type=seconds(),
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until Ctrl-C; on a pipe, print one snapshot "
        "after another, separated by a blank line",
    )
    p.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N snapshots")
    p.set_defaults(func=run)


def _show(args: argparse.Namespace, doc: dict[str, Any], rows: int | None = None) -> str:
    """The text of one snapshot; with ``rows`` (a terminal being redrawn), fewer decision
    lines until it fits that height, so the redraw does not scroll its top away."""
    if args.json:
        return json.dumps(doc, indent=2)
    width = None if args.wide else terminal_width()
    n = args.decisions
    text = render(doc, width, decisions=n)
    while rows is not None and n > 0 and text.count("\n") + 1 >= rows:
        n -= 1
        text = render(doc, width, decisions=n)
    return text


def _ask(args: argparse.Namespace) -> dict[str, Any]:
    n = args.decisions if args.json else max(0, args.decisions) * RECORDS_PER_LINE
    doc: dict[str, Any] = call(args, {"cmd": "status", "decisions": n})
    return doc


def run(args: argparse.Namespace) -> int:
    if args.watch is None:
        print(_show(args, _ask(args)))
        return 0
    return watch(args)


def watch(args: argparse.Namespace) -> int:
    """Snapshots ``args.watch`` seconds apart until Ctrl-C (0), ``args.count`` of them (0),
    or the daemon going away (1, said in one line). A daemon that is not there at the
    first snapshot is an error like any other (ControlError)."""
    tty = sys.stdout.isatty()
    shown = 0
    try:
        while True:
            try:
                doc = _ask(args)
            except ControlError as exc:
                if shown == 0:
                    raise
                why = (str(exc).splitlines() or ["no answer"])[0]
                print(f"zoned status: the daemon went away ({why})", file=sys.stderr)
                return 1
            text = _show(args, doc, shutil.get_terminal_size().lines if tty else None)
            if tty:
                sys.stdout.write(CLEAR + text + "\n")
            else:
                sys.stdout.write(("\n" if shown else "") + text + "\n")
            sys.stdout.flush()
            shown += 1
            if args.count is not None and shown >= args.count:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
