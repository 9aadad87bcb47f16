"""CPU cost of starting the ``zoned`` command: ``--help`` and ``status``.

Each case runs ``python -m zoned ...`` ``--runs`` times in a fresh interpreter and reports
the median CPU time (user + system, from ``wait4``'s rusage) and how many modules one run
imports (``-X importtime``, counted once). ``status`` runs against no daemon (a one-line
error) and against a simulated daemon (``zoned run --backend sim:…``, started here).
Target (issue 17): ≤ 100 ms of CPU for ``--help`` and ``status``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import runinfo

ROOT = Path(__file__).resolve().parent.parent
ZONED = [sys.executable, "-m", "zoned"]

SCENARIO = """\
name: cli-startup
duration_s: 1000000
topology: {count: 5, size: 256M}
config:
  host: {reserved_nodes: [0]}
  containers:
    web:   {min: {nodes: 1}, max: {nodes: 2}, priority: 10}
    batch: {min: {nodes: 1}, max: {nodes: 2}}
workloads:
  web: [{anon: 100M}, {idle_s: 1000000}]
  batch: [{anon: 100M}, {idle_s: 1000000}]
"""


def cpu_ms(argv: list[str]) -> tuple[float, int]:
    """CPU ms of one run of ``argv`` (its exit status too)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (ru.ru_utime + ru.ru_stime) * 1000, proc.returncode


def modules(args: list[str]) -> int:
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "zoned", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    return sum(1 for line in err.splitlines() if line.startswith("import time:")) - 1


def measure(label: str, args: list[str], runs: int) -> str:
    times: list[float] = []
    code = 0
    for _ in range(runs):
        ms, code = cpu_ms([*ZONED, *args])
        times.append(ms)
    return (
        f"| {label} | {statistics.median(times):.0f} | {min(times):.0f} | {max(times):.0f} "
        f"| {modules(args)} | {code} |"
    )


def start_sim(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp / "sim.yaml").write_text(SCENARIO)
    sock = tmp / "sim.sock"
    argv = [*ZONED, "run", "--backend", f"sim:{tmp / 'sim.yaml'}", "--socket", str(sock)]
    argv += ["--state-dir", str(tmp / "state")]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the sim daemon exited with {proc.returncode}")
        if cpu_ms([*ZONED, "status", "--socket", str(sock)])[1] == 0:
            return proc, sock
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the sim daemon did not become ready in 60 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args(argv)
    print(runinfo.header())
    print(f"median of {args.runs} runs, CPU = user + system of the whole process\n")
    print("| command | CPU ms (median) | min | max | modules imported | exit |")
    print("|---|---|---|---|---|---|")
    print(measure("`zoned --help`", ["--help"], args.runs))
    with tempfile.TemporaryDirectory(prefix="zoned-cli-") as d:
        tmp = Path(d)
        print(
            measure(
                "`zoned status` (no daemon)",
                ["status", "--socket", str(tmp / "no.sock")],
                args.runs,
            )
        )
        proc, sock = start_sim(tmp)
        try:
            print(
                measure("`zoned status` (sim daemon)", ["status", "--socket", str(sock)], args.runs)
            )
        finally:
            proc.terminate()
            proc.wait(20)
    base = [cpu_ms([sys.executable, "-c", "pass"])[0] for _ in range(args.runs)]
    print(f"\nthe interpreter alone (`python -c pass`): {statistics.median(base):.0f} ms CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
