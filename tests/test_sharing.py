"""Recognising sharing from numa_maps on a fake /proc."""

from __future__ import annotations

from pathlib import Path

from zoned.accounting.ownership import Target
from zoned.accounting.sharing import OTHER, SHARED, foreign_files, sharing

# a (node 1) faulted /data/x first; b (node 2) maps it there; both map /data/y from the
# shared zone (node 5); libc sits on node 0 (reserved: nobody's).
MAPS = {
    10: """\
55d000000000 default file=/usr/lib/libc.so.6 mapped=40 mapmax=6 N0=40 kernelpagesize_kB=4
7f0000000000 default file=/data/x mapped=256 mapmax=2 N1=256 kernelpagesize_kB=4
7f1000000000 default file=/data/y mapped=100 mapmax=2 N5=100 kernelpagesize_kB=4
7f2000000000 default heap anon=512 dirty=512 N1=512 kernelpagesize_kB=4
""",
    11: """\
55d000000000 default file=/usr/lib/libc.so.6 mapped=40 mapmax=6 N0=40 kernelpagesize_kB=4
7f0000000000 default file=/data/x mapped=200 mapmax=2 N1=200 kernelpagesize_kB=4
""",
    20: """\
55d000000000 default file=/usr/lib/libc.so.6 mapped=40 mapmax=6 N0=40 kernelpagesize_kB=4
7f0000000000 default file=/data/x mapped=256 mapmax=2 N1=250 N2=6 kernelpagesize_kB=4
7f1000000000 default file=/data/y mapped=100 mapmax=2 N5=100 kernelpagesize_kB=4
7f2000000000 default anon=128 dirty=128 N2=120 N1=8 kernelpagesize_kB=4
""",
}
P = 4096


def fake_proc(tmp: Path) -> Path:
    for pid, text in MAPS.items():
        (tmp / str(pid)).mkdir(parents=True)
        (tmp / str(pid) / "numa_maps").write_text(text)
    return tmp


def test_pairs(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    found = [
        Target("a", frozenset({1}), (10, 11, 99)),  # 99 exited: skipped
        Target("b", frozenset({2}), (20,)),
    ]
    r = sharing(found, frozenset({5}), proc)
    # a: /data/x counted once per container (largest per process: 256), heap 512 pages.
    assert r.own == {"a": (256 + 512) * P, "b": (6 + 120) * P}
    b_on_a = r.between("b", "a")
    assert b_on_a is not None and b_on_a.file == 250 * P and b_on_a.anon == 8 * P
    assert b_on_a.files == (("/data/x", 250 * P),)
    for who in ("a", "b"):
        s = r.between(who, SHARED)
        assert s is not None and s.file == 100 * P and s.files == (("/data/y", 100 * P),)
        other = r.between(who, OTHER)
        assert other is not None and other.file == 40 * P
    assert r.between("a", "b") is None
    assert foreign_files(r) == ["/data/x"]


def test_sharing_command_text(tmp_path: Path) -> None:
    from zoned.cli.commands.sharing import as_json, render

    proc = fake_proc(tmp_path)
    r = sharing([Target("a", frozenset({1}), (10,)), Target("b", frozenset({2}), (20,))],
                frozenset({5}), proc)  # fmt: skip
    text = render(r)
    assert "on a's nodes (file 1000K, anon 32K) — a pays for them: /data/x 1000K" in text
    assert as_json(r)["shares"][0]["owner"] == "(other)"


def test_a_node_held_by_two_containers_is_each_ones_own(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    r = sharing([Target("a", frozenset({1, 2}), (10,)), Target("b", frozenset({1, 2}), (20,))],
                frozenset({5}), proc)  # fmt: skip
    assert r.between("a", "b") is None and r.between("b", "a") is None
