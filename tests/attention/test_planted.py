"""Phantom cases with errors planted into one segmenter's output, through annotate.py in its own
process, judged with harness.attention.

Three synthetic segmenters see each phantom's ground truth with different blurs and offsets. In
the planted case, `model_a` also misses a part of the liver, sees a false spleen island and calls
the left kidney spleen (an organ swap); models a and b together miss a part of the stomach (so
the averaged pseudo label misses it too). Every case also holds a block where all three models
say both liver and right kidney (an overlap).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from harness.attention import attention_table, detect_errors, evaluate_case, priority_check, priority_list
from harness.attention.io import read_attention, read_pseudo_label
from harness.data.synth import generate_case
from tests.attention.helpers import (
    ATLAS8,
    finish_annotator,
    read_heatmaps,
    read_summaries,
    segmenters_from_label,
    stage_case,
    start_annotator,
)

SEED = 7
PLANTED = 0
CASES = (0, 1, 2, 3)
MIN_ERROR_VOXELS = 100


def block(centre: tuple[int, ...], half: tuple[int, int, int]) -> tuple[slice, ...]:
    return tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half, strict=True))


def deepest(mask: np.ndarray, *, avoid: np.ndarray | None = None) -> tuple[int, ...]:
    """The voxel of `mask` farthest from its boundary (and from `avoid`)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    if avoid is not None:
        depth = np.minimum(depth, ndimage.distance_transform_edt(~avoid))
    return tuple(int(i) for i in np.unravel_index(np.argmax(depth), mask.shape))


def plant_overlap(models: dict, label: np.ndarray) -> tuple[slice, ...]:
    """All three models also say right kidney (p = 200/255) in a block deep inside the liver."""
    liver = label == ATLAS8["liver"]
    region = block(deepest(liver), (3, 3, 2))
    for organs in models.values():
        organs["right_kidney"][region] = np.maximum(organs["right_kidney"][region], 200)
    return region


def plant_errors(models: dict, label: np.ndarray, overlap: tuple[slice, ...]) -> dict[str, tuple[slice, ...]]:
    """Plant the errors; returns the shared miss's block."""
    a = models["model_a"]
    taken = np.zeros(label.shape, bool)
    taken[overlap] = True
    # A missed organ part: a 9x9x5 hole in model_a's liver, away from the overlap block.
    hole = block(deepest(label == ATLAS8["liver"], avoid=taken), (4, 4, 2))
    a["liver"][hole] = 0
    # A false island: spleen where nobody is, far from every organ.
    island = block(deepest(label == 0), (3, 3, 2))
    a["spleen"][island] = 230
    # An organ swap: model_a calls the left kidney spleen.
    a["spleen"] = np.maximum(a["spleen"], a["left_kidney"])
    a["left_kidney"] = np.zeros_like(a["left_kidney"])
    # A miss that two models share: the pseudo label misses it too.
    stomach_part = block(deepest(label == ATLAS8["stomach"]), (3, 3, 2))
    for name in ("model_a", "model_b"):
        models[name]["stomach"][stomach_part] = 0
    return {"shared_miss": stomach_part}


@pytest.fixture(scope="module")
def annotated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("planted")
    out: dict = {"cases": {}}
    started = {}
    for index in CASES:
        case = generate_case(seed=SEED, index=index, size="small")
        models = segmenters_from_label(case.label)
        overlap = plant_overlap(models, case.label)
        clean_a = {organ: q.copy() for organ, q in models["model_a"].items()}
        planted = plant_errors(models, case.label, overlap) if index == PLANTED else {}
        input_dir = stage_case(root / "input" / case.case_id, case.case_id, models, case.affine)
        output_dir = root / "output" / case.case_id
        # Each case's annotator runs in its own process while the next case is staged.
        started[case.case_id] = start_annotator(input_dir, output_dir)
        out["cases"][case.case_id] = {"label": case.label, "models": models, "clean_a": clean_a, "output": output_dir, "index": index,
                                     "planted": planted}
    try:
        for proc in started.values():
            done = finish_annotator(proc)
            assert done.returncode == 0, done.stderr
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out["root"] = root / "output"
    return out


def planted_case(annotated: dict) -> tuple[str, dict]:
    return next((case, info) for case, info in annotated["cases"].items() if info["index"] == PLANTED)


def test_the_binary_map_touches_every_planted_error(annotated: dict) -> None:
    case, info = planted_case(annotated)
    attention = read_attention(info["output"])
    organs_with_errors = []
    for organ in ATLAS8:
        clean = info["clean_a"][organ] >= 128
        planted = info["models"]["model_a"][organ] >= 128
        figures = detect_errors(clean, planted, attention[organ], min_error_voxels=MIN_ERROR_VOXELS)
        if figures["error_components"]:
            organs_with_errors.append(organ)
            assert figures["sensitivity"] == 1.0, (organ, figures)
    # the hole (liver), the island and the swap (spleen, left kidney), the shared miss (stomach)
    assert organs_with_errors == ["liver", "spleen", "stomach", "left_kidney"]


