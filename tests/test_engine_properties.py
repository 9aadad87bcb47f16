"""Properties of the engine over random workloads and faults on the simulated host.

After every step: each node has one owner (no two containers hold the same node on the
host either), no container is below its min or above its max, and when no hand-over is
in flight the zone map equals what the host holds.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from zoned.backends.sim import SetNodesError, SimBackend, SimNode, SlowMigration, parse_workload
from zoned.config.decl import Amount, ContainerDecl, Declarations, PolicyDecl
from zoned.engine import Engine
from zoned.errors import PlacementError
from zoned.model.host import Event
from zoned.model.sizes import MIB
from zoned.model.zonemap import SHARED
from zoned.policy.placement import place

SIZE = 256 * MIB

phase = st.one_of(
    st.builds(
        lambda a, s: {"ramp": {"anon": f"{a}M", "over_s": s}},
        st.integers(0, 700),
        st.integers(1, 20),
    ),
    st.builds(lambda f: {"file": f"{f}M"}, st.integers(0, 600)),
    st.builds(lambda s: {"hold_s": s}, st.integers(1, 20)),
    st.builds(lambda s: {"idle_s": s}, st.integers(1, 40)),
    st.builds(lambda a: {"free": {"anon": f"{a}M"}}, st.integers(0, 700)),
)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[SimBackend, Declarations]:
    n_nodes = draw(st.integers(4, 8))
    n_ctr = draw(st.integers(1, 4))
    decls = []
    workloads = {}
    faults: list[object] = []
    for i in range(n_ctr):
        name = f"c{i}"
        lo = draw(st.integers(1, 2))
        hi = draw(st.integers(lo, 4))
        decls.append(
            ContainerDecl(
                name, Amount.nodes(lo), Amount.nodes(hi), priority=draw(st.integers(0, 3))
            )
        )
        spec = {
            "start_s": draw(st.integers(0, 20)),
            "restart": draw(st.booleans()),
            # grow first, so that most examples have nodes to move
            "phases": [
                {"ramp": {"anon": f"{draw(st.integers(150, 900))}M", "over_s": 10}},
                *draw(st.lists(phase, min_size=1, max_size=6)),
            ],
        }
        workloads[name] = parse_workload(spec)
        if draw(st.booleans()):
            faults.append(
                SetNodesError(
                    draw(st.sampled_from([errno.EBUSY, errno.ENOSPC, errno.EINVAL])),
                    name,
                    after_s=draw(st.integers(0, 30)),
                    times=draw(st.integers(1, 4)),
                )
            )
        if draw(st.booleans()):
            faults.append(SlowMigration(name, factor=draw(st.sampled_from([5.0, 50.0]))))
    policy = PolicyDecl(
        cooldown_s=draw(st.sampled_from([0.0, 2.0, 10.0])),
        idle_return_s=draw(st.sampled_from([5.0, 30.0, 300.0])),
        migrate_timeout_s=draw(st.sampled_from([1.0, 120.0])),
    )
    b = SimBackend(
        [SimNode(i, SIZE) for i in range(n_nodes)],
        workloads=workloads,
        faults=faults,  # type: ignore[arg-type]
    )
    return b, Declarations(policy=policy, containers=tuple(decls))


def check_invariants(e: Engine, b: SimBackend) -> None:
    shared = e.zonemap.nodes_with(SHARED)
    seen: dict[int, str] = {}
    for name in e.managed:
        decl = e.decls.container(name)
        mine = e.zonemap.nodes_of(name)
        assert decl.min.value <= len(mine) <= decl.max.value, (name, sorted(mine))
        for n in b.state(name).nodes - shared:
            assert n not in seen, f"node {n} held by {seen.get(n)} and {name}"
            seen[n] = name
        if not e.pending():
            assert mine == b.state(name).nodes - shared, name


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(worlds())
def test_invariants_hold_after_every_step(world: tuple[SimBackend, Declarations]) -> None:
    b, decls = world
    try:
        zonemap = place(b.topology(), decls).zonemap
    except PlacementError:
        return  # mins that do not fit are placement's business
    e = Engine(b, decls, zonemap)
    e.admit()
    steps = 0

    def observer(eng: Engine, events: Sequence[Event]) -> None:
        nonlocal steps
        steps += 1
        check_invariants(eng, b)

    check_invariants(e, b)
    e.run(90, observer=observer)
    assert steps >= 90  # at least one step per tick of virtual time
    # every hand-over that started has ended one way or another, or is still in flight
    started = sum(r.outcome == "started" for r in e.log)
    ended = sum(
        r.outcome.startswith(("done", "gave up", "abandoned"))
        for r in e.log
        if r.kind != "directed-reclaim"
    )
    assert ended <= started
    # The outcome code says what the words say (zoned events --json matches on it).
    words = {"started": "started", "done": "done", "gave up": "failed", "abandoned": "cancelled"}
    for r in e.log:
        if r.kind in ("lend", "reclaim", "return", "directed-reclaim"):
            first = next((c for w, c in words.items() if r.outcome.startswith(w)), None)
            if "retrying (" in r.outcome:
                first = "retrying"
            if first is not None:
                assert r.code == first, r
            if r.code == "done" and r.kind in ("reclaim", "return"):
                assert r.migrated is not None and r.freed is not None and r.seconds is not None
                assert r.node is not None and r.donor is not None
    for word in ("done", "retrying", "gave up", "drain"):
        if any(word in r.outcome for r in e.log):
            event(f"some hand-over {word}")


class OneWriterCheck(SimBackend):
    """The simulated host, failing the test when a second operation starts on a container
    while one is in flight on it (two writes of one cpuset race: issue 13)."""

    inflight: dict[int, str]
    overlaps: list[str]

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        return self._track(name, super().start_set_nodes(name, nodes, deadline_s))

    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        return self._track(name, super().start_reclaim(name, nbytes, deadline_s))

    def _track(self, name: str, op: int) -> int:
        if name in self.inflight.values():
            self.overlaps.append(f"op {op} on {name} while another is in flight")
        self.inflight[op] = name
        return op

    def wait(self, timeout_s: float | None) -> list[Event]:
        events = super().wait(timeout_s)
        for ev in events:
            if ev.op is not None:
                self.inflight.pop(ev.op, None)
        return events


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(worlds())
def test_one_operation_at_a_time_per_container(world: tuple[SimBackend, Declarations]) -> None:
    """Lends, returns, reclaims and retries on one container never overlap: each write of
    its node set starts after the one before it ended."""
    sim, decls = world
    b = OneWriterCheck.__new__(OneWriterCheck)
    b.__dict__.update(sim.__dict__)
    b.inflight, b.overlaps = {}, []
    try:
        zonemap = place(b.topology(), decls).zonemap
    except PlacementError:
        return
    e = Engine(b, decls, zonemap)
    e.admit()
    e.run(90)
    assert not b.overlaps, b.overlaps
    if sum(r.kind == "lend" and r.outcome == "started" for r in e.log) >= 2:
        event("two or more lends")


def test_two_lends_in_one_decision_write_one_after_the_other() -> None:
    """A fast grower earns two free nodes in one decision: the second write waits for the
    first and asks for all three nodes, so the kernel never sees an out-of-date list."""
    spec = {"start_s": 3, "phases": [{"ramp": {"anon": "700M", "over_s": 2}}, {"hold_s": 60}]}
    sim = SimBackend([SimNode(i, SIZE) for i in range(6)], workloads={"g": parse_workload(spec)})
    b = OneWriterCheck.__new__(OneWriterCheck)
    b.__dict__.update(sim.__dict__)
    b.inflight, b.overlaps = {}, []
    decls = Declarations(
        policy=PolicyDecl(cooldown_s=2.0, idle_return_s=300.0),
        containers=(ContainerDecl("g", Amount.nodes(1), Amount.nodes(4)),),
    )
    e = Engine(b, decls, place(b.topology(), decls).zonemap)
    e.admit()
    e.run(30)
    lends = [r for r in e.log if r.kind == "lend" and r.outcome == "started"]
    together = {r.at for r in lends}
    assert len(lends) >= 2 and len(together) < len(lends), [(r.at, r.what) for r in lends]
    assert not b.overlaps, b.overlaps
    assert not any("failed" in r.outcome for r in e.log), [r.outcome for r in e.log]
    assert b.state("g").nodes == e.zonemap.nodes_of("g")
