"""Where the configuration lives by default (no YAML import: cheap for every command)."""

from __future__ import annotations

from pathlib import Path

#: The main declarations file; drop-ins are read from ``containers.d/`` beside it.
DEFAULT_PATH = Path("/etc/zoned/zoned.yaml")
