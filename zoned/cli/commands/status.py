"""``zoned status``: the zone map, usage against capacity, hand-overs, recent decisions."""

from __future__ import annotations

import argparse
import json

from zoned.cli.commands._client import add_socket, call
from zoned.cli.commands._index import HELP
from zoned.cli.statusview import render


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help=HELP["status"])
    add_socket(p)
    p.add_argument("--json", action="store_true", help="the status document as JSON")
    p.add_argument("-n", "--decisions", type=int, default=15, help="recent decisions shown")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = call(args, {"cmd": "status", "decisions": args.decisions})
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    return 0
