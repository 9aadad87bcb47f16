"""The simulated host: nodes, containers, page cache and anon, reclaim, migration, OOM.

Everything runs on a virtual clock in fixed ticks (``SimKnobs.step_ms``, 10 ms by
default) and is deterministic given its inputs: the only randomness is seeded (workload
walks). ``wait`` jumps straight over quiet stretches (no allocation, no operation in
flight), so a 30-minute scenario of mostly steady containers takes a fraction of a second.

The model, tick by tick, for each live container in creation order:

* **Allocation.** The workload's pending bytes are allocated at ``alloc_rate`` (or the
  phase's own rate), anon first, then page cache (reads). Pages go only to the
  container's allowed nodes (its cpuset), lowest node id first. When those nodes are full,
  page cache on them is reclaimed first (the container's own, then other containers'
  cache on the same nodes, as the node's LRU would), at ``reclaim_rate``; the time that
  takes is "some" stall. Anonymous memory is never reclaimed: there is **no swap**.
* **OOM.** When the allowed nodes hold no more free memory or reclaimable cache, the
  allocation blocks ("some" and "full" stall). After ``oom_after_ms`` (10 ms: one tick) of
  blocking the kernel kills the workload (measured: the cpuset-constrained OOM kill came
  after ~10 ms of stall, before any PSI trigger fired). Its anon is freed, its page cache
  stays charged. The event is OOM_KILL alone for a cpuset OOM (``oom_kill`` counts, ``oom``
  does not); with a memcg limit (``Isolation.MEMCG``) it is OOM then OOM_KILL.
* **Tripwire = memory.high.** ``arm_tripwire(n)`` fires one TRIPWIRE event when a charge
  takes usage (anon + cache, all nodes) over ``n``. While usage is above it the container's
  own cache is reclaimed first, then allocation is throttled to ``throttle_rate`` and each
  throttled tick counts as "some" stall: the slowdown that buys zoned time (measured on
  6.1). ``throttle_rate=None`` models a v1 threshold: event only, no throttling.
* **PSI.** Per container, "some" stall summed over a sliding ``psi_window_ms``; when it
  reaches ``psi_some_ms`` one PRESSURE event fires, at most one per window.
* **Migration.** ``start_set_nodes`` changes the allowed nodes at once (new allocations go
  to the new nodes, as the kernel does before it migrates) and moves the pages on removed
  nodes at ``migrate_bandwidth`` (default 125 MiB/s: measured 300 MiB in 2.4 s under
  TCG; real hardware is much faster). ``leave_behind`` bytes (default 3 MiB, measured:
  shared-library pages) stay on the removed nodes, cache first. Destination nodes make
  room by reclaiming page cache; pages that still do not fit stay behind
  (``migrate_overflow="leave"``, the kernel's way: its migration allocations use
  __GFP_THISNODE, which never OOM-kills) or, with ``"oom_kill"``, cache is dropped and
  the container is OOM-killed. Writes to one container are serialized, as the kernel's
  blocking write is. A write past its deadline ends with ok=False, errno ETIMEDOUT, and
  the migration finishes in the background.
* **Reclaim.** ``start_reclaim`` reclaims the container's page cache (node with the most
  first) at ``reclaim_rate``; less than asked ends with ok=False, errno EAGAIN, as
  ``memory.reclaim`` does.
* **Node memory.** free = size - base use - what every container holds on the node.

* **Restarts.** A workload with ``restart`` starts again ``restart_delay_s`` after an
  OOM kill; with ``restart_max_s`` the delay doubles per kill in a row up to it (a
  crash-loop backoff), and a life of 2 x ``restart_max_s`` resets it.
* **The engine's reaction.** With ``reaction_p50_ms`` > 0 every write the engine makes
  between two ``wait`` calls (one engine step: its reads, decision and writes) lands
  after one seeded log-normal draw (``zoned.backends.sim.reaction``): a ``cpuset.mems``
  write begins, a reclaim starts, ``memory.high`` changes only then.

Assumptions: no swap; each workload is one process (a kill ends it); "some" stall is
every stalled ms (reclaim at ``reclaim_rate``, throttled or blocked ticks), "full" only
ticks with no progress at all (blocked, or throttled to nothing); cache freed by an
exiting or killed process stays charged until reclaimed; there is no kswapd (reclaim
happens in the allocating task, or through ``start_reclaim``).

Beyond ``Backend``: ``advance(seconds)`` and ``run_until(at_s)`` run the clock whatever
happens; ``history`` (a ``Sample`` every ``sample_ms``), ``events`` (all events ever
reported), ``stats()`` (``SimStats``), ``ticks_worked`` (ticks computed one by one).

Isolation modes (for baselines): ``ZONES`` (containers use the nodes they are given;
with no engine calling ``start_set_nodes`` they keep their initial nodes: static zones),
``NONE`` (every container may use every unreserved node) and ``MEMCG`` (the same, plus a
fixed memory.max per container: OOM when exceeded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from zoned.backends.sim.faults import Fault, Gone
from zoned.backends.sim.reaction import Reaction
from zoned.backends.sim.state import Isolation, SimKnobs, SimNode, _Ctr, _Op, _TickState
from zoned.backends.sim.stats import Sample
from zoned.backends.sim.workload import Frees, WorkloadRun, WorkloadSpec
from zoned.config.decl import AmountUnit, ContainerDecl
from zoned.model.host import (
    Event,
    EventKind,
    NodeUsage,
    OpResult,
)
from zoned.model.sizes import format_size

_NEVER = 1 << 62  # a tick no run reaches: a finished workload never wakes


class SimPhysics:
    """The simulated host's state and its memory, tick by tick (the model above)."""

    def __init__(
        self,
        nodes: Sequence[SimNode],
        *,
        workloads: Mapping[str, WorkloadSpec] | None = None,
        faults: Sequence[Fault] = (),
        knobs: SimKnobs | None = None,
        isolation: Isolation = Isolation.ZONES,
        reserved: Iterable[int] = (0,),
        memcg_limits: Mapping[str, int] | None = None,
        parent: str = "zoned",
    ) -> None:
        if not nodes:
            raise ValueError("a host needs at least one node")
        self.knobs = knobs or SimKnobs()
        self.isolation = isolation
        self._nodes = {n.id: n for n in sorted(nodes, key=lambda n: n.id)}
        self._used = {n.id: n.base for n in self._nodes.values()}  # base + containers
        self._workloads = dict(workloads or {})
        self._faults = list(faults)
        self._fault_uses = [getattr(f, "times", 1) for f in self._faults]
        self._gone_applied: set[int] = set()
        self._reserved = frozenset(reserved)
        self._memcg_limits = dict(memcg_limits or {})
        self._parent = parent
        self._ctrs: dict[str, _Ctr] = {}
        self._tick = 0
        self._pending: list[Event] = []
        self._ops: dict[int, _Op] = {}
        self._results: dict[int, OpResult] = {}
        self._next_op = 1
        self.events: list[Event] = []  # every event ever reported, in order
        self.history: list[Sample] = []  # one Sample every sample_ms
        self.ticks_worked = 0  # ticks computed one by one (the rest were jumped over)
        k = self.knobs
        self._dt = k.step_ms / 1000.0
        self._sample_ticks = max(1, k.sample_ms // k.step_ms)
        self._psi_window = max(1, k.psi_window_ms // k.step_ms)
        self.reaction = Reaction(k.reaction_p50_ms, k.reaction_p99_ms, k.reaction_seed)
        self._step_due: int | None = None  # the tick this engine step's writes land
        self._step_began: int | None = None  # when ``wait`` last handed the engine events

    def _write_due(self) -> int:
        """The tick at which a write made now reaches the kernel: one draw per engine step
        (a step ends when the engine next calls ``wait``), so a step's writes land together,
        in the order made."""
        if not self.reaction.enabled:
            return self._tick
        if self._step_due is None:
            self._step_due = self._tick + self._ticks(self.reaction.draw())
        return self._step_due

    def now(self) -> float:
        return self._tick * self.knobs.step_ms / 1000.0

    def _ticks(self, seconds: float) -> int:
        return max(0, math.ceil(seconds * 1000.0 / self.knobs.step_ms - 1e-9))

    def _per_tick(self, rate: int) -> int:
        return max(1, rate * self.knobs.step_ms // 1000)

    @property
    def unconfined_nodes(self) -> frozenset[int]:
        """The nodes every container may use in the NONE and MEMCG modes."""
        return frozenset(n for n, nd in self._nodes.items() if nd.size > 0) - self._reserved

    def _memory_nodes(self) -> frozenset[int]:
        return frozenset(n for n, nd in self._nodes.items() if nd.size > 0)

    def _default_limit(self, decl: ContainerDecl) -> int:
        if decl.max.unit is AmountUnit.BYTES:
            return decl.max.value
        pool = [self._nodes[n].size for n in sorted(self.unconfined_nodes)]
        mean = sum(pool) // len(pool) if pool else 0
        return decl.max.value * mean

    def _emit(self, kind: EventKind, c: _Ctr | None, **kw: object) -> None:
        e = Event(kind, self.now(), c.name if c else None, **kw)  # type: ignore[arg-type]
        self._pending.append(e)
        self.events.append(e)

    def _start_workload(self, c: _Ctr, tick: int) -> None:
        if c.spec is None:
            return
        start = max(tick, self._ticks(c.spec.start_s)) if c.lives == 0 else tick
        c.run = WorkloadRun(c.spec, c.name, self._dt, start)
        c.lives += 1
        c.pid = 1000 + 100 * c.index + c.lives
        c.restart_at = None
        c.blocked_ms = 0
        c.life_start = tick

    def _restart_delay(self, c: _Ctr) -> float:
        """Seconds from this kill to the restart: ``restart_delay_s``, doubled for each kill
        in a row up to ``restart_max_s`` (a crash-loop backoff); a life that lasted
        2 x ``restart_max_s`` ends the streak (as the kubelet resets its backoff)."""
        assert c.spec is not None
        spec = c.spec
        if spec.restart_max_s is None:
            return spec.restart_delay_s
        if self._tick - c.life_start >= self._ticks(2 * spec.restart_max_s):
            c.kill_streak = 0
        c.kill_streak += 1
        delay: float = spec.restart_delay_s * 2 ** min(c.kill_streak - 1, 62)
        return min(spec.restart_max_s, delay)

    def _asleep(self, c: _Ctr, tick: int) -> int | None:
        """The tick ``c``'s workload next has work, if it is known to wait until then."""
        a = c.asleep
        if a is not None and a[0] is c.run and tick < a[1]:
            return a[1]
        return None

    def _quiet(self) -> bool:
        for c in self._ctrs.values():
            if c.gone:
                continue
            if c.ops or c.reclaims or c.high_due is not None:
                return False
            if self._asleep(c, self._tick) is not None:
                continue
            if c.alive and c.run is not None and c.run.busy():
                return False
            if c.alive and c.run is not None:
                w = c.run.next_wake(self._tick)
                if w is not None and w <= self._tick:
                    return False
        return True

    def _next_wake(self) -> int | None:
        wakes: list[int] = []
        for c in self._ctrs.values():
            if c.gone:
                continue
            if c.restart_at is not None:
                wakes.append(c.restart_at)
            until = self._asleep(c, self._tick)
            if until is not None:
                if until < _NEVER:
                    wakes.append(until)
            elif c.alive and c.run is not None:
                w = c.run.next_wake(self._tick)
                if w is not None:
                    wakes.append(w)
        for i, f in enumerate(self._faults):
            if isinstance(f, Gone) and i not in self._gone_applied:
                wakes.append(self._ticks(f.at_s) - 1)  # the tick that ends at at_s
        later = [w for w in wakes if w > self._tick]
        if len(later) < len(wakes):
            return self._tick  # something due now
        return min(later) if later else None

    def _jump(self, target: int) -> None:
        """Move the clock over a quiet stretch, recording the samples it passes."""
        st = self._sample_ticks
        nxt = (self._tick // st + 1) * st
        while nxt <= target:
            self._tick = nxt
            self._sample()
            nxt += st
        self._tick = target
        for c in self._ctrs.values():
            c.blocked_ms = 0
            self._psi_trim(c)

    def _step(self) -> None:
        """One tick from ``k`` to ``k + 1``. The clock reads ``k + 1`` while the tick is
        worked out, so everything it causes is reported at the tick's end."""
        k = self._tick
        self._tick = k + 1
        self.ticks_worked += 1
        for i, f in enumerate(self._faults):
            if isinstance(f, Gone) and i not in self._gone_applied and self._ticks(f.at_s) <= k + 1:
                self._gone_applied.add(i)
                self._vanish(f.container)
        for c in self._ctrs.values():
            if not c.gone and c.restart_at is not None and c.restart_at <= k:
                c.restarts += 1
                self._start_workload(c, k)
        for c in self._ctrs.values():
            if not c.gone:
                self._land_writes(c)
        states: dict[str, _TickState] = {}
        for c in list(self._ctrs.values()):
            if not c.gone:
                st = self._run_container(c, k)
                if st is not None:
                    states[c.name] = st
        for c in list(self._ctrs.values()):
            if not c.gone and (c.ops or c.reclaims):
                self._run_ops(c, k)
        for c in self._ctrs.values():
            if c.gone:
                continue
            st = states.get(c.name)
            if st is not None:
                self._account(c, st)
            elif not c.ops and not c.reclaims and self._asleep(c, k) is not None:
                # Waiting and moving nothing: its usage only went down since it was last
                # checked (only its own charges raise it, and arm_tripwire checks at once).
                continue
            anon = c.anon_total
            usage = anon + c.file_total  # c.usage, summed once: this runs C times a tick
            if (
                c.tripwire is not None
                and not c.tripwire_fired
                and (usage >= c.tripwire or (st is not None and st.over_high))
            ):
                self._fire_tripwire(c)
            c.peak_usage = max(c.peak_usage, usage)
            c.peak_anon = max(c.peak_anon, anon)
        if self._tick % self._sample_ticks == 0:
            self._sample()

    def _run_container(self, c: _Ctr, k: int) -> _TickState | None:
        run = c.run
        if run is None or not c.alive:
            return None
        if self._asleep(c, k) is not None:
            # What the lines below would do: advance has nothing due, the run stays idle.
            c.blocked_ms = 0
            return None
        frees = run.advance(k, c.anon_total)
        self._apply_frees(c, frees)
        if run.exited:
            self._free_anon(c)
            c.pid = None
            return None
        if not run.busy():
            c.blocked_ms = 0
            # Idle: skip it until its next wake (stepping every container every busy tick
            # made the simulator quadratic in containers).
            w = run.next_wake(k)
            c.asleep = (run, _NEVER if w is None else w)
            return None
        st = _TickState(throttle_left=self._per_tick(self.knobs.throttle_rate or 1))
        budget = self._per_tick(run.rate or self.knobs.alloc_rate)
        want_anon = min(run.pending_anon, budget)
        got_anon = self._charge(c, "anon", want_anon, st) if want_anon else 0
        want_file = min(run.pending_file, budget - got_anon) if not st.blocked else 0
        got_file = self._charge(c, "file", want_file, st) if want_file > 0 else 0
        run.allocated(anon=got_anon, file=got_file)
        st.placed = got_anon + got_file
        if st.blocked:
            c.blocked_ms += self.knobs.step_ms
            if c.blocked_ms >= self.knobs.oom_after_ms:
                self._oom_kill(c, memcg=st.memcg_oom)
        else:
            c.blocked_ms = 0
        return st

    def _account(self, c: _Ctr, st: _TickState) -> None:
        dt = self._dt
        some = st.reclaimed / self.knobs.reclaim_rate
        if st.throttled or st.blocked:
            some = dt
        some = min(dt, some)
        full = dt if st.blocked or (st.throttled and st.placed == 0) else 0.0
        c.some_s += some
        c.full_s += full
        if st.throttled:
            c.throttled_s += dt
        if some > 0:
            c.psi.append((self._tick, some))
            c.psi_sum += some
        self._psi_trim(c)
        limit = self.knobs.psi_some_ms / 1000.0
        if c.psi_sum >= limit - 1e-9 and (
            c.last_pressure is None or self._tick - c.last_pressure >= self._psi_window
        ):
            c.last_pressure = self._tick
            c.pressure_events += 1
            ms = round(c.psi_sum * 1000)
            self._emit(
                EventKind.PRESSURE,
                c,
                detail=f"some {ms}ms/{self.knobs.psi_window_ms}ms",
                value=ms,
            )

    def _psi_trim(self, c: _Ctr) -> None:
        while c.psi and c.psi[0][0] <= self._tick - self._psi_window:
            c.psi_sum -= c.psi.popleft()[1]
        if not c.psi:
            c.psi_sum = 0.0

    def _fire_tripwire(self, c: _Ctr) -> None:
        c.tripwire_fired = True
        c.tripwires += 1
        self._emit(
            EventKind.TRIPWIRE,
            c,
            detail=f"high {format_size(c.usage)} >= {format_size(c.tripwire or 0)}",
            value=c.usage,
        )

    def _sample(self) -> None:
        live = [c for c in self._ctrs.values() if not c.gone]
        self.history.append(
            Sample(
                at=self.now(),
                nodes={c.name: c.nodes for c in live},
                usage={
                    c.name: {
                        n: NodeUsage(anon=c.anon.get(n, 0), file=c.file.get(n, 0))
                        for n in sorted(set(c.anon) | set(c.file))
                        if c.anon.get(n, 0) or c.file.get(n, 0)
                    }
                    for c in live
                },
                free={n: nd.size - self._used[n] for n, nd in self._nodes.items()},
                phase={c.name: self._phase(c) for c in live},
            )
        )

    def _phase(self, c: _Ctr) -> str:
        if c.run is None:
            return "empty"
        if c.pid is None and c.restart_at is not None:
            return "dead"
        if c.pid is None and not c.run.exited:
            return "dead"
        return c.run.label

    def _free_on(self, nodes: Iterable[int]) -> int:
        return sum(self._nodes[n].size - self._used[n] for n in nodes)

    def _put(self, c: _Ctr, kind: str, node: int, nbytes: int) -> None:
        d = c.anon if kind == "anon" else c.file
        d[node] = d.get(node, 0) + nbytes
        if d[node] == 0:
            del d[node]
        self._used[node] += nbytes

    def _charge(self, c: _Ctr, kind: str, want: int, st: _TickState) -> int:
        """Place up to ``want`` bytes of ``kind`` for ``c``; returns what was placed."""
        allowed = want
        usage = c.usage
        if c.limit is not None and usage + allowed > c.limit:
            r = self._reclaim_cache(c, usage + allowed - c.limit, None, own_only=True)
            st.reclaimed += r
            usage -= r
            room = max(0, c.limit - usage)
            if allowed > room:
                allowed = room
                st.blocked = st.memcg_oom = True
        if c.tripwire is not None and usage + allowed > c.tripwire:
            st.over_high = True
            if self.knobs.throttle_rate is not None:
                r = self._reclaim_cache(c, usage + allowed - c.tripwire, None, own_only=True)
                st.reclaimed += r
                usage -= r
                under = max(0, c.tripwire - usage)
                if allowed > under:
                    over = min(allowed - under, st.throttle_left)
                    st.throttle_left -= over
                    st.throttled = True
                    allowed = under + over
        placed = self._place(c, kind, allowed, st)
        if placed < allowed:
            st.blocked = True
        return placed

    def _place(self, c: _Ctr, kind: str, nbytes: int, st: _TickState) -> int:
        """First fit over the allowed nodes by id, reclaiming their cache when full."""
        nodes = sorted(c.nodes)
        short = nbytes - self._free_on(nodes)
        if short > 0:
            st.reclaimed += self._reclaim_cache(c, short, nodes, own_only=False)
        left = nbytes
        for n in nodes:
            if left <= 0:
                break
            take = min(left, self._nodes[n].size - self._used[n])
            if take > 0:
                self._put(c, kind, n, take)
                left -= take
        return nbytes - left

    def _reclaim_cache(
        self, c: _Ctr, nbytes: int, nodes: Sequence[int] | None, own_only: bool
    ) -> int:
        """Drop up to ``nbytes`` of page cache: ``c``'s own first, then (unless
        ``own_only``) other containers' cache on ``nodes``. ``nodes=None``: anywhere."""
        got = 0
        victims = [c] + ([] if own_only else [o for o in self._ctrs.values() if o is not c])
        for v in victims:
            for n in sorted(v.file) if nodes is None else nodes:
                if got >= nbytes:
                    return got
                take = min(v.file.get(n, 0), nbytes - got)
                if take > 0:
                    self._put(v, "file", n, -take)
                    got += take
        return got

    def _apply_frees(self, c: _Ctr, frees: Frees) -> None:
        if frees.anon is None:
            self._free_anon(c)
        elif frees.anon > 0:
            self._drop(c, "anon", frees.anon)
        if frees.file is None:
            self._drop(c, "file", c.file_total)
        elif frees.file > 0:
            self._drop(c, "file", frees.file)

    def _drop(self, c: _Ctr, kind: str, nbytes: int) -> None:
        """Free from the highest node down (the most recently filled go first)."""
        d = c.anon if kind == "anon" else c.file
        for n in sorted(d, reverse=True):
            if nbytes <= 0:
                break
            take = min(d[n], nbytes)
            self._put(c, kind, n, -take)
            nbytes -= take

    def _free_anon(self, c: _Ctr) -> None:
        for n in list(c.anon):
            self._put(c, "anon", n, -c.anon[n])

    def _free_all(self, c: _Ctr) -> None:
        self._free_anon(c)
        for n in list(c.file):
            self._put(c, "file", n, -c.file[n])

    def _oom_kill(self, c: _Ctr, memcg: bool) -> None:
        c.peak_usage = max(c.peak_usage, c.usage)
        c.peak_anon = max(c.peak_anon, c.anon_total)
        if memcg:
            c.oom_events += 1
            self._emit(EventKind.OOM, c, value=c.oom_events)
        c.oom_kills += 1
        c.kill_times.append(self.now())
        why = "memcg" if memcg else "cpuset"
        self._emit(
            EventKind.OOM_KILL,
            c,
            detail=f"oom_kill {c.oom_kills} ({why}, pid {c.pid})",
            value=c.oom_kills,
        )
        self._free_anon(c)
        assert c.run is not None
        c.run.pending_anon = c.run.pending_file = 0
        c.run.done = True
        c.pid = None
        c.blocked_ms = 0
        if c.spec is not None and c.spec.restart:
            c.restart_at = self._tick + self._ticks(self._restart_delay(c))

    # Operations live in ``SimMigration``; the tick loop calls them through these.

    def _run_ops(self, c: _Ctr, k: int) -> None:
        """Advance ``c``'s operations by one tick."""
        raise NotImplementedError

    def _vanish(self, name: str) -> None:
        """The cgroup ``name`` vanished: end its operations, free its memory."""
        raise NotImplementedError

    def _land_writes(self, c: _Ctr) -> None:
        """Apply ``c``'s delayed writes that reach the kernel by now."""
        raise NotImplementedError
