"""Config fuzz (issue 14): generated documents load or give ConfigError, never another
exception, and every problem is located on one line. ZONED_FUZZ_EXAMPLES scales the run
(bench/config_fuzz.py runs 10,000 and counts)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings

from tests.support.configfuzz import check, documents

EXAMPLES = int(os.environ.get("ZONED_FUZZ_EXAMPLES", "1000"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(documents())
def test_generated_documents_never_give_a_traceback(data: bytes) -> None:
    outcome = check(data)
    assert outcome.unlocated == ()
