"""Prometheus metrics (off by default): ``--metrics 127.0.0.1:9799`` or ``unix:/path``.

Updated from the event loop after each step (``Metrics.update``), served by
``zoned.service.metricsserver`` on one thread of its own (reading the registry is
thread-safe), so a slow scraper never delays the loop, and with bounded connections, so
local users cannot take it (or the daemon's fds) down.

Metrics::

    zoned_node_owner{node,owner,kind}                 1 for the current owner of each node
    zoned_node_bytes{node,what=total|free}
    zoned_container_bytes{container,what=current|anon|file|capacity|tripwire}
    zoned_container_headroom_ratio{container}        capacity not taken by anon, 0..1
    zoned_container_nodes{container}
    zoned_decisions_total{kind,outcome,reason}        reason: a small fixed vocabulary
    zoned_tripwire_to_action_seconds                 tripwire event → hand-over started
    zoned_oom_kills_total{container}
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from zoned.engine import Engine
from zoned.errors import ZonedError
from zoned.model.actions import Lend, Reclaim
from zoned.model.decisions import LogRecord
from zoned.service.listening import LISTEN_BACKLOG, clear_stale_socket, prepare_socket_dir
from zoned.service.metricsserver import MAX_CONNS, TIMEOUT_S, MetricsServer

log = logging.getLogger(__name__)

# Words in a reason → the label value; the first match wins. Reasons themselves carry
# numbers and names, which would make a label of unbounded cardinality.
_REASONS = (
    ("operator", "operator"),
    ("reload", "reload"),
    ("declared", "reload"),
    ("tripwire", "tripwire"),
    ("stall", "pressure"),
    ("pressure", "pressure"),
    ("idle", "idle"),
    ("oom", "oom"),
    ("vanished", "gone"),
    ("placement", "placement"),
    ("capacity", "capacity"),
)


def reason_class(rec: LogRecord) -> str:
    text = f"{rec.reason} {rec.what}".lower()
    return next((label for word, label in _REASONS if word in text), "other")


def outcome_class(outcome: str) -> str:
    for word in (
        "would have",
        "started",
        "done",
        "failed",
        "gave up",
        "abandoned",
        "armed",
        "recorded",
        "created",
        "adopted",
        "released",
        "noted",
    ):
        if outcome.startswith(word) or word in outcome.split(":", maxsplit=1)[0]:
            return word.replace(" ", "_")
    return "other"


class Metrics:
    """The metric families and how to fill them from the engine."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.node_owner = Gauge(
            "zoned_node_owner",
            "1 for the owner of each node",
            ["node", "owner", "kind"],
            registry=r,
        )
        self.node_bytes = Gauge("zoned_node_bytes", "node memory", ["node", "what"], registry=r)
        self.ctr_bytes = Gauge(
            "zoned_container_bytes",
            "container memory and zone size",
            ["container", "what"],
            registry=r,
        )
        self.headroom = Gauge(
            "zoned_container_headroom_ratio",
            "capacity not taken by anon",
            ["container"],
            registry=r,
        )
        self.ctr_nodes = Gauge("zoned_container_nodes", "nodes held", ["container"], registry=r)
        self.decisions = Counter(
            "zoned_decisions",
            "engine decisions and outcomes",
            ["kind", "outcome", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "zoned_tripwire_to_action_seconds",
            "from a tripwire event to the start of the hand-over it caused",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.oom = Counter("zoned_oom_kills", "kernel OOM kills seen", ["container"], registry=r)
        self._seen = 0
        self._owners: dict[str, tuple[str, str]] = {}
        self._oom_seen: dict[str, int] = {}
        self._tripped: dict[str, float] = {}

    def tripwire(self, container: str, at: float) -> None:
        """A tripwire event (engine clock); the first one since the last action counts."""
        self._tripped.setdefault(container, at)

    def update(self, engine: Engine) -> None:
        """Bring every metric up to the engine's state (engine thread)."""
        new: Sequence[LogRecord] = engine.log[self._seen :]
        self._seen = len(engine.log)
        for rec in new:
            self.decisions.labels(rec.kind, outcome_class(rec.outcome), reason_class(rec)).inc()
            a = rec.action
            if isinstance(a, Lend | Reclaim) and rec.outcome == "started":
                t = self._tripped.pop(a.to, None)
                if t is not None:
                    self.latency.observe(max(0.0, rec.at - t))
        for asg in engine.zonemap:
            key = str(asg.node)
            label = (str(asg.owner), asg.owner.kind.value)
            old = self._owners.get(key)
            if old != label:
                if old is not None:
                    self.node_owner.remove(key, *old)
                self.node_owner.labels(key, *label).set(1)
                self._owners[key] = label
        snap = engine.last_snapshot
        if snap is None:
            return
        for n, v in snap.nodes.items():
            self.node_bytes.labels(str(n), "total").set(v.total)
            self.node_bytes.labels(str(n), "free").set(v.free)
        for name, c in snap.containers.items():
            cap = snap.capacity(c.nodes)
            for what, val in (
                ("current", c.current),
                ("anon", c.unreclaimable),
                ("file", c.file),
                ("capacity", cap),
                ("tripwire", c.tripwire or 0),
            ):
                self.ctr_bytes.labels(name, what).set(val)
            self.headroom.labels(name).set((cap - c.unreclaimable) / cap if cap else 0.0)
            self.ctr_nodes.labels(name).set(len(c.nodes))
        for name, st in engine.stats.items():
            delta = st.oom_kills - self._oom_seen.get(name, 0)
            if delta > 0:
                self.oom.labels(name).inc(delta)
            self._oom_seen[name] = st.oom_kills


def _listen(where: str) -> socket.socket:
    """A listening socket for ``where``; ZonedError (one line) when it cannot be had."""
    if where.startswith("unix:"):
        path = Path(where[5:])
        prepare_socket_dir(path)
        clear_stale_socket(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # the socket is 0600 from the start
        try:
            s.bind(str(path))
        except OSError as exc:
            s.close()
            raise ZonedError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from exc
        finally:
            os.umask(old)
    else:
        host, _, port = where.rpartition(":")
        host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"  # [::1]:9799
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(
                host, int(port), type=socket.SOCK_STREAM
            )[0]
            s = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
        except (OSError, ValueError) as exc:  # not resolvable, bad port
            raise ZonedError(f"cannot serve metrics on {where}: {_why(exc)}") from exc
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
        except OSError as exc:  # in use, no such address here
            s.close()
            raise ZonedError(f"cannot serve metrics on {where}: {_why(exc)}") from exc
    s.listen(LISTEN_BACKLOG)
    return s


def _why(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def serve(
    metrics: Metrics,
    where: str,
    *,
    max_conns: int = MAX_CONNS,
    timeout_s: float = TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> MetricsServer:
    """Start serving ``where`` (``HOST:PORT``, ``[IPV6]:PORT`` or ``unix:/path``) on one
    thread (see ``zoned.service.metricsserver``); the caller closes the server.

    Port 0 picks a free port (logged). Raises ZonedError (one line) when it cannot listen
    there (address in use, unknown host, an unsafe socket directory, a file at the unix
    path that is not a stale socket of ours)."""
    sock = _listen(where)

    def render() -> tuple[bytes, str]:
        return generate_latest(metrics.registry), CONTENT_TYPE_LATEST

    srv = MetricsServer(
        sock, render, what=f"metrics {where}", max_conns=max_conns, timeout_s=timeout_s, clock=clock
    )
    addr = srv.address
    if isinstance(addr, tuple):
        shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        log.info("metrics on http://%s:%s/metrics", shown, addr[1])
    else:
        log.info("metrics on %s", where)
    return srv


__all__ = ["Metrics", "MetricsServer", "serve"]
