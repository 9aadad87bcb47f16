"""``zoned lend NODE CONTAINER``: an operator hands a node to a container now."""

from __future__ import annotations

import argparse

from zoned.cli.commands._client import add_socket, call
from zoned.cli.commands._index import describe

DESCRIPTION = """\
Ask the running daemon (over its control socket) to lend NODE to CONTAINER now,
reclaiming it from its holder first if it is lent. Refused with the reason when it
would exceed the container's max, take the holder below its min, or the node is
reserved, shared or moving. Returns when the hand-over has started; zoned status or
zoned events shows how it ends.

examples:
  zoned lend 4 web
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lend", **describe("lend", DESCRIPTION))
    p.add_argument("node", type=int)
    p.add_argument("container")
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = call(args, {"cmd": "lend", "node": args.node, "container": args.container})
    print(f"started: {res['started']}")
    return 0
