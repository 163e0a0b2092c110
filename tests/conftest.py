"""Shared fixtures: small NIfTI files built in tmp_path; the test tiers' markers; a file lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
DOCKER_TESTS = TESTS / "docker"
# A test using one of these fixtures (directly or through another fixture) needs a Docker engine.
DOCKER_FIXTURES = frozenset({"docker_client", "base_image"})
# ...or headless Chromium (tests/report/conftest.py's `chromium`, under `page` and `printer`).
BROWSER_FIXTURES = frozenset({"chromium"})


def tier_markers(path: Path, fixturenames: tuple[str, ...] | list[str]) -> set[str]:
    """The tier markers a test at `path` using `fixturenames` gets: `docker` and/or `browser`."""
    markers = set()
    if path.resolve().is_relative_to(DOCKER_TESTS) or DOCKER_FIXTURES & set(fixturenames):
        markers.add("docker")
    if BROWSER_FIXTURES & set(fixturenames):
        markers.add("browser")
    return markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier (`-m "not docker and not browser and not slow"` is the fast
    tier); explicit markers such as `slow` stay as they are."""
    for item in items:
        for name in sorted(tier_markers(Path(item.path), getattr(item, "fixturenames", ()))):
            item.add_marker(getattr(pytest.mark, name))


CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def harness_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRun:
    """`harness ARGS` run by `harness.cli.main` in this process, for the commands whose process
    boundary is not the point (no interpreter to start, no imports to repeat):
    `harness_cli(*args, cache=None, plain_env=False)` gives (exit status, stdout, stderr). `cache`:
    HARNESS_CACHE for the call; `plain_env`: as from a plain shell, PATH the system's and no other
    HARNESS_ setting. The level that -q/-v set is put back after the test."""
    from harness.cli import main, verbosity

    monkeypatch.setattr(verbosity, "LEVEL", verbosity.LEVEL)

    def run(*args: str, cache: Path | None = None, plain_env: bool = False) -> tuple[int, str, str]:
        with monkeypatch.context() as env:
            if plain_env:
                for key in [k for k in os.environ if k.startswith("HARNESS_")]:
                    env.delenv(key)
                env.setenv("PATH", "/usr/bin:/bin")
            if cache is not None:
                env.setenv("HARNESS_CACHE", str(cache))
            capsys.readouterr()
            with pytest.raises(SystemExit) as stopped:
                main(list(args))
            out, err = capsys.readouterr()
        return int(stopped.value.code or 0), out, err

    return run


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing) across processes: xdist's workers, or two test
    sessions on one Docker engine, make a shared thing (the base image) once, one after the other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_nifti(path: Path, data: np.ndarray, spacing_mm=(0.8, 0.8, 2.5), *, affine: np.ndarray | None = None) -> Path:
    """Write `data` as NIfTI with a diagonal RAS affine of `spacing_mm` (or the given affine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*spacing_mm, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(spacing_mm[: data.ndim])
    nib.save(img, path)
    return path


def toy_labels(seed: int, shape=(24, 22, 12)) -> np.ndarray:
    """A small label map with four boxy organs (liver, right kidney, spleen, aorta) of random extent."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for label, (x, y) in zip((1, 2, 3, 5), ((2, 2), (13, 2), (2, 12), (13, 12)), strict=True):
        dx, dy, dz = rng.integers(4, 8), rng.integers(4, 8), rng.integers(3, 8)
        z = rng.integers(1, shape[2] - dz)
        lab[x : x + dx, y : y + dy, z : z + dz] = label
    return lab


@pytest.fixture
def toy_dataset(tmp_path: Path):
    """A FLARE-layout data set of 5 cases and a folder of slightly wrong predictions."""
    root, pred = tmp_path / "data", tmp_path / "pred"
    for i in range(5):
        lab = toy_labels(i)
        write_nifti(root / "labelsTr" / f"case_{i:02d}.nii.gz", lab)
        write_nifti(root / "imagesTr" / f"case_{i:02d}_0000.nii.gz", (lab * 40).astype(np.int16))
        guess = np.roll(lab, shift=1, axis=i % 3)
        write_nifti(pred / f"case_{i:02d}.nii.gz", guess)
    return root, pred
