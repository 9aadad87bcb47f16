"""``zoned lend NODE CONTAINER``: an operator hands a node to a container now."""

from __future__ import annotations

import argparse

from zoned.cli.commands._client import add_socket, call
from zoned.cli.commands._index import HELP


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lend",
        help=HELP["lend"],
        description="Lend NODE to CONTAINER (reclaiming it from its holder first if it is "
        "lent). Refused with the reason when it would exceed the container's max, take the "
        "holder below its min, or the node is reserved, shared or moving.",
    )
    p.add_argument("node", type=int)
    p.add_argument("container")
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = call(args, {"cmd": "lend", "node": args.node, "container": args.container})
    print(f"started: {res['started']}")
    return 0
