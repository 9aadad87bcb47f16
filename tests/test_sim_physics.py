"""The simulated host's physics: placement, reclaim, OOM, tripwire, PSI, migration, reclaim ops.

Knobs are chosen so per-tick amounts are whole numbers (800M/s is 8 MiB per 10 ms tick),
which makes the expected times and sizes exact.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

import pytest

from zoned.backends.sim import (
    Alloc,
    Exit,
    Free,
    Hold,
    Isolation,
    Phase,
    Ramp,
    SimBackend,
    SimKnobs,
    SimNode,
    WorkloadSpec,
)
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import Unsupported, WriteRefused
from zoned.model.host import Event, EventKind, OpKind
from zoned.model.sizes import MIB

KNOBS = SimKnobs(
    alloc_rate=800 * MIB,  # 8 MiB per tick
    reclaim_rate=1000 * MIB,  # 10 MiB per tick
    throttle_rate=16 * MIB,
    migrate_bandwidth=125 * MIB,  # 1.25 MiB per tick
    leave_behind=0,
)


def decl(name: str) -> ContainerDecl:
    return ContainerDecl(name, Amount.nodes(1), Amount.nodes(3))


def make(
    workloads: dict[str, WorkloadSpec],
    sizes: tuple[int, ...] = (256 * MIB,) * 4,
    knobs: SimKnobs = KNOBS,
    isolation: Isolation = Isolation.ZONES,
    memcg_limits: dict[str, int] | None = None,
) -> SimBackend:
    nodes = [SimNode(i, s, 64 * MIB if i == 0 else 0) for i, s in enumerate(sizes)]
    return SimBackend(
        nodes, workloads=workloads, knobs=knobs, isolation=isolation, memcg_limits=memcg_limits
    )


def spec(*phases: Phase, restart: bool = False) -> WorkloadSpec:
    return WorkloadSpec(phases=phases, restart=restart, restart_delay_s=1.0)


def kinds(events: Sequence[Event]) -> list[EventKind]:
    return [e.kind for e in events]


# -- placement --------------------------------------------------------------------------


def test_allocation_stays_on_the_allowed_nodes() -> None:
    sim = make({"a": spec(Alloc(anon=100 * MIB, file=20 * MIB))})
    sim.ensure(decl("a"), frozenset({2}))
    assert sim.advance(5) == []
    u = sim.usage("a")
    assert (u.anon, u.file, u.current) == (100 * MIB, 20 * MIB, 120 * MIB)
    assert set(u.per_node) == {2}
    mem = sim.node_memory()
    assert mem[2].free == 256 * MIB - 120 * MIB
    assert mem[2].file == 20 * MIB
    assert mem[0].free == 256 * MIB - 64 * MIB  # base use of node 0
    assert mem[1].free == mem[3].free == 256 * MIB
    assert sim.topology().node(2).mem_free == mem[2].free


def test_first_fit_spills_to_the_next_allowed_node() -> None:
    sim = make({"a": spec(Alloc(anon=300 * MIB))})
    sim.ensure(decl("a"), frozenset({1, 3}))
    sim.advance(5)
    per = sim.usage("a").per_node
    assert per[1].anon == 256 * MIB
    assert per[3].anon == 44 * MIB
    assert 2 not in per


def test_allocation_takes_time_at_the_alloc_rate() -> None:
    sim = make({"a": spec(Alloc(anon=80 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.advance(0.05)
    assert sim.usage("a").anon == 40 * MIB  # 5 ticks x 8 MiB
    sim.advance(0.05)
    assert sim.usage("a").anon == 80 * MIB


def test_page_cache_is_reclaimed_before_anon_and_no_oom() -> None:
    sim = make({"a": spec(Alloc(file=200 * MIB), Alloc(anon=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    events = sim.advance(10)
    u = sim.usage("a")
    assert u.anon == 200 * MIB
    assert u.file == 56 * MIB  # the node's remaining 56M
    assert EventKind.OOM_KILL not in kinds(events)
    st = sim.stats().containers["a"]
    assert st.stall_some_s > 0  # reclaim is stall
    assert st.stall_full_s == 0


def test_unconfined_reclaim_takes_other_containers_cache() -> None:
    sim = make(
        {"a": spec(Alloc(file=500 * MIB)), "b": spec(Hold(1), Alloc(anon=700 * MIB))},
        isolation=Isolation.NONE,
    )
    sim.ensure(decl("a"), frozenset())
    sim.ensure(decl("b"), frozenset())
    assert sim.state("a").nodes == frozenset({1, 2, 3})
    sim.advance(10)
    assert sim.usage("b").anon == 700 * MIB
    assert sim.usage("a").file == 3 * 256 * MIB - 700 * MIB


# -- OOM --------------------------------------------------------------------------------


def test_anon_beyond_the_zone_is_oom_killed_fast_with_little_stall() -> None:
    sim = make({"a": spec(Alloc(anon=300 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    pid = sim.processes("a")
    events = sim.advance(10)
    # 256M fill in 32 ticks of 8M; the 33rd tick blocks and the kernel kills at its end
    assert [(e.kind, e.at, e.value) for e in events] == [(EventKind.OOM_KILL, 0.33, 1)]
    assert "cpuset" in events[0].detail
    st = sim.stats().containers["a"]
    assert st.oom_kills == 1 and st.oom_events == 0  # oom_kill counts, oom does not
    assert st.stall_full_s == pytest.approx(0.01)
    assert st.pressure_events == 0  # killed before any PSI trigger
    assert st.kill_times == (0.33,)
    assert sim.usage("a").anon == 0
    assert sim.processes("a") == () and pid != ()


def test_oom_kill_after_cache_is_gone() -> None:
    sim = make({"a": spec(Alloc(file=50 * MIB), Alloc(anon=300 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    events = sim.advance(10)
    assert kinds(events) == [EventKind.OOM_KILL]
    u = sim.usage("a")
    assert (u.anon, u.file) == (0, 0)  # the anon fill reclaimed all cache before the kill


def test_restart_after_an_oom_kill() -> None:
    sim = make({"a": spec(Alloc(anon=300 * MIB), restart=True)})
    sim.ensure(decl("a"), frozenset({1}))
    first = sim.processes("a")
    events = sim.advance(2)
    assert kinds(events) == [EventKind.OOM_KILL, EventKind.OOM_KILL]
    assert events[1].at == pytest.approx(0.33 + 1.0 + 0.33)
    assert sim.stats().containers["a"].restarts == 1
    sim.advance(0.7)  # restarted at 2.66 (1 s after the second kill), alive at 2.7
    assert sim.processes("a") not in ((), first)


def test_memcg_limit_oom_reports_oom_and_oom_kill() -> None:
    sim = make(
        {"a": spec(Alloc(anon=150 * MIB))},
        isolation=Isolation.MEMCG,
        memcg_limits={"a": 100 * MIB},
    )
    sim.ensure(decl("a"), frozenset())
    events = sim.advance(5)
    assert kinds(events) == [EventKind.OOM, EventKind.OOM_KILL]
    assert "memcg" in events[1].detail
    st = sim.stats().containers["a"]
    assert (st.oom_events, st.oom_kills, st.peak_anon) == (1, 1, 100 * MIB)


def test_memcg_default_limit_is_the_declared_max() -> None:
    d = ContainerDecl("a", Amount.bytes_(64 * MIB), Amount.bytes_(120 * MIB))
    sim = make({"a": spec(Alloc(anon=150 * MIB))}, isolation=Isolation.MEMCG)
    sim.ensure(d, frozenset())
    sim.advance(5)
    assert sim.stats().containers["a"].peak_anon == 120 * MIB


# -- tripwire, throttle, PSI --------------------------------------------------------------


def test_tripwire_fires_once_at_the_armed_usage_and_throttles() -> None:
    sim = make({"a": spec(Alloc(anon=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.arm_tripwire("a", 100 * MIB)
    events = sim.wait(10)
    # 12 ticks reach 96M; the 13th charge crosses 100M: 4M under the line, then throttled
    throttle_tick = 16 * MIB * 10 // 1000
    assert [(e.kind, e.at, e.value) for e in events] == [
        (EventKind.TRIPWIRE, 0.13, 100 * MIB + throttle_tick)
    ]
    assert sim.state("a").tripwire == 100 * MIB
    rest = sim.advance(20)
    assert EventKind.TRIPWIRE not in kinds(rest)  # one event, however long it stays above
    st = sim.stats().containers["a"]
    assert st.tripwires == 1
    # the last 100M at 16M/s instead of 800M/s: the throttle is what buys zoned time
    assert st.throttled_s == pytest.approx(6.25, abs=0.02)
    assert sim.usage("a").anon == 200 * MIB


def test_rearming_fires_again() -> None:
    sim = make({"a": spec(Alloc(anon=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.arm_tripwire("a", 50 * MIB)
    assert kinds(sim.wait(10)) == [EventKind.TRIPWIRE]
    sim.arm_tripwire("a", 150 * MIB)
    e = sim.wait(30)
    assert kinds(e) == [EventKind.TRIPWIRE]
    assert e[0].value is not None and e[0].value >= 150 * MIB


def test_arming_below_usage_fires_at_once() -> None:
    sim = make({"a": spec(Alloc(anon=50 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.advance(1)
    sim.arm_tripwire("a", 10 * MIB)
    t = sim.now()
    assert [(e.kind, e.at) for e in sim.wait(0)] == [(EventKind.TRIPWIRE, t)]


def test_without_throttle_the_tripwire_only_reports() -> None:
    knobs = SimKnobs(alloc_rate=800 * MIB, throttle_rate=None)
    sim = make({"a": spec(Alloc(anon=200 * MIB))}, knobs=knobs)
    sim.ensure(decl("a"), frozenset({1}))
    sim.arm_tripwire("a", 100 * MIB)
    assert kinds(sim.advance(1)) == [EventKind.TRIPWIRE]
    assert sim.usage("a").anon == 200 * MIB
    assert sim.stats().containers["a"].throttled_s == 0


def test_tripwire_counts_cache_and_cache_is_held_under_it() -> None:
    sim = make({"a": spec(Alloc(file=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.arm_tripwire("a", 100 * MIB)
    events = sim.advance(5)
    assert kinds(events).count(EventKind.TRIPWIRE) == 1
    assert sim.usage("a").file == 100 * MIB  # memory.high reclaims cache, no throttling
    st = sim.stats().containers["a"]
    assert st.throttled_s == 0
    # reclaiming over memory.high is stall in the task's context, as the kernel counts it
    assert st.stall_some_s == pytest.approx(100 * MIB / KNOBS.reclaim_rate)


def test_pressure_event_after_enough_stall_in_a_window() -> None:
    sim = make({"a": spec(Alloc(anon=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.arm_tripwire("a", 100 * MIB)
    events = sim.advance(3)
    pressure = [e for e in events if e.kind is EventKind.PRESSURE]
    # throttled from the 13th tick on: 10 ticks of 10 ms reach psi_some_ms=100
    assert pressure[0].at == pytest.approx(0.22)
    assert pressure[0].detail == "some 100ms/1000ms"
    ats = [e.at for e in pressure]
    assert ats == pytest.approx([0.22, 1.22, 2.22])  # at most one per window


# -- migration ----------------------------------------------------------------------------


def _filled(nbytes: int, file: int = 0, knobs: SimKnobs = KNOBS) -> SimBackend:
    sim = make({"a": spec(Alloc(anon=nbytes, file=file))}, sizes=(512 * MIB,) * 4, knobs=knobs)
    sim.ensure(decl("a"), frozenset({1}))
    sim.advance(5)
    return sim


@pytest.mark.parametrize(("size", "seconds"), [(300 * MIB, 2.4), (150 * MIB, 1.2)])
def test_migration_time_is_bytes_over_bandwidth(size: int, seconds: float) -> None:
    sim = _filled(size)
    t0 = sim.now()
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    assert sim.state("a").nodes == frozenset({2})  # new allocations go there at once
    events = sim.wait(60)
    assert [(e.kind, e.op, e.ok) for e in events] == [(EventKind.OP_FINISHED, op, True)]
    assert events[0].at == pytest.approx(t0 + seconds)
    r = sim.op_result(op)
    assert (r.kind, r.ok, r.nodes, r.left_behind) == (OpKind.SET_NODES, True, frozenset({2}), 0)
    assert r.seconds == pytest.approx(seconds)
    assert set(sim.usage("a").per_node) == {2}
    assert sim.stats().containers["a"].bytes_migrated == size


def test_migration_leaves_the_remainder_behind_cache_first() -> None:
    knobs = SimKnobs(alloc_rate=800 * MIB, migrate_bandwidth=125 * MIB)  # leave_behind 3M
    sim = _filled(100 * MIB, file=10 * MIB, knobs=knobs)
    op = sim.start_set_nodes("a", frozenset({2, 3}), deadline_s=60)
    sim.wait(60)
    r = sim.op_result(op)
    assert r.ok and r.left_behind == 3 * MIB
    per = sim.usage("a").per_node
    assert per[1].file == 3 * MIB and per[1].anon == 0
    assert sim.usage("a").current == 110 * MIB


def test_migration_adding_nodes_moves_nothing_and_ends_at_once() -> None:
    sim = _filled(100 * MIB)
    op = sim.start_set_nodes("a", frozenset({1, 2}), deadline_s=60)
    events = sim.wait(0)
    assert [(e.kind, e.op, e.at) for e in events] == [(EventKind.OP_FINISHED, op, sim.now())]
    assert sim.op_result(op).seconds == 0


def test_migration_overflow_is_left_behind_by_default() -> None:
    sim = make({"a": spec(Alloc(anon=200 * MIB)), "b": spec(Alloc(anon=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.ensure(decl("b"), frozenset({2}))
    sim.advance(2)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    sim.wait(60)
    r = sim.op_result(op)
    assert r.ok and r.left_behind == 200 * MIB - 56 * MIB
    assert sim.stats().containers["a"].oom_kills == 0


def test_migration_overflow_oom_kills_when_so_configured() -> None:
    knobs = SimKnobs(alloc_rate=800 * MIB, leave_behind=0, migrate_overflow="oom_kill")
    sim = make(
        {"a": spec(Alloc(anon=200 * MIB, file=20 * MIB)), "b": spec(Alloc(anon=200 * MIB))},
        knobs=knobs,
    )
    sim.ensure(decl("a"), frozenset({1}))
    sim.ensure(decl("b"), frozenset({2}))
    sim.advance(2)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    events = sim.advance(10)
    assert EventKind.OOM_KILL in kinds(events)
    assert sim.op_result(op).left_behind == 0
    assert sim.usage("a").anon == 0


def test_migration_reclaims_cache_on_the_destination() -> None:
    sim = make({"a": spec(Alloc(anon=200 * MIB)), "b": spec(Alloc(anon=20 * MIB, file=200 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.ensure(decl("b"), frozenset({2}))
    sim.advance(2)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    sim.wait(60)
    assert sim.op_result(op).left_behind == 0
    assert sim.usage("b").file == 256 * MIB - 220 * MIB


def test_writes_to_one_container_are_serialized() -> None:
    sim = _filled(125 * MIB)
    t0 = sim.now()
    first = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    second = sim.start_set_nodes("a", frozenset({3}), deadline_s=60)
    assert sim.state("a").nodes == frozenset({2})
    events = sim.advance(10)
    done = {e.op: e.at for e in events if e.kind is EventKind.OP_FINISHED}
    assert done[first] == pytest.approx(t0 + 1.0)
    assert done[second] == pytest.approx(t0 + 2.0)
    assert set(sim.usage("a").per_node) == {3}


def test_bad_writes_answer_with_the_kernels_errnos() -> None:
    sim = _filled(10 * MIB)
    op = sim.start_set_nodes("a", frozenset({7}), deadline_s=5)
    assert sim.wait(0)[0].errno == errno.EINVAL
    assert not sim.op_result(op).ok
    op = sim.start_set_nodes("a", frozenset(), deadline_s=5)
    assert sim.wait(0)[0].errno == errno.ENOSPC
    assert sim.state("a").nodes == frozenset({1})
    with pytest.raises(WriteRefused):
        sim.ensure(decl("b"), frozenset({9}))


def test_unconfined_modes_refuse_set_nodes() -> None:
    sim = make({}, isolation=Isolation.NONE)
    sim.ensure(decl("a"), frozenset({1}))
    assert sim.state("a").nodes == frozenset({1, 2, 3})
    with pytest.raises(Unsupported):
        sim.start_set_nodes("a", frozenset({1}), 5)


# -- reclaim ------------------------------------------------------------------------------


def test_reclaim_takes_cache_at_the_reclaim_rate() -> None:
    sim = _filled(50 * MIB, file=200 * MIB)
    t0 = sim.now()
    op = sim.start_reclaim("a", 100 * MIB, deadline_s=10)
    events = sim.wait(10)
    assert [(e.kind, e.op, e.ok) for e in events] == [(EventKind.OP_FINISHED, op, True)]
    assert events[0].at == pytest.approx(t0 + 0.1)  # 10 ticks of 10M
    r = sim.op_result(op)
    assert (r.kind, r.reclaimed) == (OpKind.RECLAIM, 100 * MIB)
    assert sim.usage("a").file == 100 * MIB


def test_reclaim_cannot_take_anon_without_swap() -> None:
    sim = _filled(50 * MIB, file=20 * MIB)
    op = sim.start_reclaim("a", 100 * MIB, deadline_s=10)
    events = sim.wait(10)
    assert (events[0].ok, events[0].errno) == (False, errno.EAGAIN)
    assert sim.op_result(op).reclaimed == 20 * MIB
    assert sim.usage("a").anon == 50 * MIB


# -- workloads ------------------------------------------------------------------------------


def test_ramp_spreads_the_allocation() -> None:
    sim = make({"a": spec(Ramp(over_s=10, anon=100 * MIB), Free(anon=60 * MIB), Exit())})
    sim.ensure(decl("a"), frozenset({1}))
    sim.advance(5)
    assert sim.usage("a").anon == 50 * MIB
    sim.advance(5)
    assert sim.usage("a").anon == 100 * MIB
    sim.advance(0.02)
    assert sim.usage("a").anon == 0  # freed 60M, then exited
    assert sim.processes("a") == ()
    assert sim.stats().containers["a"].finished


def test_hold_and_free_all() -> None:
    sim = make({"a": spec(Alloc(anon=40 * MIB, file=40 * MIB), Hold(3), Free(None, None))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.advance(3)
    assert sim.usage("a").current == 80 * MIB
    sim.advance(0.2)
    assert sim.usage("a").current == 0
    assert sim.processes("a") != ()  # finished, still alive


def test_wait_without_timeout_and_nothing_to_come_returns_nothing() -> None:
    sim = make({"a": spec(Alloc(anon=10 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    sim.advance(1)
    t = sim.now()
    assert sim.wait(None) == []
    assert sim.now() == t


def test_wait_returns_at_the_first_event_not_the_timeout() -> None:
    sim = make({"a": spec(Hold(100), Alloc(anon=300 * MIB))})
    sim.ensure(decl("a"), frozenset({1}))
    events = sim.wait(1000)
    assert kinds(events) == [EventKind.OOM_KILL]
    assert sim.now() == pytest.approx(100.33)


def test_idle_containers_are_not_stepped_while_another_allocates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One container ramps for 10 s (1,000 busy ticks) while nine hold: stepping every
    # container on every busy tick made the simulator quadratic in containers.
    from zoned.backends.sim.workload import WorkloadRun

    calls: dict[str, int] = {}
    advance = WorkloadRun.advance

    def counting(self: WorkloadRun, tick: int, held_anon: int) -> object:
        calls[self.container] = calls.get(self.container, 0) + 1
        return advance(self, tick, held_anon)

    monkeypatch.setattr(WorkloadRun, "advance", counting)
    idle = {f"i{n}": spec(Alloc(anon=8 * MIB), Hold(100.0)) for n in range(9)}
    sim = make({"r": spec(Ramp(10.0, anon=80 * MIB)), **idle}, sizes=(256 * MIB,) * 11)
    for n, name in enumerate(["r", *idle]):
        sim.ensure(decl(name), frozenset({n + 1}))
    sim.run_until(10.0)
    assert calls["r"] >= 1000
    assert all(calls[name] <= 3 for name in idle), calls
    assert sim.usage("r").anon == 80 * MIB and sim.usage("i0").anon == 8 * MIB
