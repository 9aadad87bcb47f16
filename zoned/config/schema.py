"""The JSON Schema of zoned's YAML declarations, generated from ``zoned.config.fields``.

The schema and the parser read the same field table, so they cannot drift; a test checks
that the shipped ``zoned/data/zoned.schema.json`` equals what ``build()`` generates.
Regenerate it with ``python -m zoned.config.schema`` (``--check`` exits 1 when it is stale).

The schema checks each file on its own: a drop-in validates too, as it may hold only
``containers:``. Checks across fields and files (``min`` <= ``max``, duplicate names,
shared nodes that are reserved, nodes the machine lacks) are ``zoned check``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from zoned.config.fields import TOP_FIELDS
from zoned.config.kinds import JSON, section_schema

SCHEMA_PATH = Path(__file__).parent.parent / "data" / "zoned.schema.json"
SCHEMA_ID = "https://github.com/zoned/zoned/blob/main/zoned/data/zoned.schema.json"


def build() -> JSON:
    """The JSON Schema (draft 2020-12) of a zoned main file or drop-in."""
    body = section_schema(TOP_FIELDS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "zoned declarations",
        "description": (
            "A zoned main file (host, policy, containers) or a drop-in in containers.d/"
            " (containers only). Sizes are binary: 768M, 2G, 1.5GiB, or plain bytes;"
            " a count of whole nodes is written {nodes: N}."
        ),
        **body,
    }


def render() -> str:
    """The schema as the shipped file holds it: fields in table order, 2-space indent."""
    return json.dumps(build(), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoned.config.schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output}: stale; run python -m zoned.config.schema", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
