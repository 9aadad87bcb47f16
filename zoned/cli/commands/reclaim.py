"""``zoned reclaim NODE``: an operator takes a node back to the free pool now."""

from __future__ import annotations

import argparse

from zoned.cli.commands._client import add_socket, call
from zoned.cli.commands._index import describe

DESCRIPTION = """\
Ask the running daemon (over its control socket) to evacuate NODE (its pages move to
the holder's other nodes) and return it to the free pool. Refused when the holder
would fall below its min, or the node is reserved, shared, free or moving. Returns
when the hand-over has started; zoned status or zoned events shows how it ends.

examples:
  zoned reclaim 4
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reclaim", **describe("reclaim", DESCRIPTION))
    p.add_argument("node", type=int)
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = call(args, {"cmd": "reclaim", "node": args.node})
    print(f"started: {res['started']}")
    return 0
