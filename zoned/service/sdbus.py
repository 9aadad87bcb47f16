"""systemd's D-Bus API, the few calls zoned makes (jeepney, pure Python).

zoned talks to PID 1 directly on its private socket (``/run/systemd/private``, root only,
what ``systemctl`` uses as root): no bus daemon is needed, so a host without dbus works.
A direct connection has no bus to say ``Hello`` to, so the connection is built without it.

Every call has a deadline (``timeout_s``); a timeout, a refused connection and an error
reply become ``BackendError`` with one bounded line naming the call and the unit.
``SystemdBus`` is the interface the daemon uses; tests inject a fake one.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from zoned.errors import BackendError

#: PID 1's private D-Bus socket (root only); injectable for tests.
PRIVATE_SOCKET = Path("/run/systemd/private")
TIMEOUT_S = 10.0
_DEST = "org.freedesktop.systemd1"
_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_MAX_TEXT = 300


class SystemdBus(Protocol):
    """What zoned asks systemd; each raises BackendError with one line."""

    def active_state(self, unit: str) -> str | None:
        """The unit's ActiveState (``active``, ``failed``, ...); None: not loaded."""
        ...

    def start_scope(self, unit: str, slice_: str, pids: Sequence[int], description: str) -> None:
        """StartTransientUnit of a scope with ``Delegate=yes`` holding ``pids``."""
        ...

    def attach(self, unit: str, subcgroup: str, pids: Sequence[int]) -> None:
        """AttachProcessesToUnit: move ``pids`` into ``subcgroup`` of a delegated unit."""
        ...

    def reset_failed(self, unit: str) -> None: ...

    def close(self) -> None: ...


def _short(text: object) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= _MAX_TEXT else one[: _MAX_TEXT - 3] + "..."


class JeepneyBus:
    """``SystemdBus`` over PID 1's private socket. Connects on the first call."""

    def __init__(self, path: Path = PRIVATE_SOCKET, timeout_s: float = TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._conn: Any = None

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        from jeepney.io.blocking import DBusConnection, prep_socket

        class _Direct(DBusConnection):  # type: ignore[misc]
            """A peer-to-peer connection: no ``Hello`` (there is no bus to greet)."""

            def __init__(self, sock: socket.socket) -> None:
                from jeepney.io.blocking import DBusConnectionBase
                from jeepney.io.common import MessageFilters

                DBusConnectionBase.__init__(self, sock, False)
                self._filters = MessageFilters()

        try:
            sock = prep_socket(str(self.path), False, timeout=self.timeout_s)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"systemd: cannot connect to {self.path}: {_short(exc)}",
                getattr(exc, "errno", None),
            ) from exc
        self._conn = _Direct(sock)
        return self._conn

    def _call(
        self, what: str, method: str, sig: str, body: Any, *, path: str = _PATH,
        iface: str = _MANAGER,
    ) -> Any:  # fmt: skip
        from jeepney import DBusAddress, new_method_call
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg

        conn = self._connect()
        msg = new_method_call(DBusAddress(path, _DEST, iface), method, sig, body)
        try:
            return unwrap_msg(conn.send_and_get_reply(msg, timeout=self.timeout_s))
        except DBusErrorResponse as exc:
            raise BackendError(f"systemd: {what}: {exc.name}: {_short(exc.data)}") from exc
        except TimeoutError as exc:
            self.close()
            raise BackendError(f"systemd: {what}: no answer within {self.timeout_s:g} s") from exc
        except OSError as exc:
            self.close()
            raise BackendError(f"systemd: {what}: {_short(exc)}", exc.errno) from exc

    def active_state(self, unit: str) -> str | None:
        try:
            (obj,) = self._call(f"GetUnit {unit}", "GetUnit", "s", (unit,))
        except BackendError as exc:
            if "NoSuchUnit" in str(exc):
                return None
            raise
        prop = "org.freedesktop.DBus.Properties"
        body = ("org.freedesktop.systemd1.Unit", "ActiveState")
        ((_sig, value),) = self._call(
            f"ActiveState of {unit}", "Get", "ss", body, path=obj, iface=prop
        )
        return str(value)

    def start_scope(self, unit: str, slice_: str, pids: Sequence[int], description: str) -> None:
        props = [
            ("Description", ("s", description)),
            ("Slice", ("s", slice_)),
            ("Delegate", ("b", True)),
            ("PIDs", ("au", [int(p) for p in pids])),
        ]
        self._call(
            f"StartTransientUnit {unit}", "StartTransientUnit", "ssa(sv)a(sa(sv))",
            (unit, "fail", props, []),
        )  # fmt: skip

    def attach(self, unit: str, subcgroup: str, pids: Sequence[int]) -> None:
        self._call(
            f"AttachProcessesToUnit {unit} {subcgroup}", "AttachProcessesToUnit", "ssau",
            (unit, subcgroup, [int(p) for p in pids]),
        )  # fmt: skip

    def reset_failed(self, unit: str) -> None:
        self._call(f"ResetFailedUnit {unit}", "ResetFailedUnit", "s", (unit,))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
