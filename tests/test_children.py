"""The daemon's child processes (zoned.service.children): a cap, a bounded queue, reaped
from the loop without waiting. Real children (sh) on a real FdLoop."""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from zoned.backends.fdloop import FdLoop
from zoned.service.children import Child, Children, Ended


@pytest.fixture
def loop() -> Iterator[FdLoop]:
    with FdLoop(workers=1) as fl:
        yield fl


def _pool(
    loop: FdLoop,
    ended: list[Ended],
    *,
    limit: int = 2,
    queue_max: int = 3,
    max_bytes: int = 1 << 20,
    wanted: Callable[[str], bool] = lambda key: True,
) -> Children:
    return Children(
        loop,
        ended.append,
        name="test",
        limit=limit,
        queue_max=queue_max,
        max_bytes=max_bytes,
        timeout_s=60.0,
        wanted=wanted,
    )


def _sh(script: str, key: str) -> tuple[str, ...]:
    return ("sh", "-c", script, key)  # the key is $0


def _drain(loop: FdLoop, pool: Children, check: Callable[[], None] = lambda: None) -> None:
    def turn() -> bool:
        loop.poll_once(0.5)
        check()
        return not pool.running and not pool.queued

    wait_until(turn, 30, "every child ended")


def _at_most(limit: int, pool: Children) -> None:
    if len(pool.running) > limit:
        pytest.fail(f"{len(pool.running)} children at once, over the cap of {limit}")


def test_at_most_limit_run_the_queue_is_bounded_and_drops_are_logged_once(
    loop: FdLoop, caplog: pytest.LogCaptureFixture
) -> None:
    ended: list[Ended] = []
    pool = _pool(loop, ended)
    keys = [f"k{i}" for i in range(7)]
    with caplog.at_level(logging.WARNING):
        took = [pool.submit(k, _sh('printf %s "$0"', k)) for k in keys]
    assert took == [True] * 5 + [False] * 2
    assert list(pool.running) == ["k0", "k1"] and list(pool.queued) == ["k2", "k3", "k4"]
    drops = [r.getMessage() for r in caplog.records]
    assert drops == ["test: 2 running and 3 queued already: k5 dropped (and any more until one "
                     "is taken)"]  # fmt: skip
    assert pool.submit("k0", _sh("exit 1", "k0"))  # running already: not run twice

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _drain(loop, pool, lambda: _at_most(2, pool))
    assert sorted(e.key for e in ended) == keys[:5]
    assert all(e.rc == 0 and e.out == e.key.encode() for e in ended)
    assert pool.dropped == 2
    assert [r.getMessage() for r in caplog.records] == ["test: 2 dropped while the queue was full"]


def test_a_queued_child_no_longer_wanted_is_not_run(loop: FdLoop) -> None:
    ended: list[Ended] = []
    gone = {"b"}
    pool = _pool(loop, ended, limit=1, wanted=lambda key: key not in gone)
    for k in ("a", "b", "c"):
        pool.submit(k, _sh('printf %s "$0"', k))
    _drain(loop, pool)
    assert [e.key for e in ended] == ["a", "c"]


def _gated(tmp_path: Path) -> tuple[Path, str]:
    """A fifo, and a script that prints, closes its stdout (and stderr, the same pipe), then
    waits on the fifo: the pipe's end comes long before the exit."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    return gate, f'printf %s "$0"; exec >&- 2>&-; read x < {gate}'


def _past_its_output(loop: FdLoop, pool: Children, tmp_path: Path) -> tuple[Path, Child]:
    """Child "a", gated, its output read to the end by the loop."""
    gate, script = _gated(tmp_path)
    pool.submit("a", _sh(script, "a"))
    child = pool.running["a"]
    wait_until(lambda: (loop.poll_once(0.5), child.eof)[1], 30, "the end of its stdout")
    return gate, child


def test_a_child_that_closes_stdout_early_is_reaped_from_the_loop_not_waited_for(
    loop: FdLoop, tmp_path: Path
) -> None:
    ended: list[Ended] = []
    pool = _pool(loop, ended)
    gate, child = _past_its_output(loop, pool, tmp_path)
    # The loop came back with the child alive: nothing waited for it.
    assert child.proc.poll() is None and ended == []
    assert child.pidfd in loop.watched()
    gate.write_text("go\n")
    _drain(loop, pool)
    assert [(e.key, e.rc, e.out) for e in ended] == [("a", 0, b"a")]
    assert loop.watched() == frozenset()  # its pidfd unwatched (and closed)


def test_without_pidfd_the_next_expire_reaps(
    loop: FdLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    ended: list[Ended] = []
    pool = _pool(loop, ended)
    gate, _child = _past_its_output(loop, pool, tmp_path)
    pool.expire()
    assert ended == []  # still running
    gate.write_text("go\n")

    def reaped() -> bool:
        pool.expire()
        return bool(ended)

    wait_until(reaped, 30, "the reap")
    assert [(e.key, e.rc) for e in ended] == [("a", 0)]


def test_too_much_output_is_killed_and_cut(loop: FdLoop) -> None:
    ended: list[Ended] = []
    pool = _pool(loop, ended, max_bytes=4096)
    pool.submit("a", ("yes",))
    _drain(loop, pool)
    assert ended[0].rc == -signal.SIGKILL and len(ended[0].out) == 4096


def test_close_kills_what_runs_and_forgets_the_queue(loop: FdLoop, tmp_path: Path) -> None:
    ended: list[Ended] = []
    pool = _pool(loop, ended, limit=1)
    _gate, script = _gated(tmp_path)
    pool.submit("a", _sh(script, "a"))
    pool.submit("b", _sh(script, "b"))
    proc = pool.running["a"].proc
    pool.close()
    assert proc.returncode == -signal.SIGKILL
    assert ended == [] and "a" not in pool and "b" not in pool
    assert loop.watched() == frozenset()
