"""A normal install works: the wheel built from the repository carries every module, template,
asset and profile, and the installed `harness` writes a report and scores from another folder.

The wheel is built from the tracked files (a copy, so the repository gets no build/ folder),
installed with `--no-deps` into a fresh venv whose dependencies come from this interpreter's
site-packages (a .pth line: no network, and this checkout's editable install is not on its path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The installed copy as a user has it: neither this checkout on the path nor its templates.
INSTALLED_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_LEADERBOARD_DIR")}


def _tracked_copy(target: Path) -> Path:
    """The tracked files (git ls-files); outside a git checkout, the tree without its build outputs."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    if listed.returncode != 0:
        shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info",
                                                                    "__pycache__", "results"))
        return target
    for rel in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wheel")
    source = _tracked_copy(root / "source")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(root / "dist")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                           "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return wheel, venv


def test_the_wheel_carries_every_module_template_and_profile(installed: tuple[Path, Path]) -> None:
    wheel, venv = installed
    assert wheel.name.startswith("medseg_harness-")  # the distribution's free name, not PyPI's other `harness`
    assert (venv / "bin" / "harness").is_file() and (venv / "bin" / "medseg-harness").is_file()
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in sorted((REPO / "harness").rglob("*.py")):
        assert f"harness/{module.relative_to(REPO / 'harness').as_posix()}" in names, module
    for data in [*sorted((REPO / "harness").rglob("*.toml"))]:
        assert f"harness/{data.relative_to(REPO / 'harness').as_posix()}" in names, data
    for asset in sorted(p for p in (REPO / "leaderboard").iterdir() if p.suffix in (".j2", ".css", ".js")):
        assert f"harness/leaderboard/{asset.name}" in names, asset


def test_the_installed_command_reports_and_scores_from_another_folder(installed: tuple[Path, Path], tmp_path: Path) -> None:
    from harness.data.synth import write_dataset
    from tests.report.conftest import store_fixture

    _, venv = installed
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import harness; print(harness.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True, env=INSTALLED_ENV).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not this checkout
    results = store_fixture.make_store(tmp_path / "results", algorithms=("classical", "fast-net"), n_cases=2, failures=False,
                                       monitored=())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    harness = str(venv / "bin" / "harness")
    report = subprocess.run([harness, "report", "--results", str(results), "--out", "board.html"], capture_output=True,
                            text=True, cwd=elsewhere, timeout=300, env=INSTALLED_ENV)
    assert report.returncode == 0, report.stderr
    assert "<html" in (elsewhere / "board.html").read_text()[:500].lower()
    write_dataset(tmp_path / "data", cases=1, seed=2, size="small")
    shutil.copytree(tmp_path / "data" / "labelsTr", tmp_path / "pred")
    score = subprocess.run([harness, "score", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "data" / "labelsTr"),
                            "--out", "scores.csv"], capture_output=True, text=True, cwd=elsewhere, timeout=300,
                           env=INSTALLED_ENV)
    assert score.returncode == 0, score.stderr
    assert (elsewhere / "scores.csv").read_text().count("\n") == 14  # a header and 13 organs
