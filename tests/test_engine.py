"""The engine on the simulated host: exact outcomes, faults, dry run, vanished cgroups."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

import pytest

from zoned.backends.sim.faults import Gone, SetNodesError, SlowMigration
from zoned.backends.sim.host import SimBackend
from zoned.backends.sim.state import SimNode
from zoned.backends.sim.workload import parse_workload
from zoned.config.decl import Amount, ContainerDecl, Declarations, PolicyDecl
from zoned.engine import Engine
from zoned.errors import WriteRefused
from zoned.model.actions import DirectedReclaim, Lend, Reclaim, Return
from zoned.model.host import Event, OpKind, OpResult
from zoned.model.sizes import MIB
from zoned.model.zonemap import FREE, SHARED, Assignment, Owner
from zoned.policy.placement import place

NODE = 512 * MIB


def host(
    workloads: Mapping[str, object],
    nodes: int = 5,
    faults: Sequence[object] = (),
) -> SimBackend:
    return SimBackend(
        [SimNode(i, NODE) for i in range(nodes)],
        workloads={k: parse_workload(v) for k, v in workloads.items()},
        faults=faults,  # type: ignore[arg-type]
    )


def ctr(name: str, lo: int = 1, hi: int = 3, prio: int = 0) -> ContainerDecl:
    return ContainerDecl(name, Amount.nodes(lo), Amount.nodes(hi), priority=prio)


def engine(
    b: SimBackend, *containers: ContainerDecl, dry_run: bool = False, **policy: object
) -> Engine:
    d = Declarations(containers=containers, policy=PolicyDecl(**policy))  # type: ignore[arg-type]
    e = Engine(b, d, place(b.topology(), d).zonemap, dry_run=dry_run)
    if dry_run:  # the simulated world exists whatever the engine does
        for c in containers:
            b.ensure(c, e.zonemap.nodes_of(c.name))
    e.admit()
    return e


def engine_on(
    b: SimBackend, owners: Mapping[int, str], *containers: ContainerDecl, **policy: object
) -> Engine:
    """An admitted engine whose placement is changed by ``owners`` (node → container)."""
    d = Declarations(containers=containers, policy=PolicyDecl(**policy))  # type: ignore[arg-type]
    zm = place(b.topology(), d).zonemap
    for n, who in owners.items():
        zm = zm.with_assignment(Assignment(n, Owner.of(who), "test"))
    e = Engine(b, d, zm)
    e.admit()
    return e


def moves(e: Engine, outcome: str = "started") -> list[tuple[float, object]]:
    return [
        (round(r.at, 2), r.action)
        for r in e.log
        if r.outcome == outcome and isinstance(r.action, Lend | Reclaim | Return | DirectedReclaim)
    ]


def held(b: SimBackend, name: str, e: Engine) -> frozenset[int]:
    return b.state(name).nodes - e.zonemap.nodes_with(SHARED)


def assert_map_is_host(e: Engine, b: SimBackend) -> None:
    for name in e.managed:
        assert e.zonemap.nodes_of(name) == held(b, name, e), name


def outcomes(e: Engine) -> list[str]:
    return [r.outcome for r in e.log if r.kind not in ("tripwire", "admit")]


CACHED_DONOR = {
    "batch": {"phases": [{"anon": "300M"}, {"file": "400M"}, {"idle_s": 300}]},
    "web": {"start_s": 5, "phases": [{"ramp": {"anon": "800M", "over_s": 10}}, {"hold_s": 30}]},
}


GROW = {"web": {"phases": [{"ramp": {"anon": "700M", "over_s": 10}}, {"hold_s": 30}]}}


def test_admit_creates_each_container_on_its_placed_nodes_with_a_tripwire() -> None:
    b = host({})
    e = engine(b, ctr("web"), ctr("batch", lo=2))
    assert held(b, "batch", e) == {1, 2} and held(b, "web", e) == {3}  # largest min first
    assert b.state("web").tripwire == int(NODE * 0.85)
    assert b.state("batch").tripwire == int(2 * NODE * 0.85)
    assert e.zonemap.owner(4) == FREE


def test_growing_container_is_lent_the_lowest_free_node_once() -> None:
    b = host(GROW)
    e = engine(b, ctr("web"))
    e.run(40)
    lends = moves(e)
    assert len(lends) == 1
    at, a = lends[0]
    assert isinstance(a, Lend) and (a.node, a.to) == (2, "web")
    # 700M over 10 s: anon reaches 85% of 512M at 6.2 s; the engine acts within a tick
    assert 6.2 <= at <= 6.3
    assert a.reason.startswith("web: anon 435M of 512M capacity crossed tripwire 85%")
    assert held(b, "web", e) == {1, 2}
    assert b.state("web").tripwire == int(2 * NODE * 0.85)
    assert b.stats().containers["web"].oom_kills == 0
    assert_map_is_host(e, b)


def test_without_the_engine_the_same_workload_is_oom_killed() -> None:
    """The control for the test above: the scenario really needs the lend."""
    b = host(GROW)
    d = Declarations(containers=(ctr("web"),))
    e = Engine(b, d, place(b.topology(), d).zonemap, juggle=False)
    e.admit()
    e.run(40)
    assert b.stats().containers["web"].oom_kills >= 1
    assert [r.kind for r in e.log if r.kind == "oom"]


DONOR = {
    # batch fills three nodes, then frees most of it and goes idle with a little cache
    "batch": {
        "phases": [
            {"anon": "1100M"},
            {"hold_s": 2},
            {"free": {"anon": "950M"}},
            {"file": "100M"},
            {"idle_s": 300},
        ]
    },
    "web": {"start_s": 10, "phases": [{"ramp": {"anon": "800M", "over_s": 16}}, {"hold_s": 60}]},
}


def test_no_free_node_reclaims_from_the_idle_low_priority_container_evacuating_first() -> None:
    b = host(DONOR)
    e = engine(b, ctr("web", prio=10), ctr("batch", prio=0), cooldown_s=5)
    e.run(60)
    got = [(a.__class__.__name__, a.node) for _, a in moves(e)]  # type: ignore[attr-defined]
    # batch grows into the free nodes 3 and 4, web later takes one back from it
    assert got[:2] == [("Lend", 3), ("Lend", 4)]
    assert got[2][0] == "Reclaim"
    rec = moves(e)[2][1]
    assert isinstance(rec, Reclaim) and (rec.from_, rec.to) == ("batch", "web")
    assert "no free node; reclaimed node" in rec.reason and "from batch (priority 0" in rec.reason
    # evacuated: batch's pages left the node before web got it; web was never OOM-killed
    assert rec.node in held(b, "web", e) and rec.node not in held(b, "batch", e)
    assert b.stats().containers["web"].oom_kills == 0
    assert e.stats["batch"].nodes_lost == 1 and e.stats["web"].nodes_gained == 1
    assert_map_is_host(e, b)
    done = [r for r in e.log if r.action is rec and r.outcome.startswith("done")]
    assert len(done) == 1


def test_donor_with_cache_that_would_not_fit_is_asked_to_reclaim_first() -> None:
    """batch holds 300M anon and 400M cache over nodes 2-3; web needs node 3. batch's
    700M would not fit under the tripwire of node 2 alone: reclaim first, then evacuate."""
    b = host(CACHED_DONOR, nodes=4)
    e = engine_on(b, {3: "batch"}, ctr("web", prio=10), ctr("batch"), cooldown_s=5)
    e.run(40)
    seq = [(type(a).__name__, round(at)) for at, a in moves(e)]
    assert seq == [("DirectedReclaim", 10), ("Reclaim", 10)]
    dr = moves(e)[0][1]
    assert isinstance(dr, DirectedReclaim) and dr.container == "batch"
    assert dr.nbytes == 700 * MIB - int(NODE * 0.85)
    assert b.stats().containers["web"].oom_kills == 0
    assert held(b, "web", e) == {1, 3} and held(b, "batch", e) == {2}
    assert_map_is_host(e, b)


def test_cache_alone_never_grows_a_container() -> None:
    b = host({"batch": [{"anon": "100M"}, {"file": "2G"}, {"idle_s": 30}]})
    e = engine(b, ctr("batch"))
    e.run(30)
    assert moves(e) == []
    assert held(b, "batch", e) == {1}
    assert any(r.kind == "note" and "page cache" in r.reason for r in e.log)


# ---------------------------------------------------------------------------------------
# faults


def test_failed_write_is_retried_and_the_map_follows_the_host() -> None:
    b = host(GROW, faults=[SetNodesError(errno.EBUSY, "web", times=1)])
    e = engine(b, ctr("web"))
    e.run(40)
    outs = outcomes(e)
    assert any("give failed" in o and "EBUSY" in o and "retrying (2/3)" in o for o in outs)
    (retry,) = [r for r in e.log if r.code == "retrying"]
    assert (retry.kind, retry.container, retry.node, retry.donor) == ("lend", "web", 2, None)
    assert held(b, "web", e) == {1, 2}
    assert_map_is_host(e, b)
    assert b.stats().containers["web"].oom_kills == 0


def test_write_failing_every_time_gives_up_with_a_reason_and_map_equals_host() -> None:
    b = host(GROW, faults=[SetNodesError(errno.ENOSPC, "web", times=3)])
    e = engine(b, ctr("web"), cooldown_s=10)
    seen: list[str] = []

    def check(eng: Engine, events: Sequence[Event]) -> None:
        if not eng.pending():
            assert_map_is_host(eng, b)
        seen.extend(r.outcome for r in eng.log[-3:])

    e.run(8, observer=check)
    gave = [r for r in e.log if r.outcome.startswith("gave up")]
    assert len(gave) == 1
    assert "after 3 attempts" in gave[0].outcome and "ENOSPC" in gave[0].outcome
    assert (gave[0].code, gave[0].container, gave[0].node) == ("failed", "web", 2)
    assert gave[0].seconds is not None and gave[0].seconds >= 0
    assert e.zonemap.owner(2) == FREE and held(b, "web", e) == {1}
    assert "web" in e.policy_state().blocked


def test_migration_past_its_deadline_is_a_failure_and_the_map_follows_the_host() -> None:
    b = host(CACHED_DONOR, nodes=4, faults=[SlowMigration("batch", bandwidth=1 * MIB, times=5)])
    e = engine_on(
        b, {3: "batch"}, ctr("web", prio=10), ctr("batch"), cooldown_s=5, migrate_timeout_s=2
    )
    checked = 0

    def check(eng: Engine, events: Sequence[Event]) -> None:
        nonlocal checked
        if not eng.pending():
            assert_map_is_host(eng, b)
            checked += 1

    e.run(40, observer=check)
    failed = [r.outcome for r in e.log if "evacuate failed" in r.outcome]
    assert failed and "ETIMEDOUT" in failed[0]
    assert checked > 10


def test_vanished_cgroup_frees_its_nodes_and_is_no_crash() -> None:
    b = host(GROW, faults=[Gone("web", at_s=20)])
    e = engine(b, ctr("web"), ctr("batch"))
    e.run(30)
    assert "web" not in e.managed
    assert e.zonemap.nodes_of("web") == frozenset()
    assert any(r.kind == "gone" for r in e.log)
    assert_map_is_host(e, b)


def test_dry_run_logs_would_have_and_changes_nothing() -> None:
    b = host(GROW)
    e = engine(b, ctr("web"), dry_run=True)
    before = b.state("web")
    e.run(20)
    assert b.state("web").nodes == before.nodes and b.state("web").tripwire is None
    wh = [r for r in e.log if r.outcome == "would have"]
    assert any(isinstance(r.action, Lend) for r in wh)
    # one line per distinct decision, not one per tick
    assert sum(isinstance(r.action, Lend) for r in wh) == 1


@pytest.mark.parametrize("bad", [2, 3])
def test_retry_budget_is_bounded(bad: int) -> None:
    b = host(GROW, faults=[SetNodesError(errno.EBUSY, "web", times=bad)])
    d = Declarations(containers=(ctr("web"),))
    e = Engine(b, d, place(b.topology(), d).zonemap, max_attempts=bad)
    e.admit()
    e.run(7)
    assert sum(r.outcome.startswith("gave up") for r in e.log) == 1
    assert_map_is_host(e, b)


class RefusingSim(SimBackend):
    """A host whose cpuset writes are refused at the call (as a write(2) would), ``refusals``
    times, instead of through an OP_FINISHED event."""

    refusals = 0

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        if self.refusals > 0:
            self.refusals -= 1
            raise WriteRefused(f"{name}: cpuset.mems: refused", errno.EBUSY)
        return super().start_set_nodes(name, nodes, deadline_s)


@pytest.mark.parametrize(("refusals", "gives_up"), [(1, False), (2, False), (3, True)])
def test_write_refused_at_the_call_is_retried_or_given_up(refusals: int, gives_up: bool) -> None:
    b = RefusingSim(
        [SimNode(i, NODE) for i in range(4)],
        workloads={k: parse_workload(v) for k, v in GROW.items()},
    )
    e = engine(b, ctr("web"))
    b.refusals = refusals
    e.run(20)
    outs = outcomes(e)
    assert sum("retrying" in o for o in outs) == min(refusals, 2)
    assert any(o.startswith("gave up after 3 attempts") for o in outs) == gives_up
    assert held(b, "web", e) == ({1} if gives_up else {1, 2})
    assert_map_is_host(e, b)


class BlockedWriteSim(SimBackend):
    """A host where a lend's cpuset.mems write stays in the kernel for ``hold_s`` (its
    end is held back), whose tasks may use the new node only after ``reach_s``, and whose
    tripwire throttles inside the kernel (v2's memory.high)."""

    raise_tripwire_before_give = True
    hold_s = 3.0
    reach_s = 1.0
    calls: list[tuple[float, str]]
    _held: list[tuple[float, Event]]
    _started: float

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        self._started = self.now()
        self.calls.append((self.now(), f"write {name}"))
        return super().start_set_nodes(name, nodes, deadline_s)

    def mems_reached(self, name: str, nodes: frozenset[int]) -> bool:
        return self.now() - self._started >= self.reach_s

    def arm_tripwire(self, name: str, nbytes: int) -> None:
        self.calls.append((self.now(), f"tripwire {name} {nbytes}"))
        super().arm_tripwire(name, nbytes)

    def wait(self, timeout_s: float | None) -> list[Event]:
        events = [*super().wait(timeout_s)]
        self._held += [(self.now() + self.hold_s, e) for e in events if e.op is not None]
        due = [e for at, e in self._held if at <= self.now()]
        self._held = [(at, e) for at, e in self._held if at > self.now()]
        return [e for e in events if e.op is None] + due


def test_tripwire_is_raised_during_a_blocked_write_once_every_task_has_the_node() -> None:
    """v2: the write that gives a node may wait for a task memory.high holds (inside one
    MAP_POPULATE); the receiver's tripwire goes up while the write is in flight, but only
    once every task may use the new node (sooner, a task not reached yet fills the old
    node: 2 OOM kills on 6.12 with eight stress-ng workers)."""
    b = host(GROW)
    blocked = BlockedWriteSim.__new__(BlockedWriteSim)
    blocked.__dict__.update(b.__dict__)
    blocked.calls, blocked._held, blocked._started = [], [], 0.0
    e = engine(blocked, ctr("web"))
    blocked.calls.clear()

    def look(eng: Engine, events: Sequence[Event]) -> None:
        # The daemon steps again after next_look() without events: do the same here.
        while (wait := eng.next_look()) is not None and blocked.now() < 40:
            eng.step(blocked.wait(wait))

    e.run(40, observer=look)
    writes = [at for at, what in blocked.calls if what == "write web"]
    raises = [at for at, what in blocked.calls if what.startswith("tripwire web")]
    assert writes, blocked.calls
    first_raise = next(at for at in raises if at > writes[0])
    assert writes[0] + blocked.reach_s <= first_raise < writes[0] + blocked.hold_s, blocked.calls
    assert any("raised to the new capacity" in r.reason for r in e.log)
    assert blocked.stats().containers["web"].oom_kills == 0


class HoldingSim(SimBackend):
    """A host whose tripwire holds tasks (v1's limit); records what the engine releases."""

    released: list[tuple[float, str]]

    def release_hold(self, name: str) -> bool:
        self.released.append((self.now(), name))
        return True


def holding(workloads: Mapping[str, object], nodes: int) -> HoldingSim:
    b = host(workloads, nodes=nodes)
    h = HoldingSim.__new__(HoldingSim)
    h.__dict__.update(b.__dict__)
    h.released = []
    return h


def test_a_container_nothing_can_be_lent_to_is_released_from_its_hold() -> None:
    """Held at its tripwire with nothing to lend, a container would stall for good where
    the kernel would OOM-kill inside its zones: at its max it is let go at once, short of
    a donor after cooldown_s; once, until its tripwire is armed again."""
    at_max = holding(GROW, nodes=3)
    e = engine(at_max, ctr("web", hi=1))
    e.run(30)
    assert [n for _, n in at_max.released] == ["web"]
    assert any(r.outcome == "released" and "at its max" in r.reason for r in e.log)
    crossed = next(r.at for r in e.log if r.kind == "note" and "at its max" in r.reason)
    assert at_max.released[0][0] == crossed

    # Room to grow, but no free node and no donor (the other container is at its min).
    no_donor = holding({**GROW, "db": {"phases": [{"hold_s": 60}]}}, nodes=3)
    e = engine(no_donor, ctr("web"), ctr("db"), cooldown_s=2)
    e.run(30)
    assert [n for _, n in no_donor.released] == ["web"]
    first = next(r.at for r in e.log if r.kind == "note" and "nothing can be lent" in r.reason)
    assert no_donor.released[0][0] - first >= 2


def test_managed_is_a_set_in_declaration_order() -> None:
    # Every event of every step asks ``c in managed``: a list made that O(containers).
    b = host({})
    e = engine(b, ctr("b"), ctr("a"))
    assert isinstance(e.managed, AbstractSet)
    assert list(e.managed) == ["b", "a"]  # snapshots and status keep declaration order


class LateWriteSim(SimBackend):
    """A host whose cpuset.mems writes outlive their deadline: each is first reported
    timed out while still running, and really ends ``late_s`` later (FdLoop reports that
    end as a second OP_FINISHED)."""

    late_s = 4.0
    writes: list[tuple[float, str, frozenset[int]]]
    _late: dict[int, tuple[float, Event]]
    _fake: dict[int, OpResult]

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        self.writes.append((self.now(), name, nodes))
        return super().start_set_nodes(name, nodes, deadline_s)

    def op_result(self, op: int) -> OpResult:
        fake = self._fake.get(op)
        return fake if fake is not None else super().op_result(op)

    def wait(self, timeout_s: float | None) -> list[Event]:
        out: list[Event] = []
        for ev in super().wait(timeout_s):
            if ev.op is not None and ev.op not in self._late and ev.op not in self._fake:
                real = super().op_result(ev.op)
                if real.kind is OpKind.SET_NODES:
                    self._fake[ev.op] = dataclasses.replace(
                        real,
                        ok=False,
                        errno=errno.ETIMEDOUT,
                        error="timed out after 2 s (running); the kernel may still complete it",
                    )
                    self._late[ev.op] = (self.now() + self.late_s, ev)
            out.append(ev)
        for op, (at, ev) in list(self._late.items()):
            if at <= self.now():
                del self._late[op]
                self._fake.pop(op, None)
                out.append(ev)
        return out


def test_a_write_still_in_the_kernel_is_waited_for_not_repeated() -> None:
    """Issue 13: a write that timed out while running was written again behind itself and
    the hand-over called done while the first was still blocked. Now the hand-over waits
    for the write's real end: one write per lend, done only after it returned."""
    b = host(GROW)
    late = LateWriteSim.__new__(LateWriteSim)
    late.__dict__.update(b.__dict__)
    late.writes, late._late, late._fake = [], {}, {}
    e = engine(late, ctr("web"), migrate_timeout_s=2)
    late.writes.clear()
    e.run(40)
    lend_writes = [w for w in late.writes if w[1] == "web"]
    assert len(lend_writes) == 1, lend_writes
    waiting = [r for r in e.log if "still in the kernel" in r.outcome]
    done = [r for r in e.log if r.kind == "lend" and r.outcome.startswith("done")]
    assert waiting and done, [(r.at, r.outcome) for r in e.log]
    assert done[0].at - lend_writes[0][0] >= late.late_s
    assert not any("retrying" in r.outcome or "gave up" in r.outcome for r in e.log)
    assert held(late, "web", e) == {1, 2}
