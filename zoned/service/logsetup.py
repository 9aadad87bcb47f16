"""Where zoned's log lines go: the journal with structured fields under systemd, else stderr.

Under systemd (``JOURNAL_STREAM`` or ``INVOCATION_ID`` in the environment) every record
goes through ``systemd.journal.JournalHandler`` with ``SYSLOG_IDENTIFIER=zoned``; records
of the ``zoned.engine`` logger also carry the decision they report as fields::

    ACTION=lend  CONTAINER=web  NODE=3  DONOR=batch  REASON=...  OUTCOME=started

so ``journalctl -u zoned CONTAINER=web`` lists one container's history. Elsewhere, plain
``HH:MM:SS LEVEL logger: message`` lines on stderr.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping

from zoned.model.actions import DirectedReclaim, Lend, Reclaim, RecordOom, Return, SetTripwire
from zoned.model.decisions import LogRecord

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def under_systemd(env: Mapping[str, str] = os.environ) -> bool:
    """Whether systemd started us (its stream or invocation id is in the environment)."""
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def decision_fields(rec: LogRecord) -> dict[str, str]:
    """Journal fields for one engine decision (upper-case names, string values)."""
    out = {"ACTION": rec.kind, "REASON": rec.reason, "OUTCOME": rec.outcome}
    a = rec.action
    if isinstance(a, Lend):
        out |= {"CONTAINER": a.to, "NODE": str(a.node)}
    elif isinstance(a, Reclaim):
        out |= {"CONTAINER": a.to, "NODE": str(a.node), "DONOR": a.from_}
    elif isinstance(a, Return):
        out |= {"CONTAINER": a.from_, "NODE": str(a.node)}
    elif isinstance(a, DirectedReclaim | SetTripwire | RecordOom):
        out["CONTAINER"] = a.container
    else:
        # admit ("create web on ..."), release ("release web"), gone ("web vanished"),
        # notes ("web: short of memory ..."): the container is the first name-like word.
        words = rec.what.split()
        first = words[1] if words and words[0] in ("create", "release") and len(words) > 1 else ""
        if not first and rec.kind == "gone" and words:
            first = words[0]
        if not first and ":" in rec.reason:
            first = rec.reason.split(":", 1)[0]
        if first and _NAME.match(first):
            out["CONTAINER"] = first
    # The same facts as ``zoned events --json`` (docs/json.md), for journalctl filters.
    out["CODE"] = rec.code
    measured = (
        ("SECONDS", rec.seconds),
        ("MIGRATED_BYTES", rec.migrated),
        ("FREED_BYTES", rec.freed),
        ("LEFT_BEHIND_BYTES", rec.left_behind),
        ("RECLAIMED_BYTES", rec.reclaimed),
    )
    out |= {k: str(v) for k, v in measured if v is not None}
    return out


class DecisionFields(logging.Filter):
    """Attach ``decision_fields`` to ``zoned.engine`` records.

    The engine appends each decision to its log and then logs it, synchronously, so the
    record being emitted is ``latest()`` when its text matches.
    """

    def __init__(self, latest: Callable[[], LogRecord | None]) -> None:
        super().__init__()
        self._latest = latest

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "zoned.engine" or not isinstance(record.args, tuple):
            return True
        rec = self._latest()
        if rec is not None and len(record.args) == 4 and record.args[1] == rec.what:
            for k, v in decision_fields(rec).items():
                setattr(record, k, v)
        return True


def setup(
    level: int = logging.INFO,
    *,
    journal: bool | None = None,
    latest: Callable[[], LogRecord | None] | None = None,
) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones); returns it.

    ``journal=None`` decides by ``under_systemd()``. ``latest`` gives the engine's newest
    decision, for the structured fields.
    """
    handler: logging.Handler
    if journal is None:
        journal = under_systemd()
    if journal:
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER="zoned")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    if latest is not None:
        handler.addFilter(DecisionFields(latest))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
