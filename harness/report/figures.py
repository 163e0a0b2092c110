"""The report's figures as inline SVG: pure functions from tables to SVG text (matplotlib, no pyplot).

Deterministic: a fixed `svg.hashsalt`, text kept as text (`svg.fonttype = 'none'`: smaller, and
the page's font renders it), no date or creator metadata; every id inside a figure is prefixed with
the figure's name so that several figures can share one HTML page. No raster images: heat maps are
vector quads, so the file stays small and prints sharply.
"""

from __future__ import annotations

import colorsys
import functools
import html
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import text_to_path
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Affine2D

from harness.report.axes import BoxStats, box_stats, labels_fit, rank_ticks

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


def _rgb_distance(a: Any, b: Any) -> float:
    """Euclidean distance of two colours in RGB (0..1 per channel)."""
    return float(np.linalg.norm(np.subtract(matplotlib.colors.to_rgb(a), matplotlib.colors.to_rgb(b))))


def algorithm_colors(algorithms: Sequence[str]) -> dict[str, str]:
    """A fixed colour per algorithm, in the given (rank) order, every one distinct: Okabe-Ito, then
    tab20, then hues a golden angle apart at alternating lightness (no colour repeats at 50)."""
    palette = list(_PALETTE)
    for c in matplotlib.colormaps["tab20"].colors:  # type: ignore[attr-defined]
        if min(_rgb_distance(c, p) for p in palette) >= 0.25:  # tab20's blue, orange and pink near Okabe-Ito's: left out
            palette.append(matplotlib.colors.to_hex(c))
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
    # matplotlib's <style> sets every element's line caps ("*{...}"); inline, a style sheet holds for
    # the whole page and beats presentation attributes, so it flattened the round-capped dots of the
    # other figures (the podium's marks were not drawn at all): keep it to matplotlib's own figures.
    text = re.sub(r"(<style[^>]*>)([^<]*)(</style>)",
                  lambda m: m[1] + re.sub(r"(^|\})\s*\*\s*\{", r"\1svg.mpl *{", m[2]) + m[3], text)
    opening = re.search(r"<svg [^>]*>", text)
    assert opening is not None  # matplotlib always writes one
    head = opening[0].replace("<svg ", '<svg class="figure mpl" role="img" ', 1)
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


# Up to this many algorithms a figure keeps its compact layout (panels side by side, upright boxes
# with a legend, algorithms along x); beyond it panels stack, boxes lie in rows named on the left and
# the blob plot turns so that names are read across.
COMPACT_MAX = 12


@functools.lru_cache(maxsize=8192)
def _text_box(text: str, size: float) -> tuple[float, float]:
    """(width, height) in pt of one line of DejaVu Sans as a browser lays it out: the advance width
    and the font's line box (ascent + descent: 1.164 em)."""
    width, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(family="DejaVu Sans", size=size),
                                                            ismath=False)
    return float(width), 1.164 * size


