"""The control socket: a unix stream socket speaking JSON lines, served from the event loop.

Protocol (one JSON object per line, UTF-8, both ways; a connection may carry several
requests, answered in order):

    → {"cmd": "status", "decisions": 15}
    ← {"ok": true, "result": {...status document...}}
    → {"cmd": "lend", "node": 3, "container": "web"}
    ← {"ok": false, "error": "node 3 is reserved: never lent"}
    → {"cmd": "reclaim", "node": 3}
    → {"cmd": "reload"}
    → {"cmd": "events", "history": 10}
    ← {"ok": true, "result": {"following": true}}   then one {"event": {...}} per decision

``lend``, ``reclaim`` and ``reload`` change things: they are allowed to uid 0 and, when
configured, to members of one group (checked with ``SO_PEERCRED`` and the peer's
supplementary groups). The socket file is mode 0600 (0660 with that group).

Nothing here blocks the loop: sockets are non-blocking; a client's output is buffered and
sent as the socket accepts it; a client that lets more than ``MAX_OUTPUT`` bytes pile up
(a stalled ``zoned events`` reader) is disconnected, and a request line longer than
``MAX_LINE`` closes the connection. A request nested deeper than ``MAX_DEPTH`` is refused
before it is parsed (the JSON parser recurses), and an error in a handler is logged and
answered: no request ends the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zoned.backends.fdloop import IN, FdCallback
from zoned.errors import ControlError
from zoned.kernel.roots import PROC_ROOT
from zoned.model.host import Event

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_OUTPUT = 4 * 1024 * 1024
MAX_DEPTH = 16  # of arrays and objects in a request (a request needs 1 or 2)
MUTATING = frozenset({"lend", "reclaim", "reload"})
_OUT = 0x004  # EPOLLOUT


class FdHost(Protocol):
    """Where the server's fds are watched (an FdLoop, or the paced simulator)."""

    def add_fd(self, fd: int, mask: int, callback: FdCallback) -> None: ...

    def remove_fd(self, fd: int) -> None: ...


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_cred(sock: socket.socket) -> PeerCred:
    """The connecting process's credentials as the kernel saw them at connect()."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid, uid, gid)


def _groups_of(pid: int, proc_root: Path) -> frozenset[int]:
    try:
        text = (proc_root / str(pid) / "status").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("Groups:"):
            return frozenset(int(g) for g in line.split()[1:])
    return frozenset()


def authorize(
    cred: PeerCred,
    cmd: str,
    *,
    group: int | None = None,
    proc_root: Path = PROC_ROOT,
) -> str | None:
    """Why ``cred`` may not run ``cmd`` (None: it may). Reading is open to anyone who can
    connect; changing needs uid 0 or membership of ``group``."""
    if cmd not in MUTATING or cred.uid == 0:
        return None
    if group is not None and (cred.gid == group or group in _groups_of(cred.pid, proc_root)):
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

    @property
    def fd(self) -> int:
        return self.sock.fileno()


def clear_stale_socket(path: Path) -> None:
    """Make room for a socket at ``path``: nothing there is fine; a socket of this user's
    that nobody listens on (left by a daemon that died) is removed. Anything else is
    refused with a ControlError and left alone: a file that is not a socket (a symlink
    included: it is not followed), another user's socket, or one that answers."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"{path} exists and is not a socket (refusing to replace it)")
    if st.st_uid != os.geteuid():
        raise ControlError(f"{path} is uid {st.st_uid}'s socket (refusing to replace it)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale: left by a daemon that died
    else:
        raise ControlError(f"another zoned is listening on {path}")
    finally:
        probe.close()


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
        proc_root: Path = PROC_ROOT,
    ) -> None:
        self.path = path
        self._host = host
        self._handler = handler
        self.group = group
        self._proc_root = proc_root
        self.clients: dict[int, Client] = {}
        self._listen = self._bind(path, group)
        host.add_fd(self._listen.fileno(), IN, self._on_accept)

    @staticmethod
    def _bind(path: Path, group: int | None) -> socket.socket:
        path.parent.mkdir(parents=True, exist_ok=True)
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
        s.listen(16)
        s.setblocking(False)
        return s

    # -- loop callbacks ------------------------------------------------------------------

    def _on_accept(self, revents: int) -> list[Event]:
        while True:
            try:
                conn, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return []
            except OSError as exc:
                log.warning("control socket accept: %s, ignoring", exc)
                return []
            conn.setblocking(False)
            try:
                cred = peer_cred(conn)
            except OSError as exc:
                log.warning("control socket: no peer credentials (%s), closing", exc)
                conn.close()
                continue
            c = Client(conn, cred)
            self.clients[c.fd] = c
            self._host.add_fd(c.fd, IN, self._callback(c))

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
        why = authorize(c.cred, req["cmd"], group=self.group, proc_root=self._proc_root)
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
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
