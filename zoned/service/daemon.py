"""The daemon: start (adopting what the host holds), then the loop wait → step → report.

Start-up, in order; any failure before READY=1 exits with the problem and writes nothing:

1. load the configuration (``ConfigError`` lists every problem);
2. open the backend (``zoned.backends.select``: which hierarchy, PSI, the parent cgroup),
   or the paced simulator (``--backend sim:SCENARIO.yaml``);
3. build the zone map. **The kernel's cgroup tree is the source of truth**: a declared
   container that exists and is consistent (its nodes are pool nodes nobody else holds,
   within its ``min``..``max``, the shared zone exactly as declared) keeps what it holds;
   only the others are placed, on the nodes left. The hints under ``--state-dir`` only
   supply the reason and time of each assignment; a missing or corrupt file is ignored.
   A restart therefore changes nothing that is already right;
4. ``Engine.admit()``; then the shared tmpfs (``host.shared_tmpfs``) is mounted, kept or
   remounted with ``mpol=bind:<shared nodes>`` (``zoned.sharedfs``): a failure is logged
   and kept among the warnings, not fatal, and nothing is mounted from a private mount
   namespace; the control socket, READY=1. Stopping never unmounts it.

The loop wakes for: backend events (tripwires, PSI, OOM, finished writes), control
clients, signals, the systemd watchdog (half of ``WatchdogSec``) and the **fallback
poll** (``fallback_poll_s``, 5 s by default). The fallback poll exists because some
levels change without any event: a tripwire fires once per arming and a PSI trigger at
most once per window, so a container that frees memory (and may give a node back after
``idle_return_s``) or creeps up after its tripwire already fired is only seen by
re-reading. 5 s is far below the engine's time constants (``cooldown_s`` 10 s,
``idle_return_s`` minutes), so no decision waits noticeably on it; the engine's own
``run`` uses 1 s, five times the wake-ups for nothing on an idle host.

Beside the engine (``zoned.sidecars``), in the same epoll: the process connector of the
rule mover, only while some container declares ``match:`` (moves are logged with
``CONTAINER=``; no connector → a warning, rules off); the kernel's uevent socket (real
backends), whose NODE_CHANGE events make the daemon re-read the topology and log what
changed (the engine keeps its node set until a restart re-places). One more timed
wake-up exists **only when shared paths and a shared zone are declared**: the shared-zone
re-warm, run on the loop's worker pool once after admission and then
``policy.rewarm_interval_s`` (60 s) after the previous one ended, at
``policy.rewarm_mib_s`` (32 MiB/s); sooner when a step sees the shared nodes' FilePages
``policy.rewarm_drop_pct`` (5 %) below their peak since the last one (at least 10 s after
it). A reload that changes ``host.shared_tmpfs`` mounts or remounts (never unmounts).

Signals: SIGTERM/SIGINT stop the loop; containers keep running in their zones unless
``release_on_stop``. SIGHUP reloads (as ``zoned reload``): an invalid configuration is
refused with its problems logged and the running one is kept; a valid one is applied as a
difference, each change logged. A reload waits while hand-overs are in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import socketserver
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from zoned.backends.base import Backend
from zoned.backends.fdloop import IN, FdCallback, FdLoop, Outcome
from zoned.backends.select import check_host, fd_loop_of, open_backend
from zoned.config import load as zconfig
from zoned.config.decl import Declarations, TmpfsDecl
from zoned.config.diff import config_diff
from zoned.engine import Engine, LogRecord
from zoned.errors import ConfigError, ControlError, PlacementError, Unsupported, ZonedError
from zoned.kernel.uevents import UeventSource
from zoned.model.actions import Lend, Reclaim, Return
from zoned.model.host import Event, EventKind, OpKind
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import format_size
from zoned.model.zonemap import (
    FREE,
    SHARED,
    Assignment,
    Owner,
    OwnerKind,
    Topology,
    ZoneMap,
)
from zoned.policy.adopt import initial_map, single_node_map
from zoned.policy.decide import keeps_min, may_grow
from zoned.policy.placement import place
from zoned.service import statefile
from zoned.service import status as zstatus
from zoned.service.control import DEFAULT_SOCKET, Client, ControlServer
from zoned.service.sidecars import (
    MIB,
    MoverFactory,
    RewarmFn,
    RewarmSchedule,
    RuleWiring,
    default_mover,
    rewarm_summary,
    topology_change,
)
from zoned.service.systemd import Notifier
from zoned.shared.tmpfs import MountFn, libc_mount
from zoned.shared.tmpfs import ensure as ensure_shared_tmpfs
from zoned.shared.zone import HELPER_TIMEOUT_S, SHARED_LEAF, shared_cgroup
from zoned.shared.zone import rewarm as shared_rewarm

if TYPE_CHECKING:
    # Imported when used: prometheus_client alone is ~12 MiB of RSS, the simulator ~7 MiB,
    # and a daemon without --metrics on a real host needs neither.
    from zoned.service.metrics import Metrics

log = logging.getLogger(__name__)

FALLBACK_POLL_S = 5.0
# Prefix of the warnings about the shared tmpfs: each mount run replaces the last ones.
TMPFS_WARNING = "shared tmpfs: "
# An early re-warm (page cache dropped) never starts sooner than this after the last one
# ended, so a shared zone too small for its files is not re-read back to back.
REWARM_EARLY_GAP_S = 10.0


class LoopHost(Protocol):
    """The daemon's wait: backend events and its own fds in one epoll."""

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None: ...

    def remove_fd(self, fd: int) -> None: ...

    def poll_once(self, timeout_s: float | None) -> list[Event]: ...


