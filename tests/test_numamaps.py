"""numa_maps parsing against lines as show_numa_map (fs/proc/task_mmu.c) prints them."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoned.errors import NumaMapsError
from zoned.kernel.numamaps import (
    anon_bytes_by_node,
    file_bytes_by_path,
    parse_line,
    parse_numa_maps,
    read_numa_maps,
    split_vma,
    unescape,
)

# Captured from a 6.18 kernel (cat /proc/self/numa_maps), plus lines with several nodes,
# escapes, hugetlb and a VMA without present pages.
SAMPLE = """\
56487d4d3000 default file=/usr/bin/cat mapped=2 N0=2 kernelpagesize_kB=4
56487d4dd000 default file=/usr/bin/cat anon=1 dirty=1 active=0 N0=1 kernelpagesize_kB=4
5648a0f2e000 default heap anon=33 dirty=33 active=0 N0=33 kernelpagesize_kB=4
7f1c2a000000 bind:2-3 file=/srv/m\\040v2 mapped=300 mapmax=3 N2=100 N3=200 kernelpagesize_kB=4
7f1c3a000000 interleave:1-2 anon=512 dirty=512 N1=256 N2=256 kernelpagesize_kB=4
7f1c4a000000 default file=/dev/hugepages/x huge dirty=2 N4=2 kernelpagesize_kB=2048
7f1c5a000000 default file=/usr/lib/locale/C.utf8/LC_CTYPE
7ffd3c1b0000 default stack anon=9 dirty=9 N0=9 kernelpagesize_kB=4
"""


def test_parse_sample() -> None:
    vmas = parse_numa_maps(SAMPLE)
    assert len(vmas) == 8
    cat = vmas[0]
    assert (cat.start, cat.policy, cat.file, cat.kind) == (
        0x56487D4D3000,
        "default",
        "/usr/bin/cat",
        "file",
    )
    assert cat.nodes == {0: 2} and cat.pages == 2 and cat.file_pages == 2
    assert vmas[1].anon == 1 and vmas[1].file_pages == 0
    assert vmas[2].kind == "heap" and vmas[2].anon == 33
    model = vmas[3]
    assert model.file == "/srv/m v2" and model.mapmax == 3
    assert model.policy == "bind:2-3" and model.bytes_by_node() == {2: 100 * 4096, 3: 200 * 4096}
    assert vmas[4].kind == "anon" and vmas[4].nodes == {1: 256, 2: 256}
    assert vmas[5].huge and vmas[5].page_size == 2 << 20 and vmas[5].bytes_by_node() == {4: 4 << 20}
    assert vmas[6].pages == 0 and vmas[6].nodes == {}
    assert vmas[7].kind == "stack"


def test_unescape() -> None:
    assert unescape("/a\\040b\\011c\\012d\\075e\\134f") == "/a b\tc\nd=e\\f"


def test_split_mixed_file_vma() -> None:
    v = parse_line("7f00 default file=/x anon=25 dirty=25 mapped=100 N0=50 N1=50")
    anon, file = split_vma(v)
    assert sum(anon.values()) == 25 * 4096 and sum(file.values()) == 75 * 4096
    assert anon[0] + file[0] == 50 * 4096


def test_aggregates() -> None:
    vmas = parse_numa_maps(SAMPLE)
    files = file_bytes_by_path(vmas)
    assert files["/usr/bin/cat"] == {0: 2 * 4096}  # the COW-ed page is anon
    assert files["/srv/m v2"] == {2: 100 * 4096, 3: 200 * 4096}
    anon = anon_bytes_by_node(vmas)
    assert anon[0] == (1 + 33 + 9) * 4096 and anon[1] == 256 * 4096


@pytest.mark.parametrize(
    "line", ["", "zz default N0=1", "7f00 default bogus", "7f00 default N0=x", "7f00"]
)
def test_refuses_what_the_kernel_would_not_print(line: str) -> None:
    with pytest.raises(NumaMapsError):
        parse_line(line)


def test_read_gone_and_real(tmp_path: Path) -> None:
    assert read_numa_maps(tmp_path, 4242) is None
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "numa_maps").write_text(SAMPLE)
    assert len(read_numa_maps(tmp_path, 7) or []) == 8
    real = read_numa_maps(Path("/proc"), __import__("os").getpid())
    assert real and any(v.kind == "file" for v in real)
