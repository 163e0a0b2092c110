"""The report's grid and per-case figures, written as SVG directly: significance maps, the ranking
heatmap, the stacked rank frequencies, the podium, the dot-and-box plot and the ranks per task.

These figures are grids of cells or thousands of marks in fixed rows and columns, where
matplotlib spends its time on Tick objects and text extents (the significance map took 3 s at 50
algorithms) and places nothing better than a grid does. Here every label sits on its own row or
column pitch and its font is chosen smaller than that pitch, so no two labels can overlap at 3 or
at 500 algorithms; marks of one colour are one compound path. Same input, same bytes; text stays
text (the page's font renders it); ids are prefixed like figures.py's. Colour scales come from
matplotlib's colormaps.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd

from harness.report.axes import box_stats, rank_ticks

INK = "#222222"
MUTED = "#666666"
GRID = "#e3e6ea"
FONT = 11.0  # px: the figures' largest text
CHAR_W = 0.62  # a DejaVu Sans character's mean advance in em, for layout (the browser measures for real)


def _n(value: float) -> str:
    """A coordinate: 0.1 px, no trailing zeros."""
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_W


def colormap(name: str, shares: np.ndarray) -> list[str]:
    """Hex colours of `shares` (0..1) on matplotlib's colormap `name`."""
    cmap = matplotlib.colormaps[name]
    rgba = np.asarray(cmap(np.clip(np.asarray(shares, dtype=float).ravel(), 0.0, 1.0))).reshape(-1, 4)
    if not len(rgba):
        return []
    # A colormap has at most a few hundred colours: each converted once (a 300 x 300 heat map has 90,000 cells).
    distinct, where = np.unique(rgba, axis=0, return_inverse=True)
    hexes = [matplotlib.colors.to_hex(c) for c in distinct]
    return [hexes[i] for i in where.ravel().tolist()]


class Canvas:
    """An SVG document built by appending elements; `svg()` gives the inline `<svg>` element."""

    def __init__(self, width: float, height: float, *, prefix: str, title: str) -> None:
        self.width, self.height, self.prefix, self.title = width, height, prefix, title
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, *, fill: str, stroke: str = "", extra: str = "") -> None:
        line = f' stroke="{stroke}"' if stroke else ""
        self.parts.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" fill="{fill}"{line}{extra}/>')

    def path(self, d: str, *, fill: str = "none", stroke: str = "", width: float = 1.0, opacity: float | None = None,
             cap: str = "", extra: str = "") -> None:
        """`extra`: further attributes, written as given (escape any value)."""
        if not d:
            return
        attrs = f' fill="{fill}"'
        if stroke:
            attrs += f' stroke="{stroke}" stroke-width="{width:g}"'
        if opacity is not None:
            attrs += f' opacity="{opacity:g}"'
        if cap:
            attrs += f' stroke-linecap="{cap}"'
        self.parts.append(f'<path d="{d}"{attrs}{extra}/>')

    def text(self, x: float, y: float, text: str, *, size: float = FONT, anchor: str = "start", rotate: float = 0.0,
             bold: bool = False, fill: str = INK, middle: bool = True) -> None:
        """Text at (x, y): `anchor` start/middle/end; `middle` centres it vertically on y."""
        attrs = f' font-size="{size:g}"'
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        if middle:
            attrs += ' dominant-baseline="central"'
        if bold:
            attrs += ' font-weight="bold"'
        if fill != INK:
            attrs += f' fill="{fill}"'
        if rotate:
            attrs += f' transform="rotate({rotate:g} {_n(x)} {_n(y)})"'
        self.parts.append(f'<text x="{_n(x)}" y="{_n(y)}"{attrs}>{html.escape(text, quote=False)}</text>')

    def svg(self) -> str:
        w, h = _n(self.width), _n(self.height)
        return (f'<svg class="figure" role="img" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
                f'viewBox="0 0 {w} {h}" font-family="DejaVu Sans, sans-serif" fill="{INK}" id="{self.prefix}-svg">\n'
                f"<title>{html.escape(self.title)}</title>" + "".join(self.parts) + "</svg>\n")


def rects_d(x: np.ndarray, y: np.ndarray, w: float, h: float) -> str:
    """Many w x h rectangles at (x, y) as one path's data."""
    return "".join(f"M{_n(a)} {_n(b)}h{_n(w)}v{_n(h)}h{_n(-w)}z" for a, b in zip(x.tolist(), y.tolist(), strict=True))


