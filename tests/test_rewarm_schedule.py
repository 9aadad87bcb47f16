"""RewarmSchedule: the interval, and a re-warm brought forward when the shared zone's page
cache drops (zoned.service.sidecars)."""

from __future__ import annotations

from zoned.shared.rewarm import RewarmSchedule

MIB = 1 << 20
DROP = 0.05
GAP = 10.0


def ended_at(t: float, interval_s: float = 60.0) -> RewarmSchedule:
    """A schedule whose first re-warm ran and ended at ``t``."""
    s = RewarmSchedule(next_at=0.0)
    s.started(1)
    s.finished(t, interval_s)
    return s


def test_finished_schedules_the_next_after_the_interval() -> None:
    s = ended_at(100.0)
    assert (s.next_at, s.running_op, s.runs) == (160.0, None, 1)


def test_a_drop_over_the_threshold_brings_the_rewarm_forward() -> None:
    s = ended_at(100.0)
    assert not s.observe(111.0, 100 * MIB, DROP, GAP)  # the baseline
    assert not s.observe(112.0, 96 * MIB, DROP, GAP)  # 4 %: not yet
    assert s.next_at == 160.0
    assert s.observe(113.0, 94 * MIB, DROP, GAP)  # 6 % below the peak
    assert (s.next_at, s.brought_forward) == (113.0, 1)
    assert not s.observe(114.0, 50 * MIB, DROP, GAP)  # already due: counted once


def test_the_peak_is_the_most_seen_since_the_last_end() -> None:
    s = ended_at(100.0)
    s.observe(111.0, 80 * MIB, DROP, GAP)
    s.observe(112.0, 100 * MIB, DROP, GAP)  # the cache grew: new peak
    assert s.observe(113.0, 90 * MIB, DROP, GAP)  # 10 % below 100, above the first 80
    s.started(2)
    s.finished(130.0, 60.0)
    assert s.peak_file_bytes == 0  # a new re-warm starts a new baseline
    assert not s.observe(141.0, 90 * MIB, DROP, GAP)


def test_no_early_rewarm_within_the_gap_after_one_ended() -> None:
    s = ended_at(100.0)
    s.observe(101.0, 100 * MIB, DROP, GAP)
    assert not s.observe(105.0, 10 * MIB, DROP, GAP)  # 5 s after the end: too soon
    assert s.observe(110.0, 10 * MIB, DROP, GAP)  # the peak was kept through the gap


def test_nothing_happens_while_running_before_the_first_or_when_off() -> None:
    fresh = RewarmSchedule(next_at=5.0)
    assert not fresh.observe(50.0, 0, DROP, GAP)  # no re-warm has ended yet
    s = ended_at(100.0)
    s.observe(120.0, 100 * MIB, DROP, GAP)
    s.started(2)
    assert not s.observe(121.0, 0, DROP, GAP)  # one is running
    s.finished(122.0, 60.0)
    s.observe(140.0, 100 * MIB, 0.0, GAP)
    assert not s.observe(141.0, 0, 0.0, GAP)  # drop_frac 0: off
    assert s.next_at == 182.0


def test_unscheduled_is_left_unscheduled() -> None:
    s = ended_at(100.0)
    s.next_at = None  # the daemon turned re-warming off (a reload dropped the paths)
    s.observe(120.0, 100 * MIB, DROP, GAP)
    assert not s.observe(121.0, 0, DROP, GAP)
    assert s.next_at is None


def test_the_level_at_the_end_is_the_first_peak() -> None:
    """An eviction before the first step after a re-warm is still a drop from the level
    read at its end (the daemon passes it); without it, that step's reading is the peak."""
    s = RewarmSchedule(next_at=0.0)
    s.started(1)
    s.finished(100.0, 600.0, 34 * MIB)
    assert s.peak_file_bytes == 34 * MIB
    assert s.observe(111.0, 2 * MIB, DROP, GAP)  # evicted before any step saw 34 MiB
    blind = ended_at(100.0, 600.0)
    assert not blind.observe(111.0, 2 * MIB, DROP, GAP)
    assert not blind.observe(120.0, 2 * MIB, DROP, GAP)
    assert blind.next_at == 700.0
