"""Getting processes into their containers: reading /proc, finding cgroups, the rule mover.

- ``read_proc`` reads what the rules look at (``/proc/PID/{exe,cmdline,status,cgroup}``
  under an injected proc root); a process that exits meanwhile is None, not an error.
- ``CgroupTree`` finds where containers' cgroups are on this host (v1: the cpuset and
  memory hierarchies, moved into cpuset first; v2: the one hierarchy) and moves pids.
- ``RuleMover`` classifies processes as they exec (``zoned.procwatch``) and attaches the
  ones a container's ``match:`` rules claim, their forked children too.
- ``systemd_conflicts`` says whether systemd would fight zoned over an adopted cgroup.

Wiring the mover into the daemon's loop (the daemon owns the loop; this owns the moves)::

    mover = RuleMover(backend, RuleSet.from_declarations(decls), proc_root)
    for line in mover.start():           # subscribe, then classify what already runs
        log.info("%s", line)
    loop.add_fd(mover.fileno(), IN, lambda revents: [log.info("%s", l) for l in
                                                     mover.on_readable()])
    ...
    mover.set_rules(RuleSet.from_declarations(new_decls))   # on reload
    mover.close()                                           # on exit

``on_readable`` does bounded work per call (``ProcWatch.limit`` datagrams) and never
blocks; the backend's ``attach`` is two small cgroup writes per moved process.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from zoned.backends.base import Backend
from zoned.config.decl import Declarations
from zoned.config.load import load
from zoned.errors import BackendError, CgroupGone, Unsupported, ZonedError
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.hierarchy import find_v1_controller, parse_mountinfo
from zoned.kernel.procwatch import ProcEvent, ProcEventKind, ProcWatch
from zoned.model.process import ProcInfo, cgroup_within, container_path, norm_cgroup
from zoned.policy.rules import RuleSet, Verdict

log = logging.getLogger(__name__)

PF_KTHREAD = 0x00200000  # include/linux/sched.h
AttachFn = Callable[[str, int], None]

# ---------------------------------------------------------------------------------------
# Reading /proc


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when the process is gone (ENOENT, ESRCH)."""
    try:
        with path.open("rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cgroup_from_proc(text: str) -> str | None:
    """The cgroup zoned cares about in a ``/proc/PID/cgroup`` text, relative to the root:
    the v1 cpuset hierarchy's when there is one, else the v2 (``0::``) one."""
    unified: str | None = None
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "cpuset" in controllers.split(","):
            return norm_cgroup(path)
        if hier == "0" and not controllers:
            unified = norm_cgroup(path)
    return unified


def proc_cgroup(proc_root: Path, pid: int) -> str | None:
    """The process's cgroup (see ``cgroup_from_proc``); None when it is gone."""
    data = _read_bytes(proc_root / str(pid) / "cgroup")
    return None if data is None else cgroup_from_proc(data.decode(errors="replace"))


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def read_proc(proc_root: Path, pid: int) -> ProcInfo | None:
    """What the rules look at, or None when the process is gone, a zombie or a kernel
    thread (no ``exe``). Read order: exe, cmdline, status, cgroup (the cgroup last, so a
    move made meanwhile is seen)."""
    base = proc_root / str(pid)
    try:
        exe = str((base / "exe").readlink())
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone, a zombie, or a kernel thread
    except PermissionError:
        exe = None
    exe = exe.removesuffix(" (deleted)") if exe is not None else None
    raw = _read_bytes(base / "cmdline")
    status = _read_bytes(base / "status")
    cgroup = proc_cgroup(proc_root, pid)
    if raw is None or status is None or cgroup is None:
        return None
    args = raw.rstrip(b"\0").split(b"\0") if raw else []
    cmdline = tuple(a.decode(errors="surrogateescape") for a in args)
    uid: int | None = None
    for line in status.split(b"\n"):
        if line.startswith(b"Uid:"):
            uid = int(line.split()[1])  # the real uid
            break
    return ProcInfo(
        pid=pid,
        exe=exe,
        cmdline=cmdline,
        uid=uid,
        user=user_name(uid) if uid is not None else None,
        cgroup=cgroup,
    )


def stat_fields(proc_root: Path, pid: int) -> list[str] | None:
    """``/proc/PID/stat`` fields after the comm, split (field 3 first); None when gone."""
    data = _read_bytes(proc_root / str(pid) / "stat")
    if data is None:
        return None
    # comm may hold spaces and parentheses: the fields start after the last ")".
    return data[data.rfind(b")") + 2 :].decode().split()


def comm(proc_root: Path, pid: int) -> str | None:
    data = _read_bytes(proc_root / str(pid) / "comm")
    return None if data is None else data.decode(errors="replace").rstrip("\n")


def is_kernel_thread(proc_root: Path, pid: int) -> bool | None:
    """PF_KTHREAD in the flags of ``/proc/PID/stat`` (field 9); None when gone."""
    fields = stat_fields(proc_root, pid)
    if fields is None:
        return None
    return bool(int(fields[6]) & PF_KTHREAD)


def children(proc_root: Path, pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (``task/*/children``); [] when gone."""
    out: list[int] = []
    try:
        tasks = list((proc_root / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return out
    for task in tasks:
        data = _read_bytes(task / "children")
        if data:
            out.extend(int(x) for x in data.split())
    return out


def all_pids(proc_root: Path) -> list[int]:
    """Every process id under the proc root, ascending."""
    return sorted(int(e.name) for e in os.scandir(proc_root) if e.name.isdigit())


# ---------------------------------------------------------------------------------------
# Where containers' cgroups are


@dataclass(frozen=True)
class CgroupTree:
    """The hierarchies a process is moved through: v1 ``(cpuset, memory)`` roots, in the
    order of the moves (cpuset first: the process's next allocations land on its nodes),
    or the one v2 root."""

    version: Literal[1, 2]
    roots: tuple[Path, ...]

    @classmethod
    def find(
        cls,
        proc_root: Path = Path("/proc"),
        cgroup_root: Path | None = None,
        prefer: str = "auto",
    ) -> CgroupTree:
        """``cgroup_root`` given: v1 when it holds ``cpuset/`` and ``memory/`` mounts,
        v2 when it holds ``cgroup.controllers``. Otherwise from
        ``<proc_root>/self/mountinfo``. ``prefer``: auto, v1 or v2. Raises Unsupported."""
        if cgroup_root is not None:
            v1 = (cgroup_root / "cpuset", cgroup_root / "memory")
            if prefer != "v2" and (v1[0] / "cpuset.mems").exists() and v1[1].is_dir():
                return cls(1, v1)
            if prefer != "v1" and (cgroup_root / "cgroup.controllers").exists():
                return cls(2, (cgroup_root,))
            raise Unsupported(f"no cgroup hierarchy with cpuset and memory at {cgroup_root}")
        mi = proc_root / "self" / "mountinfo"
        try:
            mounts = parse_mountinfo(mi.read_text())
        except OSError as exc:
            raise Unsupported(f"cannot read {mi}: {exc.strerror}") from exc
        if prefer != "v2":
            try:
                cpuset = find_v1_controller(mounts, "cpuset").mount_point
                memory = find_v1_controller(mounts, "memory").mount_point
                return cls(1, (cpuset, memory))
            except Unsupported:
                if prefer == "v1":
                    raise
        for m in mounts:
            if m.version == 2 and prefer != "v1":
                return cls(2, (m.mount_point,))
        raise Unsupported("neither cgroup v1 cpuset+memory nor cgroup v2 is mounted")

    def dirs(self, cgroup: str) -> list[Path]:
        """The cgroup's directory in each hierarchy."""
        path = norm_cgroup(cgroup)
        return [root / path if path else root for root in self.roots]

    def procs_files(self, cgroup: str) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs(cgroup)]

    def missing(self, cgroup: str) -> list[Path]:
        """The cgroup's directories that do not exist (empty: it is there everywhere)."""
        return [d for d in self.dirs(cgroup) if not d.is_dir()]

    def attach(self, cgroup: str, pid: int) -> None:
        """Move a process (its whole thread group) into ``cgroup`` in every hierarchy.
        Raises CgroupGone (cgroup or process gone: ESRCH), WriteRefused."""
        path = norm_cgroup(cgroup)
        for root in self.roots:
            CgroupFs(root).move_pid(path, pid)


@dataclass(frozen=True)
class Located:
    """A declared container and where its cgroup is on this host."""

    decls: Declarations
    name: str
    path: str  # relative to the hierarchy root
    tree: CgroupTree


def locate(
    config: Path,
    name: str,
    *,
    cgroup_root: Path | None = None,
    proc_root: Path = Path("/proc"),
    must_exist: bool = True,
) -> Located:
    """Read the configuration, find the container's cgroup. Raises ConfigError,
    Unsupported, or ZonedError with a plain message (unknown name, cgroup missing)."""
    decls = load(config)
    try:
        decl = decls.container(name)
    except KeyError:
        known = ", ".join(c.name for c in decls.containers) or "none"
        raise ZonedError(f"no container {name!r} in {config} (declared: {known})") from None
    path = container_path(decls.host.parent, name, decl.cgroup)
    tree = CgroupTree.find(proc_root, cgroup_root, decls.host.hierarchy)
    missing = tree.missing(path)
    if must_exist and missing:
        raise ZonedError(
            f"container {name} has no cgroup at {missing[0]}: is the zoned daemon running?"
            " (it creates containers' cgroups when it starts)"
        )
    return Located(decls, name, path, tree)


# ---------------------------------------------------------------------------------------
# The mover

Outcome = Literal[
    "moved", "followed", "already", "no_match", "gone_before_read", "gone_before_move", "failed"
]


@dataclass(frozen=True)
class Move:
    """What became of one process the mover looked at (for observers and benchmarks)."""

    pid: int
    outcome: Outcome
    container: str | None = None
    event_ns: int = 0  # the kernel's timestamp of the exec/fork (0: found by a scan)
    done_ns: int = 0  # CLOCK_MONOTONIC when the outcome was known


@dataclass
class MoverStats:
    execs: int = 0
    forks_followed: int = 0
    moved: int = 0
    gone_before_read: int = 0
    gone_before_move: int = 0
    failed: int = 0
    overruns: int = 0
    rescans: int = 0


@dataclass
class _Tracked:
    """Pids recently moved (or followed) by rules, so their forks follow them. Bounded."""

    cap: int
    pids: OrderedDict[int, str] = field(default_factory=OrderedDict)

    def add(self, pid: int, container: str) -> None:
        self.pids[pid] = container
        self.pids.move_to_end(pid)
        while len(self.pids) > self.cap:
            self.pids.popitem(last=False)


class RuleMover:
    """Moves processes into containers by their ``match:`` rules, as they exec.

    ``target`` is a Backend (its ``attach``) or an ``attach(container, pid)`` function.
    Races handled: a process that exits before it is read or moved (debug log, counted);
    a matched process that forked before it was moved (its children, found in
    ``/proc/PID/task/*/children``, are moved after it, recursively); forks of a matched
    process seen later (FORK events: the child follows its parent); lost events (socket
    overrun: a full ``/proc`` rescan, logged). Never moves pid 1, itself, kernel threads,
    or processes already in a declared container.
    """

    def __init__(
        self,
        target: Backend | AttachFn,
        rules: RuleSet,
        proc_root: Path = Path("/proc"),
        *,
        watch: ProcWatch | None = None,
        self_pid: int | None = None,
        on_move: Callable[[Move], None] | None = None,
        max_tracked: int = 65536,
    ) -> None:
        self._attach: AttachFn = target.attach if isinstance(target, Backend) else target
        self.rules = rules
        self.proc_root = proc_root
        self.watch = watch
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.on_move = on_move
        self.stats = MoverStats()
        self._tracked = _Tracked(max_tracked)

    # -- wiring ----------------------------------------------------------------------

    def start(self) -> list[str]:
        """Subscribe to process events (if no watch was given), then classify the
        processes already running: in this order, so none starts unseen in between."""
        if self.watch is None:
            self.watch = ProcWatch()
        lines = [f"watching process events (receive buffer {self.watch.rcvbuf} bytes)"]
        return lines + self.classify_running()

    def fileno(self) -> int:
        if self.watch is None:
            raise RuntimeError("RuleMover.start() first")
        return self.watch.fileno()

    def on_readable(self) -> list[str]:
        """Handle the events waiting now (bounded work, never blocks); log lines back."""
        if self.watch is None:
            return []
        return self.handle(self.watch.drain())

    def set_rules(self, rules: RuleSet) -> None:
        """New rules (on reload); processes already moved stay where they are."""
        self.rules = rules

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    # -- work ------------------------------------------------------------------------

    def handle(self, events: Iterable[ProcEvent]) -> list[str]:
        """Act on events in order; an OVERRUN ends with one full rescan."""
        lines: list[str] = []
        overrun = False
        tracked = self._tracked.pids
        for ev in events:
            if ev.kind is ProcEventKind.EXEC:
                self.stats.execs += 1
                lines += self._classify(ev.pid, ev.timestamp_ns)
            elif ev.kind is ProcEventKind.FORK:
                container = tracked.get(ev.parent)
                if container is not None:
                    lines += self._follow(ev.pid, container, ev.timestamp_ns)
            elif ev.kind is ProcEventKind.EXIT:
                tracked.pop(ev.pid, None)
            else:
                overrun = True
        if overrun:
            self.stats.overruns += 1
            lines.append("process events were lost (socket overrun, ENOBUFS): rescanning /proc")
            lines += self.classify_running()
        return lines

    def classify_running(self) -> list[str]:
        """Classify every process running now (at start, and after lost events)."""
        if not self.rules:
            return []
        self.stats.rescans += 1
        lines: list[str] = []
        for pid in all_pids(self.proc_root):
            lines += self._classify(pid, 0, scanning=True)
        return lines

    def _record(self, pid: int, outcome: Outcome, container: str | None, event_ns: int) -> None:
        if self.on_move is not None:
            self.on_move(Move(pid, outcome, container, event_ns, time.monotonic_ns()))

    def _classify(self, pid: int, event_ns: int, scanning: bool = False) -> list[str]:
        if pid in (1, self.self_pid) or not self.rules:
            return []
        info = read_proc(self.proc_root, pid)
        if info is None or info.exe is None:
            if not scanning:
                self.stats.gone_before_read += 1
                log.debug("pid %d exited before it was read, ignoring", pid)
                self._record(pid, "gone_before_read", None, event_ns)
            return []
        verdict = self.rules.classify(info)
        if verdict is None:
            self._record(pid, "no_match", None, event_ns)
            return []
        return self._move(info, verdict, event_ns)

    def _move(self, info: ProcInfo, verdict: Verdict, event_ns: int) -> list[str]:
        pid, container = info.pid, verdict.container
        if not self._attach_one(pid, container, event_ns, "moved"):
            return []
        self._tracked.add(pid, container)
        lines = [f"moved pid {pid} ({info.exe}) to {container}: {verdict.rule}"]
        # Children forked before the move stayed behind; their FORK events may already
        # have been handled (the parent was not tracked yet), so look now.
        for child in children(self.proc_root, pid):
            lines += self._follow(child, container, event_ns)
        return lines

    def _follow(self, pid: int, container: str, event_ns: int) -> list[str]:
        """Move a child of a matched process (and its own children) unless already in."""
        path = self.rules.paths.get(container)
        here = proc_cgroup(self.proc_root, pid)
        if here is None:
            return []
        if path is not None and cgroup_within(here, path):
            self._tracked.add(pid, container)  # forked after its parent moved: inherited
            return []
        if self.rules.container_at(here) not in (None, container):
            return []  # put into another container meanwhile: leave it
        if not self._attach_one(pid, container, event_ns, "followed"):
            return []
        self.stats.forks_followed += 1
        self._tracked.add(pid, container)
        lines = [f"moved pid {pid} to {container}: child of a matched process"]
        for child in children(self.proc_root, pid):
            lines += self._follow(child, container, event_ns)
        return lines

    def _attach_one(self, pid: int, container: str, event_ns: int, outcome: Outcome) -> bool:
        try:
            self._attach(container, pid)
        except CgroupGone as exc:
            if exc.errno == errno.ESRCH or not (self.proc_root / str(pid)).exists():
                self.stats.gone_before_move += 1
                log.debug("pid %d exited before it was moved to %s, ignoring", pid, container)
                self._record(pid, "gone_before_move", container, event_ns)
                return False
            self.stats.failed += 1
            log.warning("cannot move pid %d to %s: %s", pid, container, exc)
            self._record(pid, "failed", container, event_ns)
            return False
        except BackendError as exc:
            self.stats.failed += 1
            log.warning("cannot move pid %d to %s: %s", pid, container, exc)
            self._record(pid, "failed", container, event_ns)
            return False
        self.stats.moved += 1
        self._record(pid, outcome, container, event_ns)
        return True


# ---------------------------------------------------------------------------------------
# Adopted cgroups and systemd

Runner = Callable[[Sequence[str]], str]
UNIT_SUFFIXES = (".service", ".scope", ".slice")


def _systemctl(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


def systemd_conflicts(
    cgroup_path: str, runner: Runner = _systemctl, config_name: str = "zoned.yaml"
) -> list[str]:
    """Why systemd would fight zoned over an adopted cgroup (v2), each with what to do.

    Every unit along the path (``system.slice``, ``nginx.service``) is asked with
    ``systemctl show -p AllowedMemoryNodes,Delegate UNIT``. A unit with
    ``AllowedMemoryNodes=`` set makes systemd write ``cpuset.mems`` itself (a slice's
    narrows everything below it). A path *below* a unit that is not delegated is a
    cgroup systemd does not expect anyone to manage. Empty: no conflict found.
    """
    parts = [p for p in norm_cgroup(cgroup_path).split("/") if p]
    out: list[str] = []
    for i, unit in enumerate(parts):
        if not unit.endswith(UNIT_SUFFIXES):
            continue
        try:
            text = runner(["systemctl", "show", "-p", "AllowedMemoryNodes,Delegate", unit])
        except (OSError, subprocess.SubprocessError) as exc:
            out.append(
                f"cannot ask systemd about {unit} ({exc}); check that it has no"
                f" AllowedMemoryNodes= before letting zoned manage {cgroup_path}"
            )
            break  # one failure says it: the others would fail alike
        props = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
        allowed = props.get("AllowedMemoryNodes", "").strip()
        if allowed:
            out.append(
                f"{unit} has AllowedMemoryNodes={allowed}: systemd sets its memory nodes"
                f" too; remove AllowedMemoryNodes= from {unit} or drop {cgroup_path} from"
                f" {config_name}"
            )
        below = i < len(parts) - 1 and not unit.endswith(".slice")  # slices hold units
        if below and props.get("Delegate", "no").strip() != "yes":
            out.append(
                f"{cgroup_path} is below {unit}, which is not delegated (Delegate=no):"
                f" systemd may remove or rewrite it; adopt {'/'.join(parts[: i + 1])}"
                f" itself or set Delegate=yes on {unit}"
            )
    return out
