"""The fadvise method's wait for readahead: done when complete, or when no page comes."""

from __future__ import annotations

import time

import pytest

from zoned.kernel import mmcalls
from zoned.shared import helper as shared


def fake_resident(monkeypatch: pytest.MonkeyPatch, counts: list[int], pages: int) -> list[int]:
    """mmcalls.resident answering ``counts[i]`` resident pages at its i-th call (the last
    one from then on); returns the list of counts served."""
    served: list[int] = []

    def resident(addr: int, size: int) -> bytes:
        n = counts[min(len(served), len(counts) - 1)]
        served.append(n)
        return bytes([1] * n + [0] * (pages - n))

    monkeypatch.setattr(mmcalls, "resident", resident)
    return served


def test_returns_once_every_page_is_resident(monkeypatch: pytest.MonkeyPatch) -> None:
    served = fake_resident(monkeypatch, [0, 2, 4, 8], 8)
    shared._wait_resident(0, 8 * 4096, time.monotonic() + 30, settle_s=10)
    assert served == [0, 2, 4, 8]


def test_stops_when_readahead_brings_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    served = fake_resident(monkeypatch, [0, 1, 2], 8)  # stuck at 2 of 8 pages
    t0 = time.monotonic()
    shared._wait_resident(0, 8 * 4096, t0 + 30, settle_s=0.2)
    took = time.monotonic() - t0
    assert 0.2 <= took < 5, took  # the settle time, not the 30 s deadline
    assert served[:3] == [0, 1, 2] and set(served[3:]) == {2}


def test_keeps_waiting_while_pages_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    # A new page every 10 polls (~0.1 s apart), for longer than the settle time: not cut short.
    counts = [i // 10 for i in range(80)] + [8]
    served = fake_resident(monkeypatch, counts, 8)
    shared._wait_resident(0, 8 * 4096, time.monotonic() + 30, settle_s=0.3)
    assert served[-1] == 8


def test_deadline_still_bounds_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resident(monkeypatch, list(range(10_000)), 100_000)  # always growing
    t0 = time.monotonic()
    shared._wait_resident(0, 100_000 * 4096, t0 + 0.2, settle_s=10)
    assert time.monotonic() - t0 < 5
