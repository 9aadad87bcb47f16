"""``zoned reclaim NODE``: an operator takes a node back to the free pool now."""

from __future__ import annotations

import argparse

from zoned.cli.commands import _override
from zoned.cli.commands._client import add_socket
from zoned.cli.commands._index import describe

DESCRIPTION = """\
Ask the running daemon (over its control socket) to evacuate NODE (its pages move to
the holder's other nodes) and return it to the free pool. Refused when the holder
would fall below its min, or the node is reserved, shared, free or moving; and, unless
--force, when the holder's anon would go over the tripwire of the nodes it keeps or not
fit them (docs/service.md, "Overrides"). Returns when the hand-over has started;
--wait follows it to its end.

examples:
  zoned reclaim 4
  zoned reclaim 4 --force --wait
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reclaim", **describe("reclaim", DESCRIPTION))
    p.add_argument("node", type=int)
    _override.add_options(p)
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return _override.run(args, {"cmd": "reclaim", "node": args.node})
