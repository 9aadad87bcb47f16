"""Hints under ``/run/zoned``: why and since when each node has its owner.

The kernel's cgroup tree is the source of truth for who holds which node; this file only
keeps what the tree cannot say (the reason and the time of each assignment), so a
restarted daemon can still explain its map. It is never required: a missing, unreadable,
corrupt or foreign file is logged and ignored, and a start never fails because of it
(kubelet's CPU-manager checkpoint that refused restarts, kubernetes#113130, is the
mistake to avoid). Writes are atomic (temporary file + rename) and skipped when the map
did not change.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from zoned.model.hints import Hint
from zoned.model.zonemap import ZoneMap

log = logging.getLogger(__name__)

VERSION = 1
FILENAME = "state.json"


def save(state_dir: Path, zonemap: ZoneMap, *, engine_now: float, wall_now: float) -> bool:
    """Write the map's reasons and times; returns False (logged) if it could not."""
    nodes = {
        str(a.node): {
            "owner": str(a.owner),
            "reason": a.reason,
            "since": round(wall_now - (engine_now - a.since), 3),
        }
        for a in zonemap
    }
    doc = {"version": VERSION, "pid": os.getpid(), "written": wall_now, "nodes": nodes}
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=state_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        Path(tmp).replace(state_dir / FILENAME)
    except OSError as exc:
        log.warning("cannot write hints under %s: %s, ignoring", state_dir, exc)
        return False
    return True


def load(state_dir: Path) -> dict[int, Hint]:
    """The hints of the previous run; empty (logged) when missing or not usable."""
    path = state_dir / FILENAME
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        log.info("no hints at %s (first start since boot)", path)
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("hints at %s are unreadable (%s), ignoring them", path, exc)
        return {}
    out: dict[int, Hint] = {}
    try:
        if doc.get("version") != VERSION:
            log.warning("hints at %s have version %r, ignoring them", path, doc.get("version"))
            return {}
        for node, h in doc["nodes"].items():
            out[int(node)] = Hint(str(h["owner"]), str(h["reason"]), float(h["since"]))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("hints at %s are malformed (%r), ignoring them", path, exc)
        return {}
    return out