def _wrap(text: str, size: float, width: float) -> str:
    """`text` broken at spaces into lines no wider than `width` pt where a word allows."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_box(f"{lines[-1]} {word}", size)[0] <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


# Where a label may go around its point, in order of preference (unit steps; a diagonal puts the
# label's corner there), and how far (pt): the first free spot wins.
_LABEL_DIRECTIONS = ((0, -1), (1, 0), (0, 1), (-1, 0), (1, -1), (-1, -1), (1, 1), (-1, 1))
_LABEL_GAPS = (1.5, 5.0, 9.0, 14.0, 20.0, 27.0, 35.0, 45.0, 57.0, 72.0, 90.0, 112.0, 140.0)
_LEADER_FROM = 8.0  # pt: a label further than this from its point is tied to it by a thin line


def _place_labels(ax: Any, xs: np.ndarray, ys: np.ndarray, texts: Sequence[str], *, size: float) -> None:
    """Write `texts` beside their points (data coordinates) so that no two labels overlap, none
    covers another point and all stay inside the axes: each label, in the given order, takes the
    first free spot on rings of growing distance; one further away than _LEADER_FROM gets a leader
    line (all leaders are one compound path). The axes' position and limits must be final."""
    fig = ax.figure
    to_pt = 72.0 / fig.dpi
    finite = np.isfinite(xs) & np.isfinite(ys)
    anchors = np.full((len(xs), 2), np.nan)
    if finite.any():
        anchors[finite] = ax.transData.transform(np.column_stack([xs[finite], ys[finite]])) * to_pt
    x0, y0, x1, y1 = (v * to_pt for v in ax.bbox.extents)
    pad = 1.0
    # Obstacles: a small square on every point (its centre stays visible), then each placed label.
    dots = np.column_stack([anchors[:, 0] - 2.5, anchors[:, 1] - 2.5, anchors[:, 0] + 2.5, anchors[:, 1] + 2.5])
    placed = np.empty((0, 4))
    leaders: list[tuple[float, float, float, float]] = []
    pt = Affine2D().scale(1.0 / 72.0) + fig.dpi_scale_trans
    ascent = 0.928 * size  # DejaVu Sans: the line box's top above the baseline
    directions = np.array(_LABEL_DIRECTIONS, dtype=float)
    for i, text in enumerate(texts):
        if not finite[i] or not text:
            continue
        x, y = anchors[i]
        width, height = _text_box(text, size)
        w, h = width + 2 * pad, height + 2 * pad
        gaps = np.repeat(np.array(_LABEL_GAPS), len(directions))
        ux, uy = np.tile(directions[:, 0], len(_LABEL_GAPS)), np.tile(directions[:, 1], len(_LABEL_GAPS))
        cx, cy = x + ux * (gaps + w / 2), y + uy * (gaps + h / 2)
        boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
        others = np.vstack([dots[finite & (np.arange(len(dots)) != i)], placed])
        hits = ((boxes[:, None, 0] < others[None, :, 2]) & (boxes[:, None, 2] > others[None, :, 0])
                & (boxes[:, None, 1] < others[None, :, 3]) & (boxes[:, None, 3] > others[None, :, 1])).sum(axis=1)
        # The first free spot inside the axes; in a panel too crowded for that, the spot inside that
        # overlaps the fewest others.
        k = int(np.argmin(np.where(inside, hits, len(others) + 1)))  # argmin: the first of equals
        placed = np.vstack([placed, boxes[k]])
        ax.text(cx[k], cy[k] + height / 2 - ascent, text, transform=pt, ha="center", va="baseline", fontsize=size,
                zorder=4, clip_on=False)
        if gaps[k] > _LEADER_FROM:
            bx0, by0, bx1, by1 = boxes[k]
            leaders.append((x, y, min(max(x, bx0 + pad), bx1 - pad), min(max(y, by0 + pad), by1 - pad)))
    if leaders:
        ax.add_artist(PathPatch(_segments(leaders), transform=pt, fill=False, edgecolor="#8a8f96", linewidth=0.5,
                                zorder=3.5, clip_on=False))


