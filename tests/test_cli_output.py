"""Text output for people: the demo's summary table."""

from __future__ import annotations

from zoned.cli.report import ContainerSummary, format_summary


# -- the demo's summary ----------------------------------------------------------------------


def test_summary_says_how_many_nodes_were_held_at_the_end_and_which() -> None:
    row = ContainerSummary("web", 1 << 30, 1 << 29, 1.0, 0, 2, 1, 0, (3, 4))
    none = ContainerSummary("batch", 0, 0, None, 0, 0, 0, 0, ())
    lines = format_summary([row, none]).splitlines()
    assert lines[0].endswith("held at end")
    assert lines[1].endswith("2 nodes (3-4)") and lines[2].endswith("0 nodes")
