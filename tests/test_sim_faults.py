"""Injected faults: failed writes, vanished cgroups, half-done and slow migrations."""

from __future__ import annotations

import errno

import pytest

from zoned.backends.sim import (
    Alloc,
    Fault,
    Gone,
    PartialMigration,
    SetNodesError,
    SimBackend,
    SimKnobs,
    SimNode,
    SlowMigration,
    WorkloadSpec,
    parse_faults,
)
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import CgroupGone, ConfigError
from zoned.model.host import EventKind
from zoned.model.sizes import MIB

KNOBS = SimKnobs(alloc_rate=800 * MIB, migrate_bandwidth=125 * MIB, leave_behind=0)


def filled(faults: list[Fault], anon: int = 125 * MIB) -> SimBackend:
    nodes = [SimNode(i, 512 * MIB) for i in range(4)]
    sim = SimBackend(
        nodes,
        workloads={"a": WorkloadSpec(phases=(Alloc(anon=anon),))},
        faults=faults,
        knobs=KNOBS,
    )
    sim.ensure(ContainerDecl("a", Amount.nodes(1), Amount.nodes(2)), frozenset({1}))
    sim.advance(1)
    return sim


@pytest.mark.parametrize("code", [errno.EBUSY, errno.ENOSPC])
def test_set_nodes_error_fails_at_once_and_changes_nothing(code: int) -> None:
    sim = filled([SetNodesError(errno=code, container="a")])
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=10)
    events = sim.wait(10)
    assert [(e.kind, e.op, e.ok, e.errno, e.at) for e in events] == [
        (EventKind.OP_FINISHED, op, False, code, 1.0)
    ]
    r = sim.op_result(op)
    assert (r.ok, r.errno, r.nodes) == (False, code, frozenset({1}))
    assert sim.state("a").nodes == frozenset({1})
    assert set(sim.usage("a").per_node) == {1}
    # times=1: the next write goes through
    op2 = sim.start_set_nodes("a", frozenset({2}), deadline_s=10)
    sim.wait(10)
    assert sim.op_result(op2).ok


def test_set_nodes_error_waits_for_after_s() -> None:
    sim = filled([SetNodesError(errno=errno.EBUSY, after_s=5.0)])
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=10)
    sim.wait(10)
    assert sim.op_result(op).ok
    sim.advance(5)
    op = sim.start_set_nodes("a", frozenset({3}), deadline_s=10)
    sim.wait(10)
    assert sim.op_result(op).errno == errno.EBUSY


def test_gone_cgroup_reports_once_then_raises() -> None:
    sim = filled([Gone(container="a", at_s=5.0)])
    op = sim.start_reclaim("a", 10 * MIB, deadline_s=100)  # no cache: ends in one tick
    assert [(e.op, e.errno) for e in sim.wait(1)] == [(op, errno.EAGAIN)]
    events = sim.wait(100)
    assert [(e.kind, e.container, e.at) for e in events] == [(EventKind.GONE, "a", 5.0)]
    for call in (
        lambda: sim.usage("a"),
        lambda: sim.state("a"),
        lambda: sim.arm_tripwire("a", MIB),
        lambda: sim.start_set_nodes("a", frozenset({2}), 1),
        lambda: sim.start_reclaim("a", MIB, 1),
    ):
        with pytest.raises(CgroupGone):
            call()
    assert sim.processes("a") == ()
    assert "a" not in sim.existing()
    assert sim.node_memory()[1].free == 512 * MIB


def test_gone_ends_an_operation_in_flight() -> None:
    sim = filled([Gone(container="a", at_s=1.5)], anon=300 * MIB)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=10)
    events = sim.wait(10)
    assert [(e.kind, e.op, e.errno) for e in events] == [
        (EventKind.OP_FINISHED, op, errno.ENOENT),
        (EventKind.GONE, None, None),
    ]


def test_partial_migration_is_ok_but_leaves_pages_behind() -> None:
    sim = filled([PartialMigration(container="a", leave=100 * MIB)])
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=10)
    events = sim.wait(10)
    assert events[0].ok
    r = sim.op_result(op)
    assert r.ok and r.left_behind == 100 * MIB
    assert events[0].value == 100 * MIB
    assert sim.usage("a").per_node[1].total == 100 * MIB
    assert r.seconds == pytest.approx(0.2)  # only 25M moved


def test_partial_migration_by_fraction() -> None:
    sim = filled([PartialMigration(fraction=0.4)], anon=100 * MIB)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=10)
    sim.wait(10)
    assert sim.op_result(op).left_behind == 40 * MIB


def test_slow_migration_misses_its_deadline_then_finishes_in_the_background() -> None:
    # 12.5M/s is a whole number of bytes per 10 ms tick
    sim = filled([SlowMigration(container="a", bandwidth=25 * MIB // 2)], anon=100 * MIB)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=2.0)
    events = sim.wait(60)
    assert [(e.kind, e.op, e.ok, e.errno, e.at) for e in events] == [
        (EventKind.OP_FINISHED, op, False, errno.ETIMEDOUT, 3.0)
    ]
    r = sim.op_result(op)
    assert r.left_behind == 75 * MIB  # 2 s at 12.5M/s moved 25M
    assert r.seconds == pytest.approx(2.0)
    assert sim.wait(60) == []  # no second event for the same op...
    assert set(sim.usage("a").per_node) == {2}  # ...but the pages did move
    assert sim.stats().containers["a"].bytes_migrated == 100 * MIB


def test_slow_migration_by_factor() -> None:
    sim = filled([SlowMigration(factor=4.0)], anon=125 * MIB)
    op = sim.start_set_nodes("a", frozenset({2}), deadline_s=60)
    sim.wait(60)
    assert sim.op_result(op).seconds == pytest.approx(4.0)


def test_fault_list_parses_and_refuses_nonsense() -> None:
    faults = parse_faults(
        [
            {"kind": "set_nodes_error", "container": "a", "errno": "ENOSPC", "times": 2},
            {"kind": "gone", "container": "a", "at_s": 3},
            {"kind": "partial_migration", "fraction": 0.5},
            {"kind": "slow_migration", "bandwidth": "5M/s"},
        ]
    )
    assert faults == (
        SetNodesError(errno=errno.ENOSPC, container="a", times=2),
        Gone(container="a", at_s=3.0),
        PartialMigration(fraction=0.5),
        SlowMigration(bandwidth=5 * MIB),
    )
    for bad in (
        [{"kind": "explode"}],
        [{"kind": "set_nodes_error", "errno": "EWHAT"}],
        [{"kind": "partial_migration", "leave": "1M", "fraction": 0.5}],
        [{"kind": "gone", "container": "a"}],
        [{"kind": "slow_migration", "factor": 0}],
    ):
        with pytest.raises(ConfigError):
            parse_faults(bad)
