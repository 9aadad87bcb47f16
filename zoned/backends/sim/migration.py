"""The simulated host's slow operations: ``cpuset.mems`` writes that migrate pages, and
directed reclaim, each advanced tick by tick, with injected faults."""

from __future__ import annotations

import errno as errno_mod

from zoned.backends.sim.faults import Fault, PartialMigration, SetNodesError, SlowMigration
from zoned.backends.sim.physics import SimPhysics
from zoned.backends.sim.state import _Ctr, _Op
from zoned.model.host import (
    EventKind,
    OpKind,
    OpResult,
)
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size

_RECLAIMS = (OpKind.RECLAIM, OpKind.NODE_RECLAIM)


class SimMigration(SimPhysics):
    """Operations on top of the memory model: set nodes (migrate), reclaim."""

    def _new_op(self, kind: OpKind, name: str, deadline_s: float, **kw: object) -> _Op:
        op = _Op(
            id=self._next_op,
            kind=kind,
            container=name,
            called=self._tick,
            deadline=self._tick + max(1, self._ticks(deadline_s)),
            **kw,  # type: ignore[arg-type]
        )
        self._next_op += 1
        self._ops[op.id] = op
        return op

    def _take_fault(self, c: _Ctr, kinds: tuple[type, ...]) -> Fault | None:
        for i, f in enumerate(self._faults):
            if not isinstance(f, kinds) or self._fault_uses[i] <= 0:
                continue
            assert isinstance(f, (SetNodesError, PartialMigration, SlowMigration))
            if f.container not in (None, c.name) or self.now() + 1e-9 < f.after_s:
                continue
            self._fault_uses[i] -= 1
            return f
        return None

    def _land_writes(self, c: _Ctr) -> None:
        if c.high_due is not None and c.high_due[0] <= self._tick:
            nbytes = c.high_due[1]
            c.high_due = None
            self._set_high(c, nbytes)
        if c.ops and c.ops[0].started is None and c.ops[0].not_before <= self._tick:
            self._begin_set_nodes(c, c.ops[0])

    def _set_high(self, c: _Ctr, nbytes: int) -> None:
        """memory.high := ``nbytes``. At or below current usage it fires at once."""
        c.tripwire = nbytes
        c.tripwire_fired = False
        if c.usage >= nbytes:
            self._fire_tripwire(c)

    def _begin_set_nodes(self, c: _Ctr, op: _Op) -> None:
        op.started = self._tick
        bad = op.nodes - self._memory_nodes()
        err = self._take_fault(c, (SetNodesError,))
        if bad:
            self._fail_set(c, op, f"no memory on {format_nodelist(bad)}", errno_mod.EINVAL)
            return
        if not op.nodes and c.usage > 0:
            self._fail_set(c, op, "cannot empty the mems of a populated cpuset", errno_mod.ENOSPC)
            return
        if isinstance(err, SetNodesError):
            self._fail_set(c, op, "injected fault", err.errno)
            return
        op.from_nodes = c.nodes - op.nodes
        c.nodes = op.nodes or self._memory_nodes()
        on_from = sum(c.anon.get(n, 0) + c.file.get(n, 0) for n in op.from_nodes)
        keep = min(self.knobs.leave_behind, on_from)
        partial = self._take_fault(c, (PartialMigration,))
        if isinstance(partial, PartialMigration):
            extra = partial.leave if partial.leave is not None else 0
            if partial.fraction is not None:
                extra = int(on_from * partial.fraction)
            keep = min(on_from, max(keep, extra))
        op.keep = keep
        bw = self.knobs.migrate_bandwidth
        slow = self._take_fault(c, (SlowMigration,))
        if isinstance(slow, SlowMigration):
            bw = slow.bandwidth if slow.bandwidth is not None else int(bw / (slow.factor or 1.0))
        op.bw_tick = self._per_tick(bw)
        c.migrations += 1
        if on_from <= keep:
            self._finish_set(c, op)

    def _fail_set(self, c: _Ctr, op: _Op, why: str, code: int) -> None:
        self._report(
            op,
            ok=False,
            error=f"cpuset.mems {format_nodelist(op.nodes)}: {errno_mod.errorcode.get(code, code)}"
            f" ({why})",
            errno=code,
        )
        self._pop_set(c, op)

    def _finish_set(self, c: _Ctr, op: _Op) -> None:
        if not op.reported:
            self._report(op, ok=True)
        self._pop_set(c, op)

    def _pop_set(self, c: _Ctr, op: _Op) -> None:
        if c.ops and c.ops[0] is op:
            c.ops.pop(0)
            if c.ops and c.ops[0].not_before <= self._tick:
                self._begin_set_nodes(c, c.ops[0])

    def _report(self, op: _Op, ok: bool, error: str = "", errno: int | None = None) -> None:
        op.reported = True
        c = self._ctrs[op.container]
        left = sum(
            c.anon.get(n, 0) + c.file.get(n, 0)
            for n in c.anon.keys() | c.file.keys()
            if n not in c.nodes
        )
        res = OpResult(
            op=op.id,
            kind=op.kind,
            container=op.container,
            ok=ok,
            nodes=c.nodes if op.kind is OpKind.SET_NODES else frozenset(),
            left_behind=left if op.kind is OpKind.SET_NODES else 0,
            reclaimed=op.done_bytes if op.kind in _RECLAIMS else 0,
            error=error,
            errno=errno,
            seconds=(self._tick - op.called) * self._dt,
        )
        self._results[op.id] = res
        detail = "ok" if ok else (errno_mod.errorcode.get(errno, str(errno)) if errno else error)
        self._emit(
            EventKind.OP_FINISHED,
            c,
            detail=f"{op.kind.value} {detail}",
            op=op.id,
            ok=ok,
            errno=errno,
            value=res.reclaimed if op.kind in _RECLAIMS else res.left_behind,
        )

    def _run_ops(self, c: _Ctr, k: int) -> None:
        if c.ops and c.ops[0].started is not None and c.ops[0].started <= k:
            self._migrate_tick(c, c.ops[0])
        for op in list(c.reclaims):
            self._reclaim_tick(c, op)
        for op in c.ops + c.reclaims:
            if not op.reported and self._tick >= op.deadline:
                self._report(
                    op,
                    ok=False,
                    error=f"{op.kind.value} not done by its deadline",
                    errno=errno_mod.ETIMEDOUT,
                )
                if op.kind in _RECLAIMS:
                    c.reclaims.remove(op)

    def _migrate_tick(self, c: _Ctr, op: _Op) -> None:
        budget = op.bw_tick
        on_from = sum(c.anon.get(n, 0) + c.file.get(n, 0) for n in op.from_nodes)
        budget = min(budget, on_from - op.keep)
        moved = 0
        stuck = False
        dest = sorted(c.nodes)
        # anon first: what stays behind (``keep``) is cache first, like shared libraries
        for kind in ("anon", "file"):
            d = c.anon if kind == "anon" else c.file
            for n in sorted(op.from_nodes):
                while budget > 0 and d.get(n, 0) > 0:
                    chunk = min(budget, d[n])
                    room = self._free_on(dest)
                    if room < chunk:
                        self._reclaim_cache(c, chunk - room, dest, own_only=False)
                        room = self._free_on(dest)
                    if room <= 0:
                        stuck = True
                        break
                    chunk = min(chunk, room)
                    self._put(c, kind, n, -chunk)
                    left = chunk
                    for m in dest:
                        take = min(left, self._nodes[m].size - self._used[m])
                        if take > 0:
                            self._put(c, kind, m, take)
                            left -= take
                    budget -= chunk
                    moved += chunk
        c.bytes_migrated += moved
        op.done_bytes += moved
        on_from = sum(c.anon.get(n, 0) + c.file.get(n, 0) for n in op.from_nodes)
        if stuck and self.knobs.migrate_overflow == "oom_kill":
            for n in op.from_nodes:
                if c.file.get(n, 0):
                    self._put(c, "file", n, -c.file[n])
            if any(c.anon.get(n, 0) for n in op.from_nodes) and c.alive:
                self._oom_kill(c, memcg=False)
            stuck = False
            on_from = 0
        if on_from <= op.keep or stuck or moved == 0:
            self._finish_set(c, op)

    def _reclaim_tick(self, c: _Ctr, op: _Op) -> None:
        if op.not_before > self._tick:
            return
        budget = min(self._per_tick(self.knobs.reclaim_rate), op.target - op.done_bytes)
        if op.kind is OpKind.NODE_RECLAIM:
            self._node_reclaim_tick(c, op, budget)
            return
        while budget > 0 and c.file:
            n = max(c.file, key=lambda m: (c.file[m], -m))
            take = min(budget, c.file[n])
            self._put(c, "file", n, -take)
            budget -= take
            op.done_bytes += take
        if op.done_bytes >= op.target or not c.file:
            self._finish_reclaim(c, op)

    def _node_reclaim_tick(self, c: _Ctr, op: _Op, budget: int) -> None:
        """nodeN/reclaim: page cache on the node, whoever's (``c``'s first), no anon (no
        swap)."""
        (node,) = op.nodes
        got = self._reclaim_cache(c, budget, [node], own_only=False)
        op.done_bytes += got
        left = sum(o.file.get(node, 0) for o in self._ctrs.values())
        if op.done_bytes >= op.target or left == 0 or got == 0:
            self._finish_reclaim(c, op)

    def _finish_reclaim(self, c: _Ctr, op: _Op) -> None:
        if not op.reported:
            if op.done_bytes >= op.target:
                self._report(op, ok=True)
            else:
                self._report(
                    op,
                    ok=False,
                    error=f"reclaimed {format_size(op.done_bytes)} of {format_size(op.target)}",
                    errno=errno_mod.EAGAIN,
                )
        if op in c.reclaims:
            c.reclaims.remove(op)

    def _migrate_now(self, c: _Ctr, nodes: frozenset[int]) -> None:
        """Move pages off nodes outside ``nodes`` at once (ensure on an existing cgroup)."""
        for kind in ("anon", "file"):
            d = c.anon if kind == "anon" else c.file
            for n in [m for m in sorted(d) if m not in nodes]:
                amount = d[n]
                left = amount
                for m in sorted(nodes):
                    take = min(left, self._nodes[m].size - self._used[m])
                    if take > 0:
                        self._put(c, kind, n, -take)
                        self._put(c, kind, m, take)
                        left -= take

    def _vanish(self, name: str) -> None:
        c = self._ctrs.get(name)
        if c is None or c.gone:
            return
        for op in c.ops + c.reclaims:
            if not op.reported:
                self._report(op, ok=False, error="cgroup vanished", errno=errno_mod.ENOENT)
        c.ops.clear()
        c.reclaims.clear()
        self._free_all(c)
        c.gone = True
        c.pid = None
        c.restart_at = None
        self._emit(EventKind.GONE, c, detail="cgroup removed")
