"""Figures that say what was measured: a resource nobody measured is not drawn as an empty panel."""

from __future__ import annotations

import re

import pandas as pd

from harness.report.figures import resource_figure


def _panels(svg: str) -> list[str]:
    return re.findall(r"(GPU memory \(MB\)|CPU \(%\)|RAM, RSS \(MB\))", svg)


def test_gpu_memory_panel_is_left_out_when_no_run_measured_any():
    no_gpu = pd.DataFrame({"t_s": [0.0, 0.1, 0.2], "gpu_mb": [0.0, 0.0, 0.0], "cpu_pct": [90.0, 100.0, 80.0],
                           "rss_mb": [50.0, 60.0, 55.0]})
    svg = resource_figure({"a": ("c1", no_gpu), "b": ("c1", no_gpu.assign(gpu_mb=float("nan")))},
                          colors={"a": "#000000", "b": "#ff0000"})
    assert sorted(set(_panels(svg))) == ["CPU (%)", "RAM, RSS (MB)"]


def test_gpu_memory_panel_is_drawn_when_one_run_measured_some():
    no_gpu = pd.DataFrame({"t_s": [0.0, 0.1], "gpu_mb": [0.0, 0.0], "cpu_pct": [90.0, 100.0], "rss_mb": [50.0, 60.0]})
    svg = resource_figure({"a": ("c1", no_gpu), "b": ("c1", no_gpu.assign(gpu_mb=[0.0, 2300.0]))},
                          colors={"a": "#000000", "b": "#ff0000"})
    assert "GPU memory (MB)" in set(_panels(svg))


def test_the_first_cpu_sample_is_not_drawn() -> None:
    # The sampler's first CPU reading spans only the container's first milliseconds (657 % once).
    series = pd.DataFrame({"t_s": [0.0, 0.1, 0.2, 0.3], "cpu_pct": [657.0, 100.0, 98.0, 99.0],
                           "rss_mb": [50.0, 60.0, 55.0, 55.0]})
    svg = resource_figure({"a": ("c1", series)}, colors={"a": "#000000"})
    ticks = [float(t) for t in re.findall(r">(\d+)</text>", svg)]
    assert max(ticks) < 300  # the CPU axis would reach 600 with the first sample


def test_fifty_algorithms_get_fifty_distinct_colours() -> None:
    from harness.report.figures import algorithm_colors

    names = [f"team-{i:02d}" for i in range(60)]
    colors = algorithm_colors(names)
    assert len(set(colors.values())) == 60
    assert algorithm_colors(names[:3]) == {n: colors[n] for n in names[:3]}  # the first ones do not depend on how many


def test_no_colour_of_a_dozen_algorithms_repeats_a_colour_blind_safe_one() -> None:
    """tab20 follows Okabe-Ito, less its colours that look like one before: team-01's blue
    (#0072B2) and tab20's first blue (#1f77b4) side by side told nobody which is which."""
    import itertools

    import matplotlib.colors as mcolors
    import numpy as np

    from harness.report.figures import algorithm_colors

    colors = list(algorithm_colors([f"team-{i:02d}" for i in range(12)]).values())
    assert "#1f77b4" not in colors and "#ff7f0e" not in colors
    closest = min(float(np.linalg.norm(np.subtract(mcolors.to_rgb(a), mcolors.to_rgb(b))))
                  for a, b in itertools.product(colors[:8], colors[8:]))
    assert closest >= 0.25


def test_matplotlib_style_sheet_keeps_to_matplotlib_figures() -> None:
    """An inline <style> holds for the whole page and beats presentation attributes: matplotlib's
    "*{stroke-linecap: butt}" made every round-capped dot of the other figures (the podium's
    marks) a zero-length butt segment, drawn as nothing."""
    from matplotlib.figure import Figure

    from harness.report.figures import to_svg

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [0, 1])
    svg = to_svg(fig, prefix="fig-x", title="x")
    sheets = re.findall(r"<style[^>]*>([^<]*)</style>", svg)
    assert sheets and "stroke-linecap" in "".join(sheets)  # matplotlib still writes its rule
    selectors = [sel.strip() for sheet in sheets for sel in re.findall(r"([^{}]+)\{", sheet)]
    assert selectors and all(sel.startswith("svg.mpl ") for sel in selectors), selectors
    assert re.match(r'<svg class="figure mpl" ', svg)