class NodeEvents(Protocol):
    """What the daemon uses of :class:`zoned.uevents.UeventSource`."""

    def fileno(self) -> int: ...

    def drain(self) -> list[Event]: ...

    def close(self) -> None: ...


@dataclass
class Options:
    """``zoned run``'s options (see ``zoned run --help``)."""

    config: Path | None
    dry_run: bool = False
    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    cgroup_root: Path | None = None
    state_dir: Path = Path("/run/zoned")
    socket: Path = DEFAULT_SOCKET
    release_on_stop: bool = False
    backend: str | None = None  # None: detect; "sim:SCENARIO.yaml": the paced simulator
    sim_speed: float = 1.0
    metrics: str | None = None
    group: int | None = None
    fallback_poll_s: float = FALLBACK_POLL_S


def rewarm_on_worker(
    backend: Backend, nodes: frozenset[int], paths: Sequence[str], budget_bytes_per_s: float
) -> object:
    """The daemon's re-warm on a worker: zoned.shared was made on the loop's thread."""
    return shared_rewarm(backend, nodes, paths, budget_bytes_per_s, ensure=False)


# -- the daemon --------------------------------------------------------------------------


@dataclass
class _Signals:
    stop: bool = False
    reload: bool = False
    names: list[str] = field(default_factory=list)


