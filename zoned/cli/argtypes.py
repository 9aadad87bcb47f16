"""argparse types for bounded numbers: seconds, rates, speeds.

Each is finite (``inf`` and ``nan`` parse as floats but mean nothing here), above 0 or, where
0 has a meaning (give up at once), from 0, and at most a bound stated per option. A bad value
is argparse's usage error: exit 2 and one line, ``argument --timeout: '-5' is out of
range: ...``, naming the option and the value.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SHOWN = 40  # characters of a refused value quoted back (an argument may be megabytes)

DAY_S = 86400.0


def bounded(unit: str, *, most: float, zero: bool = False) -> Callable[[str], float]:
    """A type: a finite number of ``unit``, more than 0 (with ``zero``, 0 too), at most
    ``most``; anything else raises ``argparse.ArgumentTypeError``."""
    want = f"0 to {most:g} {unit}" if zero else f"more than 0 and at most {most:g} {unit}"

    def parse(text: str) -> float:
        shown = repr(text[:SHOWN]) + ("..." if len(text) > SHOWN else "")
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown} is not a number of {unit}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{shown} is not a finite number of {unit}")
        if v < 0 or (v == 0 and not zero) or v > most:
            raise argparse.ArgumentTypeError(f"{shown} is out of range: expected {want}")
        return v

    parse.__name__ = unit  # argparse names the type by it in its own messages
    return parse


def seconds(*, most: float = DAY_S, zero: bool = False) -> Callable[[str], float]:
    """A type for seconds: finite, more than 0 (with ``zero``, 0 too), at most ``most``
    (a day unless said)."""
    return bounded("seconds", most=most, zero=zero)
