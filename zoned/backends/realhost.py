"""What the two real cgroup backends share: the host read under injected roots, and the
:class:`~zoned.backends.fdloop.FdLoop` that runs their operations and collects their
kernel notifications.

The loop is public (:attr:`FdLoopBackend.loop`) so the daemon can watch its own fds
(control socket, signals) in the same epoll as the backend's.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from pathlib import Path

from zoned.backends.base import Backend
from zoned.backends.fdloop import FdLoop, Outcome
from zoned.errors import TopologyError, Unsupported, WriteRefused
from zoned.kernel.nodereclaim import has_node_reclaim, reclaim_node
from zoned.kernel.topology import read_node_memory, read_topology
from zoned.kernel.zoneinfo import read_min_watermarks, read_pcp_free
from zoned.model.host import NodeMemory, OpKind, OpResult
from zoned.model.sizes import format_size
from zoned.model.zonemap import Topology

log = logging.getLogger(__name__)


class FdLoopBackend(Backend):
    """A backend on the real kernel: ``sys_root`` and ``proc_root`` for what the host has,
    an FdLoop for the clock, the worker operations and the notifications."""

    def __init__(self, loop: FdLoop, *, sys_root: Path, proc_root: Path) -> None:
        self._loop = loop
        self.sys_root = sys_root
        self.proc_root = proc_root
        self._reserve: dict[int, int] | None = None

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
        reserve = self._reserves()
        return {
            n: NodeMemory(total=total, free=free, file=file, reserve=reserve.get(n, 0))
            for n, (total, free, file) in read_node_memory(self.sys_root, self.proc_root).items()
        }

    def _reserves(self) -> Mapping[int, int]:
        """The nodes' ``min`` watermarks, read once: they change only with
        ``vm.min_free_kbytes`` or memory hot-plug, and ``/proc/zoneinfo`` is too long to
        read every step. {} (no reserve) where it cannot be read."""
        if self._reserve is None:
            try:
                self._reserve = read_min_watermarks(self.proc_root)
            except TopologyError as exc:
                log.warning("no min watermarks, capacities count whole nodes: %s", exc)
                self._reserve = {}
        return self._reserve

    def node_free_lists(self) -> Mapping[int, int]:
        """From ``<proc_root>/zoneinfo`` (raises TopologyError)."""
        return read_pcp_free(self.proc_root)

    def op_result(self, op: int) -> OpResult:
        return self._loop.op_result(op)

    def can_reclaim_node(self, node: int) -> bool:
        return has_node_reclaim(self.sys_root, node)

    def start_node_reclaim(self, name: str, node: int, nbytes: int, deadline_s: float) -> int:
        """Write ``nbytes`` to ``nodeN/reclaim`` on a worker (it blocks while the kernel
        reclaims). ``reclaimed`` is the node's used memory before minus after, from
        ``nodeN/meminfo`` (a lower bound while others allocate there)."""
        if nbytes <= 0:
            raise ValueError("node reclaim needs a positive byte count")
        if not self.can_reclaim_node(node):
            raise Unsupported(f"node{node}/reclaim: not on this kernel (6.16 or later has it)")

        def used() -> int:
            total, free, _ = read_node_memory(self.sys_root, self.proc_root).get(node, (0, 0, 0))
            return total - free

        def op() -> Outcome:
            before = used()
            short: WriteRefused | None = None
            try:
                reclaim_node(self.sys_root, node, nbytes)
            except WriteRefused as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                short = exc
            got = max(0, before - used())
            if short is not None:
                msg = f"node {node}: reclaimed {format_size(got)} of {format_size(nbytes)} (EAGAIN)"
                return Outcome(ok=False, reclaimed=got, error=msg, errno=errno.EAGAIN)
            return Outcome(reclaimed=got)

        return self._loop.submit(OpKind.NODE_RECLAIM, name, op, deadline_s)
