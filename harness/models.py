"""Frozen value types shared by every stage of the harness.

Nothing here touches the disk; loaders build these, pure functions consume them.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path


class CaseStatus(enum.StrEnum):
    """Outcome of scoring one case (a failing case is data, not an exception)."""

    OK = "ok"
    MISSING_PREDICTION = "missing_prediction"
    UNREADABLE = "unreadable"  # corrupt or truncated NIfTI, not a NIfTI at all
    GRID_MISMATCH = "grid_mismatch"  # shape, spacing or affine differs from the ground truth
    INVALID_LABELS = "invalid_labels"  # label values outside the profile, non-integer data
    MISSING_LABEL = "missing_label"  # a case with an image but no ground truth


class OutsideLabels(enum.StrEnum):
    """What a profile does with label values it does not know, in a ground truth or a prediction."""

    REFUSE = "refuse"  # the file is invalid (`invalid_labels`; a prediction is the run's invalid output)
    BACKGROUND = "background"  # counted as background and scored, with a warning (FLARE's scripts)


class OrganStatus(enum.StrEnum):
    """Outcome of one organ of a case that was scored."""

    OK = "ok"
    NOT_SCORABLE = "not_scorable"  # the profile's rules leave nothing to score (a one-slice organ under a z-range cut)


class RunStatus(enum.StrEnum):
    """Outcome of one (algorithm, case) run. Everything but `ok` gets the worst values in ranking."""

    OK = "ok"
    TIMEOUT = "timeout"  # killed at the manifest's time limit
    CRASHED = "crashed"  # exited non-zero
    OOM = "oom"  # killed by the out-of-memory killer at the memory limit
    INVALID_OUTPUT = "invalid_output"  # no, unreadable or wrong label map / probabilities
    OUTPUT_TOO_LARGE = "output_too_large"  # wrote more than the output limit; killed
    BUILD_FAILED = "build_failed"  # the image could not be built; nothing ran
    RUNNER_ERROR = "runner_error"  # the engine failed (not the algorithm's fault); retry
    LOST = "lost"  # its worker died and no other could finish it; retried by the next `harness run`
    NO_GPU = "no_gpu"  # gpu = "required" on a host without a GPU: nothing ran; retried by the next `harness run`

    @property
    def retried(self) -> bool:
        """Not the algorithm's doing: the next `harness run` tries it again."""
        return self in (RunStatus.RUNNER_ERROR, RunStatus.LOST, RunStatus.NO_GPU)


class Kind(enum.StrEnum):
    """What an algorithm is: a segmenter is ranked; an annotator combines segmenters' outputs."""

    SEGMENTER = "segmenter"
    ANNOTATOR = "annotator"


class GpuMode(enum.StrEnum):
    """Whether an algorithm uses a GPU: never, when one is there, or only with one."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class RunnerKind(enum.StrEnum):
    """How a case runs: in a sandboxed container, or as a local process (trusted code only)."""

    DOCKER = "docker"
    LOCAL = "local"


@dataclass(frozen=True)
class Organ:
    """One scored structure: its label value, name and NSD tolerance."""

    label: int
    name: str
    tolerance_mm: float
    zrange_only: bool = False  # scored only within the ground truth's z-range (FLARE rule)
    source_name: str = ""  # its name in the label system's own table (the profile's `source`), when it differs


@dataclass(frozen=True)
class Region:
    """One scored structure: the union of one or more label values, its name and NSD tolerance.
    An organ is scored as the region of its one label; regions may overlap (BraTS' whole tumour
    {1, 2, 3} holds its tumour core {1, 3})."""

    name: str
    labels: tuple[int, ...]
    tolerance_mm: float
    zrange_only: bool = False  # cut to the ground truth's z-range of the whole union (FLARE rule)

    @property
    def label(self) -> int:
        """The label value a score row records: the region's one label, or 0 for a union of several."""
        return self.labels[0] if len(self.labels) == 1 else 0

    @staticmethod
    def of(organ: Organ) -> Region:
        return Region(name=organ.name, labels=(organ.label,), tolerance_mm=organ.tolerance_mm,
                      zrange_only=organ.zrange_only)


@dataclass(frozen=True)
class LesionWise:
    """A profile's lesion-wise metrics of every scored region, as BraTS 2023 computes them
    (`harness.metrics.lesion.brats_lesion_wise`): ground-truth lesions grown `dilation_iterations`
    times to match predicted components, lesions of volume <= `small_lesion_max_mm3` left out, a
    missed lesion or a false one costing `hd95_penalty_mm`."""

    dilation_iterations: int
    small_lesion_max_mm3: float
    hd95_penalty_mm: float = 374.0

    METRICS = ("lesion_dice", "lesion_hd95_mm", "lesion_tp", "lesion_fn", "lesion_fp")  # extra columns, in order


FALSE_VOLUME_METRICS = ("fp_volume_ml", "fn_volume_ml")  # autoPET's, extra columns in order


@dataclass(frozen=True)
class Panoptic:
    """A profile's panoptic (instance-wise) quality of every scored structure, as panoptica computes
    it (`harness.metrics.panoptic.panoptic_quality`): connected components as instances, matched
    one-to-one when their `matching_metric` ("iou" or "dsc") is >= `matching_threshold`."""

    matching_metric: str = "iou"
    matching_threshold: float = 0.5

    METRICS = ("pq", "sq", "rq", "sq_dsc", "pq_dsc")  # extra columns, in order (sq_dsc: mean instance-wise DSC)


