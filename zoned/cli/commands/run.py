"""``zoned run``: the daemon (``zoned.daemon`` documents start-up, the loop and reload)."""

from __future__ import annotations

import argparse
import grp
import logging
from pathlib import Path

from zoned.cli.argtypes import bounded, seconds
from zoned.cli.commands._index import describe
from zoned.cli.commands._roots import add_root_args, roots
from zoned.config.paths import DEFAULT_PATH
from zoned.errors import ZonedError
from zoned.kernel.roots import RUN_DIR
from zoned.service import logsetup
from zoned.service.client import DEFAULT_SOCKET
from zoned.service.daemon import FALLBACK_POLL_S, Daemon, Options


def check_address(where: str) -> str | None:
    """Why ``where`` is not a metrics address (None: fine)."""
    if where.startswith("unix:"):
        return None if where[5:].startswith("/") else "unix: needs an absolute path"
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return f"{where!r}: expected HOST:PORT, [IPV6]:PORT or unix:/path"
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return f"{where!r}: write an IPv6 address in brackets, like [::1]:9799"
    return None


# The poll backs up missed events; an hour apart it backs up nothing worth having.
MAX_FALLBACK_POLL_S = 3600.0
# A demo's hour in a third of a second; faster, the paced sim only skips its own quanta.
MAX_SIM_SPEED = 10000.0

DESCRIPTION = """\
Run zoned: adopt what the host holds, admit the declared containers, then move nodes
under pressure until SIGTERM. Containers keep their zones when zoned stops. Reads the
configuration (--config), the topology (/sys), the cgroup hierarchy and /proc; serves
the control socket that status, lend, reclaim, events and reload talk to. Normally
started by systemd (zoned.service); SIGHUP re-reads the configuration.

examples:
  zoned run --config /etc/zoned/zoned.yaml --dry-run
  zoned run --backend sim:config/scenarios/demo.yaml --sim-speed 10 --socket /tmp/z.sock
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", **describe("run", DESCRIPTION))
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"main configuration file (default {DEFAULT_PATH}; with "
        "--backend sim:..., the scenario's own config)",
    )
    p.add_argument("--dry-run", action="store_true", help="decide and log, write nothing")
    add_root_args(p, cgroup=True)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=RUN_DIR,
        help="hints kept across restarts (never required)",
    )
    p.add_argument("--socket", type=Path, default=DEFAULT_SOCKET, help="control socket")
    p.add_argument(
        "--group",
        default=None,
        help="group whose members may lend, reclaim and reload (default: root only)",
    )
    p.add_argument(
        "--v1-memory-pressure",
        action="store_true",
        help="cgroup v1: set the host-wide cpuset.memory_pressure_enabled while running "
        "(restored at stop; zoned's decisions do not need it)",
    )
    p.add_argument(
        "--release-on-stop",
        action="store_true",
        help="on stop, remove the (empty) cgroups zoned created",
    )
    p.add_argument(
        "--backend",
        default=None,
        metavar="sim:SCENARIO.yaml",
        help="run against the simulated host paced to wall-clock time",
    )
    p.add_argument(
        "--sim-speed",
        type=bounded("simulated seconds per real second", most=MAX_SIM_SPEED),
        default=1.0,
        help="simulated seconds per real second (with --backend sim:...)",
    )
    p.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT|unix:PATH",
        help="serve Prometheus metrics (off by default)",
    )
    p.add_argument(
        "--fallback-poll",
        type=seconds(most=MAX_FALLBACK_POLL_S),
        default=FALLBACK_POLL_S,
        metavar="SECONDS",
        help=f"re-read levels when no event came for this long (default {FALLBACK_POLL_S:g}s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = args.config
    if config is None and args.backend is None:
        config = DEFAULT_PATH
    if args.metrics is not None and (why := check_address(args.metrics)):
        raise ZonedError(f"--metrics {why}")
    group = None
    if args.group is not None:
        try:
            group = int(args.group) if args.group.isdigit() else grp.getgrnam(args.group).gr_gid
        except KeyError:
            raise ZonedError(f"--group {args.group}: no such group") from None
    opts = Options(
        config=config,
        dry_run=args.dry_run,
        roots=roots(args),
        state_dir=args.state_dir,
        socket=args.socket,
        release_on_stop=args.release_on_stop,
        v1_memory_pressure=args.v1_memory_pressure,
        backend=args.backend,
        sim_speed=args.sim_speed,
        metrics=args.metrics,
        group=group,
        fallback_poll_s=args.fallback_poll,
    )
    d = Daemon(opts)
    logsetup.setup(
        logging.DEBUG if args.verbose else logging.INFO,
        latest=lambda: d.engine.log[-1] if d.engine is not None and d.engine.log else None,
    )
    d.start()
    return d.run()
