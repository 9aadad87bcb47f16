"""What a benchmark ran on, printed by each one with its figures: the commit, the machine
(CPU model and count), the kernel, Python, the load and the time."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """The checkout's short commit id, ``-dirty`` with uncommitted changes; ``?`` outside git."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
        platform.machine(),
    )


def header() -> str:
    """One line: commit, host and CPU, kernel, Python, load average, UTC time."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"commit {commit()}; {platform.node()}: {cpu_model()}, {os.cpu_count()} CPUs; kernel "
        f"{platform.release()}; Python {platform.python_version()}; load {load}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
