"""``zoned reload``: re-read the configuration (as SIGHUP / systemctl reload zoned)."""

from __future__ import annotations

import argparse

from zoned.cli.commands._client import add_socket, call
from zoned.cli.commands._index import describe

DESCRIPTION = """\
Ask the running daemon (over its control socket) to re-read its configuration, as
SIGHUP and systemctl reload zoned do. An invalid file is refused with every problem
and the running configuration is kept. A valid one applies when no hand-over is in
flight: removed containers' nodes are freed, added containers placed on free nodes.

examples:
  zoned reload
  zoned reload --allow-empty     # a configuration with no containers: release all
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reload", **describe("reload", DESCRIPTION))
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="apply a configuration that declares no containers (releases every container)",
    )
    add_socket(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    req: dict[str, object] = {"cmd": "reload"}
    if args.allow_empty:
        req["allow_empty"] = True
    res = call(args, req, timeout_s=120.0)
    if res.get("deferred"):
        print("reload accepted; it applies when the hand-overs in flight finish")
    changes = res.get("changes") or []
    if not changes:
        print("reloaded: nothing changed")
    for ch in changes:
        print(f"reloaded: {ch}")
    return 0
