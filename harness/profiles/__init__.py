"""Label profiles: a challenge's labels, tolerances and scoring quirks, as TOML data.

Built-in: `flare22` (the official scripts' numbers), `strict` (same labels, no quirks) and
`atlas8` (AbdomenAtlas-8K organs in the FLARE numbering). A user profile is any TOML file with the
same keys; pass its path wherever a profile name is accepted.

A profile's `organs` are its label system; it scores each organ, or, where it has `regions`, each
region: a union of organ labels with its own NSD tolerance (BraTS' whole tumour, tumour core and
enhancing tumour; KiTS' kidney and masses, masses, tumour). Regions may overlap.

A profile may add extra metrics to every scored structure, each from its challenge's official
code: `lesion_wise` (BraTS 2023's lesion-wise Dice and HD95: brats2023), `false_volumes`
(autoPET's false-positive and false-negative volumes: autopet) and `panoptic` (panoptica's RQ, SQ,
PQ and instance-wise DSC; no built-in profile's challenge ranks it, a user profile may ask for it).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import SpecError
from harness.models import LesionWise, Organ, OutsideLabels, Panoptic, Profile, Region

BUILTIN_PROFILES = (
    "flare22", "strict", "atlas8", "flare23", "amos22", "btcv", "word", "abdomenatlas1.0", "abdomenatlas1.1",
    "totalsegmentator", "brats2023", "kits23", "autopet",
)

_TOP_KEYS = {
    "name", "description", "organs", "both_empty", "nsd_min_dsc", "zrange_drop_last_slice",
    "zrange_axis", "round_decimals", "unscored_labels", "label_source", "outside_labels", "regions", "lesion_wise",
    "false_volumes", "panoptic",
}
_ORGAN_KEYS = {"label", "name", "tolerance_mm", "zrange_only", "source_name"}
_REGION_KEYS = {"name", "labels", "tolerance_mm", "zrange_only"}
_LESION_KEYS = {"dilation_iterations", "small_lesion_max_mm3", "hd95_penalty_mm"}
_PANOPTIC_KEYS = {"matching_metric", "matching_threshold"}


def load_profile(name_or_path: str | Path, *, relative_to: Path | None = None) -> Profile:
    """Load a built-in profile by name, or a user's profile from a TOML file (a relative path is
    taken from `relative_to`, e.g. the folder of the manifest or challenge file naming it).

    The result records where it came from (`Profile.source`: the built-in name or the file's
    absolute path), so that `harness rescore` can read the same profile again after it changed."""
    text: str
    source: str
    if str(name_or_path) in BUILTIN_PROFILES:
        source = str(name_or_path)
        where = f"profile {name_or_path}"
        text = resources.files(__package__).joinpath(f"{name_or_path}.toml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            raise SpecError(
                f"{path}: no such profile; use one of {', '.join(BUILTIN_PROFILES)} "
                "or the path of a profile TOML file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: cannot read the profile ({exc}); check the file") from None
        source = where = str(path.resolve())
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: not valid TOML ({exc}); fix the syntax") from None
    return dataclasses.replace(profile_from_dict(raw, source=where), source=source)


def profile_from_dict(raw: dict[str, Any], *, source: str = "profile") -> Profile:
    """Validate a parsed profile table; every problem names the key, the value and the fix."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise SpecError(f"{source}: unknown key '{key}'; allowed keys: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "organs"):
        if key not in raw:
            raise SpecError(f"{source}: missing key '{key}'; add it (see harness/profiles/flare22.toml)")
    name = _typed(raw, "name", str, source)
    organs_raw = raw["organs"]
    if not isinstance(organs_raw, list) or not organs_raw:
        raise SpecError(f"{source}: key 'organs' must be a non-empty array of tables")
    has_regions = "regions" in raw
    organs = tuple(_organ(o, i, source, in_regions=has_regions) for i, o in enumerate(organs_raw))
    labels = [o.label for o in organs]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{source}: key 'organs' repeats a label value; give each organ its own label")
    names = [o.name for o in organs]
    if len(set(names)) != len(names):
        raise SpecError(f"{source}: key 'organs' repeats an organ name; give each organ its own name")

    both_empty = float(_typed(raw, "both_empty", (int, float), source, 1.0))
    if not (math.isnan(both_empty) or both_empty in (0.0, 1.0)):
        raise SpecError(f"{source}: key 'both_empty' = {both_empty}; use 1.0, 0.0 or nan")
    nsd_min_dsc = _optional_number(raw, "nsd_min_dsc", source, 0.2)
    rounding = raw.get("round_decimals", 4)
    if rounding is False:
        round_decimals = None
    elif isinstance(rounding, int) and not isinstance(rounding, bool) and 0 <= rounding <= 15:
        round_decimals = rounding
    else:
        raise SpecError(f"{source}: key 'round_decimals' = {rounding!r}; use an integer 0..15 or false")
    axis = _typed(raw, "zrange_axis", int, source, 2)
    if axis not in (0, 1, 2):
        raise SpecError(f"{source}: key 'zrange_axis' = {axis}; use 0, 1 or 2")
    unscored = raw.get("unscored_labels", [])
    if not isinstance(unscored, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in unscored
    ):
        raise SpecError(f"{source}: key 'unscored_labels' = {unscored!r}; use an array of positive integers")
    if set(unscored) & set(labels):
        raise SpecError(f"{source}: key 'unscored_labels' repeats a scored label; remove it from one list")
    regions = _regions(raw["regions"], organs, source) if has_regions else None
    if regions is not None:  # an organ's own tolerance (for `harness annotate`): its tightest region's, unless given
        organs = tuple(o if not math.isnan(o.tolerance_mm) else dataclasses.replace(
            o, tolerance_mm=min(r.tolerance_mm for r in regions if o.label in r.labels)) for o in organs)
    outside = raw.get("outside_labels", str(OutsideLabels.REFUSE))
    if not isinstance(outside, str) or outside not in {str(v) for v in OutsideLabels}:
        raise SpecError(f"{source}: key 'outside_labels' = {outside!r}; use "
                        f"{' or '.join(repr(str(v)) for v in OutsideLabels)}")
    return Profile(
        name=name,
        organs=organs,
        both_empty=both_empty,
        nsd_min_dsc=nsd_min_dsc,
        zrange_drop_last_slice=bool(_typed(raw, "zrange_drop_last_slice", bool, source, True)),
        zrange_axis=axis,
        round_decimals=round_decimals,
        unscored_labels=tuple(unscored),
        outside_labels=OutsideLabels(outside),
        regions=regions,
        lesion_wise=_lesion_wise(raw["lesion_wise"], source) if "lesion_wise" in raw else None,
        false_volumes=bool(_typed(raw, "false_volumes", bool, source, False)),
        panoptic=_panoptic(raw["panoptic"], source) if "panoptic" in raw else None,
        description=str(raw.get("description", "")),
        label_source=str(raw.get("label_source", "")),
    )


