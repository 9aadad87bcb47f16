"""The shared zone, page sharing and the three ownership models on a real kernel.

Two containers (one node each) read the same file, after each allocated a known amount of
anonymous memory:

- without a shared zone, the first reader faults the file in on its own node: zoned
  sharing reports the second reader mapping it on the first one's nodes, and zoned usage
  charges it to the first reader under zones and static, to both under partial;
- with the shared zone warmed (zoned shared warm), the file is on the shared node: neither
  container's nodes hold it, and zones and static charge it to neither.

Charges are compared as differences from a baseline taken after the workers started and
before they allocated, within TOLERANCE (python's own small allocations, page tables).
The file lives on the project share (9p, cache=loose) so that it can be dropped from the
page cache before each scenario.

The same tests run on the v2 boot and on the v1 boot (cpuset and memory as separate v1
hierarchies under /run/cgroup-v1, cgroup2 for the rest: a hybrid host). On v1 the config
leaves ``host.hierarchy: auto`` and the default ``cgroup_root``, as a hybrid host's would,
and the backend zoned picks is checked to be cgroup1 on those two mounts. Besides zoned's
own reports, each memcg's page-cache bytes per node are read straight from the kernel's
``memory.numa_stat`` (v2: ``file N0=<bytes> …``; v1: ``file=<pages> N0=<pages> …``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.numa import memory_bound_to
from zoned.shared.zone import SHARED_LEAF

from .cgtools import remove_tree
from .conftest import BOOT, RUN_DIR, Finding, zoned

pytestmark = pytest.mark.boot(kernel=("6.1", "newest"), cgroup=("v1", "v2"), numa="8")

V1 = BOOT["cgroup"] == "v1"
V2_ROOT = Path("/sys/fs/cgroup")
CPUSET = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
MEMORY = Path(os.environ.get("ZONED_VM_CGROUP_V1_MEMORY", "/run/cgroup-v1/memory"))
# The hierarchies a task joins, cpuset first (its next allocations land on its nodes).
ROOTS = (CPUSET, MEMORY) if V1 else (V2_ROOT,)
MEMCG_ROOT = MEMORY if V1 else V2_ROOT
PAGE = os.sysconf("SC_PAGE_SIZE")
PARENT = f"zoned-t8-{os.getpid()}"
MIB = 1 << 20
FILE_MIB = 32
ANON_MIB = {"a": 48, "b": 24}
TOLERANCE = 6 * MIB  # per charge, plus 5 %
PCP_SLACK = 8 * MIB  # freed pages on per-CPU lists, uncounted in MemFree (2 CPUs)
CLI_S = 300  # a CLI run under TCG on a busy host can take a minute

WORKER = r"""
import mmap, os, sys
anon_mib, path = int(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
keep = b"\1" * (anon_mib << 20)
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
total = sum(m[off] for off in range(0, len(m), 4096))
print("done", flush=True)
sys.stdin.read()
"""


@dataclass
class Host:
    config: Path
    nodes: dict[str, frozenset[int]]
    shared: frozenset[int]


def _config(path: Path, shared_file: Path | None) -> Path:
    """Node 7 is the shared zone in both scenarios; only the second one warms it."""
    paths = f"  shared_paths: [{shared_file}]\n" if shared_file else ""
    path.write_text(
        f"host:\n  hierarchy: {'auto' if V1 else 'v2'}\n  parent: {PARENT}\n"
        "  reserved_nodes: [0]\n"
        f"  shared: [7]\n{paths}"
        "containers:\n  a:\n    min: {nodes: 1}\n  b:\n    min: {nodes: 1}\n"
    )
    return path


def _cold_file(path: Path, mib: int) -> Path:
    """A file of random bytes, written, synced and dropped from the page cache.

    POSIX_FADV_DONTNEED first; ``drop_caches`` only if pages are left: dropping every
    cache makes the next python processes (workers, helper, CLI) read the interpreter
    and libraries again over 9p, which under TCG cost most of these tests' time.
    """
    from zoned.shared.pages import where

    with path.open("wb") as f:
        f.write(os.urandom(mib * MIB))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if where(path, locate=False).resident:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    left = where(path, locate=False).resident
    assert left == 0, f"{path}: {left} bytes still cached after DONTNEED and drop_caches"
    return path


def memcg_file_by_node(name: str) -> dict[int, int]:
    """Page-cache bytes per node charged to ``<parent>/<name>``'s memcg, read from the
    kernel's memory.numa_stat (v2 ``file N0=<bytes>``, v1 ``file=<pages> N0=<pages>``)."""
    text = (MEMCG_ROOT / PARENT / name / "memory.numa_stat").read_text()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if (V1 and key.startswith("file=")) or (not V1 and key == "file"):
            unit = PAGE if V1 else 1
            pairs = (f.split("=") for f in rest.split())
            return {int(n[1:]): int(v) * unit for n, v in pairs}
    raise AssertionError(f"no file line in {name}'s memory.numa_stat:\n{text}")


def memcg_charge(name: str) -> int:
    """``<parent>/<name>``'s memcg charge: memory.current (v2), memory.usage_in_bytes (v1)."""
    f = "memory.usage_in_bytes" if V1 else "memory.current"
    return int((MEMCG_ROOT / PARENT / name / f).read_text())


def _mib(d: dict[int, int]) -> dict[int, float]:
    return {n: round(b / MIB, 1) for n, b in sorted(d.items()) if abs(b) >= MIB // 10}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    from zoned.backends.cgroup1 import Cgroup1Backend
    from zoned.backends.cgroup2 import Cgroup2Backend
    from zoned.backends.select import readonly_backend
    from zoned.config.load import load
    from zoned.policy.placement import place

    cfg = _config(tmp_path / "zoned.yaml", None)
    decls = load(cfg)
    backend = readonly_backend(decls)
    try:
        if V1:  # auto and the default cgroup_root found the v1 mounts of this hybrid host
            assert isinstance(backend, Cgroup1Backend), type(backend)
            assert (backend.cpuset.root, backend.memory.root) == (CPUSET, MEMORY)
        else:
            assert isinstance(backend, Cgroup2Backend), type(backend)
        topo = backend.topology()
        plan = place(topo, decls)
        nodes = {c.name: frozenset(c.nodes) for c in plan.containers}
        for c in decls.containers:
            backend.ensure(c, nodes[c.name])
        shared = frozenset({7})
        # The zones charge is node-wide: keep this process and the CLIs it runs (usage,
        # sharing, the promote) off a's, b's and the shared nodes, or what spills there
        # from a full node 0 counts as theirs (14 MiB once, on v1 in CI).
        measured = shared.union(*nodes.values())
        with memory_bound_to(frozenset(n.id for n in topo.nodes) - measured):
            yield Host(cfg, nodes, shared)
    finally:
        backend.close()
        for root in ROOTS:
            remove_tree(root / PARENT, root)


class Worker:
    """A python process started inside a container's cgroup; allocates on ``go``."""

    def __init__(self, name: str, anon_mib: int, path: Path) -> None:
        join = " && ".join(f"echo $$ > {root / PARENT / name / 'cgroup.procs'}" for root in ROOTS)
        self.proc = subprocess.Popen(
            ["sh", "-c", f'{join} && exec "$0" -c "$1" "$2" "$3"',
             sys.executable, WORKER, str(anon_mib), str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, f"worker said {line!r}, expected {word!r}"

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self._expect("done")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _usage_now(cfg: Path) -> dict[str, dict[str, int]]:
    """Charges in this process (cheaper than the CLI under TCG): name → model → bytes."""
    from zoned.accounting.ownership import MODELS, measure, shared_nodes
    from zoned.backends.select import readonly_backend
    from zoned.config.load import load
    from zoned.kernel.pagemap import PagemapReader

    decls = load(cfg)
    backend = readonly_backend(decls)
    try:
        r = measure(
            backend, ["a", "b"], MODELS,
            shared=shared_nodes(decls, backend.topology()), reader=PagemapReader(),
        )  # fmt: skip
    finally:
        backend.close()
    return {c.name: {"zones": c.zones or 0, "static": c.static or 0, "partial": c.partial or 0}
            for c in r.charges}  # fmt: skip


def _close(got: int, want: int) -> bool:
    return abs(got - want) <= TOLERANCE + want * 0.05


def _run(
    host: Host, path: Path, *, promote: bool = False
) -> tuple[dict[str, dict[str, int]], dict[str, Any], Any]:
    """Start both workers, baseline, a then b allocate and read; return the deltas, the
    CLI's usage JSON and its sharing JSON. ``promote``: then run ``zoned sharing
    --promote`` (its JSON goes in the sharing JSON as "promote_run", with the charges
    measured afterwards as "after_promote"). The sharing JSON also carries each memcg's
    page-cache bytes per node (``memcg_file_by_node``) since the baseline: "memcg_read"
    after the reads, "memcg_after_promote" after the promote."""
    workers = {n: Worker(n, ANON_MIB[n], path) for n in ("a", "b")}

    def memcg_delta() -> dict[str, dict[int, int]]:
        now = {n: memcg_file_by_node(n) for n in workers}
        return {
            n: {k: now[n].get(k, 0) - base[n].get(k, 0) for k in now[n].keys() | base[n].keys()}
            for n in workers
        }

    try:
        before = _usage_now(host.config)
        base = {n: memcg_file_by_node(n) for n in workers}
        workers["a"].go()
        workers["b"].go()
        memcg_read = memcg_delta()
        usage = json.loads(
            zoned("usage", "--config", str(host.config), "--json", timeout_s=CLI_S).stdout
        )
        share = json.loads(
            zoned("sharing", "--config", str(host.config), "--json", timeout_s=CLI_S).stdout
        )
        if promote:
            args = ("sharing", "--config", str(host.config), "--promote", "--json")
            share["promote_run"] = json.loads(zoned(*args, timeout_s=CLI_S).stdout)
            now = _usage_now(host.config)
            share["after_promote"] = {n: {m: now[n][m] - before[n][m] for m in now[n]} for n in now}
            share["memcg_after_promote"] = memcg_delta()
        share["memcg_read"] = memcg_read
    finally:
        for w in workers.values():
            w.stop()
    after = {c["name"]: c for c in usage["containers"]}
    delta = {
        n: {m: after[n][m] - before[n][m] for m in ("zones", "static", "partial")}
        for n in ("a", "b")
    }
    return delta, usage, share


def _check(delta: dict[str, dict[str, int]], want: dict[str, dict[str, int]]) -> None:
    bad = [
        f"{n}.{m}: got {delta[n][m] / MIB:.1f} MiB, want {want[n][m] / MIB:.1f} MiB"
        for n in want
        for m in want[n]
        if not _close(delta[n][m], want[n][m])
    ]
    assert not bad, "; ".join(bad)


def test_first_reader_pays_without_shared_zone(host: Host, finding: Finding) -> None:
    path = _cold_file(RUN_DIR / "shared-cold.bin", FILE_MIB)
    delta, _usage, share = _run(host, path, promote=True)
    finding("no shared zone: charge deltas MiB", {
        n: {m: round(v / MIB, 1) for m, v in d.items()} for n, d in delta.items()
    })  # fmt: skip
    a, b, s = ANON_MIB["a"] * MIB, ANON_MIB["b"] * MIB, FILE_MIB * MIB
    _check(delta, {
        "a": {"zones": a + s, "static": a + s, "partial": a + s},
        "b": {"zones": b, "static": b, "partial": b + s},
    })  # fmt: skip
    # The kernel's own per-node memcg view (numa_stat): a pays for the file, on its node;
    # b, which found it cached, pays nothing for it.
    read = share["memcg_read"]
    finding("no shared zone: memcg page cache since baseline, MiB by node", {
        n: _mib(d) for n, d in read.items()
    })  # fmt: skip
    assert sum(v for k, v in read["a"].items() if k in host.nodes["a"]) >= 0.95 * s, read
    assert _close(sum(read["a"].values()), s), read
    assert abs(sum(read["b"].values())) < TOLERANCE, read
    pair = [x for x in share["shares"] if x["mapper"] == "b" and x["owner"] == "a"]
    assert pair, f"zoned sharing did not see b mapping a's pages: {share['shares']}"
    assert _close(pair[0]["file"], s), pair[0]
    assert str(path) in [f for f, _ in pair[0]["files"]]
    # --promote: the file's pages migrate to the shared node (mbind MOVE_ALL from the
    # helper); a's zones charge drops by the file, its memcg keeps the charge.
    (moved,) = [f for f in share["promote_run"]["promoted"]["files"] if f["path"] == str(path)]
    after = share["after_promote"]
    memcg_a = share["memcg_after_promote"]["a"]
    finding("promote: file placement and a's deltas after (MiB)", {
        "on_shared": round(moved["on_shared"] / MIB, 1),
        "stayed": round((moved["resident"] - moved["on_shared"]) / MIB, 1),
        "a": {m: round(v / MIB, 1) for m, v in after["a"].items()},
        "a_memcg_file_by_node": _mib(memcg_a),
    })  # fmt: skip
    assert moved["on_shared"] >= 0.9 * s, moved
    # a's memcg still holds the migrated pages, now counted on the shared node.
    assert sum(v for k, v in memcg_a.items() if k in host.shared) >= 0.9 * s, memcg_a
    assert _close(sum(memcg_a.values()), s), memcg_a
    # Measured against a's own charge before the promote, which also holds whatever its
    # worker faulted first (interpreter and libraries over 9p: a few MiB that vary by boot):
    # the zones charge drops by exactly what moved; the memcg charge does not drop.
    # The zones charge is MemTotal - MemFree of a's node less its per-CPU free lists, two
    # reads (nodeN/meminfo, /proc/zoneinfo) between which the 32 MiB the migration freed
    # there can move from the lists to the buddy: up to PCP_SLACK more. Still far from the
    # 32 MiB a promote that moved nothing would leave.
    want_zones = delta["a"]["zones"] - moved["on_shared"]
    assert abs(after["a"]["zones"] - want_zones) <= TOLERANCE + PCP_SLACK + want_zones * 0.05, (
        after,
        want_zones,
    )
    assert _close(after["a"]["static"], a + s), after


def test_shared_zone_holds_the_file(host: Host, finding: Finding) -> None:
    path = _cold_file(RUN_DIR / "shared-warm.bin", FILE_MIB)
    cfg = _config(host.config, path)
    warm = json.loads(
        zoned("shared", "warm", "--config", str(cfg), "--json", timeout_s=CLI_S).stdout
    )
    f = warm["files"][0]
    finding("shared warm (read) placement", {"nodes": f["nodes"], "mems": warm["helper_mems"]})
    assert warm["helper_mems"] == "7"
    assert f["on_shared"] == f["resident"] == FILE_MIB * MIB, f
    # The helper's memcg (zoned.shared) pays for what it read, on the shared node.
    held = memcg_file_by_node(SHARED_LEAF)
    finding("shared warm: zoned.shared memcg (MiB)", {
        "charge": round(memcg_charge(SHARED_LEAF) / MIB, 1), "file_by_node": _mib(held),
    })  # fmt: skip
    assert sum(v for k, v in held.items() if k in host.shared) >= FILE_MIB * MIB, held
    assert memcg_charge(SHARED_LEAF) >= FILE_MIB * MIB
    delta, usage, share = _run(host, path)
    finding("shared zone: charge deltas MiB", {
        n: {m: round(v / MIB, 1) for m, v in d.items()} for n, d in delta.items()
    })  # fmt: skip
    a, b, s = ANON_MIB["a"] * MIB, ANON_MIB["b"] * MIB, FILE_MIB * MIB
    _check(delta, {
        "a": {"zones": a, "static": a, "partial": a + s},
        "b": {"zones": b, "static": b, "partial": b + s},
    })  # fmt: skip
    read = share["memcg_read"]
    assert all(abs(sum(d.values())) < TOLERANCE for d in read.values()), read
    assert usage["shared_zone_used"] >= s
    for mapper in ("a", "b"):
        on_shared = [
            x for x in share["shares"] if x["mapper"] == mapper and x["owner"] == "(shared zone)"
        ]
        assert on_shared and _close(on_shared[0]["file"], s), share["shares"]
        # Library pages one worker faulted first may sit on the other's node (and zoned
        # sharing rightly says so); the shared file must not.
        other = "b" if mapper == "a" else "a"
        for x in share["shares"]:
            if x["mapper"] == mapper and x["owner"] == other:
                assert str(path) not in [f for f, _ in x["files"]], x


def test_warm_methods_place_pages_on_the_shared_node(host: Host, finding: Finding) -> None:
    """read(2), mmap+touch and POSIX_FADV_WILLNEED from the helper: where do pages land?"""
    from zoned.backends.select import readonly_backend
    from zoned.config.load import load
    from zoned.shared.pages import where
    from zoned.shared.zone import warm

    backend = readonly_backend(load(host.config))
    try:
        placed: dict[str, dict[str, float]] = {}
        methods = ("read", "mmap", "fadvise")
        paths = {m: _cold_file(RUN_DIR / f"shared-{m}.bin", 8) for m in methods}
        for method, path in paths.items():
            assert where(path, locate=False).resident == 0, f"{path} warmed before its turn"
            (f,) = warm(backend, host.shared, [str(path)], method=method).files
            placed[method] = {
                "resident_mib": f.resident / MIB,
                "on_shared_mib": f.on_shared / MIB,
            }
            assert f.error is None and f.on_shared == f.resident, (method, f)
            if method != "fadvise":  # readahead is a hint: it may bring in less
                assert f.resident == 8 * MIB, (method, f)
    finally:
        backend.close()
    finding("warm methods: MiB resident / on the shared node", placed)
