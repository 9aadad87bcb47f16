"""The simulated host: a deterministic ``Backend`` on a virtual clock.

Use it like any backend (the engine drives it through ``zoned.backends.base.Backend``),
or run a scenario without zoned to get a static baseline::

    from zoned.backends.sim import Isolation, load_scenario
    from zoned.baseline import run_baseline

    sc = load_scenario("scenarios/burst.yaml")
    sim = sc.backend()                        # ZONES; the engine calls ensure() etc.
    result = run_baseline(sc, Isolation.NONE)  # no isolation, no engine
    print(result.stats.oom_kills, len(result.history))

Modules: ``host`` (the model, ``SimBackend``), ``workload`` (the workload language),
``faults`` (injectable faults), ``scenario`` (scenario files), ``reaction`` (the engine's
reaction delay). Each documents its format.
"""

from __future__ import annotations

from zoned.backends.sim.faults import (
    Fault,
    Gone,
    PartialMigration,
    SetNodesError,
    SlowMigration,
    parse_faults,
)
from zoned.backends.sim.host import SimBackend
from zoned.backends.sim.scenario import Scenario, load_scenario, loads_scenario
from zoned.backends.sim.state import Isolation, SimKnobs, SimNode
from zoned.backends.sim.stats import ContainerStats, Sample, SimStats
from zoned.backends.sim.workload import (
    Alloc,
    Exit,
    Free,
    Hold,
    Phase,
    Ramp,
    Walk,
    WorkloadSpec,
    parse_workload,
)

__all__ = [
    "Alloc",
    "ContainerStats",
    "Exit",
    "Fault",
    "Free",
    "Gone",
    "Hold",
    "Isolation",
    "PartialMigration",
    "Phase",
    "Ramp",
    "Sample",
    "Scenario",
    "SetNodesError",
    "SimBackend",
    "SimKnobs",
    "SimNode",
    "SimStats",
    "SlowMigration",
    "Walk",
    "WorkloadSpec",
    "load_scenario",
    "loads_scenario",
    "parse_faults",
    "parse_workload",
]
