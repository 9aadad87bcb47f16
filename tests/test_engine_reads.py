"""The engine reads only what changed: the containers its events name, those in a hand-over
and the sweep's share; every container is re-read within ``sweep_s``; a hand-over never
starts on a stale figure."""

from __future__ import annotations

import itertools
from collections import Counter

from zoned.backends.sim.host import SimBackend
from zoned.backends.sim.state import SimNode
from zoned.backends.sim.workload import Alloc, Hold, WorkloadSpec
from zoned.config.decl import Amount, ContainerDecl, Declarations, PolicyDecl
from zoned.engine import Engine
from zoned.model.actions import Lend, Reclaim, Return
from zoned.model.host import Event, EventKind, Usage
from zoned.model.sizes import MIB
from zoned.model.zonemap import RESERVED, Assignment, Owner, ZoneMap
from zoned.policy.placement import place
from zoned.usagecache import MIN_SLICE, UsageCache

NODE = 512 * MIB


class Counting(SimBackend):
    """A simulated host that counts ``usage`` reads (name → calls, and when) and can be
    told what a container's usage is (``fake``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads: Counter[str] = Counter()
        self.read_times: dict[str, list[float]] = {}
        self.fake: dict[str, Usage] = {}

    def usage(self, name: str) -> Usage:
        self.reads[name] += 1
        self.read_times.setdefault(name, []).append(self.now())
        return self.fake.get(name) or super().usage(name)


def many(containers: int, nodes: int = 64) -> tuple[Counting, Engine]:
    """A dry-run engine over ``containers`` holding 4M each on ``nodes`` x 64M."""
    work = WorkloadSpec((Alloc(anon=4 * MIB), Hold(1e6)))
    decls = Declarations(
        containers=tuple(
            ContainerDecl(
                f"c{i}", Amount.nodes(1) if i < nodes - 1 else Amount.bytes_(0), Amount.nodes(4)
            )
            for i in range(containers)
        )
    )
    b = Counting(
        [SimNode(i, 64 * MIB) for i in range(nodes)],
        workloads={d.name: work for d in decls.containers},
        reserved=(0,),
    )
    zm = place(b.topology(), decls).zonemap
    for d in decls.containers:
        b.ensure(d, zm.nodes_of(d.name))
    b.run_until(1.0)
    e = Engine(b, decls, zm, dry_run=True)
    e.admit()
    return b, e


def test_one_event_at_1000_containers_reads_the_named_one_and_a_bounded_slice() -> None:
    b, e = many(1000)
    e.step([])  # the first step reads everyone (nothing read yet): start counting after
    b.reads.clear()
    e.step([Event(EventKind.TRIPWIRE, b.now(), "c500")])
    in_flight = len(e.pending())
    assert b.reads["c500"] == 1
    assert sum(b.reads.values()) <= 1 + in_flight + MIN_SLICE


def test_each_signal_makes_its_container_fresh_in_its_step() -> None:
    b, e = many(100, nodes=8)
    e.step([])
    b.reads.clear()
    e.step(
        [
            Event(EventKind.TRIPWIRE, b.now(), "c40"),
            Event(EventKind.PRESSURE, b.now(), "c50", value=5),
            Event(EventKind.OOM_KILL, b.now(), "c60"),
        ]
    )
    assert {n: b.reads[n] for n in ("c40", "c50", "c60")} == {"c40": 1, "c50": 1, "c60": 1}
    assert sum(b.reads.values()) <= 3 + len(e.pending())


def test_every_container_is_re_read_within_the_sweep_and_steps_read_a_share() -> None:
    b, e = many(200, nodes=16)
    e.reads.sweep_s = 2.0
    e.step([])  # a dry run's first step reads everyone (admit read nothing)
    start = b.now()
    b.read_times.clear()
    per_step: list[int] = []
    while b.now() < start + 10.0:
        b.run_until(b.now() + 0.25)
        b.reads.clear()
        e.step([])
        per_step.append(sum(b.reads.values()))
    # 200 containers over a 2 s sweep in 0.25 s steps: about 25 a step, not 200 (a few more
    # when a whole batch read at one instant comes due at once).
    assert max(per_step) <= 2 * 25
    assert sum(per_step) <= 200 * (10.0 / 2.0 + 1)
    for name in e.managed:
        times = [start, *b.read_times.get(name, []), b.now()]
        gaps = [t1 - t0 for t0, t1 in itertools.pairwise(times)]
        assert max(gaps) <= 2.0 + 1e-9, name


def test_a_stale_donor_is_re_read_before_its_node_is_taken() -> None:
    """batch (3 nodes) looked idle and small when last read; it has since filled them.
    web crosses its tripwire: the policy picks batch on its stale figures, the engine reads
    it again and decides again: batch's anon would no longer fit, so nothing is taken."""
    decls = Declarations(
        containers=(
            ContainerDecl("web", Amount.nodes(1), Amount.nodes(3), priority=10),
            ContainerDecl("batch", Amount.nodes(1), Amount.nodes(3)),
        ),
        policy=PolicyDecl(cooldown_s=1),
    )
    b = Counting([SimNode(i, NODE) for i in range(5)], reserved=(0,))
    zm = ZoneMap(
        {
            0: Assignment(0, RESERVED, "test"),
            1: Assignment(1, Owner.of("web"), "test"),
            **{n: Assignment(n, Owner.of("batch"), "test") for n in (2, 3, 4)},
        }
    )
    b.run_until(1.0)
    e = Engine(b, decls, zm)
    e.admit()
    e.reads.sweep_s, e.reads.min_slice = 1e6, 0  # nothing swept: batch stays stale
    b.fake["batch"] = Usage(current=100 * MIB, anon=100 * MIB, file=0)
    e.step([])
    b.run_until(b.now() + 30.0)
    b.fake["batch"] = Usage(current=1400 * MIB, anon=1400 * MIB, file=0)
    b.fake["web"] = Usage(current=500 * MIB, anon=500 * MIB, file=0)
    b.reads.clear()
    d = e.step([Event(EventKind.TRIPWIRE, b.now(), "web")])
    assert b.reads["batch"] == 1
    assert not [a for a in d.actions if isinstance(a, Reclaim | Return) and a.from_ == "batch"]
    assert not [a for a in d.actions if isinstance(a, Lend)]


def test_the_cache_sweeps_least_recently_read_first_and_forgets_the_unmanaged() -> None:
    c = UsageCache(sweep_s=4.0, min_slice=1)
    u = Usage(0, 0, 0)
    for i, name in enumerate("abcd"):
        c.put(name, float(i), u)
    every = {"a", "b", "c", "d"}
    assert c.due(4.0, every, 4) == every  # the first sweep: everyone
    for name in "abcd":
        c.put(name, 4.0, u)
    assert c.due(5.0, every, 4) == {"a"}  # 1 s of 4: a quarter
    c.put("a", 5.0, u)
    left = {"a", "c", "d"}  # b is no longer managed
    assert c.due(6.0, left, 3) == set()  # 3/4 of a read owed: carried over
    assert c.due(7.0, left, 3) == {"c"}  # 1.5 owed: one now; b forgotten on the way
    assert c.get("b") is None
    # 2 s later 2 reads are owed, and a (read at 5.0) is sweep_s old: it comes too.
    assert c.due(9.0, left, 3) == {"c", "d", "a"}
