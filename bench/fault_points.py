"""The fault-injection suite in full, with its counts (issue 14).

    python bench/fault_points.py [--no-real]

1. Fake 4-node v1 tree (tests/support/faultsim.py): the real engine and v1 backend through
   admission, lend, reclaim (evacuate, give), directed reclaim and release; a kill at every
   named point the scenario passes, and each of EBUSY/ENOSPC/EINVAL/ENOENT at every write;
   each followed by a restart and the consistency checks.
2. Real cgroup v1 of this machine (root only; tests/support/faultreal.py): a real kill -9
   at every named point, and the four errnos at every write, with two ``sleep`` processes;
   each followed by a restart; processes lost or split are counted.

Prints the counts, the commit, the machine and the kernel. Exits 1 on any inconsistency.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import runinfo  # noqa: E402
from tests.support import faultreal, faultsim  # noqa: E402
from tests.support.realhost import V1_CPUSET, V1_MEMORY  # noqa: E402
from zoned.kernel.faults import POINTS  # noqa: E402


def commit() -> str:
    return runinfo.commit()


def fake_suite(tmp: Path) -> tuple[faultsim.Tally, int]:
    tally = faultsim.Tally()
    writes, seen = faultsim.clean_run(tmp / "clean")
    for i, (point, nth) in enumerate(faultsim.passes(seen)):
        faultsim.run_kill(tmp / f"k{i}", point, tally, nth)
    for nth in range(writes):
        for code in faultsim.ERRNOS:
            faultsim.run_errno(tmp / f"e{nth}-{code}", nth, code, tally)
    return tally, writes


def real_suite(tmp: Path) -> tuple[list[str], list[str], faultreal.Found]:
    """The kill -9 passes tried and their problems; what the errno runs found."""
    tried: list[str] = []
    problems: list[str] = []
    for point in POINTS:
        for nth in range(1, 10):  # every pass of the point in its step (at most a few)
            box = faultreal.Box(
                f"zoned-bench-{os.getpid()}-k{next(faultreal.SERIAL)}", tmp / f"{point}@{nth}"
            )
            try:
                found = faultreal.kill_at(box, point, nth)
            finally:
                faultreal.cleanup(box)
            if found and found[0].startswith(faultreal.NOT_KILLED):
                if nth == 1:
                    problems.append(found[0])
                break
            tried.append(f"{point}@{nth}")
            problems += [f"kill at {point}@{nth}: {p}" for p in found]
    return tried, problems, faultreal.errno_matrix(tmp / "errno", lambda nth: faultreal.CODES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-real", action="store_true", help="skip the real-v1 part")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the runs' own warnings are expected: counts only
    print(
        f"commit {commit()}; {platform.machine()}, {os.cpu_count()} CPUs;"
        f" kernel {platform.release()}"
    )
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        tally, writes = fake_suite(Path(d))
    print(
        f"fake 4-node v1: {len(tally.points)} kill passes of"
        f" {len({p.split('#')[0] for p in tally.points})} points tried,"
        f" {len(tally.injected)} errno injections over {writes} writes,"
        f" {len(tally.failures)} inconsistencies"
    )
    for f in tally.failures:
        print(f"  {f}")
    bad += len(tally.failures)
    real = os.geteuid() == 0 and (V1_CPUSET / "cpuset.mems").exists() and V1_MEMORY.is_dir()
    if args.no_real or not real:
        print("real v1: skipped" + ("" if args.no_real else " (needs root and cgroup v1)"))
    else:
        with tempfile.TemporaryDirectory() as d:
            tried, killed, found = real_suite(Path(d))
        print(
            f"real v1: {len(tried)} kill -9 passes of {len(POINTS)} points tried,"
            f" {len(killed)} problems after them;"
            f" {found.runs} errno injections over {found.writes} writes: processes lost"
            f" {len(found.lost)}, split {len(found.split)}, other problems {len(found.other)}"
        )
        for p in killed + found.problems:
            print(f"  {p}")
        bad += len(killed) + len(found.problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
