"""Shared host side of the real-kernel benchmarks (``bench/vm_*.py``).

Each benchmark boots QEMU guests through ``vm-tests/harness.py``, runs a guest script from
``bench/guest/`` that writes its measurements as JSON into the run directory, formats them
as a table, prints it and writes it into its own section of ``docs/benchmarks.md``.
Benchmarks print numbers; they assert nothing about timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vm-tests"))

from harness import Boot, GuestResult, accel, run_in_guest  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
DOCS_HEADER = """# Benchmarks

Measured numbers, each section written by the benchmark named in it (see `bench/README.md`
for how to run them). Sections are replaced as a whole when their benchmark runs again.
"""

__all__ = [
    "Boot",
    "GuestRun",
    "bench_parser",
    "gather_runs",
    "load_runs",
    "machine",
    "percentile",
    "run_guest_script",
    "write_section",
]


class BenchError(Exception):
    """A guest run did not produce results."""


@dataclass(frozen=True)
class GuestRun:
    """One boot's results: what the guest script wrote, and how the boot went."""

    boot: Boot | None  # None when re-read from a saved run directory
    result: GuestResult | None
    data: Mapping[str, Any]


def run_guest_script(
    boot: Boot, script: str, args: Sequence[str], *, timeout_s: float, name: str
) -> GuestRun:
    """Boot ``boot`` and run ``bench/guest/<script>`` with ``args`` plus ``--out``.

    The guest script writes ``result.json`` into the run directory (on the project share).
    Raises BenchError with the console tail when it did not.
    """
    argv = ["python", f"bench/guest/{script}", *args, "--out", "{run_dir}/result.json"]
    print(f"[{boot.id}] booting for {script} {' '.join(args)}", flush=True)
    load_before = os.getloadavg()[0]
    r = run_in_guest(boot, argv, timeout_s=timeout_s, name=name)
    out = r.run_dir / "result.json"
    if r.rc != 0 or not out.exists():
        raise BenchError(f"{boot.id}: {r.describe()}\n{r.tail(40)}")
    print(f"[{boot.id}] done in {r.duration_s:.0f} s (kernel {r.kernel_release})", flush=True)
    data = json.loads(out.read_text())
    # Saved with the results, so a re-render (--from) still tells how busy the host was.
    data["host_load"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    out.write_text(json.dumps(data, indent=1))
    return GuestRun(boot, r, data)


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The command line every VM benchmark starts from (its description: the first paragraph
    of ``doc``): ``--no-docs``, ``--note`` and ``--from`` (re-render saved runs)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    ap.add_argument("--no-docs", action="store_true", help="print only")
    ap.add_argument("--note", default="", help="a sentence added to the section's header")
    ap.add_argument("--from", dest="saved", help="re-render from saved run dirs (comma-sep.)")
    return ap


def gather_runs(
    saved: str | None,
    script: str,
    boots: Iterable[tuple[Boot, Sequence[str], str]],
    *,
    timeout_s: float = 900,
) -> list[GuestRun]:
    """The runs to report: re-read from ``saved`` (see :func:`load_runs`) when given, else
    one boot per ``(boot, args, name)`` running ``bench/guest/<script>`` (``boots`` is only
    iterated then)."""
    if saved:
        return load_runs(saved)
    return [
        run_guest_script(boot, script, args, timeout_s=timeout_s, name=name)
        for boot, args, name in boots
    ]


def load_runs(dirs: str) -> list[GuestRun]:
    """Runs re-read from saved run directories (comma-separated ``vm-tests/logs/...``
    paths), to re-render tables without booting again."""
    out = []
    for d in dirs.split(","):
        data = json.loads((Path(d) / "result.json").read_text())
        out.append(GuestRun(None, None, data))
    return out


def machine(runs: Sequence[GuestRun] = ()) -> str:
    """Host CPU model, cores, accelerator and how busy the host was during ``runs``."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    loads = [x for r in runs for x in r.data.get("host_load", [])]
    busy = (
        f"host 1-min load average {min(loads):.1f}-{max(loads):.1f} at the boots' start and end"
        if loads
        else "host load not recorded for these runs"
    )
    return (
        f"host {model}, {os.cpu_count()} cores, QEMU {accel().upper()} guests with 2 vCPUs "
        f"({busy}; other engineers' jobs shared the cores)"
    )


def today() -> str:
    return datetime.date.today().isoformat()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; cells are ``str()``-ed."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(key: str, title: str, body: str, path: Path = DOCS) -> None:
    """Replace (or append) the section ``key`` in ``docs/benchmarks.md``.

    The section is delimited by HTML comments naming ``key``, so other engineers' sections
    and edits outside the markers are kept as they are.
    """
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    block = f"{begin}\n## {title}\n\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else DOCS_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"wrote section {title!r} to {path}")