class Daemon:
    """One zoned daemon. ``start()`` then ``run()`` on one thread; ``stop()`` from any."""

    def __init__(
        self,
        opts: Options,
        *,
        notifier: Notifier | None = None,
        install_signals: bool = True,
        clock: Callable[[], float] = time.monotonic,
        mover_factory: MoverFactory | None = None,
        node_events: Callable[[], NodeEvents] | None = None,
        rewarm_fn: RewarmFn | None = None,
        tmpfs_mount: MountFn | None = None,
    ) -> None:
        """The hooks replace what the daemon runs beside the engine (tests): the rule
        mover, the uevent source (default: the kernel's, on real backends only), the
        shared-zone re-warm (default: ``zoned.shared.rewarm``, on real backends only) and
        the mount(2) of the shared tmpfs at start (default: ``zoned.sharedfs.libc_mount``,
        on real backends only).
        """
        self.opts = opts
        self.notifier = notifier or Notifier()
        self.install_signals = install_signals
        self._clock = clock
        self._sig = _Signals()
        self.engine: Engine | None = None
        self.backend: Backend | None = None
        self.server: ControlServer | None = None
        self.metrics: Metrics | None = None
        self.topology: Topology | None = None
        self.warnings: list[str] = []
        self.wakeups = 0
        self.steps = 0
        self.started_wall = time.time()
        self.backend_name = ""
        self._host: LoopHost | None = None
        self._seen = 0
        self._saved: ZoneMap | None = None
        self._reload_pending = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._speed = 1.0
        self._metrics_server: socketserver.BaseServer | None = None
        self._fdloop: FdLoop | None = None
        self._mover_factory = mover_factory
        self._node_events_factory = node_events
        self._rewarm_fn = rewarm_fn
        self._tmpfs_mount = tmpfs_mount
        self._rewarm_prepare: Callable[[Backend, frozenset[int]], object] | None = None
        self.rules: RuleWiring | None = None
        self.node_events: NodeEvents | None = None
        self.host_topology: Topology | None = None  # as last re-read (hot-plug)
        self.topology_reads = 0
        self.rewarm = RewarmSchedule()
        self._rewarm_report: object = None

    # -- start ---------------------------------------------------------------------------

    def _load(self) -> Declarations:
        if self.opts.config is None:
            raise ConfigError([])
        return zconfig.load(self.opts.config)

    def _open(self) -> tuple[Declarations, Backend, LoopHost]:
        """The configuration, the backend and the loop that waits on it."""
        o = self.opts
        decls: Declarations
        if o.backend is not None and o.backend.startswith("sim:"):
            from zoned.backends.paced import PacedSim
            from zoned.backends.sim import load_scenario

            sc = load_scenario(o.backend[4:])
            decls = zconfig.load(o.config) if o.config is not None else sc.decls
            sim = dataclasses.replace(sc, decls=decls).backend()
            paced = PacedSim(sim, speed=o.sim_speed)
            self._fdloop = paced.loop
            self._speed = o.sim_speed
            self.backend_name = f"sim ({Path(o.backend[4:]).name}, x{o.sim_speed:g})"
            return decls, paced, paced
        elif o.backend is not None:
            raise Unsupported(f"--backend {o.backend!r}: expected sim:SCENARIO.yaml")
        else:
            decls = self._load()
            root = o.cgroup_root or Path(decls.host.cgroup_root)
            hc = check_host(decls, cgroup_root=root, sys_root=o.sys_root, proc_root=o.proc_root)
            self.warnings += hc.warnings
            backend = open_backend(
                decls,
                cgroup_root=root,
                sys_root=o.sys_root,
                proc_root=o.proc_root,
                check=hc,
                dry_run=o.dry_run,
            )
            loop = fd_loop_of(backend)
            if loop is None:
                backend.close()
                raise Unsupported(f"backend {backend.name} has no event loop to share")
            self._fdloop = loop
            if self._node_events_factory is None:
                self._node_events_factory = lambda: UeventSource(sys_root=o.sys_root)
            if self._rewarm_fn is None:
                self._rewarm_fn = rewarm_on_worker
                self._rewarm_prepare = shared_cgroup
            if self._tmpfs_mount is None:
                self._tmpfs_mount = libc_mount
            self.backend_name = f"cgroup {hc.hierarchy} ({hc.cgroup_root})"
            return decls, backend, loop

    def start(self) -> None:
        """Everything up to READY=1; raises ZonedError (nothing applied) on a problem."""
        o = self.opts
        decls, backend, host = self._open()
        self.backend, self._host = backend, host
        topo = backend.topology()
        self.topology = topo
        problems = zconfig.check_against_topology(decls, topo)
        single = len(topo.memory_node_ids) < 2
        if problems and not single:
            raise ConfigError(problems)
        now = backend.now()
        if single:
            msg = (
                "one memory node: zoned cannot juggle zones here and only reports the usage "
                "of declared containers that exist (boot with numa=fake=N)"
            )
            if not any("cannot juggle" in w for w in self.warnings):  # select said it too
                self.warnings.append(msg)
                log.warning("%s", msg)
            zmap = single_node_map(topo, decls, now)
        else:
            hints = statefile.load(o.state_dir)
            existing = backend.existing()
            zmap, notes = initial_map(topo, decls, existing, hints, now=now, wall_now=time.time())
            for n in notes:
                log.info("start: %s", n)
        self.engine = Engine(backend, decls, zmap, dry_run=o.dry_run or single, juggle=not single)
        self.engine.admit()
        self.engine.step([])  # the first snapshot, with the tripwires admission armed
        failed = [c.name for c in decls.containers if c.name not in self.engine.managed]
        if failed and not (o.dry_run or single):
            log.warning("not managed after admission: %s (see above)", ", ".join(failed))
        self._mount_shared_tmpfs(decls)
        if o.metrics:
            from zoned.service.metrics import Metrics, serve

            self.metrics = Metrics()
            self._metrics_server = serve(self.metrics, o.metrics)
        self.server = ControlServer(
            o.socket, self._host, self._handle, group=o.group, proc_root=o.proc_root
        )
        self._host.add_fd(self._wake_r.fileno(), IN, self._on_wake)
        self._start_sidecars(decls)
        if self.install_signals:
            signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, self._on_signal)
        self.started_wall = time.time()
        self.notifier.ready(self.status_line())
        self._after_change()
        log.info("ready: %s", self.status_line())

    def _mount_shared_tmpfs(self, decls: Declarations) -> None:
        """Mount ``host.shared_tmpfs`` on the shared zone's nodes (zoned.sharedfs), before
        READY=1. A failure is logged as an error and kept among the warnings (``zoned
        status``): the zones do not depend on it, and a restart would not mend it. Not in
        a private mount namespace (containers would not see the tmpfs), nor on the
        simulator; a dry run only logs what it would do. Never unmounted on stop."""
        tmpfs = decls.host.shared_tmpfs
        e = self.engine
        # What an earlier run (start, an earlier reload) warned about is replaced.
        self.warnings = [w for w in self.warnings if not w.startswith(TMPFS_WARNING)]
        if not tmpfs or self._tmpfs_mount is None or e is None:
            return
        nodes = e.zonemap.nodes_with(SHARED)
        try:
            report = ensure_shared_tmpfs(
                tmpfs,
                nodes,
                proc_root=self.opts.proc_root,
                dry_run=e.dry_run,
                mount=self._tmpfs_mount,
                refuse_private_namespace=True,
            )
        except ZonedError as exc:
            failures = [f"not mounted: {exc}"]
        else:
            failures = []
            for out in report.outcomes:
                line = out.line(report.dry_run)
                if out.ok:
                    log.info("shared tmpfs: %s", line)
                else:
                    failures.append(line)
        for line in failures:
            log.error("shared tmpfs: %s", line)
            self.warnings.append(f"{TMPFS_WARNING}{line}")

    def _reapply_rules(self, new: Declarations) -> None:
        """After a reload: the ``match:`` rules of the new declarations."""
        if self.rules is not None and self._host is not None and self.engine is not None:
            self.rules.apply(new, self._host, writes=not self.engine.dry_run)
            self._note_rule_warnings()

    def _reload_shared_tmpfs(self, old: tuple[TmpfsDecl, ...], new: Declarations) -> None:
        """After a reload: mount new mount points, remount changed ones. One no longer
        declared stays mounted (unmounting would destroy its files), said in the log."""
        if new.host.shared_tmpfs == old:
            return
        paths = {t.path for t in new.host.shared_tmpfs}
        for t in old:
            if t.path not in paths:
                log.info("shared tmpfs: %s no longer declared; left mounted", t.path)
        self._mount_shared_tmpfs(new)

    # -- beside the engine: rules on exec, node hot-plug, shared-zone re-warm -------------

    def _start_sidecars(self, decls: Declarations) -> None:
        assert self.backend is not None and self._host is not None and self.engine is not None
        self.host_topology = self.topology
        self.rules = RuleWiring(
            self.backend, self.opts.proc_root, self._mover_factory or default_mover
        )
        self.rules.apply(decls, self._host, writes=not self.engine.dry_run)
        self._note_rule_warnings()
        if self._node_events_factory is not None and self.engine.juggle:
            try:
                src = self._node_events_factory()
            except OSError as exc:
                why = f"node hot-plug is not watched: the uevent socket cannot be opened ({exc})"
                log.warning("%s", why)
                self.warnings.append(why)
            else:
                self.node_events = src
                self._host.add_fd(src.fileno(), IN, lambda revents: src.drain())
        self._plan_rewarm()

    def _note_rule_warnings(self) -> None:
        assert self.rules is not None
        self.warnings += [w for w in self.rules.warnings if w not in self.warnings]

    def _on_node_change(self, changes: list[Event]) -> None:
        """Re-read the topology after NODE_CHANGE events (one re-read per loop round) and
        say what changed; the engine keeps its node set (docs/service.md, "The loop")."""
        assert self.backend is not None and self.engine is not None
        what = "; ".join(ev.detail or "node change" for ev in changes[:4])
        if len(changes) > 4:
            what += f"; and {len(changes) - 4} more"
        try:
            new = self.backend.topology()
        except ZonedError as exc:
            log.warning("node change (%s): cannot re-read the topology: %s", what, exc)
            return
        self.topology_reads += 1
        old = self.host_topology or new
        self.host_topology = new
        info, warnings = topology_change(old, new, self.engine.zonemap)
        log.info("node change (%s): %s", what, "; ".join(info))
        for w in warnings:
            log.warning("node change: %s", w)
            if w not in self.warnings:
                self.warnings.append(w)

    def _plan_rewarm(self) -> None:
        """Schedule the shared-zone re-warm at once when it is wanted and not scheduled
        (after admission, after a reload that declares shared paths); unschedule it when
        it is not wanted (so no periodic wake-up without shared paths)."""
        e, sched = self.engine, self.rewarm
        assert e is not None and self.backend is not None
        on = (
            self._rewarm_fn is not None
            and self._fdloop is not None
            and not e.dry_run
            and RewarmSchedule.wanted(e.decls, e.zonemap) is not None
        )
        if not on:
            sched.next_at = None
        elif sched.next_at is None and sched.running_op is None:
            sched.next_at = self.backend.now()

    def _observe_shared_cache(self) -> None:
        """Hand the shared nodes' page cache (from the step's snapshot) to the re-warm
        schedule: a drop of ``policy.rewarm_drop_pct`` brings the next re-warm forward."""
        e, backend = self.engine, self.backend
        assert e is not None and backend is not None
        snap = e.last_snapshot
        if snap is None or self.rewarm.next_at is None:
            return
        nodes = e.zonemap.nodes_with(SHARED)
        file_bytes = sum(snap.nodes[n].file for n in nodes if n in snap.nodes)
        pct = e.decls.policy.rewarm_drop_pct
        if self.rewarm.observe(backend.now(), file_bytes, pct / 100, REWARM_EARLY_GAP_S):
            log.info(
                "shared zone: page cache on node %s fell to %s (peak %s, more than %g%% down): "
                "re-warm now",
                format_nodelist(nodes),
                format_size(file_bytes),
                format_size(self.rewarm.peak_file_bytes),
                pct,
            )

    def _start_rewarm(self) -> None:
        e, loop, fn, backend = self.engine, self._fdloop, self._rewarm_fn, self.backend
        assert e is not None and loop is not None and fn is not None and backend is not None
        want = RewarmSchedule.wanted(e.decls, e.zonemap)
        if want is None:
            self.rewarm.next_at = None
            return
        nodes, paths = want
        budget = e.decls.policy.rewarm_mib_s * MIB
        if self._rewarm_prepare is not None:
            try:  # on this thread: a backend's ensure registers fds with the loop
                self._rewarm_prepare(backend, nodes)
            except ZonedError as exc:
                log.warning("shared zone re-warm: cannot make %s: %s", SHARED_LEAF, exc)
                self.rewarm.finished(backend.now(), e.decls.policy.rewarm_interval_s)
                return

        def job() -> Outcome:
            self._rewarm_report = fn(backend, nodes, paths, budget)
            return Outcome()

        op = loop.submit(OpKind.REWARM, SHARED_LEAF, job, HELPER_TIMEOUT_S)
        self.rewarm.started(op)
        log.debug(
            "shared zone re-warm started (op %d): %d path(s) into node %s at %g MiB/s",
            op,
            len(paths),
            format_nodelist(nodes),
            e.decls.policy.rewarm_mib_s,
        )

    def _rewarm_done(self, ev: Event) -> None:
        e, loop = self.engine, self._fdloop
        assert e is not None and loop is not None and self.backend is not None
        with contextlib.suppress(KeyError):
            loop.op_result(ev.op or 0)
        report, self._rewarm_report = self._rewarm_report, None
        # The peak a drop is measured from, read at the end (before the line that says so):
        # left to the next step, an eviction before that step (up to fallback_poll_s later)
        # would be that step's baseline, never seen as a drop.
        try:
            mem = self.backend.node_memory()
            cached = sum(mem[n].file for n in e.zonemap.nodes_with(SHARED) if n in mem)
        except (OSError, ZonedError):
            cached = 0
        if ev.ok:
            log.info("shared zone re-warmed: %s", rewarm_summary(report))
        else:
            log.warning("shared zone re-warm failed: %s", ev.detail)
        self.rewarm.finished(self.backend.now(), e.decls.policy.rewarm_interval_s, cached)
        self._plan_rewarm()

    def _side_events(self, events: list[Event]) -> list[Event]:
        """Handle what is the daemon's own (NODE_CHANGE, the re-warm's end); the rest (and
        NODE_CHANGE too, which the engine ignores) go on to the engine."""
        rest: list[Event] = []
        changes: list[Event] = []
        for ev in events:
            if (
                ev.kind is EventKind.OP_FINISHED
                and ev.op is not None
                and ev.op == self.rewarm.running_op
                and ev.container == SHARED_LEAF
            ):
                self._rewarm_done(ev)
                continue
            if ev.kind is EventKind.NODE_CHANGE:
                changes.append(ev)
            rest.append(ev)
        if changes:
            self._on_node_change(changes)
        return rest

    # -- signals and wake-ups ------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs between bytecodes on the main thread; the wakeup fd ends the epoll wait.
        if signum == signal.SIGHUP:
            self._sig.reload = True
        else:
            self._sig.stop = True
        self._sig.names.append(signal.Signals(signum).name)

    def _on_wake(self, revents: int) -> list[Event]:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        return []

    def stop(self) -> None:
        """Ask the loop to end (any thread)."""
        self._sig.stop = True
        with contextlib.suppress(BlockingIOError):  # full: the loop wakes anyway
            self._wake_w.send(b"x")

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Loop until stopped; returns the exit status."""
        assert self.engine is not None and self._host is not None and self.backend is not None
        engine, host, backend = self.engine, self._host, self.backend
        fallback = self.opts.fallback_poll_s
        dog = self.notifier.watchdog_s
        next_tick = backend.now() + fallback
        next_dog = self._clock() + dog if dog else None
        while not self._sig.stop:
            waits = [(next_tick - backend.now()) / self._speed]
            if next_dog is not None:
                waits.append(next_dog - self._clock())
            if self.rewarm.next_at is not None:
                waits.append((self.rewarm.next_at - backend.now()) / self._speed)
            events = self._side_events(host.poll_once(max(0.0, min(waits))))
            self.wakeups += 1
            if self._sig.names:
                names, self._sig.names = self._sig.names, []
                log.info("signal %s", ", ".join(names))
            if self._sig.stop:
                break
            if self._sig.reload:
                self._sig.reload = False
                self.reload()
            now = backend.now()
            if events or now >= next_tick:
                if self.metrics is not None:
                    for ev in events:
                        if ev.kind is EventKind.TRIPWIRE and ev.container:
                            self.metrics.tripwire(ev.container, ev.at)
                engine.step(events)
                self.steps += 1
                self._observe_shared_cache()
                next_tick = backend.now() + fallback
                if self._reload_pending and not engine.pending():
                    self.reload()
                self._after_change()
            if self.rewarm.next_at is not None and backend.now() >= self.rewarm.next_at:
                self._start_rewarm()
            if next_dog is not None and self._clock() >= next_dog:
                self.notifier.watchdog()
                next_dog = self._clock() + (dog or 0.0)
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self.notifier.stopping()
        engine = self.engine
        if self.server is not None:
            self.server.shutdown()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            if self.opts.metrics and self.opts.metrics.startswith("unix:"):
                Path(self.opts.metrics[5:]).unlink(missing_ok=True)
        if engine is not None and self.opts.release_on_stop and not engine.dry_run:
            for name in list(engine.managed):
                try:
                    assert self.backend is not None
                    self.backend.release(name)
                    log.info("released %s", name)
                except ZonedError as exc:
                    log.warning("release %s: %s", name, exc)
        elif engine is not None:
            log.info("stopping; %d containers keep their zones", len(engine.managed))
        if engine is not None:
            self._save()
        if self.install_signals:
            signal.set_wakeup_fd(-1)
        if self._host is not None:
            if self.rules is not None:
                self.rules.close(self._host)
            if self.node_events is not None:
                self._host.remove_fd(self.node_events.fileno())
                self.node_events.close()
                self.node_events = None
        if self.backend is not None:
            self.backend.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- reporting -----------------------------------------------------------------------

    def status_line(self) -> str:
        assert self.engine is not None
        e = self.engine
        return zstatus.summary_line(e.zonemap, len(e.managed), len(e.pending()))

    def info(self) -> zstatus.DaemonInfo:
        o = self.opts
        return zstatus.DaemonInfo(
            pid=os.getpid(),
            started_wall=self.started_wall,
            backend=self.backend_name,
            config=str(o.config) if o.config else "(from the scenario)",
            socket=str(o.socket),
            dry_run=self.engine.dry_run if self.engine else o.dry_run,
            juggle=self.engine.juggle if self.engine else True,
            warnings=tuple(self.warnings),
            wakeups=self.wakeups,
            steps=self.steps,
            speed=self._speed,
            reload_pending=self._reload_pending,
        )

    def _save(self) -> None:
        assert self.engine is not None and self.backend is not None
        zmap = self.engine.zonemap
        if zmap is self._saved:
            return
        if statefile.save(
            self.opts.state_dir, zmap, engine_now=self.backend.now(), wall_now=time.time()
        ):
            self._saved = zmap

    def _after_change(self) -> None:
        """New decisions to followers and metrics, hints saved, STATUS= refreshed."""
        assert self.engine is not None and self.backend is not None
        e = self.engine
        new: list[LogRecord] = e.log[self._seen :]
        self._seen = len(e.log)
        if new and self.server is not None:
            now, wall = self.backend.now(), time.time()
            for rec in new:
                self.server.broadcast({"event": zstatus.record_doc(rec, now, wall, self._speed)})
        if self.metrics is not None:
            self.metrics.update(e)
        self._save()
        self.notifier.status(self.status_line())

    # -- control requests ----------------------------------------------------------------

    def _handle(self, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
        assert self.engine is not None
        cmd = req["cmd"]
        try:
            if cmd == "status":
                info = self.info()  # counters before this request's own step
                self._fresh()
                n = req.get("decisions", 15)
                return {
                    "ok": True,
                    "result": zstatus.build(
                        self.engine, info, decisions=n if isinstance(n, int) else 15
                    ),
                }
            if cmd == "lend":
                return self._override(c, req, lend=True)
            if cmd == "reclaim":
                return self._override(c, req, lend=False)
            if cmd == "reload":
                result = self.reload()
                return {
                    "ok": result["ok"],
                    "result": result,
                    **({} if result["ok"] else {"error": result["error"]}),
                }
            if cmd == "events":
                self._follow(c, req)
                return None
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        return {
            "ok": False,
            "error": f"unknown command {cmd!r} (status, lend, reclaim, reload, events)",
        }

    def _fresh(self, max_age_s: float = 1.0) -> None:
        """Step now if the last snapshot is older than ``max_age_s`` (engine seconds), so
        a status shows current usage; the step is what the fallback poll would do."""
        e = self.engine
        assert e is not None and self.backend is not None
        snap = e.last_snapshot
        if snap is None or self.backend.now() - snap.at > max_age_s:
            e.step([])
            self.steps += 1
            self._after_change()

    def _follow(self, c: Client, req: dict[str, Any]) -> None:
        assert self.engine is not None and self.backend is not None and self.server
        c.following = True
        self.server.send(c, {"ok": True, "result": {"following": True}})
        n = req.get("history", 0)
        if isinstance(n, int) and n > 0:
            now, wall = self.backend.now(), time.time()
            for rec in self.engine.log[-n:]:
                self.server.send(c, {"event": zstatus.record_doc(rec, now, wall, self._speed)})

    def _override(self, c: Client, req: dict[str, Any], *, lend: bool) -> dict[str, Any]:
        """``lend`` / ``reclaim``: check the request against the map, min and max, and what
        is moving, then start it (ControlError with the reason when refused)."""
        e = self.engine
        assert e is not None
        node = req.get("node")
        if not isinstance(node, int):
            raise ControlError('"node" must be a node number')
        if e.dry_run:
            raise ControlError("refused: zoned runs as a dry run and writes nothing")
        if not e.juggle:
            raise ControlError("refused: zoned does not juggle on this host (one memory node)")
        e.step([])  # a fresh snapshot: what is moving now, and node sizes
        self._after_change()
        zmap = e.zonemap
        if node not in zmap.assignments:
            raise ControlError(
                f"no node {node} (this machine has nodes {format_nodelist(zmap.assignments)})"
            )
        owner = zmap.owner(node)
        if owner.kind in (OwnerKind.RESERVED, OwnerKind.SHARED, OwnerKind.MEMORYLESS):
            raise ControlError(f"refused: node {node} is {owner.kind.value}; only pool nodes move")
        snap = e.last_snapshot
        assert snap is not None
        if node in snap.busy_nodes:
            raise ControlError(f"refused: node {node} is moving ({'; '.join(e.pending())})")
        who = f"operator (uid {c.cred.uid}, pid {c.cred.pid})"
        action: Lend | Reclaim | Return
        if lend:
            action = self._lend_action(node, owner, req.get("container"), who)
        else:
            if owner.kind is not OwnerKind.CONTAINER or owner.container is None:
                raise ControlError(f"refused: node {node} is free already")
            self._check_donor(owner.container, node)
            action = Return(node, owner.container, f"{who}: zoned reclaim {node}")
        log.info("override by %s: %s", who, action.describe())
        e.override(action)
        self._after_change()
        return {"ok": True, "result": {"started": action.describe(), "pending": list(e.pending())}}

    def _caps(self, nodes: frozenset[int]) -> list[int]:
        assert self.engine is not None and self.engine.last_snapshot is not None
        sizes = self.engine.last_snapshot.nodes
        return [sizes[n].total for n in nodes if n in sizes]

    def _check_busy(self, name: str) -> None:
        assert self.engine is not None and self.engine.last_snapshot is not None
        v = self.engine.last_snapshot.containers.get(name)
        if v is not None and v.pending:
            raise ControlError(f"refused: {name} is busy ({'; '.join(v.pending)})")

    def _check_donor(self, donor: str, node: int) -> None:
        """``donor`` may give ``node`` away: it keeps its min and has nothing in flight."""
        e = self.engine
        assert e is not None
        d = e.decls.container(donor)
        left = e.zonemap.nodes_of(donor) - {node}
        if not keeps_min(d, self._caps(left), e.decls.host.headroom_pct):
            raise ControlError(
                f"refused: {donor} would fall below its min ({d.min}) without node {node}"
            )
        self._check_busy(donor)

    def _lend_action(self, node: int, owner: Owner, to: object, who: str) -> Lend | Reclaim:
        e = self.engine
        assert e is not None
        if not isinstance(to, str):
            raise ControlError('"container" must be a container name')
        decls = e.decls
        try:
            decl = decls.container(to)
        except KeyError:
            names = ", ".join(x.name for x in decls.containers)
            raise ControlError(f"no container {to!r} is declared ({names})") from None
        if to not in e.managed:
            raise ControlError(f"refused: {to} is not managed (its cgroup is missing)")
        if owner == Owner.of(to):
            raise ControlError(f"refused: {to} already holds node {node}")
        self._check_busy(to)
        held = e.zonemap.nodes_of(to)
        if not may_grow(decl, self._caps(held), decls.host.headroom_pct):
            raise ControlError(f"refused: {to} is at its max ({decl.max}) with {len(held)} node(s)")
        why = f"{who}: zoned lend {node} {to}"
        if owner == FREE:
            return Lend(node, to, why)
        assert owner.container is not None
        self._check_donor(owner.container, node)
        return Reclaim(node, owner.container, to, why)

    # -- reload --------------------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Re-read the configuration and apply it as a difference; see the module doc.

        Returns ``{"ok", "changes" | "error", "deferred"}``; never raises for a bad file.
        """
        e, topo = self.engine, self.topology
        assert e is not None and topo is not None and self.backend is not None
        if self.opts.config is None:
            return {"ok": False, "error": "no --config to reload (running a scenario's own)"}
        self.notifier.reloading()
        try:
            return self._reload(e, topo)
        finally:
            self.notifier.reloaded()
            self._after_change()

    def _refuse(self, problems: list[str]) -> dict[str, Any]:
        for p in problems:
            log.error("reload refused: %s", p)
        log.error("reload refused; the running configuration is kept")
        return {"ok": False, "error": "\n".join(problems), "problems": problems}

    def _reload(self, e: Engine, topo: Topology) -> dict[str, Any]:
        assert self.opts.config is not None
        try:
            new = zconfig.load(self.opts.config)
        except ConfigError as exc:
            return self._refuse([str(p) for p in exc.problems])
        problems = zconfig.check_against_topology(new, topo)
        if problems and e.juggle:
            return self._refuse([str(p) for p in problems])
        refusals, changes = config_diff(e.decls, new)
        if refusals:
            return self._refuse(refusals)
        if e.pending():
            self._reload_pending = True
            log.info("reload waits for %d hand-over(s) in flight", len(e.pending()))
            return {"ok": True, "deferred": True, "changes": changes}
        self._reload_pending = False
        if not changes:
            log.info("reload: nothing changed")
            return {"ok": True, "deferred": False, "changes": []}
        now = self.backend.now() if self.backend else 0.0
        zmap = e.zonemap
        before = {c.name for c in e.decls.containers}
        after = {c.name: c for c in new.containers}
        lends: list[Lend] = []
        if e.juggle:
            for name in before - after.keys():
                for n in sorted(zmap.nodes_of(name)):
                    zmap = zmap.with_assignment(
                        Assignment(n, FREE, f"{name} no longer declared (reload)", now)
                    )
            free_ids = zmap.nodes_with(FREE)
            added = [c for c in new.containers if c.name not in before]
            if added:
                sub = Topology(tuple(n for n in topo.nodes if n.id in free_ids))
                host = dataclasses.replace(
                    new.host, reserved_nodes=(), shared_nodes=(), shared_count=0
                )
                try:
                    placed = place(
                        sub, dataclasses.replace(new, host=host, containers=tuple(added))
                    )
                except PlacementError as exc:
                    return self._refuse(
                        [f"the new containers do not fit the free nodes now: {exc}"]
                    )
                for a in placed.zonemap:
                    if a.owner.kind is OwnerKind.CONTAINER:
                        zmap = zmap.with_assignment(dataclasses.replace(a, since=now))
            sizes = {n.id: n.mem_total for n in topo.nodes}
            spare = sorted(zmap.nodes_with(FREE), key=lambda n: (sizes[n], n))
            for c in new.containers:
                if c.name not in before:
                    continue
                own = zmap.nodes_of(c.name)
                extra: list[int] = []
                while not keeps_min(c, [sizes[n] for n in (*own, *extra)], new.host.headroom_pct):
                    if not spare:
                        return self._refuse(
                            [f"{c.name}: its new min ({c.min}) needs more nodes than are free now"]
                        )
                    extra.append(spare.pop(0))
                lends += [
                    Lend(n, c.name, f"{c.name}: min raised to {c.min} (reload)") for n in extra
                ]
        old_tmpfs = e.decls.host.shared_tmpfs
        e.reconfigure(new, zmap)
        for lend in lends:
            e.override(lend)
        self._reapply_rules(new)
        self._reload_shared_tmpfs(old_tmpfs, new)
        self._plan_rewarm()
        for ch in changes:
            log.info("reload: %s", ch)
        e.log.append(
            LogRecord(now, "reload", "configuration reloaded", "; ".join(changes), "applied")
        )
        return {"ok": True, "deferred": False, "changes": changes}


__all__ = ["FALLBACK_POLL_S", "Daemon", "Options"]
