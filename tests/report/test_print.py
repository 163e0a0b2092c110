"""The report printed by a real headless Chromium (issue 17): every printed page of a long table
starts with its header row (the column names, not a blank row), and a wide table has every column
on paper: a case matrix of 50 algorithms prints all 51 columns.

The pages are printed with the DevTools protocol's Page.printToPDF on A4, as the print dialog does
(a page's CSS may turn a sheet to landscape), and read back with poppler's `pdftotext -bbox`: each
word with its box, so a test can tell the header row at the top of a page from the rows below it.
The PDFs (and a PNG of the second page of each) are kept under ARTIFACTS.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.report import build_report
from tests.report.cdp import Chromium
from tests.report.conftest import ARTIFACTS, browser, debian_tool, store_fixture

ALGORITHMS = tuple(f"team-{i:02d}" for i in range(1, 51))
N_CASES = 60  # 50 x 60 = 3000 cells: the case matrix gets a page of its own, longer than a sheet
A4_INCHES = {"paperWidth": 8.27, "paperHeight": 11.69}
A4_POINTS = (595.0, 842.0)
CASE = re.compile(r"case_\d+")
WORD = re.compile(r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)">(.*?)</word>')
PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', re.S)


@dataclass(frozen=True)
class Word:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str


@dataclass(frozen=True)
class Page:
    number: int
    width: float
    height: float
    words: list[Word]

    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def case_rows(self) -> list[Word]:
        """The words naming a case (the first cell of a row), top to bottom."""
        return sorted((w for w in self.words if CASE.fullmatch(w.text)), key=lambda w: w.y0)

    def above(self, row: Word) -> list[str]:
        """The words wholly above `row` (the header row, at the top of a continued table)."""
        return [w.text for w in self.words if w.y1 <= row.y0 + 0.5]

    def beside(self, row: Word) -> list[Word]:
        """The words on the line of `row`, to its right (the other cells of that row)."""
        return sorted((w for w in self.words if w is not row and abs(w.y0 - row.y0) < 1.0 and w.x0 > row.x1),
                      key=lambda w: w.x0)


@pytest.fixture(scope="session")
def pdftotext() -> str:
    """poppler's pdftotext."""
    return debian_tool(lambda: shutil.which("pdftotext"), "poppler-utils", "pdftotext")


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of 50 algorithms x 60 cases (a synthesised store), built once for the module."""
    start = time.perf_counter()
    folder = tmp_path_factory.mktemp("print") / "results"
    store_fixture.make_store(folder, algorithms=ALGORITHMS, n_cases=N_CASES, monitored=ALGORITHMS[:3])
    report = build_report(folder, folder.parent / "wide.html")
    print(f"50 x {N_CASES} store and report in {time.perf_counter() - start:.1f} s")
    return report


@pytest.fixture(scope="module")
def printer(chromium: str) -> Iterator[Chromium]:
    with browser(chromium, timeout_s=120) as opened:
        yield opened


def _print(browser: Chromium, page: Path, name: str, pdftotext: str) -> tuple[list[Page], dict[str, list[str]]]:
    """Print `page` to ARTIFACTS/<name>.pdf on A4; its pages' words, and each table's column names."""
    browser.navigate(page.resolve().as_uri())
    columns = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('table.data')].map(t =>"
        " [t.id, [...t.tHead.rows[0].cells].map(c => c.textContent.trim())]))"
    )
    data = browser.call("Page.printToPDF", **A4_INCHES, preferCSSPageSize=True, printBackground=True)["data"]
    pdf = ARTIFACTS / f"{name}.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.write_bytes(base64.b64decode(data))
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm:  # a look at a continued page (poppler-utils has both)
        subprocess.run([pdftoppm, "-png", "-r", "50", "-f", "2", "-l", "2", "-singlefile", str(pdf),
                        str(ARTIFACTS / f"{name}-page2")], check=True, timeout=120)
    print(f"printed {page.name} to {pdf}")
    out = subprocess.run([pdftotext, "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    pages = []
    for number, (width, height, body) in enumerate(PAGE.findall(out), start=1):
        words = [Word(float(a), float(b), float(c), float(d), html.unescape(t)) for a, b, c, d, t in WORD.findall(body)]
        pages.append(Page(number, float(width), float(height), words))
    assert pages, f"{pdf}: no pages"
    for p in pages:  # A4 sheets, upright or turned
        assert sorted((p.width, p.height)) == pytest.approx(A4_POINTS, abs=2), f"page {p.number}: {p.width} x {p.height} pt"
    return pages, columns


def _words(labels: list[str]) -> Counter[str]:
    return Counter(word for label in labels for word in label.split())


def test_a_printed_case_matrix_of_50_algorithms_has_every_column_and_its_header_on_every_page(
        printer: Chromium, wide_report: Path, pdftotext: str) -> None:
    cases = wide_report.parent / f"{wide_report.stem}-pages" / "cases.html"
    assert cases.is_file(), "a case matrix of 3000 cells gets a page of its own"
    pages, columns = _print(printer, cases, "print-case-matrix-50", pdftotext)
    labels = columns["case-matrix"]
    assert len(labels) == 1 + len(ALGORITHMS) and set(labels[1:]) == set(ALGORITHMS)

    with_rows = [p for p in pages if p.case_rows()]
    assert len(with_rows) >= 2, f"{N_CASES} cases fit one sheet: the matrix is no test of a continued table"
    printed_cases = [w.text for p in with_rows for w in p.case_rows()]
    assert sorted(printed_cases) == [f"case_{i:02d}" for i in range(1, N_CASES + 1)]
    for p in with_rows:
        first = p.case_rows()[0]
        # (a) A page that continues the matrix starts with its header row: the column names, and
        # nothing else above the first row (it printed blank: the names were buttons).
        above = _words(p.above(first))
        if p is with_rows[0]:
            assert not _words(labels) - above, f"page {p.number}: header row incomplete: {_words(labels) - above}"
        else:
            assert above == _words(labels), (
                f"page {p.number} continues the matrix but does not start with its header row: "
                f"missing {sorted(_words(labels) - above)}, extra {sorted(above - _words(labels))}")
        # (b) Every column on paper: the last column's name on every page, and a cell in every
        # algorithm's column on every row (a clipped table printed about 9 of its 51 columns).
        assert labels[-1] in p.text().split(), f"page {p.number}: the last column, {labels[-1]}, is not on paper"
        for row in p.case_rows():
            cells = p.beside(row)
            assert len(cells) == len(ALGORITHMS), (
                f"page {p.number}, {row.text}: {len(cells)} of {len(ALGORITHMS)} algorithm columns on paper")
            assert max(w.x1 for w in cells) <= p.width


def test_a_printed_algorithm_page_repeats_the_header_row_of_its_runs_table(
        printer: Chromium, wide_report: Path, pdftotext: str) -> None:
    page = wide_report.parent / f"{wide_report.stem}-pages" / "team-01.html"
    pages, columns = _print(printer, page, "print-algorithm-page", pdftotext)
    runs = columns["runs"]
    assert runs[-2:] == ["Message", "Log (last lines)"] and len(runs) >= 10  # the log tail last
    assert len(pages) >= 2
    # Sheet 2 continues the runs table (60 runs do not fit one A4 sheet): its header row first.
    second = pages[1]
    rows = second.case_rows()
    assert rows and rows[0].text != "case_01", "sheet 2 does not continue the runs table"
    above = _words(second.above(rows[0]))
    assert above == _words(runs), (
        f"sheet 2 continues the runs table but does not start with its header row: "
        f"missing {sorted(_words(runs) - above)}, extra {sorted(above - _words(runs))}")
    # Every table's every column on paper: each row of the runs table has all its cells, and the
    # organ tables' last column names are printed.
    runs_rows = [row for p in pages for row in p.case_rows() if len(p.beside(row)) == len(runs) - 1]
    assert len(runs_rows) == N_CASES, f"{len(runs_rows)} of {N_CASES} runs printed with all {len(runs)} cells"
    text = Counter(w.text for p in pages for w in p.words)
    for table in ("organ-dsc", "organ-nsd"):
        assert not _words(columns[table][-1:]) - text, f"{table}: its last column, {columns[table][-1]}, is not on paper"


def test_the_printed_leaderboard_repeats_its_header_row_on_its_second_sheet(
        printer: Chromium, wide_report: Path, pdftotext: str) -> None:
    pages, columns = _print(printer, wide_report, "print-report-50", pdftotext)
    labels = columns["leaderboard"]
    # The 50 rows of the leaderboard go on to sheet 2, whose first row is an algorithm's.
    second = pages[1]
    names = sorted((w for w in second.words if w.text in ALGORITHMS), key=lambda w: w.y0)
    assert names, "the leaderboard does not continue on sheet 2"
    above = _words(second.above(names[0]))
    assert above == _words(labels), (
        f"sheet 2 continues the leaderboard but does not start with its header row: "
        f"missing {sorted(_words(labels) - above)}, extra {sorted(above - _words(labels))}")
    # Every column of every table on paper: each table's last column name is printed.
    text = Counter(w.text for p in pages for w in p.words)
    for table, names_ in columns.items():
        assert not _words(names_[-1:]) - text, f"{table}: its last column, {names_[-1]}, is not on paper"