def accuracy_time_figure(points: pd.DataFrame, colors: Mapping[str, str], *, prefix: str = "fig-accuracy",
                         title: str = "Accuracy against time, bubble area = AUC_GPU") -> str:
    """FLARE22 Fig. 2b: mean DSC and NSD against mean time per case, bubble area proportional to the
    mean AUC_GPU. `points` has columns algorithm, time_s, dsc, nsd and auc_gpu_mb_s (NaN where
    unmeasured: drawn as a hollow ring of the smallest size). Up to COMPACT_MAX algorithms the two
    panels stand side by side, beyond it one above the other (twice the room for names); names are
    placed where they overlap no other name or point, with a leader line where pushed aside."""
    n = len(points)
    stacked = n > COMPACT_MAX
    auc = points["auc_gpu_mb_s"].to_numpy(dtype=float)
    top = np.nanmax(auc) if np.isfinite(auc).any() and np.nanmax(auc) > 0 else 1.0
    sizes = 40.0 + 1400.0 * np.where(np.isfinite(auc), auc, 0.0) / top
    times = points["time_s"].to_numpy(dtype=float)
    finite = times[np.isfinite(times) & (times > 0)]
    log_x = finite.size > 1 and finite.max() / finite.min() > 8
    refs = [v for v in (0.25 * top, top) if top > 1.0]
    rgb = np.array([matplotlib.colors.to_rgb(colors[str(a)]) for a in points["algorithm"]]).reshape(-1, 3)
    edge = np.column_stack([rgb, np.full(n, 0.55)])
    face = np.column_stack([rgb, np.where(np.isfinite(auc), 0.55, 0.0)])
    # A fixed layout (inches): label placement needs the axes where they will be drawn.
    # The bubble-size key sits in a band above the panels, so the panels get the full width.
    width, left, right, bottom, top_margin = 9.2, 0.66, 0.15, 0.5, (0.68 if refs else 0.12)
    if stacked:
        panel_w, panel_h, gap = width - left - right, 3.1, 0.4
        height = top_margin + 2 * panel_h + gap + bottom
        frames = [(left, bottom + panel_h + gap), (left, bottom)]
    else:
        gap = 0.72
        panel_w, panel_h = (width - left - right - gap) / 2, 3.0
        height = top_margin + panel_h + bottom
        frames = [(left, bottom), (left + panel_w + gap, bottom)]
    with _style():
        fig = Figure(figsize=(width, height))
        axes: list[Any] = []
        for i, (fx, fy) in enumerate(frames):
            axes.append(fig.add_axes((fx / width, fy / height, panel_w / width, panel_h / height),
                                     sharex=axes[0] if i else None))
        names = [str(a) for a in points["algorithm"]]
        for i, (ax, metric, label) in enumerate(zip(axes, ("dsc", "nsd"), ("mean DSC", "mean NSD"), strict=True)):
            ys = points[metric].to_numpy(dtype=float)
            ax.scatter(times, ys, s=sizes, facecolors=face.tolist(), edgecolors=edge.tolist(), linewidths=1.2, zorder=3)
            if not stacked or i == len(axes) - 1:
                ax.set_xlabel("mean time per case (s)" + (", log scale" if log_x else ""))
            ax.set_ylabel(label)
            ax.margins(0.18 if not stacked else 0.12)
            if log_x:
                ax.set_xscale("log")
        for ax in axes:  # freeze the limits: labels are placed in points from them
            ax.set_xlim(ax.get_xlim())
            ax.set_ylim(ax.get_ylim())
        for ax, metric in zip(axes, ("dsc", "nsd"), strict=True):
            _place_labels(ax, times, points[metric].to_numpy(dtype=float), names, size=7.5)
        handles = [axes[1].scatter([], [], s=40.0 + 1400.0 * v / top, color="#999999", alpha=0.4) for v in refs]
        if handles:
            fig.legend(handles, [f"AUC_GPU {_compact_number(v)} MB s" for v in refs], loc="center right",
                       bbox_to_anchor=(1.0 - right / width, 1.0 - top_margin / 2 / height), ncols=len(handles),
                       fontsize=7, borderpad=0.2, handletextpad=0.9, columnspacing=2.0)
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


def _box_stats(values: pd.DataFrame) -> pd.DataFrame:
    """Per (organ, algorithm): `axes.box_stats` (q1, med, q3 and the whisker ends lo, hi)."""
    data = values[["organ", "algorithm", "value"]].dropna(subset=["value"])
    keys = ["organ", "algorithm"]
    if data.empty:
        return pd.DataFrame(columns=["q1", "med", "q3", "lo", "hi"], dtype=float,
                            index=pd.MultiIndex.from_arrays([[], []], names=keys))
    groups = {key: box_stats(group.to_numpy(dtype=float))
              for key, group in data.groupby(keys, sort=False)["value"]}
    stats = pd.DataFrame.from_dict(groups, orient="index", columns=list(BoxStats._fields))
    stats.index = pd.MultiIndex.from_tuples(list(groups), names=keys)
    return stats[["q1", "med", "q3", "lo", "hi"]]


