"""The JSON documents zoned prints and the envelope every one of them starts with.

Every document (each ``--json`` output, each line of ``zoned events --json``) is an
object whose first key is ``"schema": "zoned/<doc>/v<N>"``; its JSON Schema ships as
``zoned/data/schemas/<doc>.v<N>.json``. ``N`` changes only on a breaking change (a field
removed, renamed, retyped or given another meaning or unit); a new field keeps ``N``, so a
reader ignores fields it does not know. See docs/json.md.
"""

from __future__ import annotations

# Document name -> its version now, and the command (``zoned <command> --json``) printing it.
DOCS: dict[str, tuple[int, str]] = {
    "status": (1, "status"),
    "event": (1, "events"),
    "check": (1, "check"),
    "topology": (1, "topology"),
    "plan": (1, "plan"),
    "usage": (1, "usage"),
    "sharing": (1, "sharing"),
    "shared-warm": (1, "shared warm"),
    "shared-where": (1, "shared where"),
    "shared-mount": (1, "shared mount"),
    "adopt": (1, "adopt"),
    "simulate": (1, "simulate"),
    "demo": (1, "demo"),
}


def schema_id(doc: str) -> str:
    """``zoned/<doc>/v<N>``: the value of the ``schema`` key (KeyError for an unknown doc)."""
    return f"zoned/{doc}/v{DOCS[doc][0]}"


def schema_file(doc: str) -> str:
    """The schema's file name under ``zoned/data/schemas``."""
    return f"{doc}.v{DOCS[doc][0]}.json"


def envelope(doc: str) -> dict[str, str]:
    """The keys a document starts with: ``{"schema": "zoned/<doc>/v<N>"}``."""
    return {"schema": schema_id(doc)}
