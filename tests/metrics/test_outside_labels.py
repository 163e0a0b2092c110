"""Label values outside a profile, as each built-in profile's official code treats them: FLARE's
script compares its own labels only, so a 14 or 20 in a prediction (a lesion label) is background
there; harness scores the case the same way and records a warning."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage

from harness.models import CaseStatus, OutsideLabels
from harness.profiles import BUILTIN_PROFILES, load_profile
from harness.scoring import CaseJob, score_one
from tests.conftest import write_nifti
from tests.metrics.conftest import random_blob
from tests.metrics.test_case_profiles import flare_script_reference

SPACING = (0.8, 0.8, 2.5)


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four organs; the prediction shifted, part of its liver written as 14 and an island of 20."""
    rng = np.random.default_rng(seed)
    shape = (40, 36, 20)
    gt = np.zeros(shape, np.uint8)
    for label, fill in ((1, 0.12), (2, 0.03), (3, 0.03), (5, 0.02)):
        gt[random_blob(rng, shape, fill=fill) & (gt == 0)] = label
    pred = np.zeros_like(gt)
    for label in (1, 2, 3, 5):
        pred[ndimage.binary_dilation(gt == label) & (pred == 0) if label == 1 else (gt == label)] = label
    liver = np.argwhere(pred == 1)
    half = liver[liver[:, 0] < np.median(liver[:, 0])]
    pred[tuple(half.T)] = 14  # a lesion label over half of the liver
    pred[0:3, 0:3, 0:3] = 20
    return gt, pred


@pytest.mark.parametrize("seed", range(3))
def test_outside_labels_in_a_prediction_score_as_the_official_script(sd: ModuleType, tmp_path: Path, seed: int) -> None:
    gt, pred = _case(seed)
    profile = load_profile("flare22")
    job = CaseJob("c", write_nifti(tmp_path / "gt.nii.gz", gt, SPACING), None,
                  write_nifti(tmp_path / "pred.nii.gz", pred, SPACING))
    result = score_one(job, profile)
    assert result.status == CaseStatus.OK
    assert result.message == f"{job.pred}: label values 14, 20 are not in profile flare22; counted as background " \
                             "(the profile's outside_labels rule)"
    spacing = tuple(np.float32(s) for s in SPACING)  # the header's zooms, as the script reads them
    reference = flare_script_reference(sd, gt, pred, spacing, profile)  # the raw prediction, 14 and 20 kept
    ours = {s.organ: s for s in result.scores}
    for organ, (dsc, nsd, _) in reference.items():
        assert (ours[organ].dsc, ours[organ].nsd) == (dsc, nsd), organ
    assert 0.2 < ours["liver"].dsc < 0.8 and ours["liver"].nsd > 0  # a real partial liver, not a trivial 0 or 1


def test_outside_labels_under_a_refusing_profile_are_invalid(tmp_path: Path) -> None:
    gt, pred = _case(0)
    job = CaseJob("c", write_nifti(tmp_path / "gt.nii.gz", gt), None, write_nifti(tmp_path / "pred.nii.gz", pred))
    result = score_one(job, load_profile("strict"))
    assert result.status == CaseStatus.INVALID_LABELS and "label values 14, 20 are not in profile strict" in result.message
    assert all(math.isnan(s.dsc) for s in result.scores)


def test_outside_labels_in_the_ground_truth_are_background_with_a_warning(sd: ModuleType, tmp_path: Path) -> None:
    gt, pred = _case(1)
    gt_raw = gt.copy()
    gt_raw[30:34, 30:34, 10:12] = 14  # a lesion in the ground truth, outside flare22
    profile = load_profile("flare22")
    job = CaseJob("c", write_nifti(tmp_path / "gt.nii.gz", gt_raw, SPACING), None,
                  write_nifti(tmp_path / "pred.nii.gz", np.where(pred > 13, 0, pred).astype(np.uint8), SPACING))
    result = score_one(job, profile)
    assert result.status == CaseStatus.OK and f"{job.label}: label values 14 are not in profile flare22" in result.message
    reference = flare_script_reference(sd, gt_raw, np.where(pred > 13, 0, pred), tuple(np.float32(s) for s in SPACING),
                                       profile)
    assert {s.organ: (s.dsc, s.nsd) for s in result.scores} == {k: v[:2] for k, v in reference.items()}


def test_each_builtin_profile_states_its_rule_and_where_it_comes_from() -> None:
    """The rule is chosen from each challenge's official code and said so in the profile file."""
    from importlib import resources

    expected = {"flare22": OutsideLabels.BACKGROUND, "flare23": OutsideLabels.BACKGROUND, "word": OutsideLabels.BACKGROUND,
                "brats2023": OutsideLabels.BACKGROUND, "kits23": OutsideLabels.BACKGROUND}
    for name in BUILTIN_PROFILES:
        assert load_profile(name).outside_labels is expected.get(name, OutsideLabels.REFUSE), name
        text = resources.files("harness.profiles").joinpath(f"{name}.toml").read_text()
        assert "# Label values outside this profile" in text and f'outside_labels = "{expected.get(name, "refuse")}"' in text
