"""Draw a run: who owns each node over time, and each container's memory against its zones.

``plot_run(samples, log, path, title)`` writes a PNG with matplotlib's Agg backend (no
display needed). Top panel: one band per node, coloured by its owner, with the engine's
decisions marked where they happened. Below it, one panel per container: the capacity of
its zones (shaded), its tripwire, everything it holds and the part that cannot be
dropped, with OOM kills marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoned.cli.report import Sample
from zoned.errors import ZonedError
from zoned.model.actions import Lend, Reclaim, Return
from zoned.model.decisions import LogRecord
from zoned.model.sizes import MIB

# matplotlib (with numpy, PIL and fontTools, half of an installed venv) serves only this
# module, so it is the ``plot`` extra; this module is imported only to draw.
PLOT_EXTRA = "the plot needs matplotlib, which is not installed: pip install 'zoned[plot]'"
try:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
except ModuleNotFoundError as exc:
    raise ZonedError(PLOT_EXTRA) from exc

matplotlib.use("Agg")  # no display needed; pyplot picks its backend only when drawing

_FIXED = {
    "free": "#e6e6e6",
    "reserved": "#7f7f7f",
    "shared": "#d9c9a3",
    "unconfined": "#bcbd22",
    "memoryless": "#ffffff",
}
_FIXED_LABELS = {
    "free": "(free: in the pool)",
    "reserved": "(reserved: host and kernel)",
    "shared": "(shared zone)",
    "unconfined": "(every container: no cpusets)",
    "memoryless": "(no memory)",
}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_MARKERS = {
    "lend": ("^", "lent a free node"),
    "reclaim": ("D", "reclaimed a node from another container"),
    "return": ("v", "returned an idle node to the pool"),
    "oom": ("X", "kernel OOM kill (recorded)"),
}


def _colours(containers: Sequence[str]) -> dict[str, str]:
    out = dict(_FIXED)
    for i, name in enumerate(containers):
        out[name] = _PALETTE[i % len(_PALETTE)]
    return out


def plot_run(
    samples: Sequence[Sample],
    log: Sequence[LogRecord],
    path: str | Path,
    *,
    title: str,
    containers: Sequence[str],
    tripwire_pct: float | None = 85.0,
    subtitle: str = "",
    captions: Mapping[str, str] | None = None,
) -> Path:
    """Write the plot to ``path`` (parent directories are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    colours = _colours(containers)
    nodes = sorted({n for s in samples for n in s.owners})
    heights = [max(1.6, 0.38 * len(nodes))] + [1.6] * len(containers)
    fig, axes = plt.subplots(
        1 + len(containers),
        1,
        sharex=True,
        figsize=(12, sum(heights) + 1.6),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    _bands(axes[0][0], samples, log, nodes=nodes, containers=containers, colours=colours)
    for i, name in enumerate(containers, start=1):
        _container(
            axes[i][0],
            samples,
            log,
            name=name,
            col=colours[name],
            tripwire_pct=tripwire_pct,
            legend=i == 1,
            caption=(captions or {}).get(name, name),
        )
    axes[-1][0].set_xlabel("time (s, virtual)")
    axes[-1][0].set_xlim(0, samples[-1].at if samples else 1.0)
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    if subtitle:
        fig.text(0.01, 0.955, subtitle, fontsize=9, ha="left", va="top", color="#333333")
    fig.tight_layout(rect=(0, 0, 1, 0.93 if subtitle else 0.97))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _bands(
    ax: Any,
    samples: Sequence[Sample],
    log: Sequence[LogRecord],
    *,
    nodes: list[int],
    containers: Sequence[str],
    colours: dict[str, str],
) -> None:
    """One band per node coloured by owner, with decision markers on the node they moved."""
    end = samples[-1].at if samples else 1.0
    for row, node in enumerate(nodes):
        start = 0.0
        owner = samples[0].owners.get(node, "?") if samples else "?"
        for s in samples[1:]:
            now = s.owners.get(node, "?")
            if now != owner:
                ax.broken_barh(
                    [(start, s.at - start)], (row - 0.4, 0.8), color=colours.get(owner, "#ccc")
                )
                start, owner = s.at, now
        ax.broken_barh([(start, end - start)], (row - 0.4, 0.8), color=colours.get(owner, "#ccc"))
    ax.set_yticks(range(len(nodes)), [f"node {n}" for n in nodes])
    ax.set_ylim(-0.6, len(nodes) - 0.4)
    ax.invert_yaxis()
    ax.set_title(
        "Who owns each node (one band per fake-NUMA node, coloured by owner; "
        "markers: where the engine decided a move)",
        loc="left",
        fontsize=10,
    )
    row_of = {n: i for i, n in enumerate(nodes)}
    seen: set[str] = set()
    for r in log:
        if r.outcome != "started" or r.kind not in _MARKERS:
            continue
        moved = getattr(r.action, "node", None)
        if isinstance(moved, int) and moved in row_of:
            ax.plot(
                r.at,
                row_of[moved],
                marker=_MARKERS[r.kind][0],
                color="black",
                markersize=8,
                markerfacecolor="white",
                zorder=5,
            )
            seen.add(r.kind)
            ax.annotate(
                _arrow(r.action),
                (r.at, row_of[moved]),
                xytext=(6, -9),
                textcoords="offset points",
                fontsize=7,
                zorder=6,
            )
    owners_seen = {o for s in samples for o in s.owners.values()}
    order = [c for c in containers if c in owners_seen] + [o for o in _FIXED if o in owners_seen]
    handles: list[Patch | Line2D] = [
        Patch(color=colours[o], label=o if o in containers else _FIXED_LABELS[o]) for o in order
    ]
    handles += [
        Line2D(
            [],
            [],
            marker=_MARKERS[k][0],
            color="black",
            markerfacecolor="white",
            linestyle="",
            label=_MARKERS[k][1],
        )
        for k in ("lend", "reclaim", "return")
        if k in seen
    ]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )


def _container(
    ax: Any,
    samples: Sequence[Sample],
    log: Sequence[LogRecord],
    *,
    name: str,
    col: str,
    tripwire_pct: float | None,
    legend: bool,
    caption: str,
) -> None:
    """Capacity (shaded), tripwire, usage and anon of one container; OOM kills marked."""
    times = [s.at for s in samples]
    cap = [s.usage[name].capacity / MIB if name in s.usage else 0.0 for s in samples]
    cur = [s.usage[name].current / MIB if name in s.usage else 0.0 for s in samples]
    anon = [s.usage[name].anon / MIB if name in s.usage else 0.0 for s in samples]
    ax.fill_between(
        times, 0, cap, step="post", color=col, alpha=0.12, label="capacity of its zones"
    )
    ax.step(times, cap, where="post", color=col, linewidth=1.0)
    if tripwire_pct is not None:  # only the engine arms tripwires
        trip = [c * tripwire_pct / 100.0 for c in cap]
        ax.step(
            times,
            trip,
            where="post",
            color=col,
            linewidth=0.8,
            linestyle=":",
            label=f"tripwire ({tripwire_pct:g}% of capacity)",
        )
    ax.plot(times, cur, color=col, linewidth=1.6, label="usage (all it holds)")
    ax.plot(times, anon, color="black", linewidth=1.0, linestyle="--", label="anon (cannot drop)")
    for r in log:
        if r.kind == "oom" and getattr(r.action, "container", None) == name:
            ax.plot(r.at, _value_at(times, cur, r.at), marker="X", color="red", markersize=10)
    ax.set_ylabel(f"{name}\nMiB", fontsize=9)
    ax.set_title(caption, loc="left", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    if legend:
        h, _ = ax.get_legend_handles_labels()
        h.append(Line2D([], [], marker="X", color="red", linestyle="", label="kernel OOM kill"))
        ax.legend(
            handles=h, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
        )


def _arrow(action: object) -> str:
    """Where a move went, in a few characters: ``batch→web``, ``→web``, ``web→pool``."""
    if isinstance(action, Lend):
        return f"→{action.to}"
    if isinstance(action, Reclaim):
        return f"{action.from_}→{action.to}"
    if isinstance(action, Return):
        return f"{action.from_}→pool"
    return ""


def _value_at(times: Sequence[float], values: Sequence[float], at: float) -> float:
    best = 0.0
    for t, v in zip(times, values, strict=True):
        if t > at:
            break
        best = v
    return best
