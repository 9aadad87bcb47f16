"""The commands' names and one-line help, in the order ``zoned --help`` lists them.

Light on purpose: ``zoned --help`` builds its parser from this alone and imports a
command's module (and what it runs: the engine, the simulator, numpy) only to run it.
"""

from __future__ import annotations

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
    "usage": "each container's memory under the zones, static and partial ownership models",
    "sharing": "pages each container maps on the shared zone or on other containers' nodes",
    "shared": "warm declared shared paths into the shared zone and show where pages are",
    "oci-hook": "OCI createRuntime hook: give an engine's container its zone (state on stdin)",
}
