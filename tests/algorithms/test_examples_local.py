"""The three example segmenters run as the local runner would: predict.py in its own process.

One set of contract checks, parametrised over the algorithms (a phantom case each: the label map on
the input's grid, probabilities that threshold back to it, the liver found, bad input as one line
and exit 2), then the cnn's own sliding-window and interpolation checks. The cnn needs onnxruntime,
the voxel classifier the scikit-learn version its model was trained with (pinned in its
requirements.txt); without them their tests are skipped, saying what to install.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.algorithms.contract import ALGORITHMS, check_label_map, check_probabilities, liver_dsc, phantom_run, run_predict


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _pinned_sklearn() -> str:
    text = (ALGORITHMS / "voxel-classifier" / "requirements.txt").read_text(encoding="utf-8")
    pin = re.search(r"^scikit-learn==(\S+)", text, re.MULTILINE)
    assert pin is not None, "algorithms/voxel-classifier/requirements.txt pins no scikit-learn"
    return pin.group(1)


NEEDS_ONNXRUNTIME = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                       reason="onnxruntime is not installed (the cnn segmenter's runtime)")
NEEDS_SKLEARN = pytest.mark.skipif(
    _installed("scikit-learn") != _pinned_sklearn(),
    reason=f"needs scikit-learn=={_pinned_sklearn()} (algorithms/voxel-classifier/requirements.txt), "
    f"found {_installed('scikit-learn')}; pip install scikit-learn=={_pinned_sklearn()}",
)


@dataclass(frozen=True)
class Example:
    """What differs between the examples: the phantom seed, extra arguments, the lines they log."""

    name: str
    seed: int
    args: tuple[str, ...]
    finished: str  # a regular expression its log must match after a good run
    liver_dsc_min: float
    error_line: str = r"error: "  # how its one error line starts (the voxel classifier prefixes its log lines)
    # Every n-th voxel in-plane (contract.phantom_run): ~5.2 mm instead of ~2.6 mm, a quarter of the
    # voxels. The classical and the voxel classifier work on the input's own grid at either spacing
    # (their block factors are 1), so no code path is skipped; the cnn resamples to 3 mm, so it keeps
    # the full grid (downsampling, not upsampling, is its usual path).
    in_plane_step: int = 1


EXAMPLES = {
    "classical": Example("classical", 99, (), r"timings \(s\):", 0.85, in_plane_step=2),
    "cnn": Example("cnn", 0, ("--device", "cpu"), r"timings \(s\):", 0.8),
    "voxel-classifier": Example("voxel-classifier", 0, (), r"done: [\d.]+ s, peak memory \d+ MB", 0.8,
                                error_line=r"\[voxel-classifier +[\d.]+ s\] error: ", in_plane_step=2),
}
MARKS = {"cnn": [NEEDS_ONNXRUNTIME], "voxel-classifier": [NEEDS_SKLEARN]}


def _params(*names: str) -> list:  # type: ignore[type-arg]
    return [pytest.param(EXAMPLES[name], id=name, marks=MARKS.get(name, [])) for name in names]


ALL = _params("classical", "cnn", "voxel-classifier")
READS_BAD_NIFTI_AS_ONE_LINE = ALL  # each says so in one line (the voxel classifier once gave a traceback)


@pytest.fixture(scope="module", params=ALL)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(example, (image, label, output folder, finished process)) for phantom case 0 of its seed."""
    example: Example = request.param
    return example, phantom_run(tmp_path_factory, example.name, seed=example.seed, args=example.args,
                                in_plane_step=example.in_plane_step)


def test_exits_zero_and_logs_device_and_timings(run) -> None:
    example, (*_, proc) = run
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in proc.stderr
    assert re.search(example.finished, proc.stderr), proc.stderr


def test_label_map_is_uint8_on_the_input_grid(run) -> None:
    _, (image, _, out, _) = run
    check_label_map(image, out)


def test_probabilities_are_thirteen_uint8_maps_that_threshold_back_to_the_label_map(run) -> None:
    _, (image, _, out, _) = run
    check_probabilities(image, out)


def test_liver_overlaps_the_ground_truth(run) -> None:
    example, (_, label, out, _) = run
    assert liver_dsc(label, out) > example.liver_dsc_min


@pytest.mark.parametrize("images", [0, 2])
@pytest.mark.parametrize("example", ALL)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, example: Example, images: int) -> None:
    (tmp_path / "input").mkdir()
    for i in range(images):
        (tmp_path / "input" / f"case_{i}_0000.nii.gz").write_bytes(b"")
    proc = run_predict(example.name, tmp_path / "input", tmp_path / "output", *example.args)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if re.match(example.error_line, line)]
    assert len(errors) == 1 and "expected exactly one <case>_0000.nii.gz" in errors[0], proc.stderr


@pytest.mark.parametrize("example", READS_BAD_NIFTI_AS_ONE_LINE)
def test_unreadable_image_is_reported(tmp_path: Path, example: Example) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "case_0000.nii.gz").write_bytes(b"not a nifti")
    proc = run_predict(example.name, tmp_path / "input", tmp_path / "output", *example.args)
    assert proc.returncode == 2
    assert "unreadable as NIfTI" in proc.stderr.splitlines()[-1]


# The cnn's own parts.


def _cnn_grid() -> ModuleType:
    """The cnn's grid.py, loaded from its folder (algorithms are not packages)."""
    spec = importlib.util.spec_from_file_location("cnn_grid", ALGORITHMS / "cnn" / "grid.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_cuda_provider() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@NEEDS_ONNXRUNTIME
@pytest.mark.skipif(_has_cuda_provider(), reason="onnxruntime-gpu is installed here")
def test_cnn_cuda_without_onnxruntime_gpu_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "case_0000.nii.gz").write_bytes(b"")  # the device is chosen before the image is read
    proc: subprocess.CompletedProcess[str] = run_predict("cnn", tmp_path / "input", tmp_path / "output", "--device", "cuda")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("error: --device cuda: this onnxruntime has no CUDA execution provider")
    assert not any((tmp_path / "output").iterdir())


def test_cnn_sliding_window_blends_back_a_pointwise_network_exactly() -> None:
    """Many windows, overlaps and padding: with a network that looks at one voxel at a time, the
    Gaussian-blended result must equal running it on the whole volume."""
    grid = _cnn_grid()
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


def test_cnn_block_interpolation_matches_the_whole_volume() -> None:
    grid = _cnn_grid()
    rng = np.random.default_rng(4)
    work = rng.uniform(0, 1, (19, 23, 9)).astype(np.float32)
    shape = (61, 70, 14)
    whole = grid.resample(work, shape, antialias=False)
    region, values = grid.interpolate_block(work[4:11, 0:8, 3:9], (4, 0, 3), work.shape, shape)
    assert values.shape == whole[region].shape and values.size > 0
    np.testing.assert_allclose(values, whole[region], atol=1e-6)
