"""What an idle zoned daemon costs: RSS, CPU time and wake-ups, managing 8 containers.

    python bench/footprint.py [--seconds 60] [--mode sim|v1|both] [--write docs/benchmarks.md]

Each mode starts ``zoned run`` as a child process, waits until its control socket
answers, lets it settle, then measures for ``--seconds``:

* **RSS**: ``VmRSS`` (and the peak ``VmHWM``) of the daemon, from ``/proc/PID/status``;
* **CPU**: user + system time spent during the window (``/proc/PID/stat``);
* **wake-ups/s**: context switches of all its threads during the window (voluntary +
  involuntary, ``/proc/PID/task/*/status``), and the loop's own count of rounds and of
  engine steps (``zoned status --json``).

Modes:

* ``sim``: the paced simulator (``--backend sim:``), 9 nodes, 8 containers holding
  100 MiB each and idle. It wakes every 0.25 s to move the simulated world to now (the
  simulator's pacing, see zoned/backends/paced.py): an upper bound, not the real loop.
* ``v1``: as root, the real cgroup v1 backend of this machine in a throw-away subtree
  (``zoned-bench-PID``) with 8 pre-made containers. This machine has one memory node,
  so zoned runs as it does there: reporting usage only (no tripwires are armed); the
  loop's wake-ups are the fallback poll (every 5 s) and nothing else. Skipped (with the
  reason) when not root or without v1 cpuset and memory hierarchies.

Target: RSS ≤ 25 MiB. Numbers only; nothing here asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
ZONED = [sys.executable, "-m", "zoned"]
CONTAINERS = 8
SECTION = "## Footprint"
NOTES = """\
Reading the rows: on a real backend an idle loop wakes only for the fallback poll (every
5 s: one engine step, 0.2 wake-ups/s) and for events; the paced simulator adds its 4 Hz
pacing, which a real host does not have. This machine has one memory node, so its v1 row
is zoned's report-only mode (no tripwire eventfds armed); the v2 row is the real thing
(7 containers on a numa=fake=8 guest, each with its memory.high tripwire, memory.events
watch and PSI trigger armed), measured inside QEMU TCG, where CPU time is ~10x a real
machine's. `--metrics` costs about 12 MiB more (prometheus_client, imported only when
asked for), the simulator about 7 MiB (imported only with `--backend sim:`).
"""

SCENARIO = """\
name: footprint
duration_s: 1000000
topology:
  count: 9
  size: 256M
config:
  host: {reserved_nodes: [0]}
  containers:
