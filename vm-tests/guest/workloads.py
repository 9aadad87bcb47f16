"""Small allocators for the in-guest scenarios, run as ``python -S workloads.py ...``.

Standalone (stdlib only, no ``site``: a TCG Python start costs seconds):

    anon --mib 300 --rate 30 [--chunk 4] [--populate] [--interleave]
        anonymous memory at a steady rate (MiB/s), in chunks; each chunk's pages are
        touched (one fault per page: the kernel's memory.high throttling applies at each
        return to user space) or, with --populate, faulted in by one mmap(MAP_POPULATE)
        (charged inside one system call: memory.high cannot hold it back, as a program that
        reads a large buffer in one go). --interleave spreads pages over every node of the
        cpuset (set_mempolicy(MPOL_INTERLEAVE)).
    file --path P --mib 160 --rate 40 [--chunk 4]
        page cache: read P (created sparse at that size if missing) at a steady rate.

Protocol on stdin/stdout, one line each: the child prints ``hello`` and waits for ``go``
(the caller moves it into its cgroup first, so every page is charged there); prints
``at <MiB>`` after each chunk and ``done <MiB>`` at the end; then obeys ``free <MiB>``
(anon: drop the newest chunks; answers ``freed <MiB>``), ``exit`` or end of input.
A kill shows as end of output before ``done``.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import select
import sys
import time
from pathlib import Path

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
SYS_SET_MEMPOLICY = 238  # x86_64
MPOL_INTERLEAVE = 3


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def command(timeout_s: float | None) -> str | None:
    """The next stdin line within ``timeout_s`` ("" at end of input), None if none came."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout_s)
    if not ready:
        return None
    return sys.stdin.readline().strip() or "exit"


def interleave() -> None:
    bits = 0
    online = Path("/sys/devices/system/node/online").read_text()
    for part in online.strip().split(","):
        lo, _, hi = part.partition("-")
        for n in range(int(lo), int(hi or lo) + 1):
            bits |= 1 << n
    libc = ctypes.CDLL(None, use_errno=True)
    mask = (ctypes.c_ulong * 1)(bits)
    if libc.syscall(SYS_SET_MEMPOLICY, MPOL_INTERLEAVE, mask, 65) != 0:
        raise OSError(ctypes.get_errno(), "set_mempolicy")


def alloc_chunk(nbytes: int, populate: bool) -> mmap.mmap:
    if populate:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
        return mmap.mmap(-1, nbytes, flags=flags)
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, nbytes, PAGE):  # one fault per page
        m[off] = 1
    return m


def sparse(path: str, nbytes: int) -> None:
    """Make ``path`` at least ``nbytes`` long (sparse). ftruncate(2) needs a descriptor open
    for writing: on an O_RDONLY one it is EINVAL (what killed the first directed-reclaim
    runs), so the reads use another, read-only one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < nbytes:
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)


def paced(total_mib: int, rate: float, chunk_mib: int) -> list[tuple[int, float]]:
    """(chunk MiB, due time offset) for each chunk of a steady-rate allocation."""
    out = []
    done = 0
    while done < total_mib:
        step = min(chunk_mib, total_mib - done)
        out.append((step, done / rate))
        done += step
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("anon", "file"))
    ap.add_argument("--mib", type=int, required=True)
    ap.add_argument("--rate", type=float, default=30.0, help="MiB/s")
    ap.add_argument("--chunk", type=int, default=4, help="MiB")
    ap.add_argument("--populate", action="store_true")
    ap.add_argument("--interleave", action="store_true")
    ap.add_argument("--path")
    a = ap.parse_args(argv)
    say("hello")
    if command(None) != "go":
        return 0
    if a.interleave:
        interleave()
    held: list[mmap.mmap] = []
    fd = -1
    if a.what == "file":
        sparse(a.path, a.mib * MIB)
        fd = os.open(a.path, os.O_RDONLY)
    start = time.monotonic()
    got = 0
    for step, due in paced(a.mib, a.rate, a.chunk):
        while (wait := start + due - time.monotonic()) > 0:
            if command(wait) == "exit":
                return 0
        if a.what == "anon":
            held.append(alloc_chunk(step * MIB, a.populate))
        else:
            left = step * MIB
            while left > 0:
                n = len(os.read(fd, min(left, 256 * 1024)))
                if n == 0:
                    break
                left -= n
        got += step
        say(f"at {got}")
    say(f"done {got}")
    while True:
        line = command(None)
        if line is None or line == "exit":
            return 0
        if line.startswith("free "):
            want = int(line.split()[1])
            freed = 0
            while held and freed < want:
                m = held.pop()
                freed += len(m) // MIB
                m.close()
            say(f"freed {freed}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
