"""What the two real cgroup backends share: the host read under injected roots, and the
:class:`~zoned.backends.fdloop.FdLoop` that runs their operations and collects their
kernel notifications.

The loop is public (:attr:`FdLoopBackend.loop`) so the daemon can watch its own fds
(control socket, signals) in the same epoll as the backend's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from zoned.backends.base import Backend
from zoned.backends.fdloop import FdLoop
from zoned.kernel.topology import read_node_memory, read_topology
from zoned.kernel.zoneinfo import read_pcp_free
from zoned.model.host import NodeMemory, OpResult
from zoned.model.zonemap import Topology


class FdLoopBackend(Backend):
    """A backend on the real kernel: ``sys_root`` and ``proc_root`` for what the host has,
    an FdLoop for the clock, the worker operations and the notifications."""

    def __init__(self, loop: FdLoop, *, sys_root: Path, proc_root: Path) -> None:
        self._loop = loop
        self.sys_root = sys_root
        self.proc_root = proc_root

    @property
    def loop(self) -> FdLoop:
        """The loop behind :meth:`wait` and the operations (shared with the daemon)."""
        return self._loop

    def now(self) -> float:
        return self._loop.now()

    def topology(self) -> Topology:
        """Read under the injected sys and proc roots; raises TopologyError."""
        return read_topology(self.sys_root, self.proc_root)

    def node_memory(self) -> Mapping[int, NodeMemory]:
        return {
            n: NodeMemory(total=total, free=free, file=file)
            for n, (total, free, file) in read_node_memory(self.sys_root, self.proc_root).items()
        }

    def node_free_lists(self) -> Mapping[int, int]:
        """From ``<proc_root>/zoneinfo`` (raises TopologyError)."""
        return read_pcp_free(self.proc_root)

    def op_result(self, op: int) -> OpResult:
        return self._loop.op_result(op)
