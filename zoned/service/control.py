"""The control socket: a unix stream socket speaking JSON lines, served from the event loop.

Protocol (one JSON object per line, UTF-8, both ways; a connection may carry several
requests, answered in order):

    → {"cmd": "status", "decisions": 15}
    ← {"ok": true, "result": {...status document...}}
    → {"cmd": "lend", "node": 3, "container": "web"}
    ← {"ok": false, "error": "node 3 is reserved: never lent"}
    → {"cmd": "reclaim", "node": 3, "force": false}   (force: past the usage check)
    → {"cmd": "reload"}
    → {"cmd": "events", "history": 10}
    ← {"ok": true, "result": {"following": true}}   then one {"event": {...}} per decision

``lend``, ``reclaim`` and ``reload`` change things: they are allowed to uid 0 and, when
configured, to members of one group (checked with ``SO_PEERCRED`` and ``SO_PEERGROUPS``:
the peer's ids and supplementary groups as they were at connect(), so a pid reused later
cannot lend its groups). The socket file is mode 0600 (0660 with that group), in a
directory that must be the daemon's own and not writable by others
(``zoned.service.listening.prepare_socket_dir``).

Nothing here blocks the loop: sockets are non-blocking; a client's output is buffered and
sent as the socket accepts it; a client that lets more than ``MAX_OUTPUT`` bytes pile up
(a stalled ``zoned events`` reader) is disconnected, and a request line longer than
``MAX_LINE`` closes the connection. A request nested deeper than ``MAX_DEPTH`` is refused
before it is parsed (the JSON parser recurses), and an error in a handler is logged and
answered: no request ends the daemon.

Connections are bounded: at most ``MAX_CLIENTS`` at once, of which ``ROOT_RESERVED`` only
for uid 0 (so other users cannot lock root out); the excess is accepted, told
``{"ok": false, "busy": true, ...}`` and closed at once, so it never sits in the backlog.
A client that sends no complete request for ``IDLE_S`` is closed, except ``events``
followers, which are expected to be quiet. The caller drives those timeouts with
:meth:`ControlServer.tick`; running out of fds never spins (``listening.Acceptor``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoned.backends.fdloop import IN, FdCallback, FdHost
from zoned.model.host import Event
from zoned.service.listening import (
    ACCEPT_PAUSE_S,
    LISTEN_BACKLOG,
    Acceptor,
    Warner,
    clear_stale_socket,
    prepare_socket_dir,
)

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_OUTPUT = 4 * 1024 * 1024
MAX_DEPTH = 16  # of arrays and objects in a request (a request needs 1 or 2)
MAX_CLIENTS = 64  # connections at once
ROOT_RESERVED = 8  # of those, kept for uid 0
IDLE_S = 30.0  # without a complete request (followers excepted)
MUTATING = frozenset({"lend", "reclaim", "reload", "engine-admit"})
# SO_PEERGROUPS (Linux 4.13): Python 3.11's socket module lacks the name; 59 on every
# architecture but alpha/mips/parisc/sparc, which zoned does not run on.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_GROUPS_BYTES = 1024  # the most Python's getsockopt reads: 256 groups
_OUT = 0x004  # EPOLLOUT


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()  # supplementary, as of connect()


def peer_cred(sock: socket.socket) -> PeerCred:
    """The connecting process's ids and groups as the kernel saw them at connect().

    A peer with more than 256 supplementary groups gets none counted (``ERANGE``): only
    its uid and primary gid; that fails closed."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        packed = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _MAX_GROUPS_BYTES)
    except OSError as exc:
        if exc.errno not in (errno.ERANGE, errno.ENOPROTOOPT):
            raise
        log.warning("control: supplementary groups of pid %d not known (%s)", pid, exc.strerror)
        packed = b""
    groups = struct.unpack(f"{len(packed) // 4}I", packed[: len(packed) // 4 * 4])
    return PeerCred(pid, uid, gid, frozenset(groups))


def authorize(cred: PeerCred, cmd: str, *, group: int | None = None) -> str | None:
    """Why ``cred`` may not run ``cmd`` (None: it may). Reading is open to anyone who can
    connect; changing needs uid 0 or membership of ``group`` (primary or supplementary, as
    of connect())."""
    if cmd not in MUTATING or cred.uid == 0:
        return None
    if group is not None and (cred.gid == group or group in cred.groups):
        return None
    who = f"uid {cred.uid}"
    allowed = "root" + (f" or group {group}" if group is not None else "")
    return f"{cmd} changes the zone map: allowed to {allowed}, not to {who}"


Handler = Callable[["Client", dict[str, Any]], dict[str, Any] | None]


@dataclass
class Client:
    """One connection (engine thread only)."""

    sock: socket.socket
    cred: PeerCred
    inbuf: bytes = b""
    outbuf: bytearray = field(default_factory=bytearray)
    following: bool = False
    closed: bool = False
    writing: bool = False  # registered for EPOLLOUT
    active: float = 0.0  # when it connected or last sent a complete request (server clock)

    @property
    def fd(self) -> int:
        return self.sock.fileno()


def json_depth(line: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings
    do not count); linear, with no recursion, so it is safe on any input."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class ControlServer:
    """Serves requests on ``path`` through ``host``'s loop; ``handler(client, request)``
    returns the response (or None when it answered by itself, e.g. ``events``)."""

    def __init__(
        self,
        path: Path,
        host: FdHost,
        handler: Handler,
        *,
        group: int | None = None,
        max_clients: int = MAX_CLIENTS,
        root_reserved: int = ROOT_RESERVED,
        idle_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._host = host
        self._handler = handler
        self.group = group
        self.max_clients = max_clients
        self.root_reserved = root_reserved
        self.idle_s = IDLE_S if idle_s is None else idle_s  # read now: tests shorten it
        self._clock = clock
        self.clients: dict[int, Client] = {}
        self.refused = 0  # connections turned away at the cap
        self._warn_busy = Warner(clock=clock)
        self._listen = self._bind(path, group)
        self._acceptor = Acceptor(self._listen, f"control socket {path}", clock)
        self._paused_until: float | None = None  # not watching the listening fd till then
        host.add_fd(self._listen.fileno(), IN, self._on_accept)

    @staticmethod
    def _bind(path: Path, group: int | None) -> socket.socket:
        prepare_socket_dir(path)
        clear_stale_socket(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # no window in which the socket is open to others
        try:
            s.bind(str(path))
        finally:
            os.umask(old)
        if group is not None:
            os.chown(path, -1, group)
            path.chmod(0o660)
        s.listen(LISTEN_BACKLOG)
        s.setblocking(False)
        return s

    # -- timeouts ------------------------------------------------------------------------

    def tick(self) -> float | None:
        """Close clients idle past ``idle_s``, resume accepting after a pause; returns the
        seconds until this needs calling again (None: only after new activity). The owner
        of the loop calls it after each round and waits no longer than it says."""
        now = self._clock()
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._host.add_fd(self._listen.fileno(), IN, self._on_accept)
        nxt = self._paused_until
        for c in list(self.clients.values()):
            if c.following:
                continue
            if now >= c.active + self.idle_s:
                log.debug("control client pid %d idle for %g s, closing", c.cred.pid, self.idle_s)
                self.close(c)
                continue
            nxt = c.active + self.idle_s if nxt is None else min(nxt, c.active + self.idle_s)
        return None if nxt is None else max(0.0, nxt - now)

    # -- loop callbacks ------------------------------------------------------------------

    def _on_accept(self, revents: int) -> list[Event]:
        while True:
            conn, pause = self._acceptor.accept()
            if conn is None:
                if pause:
                    self._host.remove_fd(self._listen.fileno())
                    self._paused_until = self._clock() + ACCEPT_PAUSE_S
                return []
            try:
                cred = peer_cred(conn)
            except OSError as exc:
                log.warning("control socket: no peer credentials (%s), closing", exc)
                conn.close()
                continue
            limit = self.max_clients - (0 if cred.uid == 0 else self.root_reserved)
            if len(self.clients) >= limit:
                self._refuse(conn, cred)
                continue
            c = Client(conn, cred, active=self._clock())
            self.clients[c.fd] = c
            self._host.add_fd(c.fd, IN, self._callback(c))

    def _refuse(self, conn: socket.socket, cred: PeerCred) -> None:
        """Answer one line and close: a fresh socket's buffer always takes it."""
        self.refused += 1
        msg = f"busy: {len(self.clients)} clients connected (at most {self.max_clients})"
        self._warn_busy.warn(f"control socket: refused pid {cred.pid} (uid {cred.uid}): {msg}")
        line = json.dumps({"ok": False, "busy": True, "error": msg}).encode() + b"\n"
        with contextlib.suppress(OSError):
            conn.send(line)
        conn.close()

    def _callback(self, c: Client) -> FdCallback:
        def on_ready(revents: int) -> list[Event]:
            return self._on_client(c, revents)

        return on_ready

    def _on_client(self, c: Client, revents: int) -> list[Event]:
        if revents & _OUT:
            self._flush(c)
        if c.closed or not revents & (IN | 0x008 | 0x010):  # IN, ERR, HUP
            return []
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            log.debug("control client %d: %s, closing", c.cred.pid, exc)
            self.close(c)
            return []
        if not data:
            self.close(c)
            return []
        c.inbuf += data
        while b"\n" in c.inbuf and not c.closed:
            line, c.inbuf = c.inbuf.split(b"\n", 1)
            c.active = self._clock()
            if line.strip():
                self._request(c, line)
        if len(c.inbuf) > MAX_LINE and not c.closed:
            self.send(c, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
            self.close(c)
        return []

    def _request(self, c: Client, line: bytes) -> None:
        if json_depth(line) > MAX_DEPTH:
            self.send(c, {"ok": False, "error": f"request nested deeper than {MAX_DEPTH} levels"})
            return
        try:
            req = json.loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            self.send(c, {"ok": False, "error": f"not a JSON line: {exc}"})
            return
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            self.send(c, {"ok": False, "error": 'expected an object with "cmd"'})
            return
        why = authorize(c.cred, req["cmd"], group=self.group)
        if why is not None:
            log.warning("control: refused %s from pid %d: %s", req["cmd"], c.cred.pid, why)
            self.send(c, {"ok": False, "error": why})
            return
        try:
            resp = self._handler(c, req)
        except Exception as exc:
            log.exception("control: %s from pid %d failed", req["cmd"], c.cred.pid)
            what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            resp = {"ok": False, "error": f"{req['cmd']} failed in the daemon ({what})"}
        if resp is not None:
            self.send(c, resp)

    # -- output --------------------------------------------------------------------------

    def send(self, c: Client, obj: dict[str, Any]) -> None:
        """Queue one JSON line for ``c`` and send what the socket takes now."""
        if c.closed:
            return
        c.outbuf += json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        if len(c.outbuf) > MAX_OUTPUT:
            log.warning(
                "control client pid %d reads too slowly (%d bytes waiting), closing",
                c.cred.pid,
                len(c.outbuf),
            )
            self.close(c)
            return
        self._flush(c)

    def broadcast(self, obj: dict[str, Any]) -> None:
        """Send to every client following events."""
        for c in list(self.clients.values()):
            if c.following:
                self.send(c, obj)

    def _flush(self, c: Client) -> None:
        while c.outbuf and not c.closed:
            try:
                n = c.sock.send(c.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    log.debug("control client pid %d: %s", c.cred.pid, exc)
                self.close(c)
                return
            del c.outbuf[:n]
        want_out = bool(c.outbuf)
        if want_out != c.writing and not c.closed:
            # FdLoop has no modify: re-register with the new mask.
            self._host.remove_fd(c.fd)
            self._host.add_fd(c.fd, IN | (_OUT if want_out else 0), self._callback(c))
            c.writing = want_out

    def close(self, c: Client) -> None:
        if c.closed:
            return
        c.closed = True
        self.clients.pop(c.fd, None)
        self._host.remove_fd(c.fd)
        c.sock.close()

    def shutdown(self) -> None:
        for c in list(self.clients.values()):
            self.close(c)
        self._host.remove_fd(self._listen.fileno())
        self._listen.close()
        self._acceptor.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
