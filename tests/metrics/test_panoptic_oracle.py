"""Panoptic quality (RQ, SQ, PQ) and instance-wise DSC against panoptica 2.1.7 (the package itself:
semantic input, connected-components instances, naive threshold matching), on random cases and on
phantoms with a dozen lesions, 2D and 3D, C and Fortran order. Equality is exact: panoptica
rounds nothing, and both sides average the same float64 values in the same order."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from harness.metrics.panoptic import MatchingMetric, PanopticScores, panoptic_quality
from tests.metrics.lesion_cases import perturbed_prediction, random_lesion_masks, tumour_phantom

panoptica = pytest.importorskip("panoptica", reason="panoptica (the oracle, pinned in the test extras) is not installed")


def _reference(gt: np.ndarray, pred: np.ndarray, metric: MatchingMetric, threshold: float):
    from panoptica import ConnectedComponentsInstanceApproximator, InputType, Metric, NaiveThresholdMatching, Panoptica_Evaluator
    from panoptica.metrics import MetricMode

    evaluator = Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=NaiveThresholdMatching(
            matching_metric=Metric.IOU if metric is MatchingMetric.IOU else Metric.DSC, matching_threshold=threshold),
        instance_metrics=[Metric.DSC, Metric.IOU],
        global_metrics=[Metric.DSC],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluator.evaluate(pred.astype(np.uint8), gt.astype(np.uint8), verbose=False)["ungrouped"]
    return result, result.get_list_metric(Metric.DSC, mode=MetricMode.ALL)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _assert_equal(gt: np.ndarray, pred: np.ndarray, metric: MatchingMetric = MatchingMetric.IOU, threshold: float = 0.5) -> PanopticScores:
    ours = panoptic_quality(gt, pred, matching_metric=metric, matching_threshold=threshold)
    ref, ref_dsc = _reference(gt, pred, metric, threshold)
    assert (ours.n_ref_instances, ours.n_pred_instances, ours.tp, ours.fp, ours.fn) == (
        ref.n_ref_instances, ref.n_pred_instances, ref.tp, ref.fp, ref.fn)
    for name in ("rq", "sq", "pq", "sq_dsc", "pq_dsc"):
        assert _same(getattr(ours, name), float(getattr(ref, name))), name
    assert list(ours.instance_dsc) == [float(v) for v in ref_dsc]
    return ours


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", [MatchingMetric.IOU, MatchingMetric.DSC])
def test_phantoms_with_a_dozen_lesions(seed: int, metric: MatchingMetric) -> None:
    rng = np.random.default_rng([39, seed])
    gt = tumour_phantom(rng, (72, 80, 56), n_lesions=12) > 0
    pred = perturbed_prediction(rng, gt.astype(np.uint8), n_false_positives=4) > 0
    if seed % 2:
        gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    ours = _assert_equal(gt, pred, metric)
    assert ours.tp >= 3 and ours.fp >= 1


@pytest.mark.parametrize("seed", range(16))
def test_random_cases(seed: int) -> None:
    """Many small components with ties in IoU: the greedy order decides which pair is matched."""
    rng = np.random.default_rng([40, seed])
    ndim = 2 if seed % 4 == 3 else 3
    shape = tuple(int(n) for n in rng.integers(8, 26 if ndim == 3 else 60, size=ndim))
    gt = random_lesion_masks(rng, shape, fill=rng.uniform(0.03, 0.3))
    pred = random_lesion_masks(rng, shape, fill=rng.uniform(0.03, 0.3))
    if seed % 2:
        pred = np.where(rng.random(shape) < 0.85, gt, pred)
    if seed % 3 == 0:
        gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    threshold = [0.5, 0.3, 0.1, 0.0][seed % 4]
    _assert_equal(gt, pred, [MatchingMetric.IOU, MatchingMetric.DSC][seed % 2], threshold)


def test_threshold_is_inclusive() -> None:
    """IoU exactly 0.5 matches (panoptica compares with >=)."""
    gt = np.zeros((10, 10, 10), dtype=bool)
    gt[2:6, 2:6, 2:4] = True
    pred = np.zeros_like(gt)
    pred[2:6, 2:6, 2:3] = True  # IoU 16 / 32
    ours = _assert_equal(gt, pred)
    assert (ours.tp, ours.sq, ours.rq) == (1, 0.5, 1.0)


@pytest.mark.parametrize(("gt_on", "pred_on"), [(False, False), (True, False), (False, True)])
def test_empty_masks(gt_on: bool, pred_on: bool) -> None:
    gt = np.zeros((8, 8, 8), dtype=bool)
    pred = np.zeros_like(gt)
    gt[1:3, 1:3, 1:3] = gt_on
    pred[4:6, 4:6, 4:6] = pred_on
    ours = _assert_equal(gt, pred)
    if not (gt_on or pred_on):
        assert math.isnan(ours.pq) and math.isnan(ours.rq)
    else:
        assert (ours.rq, ours.sq, ours.pq, ours.sq_dsc) == (0.0, 0.0, 0.0, 0.0)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        panoptic_quality(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool))
