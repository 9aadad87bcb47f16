"""Every hand-over ends in the decision log, a cancelled one too (``zoned lend --wait``
follows it there)."""

from __future__ import annotations

from tests.test_engine import ctr, engine_on, host
from zoned.backends.sim.faults import Gone, SlowMigration
from zoned.model.actions import Return
from zoned.model.sizes import MIB


def test_a_hand_over_whose_container_vanishes_ends_abandoned() -> None:
    busy = {"batch": {"phases": [{"anon": "300M"}, {"idle_s": 300}]}}
    faults = [SlowMigration(container="batch", bandwidth=10 * MIB), Gone("batch", at_s=5)]
    b = host(busy, faults=faults)
    e = engine_on(b, {1: "web", 2: "batch", 3: "batch"}, ctr("web"), ctr("batch"))
    e.run(3)
    assert b.usage("batch").per_node[2].total > 200 * MIB  # pages to move
    e.override(Return(2, "batch", "test"))
    e.run(10)
    ends = [r.outcome for r in e.log if r.what == "return node 2 from batch to the pool"]
    assert ends[0] == "started"
    assert ends[-1] == "abandoned: batch's cgroup vanished"
    assert len(ends) == 2  # ended once
    assert not e.pending()