def dots_d(x: np.ndarray, y: np.ndarray) -> str:
    """Many dots as one path's data: zero-length segments drawn with round caps, at whole pixels
    (thousands of marks: a tenth of a pixel would add a third to the page)."""
    return "".join(f"M{a:.0f} {b:.0f}h0" for a, b in zip(x.tolist(), y.tolist(), strict=True) if np.isfinite(b))


def polyline_d(x: np.ndarray, y: np.ndarray) -> str:
    """One polyline's data at whole pixels."""
    return "M" + "L".join(f"{a:.0f} {b:.0f}" for a, b in zip(x.tolist(), y.tolist(), strict=True))


def _pitch(n: int, span: float, lo: float, hi: float) -> float:
    """The row (or column) pitch that fits n rows in `span` px, kept within [lo, hi]."""
    return float(min(hi, max(lo, span / max(1, n))))


def _label_size(pitch: float) -> float:
    """A font that fits one label per `pitch`: a text box is about 1.17 em tall."""
    return float(min(FONT, pitch / 1.25))


def _rank_ticks(n: int, pitch: float, size: float) -> list[int]:
    """The ranks 1..n to label on an axis of `pitch` px per rank: every one when they fit side by
    side, else 1 and every k-th (`axes.rank_ticks`)."""
    return rank_ticks(n, min_step=(text_width(str(n), size) + 3) / pitch)


