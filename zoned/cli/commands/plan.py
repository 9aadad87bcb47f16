"""``zoned plan``: the placement that admission would make, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zoned.cli.commands._index import describe
from zoned.cli.commands._roots import add_root_args, roots
from zoned.cli.render import table
from zoned.config.paths import DEFAULT_PATH
from zoned.errors import ConfigError
from zoned.model.jsondoc import envelope
from zoned.model.sizes import format_size
from zoned.policy.placement import Placement, place

DESCRIPTION = """\
Read the configuration and the machine's topology (/sys) and print the placement
admission would make: each node's owner (a container, reserved, shared, free) and
why. Nothing is written. Fails, naming each container and the numbers, when the
declared min values do not fit the pool.

examples:
  zoned plan
  zoned plan --config config/zoned.yaml --json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", **describe("plan", DESCRIPTION))
    p.add_argument("--config", type=Path, default=DEFAULT_PATH, help="main YAML file")
    add_root_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def as_json(pl: Placement, sizes: dict[int, int]) -> dict[str, Any]:
    """The documented JSON form: nodes in id order, then containers in declaration order."""
    return {
        **envelope("plan"),
        "nodes": [
            {
                "node": a.node,
                "owner": str(a.owner),
                "kind": a.owner.kind.value,
                "bytes": sizes[a.node],
                "reason": a.reason,
            }
            for a in pl.zonemap
        ],
        "containers": [
            {
                "name": c.name,
                "nodes": list(c.nodes),
                "capacity_bytes": c.capacity,
                "usable_bytes": c.usable,
                "need": c.need,
            }
            for c in pl.containers
        ],
    }


def run(args: argparse.Namespace) -> int:
    from zoned.config.load import check_against_topology, load
    from zoned.kernel.topology import read_topology

    decls = load(args.config)
    r = roots(args)
    topo = read_topology(r.sys, r.proc)
    problems = check_against_topology(decls, topo)
    if problems:
        raise ConfigError(problems)
    pl = place(topo, decls)
    sizes = {n.id: n.mem_total for n in topo.nodes}
    if args.json:
        print(json.dumps(as_json(pl, sizes), indent=2))
        return 0
    rows = [[str(a.node), str(a.owner), format_size(sizes[a.node]), a.reason] for a in pl.zonemap]
    print(table(["NODE", "OWNER", "SIZE", "REASON"], rows, right={0, 2}))
    print()
    crow = [
        [c.name, ",".join(map(str, c.nodes)), format_size(c.capacity), format_size(c.usable)]
        for c in pl.containers
    ]
    print(table(["CONTAINER", "NODES", "CAPACITY", "USABLE"], crow, right={2, 3}))
    return 0