def _organ(raw: Any, index: int, source: str, *, in_regions: bool = False) -> Organ:
    """One organ; in a profile with regions its tolerance may be left out (NaN here, filled by
    the caller) and `zrange_only` belongs to the regions."""
    where = f"{source}: organs[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a table like {{ label = 1, name = \"liver\", tolerance_mm = 5 }}")
    unknown = set(raw) - _ORGAN_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(_ORGAN_KEYS))}")
    for key in ("label", "name") if in_regions else ("label", "name", "tolerance_mm"):
        if key not in raw:
            raise SpecError(f"{where}: missing key '{key}'; add it")
    if in_regions and "zrange_only" in raw:
        raise SpecError(f"{where}: key 'zrange_only' is a rule of what is scored, and this profile scores its "
                        "regions; set it on the regions instead")
    label = raw["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 1 <= label <= 255:
        raise SpecError(f"{where}: key 'label' = {label!r}; use an integer 1..255 (0 is background)")
    name = raw["name"]
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"{where}: key 'name' = {name!r}; use a short identifier like right_kidney")
    tol = raw.get("tolerance_mm", math.nan)  # left out (in a profile with regions): NaN until the caller fills it
    if "tolerance_mm" in raw and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol)
                                  or tol < 0):
        raise SpecError(f"{where}: key 'tolerance_mm' = {tol!r}; use a non-negative number of mm")
    zr = raw.get("zrange_only", False)
    if not isinstance(zr, bool):
        raise SpecError(f"{where}: key 'zrange_only' = {zr!r}; use true or false")
    source_name = raw.get("source_name", "")
    if not isinstance(source_name, str):
        raise SpecError(f"{where}: key 'source_name' = {source_name!r}; use the organ's name in the source table")
    return Organ(label=label, name=name, tolerance_mm=float(tol), zrange_only=zr, source_name=source_name)


