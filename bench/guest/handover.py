"""Guest side of ``bench/vm_handover.py``: evacuating a node by writing ``cpuset.mems``.

For each size N, a child in a cpuset with ``mems = {a}`` maps and touches N MiB of private
anonymous memory; then ``cpuset.mems`` is written ``{b}``, ``{a}``, ``{b}`` (the write
blocks while the kernel migrates). Each write is timed; the bytes that left the source
node come from ``/proc/PID/numa_maps`` before and after (all of the child's mappings, so
the interpreter's own heap counts too). The baseline is ``ctypes.memmove`` (glibc memcpy)
of the same N MiB between two touched buffers in this process, best of several.

v2: the cgroup ``zbench-ho`` under the root of the unified hierarchy (memory migrates on a
mems write). v1: ``zbench-ho`` in the v1 cpuset hierarchy with ``cpuset.memory_migrate=1``.
v2 also measures a 64 MiB tmpfs file (page cache) written by the child, once unmapped and
once mapped by it, from ``memory.numa_stat``'s ``shmem`` per node.

Where the time goes (``--path-sizes``): the same move made four ways, each followed by the
``cpuset.mems`` write (which then moves what is left): the write alone; ``migrate_pages(2)``
of the child from this process first; ``move_pages(2)`` first, in batches of 512 or 4096
pages (each batch asked where its pages are, then the ones on the source node moved); and
that from two threads over halves of the range. As in zoned's evacuation, the child's
cpuset holds both nodes (``{a,b}``, written before each move: widening moves nothing) and the
write takes the old one away; move_pages(2) refuses a node outside the task's cpuset
(EACCES), so this is also the only order it can work in. The child's mems read both nodes
until the write, and no page is left on the old node after it.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import json
import mmap
import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoned.kernel import mmcalls

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
NAME = "zbench-ho"
SHM = Path("/dev/shm/zbench-ho")

# The child: waits for "go" (it is in the cpuset by then), maps and touches N bytes of
# private anonymous memory (or writes a tmpfs file of N bytes and maybe maps it), answers
# "ready", and holds it until stdin closes.
CHILD = r"""
import mmap, sys
sys.stdin.readline()
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "anon":
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)
    m.madvise(mmap.MADV_HUGEPAGE if sys.argv[3] == "thp" else mmap.MADV_NOHUGEPAGE)
    v = memoryview(m)
    v[::4096] = b"\1" * (n // 4096)
else:
    with open(sys.argv[3], "wb") as f:
        block = b"\1" * (1 << 20)
        for _ in range(n >> 20):
            f.write(block)
    if kind == "file-mapped":
        f = open(sys.argv[3], "r+b")
        m = mmap.mmap(f.fileno(), n)
        v = memoryview(m)
        total = sum(v[::4096])  # map every page
print("ready", flush=True)
sys.stdin.read()
"""


class Cpuset:
    """The benchmark's cpuset on v2 or v1 (memory_migrate on)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        if mode == "v2":
            root = Path("/sys/fs/cgroup")
            ctl = (root / "cgroup.subtree_control").read_text().split()
            need = [c for c in ("cpuset", "memory") if c not in ctl]
            if need:
                (root / "cgroup.subtree_control").write_text(" ".join("+" + c for c in need))
            self.dir = root / NAME
            self.dir.mkdir(exist_ok=True)
            self.mems = self.dir / "cpuset.mems"
        else:
            root = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
            self.dir = root / NAME
            self.dir.mkdir(exist_ok=True)
            cpus = (root / "cpuset.effective_cpus").read_text().strip()
            (self.dir / "cpuset.cpus").write_text(cpus)
            self.mems = self.dir / "cpuset.mems"
            (self.dir / "cpuset.memory_migrate").write_text("1")

    def set_mems(self, node: int | str) -> float:
        """Write ``mems`` (a node or a list like ``4,5``) with one write(2); return the
        seconds it blocked."""
        fd = os.open(self.mems, os.O_WRONLY)
        try:
            t0 = time.perf_counter()
            os.write(fd, str(node).encode())
            return time.perf_counter() - t0
        finally:
            os.close(fd)

    def add(self, pid: int) -> None:
        name = "cgroup.procs"
        (self.dir / name).write_text(str(pid))

    def shmem_per_node(self) -> dict[int, int]:
        """v2 only: bytes of shmem per node from memory.numa_stat."""
        for line in (self.dir / "memory.numa_stat").read_text().splitlines():
            if line.startswith("shmem "):
                return {int(k[1:]): int(v) for k, v in re.findall(r"(N\d+)=(\d+)", line)}
        return {}


def node_list(text: str) -> set[int]:
    """A cpuset list (``4-5,7``) as a set of nodes."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def numa_pages(pid: int) -> dict[int, int]:
    """Pages per node over all of the process's mappings (numa_maps)."""
    out: dict[int, int] = {}
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        for node, pages in re.findall(r"\bN(\d+)=(\d+)", line):
            out[int(node)] = out.get(int(node), 0) + int(pages)
    return out


def start_child(cs: Cpuset, args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    cs.add(proc.pid)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    if (
        not select.select([proc.stdout], [], [], 300)[0]
        or proc.stdout.readline().strip() != "ready"
    ):
        proc.kill()
        raise RuntimeError(f"child {args} did not get ready")
    return proc


def stop_child(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=60)


class Copier:
    """Two touched buffers of ``n`` bytes; :meth:`best_s` times glibc memcpy between them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.src, self.dst = bytearray(b"\1") * n, bytearray(b"\2") * n

    def best_s(self, tries: int = 3) -> float:
        s = (ctypes.c_char * self.n).from_buffer(self.src)
        d = (ctypes.c_char * self.n).from_buffer(self.dst)
        best = float("inf")
        for _ in range(tries):
            t0 = time.perf_counter()
            ctypes.memmove(d, s, self.n)
            best = min(best, time.perf_counter() - t0)
        del s, d
        return best


def memcpy_s(n: int, tries: int = 5) -> float:
    """Best seconds of a glibc memcpy of ``n`` bytes between two touched buffers."""
    return Copier(n).best_s(tries)


def thp_mib(pid: int) -> float:
    """The process's anonymous huge pages (MiB), from smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    m = re.search(r"AnonHugePages:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def fault_s(n: int, tries: int = 3) -> float:
    """Best seconds to map and touch ``n`` bytes of 4 KiB anonymous pages (one fault, one
    page allocation and clear per page): a per-page kernel path to compare TCG with the
    host's native speed."""
    best = float("inf")
    ones = b"\1" * (n // PAGE)
    for _ in range(tries):
        t0 = time.perf_counter()
        m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        v = memoryview(m)
        v[::PAGE] = ones
        best = min(best, time.perf_counter() - t0)
        v.release()
        m.close()
    return best


def calibration(size_mib: int = 128) -> dict[str, float]:
    """memcpy and page-fault MiB/s of ``size_mib``: run in the guest and on the host."""
    n = size_mib * MIB
    return {
        "size_mib": size_mib,
        "memcpy_mibps": size_mib / memcpy_s(n),
        "fault_mibps": size_mib / fault_s(n),
    }


def free_mib(node: int) -> float:
    text = Path(f"/sys/devices/system/node/node{node}/meminfo").read_text()
    m = re.search(r"MemFree:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def anon_runs(
    cs: Cpuset, a: int, b: int, size: int, reps: int, *, nothp: bool, copier: Copier
) -> dict[str, Any]:
    """Evacuate a node holding ``size`` MiB ``reps`` times (there and back). A memcpy of the
    same bytes is timed right before each write, so a slow phase of the host (TCG shares
    its cores) hits both sides of the ratio alike."""
    cs.set_mems(a)
    proc = start_child(cs, ["anon", str(size * MIB), "nothp" if nothp else "thp"])
    moves: list[dict[str, float]] = []
    huge = thp_mib(proc.pid)
    try:
        src, dst = a, b
        for _ in range(reps):
            cpy = copier.best_s()
            before = numa_pages(proc.pid)
            secs = cs.set_mems(dst)
            after = numa_pages(proc.pid)
            moved = (before.get(src, 0) - after.get(src, 0)) * PAGE
            moves.append(
                {"s": secs, "moved": moved, "left": after.get(src, 0) * PAGE, "memcpy_s": cpy}
            )
            src, dst = dst, src
    finally:
        stop_child(proc)
    return {"size_mib": size, "thp": not nothp, "thp_mib": huge, "moves": moves}


PATHS = ("write", "migrate_pages", "move_pages/512", "move_pages/4096", "move_pages/2x4096")


def private_pages(pid: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Page addresses of the process's private writable mappings (where anon pages live)."""
    parts = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        rng, perms = line.split()[:2]
        if perms.startswith("rw") and perms.endswith("p"):
            lo, hi = (int(x, 16) for x in rng.split("-"))
            parts.append(np.arange(lo, hi, PAGE, dtype=np.uint64))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def move_batches(
    pid: int, pages: np.ndarray[Any, np.dtype[np.uint64]], src: int, dst: int, batch: int
) -> int:
    """move_pages in batches: ask where each batch's pages are, move those on ``src`` to
    ``dst``. Returns the pages the kernel reported moved."""
    moved = 0
    for i in range(0, len(pages), batch):
        chunk = pages[i : i + batch]
        where = np.frombuffer(mmcalls.move_pages(pid, _addrs(chunk), None), dtype=np.int32)
        on_src = chunk[where == src]
        if len(on_src):
            st = np.frombuffer(mmcalls.move_pages(pid, _addrs(on_src), dst), dtype=np.int32)
            moved += int((st == dst).sum())
    return moved


def _addrs(a: np.ndarray[Any, np.dtype[np.uint64]]) -> array.array[int]:
    out = array.array("Q")
    out.frombytes(a.tobytes())
    return out


def run_path(path: str, pid: int, src: int, dst: int) -> float:
    """Move ``pid``'s pages from ``src`` to ``dst`` by ``path`` before the mems write;
    returns the seconds it took (0 for "write": the write does it all)."""
    if path == "write":
        return 0.0
    t0 = time.perf_counter()
    if path == "migrate_pages":
        mmcalls.migrate_pages(pid, [src], [dst])
    else:
        pages = private_pages(pid)
        batch = int(path.rsplit("x", 1)[-1].rsplit("/", 1)[-1])
        if "/2x" in path:
            half = len(pages) // 2
            ts = [
                threading.Thread(target=move_batches, args=(pid, part, src, dst, batch))
                for part in (pages[:half], pages[half:])
            ]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        else:
            move_batches(pid, pages, src, dst, batch)
    return time.perf_counter() - t0


def path_runs(
    cs: Cpuset, a: int, b: int, size: int, reps: int, *, nothp: bool, copier: Copier
) -> list[dict[str, Any]]:
    """Each of PATHS with a fresh child holding ``size`` MiB, ``reps`` moves there and back;
    per move: path and write seconds, bytes moved, left by the path and after the write, the
    mems the child had until the write, and a memcpy timed just before."""
    out = []
    for path in PATHS:
        cs.set_mems(a)
        proc = start_child(cs, ["anon", str(size * MIB), "nothp" if nothp else "thp"])
        moves: list[dict[str, Any]] = []
        try:
            src, dst = a, b
            for _ in range(reps):
                cs.set_mems(f"{a},{b}")  # the donor's zone: both nodes; nothing moves
                cpy = copier.best_s()
                before = numa_pages(proc.pid)
                path_s = run_path(path, proc.pid, src, dst)
                mid = numa_pages(proc.pid)
                mems_until_write = cs.mems.read_text().strip()
                write_s = cs.set_mems(dst)
                after = numa_pages(proc.pid)
                moves.append(
                    {
                        "path_s": path_s,
                        "write_s": write_s,
                        "moved": (before.get(src, 0) - after.get(src, 0)) * PAGE,
                        "left_by_path": mid.get(src, 0) * PAGE,
                        "left": after.get(src, 0) * PAGE,
                        "mems_until_write": mems_until_write,
                        "zone_ok": node_list(mems_until_write) == {a, b}
                        and node_list(cs.mems.read_text()) == {dst}
                        and after.get(src, 0) == 0,
                        "memcpy_s": cpy,
                    }
                )
                src, dst = dst, src
        finally:
            stop_child(proc)
        out.append({"path": path, "size_mib": size, "thp": not nothp, "moves": moves})
        tot = sorted(round(m["path_s"] + m["write_s"], 3) for m in moves)
        print(f"path {path} {size} MiB thp={not nothp}: {tot} s", flush=True)
    return out


def file_runs(cs: Cpuset, a: int, b: int, size: int) -> list[dict[str, Any]]:
    out = []
    for kind in ("file", "file-mapped"):
        cs.set_mems(a)
        SHM.unlink(missing_ok=True)
        proc = start_child(cs, [kind, str(size * MIB), str(SHM)])
        try:
            before = cs.shmem_per_node()
            secs = cs.set_mems(b)
            after = cs.shmem_per_node()
        finally:
            stop_child(proc)
            SHM.unlink(missing_ok=True)
        moved = before.get(a, 0) - after.get(a, 0)
        out.append(
            {"kind": kind, "size_mib": size, "s": secs, "moved": moved, "left": after.get(a, 0)}
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="32,64,128,192")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--path-sizes", default="128", help="sizes (MiB) for the path comparison")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calibrate-only", action="store_true", help="native run on the host")
    args = ap.parse_args()
    if args.calibrate_only:
        args.out.write_text(json.dumps(calibration(), indent=1))
        return
    mode = os.environ.get("ZONED_VM_CGROUP", "v2")
    sizes = [int(s) for s in args.sizes.split(",")]
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()

    nodes = sorted(int(p.name[4:]) for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    pool = sorted((n for n in nodes if n != 0), key=free_mib, reverse=True)
    a, b = sorted(pool[:2])
    print(f"nodes {a} ({free_mib(a):.0f} MiB free) and {b} ({free_mib(b):.0f} MiB free); THP {thp}")
    cs = Cpuset(mode)

    memcpy: dict[int, float] = {}
    anon = []
    for size in sizes:
        copier = Copier(size * MIB)
        memcpy[size] = copier.best_s(5)
        for nothp in (True, False):
            r = anon_runs(cs, a, b, size, args.reps, nothp=nothp, copier=copier)
            anon.append(r)
            s = sorted(m["s"] for m in r["moves"])
            print(f"{size} MiB thp={not nothp} ({r['thp_mib']:.0f} MiB huge): {s} s")
        del copier
    paths = []
    for size in [int(s) for s in args.path_sizes.split(",") if s]:
        copier = Copier(size * MIB)
        for nothp in (True, False):
            paths += path_runs(cs, a, b, size, args.reps, nothp=nothp, copier=copier)
        del copier
    files = file_runs(cs, a, b, 64) if mode == "v2" else []
    for f in files:
        print(f)
    out = {
        "kernel": os.uname().release,
        "numa": os.environ.get("ZONED_VM_NUMA", "?"),
        "cgroup": mode,
        "nodes": [a, b],
        "thp": thp,
        "memcpy_s": {str(k): v for k, v in memcpy.items()},
        "anon": anon,
        "paths": paths,
        "files": files,
        "calibration": calibration(),
    }
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