def test_the_planted_case_ranks_first(annotated: dict) -> None:
    case, _ = planted_case(annotated)
    priority = priority_list(attention_table(read_summaries(annotated["root"])))
    assert list(priority["case"])[0] == case
    assert priority["in_queue"].tolist() == [True, False, False, False]
    sizes = priority.set_index("case")["attention_voxels"]
    assert sizes[case] > 2 * sizes.drop(case).max()
    # Its organs for the reviewer: those with planted errors carry the most heat.
    first_organs = priority.iloc[0]["organs"].split(";")
    assert set(first_organs[:2]) <= {"spleen", "left_kidney", "liver", "stomach"}


def model_means(models: dict) -> dict[str, np.ndarray]:
    """Organ -> the models' probabilities averaged in float64 (the reference for the pseudo label)."""
    return {organ: np.mean([m[organ] / 255.0 for m in models.values()], axis=0) for organ in ATLAS8}


@pytest.fixture(scope="module")
def means(annotated: dict) -> dict[str, dict[str, np.ndarray]]:
    """Case -> `model_means` of its models, computed once for the tests below (read only)."""
    return {case: model_means(info["models"]) for case, info in annotated["cases"].items()}


def expected_overlap(means: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where organ c's averaged pseudo label (float64) and another organ's both exceed 0.5."""
    pseudo = {organ: means[organ] > 0.5 for organ in ATLAS8}
    claims = np.sum([p.astype(np.uint8) for p in pseudo.values()], axis=0)
    return {organ: p & (claims >= 2) for organ, p in pseudo.items()}


def test_overlap_is_flagged_exactly_where_two_pseudo_labels_exceed_one_half(annotated: dict, means: dict) -> None:
    for case, info in annotated["cases"].items():
        summary = json.loads((info["output"] / "attention.json").read_text())
        heat = read_heatmaps(info["output"])
        attention = read_attention(info["output"])
        expected = expected_overlap(means[case])
        assert expected["liver"].sum() >= 7 * 7 * 5 - 10 and expected["right_kidney"].sum() >= 7 * 7 * 5 - 10
        for organ, where in expected.items():
            assert summary["organs"][organ]["overlap_voxels"] == int(where.sum()), organ
            assert attention[organ][where].all()
            if where.any():
                # overlap adds 1 to a sum whose other terms stay below 0.87: the hottest voxels are exactly these
                assert heat[organ][where].min() > heat[organ][~where].max(), organ


def test_pseudo_label_is_the_float64_argmax_of_means_above_one_half(annotated: dict, means: dict) -> None:
    for case, info in annotated["cases"].items():
        stacked = np.stack([means[case][organ] for organ in ATLAS8])
        values = np.array(list(ATLAS8.values()), np.uint8)
        expected = np.where(stacked.max(axis=0) > 0.5, values[np.argmax(stacked, axis=0)], 0)
        np.testing.assert_array_equal(read_pseudo_label(info["output"]), expected)


def test_error_detection_finds_the_shared_miss(annotated: dict) -> None:
    case, info = planted_case(annotated)
    pseudo = read_pseudo_label(info["output"])
    attention = read_attention(info["output"])
    miss = info["planted"]["shared_miss"]
    stomach = ATLAS8["stomach"]
    error = (info["label"] == stomach) ^ (pseudo == stomach)
    assert error[miss].sum() >= MIN_ERROR_VOXELS  # the averaged pseudo label misses the block too
    assert attention["stomach"][miss].any()
    records = evaluate_case(info["label"], pseudo, attention, labels=ATLAS8, case=case, min_error_voxels=MIN_ERROR_VOXELS)
    figures = next(r for r in records if r["organ"] == "stomach")
    assert figures["detected_error_components"] >= 1
    # Thin shells where the models' offsets move the boundary are errors too; cleaning hides them.
    assert 0 < figures["sensitivity"] <= 1 and 0 < figures["precision"] <= 1


def test_priority_check_over_the_phantoms(annotated: dict) -> None:
    records = []
    for case, info in annotated["cases"].items():
        records += evaluate_case(info["label"], read_pseudo_label(info["output"]), read_attention(info["output"]), labels=ATLAS8,
                                 case=case, min_error_voxels=MIN_ERROR_VOXELS)
    priority = priority_list(attention_table(read_summaries(annotated["root"])))
    check = priority_check(priority, pd.DataFrame(records))
    assert check["cases"] == 4 and check["queue_cases"] == 1
    assert 0 < check["share_in_queue"] <= check["best_share"] <= 1
    assert -1 <= check["spearman"] <= 1
