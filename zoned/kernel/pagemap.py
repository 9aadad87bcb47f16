"""Read ``/proc/PID/pagemap``: the physical frame (PFN) behind each mapped virtual page.

Format (Documentation/admin-guide/mm/pagemap.rst): one little-endian 64-bit entry per
virtual page, at file offset ``vaddr / PAGE_SIZE * 8``; reads must be 8-byte aligned
(the kernel answers EINVAL otherwise). Bits:

- 0-54: PFN when present (zero unless the reader has CAP_SYS_ADMIN); swap type/offset when
  swapped;
- 55: soft-dirty; 56: exclusively mapped (mapcount 1, since 4.2); 57: uffd-wp;
- 61: file page or shared anonymous (since 3.5); 62: swapped; 63: present.

Only the VMAs listed in ``/proc/PID/maps`` are read (the rest of the address space is
holes, and the man page says to skip them). The PFN sets come back as sorted numpy arrays
so that unions and intersections over thousands of processes stay vectorised.

Cost: the kernel walks the page tables for every entry read, and decoding is vectorised;
``docs/shared-zone.md`` has the measured pages/s. Two bounds keep a scan polite:

- ``rate_pages_per_s``: after each chunk, sleep until the entries read so far fit the rate;
- ``sample``: keep only PFNs whose hash is 0 mod ``sample``. The same PFN is in or out
  of the sample whichever process maps it, so per-container unique counts and overlaps
  between containers are unbiased estimates (multiply by ``sample``); the relative
  standard error for K true pages is about ``sqrt((sample - 1) / K)``. Sampling shrinks
  the sets (memory, unions) but not the kernel's walk: combine it with the rate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from zoned.errors import PagemapError
from zoned.kernel.roots import PROC_ROOT

PFN_BITS = 55
PFN_MASK = (1 << PFN_BITS) - 1
SOFT_DIRTY = 1 << 55
EXCLUSIVE = 1 << 56
UFFD_WP = 1 << 57
FILE = 1 << 61
SWAPPED = 1 << 62
PRESENT = 1 << 63

ENTRY = 8
_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads strided PFNs
# The vsyscall page is a fixed kernel mapping; its entry says nothing about the process.
_VSYSCALL = 0xFFFFFFFFFF600000

PfnArray = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Entry:
    """One decoded pagemap entry."""

    raw: int

    @property
    def present(self) -> bool:
        return bool(self.raw & PRESENT)

    @property
    def swapped(self) -> bool:
        return bool(self.raw & SWAPPED)

    @property
    def file(self) -> bool:
        return bool(self.raw & FILE)

    @property
    def exclusive(self) -> bool:
        return bool(self.raw & EXCLUSIVE)

    @property
    def soft_dirty(self) -> bool:
        return bool(self.raw & SOFT_DIRTY)

    @property
    def pfn(self) -> int | None:
        """The frame number when present (0 means hidden: no CAP_SYS_ADMIN)."""
        return self.raw & PFN_MASK if self.present else None


def parse_maps(text: str) -> list[tuple[int, int]]:
    """``/proc/PID/maps`` → [(start, end)] of each VMA (vsyscall left out)."""
    out: list[tuple[int, int]] = []
    for line in text.splitlines():
        rng = line.split(" ", 1)[0]
        lo, sep, hi = rng.partition("-")
        if not sep:
            continue
        start, end = int(lo, 16), int(hi, 16)
        if start != _VSYSCALL:
            out.append((start, end))
    return out


def sample_mask(pfns: PfnArray, sample: int) -> npt.NDArray[np.bool_]:
    """Which PFNs are in a 1-in-``sample`` sample (the same answer for every caller)."""
    if sample <= 1:
        return np.ones(pfns.shape, dtype=np.bool_)
    h = (pfns * _HASH) >> np.uint64(32)
    keep: npt.NDArray[np.bool_] = (h % np.uint64(sample)) == 0
    return keep


@dataclass
class ScanStats:
    """What a scan cost: entries read, present pages seen, time spent (seconds)."""

    entries: int = 0
    present: int = 0
    seconds: float = 0.0
    slept: float = 0.0
    processes: int = 0
    gone: int = 0  # processes that exited during the scan

    def add(self, other: ScanStats) -> None:
        self.entries += other.entries
        self.present += other.present
        self.seconds += other.seconds
        self.slept += other.slept
        self.processes += other.processes
        self.gone += other.gone


@dataclass
class PagemapReader:
    """Reads PFN sets of processes under ``proc_root``; see the module notes on bounds."""

    proc_root: Path = PROC_ROOT
    page_size: int = field(default_factory=lambda: os.sysconf("SC_PAGE_SIZE"))
    chunk_pages: int = 1 << 16  # 512 KiB of entries per read
    sample: int = 1
    rate_pages_per_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stats: ScanStats = field(default_factory=ScanStats)

    def __post_init__(self) -> None:
        if self.sample < 1:
            raise ValueError("sample must be >= 1")
        if self.chunk_pages < 1:
            raise ValueError("chunk_pages must be >= 1")
        self._t0: float | None = None
        self._budget_entries = 0

    def _pace(self, n: int) -> None:
        """Count ``n`` entries against the rate; sleep when ahead of it."""
        if self.rate_pages_per_s is None:
            return
        if self._t0 is None:
            self._t0 = self.clock()
        self._budget_entries += n
        due = self._t0 + self._budget_entries / self.rate_pages_per_s
        ahead = due - self.clock()
        if ahead > 0:
            self.sleep(ahead)
            self.stats.slept += ahead

    def pfns(self, pid: int) -> PfnArray | None:
        """Sorted unique PFNs (sampled) of the process's present pages; None if it is gone.

        Raises PagemapError when present pages come back with PFN 0 (no CAP_SYS_ADMIN).
        """
        t0 = self.clock()
        base = self.proc_root / str(pid)
        try:
            maps = parse_maps((base / "maps").read_text())
            fd = os.open(base / "pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            self.stats.gone += 1
            return None
        found: list[PfnArray] = []
        entries = present = 0
        hidden = False
        try:
            for start, end in maps:
                first, last = start // self.page_size, end // self.page_size
                for lo in range(first, last, self.chunk_pages):
                    n = min(self.chunk_pages, last - lo)
                    try:
                        data = os.pread(fd, n * ENTRY, lo * ENTRY)
                    except ProcessLookupError:
                        self.stats.gone += 1
                        return None
                    usable = len(data) - len(data) % ENTRY
                    arr = np.frombuffer(data[:usable], dtype="<u8")
                    entries += len(arr)
                    here = arr[(arr & np.uint64(PRESENT)) != 0] & np.uint64(PFN_MASK)
                    present += len(here)
                    if len(here) and not here.any():
                        hidden = True
                    here = here[here != 0]
                    if self.sample > 1:
                        here = here[sample_mask(here, self.sample)]
                    if len(here):
                        found.append(here.astype(np.uint64))
                    self._pace(len(arr))
                    if len(data) < n * ENTRY:
                        break  # the VMA shrank while we read
        finally:
            os.close(fd)
        self.stats.entries += entries
        self.stats.present += present
        self.stats.processes += 1
        self.stats.seconds += self.clock() - t0
        if hidden and not found:
            raise PagemapError(
                f"{base}/pagemap shows present pages without PFNs: reading PFNs needs CAP_SYS_ADMIN"
            )
        return sorted_unique(found)

    def union(self, pids: list[int] | tuple[int, ...]) -> PfnArray:
        """Sorted unique PFNs over several processes (those that exited are left out)."""
        return sorted_unique([p for p in (self.pfns(pid) for pid in pids) if p is not None])


def sorted_unique(parts: list[PfnArray]) -> PfnArray:
    """Sorted unique values of the arrays together. Sort-based: numpy 2's hash-based
    ``np.unique`` measured 12x slower on PFN sets (0.6 s for 265k PFNs)."""
    if not parts:
        return np.empty(0, dtype=np.uint64)
    arr: PfnArray = np.sort(np.concatenate(parts))
    if len(arr) < 2:
        return arr
    keep = np.empty(len(arr), dtype=np.bool_)
    keep[0] = True
    np.not_equal(arr[1:], arr[:-1], out=keep[1:])
    out: PfnArray = arr[keep]
    return out


def sampling_stderr(sampled: int, sample: int) -> float:
    """Standard error (in pages) of ``sampled * sample`` as an estimate of a true count.

    Each of K true pages is kept with probability 1/s, so the kept count is Binomial(K,
    1/s) and the estimate's variance is K (s - 1); K is estimated by sampled * s.
    """
    if sample <= 1:
        return 0.0
    k = sampled * sample
    return float((k * (sample - 1)) ** 0.5)
