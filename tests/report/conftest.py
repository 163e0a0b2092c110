"""Fixtures of the report tests: the committed results store, built reports, headless Chromium."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.report import build_report, figures, svgplot
from harness.report.drawing import Drawer
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


# Figures drawn once per test process (xdist worker) for every distinct input ------------------------
#
# The report tests build the same store's report again and again (other config, other edition, a
# table changed, a note planted): most of those builds draw figures from exactly the same tables,
# and drawing (matplotlib) is most of a build's time. Every figure is a pure function of its
# arguments (`figures`, `svgplot`: no disk, no clock, no global state; same input, same bytes is
# tested on its own), so a figure function called with arguments that pickle to the same bytes as
# an earlier call's is given that call's SVG instead of being drawn again. Anything else a Drawer
# runs (the algorithm pages: they read the templates) is run every time. A test about drawing
# itself (determinism, workers) asks for `fresh_drawings`.
FIGURE_MODULES = (figures.__name__, svgplot.__name__)
_drawings: dict[bytes, str] = {}
_memo_on = [True]


def _figure_key(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """The memo key of a figure call, or None for a call that is not a figure module's own function."""
    module = sys.modules.get(getattr(fn, "__module__", ""))
    if module is None or module.__name__ not in FIGURE_MODULES or getattr(module, fn.__qualname__, None) is not fn:
        return None
    try:
        text = pickle.dumps((module.__name__, fn.__qualname__, args, sorted(kwargs.items())), protocol=5)
    except Exception:  # an argument that does not pickle: drawn every time
        return None
    return hashlib.sha256(text).digest()


_draw = Drawer.draw


def _memo_draw(self: Drawer, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
    key = _figure_key(fn, args, kwargs) if _memo_on[0] else None
    if key is None:
        return _draw(self, fn, *args, **kwargs)
    if key in _drawings:
        done: Future[Any] = Future()
        done.set_result(_drawings[key])
        return done
    future = _draw(self, fn, *args, **kwargs)

    def keep(f: Future[Any]) -> None:
        if not f.cancelled() and f.exception() is None:
            _drawings[key] = f.result()

    future.add_done_callback(keep)
    return future


# Only while a test of this folder is set up, run and torn down (its session fixtures included):
# these hooks are called for the items under tests/report alone.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    Drawer.draw = _memo_draw  # type: ignore[method-assign]
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    Drawer.draw = _draw  # type: ignore[method-assign]


@pytest.fixture
def fresh_drawings() -> Iterator[None]:
    """Every figure of this test drawn anew (the session's drawings neither used nor added to)."""
    _memo_on[0] = False
    try:
        yield
    finally:
        _memo_on[0] = True


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
