"""The grid and per-case figures written as SVG: what they draw, checked from the SVG itself."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from harness.report import svgplot

NS = "{http://www.w3.org/2000/svg}"


def _tree(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _rect_area(d: str) -> float:
    """Total area of a path made of `M x y h w v h h -w z` rectangles."""
    total = 0.0
    for w, h in re.findall(r"M[-\d.]+ [-\d.]+h([-\d.]+)v([-\d.]+)h[-\d.]+z", d):
        total += float(w) * float(h)
    return total


def _names(n: int) -> list[str]:
    return [f"team-{i:03d}" for i in range(1, n + 1)]


def test_significance_cells_match_the_matrix() -> None:
    algs = _names(7)
    rng = np.random.default_rng(3)
    matrix = (rng.random((7, 7)) < 0.4).astype(float)
    np.fill_diagonal(matrix, np.nan)
    svg = svgplot.significance_svg({"dsc": pd.DataFrame(matrix, index=algs, columns=algs)}, algorithms=algs,
                                   labels={"dsc": "DSC"})
    root = _tree(svg)
    dark = [p for p in root.iter(f"{NS}path") if p.get("fill") == "#1f5f99"]
    assert len(dark) == 1
    cell = svgplot._pitch(7, 380.0, 8.0, 22.0)
    assert _rect_area(dark[0].get("d", "")) == pytest.approx(np.nansum(matrix) * cell * cell, rel=1e-3)
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts.count("team-003") == 2 and "DSC" in texts  # a row and a column label each


@pytest.mark.parametrize("n", [3, 50, 300])
def test_grid_labels_keep_to_their_pitch(n: int) -> None:
    """Row labels one per row, each font smaller than the row pitch (a text box is ~1.17 em tall),
    so no two can overlap however many algorithms there are."""
    algs = _names(n)
    counts = pd.DataFrame(np.eye(n, dtype=int) * 4, index=algs, columns=range(1, n + 1))
    for svg in (svgplot.rank_heatmap_svg(counts, n_cases=4),
                svgplot.significance_svg({"dsc": pd.DataFrame(0.0, index=algs, columns=algs)}, algorithms=algs,
                                         labels={})):
        rows = [(float(t.get("y", 0)), float(t.get("font-size", 0))) for t in _tree(svg).iter(f"{NS}text")
                if t.text in algs and t.get("text-anchor") == "end"]
        assert len(rows) == n
        ys = sorted(y for y, _ in rows)
        gap = min(np.diff(ys)) if n > 1 else np.inf
        assert max(size for _, size in rows) * 1.17 <= gap + 1e-6


def test_rank_heatmap_writes_each_count() -> None:
    algs = ["a", "b", "c"]
    counts = pd.DataFrame([[5, 1, 0], [1, 4, 1], [0, 1, 5]], index=algs, columns=[1, 2, 3])
    root = _tree(svgplot.rank_heatmap_svg(counts, n_cases=6))
    in_cells = [(float(t.get("x", 0)), float(t.get("y", 0)), t.text) for t in root.iter(f"{NS}text")
                if t.get("font-size") == "10"]  # the counts' font (labels and ticks are 11 px)
    by_row = [[int(text or 0) for _, _, text in sorted(group)] for _, group in
              pd.DataFrame(in_cells, columns=["x", "y", "t"]).groupby("y")[["x", "y", "t"]]
              .apply(lambda g: list(g.itertuples(index=False, name=None))).items()]
    assert by_row == [[5, 1], [1, 4, 1], [1, 5]]  # zero counts are left blank


def test_podium_and_dot_box_draw_every_finite_case() -> None:
    algs = ["a", "b", "c", "d"]
    values = np.array([[0.9, 0.8, 0.7, np.nan], [0.5, 0.6, 0.7, 0.8], [np.nan, np.nan, np.nan, 0.1]])
    ranks = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [2, 2, 2, 1]])
    colors = {"a": "#111111", "b": "#222222", "c": "#333333", "d": "#444444"}
    for svg in (svgplot.podium_svg(values, ranks, algorithms=algs, colors=colors, metric_label="DSC"),
                svgplot.dot_box_svg(values, algorithms=algs, colors=colors, metric_label="DSC")):
        paths = list(_tree(svg).iter(f"{NS}path"))
        dots = {p.get("stroke"): p.get("d", "").count("h0") for p in paths if p.get("stroke-linecap") == "round"}
        assert dots == {"#111111": 2, "#222222": 2, "#333333": 2, "#444444": 2}
        lines = [p for p in paths if p.get("stroke") == "#9aa5b1"]
        assert len(lines) == 1 and lines[0].get("d", "").count("M") == 2  # the third case has one value: no line


def test_same_input_same_bytes_and_names_escaped() -> None:
    algs = ["<b>x</b>", "y&z"]
    counts = pd.DataFrame([[1, 0], [0, 1]], index=algs, columns=[1, 2])
    one = svgplot.rank_heatmap_svg(counts, n_cases=1)
    assert one == svgplot.rank_heatmap_svg(counts, n_cases=1)
    assert "<b>" not in one and "&lt;b&gt;x&lt;/b&gt;" in one and "y&amp;z" in one
    _tree(one)  # well-formed XML


def test_task_ranks_in_consensus_order() -> None:
    ranks = pd.DataFrame({"liver": [1.0, 2.0, 3.0], "spleen": [2.0, 1.0, 3.0]}, index=["a", "b", "c"])
    consensus = pd.Series([1, 1, 3], index=["a", "b", "c"])
    root = _tree(svgplot.task_ranks_svg(ranks, consensus=consensus))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts[:3] == ["1", "2", "1"]  # a's ranks: liver, spleen, consensus
    assert "consensus" in texts and "liver" in texts


def test_gaussian_density_is_scipys_gaussian_kde() -> None:
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(11)
    for values in (rng.normal(0.8, 0.05, 1000), np.r_[rng.random(7), 1.0, 1.0]):
        grid = np.linspace(values.min(), values.max(), 48)
        np.testing.assert_allclose(svgplot.gaussian_density(values, grid), gaussian_kde(values)(grid), rtol=1e-10)


def test_podium_beyond_ten_algorithms_is_a_panel_each_with_every_case_at_its_place() -> None:
    n, n_cases = 12, 9
    algs = _names(n)
    rng = np.random.default_rng(5)
    values = rng.uniform(0.5, 0.95, size=(n_cases, n))
    values[2, 4] = np.nan  # a missing value: no mark
    ranks = np.array([pd.Series(-row).rank(method="min").to_numpy() for row in values])
    ranks[2, 4] = n
    colors = {a: f"#{i:02x}3366" for i, a in enumerate(algs)}
    root = _tree(svgplot.podium_svg(values, ranks, algorithms=algs, colors=colors, metric_label="DSC"))
    marks = {p.get("data-algorithm"): p for p in root.iter(f"{NS}path") if p.get("class") == "marks"}
    assert list(marks) == algs
    ticks = [float(t.get("x", 0)) for t in root.iter(f"{NS}text") if t.text == "1" and t.get("text-anchor") == "middle"]
    assert len(ticks) == n  # place 1 under each panel, in the panels' order
    place = svgplot._pitch(n, 150.0, 2.0, 8.0)
    for a, name in enumerate(algs):
        d = marks[name].get("d", "")
        xs = [float(x) for x in re.findall(r"M([-\d.]+) [-\d.]+h0", d)]
        expected = ranks[np.isfinite(values[:, a]), a]
        assert len(xs) == len(expected)
        got = [round((x - ticks[a]) / place) + 1 for x in xs]
        assert got == expected.astype(int).tolist(), name
        assert marks[name].get("stroke") == colors[name]
    names = [t.text for t in root.iter(f"{NS}text")]
    assert all(a in names for a in algs)


def _lab(colours: list[str]) -> np.ndarray:
    """CIELAB (D65) of hex colours, by the CIE formulas."""
    import matplotlib.colors

    rgb = np.array([matplotlib.colors.to_rgb(c) for c in colours])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def test_task_rank_colours_separate_neighbouring_ranks_at_fifty() -> None:
    """Issue 36: at 50 algorithms the cells of ranks k and k + 1 differ by at least a just noticeable
    colour difference (CIE76 distance 2.3) and each cell still shows its rank."""
    n = 50
    algs = _names(n)
    ranks = pd.DataFrame({"liver": np.arange(1.0, n + 1), "spleen": np.arange(n, 0.0, -1)}, index=algs)
    consensus = pd.Series(np.full(n, 1.0), index=algs)
    root = _tree(svgplot.task_ranks_svg(ranks, consensus=consensus))
    by_y: dict[float, list[tuple[float, str]]] = {}
    for path in root.iter(f"{NS}path"):
        if path.get("class") == "cells":
            for x, y in re.findall(r"M([-\d.]+) ([-\d.]+)h", path.get("d", "")):
                by_y.setdefault(float(y), []).append((float(x), path.get("fill", "")))
    rows = [sorted(by_y[y]) for y in sorted(by_y)]
    assert len(rows) == n
    liver = [row[0][1] for row in rows]  # rank k in row k
    distance = np.linalg.norm(np.diff(_lab(liver), axis=0), axis=1)
    assert distance.min() >= 2.3, f"ranks {int(distance.argmin()) + 1} and {int(distance.argmin()) + 2} differ by {distance.min():.2f}"
    assert _lab([liver[0]])[0, 0] < _lab([liver[-1]])[0, 0] - 50  # dark = best
    blues = [svgplot.colormap("Blues", [0.08 + 0.92 * (1 - k / (n - 1))])[0] for k in range(n)]
    assert np.linalg.norm(np.diff(_lab(blues), axis=0), axis=1).min() < 2.3  # the scale it replaced did not
    numbers = [t.text for t in root.iter(f"{NS}text")]
    assert numbers.count("50") >= 2 and numbers.count("37") >= 2  # ranks written in the cells


def test_ink_on_picks_the_readable_text_colour() -> None:
    assert svgplot.ink_on("#440154") == "#ffffff" and svgplot.ink_on("#fde725") == svgplot.INK
