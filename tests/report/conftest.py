"""Fixtures of the report tests: the committed results store, built reports, headless Chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from harness.report import build_report
from tests.report.cdp import Chromium

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_STORE = REPO_ROOT / "tests" / "fixtures" / "store"
# Kept after the run (gitignored: .cache/); override with HARNESS_TEST_ARTIFACTS.
ARTIFACTS = Path(os.environ.get("HARNESS_TEST_ARTIFACTS", REPO_ROOT / ".cache" / "test-artifacts"))


def _load_fixture_module() -> ModuleType:
    path = REPO_ROOT / "tests" / "fixtures" / "make_store_fixture.py"
    spec = importlib.util.spec_from_file_location("make_store_fixture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


store_fixture = _load_fixture_module()


def copy_fixture(target: Path) -> Path:
    """A private copy of the committed store (opening a WAL store writes beside it)."""
    shutil.copytree(FIXTURE_STORE, target)
    return target


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return copy_fixture(tmp_path / "results")


@pytest.fixture(scope="session")
def fixture_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the committed fixture store, built once for the session."""
    folder = copy_fixture(tmp_path_factory.mktemp("fixture") / "results")
    return build_report(folder, folder / "report.html")


# A challenge-sized field (issue 17: figures drawn for 3 and for 50 algorithms alike); 30 cases keep
# the store quick to write and rank while every figure is as crowded as at 200 cases.
ALGORITHMS_50 = tuple(f"team-{i:02d}" for i in range(1, 51))


@pytest.fixture(scope="session")
def store_50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthesised store of 50 algorithms x 30 cases (three monitored), written once for the session."""
    folder = tmp_path_factory.mktemp("store50") / "results"
    return Path(store_fixture.make_store(folder, algorithms=ALGORITHMS_50, n_cases=30, monitored=ALGORITHMS_50[:3]))


@pytest.fixture(scope="session")
def report_50(store_50: Path) -> Path:
    """The organisers' edition of the 50-algorithm report, built once for the session."""
    return build_report(store_50, store_50.parent / "report" / "report.html")


@pytest.fixture(scope="session")
def public_report_50(store_50: Path) -> Path:
    """The public edition of the 50-algorithm report, built once for the session."""
    return build_report(store_50, store_50.parent / "public" / "public.html", public=True)


@pytest.fixture(scope="session")
def report_12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of twelve algorithms (issue 36: the podium's panels begin above ten), 12 cases."""
    folder = store_fixture.make_store(tmp_path_factory.mktemp("store12") / "results", algorithms=ALGORITHMS_50[:12],
                                      n_cases=12, monitored=ALGORITHMS_50[:2])
    return build_report(folder, Path(folder) / "report.html")


@pytest.fixture(scope="session")
def report_3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of three algorithms (the fixture's first three, its failures included)."""
    folder = store_fixture.make_store(tmp_path_factory.mktemp("store3") / "results",
                                      algorithms=("atlas-unet", "classical", "fast-net"))
    return build_report(folder, Path(folder) / "report.html")


def _find_chromium() -> str | None:
    override = os.environ.get("HARNESS_CHROMIUM")
    if override:
        return override
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def debian_tool(find: Callable[[], str | None], package: str, what: str) -> str:
    """A program from Debian's `package`, installed with apt-get when `find()` finds none (CI runs
    as root); a skip naming the package when it is missing and this is not root."""
    found = find()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"{what} is not installed and installing it needs root: run `sudo apt-get install {package}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", package]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # a stale package list: refresh once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    found = find()
    if done.returncode != 0 or not found:
        pytest.fail(f"`{' '.join(command)}` failed (exit {done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium."""
    return debian_tool(_find_chromium, "chromium", "chromium")


@contextmanager
def browser(chromium: str, *, timeout_s: float, domains: tuple[str, ...] = ("Page", "Runtime")) -> Iterator[Chromium]:
    """Headless Chromium at 1366 x 900 with the DevTools `domains` enabled."""
    with Chromium(chromium, width=1366, height=900, timeout_s=timeout_s) as opened:
        for domain in domains:
            opened.call(f"{domain}.enable")
        yield opened
