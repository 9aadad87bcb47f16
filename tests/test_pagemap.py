"""pagemap decoding and scanning on fake files laid out as the kernel lays them out."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.support.realhost import need
from zoned.errors import PagemapError
from zoned.kernel.pagemap import (
    EXCLUSIVE,
    FILE,
    PRESENT,
    SWAPPED,
    Entry,
    PagemapReader,
    parse_maps,
    sample_mask,
    sampling_stderr,
)

PAGE = 4096
MAPS = """\
00001000-00004000 r--p 00000000 08:01 123 /usr/bin/x
00010000-00012000 rw-p 00000000 00:00 0 [heap]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
"""


def fake_proc(tmp: Path, pid: int, entries: dict[int, int], maps: str = MAPS) -> Path:
    """``entries``: virtual page number → raw 64-bit entry (others are zero: not present)."""
    d = tmp / str(pid)
    d.mkdir(parents=True)
    (d / "maps").write_text(maps)
    with (d / "pagemap").open("wb") as f:
        for vpn, raw in entries.items():
            f.seek(vpn * 8)
            f.write(struct.pack("<Q", raw))
        f.truncate(0x20 * 8)
    return tmp


def test_entry_bits() -> None:
    e = Entry(PRESENT | FILE | EXCLUSIVE | 0x1234)
    assert e.present and e.file and e.exclusive and not e.swapped and e.pfn == 0x1234
    s = Entry(SWAPPED | (5 << 5) | 2)
    assert s.swapped and not s.present and s.pfn is None


def test_parse_maps_skips_vsyscall() -> None:
    assert parse_maps(MAPS) == [(0x1000, 0x4000), (0x10000, 0x12000)]


def test_scan_unique_pfns(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path, 10, {1: PRESENT | FILE | 100, 2: PRESENT | FILE | 100, 3: SWAPPED | 7,
                       0x10: PRESENT | 200, 0x11: PRESENT | 300, 0x18: PRESENT | 999},
    )  # fmt: skip
    r = PagemapReader(proc, page_size=PAGE)
    got = r.pfns(10)
    assert got is not None and got.tolist() == [100, 200, 300]  # 0x18 is outside every VMA
    assert r.stats.entries == 3 + 2 and r.stats.present == 4 and r.stats.processes == 1
    assert r.pfns(11) is None and r.stats.gone == 1


def test_union_over_processes(tmp_path: Path) -> None:
    fake_proc(tmp_path, 1, {1: PRESENT | 5, 0x10: PRESENT | 6})
    fake_proc(tmp_path, 2, {1: PRESENT | 5, 2: PRESENT | 7})
    r = PagemapReader(tmp_path, page_size=PAGE)
    assert r.union([1, 2, 3]).tolist() == [5, 6, 7]


def test_hidden_pfns_need_cap_sys_admin(tmp_path: Path) -> None:
    fake_proc(tmp_path, 3, {1: PRESENT, 2: PRESENT | FILE})
    with pytest.raises(PagemapError, match="CAP_SYS_ADMIN"):
        PagemapReader(tmp_path, page_size=PAGE).pfns(3)


def test_rate_limit_sleeps(tmp_path: Path) -> None:
    fake_proc(tmp_path, 4, {1: PRESENT | 5})
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    r = PagemapReader(
        tmp_path, page_size=PAGE, chunk_pages=1, rate_pages_per_s=10.0,
        clock=lambda: now[0], sleep=sleep,
    )  # fmt: skip
    r.pfns(4)
    assert r.stats.entries == 5 and now[0] == pytest.approx(0.5)


def test_sampling_is_consistent_and_unbiased() -> None:
    pfns = np.arange(1, 200_001, dtype=np.uint64)
    keep = sample_mask(pfns, 16)
    assert np.array_equal(keep, sample_mask(pfns, 16))
    est = int(keep.sum()) * 16
    err = sampling_stderr(int(keep.sum()), 16)
    assert abs(est - len(pfns)) < 4 * err
    strided = pfns[::512]  # THP-like strides must not alias with the sample
    assert 0.5 < sample_mask(strided, 16).sum() * 16 / len(strided) < 1.5


def test_real_pagemap_as_root() -> None:
    need(os.geteuid() == 0, "reading PFNs needs root (CAP_SYS_ADMIN)")
    buf = bytearray(8 * PAGE)
    for i in range(0, len(buf), PAGE):
        buf[i] = 1
    r = PagemapReader()
    got = r.pfns(os.getpid())
    assert got is not None and len(got) > 8 and r.stats.present >= len(got)
