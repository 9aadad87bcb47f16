"""The four ways into a container, on a real kernel's cgroup v2 (numa=fake=8).

Each test gets its own parent cgroup ``zoned-vmtest-proc-<pid>-<n>`` under
``/sys/fs/cgroup`` (the real Cgroup2Backend enables ``+cpuset +memory`` down to it and
creates ``web`` on node 1 and ``other`` on node 2) and a configuration naming them, in a
temporary directory. The backend runs without a daemon leaf: the test process stays at
the root (exempt from the no-internal-process rule), so nothing has to be moved back.
Spawned processes get their own session and are killed by process group afterwards;
what is left under the parent is parked at the root and the tree removed, leaves first.

1. ``zoned exec`` (a separate process, through the command's parser): CMD's own cgroup is the
   container's, and its exit status comes back.
2. ``zoned adopt`` (in this process, through the command's parser: no Python start): a running
   child with threads moves whole; pid 2 (kthreadd) is refused and then nothing moves;
   the child's new anonymous memory lands on the container's node.
3. An existing cgroup declared by path (``cgroup:``): the backend sets its nodes and
   leaves its process where it is.
4. Rules on exec: the RuleMover on the process connector moves a freshly exec'd ``sleep``
   carrying a unique argv marker, leaves an unmarked one alone, and a marked shell's
   forked children follow it. The kernel's exec timestamp → moved latency is a finding.

Not here: ``systemd_conflicts`` (``zoned.service.systemd``), which asks systemd about a unit's
``AllowedMemoryNodes=``. This guest's PID 1 is a busybox initramfs script, not systemd, so
there is no systemd to ask; the check is covered by unit tests with a fake ``systemctl``
runner (tests/test_rules*.py). A systemd-as-PID-1 boot mode is on vm-tests' list.

Every wait has a deadline (select() on the relevant fd, or a 1 ms poll); no test sleeps.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pytest

from tests.support.cgroups import RecordingFs, remove_cgroup_tree
from tests.support.numa import anon_pages_per_node
from tests.support.procs import descendants
from tests.support.waiting import read_line, run_until, tell
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.cli.commands import adopt as adopt_command
from zoned.config.decl import Declarations
from zoned.config.load import load
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.procwatch import ProcWatch
from zoned.model.sizes import MIB
from zoned.policy.rules import RuleSet
from zoned.service.mover import Move, RuleMover

from .conftest import PROJECT, Finding

pytestmark = pytest.mark.boot(cgroup="v2", numa="8")  # web on node 1, other on node 2

ROOT = Path("/sys/fs/cgroup")
PAGE = os.sysconf("SC_PAGE_SIZE")
SLEEP = shutil.which("sleep") or "/bin/sleep"
SH = shutil.which("sh") or "/bin/sh"
WEB_NODE, OTHER_NODE, EXISTING_NODE, EXISTING_BEFORE = 1, 2, 3, 5
DEADLINE_S = 120.0  # one step under TCG (a Python start: ~1 s idle, >30 s on a busy host)
_serial = itertools.count()

# A child with three more threads; after "go" it allocates argv[1] bytes of anonymous
# memory, touching every page, and says "ready".
THREADED = """
import sys, threading
stop = threading.Event()
for _ in range(3):
    threading.Thread(target=stop.wait, daemon=True).start()
print("up", flush=True)
sys.stdin.readline()
n = int(sys.argv[1])
b = bytearray(n)
for i in range(0, n, 4096):
    b[i] = 1
print("ready", flush=True)
sys.stdin.readline()
"""


class Box:
    """One test's parent cgroup, configuration, backend and processes."""

    def __init__(self, tmp: Path) -> None:
        serial = next(_serial)
        self.parent = f"zoned-vmtest-proc-{os.getpid()}-{serial}"
        self.marker = f"zoned-vmtest-marker-{os.getpid()}-{serial}"
        self.config = tmp / "zoned.yaml"
        sleep_exe = str(Path(SLEEP).resolve())
        self.config.write_text(
            "host:\n"
            f"  cgroup_root: {ROOT}\n"
            "  hierarchy: v2\n"
            f"  parent: {self.parent}\n"
            "  reserved_nodes: [0]\n"
            "  shared: 0\n"
            "containers:\n"
            "  web:\n"
            "    min: 1M\n"
            "    match:\n"
            f'      - {{exe: {sleep_exe}, cmdline: "re:^{self.marker} "}}\n'
            f'      - {{exe: {Path(SH).resolve()}, cmdline: "re:^{self.marker} -c "}}\n'
            "  other: {min: 1M}\n"
            f"  existing: {{min: 1M, cgroup: {self.parent}/existing}}\n"
        )
        self.decls: Declarations = load(self.config)
        self.fs = RecordingFs(ROOT)
        self.backend = Cgroup2Backend(ROOT, self.parent, daemon_leaf=None, psi=None, fs=self.fs)
        self.procs: list[subprocess.Popen[str]] = []
        self.backend.ensure(self.decls.container("web"), frozenset({WEB_NODE}))
        self.backend.ensure(self.decls.container("other"), frozenset({OTHER_NODE}))

    def path(self, container: str) -> str:
        return f"{self.parent}/{container}"

    def pids(self, container: str, file: str = "cgroup.procs") -> set[int]:
        return {int(x) for x in (ROOT / self.path(container) / file).read_text().split()}

    def spawn(
        self, argv: Sequence[str], executable: str | None = None, *, pipes: bool = False
    ) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            list(argv),
            executable=executable,
            start_new_session=True,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else None,
            text=True,
        )
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        self.backend.close()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=DEADLINE_S)
            for pipe in (p.stdin, p.stdout):
                if pipe is not None:
                    pipe.close()
        remove_cgroup_tree(ROOT, self.parent)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path)
    try:
        yield b
    finally:
        b.cleanup()


