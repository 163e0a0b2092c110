"""The report in a real headless Chromium (Debian's package), driven over the DevTools protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.report.cdp import Chromium
from tests.report.conftest import ARTIFACTS, browser

SCREENSHOT = ARTIFACTS / "report-top.png"


@pytest.fixture(scope="module")
def page(chromium: str) -> Iterator[Chromium]:
    with browser(chromium, timeout_s=60, domains=("Page", "Runtime", "Log", "Network")) as opened:
        yield opened


def _open(page: Chromium, report: Path) -> int:
    """Load the report afresh; returns the index of its first event in `page.events`."""
    start = len(page.events)
    page.navigate(report.resolve().as_uri())
    page.drain(0.5)  # late errors or requests after the load event
    return start


def test_renders_without_console_errors_or_network_requests(page: Chromium, fixture_report: Path) -> None:
    start = _open(page, fixture_report)
    events = page.events[start:]
    url = fixture_report.resolve().as_uri()
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requests == [url], f"the page requested {requests}"
    errors = [e["params"] for e in events if e["method"] == "Runtime.exceptionThrown"]
    errors += [e["params"] for e in events if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")]
    errors += [e["params"]["entry"] for e in events if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
    assert not errors
    # It rendered: the title, the leaderboard's rows and every figure laid out with a size.
    assert page.evaluate("document.title") == "Leaderboard \u2013 flare22"
    assert page.evaluate("document.querySelectorAll('#leaderboard tbody tr').length") == 4
    sizes = page.evaluate("[...document.querySelectorAll('svg.figure')].map(s => s.getBoundingClientRect().width)")
    figures = fixture_report.read_text(encoding="utf-8").count('<figure id="fig-')
    assert figures >= 14 and len(sizes) == figures and min(sizes) > 100  # every figure of the page drawn
    # Readable on a laptop: the page does not scroll sideways (wide tables scroll in their own box).
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.evaluate("window.scrollTo(0, 0)")
    shot = page.screenshot(SCREENSHOT)
    print(f"screenshot of the top of the report: {shot}")
    with Image.open(shot) as image:
        assert image.size == (1366, 900)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # not a blank page


def _column(page: Chromium, table: str, index: int) -> list[str]:
    return page.evaluate(
        f"[...document.querySelectorAll('#{table} tbody tr')].map(r => r.cells[{index}].textContent.trim())"
    )


def test_clicking_a_header_sorts_the_table(page: Chromium, fixture_report: Path) -> None:
    _open(page, fixture_report)
    names = _column(page, "leaderboard", 1)
    ranks = _column(page, "leaderboard", 0)
    assert ranks == sorted(ranks, key=int)  # rank order as built

    page.click("#leaderboard thead th:nth-child(2) button")  # Algorithm
    assert _column(page, "leaderboard", 1) == sorted(names)
    assert page.evaluate("document.querySelector('#leaderboard thead th:nth-child(2)').getAttribute('aria-sort')") == "ascending"

    page.click("#leaderboard thead th:nth-child(2) button")
    assert _column(page, "leaderboard", 1) == sorted(names, reverse=True)
    assert page.evaluate("document.querySelector('#leaderboard thead th:nth-child(2)').getAttribute('aria-sort')") == "descending"

    page.click("#leaderboard thead th:nth-child(5) button")  # DSC: numbers, not text; larger is better: best first
    dsc = [float(v.split()[0]) for v in _column(page, "leaderboard", 4)]
    assert dsc == sorted(dsc, reverse=True)
    page.click("#leaderboard thead th:nth-child(5) button")  # again: reversed
    dsc = [float(v.split()[0]) for v in _column(page, "leaderboard", 4)]
    assert dsc == sorted(dsc)
    page.click("#leaderboard thead th:nth-child(7) button")  # time: smaller is better, ascending first
    times = [float(v.split()[0]) for v in _column(page, "leaderboard", 6)]
    assert times == sorted(times)
    page.click("#leaderboard thead th:nth-child(1) button")  # back to rank order
    assert _column(page, "leaderboard", 1) == names

    # Numeric sort with failed runs (key -1): the case matrix's DSC sorts best first, failed runs
    # last; the second click ascending, failed runs first. A missing key would go last either way.
    page.click("#case-matrix thead th:nth-child(2) button")
    column = _column(page, "case-matrix", 1)
    assert column[-1] == "timeout" and [float(v) for v in column[:-1]] == sorted((float(v) for v in column[:-1]), reverse=True)
    page.click("#case-matrix thead th:nth-child(2) button")
    column = _column(page, "case-matrix", 1)
    assert column[0] == "timeout" and [float(v) for v in column[1:]] == sorted(float(v) for v in column[1:])


def test_a_case_matrix_link_opens_the_run_on_its_algorithms_page(page: Chromium, fixture_report: Path) -> None:
    _open(page, fixture_report)
    page.click("#case-matrix a[href='report-pages/fast-net.html#case-case_04']")
    page.drain(1.0)
    assert page.evaluate("location.pathname").endswith("/report-pages/fast-net.html")
    assert page.evaluate("location.hash") == "#case-case_04"
    row = page.evaluate("document.getElementById('case-case_04').parentElement.innerText")
    assert "timeout" in row and "killed after the time limit of 600 s" in row
    assert page.evaluate("document.querySelector('a[href=\"../report.html\"]') !== null")
