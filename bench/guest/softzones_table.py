"""Inside a guest (cgroup v2, numa=fake=8): measure each row of the SoftwareZones table.

    python bench/guest/softzones_table.py --out RESULT.json

Rows: enforcement (a container allocating past its limit: zones = one node in
cpuset.mems, memcg = memory.max of the same size), runtime overhead (an allocation-heavy
and a page-cache-heavy loop under zones, memcg and neither), storage overhead (NODE_DATA
sizes from dmesg, kernel memory per created cgroup from /proc/meminfo), resize (cpuset.mems
grow/shrink vs memory.max grow/shrink), creation (mkdir + the one write), and what each
model charges for a file two containers read (zoned.accounting.ownership, with and without the
shared zone). Writes only under its own ``zoned-sz-<pid>`` cgroups and removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))
P = f"zoned-sz-{os.getpid()}"
MIB = 1 << 20
RUN_DIR = Path(os.environ.get("ZONED_VM_RUN_DIR", "/tmp"))

ALLOC = r"""
import sys, time
n, mib = int(sys.argv[1]), int(sys.argv[2])
out = []
for _ in range(n):
    t = time.perf_counter(); x = b"\1" * (mib << 20); del x; out.append(time.perf_counter() - t)
print(" ".join(f"{v:.5f}" for v in out), flush=True)
"""
CACHE = r"""
import os, sys, time
n, mib = int(sys.argv[1]), int(sys.argv[2])
block, out = b"\1" * (1 << 20), []
for i in range(n):
    p = f"/tmp/sz-cache-{os.getpid()}-{i}"
    t = time.perf_counter()
    with open(p, "wb") as f:
        for _ in range(mib): f.write(block)
    with open(p, "rb") as f:
        while f.read(1 << 20): pass
    os.unlink(p); out.append(time.perf_counter() - t)
print(" ".join(f"{v:.5f}" for v in out), flush=True)
"""
GROW = r"""
import sys
step, got = 8 << 20, 0
keep = []
while got < (int(sys.argv[1]) << 20):
    keep.append(b"\1" * step); got += step
    print(got >> 20, flush=True)
"""
HOLD = r"""
import mmap, os, sys
kind, mib, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print("ready", flush=True); sys.stdin.readline()
if kind == "anon":
    keep = b"\1" * (mib << 20)
else:
    fd = os.open(path, os.O_RDONLY); m = mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
    s = sum(m[o] for o in range(0, len(m), 4096))
print("done", flush=True); sys.stdin.read()
"""


def w(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def mk(name: str, *, mems: str | None = None, mmax: str | None = None) -> Path:
    d = ROOT / P / name
    d.mkdir()
    if mems is not None:
        w(d / "cpuset.mems", mems)
    if mmax is not None:
        w(d / "memory.max", mmax)
    return d


def spawn(cg: Path, code: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$@"', sys.executable, code,
         *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def keyed(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in path.read_text().splitlines())}


def node_kb(n: int) -> int:
    text = Path(f"/sys/devices/system/node/node{n}/meminfo").read_text()
    return int(re.search(r"MemTotal:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------


def limits() -> dict[str, Any]:
    """Allocate 1.6x a node's size in 8 MiB steps: zones (mems = that node) vs memory.max."""
    size_mib = node_kb(1) // 1024
    want = int(size_mib * 1.6)
    out: dict[str, Any] = {"node_mib": size_mib, "asked_mib": want}
    for label, cg in (
        ("zones", mk("lim-z", mems="1")),
        ("memcg", mk("lim-m", mems="1-6", mmax=str(size_mib * MIB))),
    ):
        t = time.perf_counter()
        p = spawn(cg, GROW, str(want))
        lines, _ = p.communicate(timeout=300)
        ev = keyed(cg / "memory.events")
        got = [int(x) for x in lines.split()]
        out[label] = {
            "returncode": p.returncode,
            "reached_mib": got[-1] if got else 0,
            "oom": ev.get("oom", 0),
            "oom_kill": ev.get("oom_kill", 0),
            "seconds": round(time.perf_counter() - t, 2),
        }
    return out


