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
   remounted with ``mpol=bind:<shared nodes>`` (``zoned.shared.tmpfs``): a failure is logged
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

Beside the engine (``zoned.service.sidecars``), in the same epoll: the process connector of the
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from zoned.backends.base import Backend
from zoned.backends.fdloop import IN, FdCallback, FdLoop
from zoned.backends.select import check_host, fd_loop_of, open_backend
from zoned.config import load as zconfig
from zoned.config.decl import Declarations
from zoned.engine import Engine
from zoned.errors import ConfigError, Unsupported, ZonedError
from zoned.kernel import capabilities
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.enginecg import CgroupDirWatch
from zoned.kernel.roots import RUN_DIR, HostRoots
from zoned.kernel.uevents import UeventSource
from zoned.model.decisions import LogRecord
from zoned.model.engines import EngineContainer
from zoned.model.host import Event, EventKind
from zoned.model.zonemap import (
    Topology,
    ZoneMap,
)
from zoned.policy.adopt import initial_map, single_node_map
from zoned.policy.delegation import Mode, choose, localize
from zoned.service import (
    engines,
    enginewatch,
    handlers,
    reconfigure,
    sharedzone,
    sidecars,
    statefile,
)
from zoned.service import status as zstatus
from zoned.service.children import Children
from zoned.service.client import DEFAULT_SOCKET
from zoned.service.control import Client, ControlServer
from zoned.service.sdbus import JeepneyBus, SystemdBus
from zoned.service.sdscope import Scope, ensure_scope, pid1_is_systemd
from zoned.service.sidecars import MoverFactory, RuleWiring
from zoned.service.systemd import Notifier
from zoned.shared.rewarm import RewarmFn, RewarmSchedule
from zoned.shared.tmpfs import MountFn, libc_mount
from zoned.shared.zone import SHARED_LEAF, shared_cgroup

if TYPE_CHECKING:
    # Imported when used: prometheus_client alone is ~12 MiB of RSS, the simulator ~7 MiB,
    # and a daemon without --metrics on a real host needs neither.
    from zoned.service.metrics import Metrics
    from zoned.service.metricsserver import MetricsServer

log = logging.getLogger(__name__)

FALLBACK_POLL_S = 5.0


class LoopHost(Protocol):
    """The daemon's wait: backend events and its own fds in one epoll."""

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None: ...

    def remove_fd(self, fd: int) -> None: ...

    def poll_once(self, timeout_s: float | None) -> list[Event]: ...


class NodeEvents(Protocol):
    """What the daemon uses of :class:`zoned.kernel.uevents.UeventSource`."""

    def fileno(self) -> int: ...

    def drain(self) -> list[Event]: ...

    def close(self) -> None: ...


