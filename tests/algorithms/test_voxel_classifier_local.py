"""The voxel-classifier segmenter run as the local runner runs it: predict.py in its own process.

It needs the scikit-learn version its model was trained with (pinned in its requirements.txt);
without it the tests are skipped, saying which version to install.
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from tests.algorithms.contract import ALGORITHMS, check_label_map, check_probabilities, liver_dsc, phantom_run

ALGORITHM = ALGORITHMS / "voxel-classifier"


def _pinned_sklearn() -> str:
    text = (ALGORITHM / "requirements.txt").read_text(encoding="utf-8")
    pin = re.search(r"^scikit-learn==(\S+)", text, re.MULTILINE)
    assert pin is not None, "algorithms/voxel-classifier/requirements.txt pins no scikit-learn"
    return pin.group(1)


def _installed_sklearn() -> str | None:
    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None


pytestmark = pytest.mark.skipif(
    _installed_sklearn() != _pinned_sklearn(),
    reason=f"needs scikit-learn=={_pinned_sklearn()} (algorithms/voxel-classifier/requirements.txt), "
    f"found {_installed_sklearn()}; pip install scikit-learn=={_pinned_sklearn()}",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """Case 0 of the default evaluation set (seed 0)."""
    return phantom_run(tmp_path_factory, "voxel-classifier", seed=0)


def test_exits_zero_and_logs_device_and_timings(run) -> None:
    *_, proc = run
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in proc.stderr
    assert re.search(r"done: [\d.]+ s, peak memory \d+ MB", proc.stderr), proc.stderr


def test_label_map_is_uint8_on_the_input_grid(run) -> None:
    image, _, out, _ = run
    check_label_map(image, out)


def test_probabilities_are_thirteen_uint8_maps_that_threshold_back_to_the_label_map(run) -> None:
    image, _, out, _ = run
    check_probabilities(image, out)


def test_liver_dice_above_0_8(run) -> None:
    _, label, out, _ = run
    assert liver_dsc(label, out) > 0.8