def _regions(raw: Any, organs: tuple[Organ, ...], source: str) -> tuple[Region, ...]:
    """The `regions` array: unions of the organs' labels, each scored like an organ."""
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{source}: key 'regions' must be a non-empty array of tables like "
                        "{ name = \"whole_tumor\", labels = [1, 2, 3], tolerance_mm = 1 }")
    by_label = {o.label: o.name for o in organs}
    by_name = {o.name: o.label for o in organs}
    regions: list[Region] = []
    for index, item in enumerate(raw):
        where = f"{source}: regions[{index}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where} must be a table like {{ name = \"whole_tumor\", labels = [1, 2, 3], "
                            "tolerance_mm = 1 }")
        unknown = set(item) - _REGION_KEYS
        if unknown:
            raise SpecError(f"{where}: unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(_REGION_KEYS))}")
        for key in ("name", "labels", "tolerance_mm"):
            if key not in item:
                raise SpecError(f"{where}: missing key '{key}'; add it")
        name = item["name"]
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"{where}: key 'name' = {name!r}; use a short identifier like whole_tumor")
        labels = item["labels"]
        if not isinstance(labels, list) or not labels or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in labels):
            raise SpecError(f"{where}: key 'labels' = {labels!r}; use a non-empty array of the organs' label values")
        strangers = [v for v in labels if v not in by_label]
        if strangers:
            raise SpecError(f"{where}: key 'labels' = {labels!r}; {strangers[0]} is no organ's label; use the labels "
                            f"of key 'organs' ({', '.join(str(v) for v in sorted(by_label))})")
        if len(set(labels)) != len(labels):
            raise SpecError(f"{where}: key 'labels' = {labels!r} repeats a label; list each once")
        if name in by_name and labels != [by_name[name]]:
            raise SpecError(f"{where}: key 'name' = {name!r} is the organ of label {by_name[name]}, but its labels are "
                            f"{labels!r}; name the region apart from the organs, or give it the organ's label only")
        tol = item["tolerance_mm"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise SpecError(f"{where}: key 'tolerance_mm' = {tol!r}; use a non-negative number of mm")
        zr = item.get("zrange_only", False)
        if not isinstance(zr, bool):
            raise SpecError(f"{where}: key 'zrange_only' = {zr!r}; use true or false")
        for other in regions:
            if other.name == name:
                raise SpecError(f"{where}: key 'name' = {name!r} repeats a region's name; give each region its own")
            if set(other.labels) == set(labels):
                raise SpecError(f"{where}: key 'labels' = {labels!r} is region {other.name!r} again; "
                                "remove one of the two")
        regions.append(Region(name=name, labels=tuple(sorted(labels)), tolerance_mm=float(tol), zrange_only=zr))
    covered = {v for r in regions for v in r.labels}
    for organ in organs:
        if organ.label not in covered:
            raise SpecError(f"{source}: key 'regions' leaves out organ {organ.name!r} (label {organ.label}); add it "
                            "to a region, or move its label to key 'unscored_labels'")
    return tuple(regions)


def _lesion_wise(raw: Any, source: str) -> LesionWise:
    """The `lesion_wise` table: BraTS 2023's lesion matching parameters (its get_challenge_parameters)."""
    where = f"{source}: key 'lesion_wise'"
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a table like {{ dilation_iterations = 3, small_lesion_max_mm3 = 50 }}")
    unknown = set(raw) - _LESION_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(_LESION_KEYS))}")
    for key in ("dilation_iterations", "small_lesion_max_mm3"):
        if key not in raw:
            raise SpecError(f"{where}: missing key '{key}'; add it")
    dilation = raw["dilation_iterations"]
    if not isinstance(dilation, int) or isinstance(dilation, bool) or not 0 <= dilation <= 20:
        raise SpecError(f"{where}: key 'dilation_iterations' = {dilation!r}; use an integer 0..20")
    numbers = {}
    for key, default in (("small_lesion_max_mm3", None), ("hd95_penalty_mm", 374.0)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise SpecError(f"{where}: key '{key}' = {value!r}; use a non-negative number")
        numbers[key] = float(value)
    return LesionWise(dilation_iterations=dilation, **numbers)


def _panoptic(raw: Any, source: str) -> Panoptic:
    """The `panoptic` table: panoptica's naive threshold matching of connected components."""
    where = f"{source}: key 'panoptic'"
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a table like {{ matching_metric = \"iou\", matching_threshold = 0.5 }}")
    unknown = set(raw) - _PANOPTIC_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(_PANOPTIC_KEYS))}")
    metric = raw.get("matching_metric", "iou")
    if metric not in ("iou", "dsc"):
        raise SpecError(f"{where}: key 'matching_metric' = {metric!r}; use \"iou\" or \"dsc\"")
    threshold = raw.get("matching_threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise SpecError(f"{where}: key 'matching_threshold' = {threshold!r}; use a number in (0, 1], e.g. 0.5")
    return Panoptic(matching_metric=metric, matching_threshold=float(threshold))


def _typed(raw: dict[str, Any], key: str, kind: Any, source: str, default: Any = None) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) and kind is not bool:
        ok = False
    else:
        ok = isinstance(value, kind)
    if not ok:
        kinds = kind.__name__ if isinstance(kind, type) else "number"
        raise SpecError(f"{source}: key '{key}' = {value!r}; expected a {kinds}")
    return value


def _optional_number(raw: dict[str, Any], key: str, source: str, default: float) -> float | None:
    value = raw.get(key, default)
    if value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{source}: key '{key}' = {value!r}; use a number or false (off)")
    return float(value)