@dataclass
class Options:
    """``zoned run``'s options (see ``zoned run --help``)."""

    config: Path | None
    dry_run: bool = False
    roots: HostRoots = field(default_factory=HostRoots)  # /sys, /proc, the cgroup mount
    state_dir: Path = RUN_DIR
    socket: Path = DEFAULT_SOCKET
    release_on_stop: bool = False
    v1_memory_pressure: bool = False  # set the v1 root's host-wide flag (restored at stop)
    backend: str | None = None  # None: detect; "sim:SCENARIO.yaml": the paced simulator
    sim_speed: float = 1.0
    metrics: str | None = None
    group: int | None = None
    fallback_poll_s: float = FALLBACK_POLL_S


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
        systemd_bus: Callable[[], SystemdBus] = JeepneyBus,
    ) -> None:
        """The hooks replace what the daemon runs beside the engine (tests): the rule
        mover, the uevent source (default: the kernel's, on real backends only), the
        shared-zone re-warm (default: ``zoned.shared.rewarm``, on real backends only) and
        the mount(2) of the shared tmpfs at start (default: ``zoned.shared.tmpfs.libc_mount``,
        on real backends only). ``systemd_bus`` connects to systemd (the delegated scope
        under systemd: ``zoned.service.sdscope``).
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
        self.kernel_caps: dict[str, Any] | None = None  # probed at start; None: simulated
        self._host: LoopHost | None = None
        self._seen = 0
        self._saved: ZoneMap | None = None
        self._reload_pending = False
        self._reload_allow_empty = False  # what the reload that is pending was asked
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._speed = 1.0
        self._metrics_server: MetricsServer | None = None
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
        # Engine containers admitted (instance name → who), and the engines' cgroup watch.
        self.engine_containers: dict[str, EngineContainer] = {}
        self.engine_watch: CgroupDirWatch | None = None
        self.inspections: Children | None = None  # engine cgroup → inspect running or queued
        self._systemd_bus = systemd_bus
        self.delegation: Mode = "cgroupfs"  # systemd: the parent is a delegated scope
        self.scope: Scope | None = None

    # -- start ---------------------------------------------------------------------------

    def _load(self) -> Declarations:
        if self.opts.config is None:
            raise ConfigError([])
        return self.localize(zconfig.load(self.opts.config))

    def localize(self, decls: Declarations) -> Declarations:
        """``decls`` as this daemon runs them (under systemd: the scope as the parent)."""
        return localize(decls, self.delegation)

    def _delegate(self, decls: Declarations, hierarchy: str, root: Path) -> Declarations:
        """Choose who creates the parent; under systemd, start or adopt the scope."""
        o = self.opts
        self.delegation = choose(decls.host.delegation, hierarchy, pid1_is_systemd(o.roots.proc))
        if self.delegation == "cgroupfs":
            return decls
        bus = self._systemd_bus()
        try:
            self.scope = ensure_scope(
                bus, CgroupFs(root), o.roots.proc, decls.host.parent, dry_run=o.dry_run
            )
        finally:
            bus.close()
        log.info(
            "containers live in %s (%s, delegated by systemd)",
            self.scope.cgroup,
            self.scope.outcome,
        )
        return self.localize(decls)

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
            root = o.roots.cgroup or Path(decls.host.cgroup_root)
            hc = check_host(decls, cgroup_root=root, sys_root=o.roots.sys, proc_root=o.roots.proc)
            self.warnings += hc.warnings
            decls = self._delegate(decls, hc.hierarchy, root)
            backend = open_backend(
                decls,
                cgroup_root=root,
                sys_root=o.roots.sys,
                proc_root=o.roots.proc,
                check=hc,
                dry_run=o.dry_run,
                v1_memory_pressure=o.v1_memory_pressure,
                state_dir=o.state_dir,
                delegated=self.scope.cgroup if self.scope else None,
            )
            loop = fd_loop_of(backend)
            if loop is None:
                backend.close()
                raise Unsupported(f"backend {backend.name} has no event loop to share")
            self._fdloop = loop
            if self._node_events_factory is None:
                self._node_events_factory = lambda: UeventSource(sys_root=o.roots.sys)
            if self._rewarm_fn is None:
                self._rewarm_fn = sharedzone.rewarm_on_worker
                self._rewarm_prepare = shared_cgroup
            if self._tmpfs_mount is None:
                self._tmpfs_mount = libc_mount
            self.backend_name = f"cgroup {hc.hierarchy} ({hc.cgroup_root})" + (
                f", in {self.scope.unit}" if self.scope else ""
            )
            where = HostRoots(o.roots.sys, o.roots.proc, root)
            self.kernel_caps = capabilities.to_doc(
                capabilities.probe(where, capabilities.live_writer(where))
            )
            return decls, backend, loop

    def start(self) -> None:
        """Everything up to READY=1; raises ZonedError (nothing applied) on a problem, with
        the wake-up pair closed (a daemon that did not start holds no socket)."""
        try:
            self._start()
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise

    def _start(self) -> None:
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
        sharedzone.mount_tmpfs(self, decls)
        if o.metrics:
            from zoned.service.metrics import Metrics, serve

            self.metrics = Metrics(backend=backend.name, proc_root=o.roots.proc)
            self._metrics_server = serve(self.metrics, o.metrics)
        self.server = ControlServer(o.socket, self._host, self._handle, group=o.group)
        self._host.add_fd(self._wake_r.fileno(), IN, self._on_wake)
        sidecars.start(self, decls)
        enginewatch.start(self)
        if self.install_signals:
            signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, self._on_signal)
        self.started_wall = time.time()
        self.notifier.ready(self.status_line())
        self._after_change()
        log.info("ready: %s", self.status_line())

    # -- beside the engine: rules on exec, node hot-plug, shared-zone re-warm -------------

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
                sharedzone.rewarm_done(self, ev)
                continue
            if ev.kind is EventKind.NODE_CHANGE:
                changes.append(ev)
            rest.append(ev)
        if changes:
            sidecars.on_node_change(self, changes)
        return rest

    def reload(self, allow_empty: bool | None = None) -> dict[str, Any]:
        """Re-read the configuration and apply it as a difference (``zoned.service.reconfigure``).

        ``allow_empty``: a file without containers may release them all (None: as the
        deferred reload asked, else no). Returns ``{"ok", "changes" | "error", "deferred"}``;
        never raises for a bad file.
        """
        if allow_empty is None:
            allow_empty = self._reload_allow_empty
        self._reload_allow_empty = allow_empty
        result = reconfigure.reload(self, allow_empty)
        if self.metrics is not None:
            self.metrics.reloaded(result)
        return result

    def _handle(self, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
        return handlers.handle(self, c, req)

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
            look = engine.next_look()
            if look is not None:
                next_tick = min(next_tick, backend.now() + look)
                waits.append(look / self._speed)
            # Idle control clients are closed here; the server says when it needs us next.
            if self.server is not None and (control_s := self.server.tick()) is not None:
                waits.append(control_s)
            events = self._side_events(host.poll_once(max(0.0, min(waits))))
            self.wakeups += 1
            if self._sig.names:
                names, self._sig.names = self._sig.names, []
                log.info("signal %s", ", ".join(names))
            if self._sig.stop:
                break
            if self._sig.reload:
                self._sig.reload = False
                self.reload(allow_empty=False)
            now = backend.now()
            if events or now >= next_tick:
                if self.metrics is not None:
                    for ev in events:
                        if ev.kind is EventKind.TRIPWIRE and ev.container:
                            self.metrics.tripwire(ev.container, ev.at)
                engine.step(events)
                self.steps += 1
                engines.after_step(self)
                enginewatch.expire(self)
                sharedzone.observe_cache(self)
                next_tick = backend.now() + fallback
                if self._reload_pending and not engine.pending():
                    self.reload()
                self._after_change()
            if self.rewarm.next_at is not None and backend.now() >= self.rewarm.next_at:
                sharedzone.start_rewarm(self)
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
            self._metrics_server.close()
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
            enginewatch.close(self)
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
            kernel=self.kernel_caps,
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


__all__ = ["FALLBACK_POLL_S", "Daemon", "Options"]