def overhead(reps: int = 4, rounds: int = 3, mib: int = 64) -> dict[str, Any]:
    """Per-iteration seconds of each workload in each setting: the median over ``rounds``
    interleaved runs (settings take turns, so a busy host slows all of them alike), each
    of ``reps`` iterations, the first iteration of each run dropped."""
    settings = {
        "neither": ROOT,  # the root cgroup: not charged to any memcg, every node allowed
        "zones": mk("oh-z", mems="2"),
        "memcg": mk("oh-m", mems="1-6", mmax=str(400 * MIB)),
    }
    out: dict[str, Any] = {}
    for wl, code in (("alloc", ALLOC), ("cache", CACHE)):
        vals: dict[str, list[float]] = {k: [] for k in settings}
        for _ in range(rounds):
            for label, cg in settings.items():
                p = spawn(cg, code, str(reps), str(mib))
                text, _ = p.communicate(timeout=600)
                vals[label] += [float(x) for x in text.split()][1:]
        out[wl] = {k: statistics.median(v) if v else None for k, v in vals.items()}
        out[wl + "_n"] = {k: len(v) for k, v in vals.items()}
    return out


def _meminfo() -> dict[str, int]:
    out = {}
    for ln in Path("/proc/meminfo").read_text().splitlines():
        k, v = ln.split(":", 1)
        out[k] = int(v.split()[0]) * 1024
    return out


def storage(n: int = 32) -> dict[str, Any]:
    """NODE_DATA sizes (dmesg) and kernel memory per created cgroup, by controller."""
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    nd = [
        int(b, 16) - int(a, 16) + 1
        for a, b in re.findall(
            r"NODE_DATA\(\d+\) allocated \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]", dmesg
        )
    ]
    threads = subprocess.run(["ps", "-eo", "comm"], capture_output=True, text=True, check=False)
    per_node_threads = sorted(
        {
            re.sub(r"\d+$", "", c)
            for c in threads.stdout.split()
            if re.match(r"k(swapd|compactd)\d+$", c)
        }
    )
    out: dict[str, Any] = {"node_data_bytes": nd, "per_node_threads": per_node_threads}
    for label, ctl in (("cpuset", "+cpuset"), ("memory", "+memory")):
        base = ROOT / P / f"st-{label}"
        base.mkdir()
        w(base / "cgroup.subtree_control", ctl)
        keys = ("Slab", "Percpu", "KernelStack", "PageTables")
        before = _meminfo()
        for i in range(n):
            (base / f"c{i}").mkdir()
        time.sleep(0.2)
        after = _meminfo()
        out[f"{label}_bytes_per_cgroup"] = round(sum(after[k] - before[k] for k in keys) / n)
        for i in range(n):
            (base / f"c{i}").rmdir()
    return out


def _hold(cg: Path, kind: str, mib: int, path: str) -> subprocess.Popen[str]:
    p = spawn(cg, HOLD, kind, str(mib), path, stdin=True)
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline().strip() == "ready"
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "done"
    return p


def _file(mib: int, name: str) -> Path:
    path = RUN_DIR / name
    with path.open("wb") as f:
        f.write(os.urandom(mib * MIB))
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    w(Path("/proc/sys/vm/drop_caches"), "3")
    return path


def resize(mib: int = 96) -> dict[str, Any]:
    """Grow by a node / shrink off a node holding ``mib`` (zones) vs memory.max up/down."""
    out: dict[str, Any] = {"mib": mib}
    f = _file(mib, "sz-resize.bin")
    cz = mk("rs-z", mems="3")
    p = _hold(cz, "anon", mib, "-")
    out["zones_grow_s"] = timed(lambda: w(cz / "cpuset.mems", "3-4"))
    out["zones_shrink_anon_s"] = timed(lambda: w(cz / "cpuset.mems", "4"))
    p.kill()
    p.wait()
    cz2 = mk("rs-z2", mems="3")
    p = _hold(cz2, "file", mib, str(f))
    out["zones_shrink_file_s"] = timed(lambda: w(cz2 / "cpuset.mems", "5"))
    p.kill()
    p.wait()
    w(Path("/proc/sys/vm/drop_caches"), "3")
    cm = mk("rs-m", mems="1-6", mmax=str(200 * MIB))
    out["memcg_grow_s"] = timed(lambda: w(cm / "memory.max", str(400 * MIB)))
    p = _hold(cm, "file", mib, str(f))
    before = int((cm / "memory.current").read_text())
    out["memcg_shrink_file_s"] = timed(lambda: w(cm / "memory.max", str(32 * MIB)))
    out["memcg_shrink_freed_mib"] = round(
        (before - int((cm / "memory.current").read_text())) / MIB, 1
    )
    p.kill()
    p.wait()
    f.unlink()
    return out


