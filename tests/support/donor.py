"""A simulated donor whose migration leaves page cache behind (node-reclaim tests)."""

from __future__ import annotations

from zoned.backends.sim import PartialMigration, SimBackend, SimKnobs, SimNode
from zoned.backends.sim.workload import parse_workload
from zoned.model.sizes import MIB

LEFT = 64 * MIB  # the page cache a migration off the donor's node leaves there


def donor_host(node_reclaim: bool, cls: type[SimBackend] = SimBackend) -> SimBackend:
    """Five 512 MiB nodes; ``batch``'s workload: 40 MiB anon, then 120 MiB of page cache. A
    migration of ``batch`` leaves LEFT behind, cache first (``PartialMigration``), as the
    kernel leaves unmapped page cache. ``node_reclaim``: the kernel has nodeN/reclaim.
    ``cls``: a SimBackend subclass to build instead."""
    work = {"batch": {"phases": [{"anon": "40M"}, {"file": "120M"}, {"idle_s": 600}]}}
    return cls(
        [SimNode(i, 512 * MIB) for i in range(5)],
        workloads={k: parse_workload(v) for k, v in work.items()},
        faults=[PartialMigration(container="batch", leave=LEFT)],
        knobs=SimKnobs(node_reclaim=node_reclaim, leave_behind=0),
    )
