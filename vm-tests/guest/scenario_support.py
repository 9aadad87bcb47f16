"""What the in-guest scenarios share (no tests here): a scenario's daemon, workloads, the
kernel's own files, and the same scenario on the simulator with the guest's nodes.

A scenario is ``config/scenarios/vm-<name>.yaml``: its ``config:`` is written as the
daemon's zoned.yaml (unique ``host.parent`` per scenario), and ``zoned run`` is started as
a subprocess. ``fitted(name)`` is that document with its ``topology:`` replaced by the
guest's own nodes (count and MemTotal, as ``zoned.kernel.topology.read_topology`` reads them); a
test that must size its config or workloads to the topology (``numa=fake=8`` or the uneven
``numa=fake=256M``) edits that document, using ``plan_of`` (the placement the daemon will
make), and hands it to both ``scenario`` and ``sim_run``: the daemon and the simulator
twin run the same config and workloads on the same nodes.

A config with ``hierarchy: v1`` runs on the v1 hierarchies the guest's init mounted
(``ZONED_VM_CGROUP_V1_*``): a container is a cgroup in both, its workloads join both, and
``Run.cg`` is its memory cgroup. Everything is cleaned up whatever happens: workloads
killed, the daemon stopped with SIGTERM (killed if it does not stop), the cgroups removed.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.scenarios import Step, sequence
from zoned.backends.sim.scenario import loads_scenario
from zoned.cli.commands.simulate import SimRun, json_report, run_scenario
from zoned.errors import ZonedError
from zoned.kernel.topology import read_topology
from zoned.model.sizes import MIB, parse_size
from zoned.policy.placement import Placement, place
from zoned.service.controlclient import request

from .cgtools import read, remove_tree, write
from .conftest import PROJECT, RUN_DIR, parse_list

ROOT = Path("/sys/fs/cgroup")
V1_CPUSET = Path(os.environ.get("ZONED_VM_CGROUP_V1_CPUSET", "/run/cgroup-v1/cpuset"))
V1_MEMORY = Path(os.environ.get("ZONED_VM_CGROUP_V1_MEMORY", "/run/cgroup-v1/memory"))
WORKLOADS = Path(__file__).with_name("workloads.py")
SCENARIOS = PROJECT / "config" / "scenarios"
START_S = 120.0  # the daemon's start under TCG on a busy host (measured up to ~50 s)
STEP_S = 120.0  # a workload's whole run, throttling included


def wait_for(cond: Callable[[], Any], what: str, deadline_s: float) -> Any:
    """Poll ``cond`` until it is true or the deadline passes (then fail)."""
    end = time.monotonic() + deadline_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:g}s waiting for {what}")
        time.sleep(0.2)


def guest_sizes() -> dict[int, int]:
    """Each online node's MemTotal in bytes, as zoned reads it."""
    return {n.id: n.mem_total for n in read_topology().nodes}


def fitted(name: str) -> dict[str, Any]:
    """``vm-<name>.yaml`` as a document, its ``topology:`` replaced by this guest's nodes
    (every online node, in id order, at its MemTotal)."""
    doc: dict[str, Any] = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    doc["topology"] = {"nodes": [f"{size // 1024}K" for _, size in sorted(guest_sizes().items())]}
    return doc


def plan_of(doc: dict[str, Any]) -> Placement:
    """The placement zoned makes of ``doc``'s config on this guest (the daemon's start)."""
    return place(read_topology(), loads_scenario(yaml.safe_dump(doc)).decls)


def nodes_of(plan: Placement, container: str) -> tuple[int, ...]:
    return next(c.nodes for c in plan.containers if c.name == container)


def mib(size: str | int) -> int:
    """A scenario size (``300M``) in whole MiB."""
    return parse_size(size) // MIB


def ramp_mib(doc: dict[str, Any], container: str) -> int:
    """The anon size of ``container``'s first ramp in the scenario's workloads."""
    spec = doc["workloads"][container]
    phases = spec["phases"] if isinstance(spec, dict) else spec
    ramp = next(p["ramp"] for p in phases if "ramp" in p)
    return mib(ramp["anon"])


def keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (memory.events, memory.stat) as a mapping."""
    out: dict[str, int] = {}
    for line in read(path).splitlines():
        k, _, v = line.partition(" ")
        out[k] = int(v)
    return out


def numa_stat(cg: Path) -> dict[str, dict[int, int]]:
    """``memory.numa_stat``: kind → node → bytes."""
    out: dict[str, dict[int, int]] = {}
    for line in read(cg / "memory.numa_stat").splitlines():
        kind, *rest = line.split()
        out[kind] = {int(k[1:]): int(v) for k, v in (f.split("=") for f in rest)}
    return out


class Kmsg:
    """Kernel messages from now on (``/dev/kmsg`` opened at its end)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.lines: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten records: go on
                    continue
                if exc.errno == errno.EAGAIN:
                    return self.lines
                raise
            self.lines.append(rec.decode(errors="replace").split(";", 1)[-1].strip())

    def killed(self) -> list[int]:
        """Pids the OOM killer killed since the start."""
        return [int(m) for m in re.findall(r"Killed process (\d+)", "\n".join(self.read()))]

    def close(self) -> None:
        os.close(self.fd)


class Workload:
    """``workloads.py`` in a child moved into cgroup ``cg`` before it allocates."""

    def __init__(self, cg: Path | list[Path], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", str(WORKLOADS), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        self.progress: list[tuple[float, int]] = []  # (Unix time, MiB) per chunk
        self.ended: str | None = None
        self.buf = b""
        assert self.line(START_S) == "hello"
        for one in cg if isinstance(cg, list) else [cg]:
            (one / "cgroup.procs").write_text(str(self.pid))
        self.send("go")
        self.started = time.time()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def line(self, timeout_s: float) -> str | None:
        """The next line ("" at end of output), None on timeout. Reads the pipe's fd
        itself: a buffered reader would hold lines that select() no longer sees."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                if not sel.select(left):
                    return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            self.buf += chunk
        text, _, self.buf = self.buf.partition(b"\n")
        return text.decode().strip()

    def finish(self, deadline_s: float = STEP_S) -> bool:
        """Read progress until ``done`` (True) or end of output (False: killed)."""
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            got = self.line(left)
            if got is None:
                break
            if got.startswith("at "):
                self.progress.append((time.time(), int(got.split()[1])))
            elif got.startswith("done") or got == "":
                self.ended = got or "killed"
                return got != ""
        pytest.fail(
            f"workload {self.pid} neither finished nor died in {deadline_s:g}s; "
            f"progress (MiB): {[m for _, m in self.progress][-5:]}"
        )

    def crossed(self, mib: float) -> float | None:
        """When (Unix time) its progress first reached ``mib``."""
        return next((t for t, m in self.progress if m >= mib), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Run:
    """One scenario in the guest: its config, daemon and workloads."""

    def __init__(self, name: str, tmp: Path, doc: dict[str, Any] | None = None) -> None:
        self.name = name
        self.doc: dict[str, Any] = copy.deepcopy(doc) if doc is not None else fitted(name)
        self.config: dict[str, Any] = self.doc["config"]
        self.v1 = self.config["host"].get("hierarchy") == "v1"
        self.roots = (V1_CPUSET, V1_MEMORY) if self.v1 else (ROOT,)
        if self.v1:
            self.config["host"]["cgroup_root"] = str(V1_CPUSET.parent)
        self.parents = [r / str(self.config["host"]["parent"]) for r in self.roots]
        self.parent = self.parents[-1]  # v1: the memory hierarchy's
        self.tmp = tmp
        self.socket = tmp / "control.sock"
        self.log = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workloads: list[Workload] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kmsg = Kmsg()

    def cg(self, container: str) -> Path:
        return self.parent / container

    def start_daemon(self) -> float:
        """Start ``zoned run`` and wait for its socket; returns the seconds it took."""
        cfg = self.tmp / "zoned.yaml"
        cfg.write_text(yaml.safe_dump(self.config))
        t0 = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zoned",
                    "run",
                    "-v",
                    "--config",
                    str(cfg),
                    "--socket",
                    str(self.socket),
                    "--state-dir",
                    str(self.tmp / "state"),
                ],
                cwd=PROJECT,
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: self.alive() and self.socket.exists(), "the control socket", START_S)
        return time.monotonic() - t0

    def alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"zoned exited with {self.proc.returncode}:\n{self.log.read_text()}")
        return True

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        resp = request(self.socket, req, timeout_s=60)
        assert resp["ok"], resp
        return resp

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.call({"cmd": "status", "decisions": 500})["result"]
        return doc

    def container(self, name: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = doc or self.status()
        found: dict[str, Any] = next(c for c in doc["containers"] if c["name"] == name)
        return found

    def holds(self, name: str) -> list[int]:
        nodes: list[int] = self.container(name)["nodes"]
        return nodes

    def settled(self) -> bool:
        return not self.status()["pending"]

    def effective(self, name: str) -> list[int]:
        if self.v1:
            return parse_list(read(self.parents[0] / name / "cpuset.effective_mems"))
        return parse_list(read(self.cg(name) / "cpuset.mems.effective"))

    def workload(self, container: str, *args: str) -> Workload:
        w = Workload([p / container for p in self.parents], *args)
        self.workloads.append(w)
        return w

    def sleeper(self, container: str) -> int:
        p = subprocess.Popen(["sleep", "600"])
        self.procs.append(p)
        for parent in self.parents:
            (parent / container / "cgroup.procs").write_text(str(p.pid))
        return p.pid

    def kernel_sequence(self) -> list[Step]:
        return sequence(self.status()["decisions"])

    def decisions(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.status()["decisions"] if d["kind"] == kind]

    def keep_logs(self) -> None:
        """The daemon's log, status and the cgroups' memory.events, kept in the run
        directory (the guest's tmp is gone after the boot)."""
        out = RUN_DIR / f"{self.name}-daemon.log"
        parts = [self.log.read_text() if self.log.exists() else "(no daemon log)"]
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, AssertionError, ZonedError):
                parts.append(json.dumps(self.status(), indent=1))
        events = "memory.oom_control" if self.v1 else "memory.events"
        for cg in sorted(self.parent.glob(f"*/{events}")):
            parts.append(f"{cg}: {read(cg)!r} numa_stat: {read(cg.parent / 'memory.numa_stat')!r}")
        with contextlib.suppress(OSError):
            out.write_text("\n".join(parts))

    def close(self) -> None:
        self.keep_logs()
        for w in self.workloads:
            w.stop()
        for p in self.procs:
            p.kill()
            p.wait(30)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.kmsg.close()
        for parent, root in zip(self.parents, self.roots, strict=True):
            remove_tree(parent, root)

    def daemon_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@contextlib.contextmanager
def scenario(name: str, tmp: Path, doc: dict[str, Any] | None = None) -> Iterator[Run]:
    """Scenario ``name`` (``doc``, default ``fitted(name)``) in the guest; cleaned up after."""
    run = Run(name, tmp, doc)
    for parent, root in zip(run.parents, run.roots, strict=True):
        remove_tree(parent, root)  # a crashed earlier run's leftovers
    try:
        yield run
    finally:
        run.close()
    assert not any(p.exists() for p in run.parents)


def sim_full(name: str, mode: str = "zoned", doc: dict[str, Any] | None = None) -> SimRun:
    """The scenario (``doc``, default ``fitted(name)``) on the simulator with this guest's
    nodes: the same count, ids and sizes."""
    doc = fitted(name) if doc is None else doc
    nodes = doc["topology"]["nodes"]
    assert len(nodes) == len(guest_sizes()), f"{name}: the twin's topology is not the guest's"
    return run_scenario(loads_scenario(yaml.safe_dump(doc), f"{name}.yaml (fitted)"), mode)


def sim_run(
    name: str, mode: str = "zoned", doc: dict[str, Any] | None = None
) -> tuple[list[Step], int, list[dict[str, Any]]]:
    """The scenario on the simulator with this guest's nodes: (sequence, OOM kills,
    decisions)."""
    run = sim_full(name, mode, doc)
    decisions: list[dict[str, Any]] = json_report(run, None)["decisions"]
    return sequence(decisions), run.oom_kills, decisions


@contextlib.contextmanager
def bare_cgroup(name: str, nodes: list[int]) -> Iterator[Path]:
    """A cgroup with ``cpuset.mems`` = ``nodes`` and no daemon (no memory.high)."""
    for ctl in ("+cpuset", "+memory"):
        assert write(ROOT / "cgroup.subtree_control", ctl) == "ok"
    cg = ROOT / name
    remove_tree(cg, ROOT)
    cg.mkdir()
    try:
        assert write(cg / "cpuset.mems", ",".join(map(str, nodes))) == "ok"
        yield cg
    finally:
        remove_tree(cg, ROOT)


def migrated_bytes(outcome: str) -> int:
    """The bytes a hand-over's outcome says it migrated (``...; 31.9M migrated``)."""
    m = re.search(r"([\d.]+)([KMG]?)i?B? migrated", outcome)
    if m is None:
        return 0
    return int(float(m.group(1)) * {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}[m.group(2)])


_SIZE = r"([\d.]+)([KMG]?)i?B?"
_UNIT = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}


def size_after(text: str, words: str) -> int:
    """The size that follows ``words`` in a log text (``reclaimed 76M``); 0 if none."""
    m = re.search(re.escape(words) + " " + _SIZE, text)
    return int(float(m.group(1)) * _UNIT[m.group(2)]) if m else 0


def size_before(text: str, words: str) -> int:
    """The size that precedes ``words`` in a log text (``52M left behind``); 0 if none."""
    m = re.search(_SIZE + " " + re.escape(words), text)
    return int(float(m.group(1)) * _UNIT[m.group(2)]) if m else 0
