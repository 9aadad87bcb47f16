"""Bounded connections to the control socket (issue 14): the cap, root's reserved slots,
idle clients, a full backlog, running out of fds. The server runs on a real FdLoop in a
thread; time for idle clients comes from a clock the test moves."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import running, wait_for
from zoned.backends.fdloop import FdLoop
from zoned.errors import ControlError
from zoned.service import client as controlclient
from zoned.service import control
from zoned.service.client import request
from zoned.service.control import Client, ControlServer
from zoned.service.listening import ACCEPT_PAUSE_S, Acceptor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Served:
    """A ControlServer whose loop thread also calls ``tick()``, as the daemon does."""

    def __init__(self, path: Path, **kw: Any) -> None:
        self.loop = FdLoop(workers=1)
        self.path = path
        self.clock = Clock()
        self.server = ControlServer(path, self.loop, self.handle, clock=self.clock, **kw)
        self.rounds = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def handle(self, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
        if req["cmd"] == "events":
            c.following = True
        return {"ok": True, "result": req["cmd"]}

    def run(self) -> None:
        while not self.stop:
            self.loop.poll_once(0.02)
            self.server.tick()
            self.rounds += 1

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.server.shutdown()
        self.loop.close()

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(self.path))
        return s


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Served] = []

    def build(**kw: Any) -> Served:
        made.append(Served(tmp_path / "c.sock", **kw))
        return made[-1]

    yield build
    for s in made:
        s.close()


def ask(s: socket.socket, cmd: str) -> dict[str, Any]:
    s.sendall(f'{{"cmd": "{cmd}"}}\n'.encode())
    line = s.makefile().readline()
    assert line, "closed without answering"
    answer: dict[str, Any] = json.loads(line)
    return answer


def test_clients_past_the_cap_are_told_busy_and_closed(make: Any) -> None:
    served = make(max_clients=4, root_reserved=0)
    held = [served.connect() for _ in range(4)]
    wait_for(lambda: len(served.server.clients) == 4, "four clients")
    with served.connect() as extra:
        line = extra.makefile().readline()
        assert '"busy": true' in line and "at most 4" in line
        assert extra.recv(1) == b""  # closed: it does not sit in the backlog
    assert served.server.refused == 1
    held.pop().close()
    wait_for(lambda: len(served.server.clients) == 3, "a slot freed")
    assert request(served.path, {"cmd": "status"})["ok"]
    for s in held:
        s.close()


def test_the_client_waits_for_a_slot(make: Any) -> None:
    served = make(max_clients=1, root_reserved=0)
    holder = served.connect()
    wait_for(lambda: len(served.server.clients) == 1, "the holder")
    answers: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: answers.append(request(served.path, {"cmd": "status"})))
    t.start()
    wait_for(lambda: served.server.refused >= 1, "the request refused once")
    holder.close()  # the client retries and gets in
    t.join(10)
    assert answers == [{"ok": True, "result": "status"}]


def _as_nobody_connect(path: Path, result_w: int) -> None:
    """Child: connect as uid 65534 and report the first line (or EOF)."""
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(path))  # no request: a refused client is answered unasked
            os.write(result_w, s.makefile("rb").readline() or b"EOF")
    finally:
        os._exit(0)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's tmp_path is behind a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="zoned-test-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d)


def test_root_keeps_reserved_slots(public_dir: Path) -> None:
    served = Served(public_dir / "c.sock", max_clients=3, root_reserved=1)
    try:
        served.path.chmod(0o666)
        with served.connect(), served.connect():
            wait_for(lambda: len(served.server.clients) == 2, "two root clients")
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                _as_nobody_connect(served.path, w)
            os.close(w)
            os.waitpid(pid, 0)
            line = os.read(r, 65536)
            os.close(r)
            assert b'"busy": true' in line  # two of three taken: the last is root's
            with served.connect() as s:
                assert ask(s, "status")["ok"]  # and root gets it
    finally:
        served.close()


def test_idle_clients_are_closed_followers_are_not(make: Any) -> None:
    served = make(idle_s=30.0)
    idle = served.connect()
    follower = served.connect()
    assert ask(follower, "events")["ok"]
    busy = served.connect()
    wait_for(lambda: len(served.server.clients) == 3, "three clients")
    served.clock.now += 20
    assert ask(busy, "status")["ok"]  # a complete request restarts its 30 s
    served.clock.now += 15  # idle: 35 s; busy: 15 s since its request
    wait_for(lambda: idle.recv(1) == b"", "the idle client closed")
    before = served.rounds
    wait_for(lambda: served.rounds >= before + 3, "three more loop rounds")
    assert ask(busy, "status")["ok"]
    clients = list(served.server.clients.values())
    assert len(clients) == 2 and sum(c.following for c in clients) == 1
    follower.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing to read, and not closed
        follower.recv(1)
    for s in (idle, follower, busy):
        s.close()


def test_tick_says_when_the_next_idle_client_is_due(tmp_path: Path) -> None:
    loop = FdLoop(workers=1)
    clock = Clock()
    server = ControlServer(tmp_path / "c.sock", loop, lambda c, r: None, clock=clock)
    try:
        assert server.tick() is None  # nobody connected: no timed wake-up
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.path))
            loop.poll_once(5)
            clock.now += 10
            assert server.tick() == pytest.approx(control.IDLE_S - 10)
    finally:
        server.shutdown()
        loop.close()


def test_a_hundred_clients_at_once_all_get_answers(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client's wait is made long so a loaded machine cannot fail this; what is tested
    # is that no call fails at once with EAGAIN (a quarter did with backlog 16, no wait).
    monkeypatch.setattr(controlclient, "CONNECT_WAIT_S", 60.0)
    served = make()
    go = threading.Barrier(100)
    answers: list[object] = []

    def one() -> None:
        go.wait()
        try:
            answers.append(request(served.path, {"cmd": "status"})["ok"])
        except ControlError as exc:
            answers.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [True] * 100


class FakeListener:
    """accept() answers from a script: an errno to raise, or a socket to return."""

    def __init__(self, script: list[int | socket.socket]) -> None:
        self.script = script

    def accept(self) -> tuple[socket.socket, None]:
        step = self.script.pop(0) if self.script else errno.EAGAIN
        if isinstance(step, int):
            raise OSError(step, os.strerror(step)) if step != errno.EAGAIN else BlockingIOError()
        return step, None


def test_out_of_fds_sheds_through_the_reserve_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conns = [socket.socketpair() for _ in range(50)]
    script: list[int | socket.socket] = []
    for mine, _ in conns:
        script += [errno.EMFILE, mine]  # each accept fails until the reserve is given up
    acc = Acceptor(FakeListener(script), "test socket")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert acc.accept() == (None, False)  # all shed, nothing left: sleep, no pause
    assert acc.shed == 50
    assert all(theirs.recv(1) == b"" for _, theirs in conns)  # each closed at once
    assert len(caplog.records) == 1  # not 50 lines
    for _, theirs in conns:
        theirs.close()


@pytest.mark.parametrize("err", [errno.ENFILE, errno.ENOMEM, errno.EINVAL, errno.EBADF])
def test_errors_that_would_come_back_pause_instead_of_spinning(err: int) -> None:
    acc = Acceptor(FakeListener([err] * 1000), "test socket")  # type: ignore[arg-type]
    assert acc.accept() == (None, True)


def test_an_error_of_one_connection_skips_it() -> None:
    mine, theirs = socket.socketpair()
    acc = Acceptor(FakeListener([errno.ECONNABORTED, mine]), "test socket")  # type: ignore[arg-type]
    assert acc.accept() == (mine, False)
    mine.close()
    theirs.close()


def test_real_emfile_drains_the_backlog(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With no fd left in the process, waiting clients are closed (EOF), the listening
    socket stops being ready, and one warning is logged, not one per wake-up."""
    loop = FdLoop(workers=1)
    server = ControlServer(tmp_path / "c.sock", loop, lambda c, r: None)
    clients = []
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)  # a client that was not shed fails the test rather than hang it
        s.connect(str(server.path))
        clients.append(s)
    reserve = server._acceptor._reserve
    assert reserve is not None
    fillers = []  # fill every hole below the reserve, so that giving it up frees one fd
    while (fd := os.open(os.devnull, os.O_RDONLY)) < reserve:
        fillers.append(fd)
    os.close(fd)  # now every fd below ``fd`` is open
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd, hard))
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                loop.poll_once(0)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for f in fillers:
            os.close(f)
    try:
        assert [s.recv(1) for s in clients] == [b""] * 20
        assert server._acceptor.shed == 20
        assert not server.clients
        assert len([r for r in caplog.records if "file descriptors" in r.message]) == 1
    finally:
        for s in clients:
            s.close()
        server.shutdown()
        loop.close()