"""


@dataclass
class Sample:
    rss_kib: int
    hwm_kib: int
    cpu_s: float
    switches: int


@dataclass
class Result:
    mode: str
    seconds: float
    rss_mib: float
    hwm_mib: float
    cpu_s: float
    switches_per_s: float
    rounds_per_s: float
    steps_per_s: float
    note: str = ""


def sample(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(rest[11]) + int(rest[12])) / tick  # utime, stime
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return Sample(int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]), cpu, switches)


def status(sock: Path) -> dict[str, object]:
    out = subprocess.run(
        [*ZONED, "status", "--json", "--socket", str(sock)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    doc: dict[str, object] = json.loads(out)
    return doc


def wait_ready(proc: subprocess.Popen[bytes], sock: Path, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"zoned exited with {proc.returncode} before it was ready")
        if sock.exists():
            try:
                status(sock)
                return
            except subprocess.CalledProcessError:
                pass
        time.sleep(0.1)
    raise RuntimeError("zoned did not become ready")


def measure(mode: str, argv: list[str], sock: Path, seconds: float, note: str) -> Result:
    with tempfile.TemporaryFile() as log:
        return _measure(mode, argv, sock, seconds, note, log=log)


def _measure(
    mode: str, argv: list[str], sock: Path, seconds: float, note: str, *, log: IO[bytes]
) -> Result:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_ready(proc, sock)
        time.sleep(2.0)  # let start-up work (imports, admission, first steps) settle
        # A status request refreshes a snapshot older than 1 s (one engine step) and costs
        # the loop a few rounds (accept, request, hang-up). Its counters are taken before
        # its own step. Two back to back: the second one steps no more (its snapshot is
        # fresh) and tells how many rounds one request costs.
        da = status(sock)["daemon"]
        d0 = status(sock)["daemon"]
        s0, t0 = sample(proc.pid), time.monotonic()
        time.sleep(seconds)
        s1, t1 = sample(proc.pid), time.monotonic()
        d1 = status(sock)["daemon"]
        assert isinstance(da, dict) and isinstance(d0, dict) and isinstance(d1, dict)
        dt = t1 - t0
        per_request = int(d0["wakeups"]) - int(da["wakeups"])
        rounds = (int(d1["wakeups"]) - int(d0["wakeups"]) - per_request) / dt
        steps = (int(d1["steps"]) - int(d0["steps"])) / dt
        return Result(
            mode,
            dt,
            s1.rss_kib / 1024,
            s1.hwm_kib / 1024,
            s1.cpu_s - s0.cpu_s,
            (s1.switches - s0.switches) / dt,
            rounds,
            steps,
            note,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-2000:])


def run_sim(seconds: float, tmp: Path) -> Result:
    sc = SCENARIO + "".join(
        f"    c{i}: {{min: {{nodes: 1}}, max: {{nodes: 2}}}}\n" for i in range(1, CONTAINERS + 1)
    )
    sc += "workloads:\n" + "".join(
        f"  c{i}:\n    - {{anon: 100M}}\n    - {{idle_s: 1000000}}\n"
        for i in range(1, CONTAINERS + 1)
    )
    (tmp / "sim.yaml").write_text(sc)
    sock = tmp / "sim.sock"
    argv = [
        *ZONED,
        "run",
        "--backend",
        f"sim:{tmp / 'sim.yaml'}",
        "--socket",
        str(sock),
        "--state-dir",
        str(tmp / "sim-state"),
    ]
    return measure(
        "sim (paced, 9 nodes)", argv, sock, seconds, "simulator pacing wakes the loop every 0.25 s"
    )


def v1_roots() -> tuple[Path, Path] | None:
    cpuset, memory = Path("/sys/fs/cgroup/cpuset"), Path("/sys/fs/cgroup/memory")
    if os.geteuid() != 0:
        return None
    if not (cpuset / "cpuset.mems").exists() or not (memory / "memory.usage_in_bytes").exists():
        return None
    return cpuset, memory


def run_v1(seconds: float, tmp: Path) -> Result | str:
    roots = v1_roots()
    if roots is None:
        return "skipped: needs root and the cgroup v1 cpuset and memory hierarchies"
    cpuset, memory = roots
    parent = f"zoned-bench-{os.getpid()}"
    made: list[Path] = []
    try:
        for root in (cpuset, memory):
            (root / parent).mkdir()
            made.append(root / parent)
        for f in ("cpuset.cpus", "cpuset.mems"):
            (cpuset / parent / f).write_text((cpuset / f).read_text())
        for i in range(1, CONTAINERS + 1):
            for root in (cpuset, memory):
                (root / parent / f"c{i}").mkdir()
                made.append(root / parent / f"c{i}")
            for f in ("cpuset.cpus", "cpuset.mems"):
                (cpuset / parent / f"c{i}" / f).write_text((cpuset / parent / f).read_text())
        cfg = tmp / "v1.yaml"
        cfg.write_text(
            f"host: {{cgroup_root: /sys/fs/cgroup, hierarchy: v1, parent: {parent}, "
            "reserved_nodes: [0]}\ncontainers:\n"
            + "".join(
                f"  c{i}: {{min: {{nodes: 1}}, max: {{nodes: 2}}}}\n"
                for i in range(1, CONTAINERS + 1)
            )
        )
        sock = tmp / "v1.sock"
        argv = [
            *ZONED,
            "run",
            "--config",
            str(cfg),
            "--socket",
            str(sock),
            "--state-dir",
            str(tmp / "v1-state"),
        ]
        return measure(
            "cgroup v1 (this machine, 1 node)",
            argv,
            sock,
            seconds,
            "one node: report-only; fallback poll every 5 s",
        )
    finally:
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError as exc:
                print(f"footprint: cleanup {p}: {exc}", file=sys.stderr)


def run_v2(seconds: float, tmp: Path) -> Result | str:
    """The real v2 backend juggling: a multi-node guest (``--mode vm`` boots one)."""
    root = Path("/sys/fs/cgroup")
    nodes = Path("/sys/devices/system/node/online").read_text().strip()
    if os.geteuid() != 0 or not (root / "cgroup.controllers").exists() or "-" not in nodes:
        return "skipped: needs root, cgroup v2 and several memory nodes"
    pool = int(nodes.split("-")[1])  # node 0 reserved, one container per pool node
    n = min(CONTAINERS, pool)
    parent = f"zoned-bench-{os.getpid()}"
    cfg = tmp / "v2.yaml"
    cfg.write_text(
        f"host: {{cgroup_root: /sys/fs/cgroup, hierarchy: v2, parent: {parent}, "
        "reserved_nodes: [0]}\ncontainers:\n"
        + "".join(f"  c{i}: {{min: {{nodes: 1}}, max: {{nodes: 2}}}}\n" for i in range(1, n + 1))
    )
    sock = tmp / "v2.sock"
    argv = [
        *ZONED,
        "run",
        "--config",
        str(cfg),
        "--socket",
        str(sock),
        "--state-dir",
        str(tmp / "v2-state"),
    ]
    try:
        return measure(
            f"cgroup v2 ({pool + 1} nodes, {n} containers)",
            argv,
            sock,
            seconds,
            "juggling on: tripwires and PSI triggers armed; fallback poll 5 s",
        )
    finally:
        for d in sorted((root / parent).rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                d.rmdir()
        if (root / parent).exists():
            (root / parent).rmdir()


def run_vm(seconds: float) -> list[Result] | str:
    """Boot a 6.1 guest (numa=fake=8, v2) and run ``--mode v2`` inside it."""
    sys.path.insert(0, str(ROOT / "vm-tests"))
    try:
        from harness import BOOTS, HarnessError, run_in_guest
    except ImportError as exc:
        return f"skipped: no vm-tests harness ({exc})"
    try:
        r = run_in_guest(
            BOOTS["6.1-numa8-v2"],
            [
                "python",
                "bench/footprint.py",
                "--mode",
                "v2",
                "--seconds",
                f"{seconds:g}",
                "--json",
                "{run_dir}/footprint.json",
            ],
            timeout_s=seconds * 4 + 600,
            name="footprint",
        )
    except HarnessError as exc:
        return f"skipped: {exc}"
    out = r.run_dir / "footprint.json"
    if r.rc != 0 or not out.exists():
        return f"failed in the guest: {r.describe()}\n{r.tail(30)}"
    rows = json.loads(out.read_text())
    return [Result(**{**row, "mode": row["mode"] + ", QEMU TCG guest"}) for row in rows]


def table(results: list[Result], skipped: list[str]) -> str:
    head = (
        "| mode | window | RSS | peak RSS | CPU in window | CPU % | context switches/s "
        "| loop rounds/s | engine steps/s | note |"
    )
    rows = [head, "|" + "---|" * 10]
    for r in results:
        rows.append(
            f"| {r.mode} | {r.seconds:.0f} s | {r.rss_mib:.1f} MiB | {r.hwm_mib:.1f} MiB "
            f"| {r.cpu_s:.2f} s | {100 * r.cpu_s / r.seconds:.2f} % | {r.switches_per_s:.2f} "
            f"| {r.rounds_per_s:.2f} | {r.steps_per_s:.2f} | {r.note} |"
        )
    return "\n".join(rows + [f"\n{s}" for s in skipped])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node() or 'host'}: {cpu}, {os.cpu_count()} CPUs; kernel "
        f"{platform.release()}; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def write_section(path: Path, body: str) -> None:
    """Replace this benchmark's section of ``path`` (other sections are left alone)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    else:
        end = text.find("\n## ", start + len(SECTION) + 2)
        text = text[: start + 1] + body + ("\n" + text[end:] if end >= 0 else "\n")
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--mode",
        choices=("sim", "v1", "v2", "vm", "both", "all"),
        default="both",
        help="both: sim and v1; vm: boot a guest and measure v2 there; all: all",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--write", type=Path, default=None, help="update this file's section")
    args = ap.parse_args(argv)
    results: list[Result] = []
    skipped: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="zoned-footprint-"))
    try:
        if args.mode in ("sim", "both", "all"):
            results.append(run_sim(args.seconds, tmp))
        if args.mode in ("v1", "both", "all"):
            r = run_v1(args.seconds, tmp)
            if isinstance(r, Result):
                results.append(r)
            else:
                skipped.append(f"cgroup v1: {r}")
        if args.mode == "v2":
            r = run_v2(args.seconds, tmp)
            if isinstance(r, Result):
                results.append(r)
            else:
                skipped.append(f"cgroup v2: {r}")
        if args.mode in ("vm", "all"):
            rows = run_vm(args.seconds)
            if isinstance(rows, list):
                results.extend(rows)
            else:
                skipped.append(f"cgroup v2 in a guest: {rows}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = table(results, skipped)
    print(out)
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results]))
    if args.write is not None:
        body = (
            f"{SECTION}\n\n"
            f"`python bench/footprint.py --seconds {args.seconds:g}`: an idle `zoned run` "
            f"managing {CONTAINERS} containers, measured over the window after start-up "
            "(see the script's docstring for what each column counts). Target: RSS ≤ 25 MiB.\n\n"
            f"Machine: {machine()}.\n\n{out}\n\n{NOTES}"
        )
        write_section(args.write, body)
        print(f"wrote the {SECTION!r} section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
