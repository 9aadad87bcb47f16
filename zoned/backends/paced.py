"""The simulated host paced to wall-clock time, for running the daemon without cgroups.

``PacedSim(sim, speed=1.0, quantum_s=0.25)`` wraps a :class:`~zoned.backends.sim.SimBackend`:
its virtual clock follows the monotonic clock (``speed`` virtual seconds per real second)
and file descriptors (the daemon's control socket, its signal pipe) are watched by a real
:class:`~zoned.backends.fdloop.FdLoop` exposed as ``loop``.

Why a quantum: the simulator cannot say when its next event will come without running
ahead of the wall clock (and the engine's actions change that future), so while waiting
for fds it wakes every ``quantum_s`` real seconds to move the simulated world up to now.
That periodic wake-up belongs to the simulation only; the real backends have none.

Thread-safety as for any backend: the engine's thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from zoned.backends.base import Backend
from zoned.backends.fdloop import FdCallback, FdLoop
from zoned.backends.sim.host import SimBackend
from zoned.config.decl import ContainerDecl
from zoned.model.host import CgroupState, Event, NodeMemory, OpResult, Usage
from zoned.model.zonemap import Topology


class PacedSim(Backend):
    """A SimBackend whose clock follows real time; see the module docstring."""

    name = "sim"

    def __init__(
        self,
        sim: SimBackend,
        *,
        speed: float = 1.0,
        quantum_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0 or quantum_s <= 0:
            raise ValueError("speed and quantum_s must be positive")
        self.sim = sim
        self.speed = speed
        self.quantum_s = quantum_s
        self._clock = clock
        self._t0 = clock() - sim.now() / speed
        self.loop = FdLoop(workers=1, clock=clock, name="zoned-sim")
        self.wakeups = 0  # fd-loop rounds, for the footprint bench

    # -- pacing --------------------------------------------------------------------------

    def _target(self) -> float:
        return (self._clock() - self._t0) * self.speed

    def _catch_up(self) -> list[Event]:
        """Run the simulated world up to the wall clock; return what happened on the way."""
        out: list[Event] = []
        target = self._target()
        while self.sim.now() < target - 1e-9:
            out.extend(self.sim.wait(target - self.sim.now()))
        return out

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None:
        self.loop.add_fd(fd, mask, callback)

    def remove_fd(self, fd: int) -> None:
        self.loop.remove_fd(fd)

    def poll_once(self, timeout_s: float | None) -> list[Event]:
        """One round: the simulated world up to now, then fds for at most a quantum."""
        events = self._catch_up()
        if events:
            return events
        limit = self.quantum_s if timeout_s is None else min(timeout_s, self.quantum_s)
        self.wakeups += 1
        events = self.loop.poll_once(limit)
        events.extend(self._catch_up())
        return events

    def wait(self, timeout_s: float | None) -> list[Event]:
        end = None if timeout_s is None else self._clock() + timeout_s
        while True:
            left = None if end is None else max(0.0, end - self._clock())
            events = self.poll_once(left)
            if events or (end is not None and self._clock() >= end):
                return events

    # -- the rest is the simulator's -----------------------------------------------------

    def now(self) -> float:
        return self.sim.now()

    def topology(self) -> Topology:
        return self.sim.topology()

    def node_memory(self) -> Mapping[int, NodeMemory]:
        return self.sim.node_memory()

    def existing(self) -> Mapping[str, CgroupState]:
        return self.sim.existing()

    def ensure(self, decl: ContainerDecl, nodes: frozenset[int]) -> CgroupState:
        return self.sim.ensure(decl, nodes)

    def release(self, name: str) -> None:
        self.sim.release(name)

    def state(self, name: str) -> CgroupState:
        return self.sim.state(name)

    def usage(self, name: str) -> Usage:
        return self.sim.usage(name)

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        return self.sim.start_set_nodes(name, nodes, deadline_s)

    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        return self.sim.start_reclaim(name, nbytes, deadline_s)

    def can_reclaim_node(self, node: int) -> bool:
        return self.sim.can_reclaim_node(node)

    def start_node_reclaim(self, name: str, node: int, nbytes: int, deadline_s: float) -> int:
        return self.sim.start_node_reclaim(name, node, nbytes, deadline_s)

    def op_result(self, op: int) -> OpResult:
        return self.sim.op_result(op)

    def arm_tripwire(self, name: str, nbytes: int) -> None:
        self.sim.arm_tripwire(name, nbytes)

    def processes(self, name: str) -> Sequence[int]:
        return self.sim.processes(name)

    def close(self) -> None:
        self.loop.close()
