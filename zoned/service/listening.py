"""Where and how the daemon listens: safe socket directories, stale sockets, and accepting
when file descriptors run out.

Shared by the control socket and the metrics server, so both refuse the same unsafe paths
and neither spins when ``accept`` fails.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

from zoned.errors import ControlError

log = logging.getLogger(__name__)

#: listen(2) backlog of the daemon's sockets. Clients are accepted (or refused) at once, so
#: this only has to absorb a burst between two loop rounds (100 `zoned status` at once).
LISTEN_BACKLOG = 128
#: How long a listening socket is left unwatched when accept fails for lack of memory or
#: fds and the reserve fd could not shed the connection (see Acceptor).
ACCEPT_PAUSE_S = 0.5
#: At most one warning per this many seconds for each kind of accept trouble.
WARN_EVERY_S = 10.0


def prepare_socket_dir(path: Path) -> None:
    """Create the directory of socket ``path`` (mode 0755) if missing, then refuse it
    (ControlError, one line naming dir, owner and mode) unless it is owned by this euid
    and not writable by group or others: whoever can write there can put an impostor
    socket in the daemon's place."""
    d = path.parent
    try:
        d.mkdir(mode=0o755, parents=True, exist_ok=True)  # umask can only take bits away
        st = d.stat()
    except OSError as exc:
        raise ControlError(f"socket directory {d}: {exc.strerror or exc}") from exc
    euid = os.geteuid()
    if st.st_uid != euid or st.st_mode & 0o022:
        raise ControlError(
            f"socket directory {d} is owned by uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):04o}: it must be owned by uid {euid} and not "
            "writable by group or others"
        )


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


class Warner:
    """log.warning at most once per ``every_s``; the next one says how many were held back
    (a flood of the same failure must not flood the journal)."""

    def __init__(self, every_s: float = WARN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._every = every_s
        self._clock = clock
        self._next = float("-inf")
        self.held = 0  # warnings not logged since the last one that was

    def warn(self, msg: str) -> None:
        now = self._clock()
        if now < self._next:
            self.held += 1
            return
        if self.held:
            msg += f" ({self.held} more like it in the last {self._every:g} s)"
        log.warning("%s", msg)
        self.held = 0
        self._next = now + self._every


# Errors that end only the connection being accepted (accept(2): Linux passes pending
# network errors of the new socket on to accept; EPERM: a firewall rule). Any other error
# (out of memory or fds, EINVAL, EBADF) would come back on the next call: pause instead.
_THIS_CONNECTION = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)


class Acceptor:
    """``accept`` on a non-blocking listening socket that never busy-loops.

    The loops are level-triggered: a connection left in the backlog wakes them again at
    once. When accept fails because this process has no fd left (EMFILE), the reserve fd
    is closed, the waiting connection accepted and closed at once (its client sees EOF, not
    a hang), and the reserve re-opened: the backlog drains and the loop sleeps. When that
    is not possible (ENFILE: the whole system is out; no memory; any error that would only
    come back), the caller stops watching the socket for ``ACCEPT_PAUSE_S``. We chose the
    reserve fd over a pause alone because a pause leaves every waiting client hanging and
    wakes again into the same full backlog.
    """

    def __init__(self, sock: socket.socket, what: str, clock: Callable[[], float] = time.monotonic):
        self.sock = sock
        self.what = what
        self._reserve: int | None = self._open_reserve()
        self.shed = 0  # connections closed unserved for lack of fds
        self._warn = Warner(clock=clock)

    @staticmethod
    def _open_reserve() -> int | None:
        try:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def accept(self) -> tuple[socket.socket | None, bool]:
        """(the next waiting connection, False), or (None, pause): None when there is
        nothing to accept now; pause True when the caller must stop watching the socket
        for ``ACCEPT_PAUSE_S``."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return None, False
            except OSError as exc:
                if exc.errno == errno.EMFILE:
                    shed = self._shed_one()
                    if shed is None:
                        return None, False  # the backlog emptied meanwhile
                    if shed:
                        continue
                if exc.errno in _THIS_CONNECTION:
                    self._warn.warn(f"{self.what}: accept: {exc.strerror}, ignoring")
                    continue
                self._warn.warn(
                    f"{self.what}: accept: {exc.strerror or exc}; not accepting for "
                    f"{ACCEPT_PAUSE_S:g} s ({self.shed} connections shed so far)"
                )
                return None, True
            conn.setblocking(False)
            return conn, False

    def _shed_one(self) -> bool | None:
        """Use the reserve fd to accept one connection and close it: True if done, None if
        no connection was waiting any more, False if we could not (no reserve, or another
        thread took the fd meanwhile)."""
        if self._reserve is None:
            self._reserve = self._open_reserve()
            return False
        os.close(self._reserve)
        self._reserve = None
        try:
            conn, _ = self.sock.accept()
        except OSError as exc:
            self._reserve = self._open_reserve()
            return None if isinstance(exc, BlockingIOError | InterruptedError) else False
        conn.close()  # before re-opening the reserve: its fd is the one we just freed
        self._reserve = self._open_reserve()
        self.shed += 1
        self._warn.warn(f"{self.what}: out of file descriptors, closed a new connection unserved")
        return True

    def close(self) -> None:
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
