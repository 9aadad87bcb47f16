"""Validate a document zoned printed against the JSON Schema its ``schema`` key names.

The schemas are read as the installed package ships them (``zoned/data/schemas``), so a
test that passes here also proves the file is in the package data.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema

from zoned.model.jsondoc import DOCS, schema_file, schema_id

SCHEMAS = files("zoned") / "data" / "schemas"


def load_schema(doc: str) -> dict[str, Any]:
    """The shipped schema of document ``doc`` (e.g. ``"status"``)."""
    out: dict[str, Any] = json.loads((SCHEMAS / schema_file(doc)).read_text())
    return out


def validate(doc: dict[str, Any]) -> dict[str, Any]:
    """Check ``doc`` against the schema its ``schema`` key names; return it (for chaining).

    Fails (jsonschema.ValidationError) on any field the schema does not allow, any
    missing field, and any value of another type."""
    sid = doc.get("schema")
    names = [name for name in DOCS if schema_id(name) == sid]
    assert names, f"document names no known schema: {sid!r}"
    jsonschema.Draft202012Validator(load_schema(names[0])).validate(doc)
    return doc


def parse(text: str) -> dict[str, Any]:
    """``json.loads`` then ``validate``: the one way tests read a ``--json`` output."""
    doc: dict[str, Any] = json.loads(text)
    return validate(doc)
