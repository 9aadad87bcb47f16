"""The control socket's client side: one request, or a followed stream (``zoned events``).

Kept apart from the server (``zoned.service.control``) so that the client commands
(``status``, ``events``, ``lend``, ``reclaim``, ``reload``) import the standard library and
this, not the event loop, the engine or the backends: they start in tens of milliseconds.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoned.errors import ControlError
from zoned.kernel.roots import RUN_DIR

DEFAULT_SOCKET = RUN_DIR / "control.sock"


def _connect(path: Path, timeout_s: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout_s)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        s.close()
        raise ControlError(f"no daemon at {path} (is zoned.service running?)") from exc
    except PermissionError as exc:
        s.close()
        raise ControlError(f"{path}: permission denied (the control socket is root's)") from exc
    except OSError as exc:
        s.close()
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from exc
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


def request(path: Path, req: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request, return its response (``{"ok": ..., ...}``). Raises ControlError
    when no daemon answers."""
    with _connect(path, timeout_s) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        for obj in _lines(s, path):
            return obj
    raise ControlError(f"the daemon at {path} closed without answering")


def follow(
    path: Path, req: dict[str, Any], *, timeout_s: float | None = None
) -> Iterator[dict[str, Any]]:
    """Send a streaming request (``events``): yields the first response, then each line."""
    s = _connect(path, 10.0)
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
        s.settimeout(timeout_s)
        yield from _lines(s, path)
    finally:
        s.close()
