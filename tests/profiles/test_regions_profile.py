"""Profiles with regions: the built-in BraTS 2023 and KiTS23 definitions, a user's profile with
overlapping regions, and every bad region definition as a one-line error naming the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import SpecError
from harness.models import Region
from harness.profiles import load_profile


def test_brats2023_scores_the_official_overlapping_regions() -> None:
    profile = load_profile("brats2023")
    assert [(o.label, o.name, o.source_name) for o in profile.organs] == [(1, "netc", "NETC"), (2, "snfh", "SNFH"),
                                                                         (3, "et", "ET")]
    assert [(r.name, r.labels) for r in profile.scored] == [("whole_tumor", (1, 2, 3)), ("tumor_core", (1, 3)),
                                                            ("enhancing_tumor", (3,))]
    assert {r.tolerance_mm for r in profile.scored} == {1.0}
    assert (profile.both_empty, profile.nsd_min_dsc, profile.round_decimals) == (1.0, None, None)
    assert profile.valid_labels == frozenset({0, 1, 2, 3})


def test_kits23_regions_and_tolerances_are_the_official_digits() -> None:
    profile = load_profile("kits23")
    assert [(o.label, o.name) for o in profile.organs] == [(1, "kidney"), (2, "tumor"), (3, "cyst")]
    assert profile.scored == (
        Region("kidney_and_mass", (1, 2, 3), 1.0330772532390826),  # kits23/configuration/labels.py
        Region("mass", (2, 3), 1.1328796488598762),
        Region("tumor", (2,), 1.1498198361434828),
    )
    assert (profile.both_empty, profile.nsd_min_dsc, profile.round_decimals) == (1.0, None, None)


USER = """name = "mine"
organs = [
  { label = 1, name = "a" },
  { label = 2, name = "b", tolerance_mm = 4 },
  { label = 3, name = "c" },
]
regions = [
  { name = "all", labels = [1, 2, 3], tolerance_mm = 2 },
  { name = "ac", labels = [3, 1], tolerance_mm = 1.5, zrange_only = true },
  { name = "c", labels = [3], tolerance_mm = 0.5 },
]
"""


def test_a_users_profile_with_overlapping_regions_loads(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(USER)
    profile = load_profile(path)
    assert profile.scored == (Region("all", (1, 2, 3), 2.0), Region("ac", (1, 3), 1.5, zrange_only=True),
                              Region("c", (3,), 0.5))
    # an organ's own tolerance (used by `harness annotate`): given, or its tightest region's
    assert [o.tolerance_mm for o in profile.organs] == [1.5, 4.0, 0.5]
    # a case annotating a and c only: the regions made of them are scored, "all" is not
    part = profile.scoring_only({"a", "c"})
    assert [r.name for r in part.scored] == ["ac", "c"] and part.valid_labels == profile.valid_labels


def _edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


BAD = [
    (lambda t: t.split("regions =")[0] + "regions = 3\n", "key 'regions' must be a non-empty array of tables"),
    (lambda t: t.split("regions =")[0] + "regions = []\n", "key 'regions' must be a non-empty array"),
    (lambda t: _edit(t, "labels = [1, 2, 3], ", ""), "regions[0]: missing key 'labels'; add it"),
    (lambda t: _edit(t, "labels = [1, 2, 3]", "labels = []"), "regions[0]: key 'labels' = []; use a non-empty array"),
    (lambda t: _edit(t, "labels = [1, 2, 3]", "labels = [1, \"b\"]"), "regions[0]: key 'labels' = [1, 'b']"),
    (lambda t: _edit(t, "labels = [1, 2, 3]", "labels = [1, 9]"), "regions[0]: key 'labels' = [1, 9]; 9 is no organ's label"),
    (lambda t: _edit(t, "labels = [1, 2, 3]", "labels = [1, 2, 2, 3]"), "repeats a label; list each once"),
    (lambda t: _edit(t, "tolerance_mm = 2 }", "tolerance_mm = -2 }"), "regions[0]: key 'tolerance_mm' = -2"),
    (lambda t: _edit(t, 'name = "ac"', 'name = "all"'), "regions[1]: key 'name' = 'all' repeats a region's name"),
    (lambda t: _edit(t, 'name = "ac"', 'name = "a c"'), "regions[1]: key 'name' = 'a c'; use a short identifier"),
    (lambda t: _edit(t, "labels = [3, 1]", "labels = [3, 2, 1]"), "regions[1]: key 'labels' = [3, 2, 1] is region 'all' again"),
    (lambda t: _edit(t, 'name = "c", labels = [3]', 'name = "c", labels = [1, 3]'),
     "regions[2]: key 'name' = 'c' is the organ of label 3, but its labels are [1, 3]"),
    (lambda t: _edit(t, "zrange_only = true", "zrange_only = 1"), "regions[1]: key 'zrange_only' = 1; use true or false"),
    (lambda t: _edit(t, "tolerance_mm = 0.5 }", "tolerance_mm = 0.5, label = 3 }"), "regions[2]: unknown key 'label'"),
    (lambda t: _edit(_edit(t, "labels = [1, 2, 3]", "labels = [1, 3]"), "labels = [3, 1]", "labels = [1]"),
     "key 'regions' leaves out organ 'b' (label 2); add it to a region, or move its label to key 'unscored_labels'"),
    (lambda t: _edit(t, '{ label = 1, name = "a" }', '{ label = 1, name = "a", zrange_only = true }'),
     "organs[0]: key 'zrange_only' is a rule of what is scored"),
    (lambda t: t.split("regions =")[0], "organs[0]: missing key 'tolerance_mm'"),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_region_definitions_are_one_line_errors_naming_file_and_key(tmp_path: Path, edit: Any, message: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(edit(USER))
    with pytest.raises(SpecError) as err:
        load_profile(path)
    text = str(err.value)
    assert text.startswith(f"{path.resolve()}: ") and message in text and "\n" not in text, text


LESION = [
    ("lesion_wise = 3", "key 'lesion_wise' must be a table like"),
    ("lesion_wise = { dilation_iterations = 3 }", "key 'lesion_wise': missing key 'small_lesion_max_mm3'"),
    ("lesion_wise = { dilation_iterations = -1, small_lesion_max_mm3 = 50 }",
     "key 'lesion_wise': key 'dilation_iterations' = -1; use an integer 0..20"),
    ("lesion_wise = { dilation_iterations = 3, small_lesion_max_mm3 = \"50\" }",
     "key 'lesion_wise': key 'small_lesion_max_mm3' = '50'; use a non-negative number"),
    ("lesion_wise = { dilation_iterations = 3, small_lesion_max_mm3 = 50, penalty = 1 }",
     "key 'lesion_wise': unknown key 'penalty'"),
]


@pytest.mark.parametrize(("line", "message"), LESION, ids=[m[:40] for _, m in LESION])
def test_bad_lesion_wise_tables_are_one_line_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(USER.replace('name = "mine"\n', f'name = "mine"\n{line}\n'))
    with pytest.raises(SpecError) as err:
        load_profile(path)
    text = str(err.value)
    assert text.startswith(f"{path.resolve()}: ") and message in text and "\n" not in text, text


def test_a_users_profile_chooses_lesion_wise_metrics(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(USER.replace('name = "mine"\n', 'name = "mine"\nlesion_wise = { dilation_iterations = 1, '
                                 'small_lesion_max_mm3 = 2 }\n'))
    profile = load_profile(path)
    assert profile.lesion_wise is not None and profile.lesion_wise.dilation_iterations == 1
    assert profile.extra_metrics == ("lesion_dice", "lesion_hd95_mm", "lesion_tp", "lesion_fn", "lesion_fp")