def _draw_boxes(ax: Any, at: np.ndarray, st: pd.DataFrame, colors: Sequence[str], *, half: float,
                across: bool) -> None:
    """Boxes at positions `at` (stats rows `st`): one collection of filled boxes, one compound path
    of whiskers and caps, one of medians. `across`: boxes lie along x (one row per algorithm)."""
    q1, q3, med, lo, hi = (st[c].to_numpy(dtype=float) for c in ("q1", "q3", "med", "lo", "hi"))

    def seg(a0: np.ndarray, v0: np.ndarray, a1: np.ndarray, v1: np.ndarray) -> np.ndarray:
        return np.column_stack([v0, a0, v1, a1] if across else [a0, v0, a1, v1])

    box = np.stack([seg(at - half, q1, at - half, q3)[:, :2], seg(at + half, q1, at + half, q3)[:, :2],
                    seg(at + half, q3, at + half, q1)[:, :2], seg(at - half, q3, at - half, q1)[:, :2]], axis=1)
    ax.add_collection(PolyCollection(list(box), facecolors=list(colors), edgecolors="#222222", linewidths=0.6,
                                     alpha=0.75), autolim=False)
    cap = half / 2
    whiskers = np.concatenate([seg(at, lo, at, q1), seg(at, q3, at, hi), seg(at - cap, lo, at + cap, lo),
                               seg(at - cap, hi, at + cap, hi)])
    ax.add_artist(PathPatch(_segments(whiskers.tolist()), fill=False, edgecolor="#222222", linewidth=0.7))
    ax.add_artist(PathPatch(_segments(seg(at - half, med, at + half, med).tolist()), fill=False,
                            edgecolor="#222222", linewidth=1.0))


def organ_box_figure(values: pd.DataFrame, *, organs: Sequence[str], algorithms: Sequence[str],
                     colors: Mapping[str, str], metric_label: str, prefix: str, title: str = "Per-organ box plots") -> str:
    """Per-organ box plots of per-case values, one small panel per organ, one box per algorithm
    (rank order). `values` has columns algorithm, organ, value. Boxes are quartiles, whiskers reach
    the furthest value within 1.5 IQR (matplotlib's rule), the bar is the median; outliers are
    drawn up to MAX_ALGORITHMS_WITH_OUTLIERS algorithms. Up to COMPACT_MAX algorithms the boxes
    stand upright with a colour legend; beyond, each algorithm is a row named on the left (a
    legend of 50 colours names nothing) and the organs stand side by side. Each panel is a few
    collections and compound paths, so the SVG stays small for 50 algorithms."""
    stats = _box_stats(values)
    if len(algorithms) > COMPACT_MAX:
        return _organ_box_rows(stats, organs=organs, algorithms=algorithms, colors=colors, metric_label=metric_label,
                               prefix=prefix, title=title)
    n = len(algorithms)
    fliers = _fliers(values, stats) if n <= MAX_ALGORITHMS_WITH_OUTLIERS else {}
    position = {a: float(x) for x, a in enumerate(algorithms, start=1)}
    # Laid out by hand (inches), as constrained layout would, without its second pass over every
    # artist: five panels a line, organ names wrapped to a panel's width, the legend below.
    n_cols, width, left, right, gap, panel_h, title_pt = 5, 9.6, 0.62, 0.1, 0.12, 1.3, 9.0
    panel_w = (width - left - right - (n_cols - 1) * gap) / n_cols
    lines = [list(organs[i:i + n_cols]) for i in range(0, len(organs), n_cols)] or [[]]
    titles = {o: _wrap(o.replace("_", " "), title_pt, panel_w * 72.0 - 2.0) for o in organs}
    title_h = [max([titles[o].count("\n") + 1 for o in line] or [1]) * 1.2 * title_pt / 72.0 + 0.06 for line in lines]
    legend_cols = max(1, min(n, 6))
    legend_h = -(-n // legend_cols) * 0.18 + 0.14
    row_gap = 0.1
    height = sum(title_h) + len(lines) * (panel_h + row_gap) + legend_h
    with _style():
        fig = Figure(figsize=(width, height))
        top = height
        for line, band in zip(lines, title_h, strict=True):
            top -= band
            bottom = top - panel_h
            for j, organ in enumerate(line):
                ax = fig.add_axes(((left + j * (panel_w + gap)) / width, bottom / height, panel_w / width,
                                   panel_h / height))
                st = _organ_stats(stats, organ, algorithms)
                if len(st):
                    at = np.array([position[a] for a in st.index])
                    _draw_boxes(ax, at, st, [colors[a] for a in st.index], half=0.65 / 2, across=False)
                points = fliers.get(organ)
                if points is not None and len(points):
                    ax.scatter([position[a] for a in points["algorithm"]], points["value"], s=4, facecolors="none",
                               edgecolors="#222222", linewidths=0.5)
                ax.set_title(titles[organ], pad=2, fontsize=title_pt)
                ax.set_xticks([])
                ax.set_xlim(0.4, n + 0.6)
                ax.set_ylim(-0.03, 1.03)
                if j == 0:
                    ax.set_yticks([0.0, 0.5, 1.0])
                    ax.set_ylabel(metric_label)
                else:
                    ax.set_yticks([0.0, 0.5, 1.0], [])
                    ax.tick_params(axis="y", length=0)
            top = bottom - row_gap
        handles = [matplotlib.patches.Patch(facecolor=colors[a], alpha=0.75, label=a) for a in algorithms]
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=legend_cols, fontsize=8,
                   borderaxespad=0.2)
        return to_svg(fig, prefix=prefix, title=title)


