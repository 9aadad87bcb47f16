"""Where ``usage`` and ``sharing`` get the declarations and the shared zone from.

``--config FILE``: that file, the shared zone computed from it. Otherwise the running
daemon, asked over its control socket (``status``): the configuration file it runs with,
and the shared nodes of its zone map, so what is measured is what the daemon holds. With
no daemon answering, the installed file, with a note saying so (on stderr: stdout stays
the report, ``--json`` included).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoned.cli.commands._client import add_socket
from zoned.config.decl import Declarations
from zoned.config.load import load
from zoned.config.paths import DEFAULT_PATH
from zoned.errors import ControlError
from zoned.service.client import request

#: The file read when no daemon answers (tests point it elsewhere).
INSTALLED = DEFAULT_PATH


@dataclass(frozen=True)
class ZoneSource:
    """The declarations to measure, the shared nodes when the daemon gave them (None:
    compute them from the declarations and the topology), and one line saying whence
    (empty for an explicit ``--config``: the user knows)."""

    decls: Declarations
    shared: frozenset[int] | None
    note: str


def add_source_args(p: argparse.ArgumentParser) -> None:
    """``--config`` (default: ask the daemon, else the installed file) and ``--socket``."""
    p.add_argument("--config", type=Path, default=None, metavar="FILE")
    add_socket(p)


def _from_daemon(doc: dict[str, Any], socket: Path) -> ZoneSource | str:
    """The source a status document gives (``daemon.config``, ``daemon.pid``, ``nodes[]``
    with ``node`` and ``kind``), or why it cannot serve (a note's reason)."""
    daemon = doc.get("daemon")
    nodes = doc.get("nodes")
    if not isinstance(daemon, dict) or not isinstance(nodes, list):
        return f"the daemon at {socket} sent a status without its zone map"
    config = Path(str(daemon.get("config", "")))
    if not config.is_absolute() or not config.is_file():
        return f"the daemon at {socket} runs with {config}, which is not a file here"
    shared = frozenset(
        int(n["node"]) for n in nodes if isinstance(n, dict) and n.get("kind") == "shared"
    )
    return ZoneSource(
        load(config),
        shared,
        f"zone map from the running daemon (pid {daemon.get('pid')}), declarations from {config}",
    )


def zone_source(args: argparse.Namespace) -> ZoneSource:
    """See the module docstring. Raises ConfigError when the chosen file does not load."""
    if args.config is not None:
        return ZoneSource(load(args.config), None, "")
    got: ZoneSource | str
    try:
        resp = request(args.socket, {"cmd": "status"}, timeout_s=10.0)
    except ControlError as exc:
        got = str(exc)
    else:
        got = (
            _from_daemon(resp["result"], args.socket)
            if resp.get("ok")
            else f"the daemon at {args.socket} refused status: {resp.get('error', 'refused')}"
        )
    if isinstance(got, ZoneSource):
        return got
    return ZoneSource(
        load(INSTALLED),
        None,
        f"not from a running daemon ({got}): read {INSTALLED}; the shared zone is computed from it",
    )
