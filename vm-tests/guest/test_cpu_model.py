"""The guest CPU's masked loads behave like a real CPU's.

QEMU 7.2's TCG faults on the masked-off lanes of ``VMASKMOV``/``VPMASKMOV`` loads; real CPUs
suppress those faults. numpy 2's AVX2 sort loads an array's tail that way, so sorting a
short array that ends just before an unmapped page killed ``zoned usage`` with SIGSEGV in
the guest (issue 11). The harness boots TCG guests with AVX off (``harness.TCG_CPU``); this
test fails on a CPU model that brings the fault back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Finding

pytestmark = pytest.mark.boot(numa="8", cgroup="v2")

# Arrays of 1..64 uint64 whose last element is the last word before a PROT_NONE page, sorted
# in place (numpy's path for np.sort) and through zoned's own sorted_unique.
PROBE = r"""
import ctypes, mmap
import numpy as np
from zoned.kernel.pagemap import sorted_unique
PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
m = mmap.mmap(-1, 3 * PAGE)
base = np.frombuffer(m, dtype=np.uint8).ctypes.data
assert libc.mprotect(base + 2 * PAGE, PAGE, 0) == 0
rng = np.random.default_rng(11)
for n in range(1, 65):
    a = np.frombuffer(m, dtype="<u8", count=n, offset=2 * PAGE - 8 * n)
    a[:] = rng.integers(0, 2**40, n, dtype=np.uint64)
    want = sorted(set(int(x) for x in a))
    assert [int(x) for x in sorted_unique([a])] == want, n
    a.sort()
    assert [int(x) for x in a] == sorted(int(x) for x in a), n
print("ok", n)
"""


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_sort_at_a_page_end_does_not_fault(finding: Finding) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    flags = cpu_flags()
    finding("guest_cpu_vex_flags", sorted(flags & {"avx", "avx2", "fma", "f16c"}))
    assert proc.returncode != -signal.SIGSEGV, (
        "sorting a uint64 array that ends before an unmapped page died of SIGSEGV: this guest "
        f"CPU's masked vector loads fault (QEMU TCG with AVX; flags {sorted(flags)})"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok 64"