def _organ_stats(stats: pd.DataFrame, organ: str, algorithms: Sequence[str]) -> pd.DataFrame:
    """The rows of `stats` for one organ, indexed by algorithm (those of `algorithms` only)."""
    if organ not in set(stats.index.get_level_values("organ")):
        return pd.DataFrame(columns=stats.columns, dtype=float)
    st = stats.xs(organ, level="organ")
    return st[st.index.isin(list(algorithms))]


def _fliers(values: pd.DataFrame, stats: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per organ, the values (algorithm, value) outside their group's whiskers."""
    data = values[["organ", "algorithm", "value"]].dropna(subset=["value"])
    if data.empty:
        return {}
    joined = data.join(stats[["lo", "hi"]], on=["organ", "algorithm"])
    out = joined[(joined["value"] < joined["lo"]) | (joined["value"] > joined["hi"])]
    return {str(organ): group for organ, group in out.groupby("organ", sort=False)}


def _organ_box_rows(stats: pd.DataFrame, *, organs: Sequence[str], algorithms: Sequence[str],
                    colors: Mapping[str, str], metric_label: str, prefix: str, title: str) -> str:
    """organ_box_figure for many algorithms: one row per algorithm (rank order, named once at the
    left of each line of panels), the organs side by side. Laid out by hand in inches: names on a
    pitch of 1.3 times their font size, organ names wrapped to their panel's width."""
    n = len(algorithms)
    name_pt, title_pt, tick_pt = 7.0, 7.5, 7.0
    pitch = 1.3 * name_pt / 72.0  # inches per row
    names_w = max(_text_box(a, name_pt)[0] for a in algorithms) / 72.0 + 0.1
    panel_w, gap, right = 0.7, 0.1, 0.1
    n_cols = max(1, min(len(organs), int((11.2 - names_w - right + gap) // (panel_w + gap))))
    width = names_w + n_cols * (panel_w + gap) - gap + right
    lines = [organs[i:i + n_cols] for i in range(0, len(organs), n_cols)]
    titles = {o: _wrap(o.replace("_", " "), title_pt, panel_w * 72.0 - 2.0) for o in organs}
    panel_h = n * pitch + 0.1
    title_h = [max(titles[o].count("\n") + 1 for o in line) * 1.25 * title_pt / 72.0 + 0.06 for line in lines]
    ticks_h, xlabel_h, row_gap = 0.2, 0.25, 0.12
    height = sum(title_h) + len(lines) * (panel_h + ticks_h) + (len(lines) - 1) * row_gap + xlabel_h + 0.04
    position = {a: float(i) for i, a in enumerate(algorithms)}
    # One value axis for every panel, from the lowest whisker (to 0.1) up: the boxes get the width.
    low = float(np.nanmin(stats["lo"])) if len(stats) and np.isfinite(stats["lo"]).any() else 0.0
    low = min(0.0 if low < 0.15 else np.floor(low * 10.0) / 10.0, 0.9)
    high = max(1.0, float(np.nanmax(stats["hi"])) if len(stats) and np.isfinite(stats["hi"]).any() else 1.0)
    span = high - low
    ticks = [t for t in MaxNLocator(nbins=2, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high) if low <= t <= high]
    # Light bands behind every other five rows, to follow a row across the panels.
    zebra = np.arange(5, n, 10, dtype=float)
    band_path = _rects(np.full(len(zebra), low - span), np.full(len(zebra), high + span), zebra - 0.5,
                       np.minimum(zebra + 4.5, n - 0.5)) if len(zebra) else None
    with _style():
        fig = Figure(figsize=(width, height))
        top = height
        for line, band in zip(lines, title_h, strict=True):
            top -= band
            bottom = top - panel_h
            for j, organ in enumerate(line):
                left = names_w + j * (panel_w + gap)
                ax = fig.add_axes((left / width, bottom / height, panel_w / width, panel_h / height))
                st = _organ_stats(stats, organ, algorithms)
                if len(st):
                    at = np.array([position[a] for a in st.index])
                    _draw_boxes(ax, at, st, [colors[a] for a in st.index], half=0.34, across=True)
                if band_path is not None:
                    ax.add_artist(PathPatch(band_path, facecolor="#f1f3f5", edgecolor="none", zorder=0.5))
                ax.set_title(titles[organ], pad=3, fontsize=title_pt)
                ax.set_ylim(n - 0.5, -0.5)
                ax.set_xlim(low - 0.04 * span, high + 0.04 * span)
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=tick_pt)
                if j == 0:
                    ax.set_yticks(range(n), list(algorithms), fontsize=name_pt)
                    ax.tick_params(axis="y", length=0, pad=2)
                else:
                    ax.set_yticks([])
                ax.grid(axis="y", visible=False)
            top = bottom - ticks_h - row_gap
        fig.text((names_w + (width - names_w - right) / 2) / width, 0.04 / height, metric_label, ha="center",
                 va="bottom", fontsize=8.5)
        return to_svg(fig, prefix=prefix, title=title)


BLOB_UPRIGHT_MAX = 8


def rank_blob_figure(frequencies: pd.DataFrame, intervals: pd.DataFrame, *, algorithms: Sequence[str],
                     colors: Mapping[str, str], prefix: str = "fig-blob",
                     title: str = "Bootstrap rank distributions") -> str:
    """challengeR's blob plot: for each algorithm (rank order) the share of bootstrap draws that
    gave it each rank (disc area), its median bootstrap rank (black bar) and the 2.5-97.5%
    interval (line). Up to BLOB_UPRIGHT_MAX algorithms they stand along x with ranks down y, as
    challengeR draws it (at most 7.2 inches wide: it shares a line of the page); beyond, the plot
    is turned: one named row per algorithm, ranks along x, so the figure keeps the page's width
    and every name reads across at full size."""
    n = len(algorithms)
    upright = n <= BLOB_UPRIGHT_MAX
    total = frequencies.to_numpy(dtype=float).sum(axis=1, keepdims=True)
    share = pd.DataFrame(frequencies.to_numpy(dtype=float) / np.where(total > 0, total, 1.0), index=frequencies.index,
                         columns=frequencies.columns).reindex(list(algorithms)).fillna(0.0)
    ranks = share.columns.to_numpy(dtype=float)
    p = share.to_numpy(dtype=float)
    row, col = np.nonzero(p > 0)
    spans = intervals.reindex(list(algorithms))[["rank_lo", "rank_hi", "rank_median"]].to_numpy(dtype=float)
    position = np.arange(1, n + 1, dtype=float)
    if upright:
        width, height = max(3.6, 0.7 * n + 1.6), 3.4
        area = 900.0 / max(1.0, n / 6)
    else:
        width, height = 7.4, 0.15 * n + 1.0
        pitch = min(0.15, (width - 1.6) / max(n, 1)) * 72.0  # pt between neighbouring rows or ranks
        area = (0.95 * pitch) ** 2
    rgb = [colors[a] for a in algorithms]
    with _style():
        fig = _figure(width, height)
        ax = fig.subplots()
        disc_x, disc_y = (position[row], ranks[col]) if upright else (ranks[col], position[row])
        ax.scatter(disc_x, disc_y, s=area * p[row, col], c=[rgb[i] for i in row], alpha=0.7, edgecolors="none", zorder=3)
        finite = np.isfinite(spans).all(axis=1)
        lo, hi, med, at = spans[finite, 0], spans[finite, 1], spans[finite, 2], position[finite]
        spans_xy = np.column_stack([at, lo, at, hi] if upright else [lo, at, hi, at])
        bars_xy = np.column_stack([at - 0.22, med, at + 0.22, med] if upright else [med, at - 0.3, med, at + 0.3])
        if len(at):
            ax.add_artist(PathPatch(_segments(spans_xy.tolist()), fill=False, edgecolor="#333333", linewidth=0.9,
                                    zorder=2))
            ax.add_artist(PathPatch(_segments(bars_xy.tolist()), fill=False, edgecolor="#111111", linewidth=1.8,
                                    zorder=4))
        names = list(algorithms)
        if upright:
            ax.set_xticks(range(1, n + 1), names, rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center")
            ax.set_yticks(range(1, n + 1))
            ax.set_ylim(n + 0.6, 0.4)
            ax.set_xlim(0.4, n + 0.6)
            ax.set_xlabel("algorithm (full-data rank order)")
            ax.set_ylabel("rank in bootstrap draws")
        else:
            ax.set_yticks(range(1, n + 1), names, fontsize=7)
            ax.set_xticks(_rank_ticks(n))
            ax.set_ylim(n + 0.6, 0.4)
            ax.set_xlim(0.4, n + 0.6)
            ax.set_ylabel("algorithm (full-data rank order)")
            ax.set_xlabel("rank in bootstrap draws")
            ax.tick_params(axis="y", length=0)
            ax.grid(axis="y", visible=False)
        return to_svg(fig, prefix=prefix, title=title)


def _rank_ticks(n: int) -> list[int]:
    """Rank ticks 1..n for a matplotlib axis: at most about 15 labels."""
    return rank_ticks(n, min_step=labels_fit(n, 15))


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
    on a pitch of ranks wider than the font, so no two labels overlap however many algorithms
    there are. All lines are one collection, all markers one scatter."""
    methods = list(method_ranks.columns)
    n = len(method_ranks)
    x = np.arange(len(methods), dtype=float)
    ranks = method_ranks.to_numpy(dtype=float)
    line_colors = [colors.get(str(name), "#555555") for name in method_ranks.index]
    with _style():
        fig = _figure(7.6, max(2.8, 0.2 * n + 1.6))
        ax = fig.subplots()
        if n:
            ax.add_collection(LineCollection([np.column_stack([x, r]) for r in ranks], colors=line_colors,
                                             linewidths=1.0, alpha=0.85), autolim=False)
            ax.scatter(np.tile(x, n), ranks.ravel(), s=9, c=np.repeat(line_colors, len(methods)), alpha=0.85,
                       edgecolors="none", zorder=3)
        last = method_ranks[methods[-1]]
        for rank, names in last.groupby(last).groups.items():
            ax.text(x[-1] + 0.08, float(rank), ", ".join(str(a) for a in names), va="center", ha="left", fontsize=7)
        # A qualifier in parentheses on a line of its own, else broken at spaces (never inside
        # "aggregate-then-rank"): neighbouring names stay apart.
        ax.set_xticks(x, [m.replace(" (", "\n(") if " (" in m else _wrap(m, 7.0, 64.0) for m in methods], fontsize=7)
        for label, method in zip(ax.get_xticklabels(), methods, strict=True):
            if method == chosen:
                label.set_fontweight("bold")
        ax.set_xlim(-0.2, len(methods) - 1 + 0.9)
        ax.set_ylim(n + 0.5, 0.5)
        ax.set_yticks(range(1, n + 1) if n <= 25 else _rank_ticks(n))
        ax.set_ylabel("rank")
        ax.grid(axis="x", visible=False)
        return to_svg(fig, prefix=prefix, title=title)


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
    "tau_violin_figure",
    "to_svg",
]
