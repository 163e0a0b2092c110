"""The report's figures as inline SVG: pure functions from tables to SVG text (matplotlib, no pyplot).

Deterministic: a fixed `svg.hashsalt`, text kept as text (`svg.fonttype = 'none'`: smaller, and
the page's font renders it), no date or creator metadata; every id inside a figure is prefixed with
the figure's name so that several figures can share one HTML page. No raster images: heat maps are
vector quads, so the file stays small and prints sharply.
"""

from __future__ import annotations

import colorsys
import html
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import cbook
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

RC: dict[str, Any] = {
    "svg.hashsalt": "harness-report",
    "svg.fonttype": "none",
    "svg.image_inline": True,
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "path.simplify": True,
    "lines.linewidth": 1.2,
}

# Okabe-Ito first (colour-blind safe), then tab20 for challenges with many algorithms.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@contextmanager
def _style() -> Iterator[None]:
    """The report's matplotlib settings, for drawing and for saving (the hash salt is read then)."""
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        yield


def algorithm_colors(algorithms: Sequence[str]) -> dict[str, str]:
    """A fixed colour per algorithm, in the given (rank) order, every one distinct: Okabe-Ito, then
    tab20, then hues a golden angle apart at alternating lightness (no colour repeats at 50)."""
    palette = list(_PALETTE) + [matplotlib.colors.to_hex(c)
                                for c in matplotlib.colormaps["tab20"].colors]  # type: ignore[attr-defined]
    k = 0
    while len(palette) < len(algorithms):
        hue = (0.13 + k * 0.381966) % 1.0  # the golden angle, as a fraction of the circle
        lightness = (0.35, 0.55, 0.7)[k % 3]
        color = matplotlib.colors.to_hex(colorsys.hls_to_rgb(hue, lightness, 0.65))
        if color not in palette:
            palette.append(color)
        k += 1
    return {name: palette[i] for i, name in enumerate(algorithms)}


def to_svg(fig: Figure, *, prefix: str, title: str) -> str:
    """The figure as an inline `<svg>` element: no XML prolog or metadata, ids prefixed with
    `prefix`, `title` as its accessible name."""
    buf = io.StringIO()
    with _style():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = _compact(text)
    ids = re.findall(r'\bid="([^"]+)"', text)
    if ids:
        names = "|".join(re.escape(i) for i in sorted(set(ids), key=len, reverse=True))
        text = re.sub(rf'(\bid="|url\(#|href="#)({names})(["\)])', lambda m: f"{m[1]}{prefix}-{m[2]}{m[3]}", text)
    opening = re.search(r"<svg [^>]*>", text)
    assert opening is not None  # matplotlib always writes one
    head = opening[0].replace("<svg ", '<svg class="figure" role="img" ', 1)
    text = f"{text[:opening.start()]}{head}\n<title>{html.escape(title)}</title>{text[opening.end():]}"
    return text.strip() + "\n"


_GEOMETRY = re.compile(r'\b(d|x|y|transform|width|height|viewBox)="([^"]*)"')
_DECIMALS = re.compile(r"-?\d+\.\d{3,}")


def _round(match: re.Match[str]) -> str:
    text = f"{float(match[0]):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _compact(text: str) -> str:
    """Smaller SVG, same picture: drop ids nothing refers to (matplotlib names every group),
    coordinates to 0.01 pt, no indentation, no no-op rotations, no empty groups."""
    used = set(re.findall(r'(?:url\(#|href="#)([^")]+)', text))
    text = re.sub(r'\s\bid="([^"]+)"', lambda m: m[0] if m[1] in used else "", text)
    text = re.sub(r'\s*transform="rotate\(-?0 [^"]*\)"', "", text)
    text = re.sub(r"\s*\n\s*", " ", text)
    text = _GEOMETRY.sub(lambda m: f'{m[1]}="{_DECIMALS.sub(_round, m[2]).strip()}"', text)
    text = re.sub(r">\s+<", "><", text)
    while "<g></g>" in text:
        text = text.replace("<g></g>", "")
    return text


def _figure(width_in: float, height_in: float) -> Figure:
    with _style():
        return Figure(figsize=(width_in, height_in), layout="constrained")


