"""Directed reclaim per node (``nodeN/reclaim``, Linux 6.16+) in the hand-over: what a
donor leaves on a node taken from it is reclaimed on that node alone, then the node is
handed on and the done record says what was reclaimed there and what was left behind.

The simulated host leaves page cache behind as the kernel does with a partial migration
(``PartialMigration``: anon moves first, cache stays); its ``node_reclaim`` knob is the
kernel's file."""

from __future__ import annotations

import errno

import pytest

from tests.support.donor import LEFT, donor_host
from tests.test_engine import ctr, engine_on
from zoned.backends.sim import SimBackend
from zoned.config.load import loads
from zoned.engine import Engine
from zoned.errors import BackendError, ConfigError
from zoned.handover import DRAINED_BYTES, node_reclaim_wanted
from zoned.model.actions import Return
from zoned.model.decisions import LogRecord
from zoned.model.sizes import MIB


def take_node_2(b: SimBackend, **policy: object) -> tuple[Engine, LogRecord]:
    e = engine_on(b, {1: "web", 2: "batch", 3: "batch"}, ctr("web"), ctr("batch"), **policy)
    e.run(3)
    assert b.usage("batch").per_node[2].file >= 100 * MIB
    e.override(Return(2, "batch", "test"))
    e.run(10)
    done = [r for r in e.log if r.what == "return node 2 from batch to the pool"]
    assert done[-1].code == "done", [r.outcome for r in done]
    return e, done[-1]


def test_the_node_taken_back_is_reclaimed_alone_before_it_is_handed_on() -> None:
    b = donor_host(node_reclaim=True)
    e, done = take_node_2(b)
    assert "reclaimed on node 2 (nodeN/reclaim)" in done.outcome, done.outcome
    assert done.reclaimed is not None and done.reclaimed >= LEFT - MIB
    assert done.left_behind is not None and done.left_behind <= DRAINED_BYTES
    assert "left behind" not in done.outcome or done.left_behind > 0
    assert b.usage("batch").per_node.get(2) is None or b.usage("batch").per_node[2].total == 0
    # the donor's cache on its kept node was not touched: only node 2 was reclaimed
    assert b.usage("batch").per_node[3].file > 0
    assert not e.pending()


def test_without_the_kernel_file_the_cache_stays_as_before() -> None:
    b = donor_host(node_reclaim=False)
    _, done = take_node_2(b)
    assert "nodeN/reclaim" not in done.outcome
    assert done.reclaimed is None
    assert done.left_behind == LEFT
    assert "64M left behind" in done.outcome or "64.0M left behind" in done.outcome


def test_the_policy_can_turn_it_off() -> None:
    b = donor_host(node_reclaim=True)
    _, done = take_node_2(b, node_reclaim=False)
    assert "nodeN/reclaim" not in done.outcome
    assert done.left_behind == LEFT


@pytest.mark.parametrize(
    ("left", "enabled", "can", "tried", "wanted"),
    [
        (LEFT, True, True, False, True),
        (DRAINED_BYTES, True, True, False, False),  # drained already
        (LEFT, False, True, False, False),  # policy.node_reclaim: false
        (LEFT, True, False, False, False),  # no nodeN/reclaim
        (LEFT, True, True, True, False),  # once per hand-over
    ],
)
def test_when_a_node_is_reclaimed(
    left: int, enabled: bool, can: bool, tried: bool, wanted: bool
) -> None:
    assert node_reclaim_wanted(left, enabled, can, tried) is wanted


def test_the_knob_is_a_boolean_with_a_located_error() -> None:
    assert loads("policy: {node_reclaim: false}\n").policy.node_reclaim is False
    assert loads("policy: {}\n").policy.node_reclaim is True
    with pytest.raises(ConfigError, match=r"^z.yaml:1:24: policy.node_reclaim: found string"):
        loads("policy: {node_reclaim: auto}\n", "z.yaml")


class RefusingHost(SimBackend):
    """Says it can reclaim a node, then the kernel refuses the write (EROFS)."""

    def start_node_reclaim(self, name: str, node: int, nbytes: int, deadline_s: float) -> int:
        raise BackendError("node2/reclaim: Read-only file system (EROFS)", errno.EROFS)


def test_a_refused_node_reclaim_still_hands_the_node_on() -> None:
    b = donor_host(node_reclaim=True, cls=RefusingHost)
    e, done = take_node_2(b)
    assert "nodeN/reclaim: node2/reclaim: Read-only file system (EROFS)" in done.outcome
    assert done.left_behind == LEFT and done.reclaimed == 0
    assert not e.pending() and 2 not in e.zonemap.nodes_of("batch")


class ExitingHost(SimBackend):
    """The donor's pages on the node are freed (its processes exit) as the node's reclaim
    starts: the kernel's file then finds nothing there and reports EAGAIN with 0 B."""

    def start_node_reclaim(self, name: str, node: int, nbytes: int, deadline_s: float) -> int:
        c = self._live(name)
        self._used[node] -= c.file.pop(node, 0) + c.anon.pop(node, 0)
        return super().start_node_reclaim(name, node, nbytes, deadline_s)


def test_pages_freed_during_the_node_reclaim_count_as_freed_not_reclaimed() -> None:
    """Issue 13 (honest outcomes), seen on 7.3: a donor killed as the evacuation began;
    its 80M left the node during the reclaim, which got EAGAIN with 0 B, and the record
    said "80M reclaimed on node 4"."""
    b = donor_host(node_reclaim=True, cls=ExitingHost)
    _, done = take_node_2(b)
    assert "0B reclaimed on node 2 (nodeN/reclaim:" in done.outcome, done.outcome
    assert "64M freed (not migrated: exits or frees)" in done.outcome, done.outcome
    assert done.reclaimed == 0
