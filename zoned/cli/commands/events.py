"""``zoned events``: follow the daemon's decisions as they happen."""

from __future__ import annotations

import argparse
import json

from zoned.cli.commands._client import add_socket
from zoned.cli.commands._index import describe
from zoned.cli.render import terminal_width
from zoned.cli.statusview import render_event
from zoned.errors import ControlError
from zoned.service.client import follow

DESCRIPTION = """\
Follow the running daemon's decisions as they happen (over its control socket): the
last -n first, then each new one as one line (time, what, outcome, reason), until
Ctrl-C. Lines fit the terminal like zoned status's (the reason is cut first); --wide
prints them whole, with the decision's kind; --json prints one JSON object per line.

examples:
  zoned events
  zoned events -n 0 --json | jq .
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("events", **describe("events", DESCRIPTION))
    add_socket(p)
    p.add_argument(
        "-n", "--history", type=int, default=10, help="show this many past decisions first"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--wide", action="store_true", help="whole lines, however wide")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stream = follow(args.socket, {"cmd": "events", "history": args.history})
    try:
        first = next(stream, None)
        if first is None or not first.get("ok"):
            raise ControlError(str((first or {}).get("error", "the daemon closed")))
        for obj in stream:
            ev = obj.get("event")
            if isinstance(ev, dict):
                if args.json:
                    line = json.dumps(ev)
                else:  # the width is read again for each line: the terminal may be resized
                    line = render_event(ev, None if args.wide else terminal_width())
                print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    print("zoned events: the daemon closed the connection (stopped?)")
    return 1