def _compact_number(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def accuracy_time_figure(points: pd.DataFrame, colors: Mapping[str, str], *, prefix: str = "fig-accuracy",
                         title: str = "Accuracy against time, bubble area = AUC_GPU") -> str:
    """FLARE22 Fig. 2b: mean DSC (left) and NSD (right) against mean time per case, bubble area
    proportional to the mean AUC_GPU. `points` has columns algorithm, time_s, dsc, nsd and
    auc_gpu_mb_s (NaN where unmeasured: drawn as a hollow ring of the smallest size)."""
    with _style():
        fig = _figure(9.2, 3.6)
        axes = fig.subplots(1, 2, sharex=True)
        auc = points["auc_gpu_mb_s"].to_numpy(dtype=float)
        top = np.nanmax(auc) if np.isfinite(auc).any() and np.nanmax(auc) > 0 else 1.0
        sizes = 40.0 + 1400.0 * np.where(np.isfinite(auc), auc, 0.0) / top
        times = points["time_s"].to_numpy(dtype=float)
        finite = times[np.isfinite(times) & (times > 0)]
        log_x = finite.size > 1 and finite.max() / finite.min() > 8
        for ax, metric, label in zip(axes, ("dsc", "nsd"), ("mean DSC", "mean NSD"), strict=True):
            for (_, row), size, measured in zip(points.iterrows(), sizes, np.isfinite(auc), strict=True):
                color = colors[row["algorithm"]]
                ax.scatter([row["time_s"]], [row[metric]], s=size, color=color if measured else "none", alpha=0.55,
                           edgecolors=color, linewidths=1.2, zorder=3)
                ax.annotate(str(row["algorithm"]), (row["time_s"], row[metric]), xytext=(0, -3),
                            textcoords="offset points", ha="center", va="top", fontsize=7.5, zorder=4)
            ax.set_xlabel("mean time per case (s)" + (", log scale" if log_x else ""))
            ax.set_ylabel(label)
            ax.margins(0.18)
            if log_x:
                ax.set_xscale("log")
        refs = [v for v in (0.25 * top, top) if top > 1.0]
        handles = [axes[1].scatter([], [], s=40.0 + 1400.0 * v / top, color="#999999", alpha=0.4) for v in refs]
        if handles:
            fig.legend(handles, [f"AUC_GPU {_compact_number(v)} MB s" for v in refs], loc="outside right center",
                       fontsize=7, labelspacing=2.2, borderpad=1.2, handletextpad=1.4)
        return to_svg(fig, prefix=prefix, title=title)


def _rects(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> MplPath:
    """Many axis-aligned rectangles as one compound path: one SVG element, however many."""
    n = len(x0)
    verts = np.zeros((n, 5, 2))
    verts[:, 0] = np.column_stack([x0, y0])
    verts[:, 1] = np.column_stack([x1, y0])
    verts[:, 2] = np.column_stack([x1, y1])
    verts[:, 3] = np.column_stack([x0, y1])
    codes = np.tile([MplPath.MOVETO, MplPath.LINETO, MplPath.LINETO, MplPath.LINETO, MplPath.CLOSEPOLY], n)
    return MplPath(verts.reshape(-1, 2), codes)


def _segments(points: list[tuple[float, float, float, float]]) -> MplPath:
    """Many line segments (x0, y0, x1, y1) as one compound path."""
    verts = np.asarray(points, dtype=float).reshape(-1, 2)
    codes = np.tile([MplPath.MOVETO, MplPath.LINETO], len(points))
    return MplPath(verts, codes)


# Above this many algorithms the box plots leave the outliers out (hundreds of markers per panel).
MAX_ALGORITHMS_WITH_OUTLIERS = 12


def organ_box_figure(values: pd.DataFrame, *, organs: Sequence[str], algorithms: Sequence[str],
                     colors: Mapping[str, str], metric_label: str, prefix: str, title: str = "Per-organ box plots") -> str:
    """Per-organ box plots of per-case values, one small panel per organ, one box per algorithm
    (rank order). `values` has columns algorithm, organ, value. Boxes are quartiles, whiskers reach
    the furthest value within 1.5 IQR (matplotlib's rule), the bar is the median; outliers are
    drawn up to MAX_ALGORITHMS_WITH_OUTLIERS algorithms. Each panel is a few compound paths, so
    the SVG stays small for 50 algorithms."""
    n_cols = 5
    n_rows = max(1, -(-len(organs) // n_cols))
    outliers = len(algorithms) <= MAX_ALGORITHMS_WITH_OUTLIERS
    with _style():
        fig = _figure(9.6, 1.75 * n_rows + 0.5)
        axes = np.atleast_1d(fig.subplots(n_rows, n_cols, sharey=True)).ravel()
        grouped = {key: g["value"].dropna().to_numpy(dtype=float) for key, g in values.groupby(["organ", "algorithm"], sort=True)}
        half = 0.65 / 2
        for ax, organ in zip(axes, organs, strict=False):
            lines: list[tuple[float, float, float, float]] = []
            medians: list[tuple[float, float, float, float]] = []
            flier_x: list[float] = []
            flier_y: list[float] = []
            by_color: dict[str, list[tuple[float, float, float]]] = {}
            for x, algorithm in enumerate(algorithms, start=1):
                data = grouped.get((organ, algorithm), np.empty(0))
                if not data.size:
                    continue
                stats = cbook.boxplot_stats(data)[0]
                q1, q3, med = float(stats["q1"]), float(stats["q3"]), float(stats["med"])
                lo, hi = float(stats["whislo"]), float(stats["whishi"])
                by_color.setdefault(colors[algorithm], []).append((x, q1, q3))
                lines += [(x, lo, x, q1), (x, q3, x, hi), (x - half / 2, lo, x + half / 2, lo),
                          (x - half / 2, hi, x + half / 2, hi)]
                medians.append((x - half, med, x + half, med))
                if outliers and len(stats["fliers"]):
                    flier_x += [float(x)] * len(stats["fliers"])
                    flier_y += [float(v) for v in stats["fliers"]]
            for color, boxes in by_color.items():
                xs, q1s, q3s = (np.array(v, dtype=float) for v in zip(*boxes, strict=True))
                ax.add_patch(PathPatch(_rects(xs - half, xs + half, q1s, q3s), facecolor=color, alpha=0.75,
                                       edgecolor="#222222", linewidth=0.6))
            if lines:
                ax.add_patch(PathPatch(_segments(lines), fill=False, edgecolor="#222222", linewidth=0.7))
                ax.add_patch(PathPatch(_segments(medians), fill=False, edgecolor="#222222", linewidth=1.0))
            if flier_x:
                ax.scatter(flier_x, flier_y, s=4, facecolors="none", edgecolors="#222222", linewidths=0.5)
            ax.set_title(organ.replace("_", " "), pad=2)
            ax.set_xticks([])
            ax.set_xlim(0.4, len(algorithms) + 0.6)
            ax.set_ylim(-0.03, 1.03)
            ax.set_yticks([0.0, 0.5, 1.0])
        for ax in axes[len(organs):]:
            ax.set_visible(False)
        for ax in axes[::n_cols]:
            ax.set_ylabel(metric_label)
        handles = [matplotlib.patches.Patch(facecolor=colors[a], alpha=0.75, label=a) for a in algorithms]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(algorithms), 6), fontsize=8)
        return to_svg(fig, prefix=prefix, title=title)


def rank_blob_figure(frequencies: pd.DataFrame, intervals: pd.DataFrame, *, algorithms: Sequence[str],
                     colors: Mapping[str, str], prefix: str = "fig-blob",
                     title: str = "Bootstrap rank distributions") -> str:
    """challengeR's blob plot: for each algorithm (x, rank order) the share of bootstrap draws that
    gave it each rank (disc area), its median bootstrap rank (black bar) and the 2.5-97.5%
    interval (line)."""
    n = len(algorithms)
    with _style():
        fig = _figure(max(3.6, 0.9 * n + 1.6), 3.4)
        ax = fig.subplots()
        total = frequencies.to_numpy(dtype=float).sum(axis=1, keepdims=True)
        share = frequencies.to_numpy(dtype=float) / np.where(total > 0, total, 1.0)
        share = pd.DataFrame(share, index=frequencies.index, columns=frequencies.columns)
        for x, name in enumerate(algorithms, start=1):
            ranks = share.columns.to_numpy(dtype=float)
            p = share.loc[name].to_numpy(dtype=float)
            keep = p > 0
            ax.scatter(np.full(keep.sum(), x), ranks[keep], s=900.0 * p[keep] / max(1.0, n / 6), color=colors[name],
                       alpha=0.7, edgecolors="none", zorder=3)
            lo, hi, med = intervals.loc[name, ["rank_lo", "rank_hi", "rank_median"]]
            ax.plot([x, x], [lo, hi], color="#333333", linewidth=0.9, zorder=2)
            ax.plot([x - 0.22, x + 0.22], [med, med], color="#111111", linewidth=1.8, zorder=4)
        ax.set_xticks(range(1, n + 1), list(algorithms), rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(1, n + 1))
        ax.set_ylim(n + 0.6, 0.4)
        ax.set_xlim(0.4, n + 0.6)
        ax.set_xlabel("algorithm (full-data rank order)")
        ax.set_ylabel("rank in bootstrap draws")
        return to_svg(fig, prefix=prefix, title=title)


def tau_violin_figure(tau: np.ndarray, *, variant: str, prefix: str = "fig-tau",
                      title: str = "Kendall's tau of the bootstrap rankings") -> str:
    """Violin of Kendall's tau-b between each bootstrap ranking and the full one (undefined draws
    left out), with the median and quartiles."""
    valid = np.asarray(tau, dtype=float)
    valid = valid[np.isfinite(valid)]
    with _style():
        fig = _figure(2.6, 3.4)
        ax = fig.subplots()
        if valid.size and np.ptp(valid) > 0:
            parts = ax.violinplot([valid], positions=[1], widths=0.8, showextrema=False)
            for body in list(parts["bodies"]):  # type: ignore[call-overload]
                body.set_facecolor("#0072B2")
                body.set_alpha(0.45)
                body.set_edgecolor("#0072B2")
            q25, med, q75 = np.percentile(valid, [25, 50, 75])
            ax.plot([1, 1], [q25, q75], color="#222222", linewidth=3.0, solid_capstyle="butt")
            ax.scatter([1], [med], color="white", edgecolors="#222222", s=18, zorder=3)
        elif valid.size:
            ax.plot([0.7, 1.3], [valid[0], valid[0]], color="#0072B2", linewidth=2.0)
            ax.text(1, valid[0], f"every draw: {valid[0]:.2f}", ha="center", va="bottom", fontsize=7.5)
        else:
            ax.text(1, 0, "undefined in every draw", ha="center", va="center", fontsize=7.5)
        ax.set_xlim(0.4, 1.6)
        ax.set_ylim(min(-0.05, float(valid.min()) - 0.05) if valid.size else -1.05, 1.05)
        ax.set_xticks([1], [f"{variant} bootstrap"])
        ax.set_ylabel("Kendall's tau vs full ranking")
        return to_svg(fig, prefix=prefix, title=title)


def method_lines_figure(method_ranks: pd.DataFrame, *, colors: Mapping[str, str], chosen: str,
                        prefix: str = "fig-methods", title: str = "Ranks under every ranking method") -> str:
    """challengeR's line plot: one line per algorithm through its rank under each ranking method
    (columns of `method_ranks`, algorithms as its index); `chosen` (the challenge's method) is
    marked. Names are written at the right end, algorithms that share a rank there in one label,
    so no two labels overlap however many algorithms there are."""
    methods = list(method_ranks.columns)
    n = len(method_ranks)
    x = np.arange(len(methods))
    with _style():
        fig = _figure(7.6, max(2.8, 0.2 * n + 1.6))
        ax = fig.subplots()
        for name, row in method_ranks.iterrows():
            ax.plot(x, row.to_numpy(dtype=float), color=colors.get(str(name), "#555555"), marker="o", markersize=3,
                    linewidth=1.0, alpha=0.85)
        last = method_ranks[methods[-1]]
        for rank, names in last.groupby(last).groups.items():
            ax.text(x[-1] + 0.08, float(rank), ", ".join(str(a) for a in names), va="center", ha="left", fontsize=7)
        ax.set_xticks(x, [m.replace(" (", "\n(") for m in methods], fontsize=7)
        for label, method in zip(ax.get_xticklabels(), methods, strict=True):
            if method == chosen:
                label.set_fontweight("bold")
        ax.set_xlim(-0.2, len(methods) - 1 + 0.9)
        ax.set_ylim(n + 0.5, 0.5)
        ax.set_yticks(range(1, n + 1) if n <= 25 else range(1, n + 1, 5))
        ax.set_ylabel("rank")
        ax.grid(axis="x", visible=False)
        return to_svg(fig, prefix=prefix, title=title)


def significance_figure(maps: Mapping[str, pd.DataFrame], *, algorithms: Sequence[str], labels: Mapping[str, str],
                        prefix: str = "fig-significance", title: str = "Significance maps") -> str:
    """One panel per metric: a dark cell where the row algorithm is significantly better than the
    column algorithm (the ranking's one-sided tests), algorithms in rank order."""
    names = list(maps)
    n = len(algorithms)
    n_cols = min(len(names), 3 if n > 6 else 5)
    n_rows = -(-len(names) // n_cols)
    side = max(1.7, 0.28 * n + 0.9)
    palette = ("#f1f3f5", "#1f5f99", "#d0d4d9")  # not significant, significant, the diagonal
    with _style():
        fig = _figure(side * n_cols + 0.6, side * n_rows + 0.5)
        axes = np.atleast_1d(fig.subplots(n_rows, n_cols)).ravel()
        for ax, name in zip(axes, names, strict=False):
            matrix = maps[name].reindex(index=list(algorithms), columns=list(algorithms)).to_numpy(dtype=float)
            matrix = np.nan_to_num(matrix, nan=0.0)
            np.fill_diagonal(matrix, 2.0)
            # A few compound paths instead of n x n cells: the light background, each row's runs of
            # significant cells merged, the diagonal, then the white cell borders on top.
            ax.add_patch(PathPatch(_rects(np.array([0.5]), np.array([n + 0.5]), np.array([0.5]), np.array([n + 0.5])),
                                   facecolor=palette[0], edgecolor="none"))
            for value, color in ((1.0, palette[1]), (2.0, palette[2])):
                runs = _row_runs(matrix == value)
                if runs:
                    rows, starts, ends = (np.array(v, dtype=float) for v in zip(*runs, strict=True))
                    ax.add_patch(PathPatch(_rects(starts + 0.5, ends + 0.5, rows + 0.5, rows + 1.5), facecolor=color,
                                           edgecolor="none"))
            grid = [(k + 0.5, 0.5, k + 0.5, n + 0.5) for k in range(n + 1)] + [(0.5, k + 0.5, n + 0.5, k + 0.5)
                                                                                 for k in range(n + 1)]
            ax.add_patch(PathPatch(_segments(grid), fill=False, edgecolor="white", linewidth=0.8))
            ax.set_xlim(0.5, n + 0.5)
            ax.set_ylim(n + 0.5, 0.5)
            ax.set_aspect("equal")
            ax.grid(False)
            ax.set_title(labels.get(name, name), pad=3)
            ticks = list(range(1, n + 1))
            ax.set_xticks(ticks, list(algorithms), rotation=90, fontsize=7)
            ax.set_yticks(ticks, list(algorithms) if ax in axes[::n_cols] else [], fontsize=7)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        return to_svg(fig, prefix=prefix, title=title)


def _row_runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, first column, last column + 1) of every run of True along the rows of `mask`."""
    runs = []
    for row in range(mask.shape[0]):
        edges = np.diff(np.concatenate([[0], mask[row].astype(np.int8), [0]]))
        runs += [(row, int(a), int(b)) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]
    return runs


def downsample_series(series: pd.DataFrame, *, max_points: int = 300) -> pd.DataFrame:
    """At most `max_points` rows: the series cut into equal runs of rows, each run's maximum
    (peaks are what a memory limit meets), its time the run's first."""
    if len(series) <= max_points:
        return series
    bins = np.arange(len(series)) * max_points // len(series)
    grouped = series.groupby(bins, sort=True)
    out = grouped.max()
    out["t_s"] = grouped["t_s"].min()
    return out.reset_index(drop=True)


_RESOURCE_PANELS = (("gpu_mb", "GPU memory (MB)"), ("cpu_pct", "CPU (%)"), ("rss_mb", "RAM, RSS (MB)"))


def resource_figure(series: Mapping[str, tuple[str, pd.DataFrame]], *, colors: Mapping[str, str],
                    prefix: str = "fig-resources", title: str = "Resource use over time") -> str:
    """GPU memory, CPU and RAM against time, one line per algorithm, for the case shown for it:
    `series` maps algorithm -> (case id, monitor series)."""
    # A panel with nothing measured (GPU memory on a host without a GPU: all 0 or empty) is left out.
    panels = [(c, label) for c, label in _RESOURCE_PANELS
              if any(c in s.columns and bool((s[c].fillna(0.0) != 0.0).any()) for _, s in series.values())]
    with _style():
        fig = _figure(9.2, 2.3 * max(1, len(panels)) + 0.3)
        axes = np.atleast_1d(fig.subplots(max(1, len(panels)), 1, sharex=True)).ravel()
        for ax, (column, label) in zip(axes, panels, strict=False):
            for name, (case_id, frame) in series.items():
                if column in frame.columns:
                    if column == "cpu_pct" and len(frame) > 1:
                        # The first CPU sample covers the few milliseconds since the container started,
                        # so it reads as several hundred percent; it is not drawn (the AUC is unaffected).
                        frame = frame.iloc[1:]
                    small = downsample_series(frame[["t_s", column]])
                    ax.plot(small["t_s"], small[column], color=colors[name], label=f"{name} ({case_id})")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
        axes[-1].set_xlabel("time since the container started (s)")
        legend: dict[str, Artist] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        fig.legend(list(legend.values()), list(legend), loc="outside upper center", fontsize=7.5,
                   ncols=min(4, max(1, len(legend))))
        return to_svg(fig, prefix=prefix, title=title)


__all__ = [
    "RC",
    "accuracy_time_figure",
    "algorithm_colors",
    "downsample_series",
    "method_lines_figure",
    "organ_box_figure",
    "rank_blob_figure",
    "resource_figure",
    "significance_figure",
    "tau_violin_figure",
    "to_svg",
]
