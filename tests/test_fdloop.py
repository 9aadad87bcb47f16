"""FdLoop with real eventfds, pipes and sockets, and slow fake operations.

No sleeps: slow operations block on threading.Events the test releases; the only timed
waits are deadlines under test, kept short, and generous upper bounds that are never
reached when the code is right.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from zoned.backends.fdloop import ERR, IN, PRI, FdLoop, Outcome
from zoned.errors import WriteRefused
from zoned.model.host import Event, EventKind, OpKind

LONG = 10.0  # an upper bound that only a broken loop reaches


@pytest.fixture
def loop() -> Iterator[FdLoop]:
    lp = FdLoop(workers=1)
    yield lp
    lp.close()


def _eventfd_source(lp: FdLoop, name: str) -> int:
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def ready(revents: int) -> list[Event]:
        n = os.eventfd_read(efd)  # consume: level-triggered
        return [Event(EventKind.PRESSURE, lp.now(), container=name, value=n)]

    lp.add_fd(efd, IN, ready)
    return efd


def test_eventfd_source_wakes_wait(loop: FdLoop) -> None:
    efd = _eventfd_source(loop, "web")
    try:
        os.eventfd_write(efd, 3)
        events = loop.wait(LONG)
        assert [(e.kind, e.container, e.value) for e in events] == [(EventKind.PRESSURE, "web", 3)]
        assert loop.wait(0) == []  # consumed
    finally:
        loop.remove_fd(efd)
        os.close(efd)


def test_pipe_source_and_post_from_another_thread(loop: FdLoop) -> None:
    r, w = os.pipe()

    def ready(revents: int) -> list[Event]:
        data = os.read(r, 100)
        return [Event(EventKind.OOM, loop.now(), container="db", detail=data.decode())]

    loop.add_fd(r, IN, ready)
    try:
        os.write(w, b"x")
        assert [e.detail for e in loop.wait(LONG)] == ["x"]
        t = threading.Thread(target=loop.post, args=(Event(EventKind.GONE, 0.0, "old"),))
        t.start()
        t.join()
        assert [e.kind for e in loop.wait(LONG)] == [EventKind.GONE]
    finally:
        loop.remove_fd(r)
        os.close(r)
        os.close(w)


def test_priority_data_is_epollpri(loop: FdLoop) -> None:
    """POLLPRI, as cgroup notification files and PSI triggers signal, from TCP urgent data."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    seen: list[int] = []

    def ready(revents: int) -> list[Event]:
        seen.append(revents)
        conn.recv(1, socket.MSG_OOB)  # consume the urgent byte
        return [Event(EventKind.TRIPWIRE, loop.now(), container="c")]

    loop.add_fd(conn.fileno(), PRI, ready)
    try:
        assert loop.wait(0) == []
        cli.send(b"!", socket.MSG_OOB)
        assert [e.kind for e in loop.wait(LONG)] == [EventKind.TRIPWIRE]
        assert seen[0] & PRI
    finally:
        loop.remove_fd(conn.fileno())
        for s in (conn, cli, srv):
            s.close()


def test_wait_without_events_polls_once_per_timeout(loop: FdLoop) -> None:
    rounds: list[float] = []
    real = loop._epoll_wait

    def counting(timeout: float) -> list[tuple[int, int]]:
        rounds.append(timeout)
        return real(timeout)

    loop._epoll_wait = counting  # type: ignore[method-assign]
    t0 = loop.now()
    assert loop.wait(0.05) == []
    assert loop.now() - t0 >= 0.05
    # one blocking round (epoll may return a hair early; then one more, never a tick loop)
    assert 1 <= len(rounds) <= 2
    assert rounds[0] > 0.04  # the whole remaining timeout, not a short tick
    rounds.clear()
    assert loop._poll_timeout(None) == -1.0  # nothing pending: block forever


def test_op_finishes_as_event_and_result_is_taken_once(loop: FdLoop) -> None:
    op = loop.submit(
        OpKind.SET_NODES, "web", lambda: Outcome(nodes=frozenset({2}), left_behind=4096), LONG
    )
    events = loop.wait(LONG)
    assert [(e.kind, e.op, e.ok, e.container) for e in events] == [
        (EventKind.OP_FINISHED, op, True, "web")
    ]
    res = loop.op_result(op)
    assert (res.op, res.kind, res.nodes, res.left_behind, res.ok) == (
        op,
        OpKind.SET_NODES,
        frozenset({2}),
        4096,
        True,
    )
    assert res.seconds >= 0
    with pytest.raises(KeyError):
        loop.op_result(op)
    assert loop.pending() == frozenset()


def test_refused_write_and_oserror_become_failed_results(loop: FdLoop) -> None:
    def refused() -> Outcome:
        raise WriteRefused("write '' to cpuset.mems: refused (ENOSPC)", errno.ENOSPC)

    def oserr() -> Outcome:
        raise OSError(errno.EINVAL, "Invalid argument")

    a = loop.submit(OpKind.SET_NODES, "a", refused, LONG)
    b = loop.submit(OpKind.RECLAIM, "b", oserr, LONG)
    got: dict[int, Event] = {}
    while len(got) < 2:
        got.update({e.op: e for e in loop.wait(LONG) if e.op is not None})
    assert (got[a].ok, got[a].errno) == (False, errno.ENOSPC)
    assert (got[b].ok, got[b].errno) == (False, errno.EINVAL)
    assert "ENOSPC" in loop.op_result(a).error


