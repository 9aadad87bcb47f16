"""``zoned lend NODE CONTAINER``: an operator hands a node to a container now."""

from __future__ import annotations

import argparse

from zoned.cli.commands import _override
from zoned.cli.commands._client import add_socket
from zoned.cli.commands._index import describe

DESCRIPTION = """\
Ask the running daemon (over its control socket) to lend NODE to CONTAINER now,
reclaiming it from its holder first if it is lent. Refused with the reason when it
would exceed the container's max, take the holder below its min, or the node is
reserved, shared or moving; and, unless --force, when the holder's anon would go over
the tripwire of the nodes it keeps or not fit them (docs/service.md, "Overrides").
Returns when the hand-over has started; --wait follows it to its end.

examples:
  zoned lend 4 web
  zoned lend 4 web --wait --timeout 120
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lend", **describe("lend", DESCRIPTION))
    p.add_argument("node", type=int)
    p.add_argument("container")
    _override.add_options(p)
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return _override.run(args, {"cmd": "lend", "node": args.node, "container": args.container})
