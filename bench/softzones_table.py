"""The linux-mm SoftwareZones comparison table, filled with figures from a real kernel.

    python bench/softzones_table.py [--from-json RESULT.json ...]

Boots a Debian 6.1 guest (cgroup v2, numa=fake=8, 2 GiB, TCG) and runs
``bench/guest/softzones_table.py`` there, which measures each row (see its docstring);
then writes the table, one column per ownership model, into the "SoftwareZones table"
section of ``docs/benchmarks.md``. ``--from-json`` formats an earlier run's result instead
of booting. The pagemap scan rate is measured on this host (not in the guest: TCG would
understate it by an order of magnitude). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vm_common import (  # noqa: E402
    Boot,
    GuestRun,
    machine,
    md_table,
    run_guest_script,
    today,
    write_section,
)

KEY = "softzones_table"
TITLE = "SoftwareZones table (real kernel)"
MIB = 1 << 20


def scan_rate(mib: int = 1024, reps: int = 5) -> dict[str, float]:
    """pagemap pages/s on this host: one process with ``mib`` touched, full and 1/16."""
    from zoned.kernel.pagemap import PagemapReader

    child = subprocess.Popen(
        [sys.executable, "-c",
         f"import mmap,sys\nm=mmap.mmap(-1,{mib}<<20)\n"
         "for i in range(0,len(m),4096): m[i]=1\nprint('ok',flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    child.stdout.readline()
    out: dict[str, float] = {}
    try:
        for label, sample in (("full", 1), ("sample16", 16)):
            rates = []
            for _ in range(reps):
                r = PagemapReader(sample=sample)
                t = time.perf_counter()
                r.pfns(child.pid)
                rates.append(r.stats.entries / (time.perf_counter() - t))
            out[label] = statistics.median(rates)
    finally:
        child.kill()
        child.wait()
    return out


OVERCOMMIT = ROOT / "bench" / "results" / "overcommit.md"


def overcommit_figures(scenario: str = "staggered") -> dict[str, str]:
    """policy → "N containers OOM-killed (K kills), M nodes moved" for one scenario of
    bench/overcommit.py's results (the engine on the simulated host), with its source."""
    if not OVERCOMMIT.exists():
        return {}
    text = OVERCOMMIT.read_text()
    start = text.find(f"### {scenario}")
    if start < 0:
        return {}
    out: dict[str, str] = {}
    ratio = re.search(r"\*\*([0-9.]+x)\*\*", text[start:])
    where = f"{scenario} scenario, sum(max) = {ratio.group(1) if ratio else '?'} the pool"
    for line in text[start:].splitlines()[1:]:
        if line.startswith("### "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        kills = re.fullmatch(r"(\d+) \((\d+)\)", cells[1]) if len(cells) > 5 else None
        if kills:
            out[cells[0]] = (
                f"{kills.group(1)} containers OOM-killed ({kills.group(2)} kills), "
                f"{cells[4]} nodes moved ({where}, sim)"
            )
    return out


def _mib(b: float | None) -> str:
    return "?" if b is None else f"{b:g} MiB"


def _ratio(x: float | None, base: float | None) -> str:
    return "?" if not x or not base else f"x{x / base:.2f}"


def table(d: dict[str, Any], scan: dict[str, float]) -> str:
    """One row per wiki row, one column per model; every cell carries a figure."""
    lim, oh, st, rs, cr, sh = (
        d.get(k, {}) for k in ("limits", "overhead", "storage", "resize", "creation", "sharing")
    )
    z, m = lim.get("zones", {}), lim.get("memcg", {})
    enforce = (
        f"yes: allocating {lim.get('asked_mib')} MiB in a 1-node zone ({lim.get('node_mib')} "
        f"MiB) → OOM-killed at {z.get('reached_mib')} MiB (oom_kill {z.get('oom_kill')}, "
        f"oom {z.get('oom')}: cpuset-constrained)",
        f"yes: memory.max = {lim.get('node_mib')} MiB → OOM-killed at {m.get('reached_mib')} "
        f"MiB (oom {m.get('oom')}, oom_kill {m.get('oom_kill')})",
        "no: accounting only (a pagemap scan after the fact; nothing stops an allocation)",
    )
    a, c = oh.get("alloc", {}), oh.get("cache", {})
    runtime = (
        f"alloc {_ratio(a.get('zones'), a.get('neither'))}, page cache "
        f"{_ratio(c.get('zones'), c.get('neither'))} (vs no cgroup)",
        f"alloc {_ratio(a.get('memcg'), a.get('neither'))}, page cache "
        f"{_ratio(c.get('memcg'), c.get('neither'))} (charging every page)",
        f"kernel: as static; plus the scan: {scan.get('full', 0) / 1e6:.1f} M pages/s on the "
        f"host ({scan.get('sample16', 0) / 1e6:.1f} M with --sample 16)",
    )
    nd = st.get("node_data_bytes") or []
    storage = (
        f"per node: pglist_data {nd[0] // 1024 if nd else '?'} KiB (NODE_DATA in dmesg) + "
        f"{', '.join(st.get('per_node_threads', [])) or '?'} threads; per container cpuset "
        f"≈ {st.get('cpuset_bytes_per_cgroup', '?')} B (measured); 0 B per page",
        "8 B per page (struct page memcg_data, include/linux/mm_types.h) = 2 MiB per GiB; "
        f"per memcg ≈ {st.get('memory_bytes_per_cgroup', '?')} B (measured)",
        "at least static's, plus the scanner's PFN sets: 8 B per mapped page per container "
        "(zoned's numpy arrays; a PFN bitmap would be 32 KiB per GiB per container)",
    )
    resize = (
        f"grow by a node {rs.get('zones_grow_s', 0) * 1000:.1f} ms; shrink off a node holding "
        f"{rs.get('mib')} MiB: anon {rs.get('zones_shrink_anon_s', 0):.2f} s, mapped file "
        f"{rs.get('zones_shrink_file_s', 0):.2f} s (pages migrate during the write)",
        f"raise memory.max {rs.get('memcg_grow_s', 0) * 1000:.1f} ms; lower it below "
        f"{rs.get('mib')} MiB of mapped file: {rs.get('memcg_shrink_file_s', 0):.2f} s "
        f"(reclaimed {rs.get('memcg_shrink_freed_mib')} MiB)",
        "n/a: no limit to resize (0 s)",
    )
    create = (
        f"mkdir + cpuset.mems: {cr.get('zones_ms')} ms (with the memcg too, as zoned does: "
        f"{cr.get('both_ms')} ms); needs a free node",
        f"mkdir + memory.max: {cr.get('memcg_ms')} ms",
        "0 ms: no kernel object (a container is a set of PIDs to scan)",
    )
    no, yes = sh.get("no shared zone", {}), sh.get("shared zone", {})

    def pair(v: dict[str, Any], model: str) -> str:
        return f"A {_mib(v.get('a', {}).get(model))}, B {_mib(v.get('b', {}).get(model))}"

    size = sh.get("mib")
    sharing = (
        f"{size} MiB file read by A then B: {pair(no, 'zones')}; with the shared zone warmed: "
        f"{pair(yes, 'zones')} (shared zone holds {yes.get('shared_zone_used_mib')} MiB)",
        f"same file: {pair(no, 'static')}; with the shared zone: {pair(yes, 'static')} "
        f"(charged to zoned.shared's memcg: {yes.get('zoned.shared_memcg_mib')} MiB)",
        f"same file: {pair(no, 'partial')}; with the shared zone: {pair(yes, 'partial')}",
    )
    oc = overcommit_figures()
    overcommit = (
        f"yes, by moving whole nodes to where the pressure is: {oc.get('zoned', '?')} "
        f"(static zones, the pool dealt out, never moved: {oc.get('static-dealt', '?')})",
        f"yes (sum of memory.max over RAM), but nothing moves: {oc.get('static-limits', '?')}",
        "no mechanism: it only measures (0 kills prevented)",
    )
    rows = [
        ("enforces memory limits", *enforce),
        ("runtime overhead", *runtime),
        ("storage overhead", *storage),
        ("resize at runtime", *resize),
        ("creation at runtime", *create),
        ("recognize page sharing", *sharing),
        ("support overcommit", *overcommit),
    ]
    return md_table(
        ["", "Software Zones (zoned)", "Static Page Ownership (memcg)", "Partial Page Ownership"],
        rows,
    )


def body(d: dict[str, Any], scan: dict[str, float], where: str) -> str:
    oh = d.get("overhead", {})
    raw = ", ".join(
        f"{wl}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in oh.get(wl, {}).items() if v)
        for wl in ("alloc", "cache")
    )
    return f"""{today()}, kernel {d.get("kernel")} in a QEMU guest (numa=fake=8, 2 GiB, cgroup
v2); {where}. Written by `bench/softzones_table.py` (guest side:
`bench/guest/softzones_table.py`). The wiki's table (docs: `software-zones-wiki.txt`), with a
figure from this kernel in every cell. TCG makes absolute times slow; compare within a row.

{table(d, scan)}

How each figure was taken: runtime overhead is the median per-iteration time of a loop
that allocates and frees 64 MiB (`b"\\1" * 64 MiB`: page faults and zeroing) and of one
that writes and reads back a 64 MiB tmpfs file, each in a zone (cpuset.mems = one node),
in a memcg (memory.max 400 MiB over six nodes) and in the root cgroup (neither); settings
take turns, 3 runs of 4 iterations each, first iteration dropped (raw medians: {raw}). On
v2 every non-root cgroup is charged by memcg, so the zone's figure is zones as zoned runs
them: cpuset plus memcg accounting (zoned's tripwires need it). Storage per cgroup is
the growth of Slab + Percpu + KernelStack + PageTables in /proc/meminfo over 32 created
cgroups with only that controller enabled (a noisy figure: ± a few KiB). The sharing
row's charges are differences from a baseline taken before the reads, by
`zoned.accounting.ownership` (the code behind `zoned usage --model all`).
Step times in the guest: {d.get("step_seconds")}."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        metavar="RESULT.json",
        help="earlier guest results; later files replace earlier ones' rows (--only runs)",
    )
    args = ap.parse_args(argv)
    if args.from_json:
        data: dict[str, Any] = {}
        for f in args.from_json:
            new = json.loads(f.read_text())
            steps = {**data.get("step_seconds", {}), **new.get("step_seconds", {})}
            data.update(new)
            data["step_seconds"] = steps
    else:
        boot = Boot(kernel="6.1", numa="8", mem="2G", cgroup="v2")
        data = dict(run_guest_script(boot, "softzones_table.py", [], timeout_s=1800,
                                     name="softzones").data)  # fmt: skip
    scan = scan_rate()
    text = body(data, scan, machine([GuestRun(None, None, data)]))
    print(text)
    write_section(KEY, TITLE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
