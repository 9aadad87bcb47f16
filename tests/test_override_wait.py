"""``zoned lend/reclaim --wait``: a hand-over's logged outcome to an exit status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from zoned.cli.commands._override import (
    EXIT_CANCELLED,
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_TIMEOUT,
    _follow,
    ending,
)
from zoned.errors import ControlError

WHAT = "reclaim node 5 from web for batch"


def ev(outcome: str, what: str = WHAT) -> dict[str, Any]:
    return {"event": {"kind": "reclaim", "what": what, "reason": "r", "outcome": outcome}}


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        ("started", None),
        ("evacuate failed: EBUSY; retrying (2/3)", None),
        ("evacuate: the write is still in the kernel after 120s; waiting for it to return", None),
        ("done in 2.3s; 185M migrated, 3M left behind", EXIT_DONE),
        ("gave up after 3 attempts: EBUSY; holding off 30s", EXIT_FAILED),
        ("abandoned: web's cgroup vanished", EXIT_CANCELLED),
        ("abandoned: a container vanished (ENOENT)", EXIT_CANCELLED),
    ],
)
def test_each_logged_outcome_ends_or_not(outcome: str, code: int | None) -> None:
    assert ending(outcome) == code


def test_follows_only_its_own_hand_over_and_stops_at_its_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = iter(
        [
            ev("started"),
            ev("done in 0.1s", what="lend node 3 to web"),  # someone else's
            {"event": {"kind": "note", "what": "no action", "outcome": "noted"}},
            ev("evacuate failed: EBUSY; retrying (2/3)"),
            ev("abandoned: web's cgroup vanished"),
            ev("done in 9s"),  # never read
        ]
    )
    assert _follow(stream, WHAT, 60) == EXIT_CANCELLED
    assert capsys.readouterr().out.splitlines() == [
        f"{WHAT}: evacuate failed: EBUSY; retrying (2/3)",
        f"{WHAT}: abandoned: web's cgroup vanished",
    ]
    assert next(stream) == ev("done in 9s")


def test_a_stream_that_ends_first_is_an_error_and_a_deadline_exit_5() -> None:
    with pytest.raises(ControlError, match="closed the connection before"):
        _follow(iter([ev("started")]), WHAT, 60)

    def late() -> Iterator[dict[str, Any]]:
        yield ev("started")
        raise TimeoutError

    assert _follow(late(), WHAT, 60) == EXIT_TIMEOUT
