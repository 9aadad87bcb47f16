"""Shared bits of the client commands: the socket option and sending one request."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zoned.errors import ControlError
from zoned.service.control import DEFAULT_SOCKET
from zoned.service.controlclient import request


def add_socket(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        help=f"the daemon's control socket (default {DEFAULT_SOCKET})",
    )


def call(args: argparse.Namespace, req: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """The result of one request; ControlError (printed as one line by the CLI) when
    there is no daemon or it refused."""
    resp = request(args.socket, req, timeout_s=timeout_s)
    if not resp.get("ok"):
        raise ControlError(str(resp.get("error", "refused")))
    return resp.get("result")
