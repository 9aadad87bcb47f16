"""The commands' names, one-line help and exit statuses, in the order ``zoned --help`` lists them.

Light on purpose: ``zoned --help`` builds its parser from this alone and imports a
command's module (and what it runs: the engine, the simulator, numpy) only to run it.
``EXIT`` is the one list of exit statuses: each command's ``--help`` epilog and the table
in docs/cli.md are made from it (``exit_codes_markdown``; a test keeps the page in step).
"""

from __future__ import annotations

import argparse
from typing import Any

HELP: dict[str, str] = {
    "check": "validate declarations and report every problem",
    "topology": "show NUMA nodes, fake-NUMA state and what to fix",
    "plan": "show which nodes each container would get at admission",
    "simulate": "run the engine on a simulated host, in virtual time",
    "demo": "show the overcommit ladder on a simulated host",
    "run": "run the daemon",
    "status": "ask the running daemon how things stand",
    "lend": "give a pool node to a container now",
    "reclaim": "take a lent node back to the pool now",
    "events": "follow decisions as they happen (Ctrl-C ends)",
    "reload": "re-read the configuration; a bad one is refused",
    "exec": "run a command inside a container from its first instruction",
    "adopt": "move running processes (all threads) into a container",
    "usage": "how much memory each container uses, counted three ways (zones, charge, mapped)",
    "sharing": "pages each container maps on the shared zone or on other containers' nodes",
    "shared": "warm declared shared paths into the shared zone and show where pages are",
    "oci-hook": "OCI createRuntime hook: give an engine's container its zone (state on stdin)",
}

USAGE_ERROR = (2, "the command line is wrong (a usage error; the message says what)")
CONFIG_ERROR = (78, "the configuration is invalid (EX_CONFIG; every problem as file:line:col)")
NO_DAEMON = "no daemon answers on the socket"

OVERRIDE_EXIT = (
    (0, "the hand-over started (with --wait: it completed)"),
    (1, f"refused (the reason is printed), or {NO_DAEMON}"),
    (3, "with --wait: the hand-over failed (the daemon gave up on it)"),
    (4, "with --wait: cancelled (a container it involved vanished)"),
    (5, "with --wait: --timeout passed first (the hand-over goes on; zoned status shows it)"),
)

EXIT: dict[str, tuple[tuple[int, str], ...]] = {
    "check": (
        (0, "every file is valid (warnings do not fail it)"),
        (1, "a file has a problem (each is printed as file:line:col)"),
    ),
    "topology": (
        (0, "the topology was shown (warnings included)"),
        (1, "the topology cannot be read"),
        CONFIG_ERROR,
    ),
    "plan": (
        (0, "the declared containers fit; the placement was shown"),
        (1, "the topology cannot be read, or the containers' min values do not fit the pool"),
        (78, "the configuration is invalid, or this host cannot hold it (one node)"),
    ),
    "simulate": (
        (0, "the run finished (OOM kills in it are reported, not an error)"),
        (1, "the plot cannot be drawn"),
        (78, "the scenario is invalid (file:line:col)"),
    ),
    "demo": (
        (0, "the run finished"),
        (1, "the plot cannot be drawn"),
    ),
    "run": (
        (0, "stopped by SIGTERM or SIGINT"),
        (1, "could not start (no cgroup hierarchy, the socket is taken, no permission)"),
        CONFIG_ERROR,
    ),
    "status": (
        (0, "shown; with --watch: ended by Ctrl-C or after --count snapshots"),
        (1, f"{NO_DAEMON}; with --watch: the daemon went away"),
    ),
    "lend": OVERRIDE_EXIT,
    "reclaim": OVERRIDE_EXIT,
    "events": (
        (0, "ended by Ctrl-C"),
        (1, f"{NO_DAEMON}, or the daemon closed the connection (stopped)"),
    ),
    "reload": (
        (0, "applied, nothing changed, or deferred until the hand-overs in flight end"),
        (1, f"refused (the running configuration is kept), or {NO_DAEMON}"),
    ),
    "exec": (
        (0, "CMD's own status, whatever it is (0 to 255)"),
        (125, "zoned failed (no such container, no cgroup: is the daemon running?)"),
        (126, "CMD cannot run"),
        (127, "CMD is not found"),
        (128, "and up (128+N): CMD was killed by signal N"),
    ),
    "adopt": (
        (0, "every pid was moved"),
        (1, "a pid was refused (then none is moved) or could not be moved"),
        CONFIG_ERROR,
    ),
    "usage": (
        (0, "shown"),
        (1, "the cgroups or /proc cannot be read"),
        CONFIG_ERROR,
    ),
    "sharing": (
        (0, "shown (and, with --promote, every file moved)"),
        (1, "the cgroups or /proc cannot be read"),
        CONFIG_ERROR,
    ),
    "oci-hook": (
        (0, "the container has its zone, or starts unzoned as the policy says"),
        (1, "refused, or no daemon (with --when-down fail): the runtime fails the start"),
    ),
    "shared": (
        (0, "done: every file warmed or located, or the tmpfs mounted"),
        (1, "a file could not be warmed or located, or the mount failed"),
        CONFIG_ERROR,
    ),
}


def exit_codes(name: str) -> tuple[tuple[int, str], ...]:
    """``name``'s exit statuses, the usage error (2) included, in numeric order."""
    return tuple(sorted((*EXIT[name], USAGE_ERROR)))


def epilog(name: str) -> str:
    """The ``exit status:`` block ending ``zoned NAME --help``."""
    lines = ["exit status:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in exit_codes(name)]
    return "\n".join(lines)


def describe(name: str, description: str) -> dict[str, Any]:
    """``add_parser`` keywords for ``name``: its help line, ``description`` (already
    wrapped: what it does, what it reads, examples) and the exit statuses as epilog."""
    return {
        "help": HELP[name],
        "description": description,
        "epilog": epilog(name),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def exit_codes_markdown() -> str:
    """The exit-status table of docs/cli.md, made from ``EXIT``."""
    lines = ["| command | status | meaning |", "|---|---|---|"]
    for name in HELP:
        for code, meaning in exit_codes(name):
            lines.append(f"| `zoned {name}` | {code} | {meaning} |")
    return "\n".join(lines)
