"""The cnn segmenter run as the local runner would: its own process, on a phantom case."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.algorithms.contract import ALGORITHMS, check_label_map, check_probabilities, liver_dsc, phantom_run, run_predict

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the cnn segmenter's runtime)")

ALGORITHM = ALGORITHMS / "cnn"


def _grid() -> ModuleType:
    """The algorithm's own grid.py, loaded from its folder (algorithms are not packages)."""
    spec = importlib.util.spec_from_file_location("cnn_grid", ALGORITHM / "grid.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _predict(input_dir: Path, output_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_predict("cnn", input_dir, output_dir, *args)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    return phantom_run(tmp_path_factory, "cnn", seed=0, args=("--device", "cpu"))


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
    assert liver_dsc(label, out) > 0.8


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu is installed here")
def test_cuda_without_onnxruntime_gpu_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "case_0000.nii.gz").write_bytes(b"")  # the device is chosen before the image is read
    proc = _predict(tmp_path / "input", tmp_path / "output", "--device", "cuda")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("error: --device cuda: this onnxruntime has no CUDA execution provider")
    assert not any((tmp_path / "output").iterdir())


@pytest.mark.parametrize("images", [0, 2])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, images: int) -> None:
    (tmp_path / "input").mkdir()
    for i in range(images):
        (tmp_path / "input" / f"case_{i}_0000.nii.gz").write_bytes(b"")
    proc = _predict(tmp_path / "input", tmp_path / "output")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "expected exactly one <case>_0000.nii.gz" in errors[0]


def test_sliding_window_blends_back_a_pointwise_network_exactly() -> None:
    """Many windows, overlaps and padding: with a network that looks at one voxel at a time, the
    Gaussian-blended result must equal running it on the whole volume."""
    grid = _grid()
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 50, 37, 21)).astype(np.float32)
    mix = rng.normal(0, 3, (grid.N_CLASSES, 2)).astype(np.float32)

    def pointwise(patch: np.ndarray) -> np.ndarray:
        logits = np.einsum("kc,nc...->nk...", mix, patch)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    calls = []

    def network(patch: np.ndarray) -> np.ndarray:
        calls.append(patch.shape)
        return pointwise(patch)

    out = grid.sliding_window(x, network, patch=(16, 16, 24))
    assert len(calls) > 8 and all(shape == (1, 2, 16, 16, 24) for shape in calls)
    np.testing.assert_allclose(out, pointwise(x[None])[0], atol=1e-5)


def test_block_interpolation_matches_the_whole_volume() -> None:
    grid = _grid()
    rng = np.random.default_rng(4)
    work = rng.uniform(0, 1, (19, 23, 9)).astype(np.float32)
    shape = (61, 70, 14)
    whole = grid.resample(work, shape, antialias=False)
    region, values = grid.interpolate_block(work[4:11, 0:8, 3:9], (4, 0, 3), work.shape, shape)
    assert values.shape == whole[region].shape and values.size > 0
    np.testing.assert_allclose(values, whole[region], atol=1e-6)
