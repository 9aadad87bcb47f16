"""The control socket's client: ``zoned status``, ``lend``, ``events``… talk through here.

Kept apart from the server (``zoned.service.control``) so that the client commands
(``status``, ``events``, ``lend``, ``reclaim``, ``reload``) import the standard library and
this, not the event loop, the engine or the backends: they start in tens of milliseconds.

It talks only to a daemon it can trust: the socket's directory and file must belong to
uid 0 or to the caller, and so must the process listening (``SO_PEERCRED``); otherwise
another user could answer in the daemon's place. A busy daemon (listen backlog full:
``EAGAIN`` on connect; or at its connection cap: a ``"busy"`` answer) is retried with a
short back-off for up to ``CONNECT_WAIT_S`` before failing with one line.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoned.errors import ControlError
from zoned.kernel.roots import RUN_DIR

DEFAULT_SOCKET = RUN_DIR / "control.sock"

#: How long a client keeps retrying a busy daemon before it gives up.
CONNECT_WAIT_S = 5.0
_BACKOFF_S = (0.01, 0.02, 0.05, 0.1, 0.2)


def check_trusted(path: Path) -> None:
    """Refuse (ControlError) a socket whose directory or file is owned by a uid other than
    0 or ours. A path we cannot stat is left to connect() to report."""
    trusted = {0, os.geteuid()}
    for p, what in ((path.parent, "directory"), (path, "socket")):
        try:
            st = p.stat()
        except OSError:
            return
        if st.st_uid not in trusted:
            raise ControlError(
                f"{path}: the {what} {p} belongs to uid {st.st_uid}, not root: "
                "refusing to talk to it"
            )


def _check_listener(s: socket.socket, path: Path) -> None:
    raw = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", raw)
    if uid not in (0, os.geteuid()):
        raise ControlError(f"{path}: answered by uid {uid}, not root: refusing to talk to it")


def _connect_once(path: Path, timeout_s: float) -> socket.socket | None:
    """A connected socket, or None when the listen backlog is full (try again)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout_s)
    try:
        s.connect(str(path))
    except BlockingIOError:  # EAGAIN: a unix socket's backlog is full
        s.close()
        return None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        s.close()
        raise ControlError(f"no daemon at {path} (is zoned.service running?)") from exc
    except PermissionError as exc:
        s.close()
        raise ControlError(f"{path}: permission denied (the control socket is root's)") from exc
    except OSError as exc:
        s.close()
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from exc
    try:
        _check_listener(s, path)
    except BaseException:
        s.close()
        raise
    return s


def _lines(s: socket.socket, path: Path) -> Iterator[dict[str, Any]]:
    buf = b""
    while True:
        try:
            data = s.recv(65536)
        except TimeoutError as exc:
            raise ControlError(f"the daemon at {path} did not answer in time") from exc
        except OSError as exc:
            raise ControlError(f"connection to {path} failed: {exc.strerror or exc}") from exc
        if not data:
            if buf.strip():
                raise ControlError(f"the daemon at {path} closed mid-answer")
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ControlError(f"the daemon at {path} sent a bad line: {exc}") from exc
            if not isinstance(obj, dict):
                raise ControlError(f"the daemon at {path} sent a non-object")
            yield obj


def _open(
    path: Path, req: dict[str, Any], timeout_s: float
) -> tuple[socket.socket, dict[str, Any], Iterator[dict[str, Any]]]:
    """Connect, send ``req``, read the first answer, retrying while the daemon is busy.

    Returns the socket, the first answer and the rest of the lines."""
    check_trusted(path)
    line = json.dumps(req).encode() + b"\n"
    give_up = time.monotonic() + CONNECT_WAIT_S
    tries = 0
    why = "its listen backlog is full"
    while True:
        s = _connect_once(path, timeout_s)
        if s is not None:
            refused = False
            try:
                s.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                refused = True  # closed at once (busy): its one-line answer may be there
            except OSError as exc:
                s.close()
                raise ControlError(f"connection to {path} failed: {exc.strerror or exc}") from exc
            lines = _lines(s, path)
            try:
                first = next(lines, None)
            except BaseException:
                s.close()
                raise
            if first is not None and not first.get("busy"):
                return s, first, lines
            s.close()
            if first is None and not refused:
                raise ControlError(f"the daemon at {path} closed without answering")
            why = str(first["error"]) if first is not None else "it closed at once"
        if time.monotonic() >= give_up:
            raise ControlError(
                f"the daemon at {path} is busy ({why}); gave up after {CONNECT_WAIT_S:g} s"
            )
        time.sleep(_BACKOFF_S[min(tries, len(_BACKOFF_S) - 1)])
        tries += 1


def request(path: Path, req: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request, return its response (``{"ok": ..., ...}``). Raises ControlError
    (one line) when no trusted daemon answers."""
    s, first, _ = _open(path, req, timeout_s)
    s.close()
    return first


def follow(
    path: Path,
    req: dict[str, Any],
    *,
    timeout_s: float | None = None,
    until: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Send a streaming request (``events``): yields the first response, then each line.

    ``until``: a ``time.monotonic()`` after which reading the lines raises TimeoutError
    (the first response is read as ever), so a wait on the stream has an end."""
    s, first, lines = _open(path, req, 10.0)
    try:
        yield first
        s.settimeout(timeout_s)
        if until is None:
            yield from lines
            return
        while True:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("the deadline passed")
            s.settimeout(left if timeout_s is None else min(left, timeout_s))
            try:
                obj = next(lines)
            except StopIteration:
                return
            except ControlError:
                if time.monotonic() >= until:  # the recv timed out at the deadline
                    raise TimeoutError("the deadline passed") from None
                raise
            yield obj
    finally:
        s.close()


__all__ = ["CONNECT_WAIT_S", "check_trusted", "follow", "request"]
