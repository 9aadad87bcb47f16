"""The pure check behind ``zoned lend``/``reclaim``: may a node be taken from its holder?"""

from __future__ import annotations

from zoned.model.sizes import MIB
from zoned.model.snapshot import ContainerView, NodeView, Snapshot
from zoned.policy.overrides import Risk, check_take

NODE = 256 * MIB


def snap(holds: frozenset[int], *, anon: int, file: int = 0, shmem: int = 0) -> Snapshot:
    nodes = {n: NodeView(n, NODE, NODE // 2) for n in range(8)}
    web = ContainerView("web", holds, current=anon + file, anon=anon, file=file, shmem=shmem)
    return Snapshot(at=1.0, containers={"web": web}, nodes=nodes)


SIX = frozenset(range(1, 7))  # 1.5G, as in the report


def test_the_report_web_1_1g_anon_on_1_5g_is_refused_with_its_numbers() -> None:
    s = snap(SIX, anon=1126 * MIB, file=40 * MIB)
    got = check_take(s, "web", SIX, 5, 85.0)
    assert got.risk is Risk.TRIPWIRE and not got.ok
    assert got.refusal() == (
        # in MiB: 1126M anon and a 1088M tripwire would both be written "1.1G"
        "refused: web uses 1126M anon (+ 40M page cache); without node 5 its nodes 1-4,6 "
        "hold 1280M (tripwire 1088M at 85%): over its tripwire, the policy would take a "
        "node back at once; --force to take it anyway"
    )


def test_anon_that_does_not_fit_the_rest_is_an_oom_risk() -> None:
    holds = frozenset({1, 2})
    got = check_take(snap(holds, anon=300 * MIB), "web", holds, 2, 85.0)
    assert got.risk is Risk.OOM
    assert "without node 2 its node 1 holds 256M (tripwire 218M at 85%)" in got.words
    assert got.words.endswith("it would not fit (OOM kill)")


def test_page_cache_is_not_counted_but_shmem_is() -> None:
    holds = frozenset({1, 2})
    cache = snap(holds, anon=100 * MIB, file=300 * MIB)  # 100M anon fits 256M under 217M
    assert check_take(cache, "web", holds, 2, 85.0).ok
    tmpfs = snap(holds, anon=100 * MIB, file=300 * MIB, shmem=150 * MIB)
    assert check_take(tmpfs, "web", holds, 2, 85.0).risk is Risk.TRIPWIRE


def test_under_the_tripwire_of_the_rest_is_ok_and_still_says_the_numbers() -> None:
    got = check_take(snap(SIX, anon=500 * MIB), "web", SIX, 5, 85.0)
    assert got.ok
    assert got.words.startswith("web uses 500M anon (+ 0B page cache); without node 5")


def test_exactly_at_the_tripwire_is_refused_as_the_policy_would_grow_it() -> None:
    holds = frozenset({1, 2})
    trip = int(NODE * 0.85)
    assert check_take(snap(holds, anon=trip), "web", holds, 2, 85.0).risk is Risk.TRIPWIRE
    assert check_take(snap(holds, anon=trip - 1), "web", holds, 2, 85.0).ok


def test_unknown_usage_is_refused() -> None:
    s = snap(SIX, anon=0)
    got = check_take(s, "batch", frozenset({7}), 7, 85.0)
    assert got.risk is Risk.UNKNOWN
    assert got.refusal().startswith("refused: batch's usage is unknown")


def test_the_holders_last_node() -> None:
    last = frozenset({3})
    got = check_take(snap(last, anon=10 * MIB), "web", last, 3, 85.0)
    assert got.risk is Risk.OOM
    assert "without node 3 it holds no node: it would not fit" in got.words
    empty = check_take(snap(last, anon=0, file=50 * MIB), "web", last, 3, 85.0)
    assert empty.ok  # nothing it cannot drop: nothing to kill


def test_a_node_of_unknown_size_counts_as_nothing_kept() -> None:
    holds = frozenset({1, 9})  # node 9 is not in the snapshot
    got = check_take(snap(holds, anon=10 * MIB), "web", holds, 1, 85.0)
    assert got.risk is Risk.OOM and "its node 9 holds 0B" in got.words
