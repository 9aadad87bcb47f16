"""The Backend contract on SimBackend (see tests/contract/suite.py).

The simulated host lives inside the backend object, so workloads and removals are fixed
when it is built (a :class:`Plan`); a removal is a ``Gone`` fault the clock runs into.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.suite import (
    MIB,
    BackendContract,
    Cap,
    Harness,
    Plan,
    Watch,
    Workload,
    closing,
)
from zoned.backends.base import Backend
from zoned.backends.sim import Alloc, Gone, SimBackend, SimNode, WorkloadSpec
from zoned.backends.sim.state import SimKnobs
from zoned.model.host import EventKind

GONE_AT_S = 1.0  # when a planned removal happens (virtual seconds)


class SimWorkload:
    """The workload the plan gave the container: it starts at ``ensure``."""

    def __init__(self, b: SimBackend, name: str, anon_mib: int) -> None:
        self.b, self.name, self.nbytes = b, name, anon_mib * MIB
        (self.pid,) = b.processes(name)

    def ready(self, watch: Watch, deadline_s: float) -> bool:
        end = self.b.now() + deadline_s
        while self.b.now() < end:
            if not self.b.processes(self.name):
                return False  # killed
            if self.b.usage(self.name).anon >= self.nbytes:
                return True
            watch.pump(0.05)
        pytest.fail(f"{self.name}: allocation not done within {deadline_s} virtual s")

    def stop(self) -> None:
        """The process lives in the simulator: nothing to stop."""


class SimHarness(Harness):
    name = "sim"
    alloc_mib = 100
    oom_mib = 400
    deadline_s = 60.0  # virtual

    def __init__(self) -> None:
        self.lacks = {
            Cap.WRITES: "the simulator has no files: there are no writes to count",
            Cap.RESTART: "the simulated host lives in the backend object; a new instance "
            "is a new host",
        }
        self.plan = Plan()
        self.made: list[SimBackend] = []

    def backend(self, plan: Plan | None = None) -> Backend:
        self.plan = plan or Plan()
        b = SimBackend(
            [SimNode(0, 512 * MIB, base=128 * MIB)] + [SimNode(n, 256 * MIB) for n in (1, 2, 3)],
            workloads={
                name: WorkloadSpec((Alloc(anon=mib * MIB),))
                for name, mib in self.plan.workloads.items()
            },
            faults=[Gone(name, GONE_AT_S) for name in sorted(self.plan.removed)],
            knobs=SimKnobs(node_reclaim=True),
        )
        self.made.append(b)
        return b

    def nodes(self) -> list[int]:
        return [1, 2, 3]

    def missing_node(self) -> int:
        return 9

    def spawn(self, b: Backend, name: str, anon_mib: int) -> Workload:
        assert isinstance(b, SimBackend)
        assert self.plan.workloads.get(name) == anon_mib, "the test's plan must name it"
        return SimWorkload(b, name, anon_mib)

    def remove(self, watch: Watch, name: str) -> None:
        assert name in self.plan.removed, "the test's plan must name it"
        assert watch.b.now() < GONE_AT_S
        watch.until(
            lambda e: e.kind is EventKind.GONE and e.container == name,
            2 * GONE_AT_S,
            f"the planned removal of {name}",
        )

    def close(self) -> None:
        for b in self.made:
            b.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    with closing(SimHarness()) as h:
        yield h


class TestSimContract(BackendContract):
    """Every contract item on the simulated host."""