def creation(n: int = 20) -> dict[str, Any]:
    """mkdir + the one write that makes it a container: cpuset.mems vs memory.max."""
    out: dict[str, Any] = {}
    for label, ctl, file, value in (
        ("zones", "+cpuset", "cpuset.mems", "5"),
        ("memcg", "+memory", "memory.max", str(256 * MIB)),
        ("both", "+cpuset +memory", "cpuset.mems", "5"),
    ):
        base = ROOT / P / f"cr-{label}"
        base.mkdir()
        w(base / "cgroup.subtree_control", ctl)
        times = []
        for i in range(n):
            d = base / f"c{i}"
            t = time.perf_counter()
            d.mkdir()
            w(d / file, value)
            times.append(time.perf_counter() - t)
        out[f"{label}_ms"] = round(statistics.median(times) * 1000, 3)
        for i in range(n):
            (base / f"c{i}").rmdir()
    return out


def _charges(backend: Any) -> dict[str, dict[str, int]]:
    from zoned.accounting.ownership import MODELS, measure
    from zoned.kernel.pagemap import PagemapReader

    r = measure(backend, ["a", "b"], MODELS, shared=frozenset({7}), reader=PagemapReader())
    return {
        c.name: {"zones": c.zones or 0, "static": c.static or 0, "partial": c.partial or 0}
        for c in r.charges
    }


def sharing(mib: int = 16) -> dict[str, Any]:
    """Two containers read one file (a first): each model's charge, with and without the
    shared zone. Charges are differences from a baseline taken before the reads."""
    from zoned.accounting.ownership import MODELS, measure
    from zoned.backends.select import readonly_backend
    from zoned.config.load import loads
    from zoned.shared.zone import warm

    out: dict[str, Any] = {"mib": mib}
    for variant in ("no shared zone", "shared zone"):
        sub = f"sh{len(out)}"
        (ROOT / P / sub).mkdir()
        w(ROOT / P / sub / "cgroup.subtree_control", "+cpuset +memory")
        decls = loads(
            f"host:\n  hierarchy: v2\n  parent: {P}/{sub}\n  shared: [7]\n"
            "containers:\n  a:\n    min: {nodes: 1}\n  b:\n    min: {nodes: 1}\n"
        )
        backend = readonly_backend(decls)
        try:
            for c, node in zip(decls.containers, (5, 6), strict=True):
                backend.ensure(c, frozenset({node}))
            f = _file(mib, f"sz-share-{len(out)}.bin")
            if variant == "shared zone":
                warm(backend, frozenset({7}), [str(f)])
            cg = {c: ROOT / P / sub / c for c in ("a", "b")}

            holders = [spawn(cg[c], HOLD, "file", str(mib), str(f), stdin=True) for c in cg]
            for p in holders:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            base = _charges(backend)
            for p in holders:  # a reads first, then b
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write("go\n")
                p.stdin.flush()
                assert p.stdout.readline().strip() == "done"
            after = _charges(backend)
            shared_used = measure(backend, [], ["zones"], shared=frozenset({7})).shared_zone_used
            st = ROOT / P / sub / "zoned.shared" / "memory.current"
            out[variant] = {
                c: {m: round((after[c][m] - base[c][m]) / MIB, 1) for m in MODELS}
                for c in ("a", "b")
            }
            out[variant]["shared_zone_used_mib"] = round(shared_used / MIB, 1)
            out[variant]["zoned.shared_memcg_mib"] = (
                round(int(st.read_text()) / MIB, 1) if st.exists() else None
            )
            for p in holders:
                p.kill()
                p.wait()
            f.unlink()
        finally:
            backend.close()
    return out


def cleanup() -> None:
    top = ROOT / P
    if not top.exists():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        for pid in (d / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
    time.sleep(0.3)
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        d.rmdir()
    top.rmdir()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    if "cpuset" not in (ROOT / "cgroup.subtree_control").read_text():
        w(ROOT / "cgroup.subtree_control", "+cpuset +memory")
    (ROOT / P).mkdir()
    w(ROOT / P / "cgroup.subtree_control", "+cpuset +memory")
    steps = {"limits": limits, "overhead": overhead, "storage": storage, "resize": resize,
             "creation": creation, "sharing": sharing}  # fmt: skip
    result: dict[str, Any] = {"kernel": os.uname().release}
    try:
        for name, fn in steps.items():
            if args.only and name not in args.only.split(","):
                continue
            t = time.perf_counter()
            try:
                result[name] = fn()
            except (OSError, AssertionError, subprocess.TimeoutExpired, ValueError) as exc:
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            result.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t, 1)
            print(name, json.dumps(result[name]), flush=True)
    finally:
        cleanup()
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