def unified_cgroup(pid: int, task: int | None = None) -> str:
    """The ``0::`` line of ``/proc/PID[/task/TID]/cgroup``."""
    base = Path(f"/proc/{pid}") / (f"task/{task}" if task is not None else "")
    lines = [ln for ln in (base / "cgroup").read_text().splitlines() if ln.startswith("0::")]
    assert len(lines) == 1, lines
    return lines[0]


# -- 1. zoned exec -------------------------------------------------------------------------


# ``zoned exec``'s own argument parser and run(), in a fresh Python: ``python -m zoned``
# would first import every command (numpy, the daemon, the simulator: ~1 s on the host,
# ~10 s under TCG) for nothing this test looks at. The CLI entry is covered on the host.
EXEC = """
import argparse, sys
from zoned.cli.commands import exec as command
parser = argparse.ArgumentParser(prog="zoned")
command.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def zoned_exec(box: Box, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", EXEC, "exec", "--config", str(box.config), *cmd],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_exec_runs_the_command_inside_and_passes_its_status(box: Box, finding: Finding) -> None:
    # $$ is the shell zoned exec'd itself (not a child of it): its cgroup is the proof.
    t0 = time.monotonic()
    proc = zoned_exec(box, "web", "--", SH, "-c", "cat /proc/$$/cgroup; exit 7")
    finding(
        "v2 zoned exec, whole run with its Python start (TCG): s", round(time.monotonic() - t0, 2)
    )
    assert (proc.returncode, proc.stderr) == (7, ""), proc
    assert proc.stdout.splitlines() == [f"0::/{box.parent}/web"], proc.stdout


# -- 2. zoned adopt ------------------------------------------------------------------------


def adopt(
    box: Box, capsys: pytest.CaptureFixture[str], *pids: int
) -> tuple[int, dict[int, str], str]:
    """``zoned adopt --json web PID…`` in this process, through the command's own parser
    (``cli.main`` would import every command: numpy, the daemon, ~10 s under TCG): (status,
    outcome per pid, stdout)."""
    capsys.readouterr()
    parser = argparse.ArgumentParser(prog="zoned")
    adopt_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["adopt", "--json", "--config", str(box.config), "web", *map(str, pids)]
    )
    status = int(args.func(args))
    out = capsys.readouterr().out
    doc = json.loads(out)
    return status, {r["pid"]: r["outcome"] for r in doc["results"]}, out


def test_adopt_moves_all_threads_refuses_kthreadd_and_new_memory_lands_on_the_node(
    box: Box, capsys: pytest.CaptureFixture[str], finding: Finding
) -> None:
    size = 32 * MIB  # far more than the Python heap, which the move itself may migrate
    child = box.spawn([sys.executable, "-c", THREADED, str(size)], pipes=True)
    assert read_line(child, DEADLINE_S) == "up"
    tids = {int(t.name) for t in Path(f"/proc/{child.pid}/task").iterdir()}
    assert len(tids) == 4
    before = unified_cgroup(child.pid)
    assert before != f"0::/{box.parent}/web"

    status, outcomes, out = adopt(box, capsys, child.pid, 2)  # 2: kthreadd
    assert (status, outcomes) == (1, {child.pid: "not_moved", 2: "refused"}), out
    assert "kernel thread" in out
    assert unified_cgroup(child.pid) == before  # all or nothing: nothing moved
    assert child.pid not in box.pids("web")

    anon_before = anon_pages_per_node(child.pid)
    status, outcomes, out = adopt(box, capsys, child.pid)
    assert (status, outcomes) == (0, {child.pid: "moved"}), out
    want = f"0::/{box.parent}/web"
    assert {unified_cgroup(child.pid, t) for t in tids} == {want}  # every thread
    assert box.pids("web") == {child.pid}
    assert box.pids("web", "cgroup.threads") == tids
    finding(
        "v2 adopt (cgroup.procs write): the child's anon pages per node before / after the "
        "move (does the move migrate them?)",
        {"before": anon_before, "after": anon_pages_per_node(child.pid)},
    )
    status, outcomes, out = adopt(box, capsys, child.pid)
    assert (status, outcomes) == (0, {child.pid: "already"}), out

    tell(child, "go")
    assert read_line(child, DEADLINE_S) == "ready"
    anon = anon_pages_per_node(child.pid)
    assert anon.get(WEB_NODE, 0) * PAGE >= size, anon
    assert sum(n for node, n in anon.items() if node != WEB_NODE) * PAGE < size // 4, anon
    usage = box.backend.usage("web")  # charged to web's memcg since the move
    assert usage.per_node[WEB_NODE].anon >= 0.95 * size, usage
    assert sum(u.anon for n, u in usage.per_node.items() if n != WEB_NODE) < 1 * MIB, usage


# -- 3. an existing cgroup declared by path --------------------------------------------------


def test_an_existing_cgroup_gets_its_nodes_and_keeps_its_process(
    box: Box, finding: Finding
) -> None:
    existing = box.path("existing")
    fs = CgroupFs(ROOT)  # the test's own writes: not the backend's
    fs.mkdir(existing)
    fs.write(existing, "cpuset.mems", str(EXISTING_BEFORE))
    p = box.spawn([SLEEP, "60"])
    fs.move_pid(existing, p.pid)
    before = unified_cgroup(p.pid)
    assert before == f"0::/{existing}"
    box.fs.writes.clear()

    st = box.backend.ensure(box.decls.container("existing"), frozenset({EXISTING_NODE}))

    assert box.fs.writes == [(existing, "cpuset.mems", str(EXISTING_NODE))]  # no procs write
    assert fs.read(existing, "cpuset.mems") == str(EXISTING_NODE)
    assert fs.read(existing, "cpuset.mems.effective") == str(EXISTING_NODE)
    assert st.nodes == frozenset({EXISTING_NODE})
    assert st.pids == (p.pid,)
    assert unified_cgroup(p.pid) == before  # not moved
    assert p.poll() is None
    finding(
        "v2 existing cgroup, cpuset.mems 5 -> 3 with a sleep in it: its anon pages per node",
        anon_pages_per_node(p.pid),
    )


# -- 4. rules on exec ----------------------------------------------------------------------


@pytest.fixture
def mover(box: Box) -> Iterator[tuple[RuleMover, list[Move]]]:
    moves: list[Move] = []
    m = RuleMover(
        box.backend, RuleSet.from_declarations(box.decls), watch=ProcWatch(), on_move=moves.append
    )
    try:
        m.start()
        yield m, moves
    finally:
        m.close()


def in_web(box: Box, pid: int) -> bool:
    return pid in box.pids("web")


def test_rules_move_a_freshly_execd_process_and_its_forked_children(
    box: Box, mover: tuple[RuleMover, list[Move]], finding: Finding
) -> None:
    m, moves = mover
    latencies_ms: list[float] = []
    for _ in range(5):
        p = box.spawn([box.marker, "30"], executable=SLEEP)
        inside = partial(in_web, box, p.pid)
        run_until(m, inside, DEADLINE_S, f"sleep {p.pid} in web")
        assert unified_cgroup(p.pid) == f"0::/{box.parent}/web"
        mv = [x for x in moves if x.pid == p.pid and x.outcome == "moved"]
        assert len(mv) == 1, moves
        assert mv[0].container == "web" and mv[0].event_ns > 0
        latencies_ms.append((mv[0].done_ns - mv[0].event_ns) / 1e6)

    # Without the marker: seen, classified, left where it was.
    q = box.spawn([SLEEP, "30"])
    run_until(m, lambda: any(x.pid == q.pid for x in moves), DEADLINE_S, f"exec of {q.pid} seen")
    assert [x.outcome for x in moves if x.pid == q.pid] == ["no_match"]
    assert q.pid not in box.pids("web")

    # A marked shell forks a sleep in the background: both end up in web.
    sh = box.spawn([box.marker, "-c", "sleep 30 & sleep 30"], executable=SH)

    def family_inside() -> bool:
        family = {sh.pid} | descendants(sh.pid)
        return len(family) >= 2 and family <= box.pids("web")

    run_until(m, family_inside, DEADLINE_S, "the shell and its sleeps in web")
    family = {sh.pid} | descendants(sh.pid)
    assert {unified_cgroup(pid) for pid in family} == {f"0::/{box.parent}/web"}
    assert box.pids("other") == set()
    finding(
        "v2 rules on exec: kernel exec timestamp -> moved into the container, ms (TCG)",
        {
            "samples": [round(x, 2) for x in latencies_ms],
            "median": round(statistics.median(latencies_ms), 2),
            "family": len(family),
            "stats": str(m.stats),
        },
    )
