"""The classical segmenter run as the local runner would: its own process, on a phantom case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.algorithms.contract import check_label_map, check_probabilities, liver_dsc, phantom_run, run_predict

ALGORITHM = "classical"


def _predict(input_dir: Path, output_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_predict(ALGORITHM, input_dir, output_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    return phantom_run(tmp_path_factory, ALGORITHM, seed=99)


def test_exits_zero_and_logs_the_device(run) -> None:
    *_, proc = run
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in proc.stderr
    assert "timings (s):" in proc.stderr


def test_label_map_is_on_the_input_grid(run) -> None:
    image, _, out, _ = run
    check_label_map(image, out)


def test_probabilities_threshold_back_to_the_label_map(run) -> None:
    image, _, out, _ = run
    check_probabilities(image, out)


def test_liver_overlaps_the_ground_truth(run) -> None:
    _, label, out, _ = run
    assert liver_dsc(label, out) > 0.85


@pytest.mark.parametrize("images", [0, 2])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, images: int) -> None:
    (tmp_path / "input").mkdir()
    for i in range(images):
        (tmp_path / "input" / f"case_{i}_0000.nii.gz").write_bytes(b"")
    proc = _predict(tmp_path / "input", tmp_path / "output")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "expected exactly one <case>_0000.nii.gz" in errors[0]


def test_unreadable_image_is_reported(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "case_0000.nii.gz").write_bytes(b"not a nifti")
    proc = _predict(tmp_path / "input", tmp_path / "output")
    assert proc.returncode == 2
    assert "unreadable as NIfTI" in proc.stderr.splitlines()[-1]
