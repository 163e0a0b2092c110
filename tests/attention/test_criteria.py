"""Each criterion of the attention map against hand-computed arrays, and the whole map against an
independent whole-volume float64 oracle (tests/attention/oracle.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.attention.helpers import load_module
from tests.attention.oracle import oracle_annotate, oracle_clean

amap = load_module("attention")


def column(*values: float) -> np.ndarray:
    """Probabilities of N segmenters at one voxel, shaped (N, 1)."""
    return np.array(values, np.float64).reshape(-1, 1)


# --- inconsistency -------------------------------------------------------------------------------
def test_std_is_the_population_std() -> None:
    # mean 0.3; deviations -0.3, 0, 0.3; ddof 0: sqrt(0.18 / 3) = 0.2449..., ddof 1 would be 0.3.
    std = amap.inconsistency(column(0.0, 0.3, 0.6))
    assert std[0] == pytest.approx(math.sqrt(0.06), abs=1e-12)
    assert std[0] != pytest.approx(0.3)


def test_std_of_agreeing_models_is_zero_and_of_a_split_vote_one_half() -> None:
    assert amap.inconsistency(column(0.7, 0.7, 0.7))[0] == pytest.approx(0.0, abs=1e-12)
    assert amap.inconsistency(column(0.0, 1.0))[0] == pytest.approx(0.5)
    assert amap.inconsistency(column(1.0, 1.0, 0.0))[0] == pytest.approx(math.sqrt(2) / 3)


def test_std_in_float32_keeps_the_dtype() -> None:
    std = amap.inconsistency(column(0.0, 0.3, 0.6).astype(np.float32))
    assert std.dtype == np.float32
    assert float(std[0]) == pytest.approx(0.24494897, abs=1e-6)


# --- uncertainty ---------------------------------------------------------------------------------
def test_entropy_is_the_single_term_not_the_binary_entropy() -> None:
    # -0.5 ln 0.5 = 0.34657...; the binary entropy at 0.5 would be ln 2 = 0.6931...
    assert amap.uncertainty(column(0.5, 0.5, 0.5))[0] == pytest.approx(0.5 * math.log(2))
    assert amap.uncertainty(column(1 / math.e, 1 / math.e))[0] == pytest.approx(1 / math.e)  # its maximum


def test_entropy_of_certain_voxels_is_zero_without_nan() -> None:
    terms = amap.entropy_term(np.array([0.0, 1.0, 0.25]))
    assert terms[0] == 0.0 and terms[1] == 0.0
    assert terms[2] == pytest.approx(0.25 * math.log(4))
    assert not np.isnan(amap.uncertainty(column(0.0, 0.0, 1.0))).any()
    # mean of the three terms: (0 + 0.3466 + 0.3662) / 3
    assert amap.uncertainty(column(0.0, 0.5, 0.6))[0] == pytest.approx((0.5 * math.log(2) - 0.6 * math.log(0.6)) / 3)


# --- thresholds (on uint8 inputs, through the whole map; no cleaning so single voxels count) ------
def single_voxel_maps(*q: int, **settings: float) -> object:
    """The maps of one organ on a 1x1x1 volume from uint8 values q (one per segmenter)."""
    arrays = [np.full((1, 1, 1), v, np.uint8) for v in q]
    options = amap.Settings(erosions=0, dilations=0, support_dilations=-1, **settings)
    return amap.annotate(lambda organ: iter(arrays), [("liver", 1)], (1, 1, 1), options).organs["liver"]


def test_std_threshold_is_strict_and_at_0_1() -> None:
    # q = (100, 100, 154): std = 54/255 * sqrt(2)/3 = 0.09983 -> not kept; 155: 0.10168 -> kept.
    assert not single_voxel_maps(100, 100, 154).inconsistency.any()
    assert single_voxel_maps(100, 100, 155).inconsistency.all()


def test_entropy_threshold_is_strict_and_at_0_05() -> None:
    # Identical votes (std 0): -p ln p > 0.05 holds for 0.0110 < p < 0.9488.
    assert not single_voxel_maps(2, 2, 2).uncertainty.any()  # p = 0.00784: 0.0380
    assert single_voxel_maps(3, 3, 3).uncertainty.all()  # p = 0.01176: 0.0523
    assert single_voxel_maps(241, 241, 241).uncertainty.all()  # p = 0.94510: 0.0534
    assert not single_voxel_maps(242, 242, 242).uncertainty.any()  # p = 0.94902: 0.0497


def test_thresholds_are_settings() -> None:
    assert single_voxel_maps(100, 100, 154, std_threshold=0.09).inconsistency.all()
    assert not single_voxel_maps(3, 3, 3, entropy_threshold=0.06).uncertainty.any()


@pytest.mark.parametrize("q", [(13, 64), (14, 65), (17, 68), (64, 25, 64, 5), (108, 108, 141, 69)])
def test_std_at_the_threshold_is_decided_as_in_float64(q: tuple[int, ...]) -> None:
    # Real std exactly 0.1 (|13 - 64| = 51 = 0.1 * 510): float32 and float64 round to opposite
    # sides of 0.1 for these values; the map follows float64.
    expected = bool(np.std(np.array(q) / 255.0) > 0.1)
    naive32 = bool(np.std(np.array(q, np.float32) / np.float32(255)) > np.float32(0.1))
    assert naive32 != expected  # the case is a real trap
    assert bool(single_voxel_maps(*q).inconsistency.all()) == expected


@pytest.mark.parametrize("q", [(161, 103, 160, 86), (234, 151, 77, 48)])
def test_mean_at_the_pseudo_threshold_is_decided_as_in_float64(q: tuple[int, ...]) -> None:
    # Sum 510: mean exactly 0.5 in real numbers; float32 and float64 disagree on "> 0.5".
    arrays = [np.full((1, 1, 1), v, np.uint8) for v in q]
    maps = amap.annotate(lambda organ: iter(arrays), [("liver", 1)], (1, 1, 1))
    assert bool(maps.pseudo_label[0, 0, 0] == 1) == bool((np.array(q) / 255.0).mean() > 0.5)


# --- cleaning: erosions first, then dilations ------------------------------------------------------
def cube(shape: tuple[int, int, int], corner: tuple[int, int, int], side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + side) for c in corner)] = True
    return mask


def test_two_erosions_then_two_dilations_keep_a_5_cube_and_drop_a_4_cube() -> None:
    shape = (20, 12, 12)
    five, four = cube(shape, (2, 3, 3), 5), cube(shape, (12, 3, 3), 4)
    cleaned = amap.clean(five | four)
    np.testing.assert_array_equal(cleaned, five)  # an opening: the 5-cube erodes to a voxel and grows back


def test_the_order_is_erosion_first() -> None:
    # Two 5-cubes one voxel apart: erosion first keeps the gap; dilation first would fill it.
    shape = (16, 9, 9)
    pair = cube(shape, (2, 2, 2), 5) | cube(shape, (8, 2, 2), 5)
    cleaned = amap.clean(pair)
    np.testing.assert_array_equal(cleaned, pair)
    assert not cleaned[7].any()
    # A single voxel is noise: gone.
    speck = np.zeros(shape, bool)
    speck[8, 4, 4] = True
    assert not amap.clean(speck).any()


def test_outside_the_volume_counts_as_background() -> None:
    # A 5-cube touching the border survives; so does a full 5x5x5 volume: border_value=0 erodes it
    # to its centre voxel and the dilations bring it back.
    full = np.ones((5, 5, 5), bool)
    np.testing.assert_array_equal(amap.clean(full), full)
    thin = np.ones((4, 9, 9), bool)
    assert not amap.clean(thin).any()


@pytest.mark.parametrize("erosions, dilations", [(2, 2), (0, 2), (2, 0), (1, 3), (3, 1), (0, 0)])
def test_clean_matches_scipy_iterated_binary_morphology(erosions: int, dilations: int) -> None:
    rng = np.random.default_rng(erosions * 10 + dilations)
    for _ in range(20):
        shape = tuple(int(n) for n in rng.integers(4, 18, 3))
        noise = rng.random(shape) < rng.uniform(0.05, 0.6)
        mask = oracle_clean(noise, 0, int(rng.integers(0, 2)))
        np.testing.assert_array_equal(amap.clean(mask, erosions=erosions, dilations=dilations), oracle_clean(mask, erosions, dilations))


# --- overlap, heat map, pseudo label ----------------------------------------------------------------
def test_overlap_only_where_two_averaged_pseudo_labels_exceed_the_threshold() -> None:
    shape = (4, 1, 1)
    # voxel: 0 liver only; 1 both > 0.5; 2 kidney exactly 0.5 (not > 0.5); 3 both at 0.6 on average
    liver = [np.array([0.9, 0.9, 0.9, 0.6]), np.array([0.9, 0.8, 0.9, 0.6])]
    kidney = [np.array([0.0, 0.7, 0.5, 0.9]), np.array([0.0, 0.6, 0.5, 0.3])]
    data = {organ: [a.reshape(shape).astype(np.float32) for a in arrays] for organ, arrays in (("liver", liver), ("right_kidney", kidney))}
    options = amap.Settings(erosions=0, dilations=0, support_dilations=-1)
    maps = amap.annotate(lambda organ: iter(data[organ]), [("liver", 1), ("right_kidney", 2)], shape, options)
    for organ in data:
        overlap = maps.organs[organ].full(maps.organs[organ].overlap, shape)
        np.testing.assert_array_equal(overlap.ravel(), [False, True, False, True])
    # Label map: the highest mean wins (voxel 1: liver 0.85 > 0.65; voxel 3: a tie at 0.6 -> liver, listed first).
    np.testing.assert_array_equal(maps.pseudo_label.ravel(), [1, 1, 1, 1])


def test_heat_map_sums_raw_std_entropy_and_overlap_then_divides_by_its_maximum() -> None:
    std = np.array([0.0, 0.1, 0.4])
    ent = np.array([0.0, 0.2, 0.3])
    overlap = np.array([False, False, True])
    heat = amap.heat_map(std, ent, overlap)
    np.testing.assert_allclose(heat, [0.0, 0.3 / 1.7, 1.0], rtol=1e-6)
    assert heat.dtype == np.float32


def test_heat_map_of_an_empty_organ_is_zero_not_nan() -> None:
    heat = amap.heat_map(np.zeros(5), np.zeros(5), np.zeros(5, bool))
    np.testing.assert_array_equal(heat, np.zeros(5))
    arrays = [np.zeros((6, 6, 6), np.uint8)] * 3
    maps = amap.annotate(lambda organ: iter(arrays), [("gallbladder", 9)], (6, 6, 6))
    stats = maps.organs["gallbladder"].stats()
    assert stats == {"attention_voxels": 0, "heat_sum": 0.0, "inconsistency_voxels": 0, "uncertainty_voxels": 0, "overlap_voxels": 0}
    assert not maps.pseudo_label.any()


def test_uint8_and_float32_inputs_of_the_same_probabilities_agree() -> None:
    rng = np.random.default_rng(3)
    q = [rng.integers(0, 256, (12, 11, 10), dtype=np.uint8) for _ in range(3)]
    as_float = [a.astype(np.float32) / np.float32(255) for a in q]
    a = amap.annotate(lambda organ: iter(q), [("liver", 1)], q[0].shape).organs["liver"]
    b = amap.annotate(lambda organ: iter(as_float), [("liver", 1)], q[0].shape).organs["liver"]
    for name in ("inconsistency", "uncertainty", "overlap", "attention"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_allclose(a.heat, b.heat, atol=1e-6)


# --- the whole map against the oracle ------------------------------------------------------------
def blob_case(seed: int, shape: tuple[int, int, int] = (26, 24, 18)) -> dict[str, list[np.ndarray]]:
    """Three organs (one touching the volume's border) seen by three noisy, disagreeing models."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float64)
    out: dict[str, list[np.ndarray]] = {}
    for organ, centre in (("liver", (8, 8, 8)), ("spleen", (15, 14, 9)), ("aorta", (24, 5, 3))):
        radius = rng.uniform(4, 7)
        models = []
        for m in range(3):
            c = np.array(centre) + rng.normal(0, 1.2, 3)
            d = np.sqrt(((grid - c.reshape(3, 1, 1, 1)) ** 2).sum(axis=0))
            p = 1 / (1 + np.exp((d - radius - rng.normal(0, 0.5)) / (0.8 + 0.4 * m)))
            p[rng.random(shape) < 0.02] = rng.random()  # specks
            p[d > radius + 4] = 0
            models.append(np.rint(p * 255).astype(np.uint8))
        out[organ] = models
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annotate_equals_the_whole_volume_float64_oracle(seed: int) -> None:
    data = blob_case(seed)
    labels = {"liver": 1, "spleen": 3, "aorta": 5}
    shape = data["liver"][0].shape
    maps = amap.annotate(lambda organ: iter(data[organ]), list(labels.items()), shape)
    expected = oracle_annotate(data, labels)
    np.testing.assert_array_equal(maps.pseudo_label, expected["__label__"]["label"])
    for organ in labels:
        got = maps.organs[organ]
        for name in ("inconsistency", "uncertainty", "overlap", "attention"):
            np.testing.assert_array_equal(got.full(getattr(got, name), shape), expected[organ][name], err_msg=f"{organ} {name}")
        np.testing.assert_allclose(got.full(got.heat, shape), expected[organ]["heat"], atol=1e-6)
        np.testing.assert_array_equal(got.full(got.heat_uint8, shape), np.rint(expected[organ]["heat"] * 255))
    if seed == 0:  # this draw has organs whose pseudo labels overlap: the argmax is exercised too
        assert sum(int(m.overlap.sum()) for m in maps.organs.values()) > 0


def test_annotate_holds_only_crops() -> None:
    data = blob_case(0, shape=(60, 50, 40))
    maps = amap.annotate(lambda organ: iter(data[organ]), [("liver", 1)], (60, 50, 40))
    liver = maps.organs["liver"]
    assert liver.heat.size < 60 * 50 * 40 / 4
    assert liver.heat.dtype == np.float32


def test_annotate_rejects_one_model_and_mismatched_inputs() -> None:
    one = [np.zeros((4, 4, 4), np.uint8)]
    with pytest.raises(ValueError, match="liver: 1 segmenter.*N >= 2"):
        amap.annotate(lambda organ: iter(one), [("liver", 1)], (4, 4, 4))
    wrong = [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8)]
    with pytest.raises(ValueError, match=r"segmenter 2 have shape \(4, 4, 5\); expected \(4, 4, 4\)"):
        amap.annotate(lambda organ: iter(wrong), [("liver", 1)], (4, 4, 4))
    counts = {"liver": [np.zeros((4, 4, 4), np.uint8)] * 2, "spleen": [np.zeros((4, 4, 4), np.uint8)] * 3}
    with pytest.raises(ValueError, match="spleen: 3 segmenters.*other organs had 2"):
        amap.annotate(lambda organ: iter(counts[organ]), [("liver", 1), ("spleen", 3)], (4, 4, 4))


