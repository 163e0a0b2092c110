"""Frozen value types shared by every stage of the harness.

Nothing here touches the disk; loaders build these, pure functions consume them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class CaseStatus(enum.StrEnum):
    """Outcome of scoring one case (a failing case is data, not an exception)."""

    OK = "ok"
    MISSING_PREDICTION = "missing_prediction"
    UNREADABLE = "unreadable"  # corrupt or truncated NIfTI, not a NIfTI at all
    GRID_MISMATCH = "grid_mismatch"  # shape, spacing or affine differs from the ground truth
    INVALID_LABELS = "invalid_labels"  # label values outside the profile, non-integer data
    MISSING_LABEL = "missing_label"  # a case with an image but no ground truth


@dataclass(frozen=True)
class Organ:
    """One scored structure: its label value, name and NSD tolerance."""

    label: int
    name: str
    tolerance_mm: float
    zrange_only: bool = False  # scored only within the ground truth's z-range (FLARE rule)


@dataclass(frozen=True)
class Profile:
    """The scoring rules of one challenge, as data (see harness/profiles/*.toml).

    - `both_empty`: DSC/NSD when ground truth and prediction are both empty (1.0 in FLARE22's
      scripts; NaN = "not applicable" under strict).
    - `nsd_min_dsc`: NSD is forced to 0 when DSC is below it (0.2 in FLARE22); None = no cut-off.
    - `zrange_drop_last_slice`: the official z-range cut `[z_lower:z_upper]` drops the top
      labelled slice (FLARE22 quirk); False keeps it (`[z_lower:z_upper + 1]`).
    - `round_decimals`: round reported DSC/NSD like the scripts (4), or None.
    """

    name: str
    organs: tuple[Organ, ...]
    both_empty: float = 1.0
    nsd_min_dsc: float | None = 0.2
    zrange_drop_last_slice: bool = True
    zrange_axis: int = 2
    round_decimals: int | None = 4
    unscored_labels: tuple[int, ...] = ()  # valid in a label map, never scored
    description: str = ""

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(o.label for o in self.organs)

    @property
    def valid_labels(self) -> frozenset[int]:
        """Every value a label map may hold under this profile (0 = background)."""
        return frozenset((0, *self.labels, *self.unscored_labels))

    def organ(self, label: int) -> Organ:
        for organ in self.organs:
            if organ.label == label:
                return organ
        raise KeyError(label)


@dataclass(frozen=True)
class Case:
    """One case of a data set: its id and where its files are (label may be absent)."""

    case_id: str
    image: Path | None
    label: Path | None


@dataclass(frozen=True)
class Dataset:
    """A discovered data set in the FLARE / nnU-Net layout."""

    root: Path
    cases: tuple[Case, ...]
    label_names: dict[int, str] = field(default_factory=dict)  # from dataset.json, if present

    def case(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(case_id)


@dataclass(frozen=True)
class OrganScore:
    """Scores of one organ in one case. NaN = not applicable (see the profile's rules)."""

    case_id: str
    organ: str
    label: int
    dsc: float
    nsd: float
    hd95_mm: float
    status: str = CaseStatus.OK
    message: str = ""