@dataclass(frozen=True)
class Profile:
    """The scoring rules of one challenge, as data (see harness/profiles/*.toml).

    - `both_empty`: DSC/NSD when ground truth and prediction are both empty (1.0 in FLARE22's
      scripts; NaN = "not applicable" under strict).
    - `nsd_min_dsc`: NSD is forced to 0 when DSC is below it (0.2 in FLARE22); None = no cut-off.
    - `zrange_drop_last_slice`: the official z-range cut `[z_lower:z_upper]` drops the top
      labelled slice (FLARE22 quirk); False keeps it (`[z_lower:z_upper + 1]`).
    - `round_decimals`: round reported DSC/NSD like the scripts (4), or None.
    - `outside_labels`: label values outside the profile refused, or counted as background with a
      warning (FLARE's scripts score only their own labels' values).
    - `regions`: the scored structures as unions of labels (BraTS, KiTS); None scores each organ
      on its own. `organs` stay the label system (what a label map, a mask or a probability holds).
    - `lesion_wise`: BraTS 2023's lesion-wise Dice and HD95 of every scored structure, as extra
      metrics (`extra_metrics`), or None.
    - `false_volumes`: autoPET's false-positive and false-negative volumes (ml) of every scored
      structure, as extra metrics.
    - `panoptic`: panoptica's RQ, SQ, PQ and instance-wise DSC of every scored structure, or None.
    """

    name: str
    organs: tuple[Organ, ...]
    both_empty: float = 1.0
    nsd_min_dsc: float | None = 0.2
    zrange_drop_last_slice: bool = True
    zrange_axis: int = 2
    round_decimals: int | None = 4
    unscored_labels: tuple[int, ...] = ()  # valid in a label map, never scored
    outside_labels: OutsideLabels = OutsideLabels.REFUSE
    regions: tuple[Region, ...] | None = None
    lesion_wise: LesionWise | None = None
    false_volumes: bool = False
    panoptic: Panoptic | None = None
    description: str = ""
    label_source: str = field(default="", compare=False)  # where its label id table comes from (for the record)
    source: str = field(default="", compare=False)  # built-in name or absolute path it was read from

    @cached_property
    def content_sha256(self) -> str:
        """sha256 of every rule that can change a score (not the description or where it was read from):
        a changed tolerance makes stored scores stale."""
        rules: dict[str, object] = {
            "name": self.name,
            "organs": [[o.label, o.name, o.tolerance_mm, o.zrange_only] for o in self.organs],
            "both_empty": "nan" if math.isnan(self.both_empty) else self.both_empty,
            "nsd_min_dsc": self.nsd_min_dsc, "zrange_drop_last_slice": self.zrange_drop_last_slice,
            "zrange_axis": self.zrange_axis, "round_decimals": self.round_decimals,
            "unscored_labels": list(self.unscored_labels),
        }
        if self.outside_labels is not OutsideLabels.REFUSE:  # the default leaves older profiles' hashes as they were
            rules["outside_labels"] = str(self.outside_labels)
        if self.regions is not None:  # likewise: profiles without regions keep their hashes
            rules["regions"] = [[r.name, list(r.labels), r.tolerance_mm, r.zrange_only] for r in self.regions]
        if self.lesion_wise is not None:
            lw = self.lesion_wise
            rules["lesion_wise"] = [lw.dilation_iterations, lw.small_lesion_max_mm3, lw.hd95_penalty_mm]
        if self.false_volumes:
            rules["false_volumes"] = True
        if self.panoptic is not None:
            rules["panoptic"] = [self.panoptic.matching_metric, self.panoptic.matching_threshold]
        return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()

    @property
    def label_system(self) -> tuple[tuple[int, str], ...]:
        """The (label, organ) pairs a label map uses under this profile, unscored labels included;
        two profiles with one label system differ only in how they score."""
        return (*sorted((o.label, o.name) for o in self.organs), *((v, "") for v in sorted(self.unscored_labels)))

    @property
    def extra_metrics(self) -> tuple[str, ...]:
        """The names of the metrics each scored row carries beyond DSC, NSD and HD95, in order:
        lesion-wise, then false volumes, then panoptic."""
        return ((LesionWise.METRICS if self.lesion_wise is not None else ())
                + (FALSE_VOLUME_METRICS if self.false_volumes else ())
                + (Panoptic.METRICS if self.panoptic is not None else ()))

    @property
    def scored(self) -> tuple[Region, ...]:
        """What is scored, in order: the profile's regions, or each organ as the region of its label."""
        return self.regions if self.regions is not None else tuple(Region.of(o) for o in self.organs)

    def scoring_only(self, names: Collection[str]) -> Profile:
        """This profile scoring only the organs named (a case annotating some of them, a label map
        sharing some): the others stay valid labels, unscored, and so does every region holding one."""
        kept = tuple(o for o in self.organs if o.name in names)
        rest = tuple(sorted({*self.unscored_labels, *(o.label for o in self.organs if o.name not in names)}))
        regions = self.regions
        if regions is not None:
            labels = {o.label for o in kept}
            regions = tuple(r for r in regions if set(r.labels) <= labels)
        return replace(self, organs=kept, unscored_labels=rest, regions=regions)

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
    layout: str = ""  # which layout it was found in (`harness.data.dataset.LAYOUT_*`)

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
    extra: tuple[tuple[str, float], ...] = ()  # the profile's extra metrics (`Profile.extra_metrics`), by name
