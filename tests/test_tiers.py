"""The test suite's tiers: tests/conftest.py marks Docker and browser tests, the fast tier leaves them
out; under xdist a module's tests share one worker; the benchmark runs pytest as the Makefile does."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TESTS, file_lock, tier_markers

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


# Loaded into the collecting pytest: every test it collects, with the markers `-m` matched it by, and
# whether `-m` kept it.
PROBE = """\
import json, os

def _write(items, selected):
    with open(os.environ["TIERS_PROBE_OUT"], "a") as out:
        for item in items:
            out.write(json.dumps([item.nodeid, sorted({m.name for m in item.iter_markers()}), selected]) + "\\n")

def pytest_deselected(items):
    _write(items, False)

def pytest_collection_finish(session):
    _write(session.items, True)
"""


Collection = tuple[list[str], dict[str, tuple[set[str], bool]]]  # ids printed; each test's markers, selected


@pytest.fixture(scope="module")
def fast_tier(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """One collection, as the Makefile's test-fast selects (`-m FAST`), of the Docker tests and the
    browser, print, figure and Dask modules: the test ids it printed, and every test collected with
    its markers and whether it was selected."""
    probe = tmp_path_factory.mktemp("probe")
    (probe / "tiers_probe.py").write_text(PROBE)
    env = {**os.environ, "TIERS_PROBE_OUT": str(probe / "items.jsonl"),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(probe), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tiers_probe",
                           "--collect-only", "-m", FAST, "tests/docker", "tests/report/test_browser.py",
                           "tests/report/test_print.py", "tests/report/test_figures_browser.py",
                           "tests/runpath/test_dask_loopback.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    printed = sorted({line.split("[")[0] for line in done.stdout.splitlines() if "::" in line})
    items = {}
    for line in (probe / "items.jsonl").read_text().splitlines():
        nodeid, markers, selected = json.loads(line)
        items[nodeid] = (set(markers), selected)
    return printed, items


def test_the_fast_tier_leaves_out_docker_browser_and_slow_tests_and_keeps_the_rest(fast_tier: Collection) -> None:
    printed, items = fast_tier
    # Of these files only the two figure tests that open no browser are in the fast tier.
    assert printed == sorted({nodeid.split("[")[0] for nodeid, (_, selected) in items.items() if selected}) == [
        "tests/report/test_figures_browser.py::test_overlap_px_of_rectangles_and_rotated_rectangles",
        "tests/report/test_figures_browser.py::test_the_public_edition_of_50_algorithms_names_no_case",
    ]


def test_every_docker_test_is_marked_docker(fast_tier: Collection) -> None:
    _, items = fast_tier
    docker = {nodeid: markers for nodeid, (markers, _) in items.items() if nodeid.startswith("tests/docker/")}
    assert len({nodeid.split("[")[0] for nodeid in docker}) > 10
    assert [nodeid for nodeid, markers in docker.items() if "docker" not in markers] == []  # `-m docker` selects each


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


def test_under_the_makefiles_xdist_options_each_module_runs_on_one_worker(tmp_path: Path) -> None:
    """What the Docker and report modules rely on: their module-scoped images, containers and
    reports made once, on one worker; and two modules do run on two workers side by side."""
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (test extra: pip install -e '.[test]')")
    body = ("import os, time\nimport pytest\n\n@pytest.mark.parametrize('i', range(6))\ndef test_t(i):\n"
            "    time.sleep(0.05)\n    with open(os.environ['WHERE'], 'a') as out:\n"
            "        out.write(f\"{__name__} {os.environ['PYTEST_XDIST_WORKER']}\\n\")\n")
    for name in ("test_one", "test_two", "test_three"):
        (tmp_path / f"{name}.py").write_text(body)
    where = tmp_path / "where.txt"
    # Hypothesis' plugin (most of a pytest start: it imports hypothesis) is left out of its three processes.
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                           "-n", "2", *_bench_module().XDIST, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "WHERE": str(where)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "18 passed" in done.stdout.splitlines()[-1]
    workers: dict[str, set[str]] = {}
    for line in where.read_text().splitlines():
        module, worker = line.split()
        workers.setdefault(module, set()).add(worker)
    assert sorted(workers) == ["test_one", "test_three", "test_two"]
    assert all(len(used) == 1 for used in workers.values()), workers
    assert len(set().union(*workers.values())) == 2, workers


def test_the_file_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "base.lock"
    probe = ("import fcntl, sys; h = open(sys.argv[1], 'a')\n"
             "try:\n    fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n    print('held')")

    def other_process() -> str:
        return subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()

    with file_lock(lock):
        assert other_process() == "held"
    assert other_process() == "free"


def test_the_benchmark_runs_pytest_with_the_makefiles_xdist_options() -> None:
    makefile = (REPO / "Makefile").read_text()
    jobs = re.search(r"^TEST_JOBS \?= (\S+)$", makefile, re.MULTILINE)
    assert jobs is not None and jobs.group(1) == _bench_module().DEFAULT_JOBS
    xdist = re.search(r"^XDIST := -n \$\(TEST_JOBS\) (.+)$", makefile, re.MULTILINE)
    assert xdist is not None
    assert tuple(xdist.group(1).split()) == _bench_module().XDIST
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest -q \$\(XDIST\)$", makefile, re.MULTILINE)
    assert re.search(rf'^test-fast: .*\n\t\$\(BIN\)/python -m pytest -q \$\(XDIST\) -m "{FAST}"$', makefile, re.MULTILINE)


def test_the_benchmark_puts_each_tier_beside_its_goal() -> None:
    bench = _bench_module()
    tier = bench.Tier("fast tier", 90.0, 0, "", {"passed": 1150, "deselected": 152})
    assert bench.describe(tier, 120.0) == ("fast tier: 90.0 s (1.5 min), 1150 tests run (1150 passed, 152 deselected); "
                                           "goal < 120 s: 0.75 x the goal, met")
    slow = bench.Tier("full suite", 600.0, 1, "", {"passed": 1298, "failed": 1})
    assert bench.describe(slow, 480.0).endswith("1299 tests run (1298 passed, 1 failed); goal < 480 s: 1.25 x the goal, NOT met")
