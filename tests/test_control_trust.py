"""Who is on the other end of the control socket (issue 14): the daemon refuses a socket
directory others could write; the client refuses a socket another user could have put
there; ``--group`` counts the groups a peer had at connect(), not what /proc says later."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoned.backends.fdloop import FdLoop
from zoned.errors import ControlError
from zoned.service.client import request
from zoned.service.control import ControlServer, authorize, peer_cred
from zoned.service.metrics import Metrics, serve

NOBODY = 65534


class NoLoop:
    def add_fd(self, fd: int, mask: int, callback: object) -> None:
        pass

    def remove_fd(self, fd: int) -> None:
        pass


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's tmp_path is behind a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="zoned-test-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d)


# -- the daemon's side ---------------------------------------------------------------------


def test_a_missing_socket_directory_is_made_0755(tmp_path: Path) -> None:
    path = tmp_path / "run" / "zoned" / "control.sock"
    old = os.umask(0o002)  # even under a lax umask
    try:
        server = ControlServer(path, NoLoop(), lambda c, r: None)
    finally:
        os.umask(old)
    try:
        assert path.parent.stat().st_mode & 0o777 == 0o755
        assert path.parent.stat().st_uid == os.geteuid()
    finally:
        server.shutdown()


def test_a_socket_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o755)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(ControlError) as err:
        ControlServer(d / "control.sock", NoLoop(), lambda c, r: None)
    assert str(err.value) == (
        f"socket directory {d} is owned by uid {NOBODY}, mode 0755: it must be owned by "
        f"uid {os.geteuid()} and not writable by group or others"
    )
    assert not (d / "control.sock").exists()


@pytest.mark.parametrize("mode", [0o775, 0o777, 0o1777])
def test_a_socket_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "run"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(ControlError, match=f"mode {mode:04o}: it must be owned"):
        ControlServer(d / "control.sock", NoLoop(), lambda c, r: None)


def test_the_metrics_socket_directory_is_checked_too(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o777)
    d.chmod(0o777)
    with pytest.raises(ControlError, match="not writable by group or others"):
        serve(Metrics(), f"unix:{d / 'metrics.sock'}")


# -- the client's side ---------------------------------------------------------------------


def _listener(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(4)
    return s


def test_the_client_refuses_a_directory_of_another_user(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    with _listener(d / "control.sock"):
        os.chown(d, NOBODY, NOBODY)
        with pytest.raises(ControlError, match=f"directory {d} belongs to uid {NOBODY}"):
            request(d / "control.sock", {"cmd": "status"})


def test_the_client_refuses_a_socket_of_another_user(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with _listener(path):
        os.chown(path, NOBODY, NOBODY)
        with pytest.raises(ControlError, match=f"socket {path} belongs to uid {NOBODY}"):
            request(path, {"cmd": "status"})


def test_the_client_refuses_a_listener_of_another_user(public_dir: Path) -> None:
    """The file is root's, but the process listening on it is not (it bound as root,
    then dropped to 65534 before listen(): SO_PEERCRED names the listener)."""
    path = public_dir / "control.sock"
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(path))
            path.chmod(0o666)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s.listen(4)
            os.write(ready_w, b"x")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        with pytest.raises(ControlError, match=f"answered by uid {NOBODY}, not root"):
            request(path, {"cmd": "status"})
    finally:
        os.write(done_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)


# -- --group: the groups of connect() ------------------------------------------------------


def _connect_as_nobody(path: Path, groups: list[int], later: list[int] | None) -> tuple[int, int]:
    """Fork a child that connects as uid 65534 with ``groups``; it then exits (``later``
    None) or, when ``later`` is given, takes those groups and stays until told.
    Returns (pid, the fd that tells it to go)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups(groups)
            os.setgid(NOBODY)
            os.setresuid(NOBODY, NOBODY, 0)  # saved uid 0: it may set groups again
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            if later is not None:
                os.seteuid(0)
                os.setgroups(later)
                os.seteuid(NOBODY)
            os.write(ready_w, b"x")
            if later is not None:
                os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid, go_w


def test_group_membership_is_taken_at_connect_even_when_the_peer_is_gone(
    public_dir: Path,
) -> None:
    path = public_dir / "c.sock"
    with _listener(path) as lsock:
        path.chmod(0o666)
        pid, go = _connect_as_nobody(path, [4242], later=None)
        os.waitpid(pid, 0)  # gone: /proc/PID says nothing now (or another process's)
        os.close(go)
        conn, _ = lsock.accept()
        with conn:
            cred = peer_cred(conn)
    assert cred.uid == NOBODY
    assert authorize(cred, "lend", group=4242) is None
    assert cred.groups == frozenset({4242})


def test_groups_taken_after_connect_do_not_count(public_dir: Path) -> None:
    path = public_dir / "c.sock"
    with _listener(path) as lsock:
        path.chmod(0o666)
        pid, go = _connect_as_nobody(path, [], later=[4242])
        try:
            conn, _ = lsock.accept()
            with conn:
                cred = peer_cred(conn)
            # /proc/PID/status now says Groups: 4242; the connection was made without it
            status = Path(f"/proc/{pid}/status").read_text()
            assert "Groups:\t4242" in status
        finally:
            os.write(go, b"x")
            os.close(go)
            os.waitpid(pid, 0)
    why = authorize(cred, "lend", group=4242)
    assert why == f"lend changes the zone map: allowed to root or group 4242, not to uid {NOBODY}"
    assert cred.groups == frozenset()


def test_the_server_authorizes_with_connect_time_groups(public_dir: Path) -> None:
    loop = FdLoop(workers=1)
    server = ControlServer(public_dir / "c.sock", loop, lambda c, r: {"ok": True}, group=4242)
    try:
        pid, go = _connect_as_nobody(server.path, [4242], later=None)
        os.waitpid(pid, 0)
        os.close(go)
        for _ in range(100):  # each round waits for an fd; it takes one or two
            if server.clients:
                break
            loop.poll_once(5)
        (client,) = server.clients.values()
        assert client.cred.groups == frozenset({4242})
    finally:
        server.shutdown()
        loop.close()
