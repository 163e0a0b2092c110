"""`harness data check`: the inventory of a data set and every problem that would stop or skew its
evaluation under a profile, before anything runs.

Per case: files, shape, spacing, label values, organs present, organs on one slice only. Problems
are errors (the case, or the set, cannot be evaluated as it is) or warnings (it can, but look):

- error: a file that is not part of the layout (name, not a regular file), an unreadable label, a
  label map that is not integer or 3D, label values outside the profile (under a profile that
  refuses them; a warning where it counts them as background), a label whose shape is
  not its image's, `dataset.json` naming a label value differently from the profile;
- warning: an image whose header differs from its label's beyond rounding (spacing or affine; the
  prediction is accepted on either), an image without a label (not scored), an organ labelled on
  one slice only under a profile whose z-range cut then leaves nothing (`not_scorable` where it is
  predicted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from harness.data.dataset import discover, read_label_names
from harness.data.masks import assemble, is_mask_folder, norm_name
from harness.data.nifti import check_labels, check_same_grid, label_values, outside_warning, read_grid, read_label
from harness.errors import CaseError, DataError
from harness.models import Profile

if TYPE_CHECKING:
    import pandas as pd  # imported where the inventory is built: `harness score` does not pay for it

ERROR, WARNING = "error", "warning"
INVENTORY_COLUMNS = ["case", "image", "label", "shape", "spacing_mm", "label_values", "organs", "one_slice_organs",
                     "errors", "warnings"]


@dataclass
class DataCheck:
    root: Path
    layout: str
    profile: str
    inventory: pd.DataFrame
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (severity, case or "", message)

    @property
    def errors(self) -> list[tuple[str, str, str]]:
        return [p for p in self.problems if p[0] == ERROR]

    @property
    def evaluable(self) -> bool:
        """No error, and at least one case with an image and a label."""
        scorable = self.inventory[(self.inventory["label"] != "") & (self.inventory["image"] != "")] \
            if not self.inventory.empty else self.inventory
        return not self.errors and len(scorable) > 0


def label_name_problems(root: Path, profile: Profile) -> list[str]:
    """Where the data set's `dataset.json` names its labels, each name against the profile's."""
    by_value = {o.label: o.name for o in profile.organs}
    known = {o.label: {norm_name(o.name), norm_name(o.source_name or o.name)} for o in profile.organs}
    problems = []
    for value, name in sorted(read_label_names(root).items()):
        if value == 0:
            continue
        if value not in by_value:
            problems.append(f"{root / 'dataset.json'}: label {value} = {name!r} is not in profile {profile.name}; "
                            "choose the profile of this label system (--profile)")
        elif norm_name(name) not in known[value]:
            problems.append(f"{root / 'dataset.json'}: label {value} = {name!r}, but profile {profile.name} has "
                            f"{value} = {by_value[value]!r}; the data set is numbered in another label system: "
                            "choose its profile (--profile)")
    return problems


def require_label_names(root: Path, profile: Profile) -> None:
    """Raise DataError when `dataset.json` numbers the labels differently from `profile`."""
    problems = label_name_problems(root, profile)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)


def check_dataset(root: Path, profile: Profile) -> DataCheck:
    """Inventory and problems of the data set at `root` under `profile` (raises DataError when it
    holds no case at all)."""
    dataset, found = discover(root)
    problems: list[tuple[str, str, str]] = [(ERROR, "", p.message) for p in found]
    problems += [(ERROR, "", message) for message in label_name_problems(root, profile)]
    by_value = {o.label: o.name for o in profile.organs}
    # scored structures (organs, or regions: unions of labels) cut to the z-range, in label order
    zrange = sorted((r for r in profile.scored if r.zrange_only), key=lambda r: r.labels) \
        if profile.zrange_drop_last_slice else []
    rows = []
    for case in dataset.cases:
        mine: list[tuple[str, str, str]] = []
        label_name = "" if case.label is None else f"{case.label.name}/" if case.label.is_dir() else case.label.name
        row: dict[str, object] = {"case": case.case_id, "image": case.image.name if case.image else "",
                                  "label": label_name, "shape": "", "spacing_mm": "",
                                  "label_values": "", "organs": "", "one_slice_organs": ""}
        if case.label is None:
            mine.append((WARNING, case.case_id, f"{case.case_id}: an image without a label; it cannot be scored"))
        else:
            try:
                if is_mask_folder(case.label):
                    assembled = assemble(case.label, profile)
                    data: NDArray[np.integer] = assembled.label_map
                    grid = assembled.grid
                    if assembled.overlap_voxels:
                        mine.append((WARNING, case.case_id, f"{case.label}: masks overlap on {assembled.overlap_voxels} "
                                     "voxels; the organ of lower label value keeps them"))
                    missing = [o.name for o in profile.organs if o.name not in assembled.annotated]
                    if missing:
                        mine.append((WARNING, case.case_id, f"{case.label}: no mask of {', '.join(missing)}; "
                                     "not annotated here, so not scored"))
                else:
                    data, grid = read_label(case.label)
                row["shape"] = "x".join(map(str, grid.shape))
                row["spacing_mm"] = "x".join(f"{s:g}" for s in grid.spacing_mm)
                values = sorted(label_values(data))
                row["label_values"] = " ".join(map(str, values))
                row["organs"] = " ".join(by_value[v] for v in values if v in by_value)
                warning = outside_warning(case.label, check_labels(case.label, data, profile), profile)
                if warning:
                    mine.append((WARNING, case.case_id, warning))
                axis = profile.zrange_axis
                others = tuple(a for a in range(data.ndim) if a != axis)
                flat = [r.name for r in zrange if set(r.labels) & set(values) and np.count_nonzero(
                    np.any(data == r.labels[0] if len(r.labels) == 1 else np.isin(data, r.labels), axis=others)) == 1]
                row["one_slice_organs"] = " ".join(flat)
                for organ in flat:
                    mine.append((WARNING, case.case_id, f"{case.label}: {organ} is labelled on one slice only; "
                                 f"{profile.name}'s z-range cut leaves nothing of it (not_scorable where it is "
                                 "predicted; DSC = NSD = 0 where it is not, as the official script)"))
                if case.image is not None:
                    image_grid = read_grid(case.image)
                    if image_grid.shape != grid.shape:
                        mine.append((ERROR, case.case_id, f"{case.label}: shape {grid.shape} differs from its image "
                                     f"{case.image.name} {image_grid.shape}; the label belongs to another image"))
                    else:
                        try:
                            check_same_grid(case.label, grid, case.image, image_grid, what="image")
                        except CaseError as exc:
                            mine.append((WARNING, case.case_id, f"{exc} (a header difference: predictions on either "
                                         "grid are accepted)"))
            except CaseError as exc:
                mine.append((ERROR, case.case_id, str(exc)))
        row["errors"] = sum(1 for p in mine if p[0] == ERROR)
        row["warnings"] = sum(1 for p in mine if p[0] == WARNING)
        rows.append(row)
        problems.extend(mine)
    if not rows:
        raise DataError(f"{root}: no cases found; expected imagesTr/<case>_0000.nii.gz and labelsTr/<case>.nii.gz")
    import pandas as pd

    return DataCheck(root=root, layout=dataset.layout, profile=profile.name, inventory=pd.DataFrame(rows, columns=INVENTORY_COLUMNS),
                     problems=problems)
