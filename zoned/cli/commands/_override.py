"""What ``zoned lend`` and ``zoned reclaim`` share: ``--force``, ``--wait``, ``--timeout``, and
following the hand-over they started to its end on the daemon's event stream."""

from __future__ import annotations

import argparse
import time
from typing import Any

from zoned.cli.argtypes import DAY_S, seconds
from zoned.cli.commands._client import call
from zoned.errors import ControlError
from zoned.service.client import follow

EXIT_DONE = 0
EXIT_FAILED = 3  # the daemon gave up on the hand-over
EXIT_CANCELLED = 4  # it was abandoned: a container it involved vanished
EXIT_TIMEOUT = 5  # --timeout passed first; it goes on in the daemon
DEFAULT_TIMEOUT_S = 600.0  # above a 120 s migration deadline, retried, with its drain


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="take the node even when its holder's anon would go over its tripwire or not "
        "fit (an OOM risk); min, max and the map are checked still",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the hand-over to its end and exit with its outcome",
    )
    p.add_argument(
        "--timeout",
        type=seconds(zero=True),  # 0: give up at once
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"with --wait: give up waiting after this long (default {DEFAULT_TIMEOUT_S:g}, "
        f"at most {DAY_S:g})",
    )


def ending(outcome: str) -> int | None:
    """The exit status a hand-over's logged outcome ends with, or None while it goes on
    (``started``, ``… retrying``, a write still in the kernel)."""
    if outcome.startswith("done"):
        return EXIT_DONE
    if outcome.startswith("gave up"):
        return EXIT_FAILED
    if outcome.startswith("abandoned"):
        return EXIT_CANCELLED
    return None


def run(args: argparse.Namespace, req: dict[str, Any]) -> int:
    """Send ``req`` (with ``force`` when asked); with ``--wait``, follow what it started."""
    if args.force:
        req = {**req, "force": True}
    if not args.wait:
        print(f"started: {call(args, req)['started']}")
        return 0
    until = time.monotonic() + args.timeout
    # Subscribed before the request is sent: no event of the hand-over can be missed.
    stream = follow(args.socket, {"cmd": "events", "history": 0}, until=until)
    try:
        first = next(stream, None)
        if first is None or not first.get("ok"):
            raise ControlError(str((first or {}).get("error", "the daemon closed")))
        what = str(call(args, req)["started"])
        print(f"started: {what}", flush=True)
        return _follow(stream, what, args.timeout)
    finally:
        stream.close()  # type: ignore[attr-defined]  # a generator


def _follow(stream: Any, what: str, timeout_s: float) -> int:
    try:
        for obj in stream:
            ev = obj.get("event")
            if not isinstance(ev, dict) or ev.get("what") != what:
                continue
            outcome = str(ev.get("outcome", ""))
            if outcome == "started":
                continue
            print(f"{what}: {outcome}", flush=True)
            code = ending(outcome)
            if code is not None:
                return code
    except TimeoutError:
        print(f"{what}: not ended after {timeout_s:g}s (--timeout); it goes on in the daemon")
        return EXIT_TIMEOUT
    raise ControlError(f"the daemon closed the connection before {what} ended")
