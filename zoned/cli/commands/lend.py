"""``zoned lend NODE CONTAINER``: an operator hands a node to a container now."""

from __future__ import annotations

import argparse
import textwrap

from zoned.cli.commands import _override
from zoned.cli.commands._client import add_socket
from zoned.cli.commands._index import HELP


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lend",
        help=HELP["lend"],
        description=textwrap.fill(
            "Lend NODE to CONTAINER (reclaiming it from its holder first if it is "
            "lent). Refused with the reason when it would exceed the container's max, take the "
            "holder below its min, or the node is reserved, shared or moving; and, unless "
            "--force, when the holder's anon would go over the tripwire of the nodes it keeps "
            "or not fit them (docs/service.md, Overrides).",
            78,
        ),
        epilog=_override.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("node", type=int)
    p.add_argument("container")
    _override.add_options(p)
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return _override.run(args, {"cmd": "lend", "node": args.node, "container": args.container})
