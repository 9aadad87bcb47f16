"""Memory sizes as people write them (``768M``, ``2G``, ``1.5GiB``) and as zoned prints them."""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
    "T": 1 << 40,
    "TB": 1 << 40,
    "TIB": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


def parse_size(text: str | int) -> int:
    """Bytes from ``"768M"``, ``"2G"``, ``"1.5GiB"`` or a plain integer (bytes).

    Units are binary (K = 1024). Raises ValueError with the accepted forms, or when the
    number is too large to be a float (never OverflowError).
    """
    if isinstance(text, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    m = _SIZE.match(text)
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a size (write e.g. 512M, 2G, 1.5GiB)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]!r} is too large a size")
    return int(value)


def format_size(n: int | float) -> str:
    """Human size with binary units and at most one decimal: ``512M``, ``1.5G``, ``300K``."""
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit, scale in (("T", 1 << 40), ("G", GIB), ("M", MIB), ("K", KIB)):
        if value >= scale:
            q = value / scale
            text = f"{q:.1f}".rstrip("0").rstrip(".") if q < 100 else f"{q:.0f}"
            return f"{sign}{text}{unit}"
    return f"{sign}{int(value)}B"