def test_the_daemon_loop_closes_idle_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon drives the server's timeouts: with nothing else happening, a silent
    client is closed at IDLE_S; an ``events`` follower stays."""
    monkeypatch.setattr(control, "IDLE_S", 0.3)
    with (
        running(tmp_path) as r,
        socket.socket(socket.AF_UNIX) as idle,
        socket.socket(socket.AF_UNIX) as follower,
    ):
        idle.settimeout(10)
        idle.connect(str(r.socket))
        follower.settimeout(10)
        follower.connect(str(r.socket))
        assert ask(follower, "events")["ok"]
        assert idle.recv(1) == b""  # waits (at most 10 s) until the daemon closes it
        assert request(r.socket, {"cmd": "status"})["ok"]
        server = r.daemon.server
        assert server is not None
        wait_for(lambda: len(server.clients) == 1, "the status client gone")
        assert [c.following for c in server.clients.values()] == [True]


def test_the_server_stops_watching_while_accept_is_paused(tmp_path: Path) -> None:
    loop = FdLoop(workers=1)
    clock = Clock()
    server = ControlServer(tmp_path / "c.sock", loop, lambda c, r: None, clock=clock)
    listen_fd = server._listen.fileno()
    try:
        server._acceptor = Acceptor(
            FakeListener([errno.ENFILE]),  # type: ignore[arg-type]
            "test socket",
        )
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.path))  # makes the listening socket ready
            loop.poll_once(5)
            assert listen_fd not in loop.watched()  # not woken again and again
            assert server.tick() == pytest.approx(ACCEPT_PAUSE_S)
            clock.now += ACCEPT_PAUSE_S
            assert server.tick() is None
            assert listen_fd in loop.watched()
    finally:
        server.shutdown()
        loop.close()
