"""Per-CPU free lists from /proc/zoneinfo (zoned.kernel.zoneinfo), in the kernel's format."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoned.errors import TopologyError
from zoned.kernel.zoneinfo import (
    parse_min_watermarks,
    parse_pcp_free,
    read_min_watermarks,
    read_pcp_free,
)

# Trimmed from a 6.18 kernel's /proc/zoneinfo (2 CPUs); node 1 added in the same format,
# with a Movable zone that has no pagesets (the kernel prints none for an empty zone).
ZONEINFO = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 6590
  pages free     3840
        min      6
  pagesets
    cpu: 0
              count:    0
              high:     0
              batch:    1
  vm stats threshold: 8
    cpu: 1
              count:    0
              high:     0
              batch:    1
  vm stats threshold: 8
  node_unreclaimable:  0
  start_pfn:           1
Node 0, zone   Normal
  pages free     2076408
        min      13107
  pagesets
    cpu: 0
              count:    7820
              high:     8380
              batch:    63
              high_min: 8191
              high_max: 167936
  vm stats threshold: 32
    cpu: 1
              count:    8019
              high:     8317
              batch:    63
              high_min: 8191
              high_max: 167936
  vm stats threshold: 32
  node_unreclaimable:  0
  start_pfn:           1048576
Node 1, zone   Normal
  pages free     60000
  pagesets
    cpu: 0
              count:    100
              high:     2004
    cpu: 1
              count:    28
              high:     2004
Node 1, zone  Movable
  pages free     0
        min      0
"""


def test_counts_add_up_per_node_over_zones_and_cpus() -> None:
    assert parse_pcp_free(ZONEINFO, page_size=4096) == {
        0: (7820 + 8019) * 4096,
        1: (100 + 28) * 4096,
    }


def test_min_watermarks_add_up_per_node_over_zones() -> None:
    """What the kernel keeps free on each node (the tripwire leaves it out, issue 13)."""
    assert parse_min_watermarks(ZONEINFO, page_size=4096) == {0: (6 + 13107) * 4096, 1: 0}


def test_read_min_watermarks_under_the_proc_root(tmp_path: Path) -> None:
    assert read_min_watermarks(tmp_path) == {}
    (tmp_path / "zoneinfo").write_text(ZONEINFO)
    assert read_min_watermarks(tmp_path)[0] > 0
    (tmp_path / "zoneinfo").write_text("        min      5\n" + ZONEINFO)
    with pytest.raises(TopologyError, match="min watermark before any"):
        read_min_watermarks(tmp_path)


def test_a_count_before_any_zone_is_refused() -> None:
    with pytest.raises(TopologyError, match="before any"):
        parse_pcp_free("  pagesets\n    cpu: 0\n              count:    5\n" + ZONEINFO)


def test_read_under_the_proc_root(tmp_path: Path) -> None:
    assert read_pcp_free(tmp_path) == {}  # a tree without zoneinfo says nothing
    (tmp_path / "zoneinfo").write_text(ZONEINFO)
    got = read_pcp_free(tmp_path)
    assert set(got) == {0, 1} and got[1] > 0
    (tmp_path / "zoneinfo").write_bytes(b"Node 0, zone \xff\n")
    with pytest.raises(TopologyError, match="zoneinfo: cannot read"):
        read_pcp_free(tmp_path)


def test_the_live_kernel_has_lists_on_its_nodes() -> None:
    live = Path("/proc/zoneinfo")
    if not live.exists():
        pytest.skip("no /proc/zoneinfo on this machine")
    got = read_pcp_free(Path("/proc"))
    assert got and all(v >= 0 for v in got.values()), got