@pytest.mark.parametrize("field, value, message", [
    ("std_threshold", 0.6, "std_threshold = 0.6"),
    ("entropy_threshold", 0.5, "entropy_threshold = 0.5"),
    ("erosions", -1, "erosions = -1"),
    ("dilations", 1.5, "dilations = 1.5"),
    ("pseudo_threshold", 1.0, "pseudo_threshold = 1.0"),
    ("support_dilations", -2, "support_dilations = -2"),
    ("support_dilations", True, "support_dilations = True"),
])
def test_settings_are_checked(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        amap.Settings(**{field: value})


def test_defaults_are_the_reference_settings() -> None:
    assert amap.Settings().as_dict() == {"std_threshold": 0.1, "entropy_threshold": 0.05, "erosions": 2, "dilations": 2,
                                         "structure": "3x3x3 cube", "pseudo_threshold": 0.5, "support_dilations": 1}


def _line_maps(support_dilations: int) -> object:
    """Three segmenters on a 1 x 1 x 12 line: each calls voxels 0-3 the organ (p = 0.8); their soft
    tails (p = 0.3) run to voxel 9, beyond one voxel of any segmenter's own mask."""
    rows = []
    for _ in range(3):
        row = np.zeros((1, 1, 12), np.uint8)
        row[..., :4] = 204
        row[..., 4:10] = 77
        rows.append(row)
    options = amap.Settings(erosions=0, dilations=0, support_dilations=support_dilations)
    return amap.annotate(lambda organ: iter(rows), [("liver", 1)], (1, 1, 12), options).organs["liver"]


def test_probabilities_are_zeroed_outside_each_segmenters_own_dilated_mask() -> None:
    # -p ln p at 0.3 is 0.36 > 0.05 and at 0.8 0.18: every voxel with probability is uncertain
    kept = _line_maps(-1)
    assert kept.full(kept.uncertainty, (1, 1, 12))[0, 0].tolist() == [True] * 10 + [False] * 2
    own = _line_maps(1)  # the mask 0-3 and one voxel beyond it keep their probabilities
    assert own.full(own.uncertainty, (1, 1, 12))[0, 0].tolist() == [True] * 5 + [False] * 7
    wider = _line_maps(3)
    assert wider.full(wider.uncertainty, (1, 1, 12))[0, 0].tolist() == [True] * 7 + [False] * 5
