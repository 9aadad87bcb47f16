"""``zoned events``: follow the daemon's decisions as they happen."""

from __future__ import annotations

import argparse
import json

from zoned.cli.commands._client import add_socket
from zoned.cli.statusview import render_event
from zoned.errors import ControlError
from zoned.service.controlclient import follow


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("events", help="follow decisions as they happen (Ctrl-C ends)")
    add_socket(p)
    p.add_argument(
        "-n", "--history", type=int, default=10, help="show this many past decisions first"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
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
                print(json.dumps(ev) if args.json else render_event(ev), flush=True)
    except KeyboardInterrupt:
        return 0
    print("zoned events: the daemon closed the connection (stopped?)")
    return 1
