"""The test suite's tiers: tests/conftest.py marks Docker and browser tests, the fast tier leaves them out."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TESTS, tier_markers

REPO = TESTS.parent
FAST = "not docker and not browser and not slow"  # the Makefile's test-fast


@pytest.mark.parametrize(
    ("path", "fixtures", "expected"),
    [
        (TESTS / "docker" / "test_hostile.py", ("tmp_path",), {"docker"}),
        (TESTS / "test_store.py", ("tmp_path", "docker_client"), {"docker"}),
        (TESTS / "test_store.py", ("base_image",), {"docker"}),
        (TESTS / "report" / "test_print.py", ("printer", "chromium", "report_50"), {"browser"}),
        (TESTS / "docker" / "test_x.py", ("chromium",), {"docker", "browser"}),
        (TESTS / "report" / "test_figures_browser.py", ("tmp_path",), set()),
        (TESTS / "dockerish" / "test_x.py", (), set()),  # a sibling folder whose name starts the same
    ],
)
def test_tier_markers(path: Path, fixtures: tuple[str, ...], expected: set[str]) -> None:
    assert tier_markers(path, fixtures) == expected


def _collect(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    return sorted({line.split("[")[0] for line in done.stdout.splitlines() if "::" in line})


def test_the_fast_tier_leaves_out_docker_browser_and_slow_tests_and_keeps_the_rest() -> None:
    selected = _collect("-m", FAST, "tests/docker", "tests/report/test_browser.py", "tests/report/test_print.py",
                        "tests/report/test_figures_browser.py", "tests/runpath/test_dask_loopback.py")
    # Of these files only the two figure tests that open no browser are in the fast tier.
    assert selected == [
        "tests/report/test_figures_browser.py::test_overlap_px_of_rectangles_and_rotated_rectangles",
        "tests/report/test_figures_browser.py::test_the_public_edition_of_50_algorithms_names_no_case",
    ]


def test_every_docker_test_is_marked_docker() -> None:
    everything = _collect("tests/docker")
    assert len(everything) > 10
    assert _collect("-m", "docker", "tests/docker") == everything


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_tests", REPO / "benchmarks" / "bench_tests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_tests", module)  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_reads_pytests_last_line() -> None:
    parse = _bench_module().parse_counts
    assert parse("1287 passed, 1 failed, 3 skipped, 152 deselected, 2 warnings in 900.95s (0:15:00)") == {
        "passed": 1287, "failed": 1, "skipped": 3, "deselected": 152, "warnings": 2}
    assert parse("1 failed, 2 passed, 1 error in 3.02s") == {"failed": 1, "passed": 2, "errors": 1}
    assert parse("no tests ran in 0.01s") == {}
