"""Every figure of the report as Chromium lays it out, at 3, 4 (the committed fixture), 12 and 50
algorithms (issue 17): no two text labels of a figure overlap, every label lies inside its figure and
is large enough to read, and the public edition names no case; every algorithm's podium marks are
drawn where nothing covers them, and the organs' dendrogram stands over its columns (issue 36).
Full-page screenshots, and one per figure, are kept under ARTIFACTS (report-<n>-algorithms[-public]*.png).

Labels are compared as Chromium draws them: each `<text>` element's box (getBBox) mapped to the
screen by its transform (getScreenCTM), so a rotated label is a rotated rectangle, and two of them
overlap when their rectangles do by more than TOLERANCE_PX (separating-axis test). The lines of one
label (a multi-line tick label: several `<text>` in the group matplotlib opens per text artist) are
not compared with each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure
from PIL import Image

from harness.report import figures
from harness.report.inputs import load_report_inputs
from tests.report.cdp import Chromium
from tests.report.conftest import ARTIFACTS, browser

TOLERANCE_PX = 0.5  # anti-aliasing: boxes that share an edge or touch by a fraction of a pixel are apart
# The smallest text as drawn on a 1366 px wide screen (7 pt at scale 1 is 9.3 px): a figure far wider
# than the page is scaled down to fit, and its names with it (2 px once, at 50 algorithms).
MIN_FONT_PX = 6.0

# Per `svg.figure`: its name and every visible, non-empty <text> as its string, the index of its
# parent group (one text artist), the 4 corners of its box on the screen and its font size in px.
COLLECT_LABELS = """
(() => [...document.querySelectorAll('svg.figure')].map((svg, index) => {
  const figure = svg.closest('figure');
  const title = svg.querySelector('title');
  const name = (figure && figure.id ? figure.id + ': ' : '') + (title ? title.textContent : 'svg #' + index);
  const frame = svg.getBoundingClientRect();
  const groups = new Map();
  const labels = [];
  for (const el of svg.querySelectorAll('text')) {
    const text = el.textContent.trim();
    if (!text || el.getClientRects().length === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== 'visible' || style.display === 'none') continue;
    const box = el.getBBox();
    if (box.width <= 0 || box.height <= 0) continue;
    const m = el.getScreenCTM();
    const corners = [[box.x, box.y], [box.x + box.width, box.y], [box.x + box.width, box.y + box.height],
                     [box.x, box.y + box.height]].map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
    if (!groups.has(el.parentElement)) groups.set(el.parentElement, groups.size);
    const scale = Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
    labels.push({text, group: groups.get(el.parentElement), corners, font_px: parseFloat(style.fontSize) * scale});
  }
  return {name, frame: [frame.left, frame.top, frame.right, frame.bottom], labels};
}))()
"""


@dataclass(frozen=True)
class Label:
    text: str
    group: int
    corners: tuple[tuple[float, float], ...]
    font_px: float


def _labels(raw: Sequence[dict[str, Any]]) -> list[Label]:
    return [Label(r["text"], int(r["group"]), tuple((float(x), float(y)) for x, y in r["corners"]), float(r["font_px"]))
            for r in raw]


def overlap_px(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """How far two convex quadrilaterals (corners in order) overlap: the smallest overlap of their
    projections on the normals of their edges (separating-axis theorem); <= 0 when apart."""
    depth = float("inf")
    for quad in (a, b):
        for i in range(len(quad)):
            (x0, y0), (x1, y1) = quad[i], quad[(i + 1) % len(quad)]
            nx, ny = y0 - y1, x1 - x0
            length = (nx * nx + ny * ny) ** 0.5
            if length == 0:
                continue
            pa = [(x * nx + y * ny) / length for x, y in a]
            pb = [(x * nx + y * ny) / length for x, y in b]
            depth = min(depth, min(max(pa), max(pb)) - max(min(pa), min(pb)))
            if depth <= 0:
                return depth
    return depth


def overlapping_labels(labels: Sequence[Label], tolerance: float = TOLERANCE_PX) -> list[tuple[Label, Label, float]]:
    """Every pair of labels (of different text artists) that overlap by more than `tolerance` px."""
    boxes = [(min(x for x, _ in lb.corners), min(y for _, y in lb.corners), max(x for x, _ in lb.corners),
              max(y for _, y in lb.corners)) for lb in labels]
    order = sorted(range(len(labels)), key=lambda i: boxes[i][0])
    found = []
    for k, i in enumerate(order):  # sweep along x: only boxes that start before this one ends
        for j in order[k + 1:]:
            if boxes[j][0] >= boxes[i][2] - tolerance:
                break
            if labels[i].group == labels[j].group:
                continue
            if min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1]) <= tolerance:
                continue
            depth = overlap_px(labels[i].corners, labels[j].corners)
            if depth > tolerance:
                found.append((labels[i], labels[j], depth))
    return found


def _outside(label: Label, frame: Sequence[float], tolerance: float = 1.0) -> bool:
    left, top, right, bottom = frame
    return any(x < left - tolerance or x > right + tolerance or y < top - tolerance or y > bottom + tolerance
               for x, y in label.corners)


@pytest.fixture(scope="module")
def page(chromium: str) -> Iterator[Chromium]:
    with browser(chromium, timeout_s=90) as opened:
        yield opened


def _open(page: Chromium, path: Path) -> None:
    page.navigate(path.resolve().as_uri())
    page.evaluate("document.fonts.ready.then(() => true)")


def _shoot(page: Chromium, stem: str) -> list[Path]:
    """A full-page screenshot and one of each figure, kept under ARTIFACTS."""
    shots = [page.screenshot(ARTIFACTS / f"{stem}.png", full_page=True)]
    rects = page.evaluate("[...document.querySelectorAll('figure[id]')].map(f => { const r = f.getBoundingClientRect();"
                          " return {id: f.id, x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })")
    for rect in rects:
        clip = {k: float(rect[k]) for k in ("x", "y", "width", "height")}
        shots.append(page.screenshot(ARTIFACTS / f"{stem}-{rect['id']}.png", clip=clip))
    return shots


@dataclass(frozen=True)
class Drawn:
    name: str
    frame: tuple[float, ...]
    labels: list[Label]


def _figure_labels(page: Chromium) -> list[Drawn]:
    return [Drawn(f["name"], tuple(f["frame"]), _labels(f["labels"])) for f in page.evaluate(COLLECT_LABELS)]


def test_overlap_check_sees_overlapping_and_rotated_labels(page: Chromium, tmp_path: Path) -> None:
    """The check is not vacuous: two labels drawn on one spot are found; rotated labels side by
    side, whose upright bounding boxes overlap but whose glyph boxes do not, are not."""
    with figures._style():
        fig = Figure(figsize=(4, 3))
        ax = fig.subplots()
        ax.text(0.3, 0.5, "alpha overlaps", fontsize=9)
        ax.text(0.35, 0.5, "beta overlaps", fontsize=9)
        ax.set_xticks([0.1, 0.15, 0.2], ["rotated-one", "rotated-two", "rotated-three"], rotation=60, ha="right",
                      rotation_mode="anchor", fontsize=7)
        ax.set_yticks([0.0, 1.0])
        svg = figures.to_svg(fig, prefix="fig-test", title="deliberately overlapping")
    path = tmp_path / "overlap.html"
    path.write_text(f'<!doctype html><html><body><figure id="fig-test">{svg}</figure></body></html>', encoding="utf-8")
    _open(page, path)
    [drawn] = _figure_labels(page)
    labels = drawn.labels
    assert "fig-test" in drawn.name and {"alpha overlaps", "beta overlaps", "rotated-one", "1"} <= {lb.text for lb in labels}
    pairs = {frozenset((a.text, b.text)) for a, b, _ in overlapping_labels(labels)}
    assert pairs == {frozenset(("alpha overlaps", "beta overlaps"))}
    rotated = [lb for lb in labels if lb.text.startswith("rotated")]
    left = [min(x for x, _ in lb.corners) for lb in rotated]
    right = [max(x for x, _ in lb.corners) for lb in rotated]
    assert right[0] > left[1] + 5  # their upright boxes overlap: only the rotated boxes tell them apart


def test_overlap_px_of_rectangles_and_rotated_rectangles() -> None:
    square = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
    assert overlap_px(square, tuple((x + 9.0, y) for x, y in square)) == pytest.approx(1.0)
    assert overlap_px(square, tuple((x + 10.2, y) for x, y in square)) < 0
    diamond = ((15.0, 5.0), (20.0, 0.0), (25.0, 5.0), (20.0, 10.0))  # right of the square, apart
    assert overlap_px(square, diamond) < 0
    assert overlap_px(square, tuple((x - 6.0, y) for x, y in diamond)) > 0.5
    labels = [Label("a", 0, square, 9.0), Label("b", 1, tuple((x + 9.0, y + 9.0) for x, y in square), 9.0),
              Label("c", 1, tuple((x + 5.0, y) for x, y in square), 9.0), Label("d", 2, diamond, 9.0)]
    # b and c are lines of one label (one group): not compared; b touches a by 1 px at a corner.
    assert {frozenset((a.text, b.text)) for a, b, _ in overlapping_labels(labels)} == {frozenset("ac"), frozenset("ab")}


# The reports as Chromium shows them: fixture name, artifact name, fewest figures expected.
REPORTS = {
    "report_3": ("report-3-algorithms", 8),
    "fixture_report": ("report-4-algorithms-fixture", 8),
    "report_12": ("report-12-algorithms", 8),
    "report_50": ("report-50-algorithms", 8),
    "public_report_50": ("report-50-algorithms-public", 7),
}


@pytest.fixture(scope="module")
def rendered(page: Chromium, request: pytest.FixtureRequest) -> Callable[[str], list[Drawn]]:
    """Open a report once (by its fixture's name), keep its screenshots, and give its figures' labels."""
    cache: dict[str, list[Drawn]] = {}

    def render(report: str) -> list[Drawn]:
        if report not in cache:
            stem, min_figures = REPORTS[report]
            _open(page, request.getfixturevalue(report))
            shots = _shoot(page, stem)
            print("screenshots: " + ", ".join(str(s) for s in shots))
            with Image.open(shots[0]) as image:
                assert image.width == 1366 and image.height > 900  # the whole page, not the first screen
                assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # not blank
            drawn = _figure_labels(page)
            assert len(drawn) >= min_figures, [d.name for d in drawn]
            assert len(shots) >= len(drawn) + 1  # a screenshot of each figure
            for figure in drawn:
                assert figure.labels, f"{figure.name}: no text found (the checks would pass vacuously)"
            cache[report] = drawn
        return cache[report]

    return render


@pytest.mark.parametrize("report", list(REPORTS))
def test_no_two_figure_labels_overlap(rendered: Callable[[str], list[Drawn]], report: str) -> None:
    problems = [f"{figure.name}: {a.text!r} and {b.text!r} overlap by {depth:.1f} px"
                for figure in rendered(report) for a, b, depth in overlapping_labels(figure.labels)]
    assert not problems, f"{len(problems)} overlapping label pair(s):\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("report", list(REPORTS))
def test_figure_labels_lie_inside_their_figure_at_a_legible_size(rendered: Callable[[str], list[Drawn]],
                                                                 report: str) -> None:
    problems = []
    for figure in rendered(report):
        problems += [f"{figure.name}: {lb.text!r} lies outside the figure" for lb in figure.labels
                     if _outside(lb, figure.frame)]
        problems += [f"{figure.name}: {lb.text!r} is drawn {lb.font_px:.1f} px high (< {MIN_FONT_PX} px)"
                     for lb in figure.labels if lb.font_px < MIN_FONT_PX]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:40])


def _case_ids(folder: Path) -> list[str]:
    return sorted(set(load_report_inputs(folder).runs["case_id"].astype(str)))


def test_the_public_edition_of_50_algorithms_names_no_case(store_50: Path, report_50: Path,
                                                           public_report_50: Path) -> None:
    case_ids = _case_ids(store_50)
    assert len(case_ids) == 30
    organisers = report_50.read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in sorted((report_50.parent / "report-pages").glob("*.html")))
    assert all(c in organisers for c in case_ids)  # the organisers' edition names them: the check can fail
    public = public_report_50.read_text(encoding="utf-8")
    assert not [c for c in case_ids if c in public]
    assert not re.search(r"case_\d", public)
    assert not (public_report_50.parent / "public-pages").exists()


# Per podium mark (`path.marks`, one per algorithm: zero-length round-capped segments "Mx yh0"):
# its centre on the screen and the element Chromium finds there (scrolled into view first).
PODIUM_MARKS = """
(() => [...document.querySelectorAll('#fig-podium path.marks')].map(path => {
  const name = path.getAttribute('data-algorithm');
  const points = [...path.getAttribute('d').matchAll(/M(-?[0-9.]+) (-?[0-9.]+)h0/g)].map(m => [+m[1], +m[2]]);
  path.scrollIntoView({block: 'center', inline: 'center'});
  const m = path.getScreenCTM();
  const width = parseFloat(getComputedStyle(path).strokeWidth) * Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
  const covered = [];
  for (const [x, y] of points) {
    const cx = m.a * x + m.c * y + m.e, cy = m.b * x + m.d * y + m.f;
    const hit = document.elementFromPoint(cx, cy);
    if (hit !== path) {
      covered.push([x, y, hit ? hit.tagName + ' ' + (hit.getAttribute('data-algorithm') || hit.getAttribute('class') || '') : 'nothing']);
    }
  }
  return {name, marks: points.length, width_px: width, cap: getComputedStyle(path).strokeLinecap, covered};
}))()
"""


def _leaderboard_names(page: Chromium) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#leaderboard tbody td.name')].map(td => td.textContent.trim())")


@pytest.mark.parametrize("report", ["report_3", "fixture_report", "report_12", "report_50"])
def test_every_algorithms_podium_marks_are_visible(page: Chromium, request: pytest.FixtureRequest, report: str) -> None:
    """Each algorithm's marks on the podium are drawn (round caps, at least 2 px) and no other
    element covers any mark's centre (elementFromPoint finds the mark itself), at 50 algorithms too."""
    _open(page, request.getfixturevalue(report))
    names = _leaderboard_names(page)
    marks = page.evaluate(PODIUM_MARKS)
    assert sorted(m["name"] for m in marks) == sorted(names) and len(names) >= 3
    problems = []
    for m in marks:
        if m["marks"] == 0 or m["cap"] != "round" or m["width_px"] < 2.0:
            problems.append(f"{m['name']}: {m['marks']} marks, caps {m['cap']}, {m['width_px']:.1f} px wide")
        if m["covered"]:
            problems.append(f"{m['name']}: {len(m['covered'])} of {m['marks']} marks covered, e.g. {m['covered'][:3]}")
    assert not problems, f"{len(problems)} algorithm(s) cannot be found on the podium:\n" + "\n".join(problems[:20])


# The organs' dendrogram as drawn: each leaf's stem (top and bottom), every point of the links, and
# the horizontal extent of every cell of the ranks grid, on the screen.
TASK_TREE = """
(() => {
  const svg = document.querySelector('#fig-tasks svg');
  const screen = (el, x, y) => { const m = el.getScreenCTM(); return [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]; };
  const stems = svg.querySelector('path.leaves'), tree = svg.querySelector('path.dendrogram');
  const number = '(-?[0-9.]+)';
  const leaves = [...stems.getAttribute('d').matchAll(new RegExp(`M${number} ${number}v${number}`, 'g'))]
    .map(m => ({top: screen(stems, +m[1], +m[2]), bottom: screen(stems, +m[1], +m[2] + +m[3])}));
  const joints = [...tree.getAttribute('d').matchAll(new RegExp(`${number} ${number}`, 'g'))].map(m => screen(tree, +m[1], +m[2]));
  const cells = [];
  for (const path of svg.querySelectorAll('path.cells')) {
    for (const m of path.getAttribute('d').matchAll(new RegExp(`M${number} ${number}h${number}v${number}`, 'g'))) {
      const a = screen(path, +m[1], +m[2]), b = screen(path, +m[1] + +m[3], +m[2] + +m[4]);
      cells.push([a[0], b[0], a[1]]);
    }
  }
  const heads = [...svg.querySelectorAll('text')].map(t => t.textContent);
  return {leaves, joints, cells, heads};
})()
"""


@pytest.mark.parametrize("report", ["report_3", "fixture_report", "report_12", "report_50"])
def test_dendrogram_leaves_stand_over_their_columns(page: Chromium, request: pytest.FixtureRequest, report: str) -> None:
    """Each leaf of the organs' dendrogram stands over the centre of its column of the ranks grid
    (within a pixel, in order), above the grid, and is joined to the tree."""
    _open(page, request.getfixturevalue(report))
    drawn = page.evaluate(TASK_TREE)
    columns: dict[tuple[float, float], float] = {}
    for left, right, top in drawn["cells"]:
        key = (round(left, 1), round(right, 1))
        columns[key] = min(top, columns.get(key, top))
    spans = sorted(columns)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False)), "cells of a column disagree on its edges"
    centres = [(left + right) / 2 for left, right in spans[:-1]]  # the last column is the consensus: no leaf
    leaves = sorted(drawn["leaves"], key=lambda leaf: leaf["top"][0])
    assert len(leaves) == len(centres) >= 3, (len(leaves), len(centres))
    grid_top = min(columns.values())
    problems = []
    for k, (leaf, centre) in enumerate(zip(leaves, centres, strict=True)):
        (x_top, y_top), (x_bottom, y_bottom) = leaf["top"], leaf["bottom"]
        if max(abs(x_top - centre), abs(x_bottom - centre)) > 1.0:
            problems.append(f"leaf {k + 1} at x {x_top:.1f}, its column's centre at {centre:.1f}")
        if not y_top < y_bottom < grid_top:
            problems.append(f"leaf {k + 1} ({y_top:.1f}-{y_bottom:.1f}) not above the grid (top {grid_top:.1f})")
        if min(abs(x - x_top) + abs(y - y_top) for x, y in drawn["joints"]) > 1.0:
            problems.append(f"leaf {k + 1} at ({x_top:.1f}, {y_top:.1f}) joins no link of the tree")
    assert not problems, "\n".join(problems)