def significance_svg(maps: Mapping[str, pd.DataFrame], *, algorithms: Sequence[str], labels: Mapping[str, str],
                     prefix: str = "fig-significance", title: str = "Significance maps") -> str:
    """One panel per metric: a dark cell where the row algorithm is significantly better than the
    column algorithm (the ranking's one-sided tests), algorithms in rank order, the diagonal grey.
    Row and column labels sit one per cell."""
    names = list(maps)
    n = len(algorithms)
    cell = _pitch(n, 380.0, 8.0, 22.0)  # at least 8 px: names 6.4 px high
    size = _label_size(cell)
    margin = max(text_width(a, size) for a in algorithms) + 6 if algorithms else 10
    panel = margin + n * cell
    n_cols = max(1, min(len(names), int(1000 // (panel + 16)) or 1))
    n_rows = -(-len(names) // n_cols)
    head = FONT + 8
    canvas = Canvas(n_cols * (panel + 16), n_rows * (head + margin + n * cell + 12), prefix=prefix, title=title)
    palette = ("#f1f3f5", "#1f5f99", "#d0d4d9")  # not significant, significant, the diagonal
    for k, name in enumerate(names):
        x0 = (k % n_cols) * (panel + 16) + margin
        y0 = (k // n_cols) * (head + margin + n * cell + 12) + head + margin
        canvas.text(x0 + n * cell / 2, y0 - margin - head / 2, labels.get(name, name), anchor="middle", bold=True)
        matrix = maps[name].reindex(index=list(algorithms), columns=list(algorithms)).to_numpy(dtype=float)
        matrix = np.nan_to_num(matrix, nan=0.0)
        canvas.rect(x0, y0, n * cell, n * cell, fill=palette[0])
        canvas.path(_runs_d(matrix == 1.0, x0, y0, cell), fill=palette[1])
        diag = np.arange(n)
        canvas.path(rects_d(x0 + diag * cell, y0 + diag * cell, cell, cell), fill=palette[2])
        grid = "".join(f"M{_n(x0 + i * cell)} {_n(y0)}v{_n(n * cell)}M{_n(x0)} {_n(y0 + i * cell)}h{_n(n * cell)}"
                       for i in range(n + 1))
        canvas.path(grid, stroke="#ffffff", width=0.8)
        for i, algorithm in enumerate(algorithms):
            canvas.text(x0 - 4, y0 + (i + 0.5) * cell, algorithm, size=size, anchor="end")
            canvas.text(x0 + (i + 0.5) * cell, y0 - 4, algorithm, size=size, rotate=-90)
    return canvas.svg()


def _runs_d(mask: np.ndarray, x0: float, y0: float, cell: float) -> str:
    """The True cells of `mask` as one path's data, each row's runs of adjacent cells one rectangle."""
    parts = []
    for row in range(mask.shape[0]):
        edges = np.diff(np.concatenate([[0], mask[row].astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True):
            parts.append(f"M{_n(x0 + a * cell)} {_n(y0 + row * cell)}h{_n((b - a) * cell)}v{_n(cell)}h{_n(-(b - a) * cell)}z")
    return "".join(parts)


def rank_heatmap_svg(counts: pd.DataFrame, *, n_cases: int, prefix: str = "fig-rank-heatmap",
                     title: str = "Ranking heatmap", xlabel: str = "rank on the case") -> str:
    """challengeR's ranking heatmap: rows are algorithms (rank order), columns ranks 1..n, a cell's
    colour the number of cases on which the algorithm took that rank (its count written in the
    cell while cells are large enough)."""
    algorithms = [str(a) for a in counts.index]
    ranks = [int(r) for r in counts.columns]
    n, m = len(algorithms), len(ranks)
    cell = _pitch(max(n, m), 480.0, 7.0, 26.0)
    size = _label_size(cell)
    margin = max((text_width(a, size) for a in algorithms), default=10) + 6
    top = FONT + 10
    bar = 70.0  # the colour key
    canvas = Canvas(margin + m * cell + bar + 20, top + n * cell + FONT * 3 + 8, prefix=prefix, title=title)
    values = counts.to_numpy(dtype=float)
    most = float(values.max()) if values.size else 0.0
    share = values / max(1.0, most)  # the colour scale spans 0 to the largest count
    x0, y0 = margin, top
    colours = colormap("Blues", 0.08 + 0.92 * share.ravel())
    by_colour: dict[str, list[tuple[int, int]]] = {}
    for flat, colour in enumerate(colours):
        by_colour.setdefault(colour, []).append(divmod(flat, m))
    for colour, cells in by_colour.items():
        rows = np.array([r for r, _ in cells], dtype=float)
        cols = np.array([c for _, c in cells], dtype=float)
        canvas.path(rects_d(x0 + cols * cell, y0 + rows * cell, cell, cell), fill=colour)
    if cell >= 16:
        count_size = min(FONT - 1, cell * 0.5)
        for r in range(n):
            for c in range(m):
                if values[r, c]:
                    canvas.text(x0 + (c + 0.5) * cell, y0 + (r + 0.5) * cell, f"{values[r, c]:g}", size=count_size,
                                anchor="middle", fill="#ffffff" if share[r, c] > 0.55 else INK)
    for i, algorithm in enumerate(algorithms):
        canvas.text(x0 - 4, y0 + (i + 0.5) * cell, algorithm, size=size, anchor="end")
    for rank in _rank_ticks(m, cell, size):
        canvas.text(x0 + (rank - 0.5) * cell, y0 - 5, str(rank), size=size, anchor="middle")
    canvas.text(x0 + m * cell / 2, y0 + n * cell + FONT, xlabel, anchor="middle")
    _colour_key(canvas, x0 + m * cell + 20, y0, min(n * cell, 160.0), "Blues", "cases", lo="0", hi=f"{most:g}")
    return canvas.svg()


def _colour_key(canvas: Canvas, x: float, y: float, height: float, cmap: str, label: str,
                lo: str = "", hi: str = "", floor: float = 0.08) -> None:
    """A vertical key of `cmap` from `floor` (bottom, `lo`) to 1 (top, `hi`)."""
    steps = 24
    colours = colormap(cmap, floor + (1 - floor) * np.linspace(0, 1, steps))
    for k, colour in enumerate(colours):
        canvas.rect(x, y + height * (steps - 1 - k) / steps, 10, height / steps + 0.2, fill=colour)
    canvas.text(x + 14, y + height / 2, label, size=FONT - 2, rotate=90, anchor="middle", middle=False)
    if hi:
        canvas.text(x + 5, y - 6, hi, size=FONT - 2, anchor="middle")
    if lo:
        canvas.text(x + 5, y + height + 8, lo, size=FONT - 2, anchor="middle")


def stacked_frequency_svg(frequencies: pd.DataFrame, *, prefix: str = "fig-stacked",
                          title: str = "Stacked rank frequencies") -> str:
    """challengeR's stacked frequency plot: one bar per algorithm (rank order), split by the share
    of bootstrap draws that gave it each rank, dark for the best ranks; a bar of one colour is a
    rank every draw agrees on."""
    algorithms = [str(a) for a in frequencies.index]
    n = len(algorithms)
    values = frequencies.to_numpy(dtype=float)
    totals = values.sum(axis=1, keepdims=True)
    share = values / np.where(totals > 0, totals, 1.0)
    pitch = _pitch(n, 640.0, 8.0, 40.0)
    size = _label_size(pitch)
    height = 180.0
    left = 46.0
    below = max((text_width(a, size) for a in algorithms), default=10) + 10
    canvas = Canvas(left + n * pitch + 110, 12 + height + below + FONT + 6, prefix=prefix, title=title)
    y0 = 12.0
    colours = colormap("viridis", np.linspace(0, 0.92, max(2, n)))
    width = pitch * 0.8
    for rank in range(n):  # one path per rank: every algorithm's segment of that rank
        parts = []
        for a in range(n):
            if share[a, rank] <= 0:
                continue
            below_share = share[a, :rank].sum()
            top = y0 + height * (1 - below_share - share[a, rank])
            parts.append(f"M{_n(left + a * pitch + (pitch - width) / 2)} {_n(top)}h{_n(width)}"
                         f"v{_n(height * share[a, rank])}h{_n(-width)}z")
        canvas.path("".join(parts), fill=colours[rank])
    canvas.path(f"M{_n(left)} {_n(y0)}v{_n(height)}h{_n(n * pitch)}", stroke=INK, width=0.8)
    for tick in (0.0, 0.5, 1.0):
        canvas.text(left - 4, y0 + height * (1 - tick), f"{tick:.0%}", size=FONT - 2, anchor="end")
    canvas.text(12, y0 + height / 2, "share of draws", size=FONT - 1, rotate=-90, anchor="middle")
    for a, name in enumerate(algorithms):
        canvas.text(left + (a + 0.5) * pitch, y0 + height + 5, name, size=size, rotate=-90, anchor="end")
    key_x = left + n * pitch + 24
    canvas.text(key_x, y0 + 2, "rank", size=FONT - 1)
    for k, colour in enumerate(colours[:n]):
        canvas.rect(key_x, y0 + 12 + (height - 14) * k / max(1, n), 10, (height - 14) / max(1, n) + 0.2, fill=colour)
    canvas.text(key_x + 14, y0 + 14, "1 (best)", size=FONT - 2)
    canvas.text(key_x + 14, y0 + height - 4, str(n), size=FONT - 2)
    return canvas.svg()


def dot_box_svg(values: np.ndarray, *, algorithms: Sequence[str], colors: Mapping[str, str], metric_label: str,
                lo: float = 0.0, hi: float = 1.0, prefix: str = "fig-dotbox",
                title: str = "Dot-and-box plot") -> str:
    """challengeR's dot-and-box plot: per algorithm (rank order) a box of its per-case values
    (`values`: cases x algorithms) with every case as a dot, and each case's dots linked across
    the algorithms by a thin line."""
    n = len(algorithms)
    pitch = _pitch(n, 760.0, 12.0, 60.0)
    size = _label_size(pitch)
    height, left, top = 220.0, 46.0, 10.0
    below = max((text_width(a, size) for a in algorithms), default=10) + 10
    canvas = Canvas(left + n * pitch + 10, top + height + below + 4, prefix=prefix, title=title)

    def y(v: np.ndarray | float) -> np.ndarray:
        return top + height * (1 - (np.asarray(v, dtype=float) - lo) / (hi - lo or 1.0))

    for tick in np.linspace(lo, hi, 5):
        canvas.path(f"M{_n(left)} {_n(float(y(tick)))}h{_n(n * pitch)}", stroke=GRID, width=0.8)
        canvas.text(left - 4, float(y(tick)), f"{tick:g}", size=FONT - 2, anchor="end")
    canvas.text(12, top + height / 2, metric_label, size=FONT - 1, rotate=-90, anchor="middle")
    xs = left + (np.arange(n) + 0.5) * pitch
    finite = np.isfinite(values)
    lines = []
    for case in range(values.shape[0]):
        keep = finite[case]
        if keep.sum() > 1:
            lines.append(polyline_d(xs[keep], y(values[case, keep])))
    canvas.path("".join(lines), stroke="#9aa5b1", width=0.6, opacity=0.35)
    half = pitch * 0.3
    for a, name in enumerate(algorithms):
        column = values[:, a][finite[:, a]]
        if column.size:
            wlo, q1, med, q3, whi = box_stats(column)
            x = float(xs[a])
            canvas.rect(x - half, float(y(q3)), 2 * half, float(y(q1) - y(q3)), fill=colors.get(name, "#888888"),
                        stroke=INK, extra=' fill-opacity="0.35" stroke-width="0.7"')
            canvas.path(f"M{_n(x)} {_n(float(y(q3)))}V{_n(float(y(whi)))}M{_n(x)} {_n(float(y(q1)))}V{_n(float(y(wlo)))}"
                        f"M{_n(x - half)} {_n(float(y(med)))}h{_n(2 * half)}", stroke=INK, width=0.9)
            canvas.path(dots_d(np.full(column.size, x), y(column)), stroke=colors.get(name, "#555555"), width=3.2,
                        cap="round")
        canvas.text(float(xs[a]), top + height + 5, name, size=size, rotate=-90, anchor="end")
    return canvas.svg()


# Up to this many algorithms the podium is one plot (challengeR's); beyond, one panel per algorithm:
# a legend of more colours cannot be matched to the marks, and from 13 the algorithms' offsets within
# a place (0.8 x 640 / n^2 px) come closer than a mark's width (at 10: 5.1 px, marks 3.4 px).
PODIUM_JOINT_MAX = 10
PODIUM_MARK_PX = 3.4


def _mark_attrs(name: str) -> str:
    return f' class="marks" data-algorithm="{html.escape(name)}"'


def podium_svg(values: np.ndarray, ranks: np.ndarray, *, algorithms: Sequence[str], colors: Mapping[str, str],
               metric_label: str, lo: float = 0.0, hi: float = 1.0, prefix: str = "fig-podium",
               title: str = "Podium plot") -> str:
    """challengeR's podium plot: for each case (`values`, `ranks`: cases x algorithms), each
    algorithm's value (y) at the podium place it took on that case (x; its rank on the case).

    Up to PODIUM_JOINT_MAX algorithms, one plot: the case's points linked by a line beneath them,
    each algorithm a colour offset within the place so that no mark covers another's centre,
    named at the right in rank order. More algorithms get one small panel each (rank order, named
    above it): its own points in its colour over the field's median value at each place (grey),
    so each panel answers where that algorithm placed, case by case. Every algorithm's marks are
    one path with `data-algorithm`."""
    if len(algorithms) > PODIUM_JOINT_MAX:
        return _podium_panels(values, ranks, algorithms=algorithms, colors=colors, metric_label=metric_label, lo=lo,
                              hi=hi, prefix=prefix, title=title)
    n = len(algorithms)
    place = _pitch(n, 640.0, 12.0, 90.0)
    height, left, top = 240.0, 46.0, 12.0
    key_pitch = _pitch(n, height, 11.0, 16.0)  # the key may run below the plot: its labels stay legible
    size = _label_size(key_pitch)
    right = max((text_width(a, size) for a in algorithms), default=10) + 24
    canvas = Canvas(left + n * place + right + 10, max(top + height + FONT * 3 + 6, top + n * key_pitch + 10),
                    prefix=prefix, title=title)

    def y(v: np.ndarray) -> np.ndarray:
        return top + height * (1 - (np.asarray(v, dtype=float) - lo) / (hi - lo or 1.0))

    for tick in np.linspace(lo, hi, 5):
        canvas.path(f"M{_n(left)} {_n(float(y(np.array(tick))))}h{_n(n * place)}", stroke=GRID, width=0.8)
        canvas.text(left - 4, float(y(np.array(tick))), f"{tick:g}", size=FONT - 2, anchor="end")
    canvas.text(12, top + height / 2, metric_label, size=FONT - 1, rotate=-90, anchor="middle")
    offsets = (np.arange(n) + 0.5) / n * 0.8 + 0.1  # within the place, by algorithm
    px = left + (np.clip(ranks, 1, n) - 1 + offsets[None, :]) * place  # cases x algorithms
    py = y(values)
    finite = np.isfinite(values)
    lines = []
    for case in range(values.shape[0]):
        keep = np.flatnonzero(finite[case])
        if keep.size > 1:
            order = keep[np.argsort(px[case, keep], kind="stable")]
            lines.append(polyline_d(px[case, order], py[case, order]))
    canvas.path(f"M{_n(left)} {_n(top)}v{_n(height)}h{_n(n * place)}", stroke=INK, width=0.8)
    canvas.path("".join(lines), stroke="#9aa5b1", width=0.6, opacity=0.35)  # beneath every mark
    for a, name in enumerate(algorithms):
        keep = finite[:, a]
        canvas.path(dots_d(px[keep, a], py[keep, a]), stroke=colors.get(name, "#555555"), width=PODIUM_MARK_PX,
                    cap="round", extra=_mark_attrs(name))
    for k in _rank_ticks(n, place, FONT - 2):
        canvas.text(left + (k - 0.5) * place, top + height + 8, str(k), size=FONT - 2, anchor="middle")
    canvas.text(left + n * place / 2, top + height + 8 + FONT + 4, "podium place (rank on the case)", anchor="middle")
    kx = left + n * place + 14
    for a, name in enumerate(algorithms):
        ky = top + (a + 0.5) * key_pitch
        canvas.rect(kx, ky - 3, 6, 6, fill=colors.get(name, "#555555"))
        canvas.text(kx + 10, ky, name, size=size)
    return canvas.svg()


def _fit_name(name: str, width: float, size: float) -> tuple[str, float]:
    """`name` in a font that fits `width` px, down to 7 px; still too long, cut with an ellipsis."""
    if text_width(name, size) <= width:
        return name, size
    smaller = max(7.0, width / (len(name) * CHAR_W))
    if text_width(name, smaller) <= width:
        return name, smaller
    keep = max(1, int(width / (smaller * CHAR_W)) - 1)
    return name[:keep] + "\u2026", smaller


def _podium_panels(values: np.ndarray, ranks: np.ndarray, *, algorithms: Sequence[str], colors: Mapping[str, str],
                   metric_label: str, lo: float, hi: float, prefix: str, title: str) -> str:
    """The podium as one panel per algorithm (see `podium_svg`)."""
    n = len(algorithms)
    place = _pitch(n, 150.0, 2.0, 8.0)  # px per podium place
    plot_w, plot_h = n * place, 64.0
    tick = FONT - 3
    gutter = max(text_width(f"{v:g}", tick) for v in (lo, hi, (lo + hi) / 2)) + 6  # y tick labels
    head, foot = FONT + 9, tick + 6  # the name above (clear of the top y tick), the place ticks below
    cell_w, cell_h = gutter + plot_w + 12, head + plot_h + foot + 8
    left, top = 22.0, 4.0
    n_cols = max(1, int((1000.0 - left) // cell_w))
    n_rows = -(-n // n_cols)
    canvas = Canvas(left + n_cols * cell_w, top + n_rows * cell_h + FONT + 10, prefix=prefix, title=title)
    canvas.text(8, top + n_rows * cell_h / 2, metric_label, size=FONT - 1, rotate=-90, anchor="middle")
    canvas.text(left + n_cols * cell_w / 2, top + n_rows * cell_h + FONT / 2 + 2,
                "podium place (rank on the case) of each case; grey: the median value at each place", anchor="middle")

    clipped = np.clip(ranks, 1, n)
    finite = np.isfinite(values)
    field = np.full(n, np.nan)  # the median value taken at each place, over every algorithm and case
    for k in range(1, n + 1):
        at = (clipped == k) & finite
        if at.any():
            field[k - 1] = float(np.median(values[at]))
    span = hi - lo or 1.0
    for a, name in enumerate(algorithms):
        x0 = left + (a % n_cols) * cell_w + gutter
        y0 = top + (a // n_cols) * cell_h + head

        def y(v: np.ndarray | float, y0: float = y0) -> np.ndarray:
            return y0 + plot_h * (1 - (np.asarray(v, dtype=float) - lo) / span)

        label, size = _fit_name(name, gutter + plot_w - 2, FONT - 1)
        canvas.text(x0 - gutter + 2, y0 - head / 2 - 3, label, size=size)
        canvas.rect(x0, y0, plot_w, plot_h, fill="#f6f7f9")
        for value in (lo, (lo + hi) / 2, hi):
            canvas.path(f"M{_n(x0)} {_n(float(y(value)))}h{_n(plot_w)}", stroke=GRID, width=0.8)
        for value in (lo, hi):
            canvas.text(x0 - 3, float(y(value)), f"{value:g}", size=tick, anchor="end")
        known = np.isfinite(field)
        if known.sum() > 1:
            xs = x0 + (np.flatnonzero(known) + 0.5) * place
            canvas.path("M" + "L".join(f"{_n(u)} {_n(v)}" for u, v in zip(xs.tolist(), y(field[known]).tolist(),
                                                                            strict=True)),
                        stroke="#9aa5b1", width=1.0)
        for k in (1, n):
            canvas.text(x0 + (k - 0.5) * place, y0 + plot_h + foot / 2 + 1, str(k), size=tick, anchor="middle")
        keep = finite[:, a]
        canvas.path(dots_d(x0 + (clipped[keep, a] - 0.5) * place, y(values[keep, a])), stroke=colors.get(name, "#555555"),
                    width=min(PODIUM_MARK_PX, max(2.4, place)), cap="round", extra=_mark_attrs(name))
    return canvas.svg()


# The ranks' colour scale: viridis runs through lightness and hue, so that neighbouring ranks stay
# apart in colour at 50 algorithms (CIELAB distance >= 2.4 between ranks k and k + 1; Blues, a
# single hue, gave 1.0 and its dark end saturated). Reversed: rank 1 is the darkest.
RANK_CMAP = "viridis_r"
LEAF_STEM_PX = 8.0  # each leaf's stem: a leaf stands over its column even where it joins at height 0


def ink_on(colour: str) -> str:
    """White or ink, whichever reads better on `colour` (WCAG relative luminance; equal contrast
    at about 0.21)."""
    rgb = np.array(matplotlib.colors.to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return "#ffffff" if float(linear @ np.array([0.2126, 0.7152, 0.0722])) < 0.21 else INK


def task_ranks_svg(ranks: pd.DataFrame, *, consensus: pd.Series,
                   tree: Sequence[tuple[Sequence[float], Sequence[float]]] = (), prefix: str = "fig-tasks",
                   title: str = "Ranks per task") -> str:
    """The multi-task view: rows are algorithms in consensus order, columns the tasks (then the
    consensus), a cell's colour its rank in that task (RANK_CMAP, dark = best), the rank written in
    the cell while cells are large enough (up to 50 algorithms). `tree`: the tasks' dendrogram
    links in scipy's coordinates (the columns in its leaf order), drawn above the columns, each
    leaf on a stem over the centre of its column (path classes "dendrogram" and "leaves"; the
    cells' paths have class "cells")."""
    algorithms = [str(a) for a in ranks.index]
    tasks = [str(t) for t in ranks.columns]
    n, m = len(algorithms), len(tasks) + 1
    row = _pitch(n, 690.0, 8.0, 22.0)
    size = _label_size(row)
    col = max(row, 30.0)
    head_size = min(FONT - 1, col / 1.25)
    margin = max((text_width(a, size) for a in algorithms), default=10) + 6
    dendro = 56.0 if tree else 0.0
    top = dendro + max((text_width(t, head_size) for t in [*tasks, "consensus"]), default=10) + 10
    key = min(n * row, 160.0)
    canvas = Canvas(margin + m * col + 90, top + max(n * row + 10, key + 20), prefix=prefix, title=title)
    x0, y0 = margin, top
    if tree:
        highest = max((max(ys) for _, ys in tree), default=1.0) or 1.0
        base = dendro - 6.0 - LEAF_STEM_PX  # height 0: where the stems meet the links

        def column_x(x: float) -> float:
            return x0 + (x - 5.0) / 10.0 * col + col / 2

        links = []
        for xs, ys in tree:
            px = [column_x(x) for x in xs]
            py = [4.0 + (base - 4.0) * (1 - y / highest) for y in ys]
            links.append("M" + "L".join(f"{_n(a)} {_n(b)}" for a, b in zip(px, py, strict=True)))
        canvas.path("".join(links), stroke=MUTED, width=1.0, extra=' class="dendrogram"')
        stems = "".join(f"M{_n(column_x(10.0 * j + 5.0))} {_n(base)}v{_n(LEAF_STEM_PX)}" for j in range(len(tasks)))
        canvas.path(stems, stroke=MUTED, width=1.0, extra=' class="leaves"')
    values = np.column_stack([ranks.to_numpy(dtype=float), consensus.reindex(ranks.index).to_numpy(dtype=float)])
    share = 1 - (values - 1) / max(1, n - 1)
    colours = np.array(colormap(RANK_CMAP, np.nan_to_num(share.ravel(), nan=0.0)), dtype=object).reshape(n, m)
    for colour in sorted(set(colours.ravel().tolist())):
        rows, cols = np.nonzero(colours == colour)
        cols_x = x0 + cols * col + np.where(cols == m - 1, 6.0, 0.0)
        canvas.path(rects_d(cols_x, y0 + rows * row, col - 1, row - 1), fill=colour, extra=' class="cells"')
    if row >= 13:
        for r in range(n):
            for c in range(m):
                if np.isfinite(values[r, c]):
                    canvas.text(x0 + (c + 0.5) * col + (6 if c == m - 1 else 0), y0 + (r + 0.5) * row - 0.5,
                                f"{values[r, c]:g}", size=min(size, FONT - 2), anchor="middle",
                                fill=ink_on(colours[r, c]))
    for i, algorithm in enumerate(algorithms):
        canvas.text(x0 - 4, y0 + (i + 0.5) * row, algorithm, size=size, anchor="end")
    for j, task in enumerate([*tasks, "consensus"]):
        canvas.text(x0 + (j + 0.5) * col + (6 if j == m - 1 else 0), y0 - 5, task.replace("_", " "), size=head_size,
                    rotate=-90, bold=j == m - 1)
    _colour_key(canvas, x0 + m * col + 24, y0, key, RANK_CMAP, "rank", lo=str(n), hi="1", floor=0.0)
    return canvas.svg()


def gaussian_density(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The Gaussian kernel density estimate of `values` at `at`, with Scott's bandwidth (sd x n^-1/5):
    scipy.stats.gaussian_kde's estimate for one dimension (tested), without importing scipy.stats
    (0.8 s of a report's start)."""
    v = np.asarray(values, dtype=float)
    h = float(np.std(v, ddof=1)) * v.size ** (-1.0 / 5.0)
    z = (np.asarray(at, dtype=float)[:, None] - v[None, :]) / h
    return np.exp(-0.5 * z * z).sum(axis=1) / (v.size * h * np.sqrt(2.0 * np.pi))


def tau_violins_svg(taus: Mapping[str, np.ndarray], *, prefix: str = "fig-task-tau",
                    title: str = "Kendall's tau per task") -> str:
    """challengeR's violin plot across tasks: per task the density of Kendall's tau between its
    bootstrap rankings and its full ranking (undefined draws left out), with the median (white dot)
    and the quartiles (bar); a task where every draw gives one value is a bar at that value."""
    tasks = list(taus)
    m = len(tasks)
    pitch = _pitch(m, 620.0, 30.0, 70.0)
    size = min(FONT - 1, pitch / 1.25)
    height, left, top = 180.0, 46.0, 10.0
    below = max((text_width(t, size) for t in tasks), default=10) + 10
    valid = {t: np.asarray(v, dtype=float)[np.isfinite(v)] for t, v in taus.items()}
    lowest = min([float(v.min()) for v in valid.values() if v.size] + [0.0])
    lo = min(-0.05, np.floor(lowest * 10) / 10)
    canvas = Canvas(left + m * pitch + 10, top + height + below + 4, prefix=prefix, title=title)

    def y(v: np.ndarray | float) -> np.ndarray:
        return top + height * (1 - (np.asarray(v, dtype=float) - lo) / (1.0 - lo))

    for tick in sorted({0.0, 0.5, 1.0} | ({lo} if lo <= -0.2 else set())):  # lo beside 0 would overlap its label
        canvas.path(f"M{_n(left)} {_n(float(y(tick)))}h{_n(m * pitch)}", stroke=GRID, width=0.8)
        canvas.text(left - 4, float(y(tick)), f"{tick:g}", size=FONT - 2, anchor="end")
    canvas.text(12, top + height / 2, "Kendall's tau", size=FONT - 1, rotate=-90, anchor="middle")
    half = pitch * 0.42
    for k, task in enumerate(tasks):
        v = valid[task]
        x = left + (k + 0.5) * pitch
        if v.size > 1 and np.ptp(v) > 0:
            grid = np.linspace(float(v.min()), float(v.max()), 48)
            density = gaussian_density(v, grid)
            w = half * density / density.max()
            right = " ".join(f"{_n(x + a)} {_n(float(b))}" for a, b in zip(w.tolist(), y(grid).tolist(), strict=True))
            left_side = " ".join(f"{_n(x - a)} {_n(float(b))}" for a, b in zip(w[::-1].tolist(), y(grid[::-1]).tolist(),
                                                                               strict=True))
            canvas.path(f"M{right} L{left_side}z", fill="#0072B2", opacity=0.45)
            q25, med, q75 = np.percentile(v, [25, 50, 75])
            canvas.path(f"M{_n(x)} {_n(float(y(q25)))}V{_n(float(y(q75)))}", stroke=INK, width=3.0)
            canvas.path(f"M{_n(x)} {_n(float(y(med)))}h0", stroke="#ffffff", width=3.0, cap="round")
        elif v.size:
            canvas.path(f"M{_n(x - half)} {_n(float(y(v[0])))}h{_n(2 * half)}", stroke="#0072B2", width=2.0)
        canvas.text(x, top + height + 5, task.replace("_", " "), size=size, rotate=-90, anchor="end")
    return canvas.svg()


__all__ = ["PODIUM_JOINT_MAX", "RANK_CMAP", "Canvas", "dot_box_svg", "ink_on", "podium_svg", "rank_heatmap_svg",
           "significance_svg", "gaussian_density", "stacked_frequency_svg", "task_ranks_svg", "tau_violins_svg"]
