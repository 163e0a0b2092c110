"""Error detection: components, touching, undefined figures, Table 1, Spearman, the queue's share."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.attention import (
    ALL_ORGANS,
    detect_errors,
    detection_table,
    evaluate_case,
    format_table1,
    priority_check,
    spearman,
    table1,
)

SHAPE = (20, 20, 12)


def box(*ranges: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[tuple(slice(a, b) for a, b in ranges)] = True
    return mask


def test_hand_computed_case() -> None:
    gt = box((2, 10), (2, 10), (2, 8))  # 8 x 8 x 6 = 384 voxels
    pseudo = gt.copy()
    pseudo[2:5, 2:5, 2:5] = False  # false negative: 27 voxels
    pseudo[15, 15, 5] = True  # a one-voxel false positive: ignored below 10 voxels
    attention = box((1, 4), (1, 4), (1, 4)) | box((15, 18), (2, 4), (9, 11))  # 27 + 12 voxels
    got = detect_errors(gt, pseudo, attention, min_error_voxels=10)
    assert got["error_voxels"] == 28
    assert got["significant_error_voxels"] == 27
    assert (got["error_components"], got["ignored_error_components"], got["detected_error_components"]) == (1, 1, 1)
    assert (got["attention_components"], got["attention_components_on_error"]) == (2, 1)
    assert got["sensitivity"] == 1.0
    assert got["precision"] == 0.5
    # attention & error: [2:4]^3 = 8 voxels; |A| = 39, |E| = 28
    assert got["voxel_sensitivity"] == pytest.approx(8 / 28)
    assert got["voxel_precision"] == pytest.approx(8 / 39)
    assert got["voxel_dice"] == pytest.approx(16 / 67)


def test_components_are_26_connected() -> None:
    gt = np.zeros(SHAPE, bool)
    pseudo = gt.copy()
    pseudo[5, 5, 5] = pseudo[6, 6, 6] = True  # touch at a corner only
    got = detect_errors(gt, pseudo, np.zeros(SHAPE, bool), min_error_voxels=2)
    assert got["error_components"] == 1  # one component of 2 voxels (6-connectivity: two of 1, both ignored)
    assert got["sensitivity"] == 0.0


def test_touching_means_sharing_a_voxel() -> None:
    gt = box((5, 10), (5, 10), (3, 8))
    pseudo = np.zeros(SHAPE, bool)
    beside = box((10, 12), (5, 10), (3, 8))  # adjacent to the missed organ, not on it
    got = detect_errors(gt, pseudo, beside, min_error_voxels=1)
    assert got["detected_error_components"] == 0 and got["sensitivity"] == 0.0
    assert got["precision"] == 0.0


def test_undefined_figures_are_nan_not_0_or_1() -> None:
    gt = box((5, 10), (5, 10), (3, 8))
    none = np.zeros(SHAPE, bool)
    perfect = detect_errors(gt, gt, none)
    for figure in ("sensitivity", "precision", "voxel_sensitivity", "voxel_precision", "voxel_dice"):
        assert math.isnan(perfect[figure]), figure
    flagged = detect_errors(gt, gt, box((1, 3), (1, 3), (1, 3)))
    assert math.isnan(flagged["sensitivity"]) and flagged["precision"] == 0.0
    assert math.isnan(flagged["voxel_sensitivity"]) and flagged["voxel_precision"] == 0.0 and flagged["voxel_dice"] == 0.0
    missed = detect_errors(gt, none, none, min_error_voxels=1)
    assert missed["sensitivity"] == 0.0 and math.isnan(missed["precision"])
    # Only small specks: nothing to detect, sensitivity undefined, the voxel figures still count them.
    specks = detect_errors(none, box((1, 2), (1, 2), (1, 2)), none, min_error_voxels=2)
    assert specks["error_components"] == 0 and specks["ignored_error_components"] == 1
    assert math.isnan(specks["sensitivity"]) and specks["voxel_sensitivity"] == 0.0


def test_bad_arguments_say_what_is_wrong() -> None:
    m = np.zeros((3, 3, 3), bool)
    with pytest.raises(ValueError, match=r"shapes differ: ground truth \(3, 3, 3\), pseudo label \(3, 3, 4\)"):
        detect_errors(m, np.zeros((3, 3, 4), bool), m)
    with pytest.raises(ValueError, match="min_error_voxels = 0"):
        detect_errors(m, m, m, min_error_voxels=0)
    with pytest.raises(ValueError, match="organ 'duodenum' has no label value"):
        evaluate_case(m.astype(np.uint8), m.astype(np.uint8), {"duodenum": m}, labels={"liver": 1})


def test_evaluate_case_uses_the_organs_label_values() -> None:
    gt = np.zeros(SHAPE, np.uint8)
    gt[2:8, 2:8, 2:8] = 1
    gt[12:18, 12:18, 2:8] = 3
    pseudo = gt.copy()
    pseudo[12:18, 12:18, 2:8] = 0  # spleen missed
    attention = {"liver": np.zeros(SHAPE, bool), "spleen": gt == 3}
    records = evaluate_case(gt, pseudo, attention, labels={"liver": 1, "spleen": 3}, case="c1")
    assert [(r["case"], r["organ"]) for r in records] == [("c1", "liver"), ("c1", "spleen")]
    assert math.isnan(records[0]["sensitivity"])
    assert records[1]["sensitivity"] == 1.0 and records[1]["voxel_dice"] == 1.0


def records() -> pd.DataFrame:
    nan = math.nan
    rows = [
        ("a", "liver", 1.0, 0.5), ("b", "liver", 0.5, nan), ("c", "liver", nan, 1.0),
        ("a", "spleen", 0.0, 0.0), ("b", "spleen", nan, nan), ("c", "spleen", 1.0, 1.0),
    ]
    table = pd.DataFrame(rows, columns=["case", "organ", "sensitivity", "precision"])
    for figure in ("voxel_sensitivity", "voxel_precision", "voxel_dice"):
        table[figure] = 0.25
    table["error_voxels"] = [10, 0, 5, 3, 0, 100]
    return table


def test_table1_means_and_sds_leave_undefined_values_out() -> None:
    summary = table1(records()).set_index("organ")
    assert list(summary.index) == ["liver", "spleen", ALL_ORGANS]
    liver = summary.loc["liver"]
    assert liver["sensitivity_n"] == 2 and liver["sensitivity_mean"] == 0.75
    assert liver["sensitivity_sd"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert liver["precision_n"] == 2 and liver["precision_mean"] == 0.75
    every = summary.loc[ALL_ORGANS]
    assert every["cases"] == 3 and every["sensitivity_n"] == 4
    assert every["sensitivity_mean"] == pytest.approx(2.5 / 4)
    one = table1(records().iloc[[0]]).set_index("organ").loc["liver"]
    assert one["sensitivity_mean"] == 1.0 and math.isnan(one["sensitivity_sd"])


def test_format_table1_reads_like_the_paper() -> None:
    text = format_table1(table1(records())).set_index("organ")
    assert text.loc["liver", "component_sensitivity"] == "0.75 ± 0.35"
    single = format_table1(table1(records().iloc[[0]])).set_index("organ")
    assert single.loc["liver", "component_sensitivity"] == "1.00"
    empty = records().iloc[[1]].assign(precision=math.nan)
    assert format_table1(table1(empty)).set_index("organ").loc["liver", "component_precision"] == "-"


def test_detection_table_keeps_nan() -> None:
    table = detection_table([{"case": "a", "organ": "liver", "sensitivity": math.nan}])
    assert table["sensitivity"].isna().all()


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.integers(0, 6, 15).astype(float)
        y = x + rng.integers(0, 4, 15)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_priority_check_share_and_correlation() -> None:
    priority = pd.DataFrame({"rank": [1, 2, 3, 4], "case": ["c", "a", "b", "d"], "attention_voxels": [90, 50, 20, 10],
                             "in_queue": [True, False, False, False]})
    check = priority_check(priority, records())  # error voxels per case: a 13, b 0, c 105; d has no ground truth
    assert (check["cases"], check["queue_cases"]) == (3, 1)
    assert check["error_voxels"] == 118
    assert check["share_in_queue"] == pytest.approx(105 / 118)
    assert check["best_share"] == pytest.approx(105 / 118)
    assert check["spearman"] == pytest.approx(1.0)
    none = priority_check(priority, records().assign(error_voxels=0))
    assert math.isnan(none["share_in_queue"]) and math.isnan(none["spearman"])