def test_stuck_op_times_out_fd_events_still_flow_and_late_result_is_logged(
    loop: FdLoop, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()
    release = threading.Event()

    def stuck() -> Outcome:
        started.set()
        release.wait(LONG)  # a cpuset.mems write migrating pages, say
        return Outcome(nodes=frozenset({1}))

    op = loop.submit(OpKind.SET_NODES, "web", stuck, 0.2)
    assert started.wait(LONG)
    # While the worker is stuck, other sources are served at once.
    efd = _eventfd_source(loop, "db")
    try:
        os.eventfd_write(efd, 1)
        assert [e.container for e in loop.wait(LONG)] == ["db"]
    finally:
        loop.remove_fd(efd)
        os.close(efd)
    t0 = loop.now()
    events = loop.wait(LONG)
    assert [(e.op, e.ok, e.errno) for e in events] == [(op, False, errno.ETIMEDOUT)]
    assert loop.now() - t0 < LONG / 2
    res = loop.op_result(op)
    assert "timed out" in res.error
    assert res.seconds >= 0.2

    # The pool replaced the stuck worker: a new op runs although workers=1.
    op2 = loop.submit(OpKind.RECLAIM, "db", lambda: Outcome(reclaimed=10), LONG)
    assert [(e.op, e.ok) for e in loop.wait(LONG)] == [(op2, True)]
    assert loop.op_result(op2).reclaimed == 10

    # The stuck write ends late: logged, kept, and reported again with its real outcome
    # (the engine waits for a write still in the kernel before it writes again).
    release.set()
    late: list[Event] = []
    while not late:
        late = loop.poll_once(LONG)
    assert [(e.kind, e.op, e.ok) for e in late] == [(EventKind.OP_FINISHED, op, True)]
    assert loop.late[0].result.op == op
    assert loop.late[0].result.ok
    assert "after its deadline" in caplog.text
    assert loop.op_result(op).ok


def test_op_queued_past_its_deadline_never_runs(loop: FdLoop) -> None:
    started = threading.Event()
    release = threading.Event()
    ran = threading.Event()

    def blocker() -> Outcome:
        started.set()
        release.wait(LONG)
        return Outcome()

    def second() -> Outcome:
        ran.set()
        return Outcome()

    first = loop.submit(OpKind.SET_NODES, "a", blocker, LONG)
    assert started.wait(LONG)
    queued = loop.submit(OpKind.SET_NODES, "b", second, 0.05)
    events = loop.wait(LONG)
    assert [(e.op, e.errno) for e in events] == [(queued, errno.ETIMEDOUT)]
    assert "still queued" in loop.op_result(queued).error
    release.set()
    assert [(e.op, e.ok) for e in loop.wait(LONG)] == [(first, True)]
    assert not ran.is_set()


def test_bug_in_op_is_reported_failed_and_pool_survives(
    loop: FdLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooked: list[type[BaseException] | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: hooked.append(a.exc_type))

    def buggy() -> Outcome:
        raise ZeroDivisionError

    op = loop.submit(OpKind.RECLAIM, "x", buggy, LONG)
    assert [(e.op, e.ok) for e in loop.wait(LONG)] == [(op, False)]
    op2 = loop.submit(OpKind.RECLAIM, "x", Outcome, LONG)
    assert [(e.op, e.ok) for e in loop.wait(LONG)] == [(op2, True)]
    assert hooked == [ZeroDivisionError]


def test_callback_may_remove_itself_and_others_in_one_round(loop: FdLoop) -> None:
    a = os.eventfd(1, os.EFD_NONBLOCK)
    b = os.eventfd(1, os.EFD_NONBLOCK)
    calls: list[str] = []

    def on_a(revents: int) -> list[Event]:
        calls.append("a")
        loop.remove_fd(a)
        loop.remove_fd(b)  # b is ready in this round too: it must not be called
        return [Event(EventKind.GONE, loop.now(), "a")]

    def on_b(revents: int) -> list[Event]:
        calls.append("b")
        loop.remove_fd(a)
        loop.remove_fd(b)
        return [Event(EventKind.GONE, loop.now(), "b")]

    loop.add_fd(a, IN | ERR, on_a)
    loop.add_fd(b, IN, on_b)
    try:
        assert len(loop.wait(LONG)) == 1
        assert len(calls) == 1
        assert loop.watched() == frozenset()
        assert loop.wait(0) == []
    finally:
        os.close(a)
        os.close(b)


def test_register_twice_and_close(loop: FdLoop) -> None:
    efd = os.eventfd(0)
    try:
        loop.add_fd(efd, IN, lambda r: [])
        with pytest.raises(ValueError, match="already"):
            loop.add_fd(efd, IN, lambda r: [])
        loop.remove_fd(efd)
        loop.remove_fd(efd)  # unknown: ignored
    finally:
        os.close(efd)
    loop.close()
    loop.close()
    with pytest.raises(RuntimeError):
        loop.submit(OpKind.RECLAIM, "x", Outcome, 1.0)
