"""The config fuzz at scale (issue 14): N generated documents through ``zoned.config.load``.

    python bench/config_fuzz.py [--count 10000]

Documents come from ``tests/support/configfuzz.py`` (as the test's do). Counts what each
gave: accepted, refused with a ConfigError, refused with a problem that has no location
(or is not one line), and any other exception (a traceback; the first few are printed).
Exits 1 unless there are no tracebacks and no unlocated problems.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.support.configfuzz import check, documents  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    counts: Counter[str] = Counter()
    shown: list[str] = []

    @settings(
        max_examples=args.count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(documents())
    def run(data: bytes) -> None:
        counts["documents"] += 1
        try:
            outcome = check(data)
        except Exception:  # noqa: BLE001 - the point: count what escapes
            counts["tracebacks"] += 1
            if len(shown) < 3:
                shown.append(traceback.format_exc())
            return
        counts["accepted" if outcome.accepted else "refused"] += 1
        counts["problems"] += outcome.problems
        counts["unlocated"] += len(outcome.unlocated)
        shown.extend(outcome.unlocated[: max(0, 3 - len(shown))])

    run()
    for text in shown:
        print(text)
    print(
        ", ".join(
            f"{k} {counts[k]}"
            for k in ("documents", "accepted", "refused", "problems", "unlocated", "tracebacks")
        )
    )
    return 0 if counts["tracebacks"] == 0 and counts["unlocated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
