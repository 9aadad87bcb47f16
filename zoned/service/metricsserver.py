"""The metrics HTTP server: one thread, non-blocking sockets, bounded connections.

Any local user can reach a TCP metrics port, so nothing here grows with the number of
connections: one thread serves them all with ``selectors``; at most ``max_conns`` are
open (the excess is answered ``503`` and closed at once); each connection has
``timeout_s`` in all to send its request and take the answer; a request head longer than
``MAX_HEAD`` is answered ``431``. ``accept`` never spins when fds run out
(``listening.Acceptor``). The page is rendered by prometheus_client's ``generate_latest``,
which is safe to call while the engine thread updates the registry.

HTTP as Prometheus scrapes it: ``GET`` or ``HEAD`` of any path, one request per
connection, answered ``HTTP/1.0`` and closed. ``serve`` opens the socket (``HOST:PORT``,
``[IPV6]:PORT`` or ``unix:/path``, 0600) and starts a server for a registry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from zoned.errors import ZonedError
from zoned.service.listening import (
    ACCEPT_PAUSE_S,
    LISTEN_BACKLOG,
    Acceptor,
    Warner,
    clear_stale_socket,
    prepare_socket_dir,
)

log = logging.getLogger(__name__)

MAX_CONNS = 16
TIMEOUT_S = 10.0  # per connection, request and answer together
MAX_HEAD = 8 * 1024


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    inbuf: bytes = b""
    out: bytes = b""
    answered: bool = False  # out holds the whole answer


@dataclass
class _State:
    conns: dict[int, _Conn] = field(default_factory=dict)
    paused_until: float | None = None


def _response(status: str, body: bytes, content_type: str, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


class MetricsServer:
    """Serves ``render()`` (the page, and its content type) on ``sock`` (bound, listening)
    from one thread. ``close()`` stops it and closes every socket."""

    def __init__(
        self,
        sock: socket.socket,
        render: Callable[[], tuple[bytes, str]],
        *,
        what: str,
        max_conns: int = MAX_CONNS,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = sock
        self._render = render
        self.max_conns = max_conns
        self.timeout_s = timeout_s
        self._clock = clock
        self.refused = 0  # connections answered 503 at the cap
        self.served = 0
        self._st = _State()
        sock.setblocking(False)
        self._acceptor = Acceptor(sock, what, clock)
        self._warn = Warner(clock=clock)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._sel.register(sock, selectors.EVENT_READ, None)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="zoned-metrics", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str | tuple[str, int]:
        """Where it listens: a path, or (host, port) with the port chosen for port 0."""
        addr: str | tuple[str, int] = self.sock.getsockname()
        return addr

    @property
    def open_connections(self) -> int:
        return len(self._st.conns)

    def close(self) -> None:
        """Stop the thread (waits for it) and close every socket. Safe to call twice."""
        if self._stop:
            return
        self._stop = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5.0)
        for c in list(self._st.conns.values()):
            c.sock.close()
        self._st.conns.clear()
        self._sel.close()
        self.sock.close()
        self._acceptor.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            for key, mask in self._sel.select(self._next_timeout()):
                if key.fileobj is self._wake_r:
                    continue  # close() woke us
                if key.fileobj is self.sock:
                    self._accept()
                else:
                    self._on_conn(key.fd, mask)
            self._expire()

    def _next_timeout(self) -> float | None:
        st = self._st
        times = [c.deadline for c in st.conns.values()]
        if st.paused_until is not None:
            times.append(st.paused_until)
        return max(0.0, min(times) - self._clock()) if times else None

    def _expire(self) -> None:
        now = self._clock()
        st = self._st
        if st.paused_until is not None and now >= st.paused_until:
            st.paused_until = None
            self._sel.register(self.sock, selectors.EVENT_READ, None)
        for fd, c in list(st.conns.items()):
            if now >= c.deadline:
                log.debug("metrics connection timed out after %g s", self.timeout_s)
                self._drop(fd)

    def _accept(self) -> None:
        while True:
            conn, pause = self._acceptor.accept()
            if conn is None:
                if pause:
                    self._sel.unregister(self.sock)
                    self._st.paused_until = self._clock() + ACCEPT_PAUSE_S
                return
            if len(self._st.conns) >= self.max_conns:
                self.refused += 1
                self._warn.warn(f"metrics: {self.max_conns} connections open, refusing more")
                with contextlib.suppress(OSError):
                    conn.send(_response("503 Service Unavailable", b"busy\n", "text/plain", False))
                conn.close()
                continue
            self._st.conns[conn.fileno()] = _Conn(conn, self._clock() + self.timeout_s)
            self._sel.register(conn, selectors.EVENT_READ, None)

    def _on_conn(self, fd: int, mask: int) -> None:
        c = self._st.conns.get(fd)
        if c is None:
            return
        try:
            if mask & selectors.EVENT_READ and not c.answered:
                data = c.sock.recv(4096)
                if not data:
                    self._drop(fd)
                    return
                c.inbuf += data
                self._maybe_answer(c)
            if c.answered:
                n = c.sock.send(c.out)
                c.out = c.out[n:]
                if not c.out:
                    self.served += 1
                    self._drop(fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("metrics connection: %s", exc)
            self._drop(fd)

    def _maybe_answer(self, c: _Conn) -> None:
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            end = c.inbuf.find(b"\n\n")
        if end < 0:
            if len(c.inbuf) > MAX_HEAD:
                self._answer(
                    c, _response("431 Request Header Fields Too Large", b"", "text/plain", False)
                )
            return
        method = c.inbuf.split(b" ", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._answer(c, _response("405 Method Not Allowed", b"", "text/plain", False))
            return
        try:
            body, ctype = self._render()
        except Exception:  # a bug must not end the thread: every later scrape would hang
            log.exception("metrics: rendering the page failed")
            self._answer(c, _response("500 Internal Server Error", b"", "text/plain", False))
            return
        self._answer(c, _response("200 OK", body, ctype, method == b"HEAD"))

    def _answer(self, c: _Conn, data: bytes) -> None:
        c.out = data
        c.answered = True
        self._sel.modify(c.sock, selectors.EVENT_WRITE, None)

    def _drop(self, fd: int) -> None:
        c = self._st.conns.pop(fd, None)
        if c is None:
            return
        self._sel.unregister(c.sock)
        c.sock.close()


class HasRegistry(Protocol):
    """What ``serve`` serves: the registry of ``zoned.service.metrics.Metrics``."""

    registry: CollectorRegistry


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
    metrics: HasRegistry,
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
