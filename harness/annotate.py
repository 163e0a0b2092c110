"""`harness annotate`: run the attention-map annotator on every case, then prioritise and judge.

For each case with at least two segmenters' accepted probabilities in the store, the annotator runs
in its own sandbox (as segmenters do) with `/input/<case>_0000.nii.gz` and
`/input/segmenters/<alg>/probabilities/`; its outputs (pseudo label, attention and heat maps,
attention.json) are checked, kept under `runs/<annotator>/<case>/`, the pseudo label is scored
against the ground truth, and the run is recorded in the store. Then, over all cases:
`annotation/priority.csv` (attention size, descending), `annotation/review_queue.csv` (top 5 %, at
least one case, organs by heat-map sum), and where ground truth exists
`annotation/error_detection.csv` (Table-1 layout, volume level first), `annotation/error_by_size.csv`,
`annotation/error_detection_cases.csv` (per
case and organ) and `annotation/priority_check.csv` (Spearman, share of error voxels in the queue).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from harness.attention import (
    attention_table,
    detection_table,
    evaluate_case,
    format_table1,
    priority_check,
    priority_list,
    review_queue,
    sensitivity_by_size,
    table1,
)
from harness.attention.io import SUMMARY_FILE as ATTENTION_SUMMARY
from harness.attention.io import read_attention, read_pseudo_label
from harness.data.dataset import discover
from harness.data.masks import assemble, is_mask_folder
from harness.data.nifti import read_label
from harness.errors import CaseError, DataError, SpecError, UsageError
from harness.executor import Executor
from harness.layout import ResultsLayout
from harness.models import Case, CaseStatus, Kind, Profile, RunStatus
from harness.pipeline import (
    DataSet,
    OnResult,
    Planned,
    Planning,
    RunSettings,
    RunSummary,
    Say,
    Stage,
    evaluate,
    plan_case,
)
from harness.spec import AlgorithmSpec, discover_algorithms
from harness.store import Store, StoreError


@dataclass
class AnnotateSummary(RunSummary):
    skipped: list[str] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)


def declares_annotators(algorithms_dir: Path, *, repo_root: Path | None = None) -> bool:
    """Whether the folder has an annotator's manifest, valid or refused (`harness run` then annotates)."""
    specs, errors = discover_algorithms(algorithms_dir, repo_root=repo_root)
    return any(s.kind is Kind.ANNOTATOR for s in specs) or any(e.kind is Kind.ANNOTATOR for e in errors)


def _inputs_digest(image_sha: str, sources: dict[str, Path]) -> str:
    """The annotator's input: the case's image and every staged segmenter probability file."""
    hasher = hashlib.sha256(image_sha.encode())
    for name in sorted(sources):
        for path in sorted(sources[name].glob("*.nii.gz")):
            hasher.update(f"{name}/{path.name}:".encode() + path.read_bytes())
    return hasher.hexdigest()


class AnnotatorStage(Stage):
    """The annotators' part of the one driver: a case runs with the probabilities of every segmenter
    whose run on it is ok (at least two, else it is skipped); then the tables are written."""

    kind = Kind.ANNOTATOR

    def __init__(self, *, queue_fraction: float = 0.05) -> None:
        self.queue_fraction = queue_fraction
        self.ok_segmenters = pd.DataFrame()

    def new_summary(self) -> AnnotateSummary:
        return AnnotateSummary()

    def start(self, store: Store) -> None:
        runs = store.runs()
        self.ok_segmenters = runs[(runs.kind == Kind.SEGMENTER) & (runs.status == RunStatus.OK)]

    def plan(self, spec: AlgorithmSpec, case: Case, at: Planning) -> Planned | None:
        layout = at.store.layout
        ok = self.ok_segmenters
        sources = {seg: layout.probabilities_dir(seg, case.case_id)
                   for seg in sorted(ok[ok.case_id == case.case_id].algorithm)
                   if layout.probabilities_dir(seg, case.case_id).is_dir()}
        summary = at.summary
        if len(sources) < 2:
            assert isinstance(summary, AnnotateSummary)
            summary.skipped.append(f"{case.case_id}: {len(sources)} segmenter(s) with probabilities; the annotator needs 2")
            if (spec.name, case.case_id) in at.stored:  # made from segmenter outputs that are gone
                at.store.forget(spec.name, case.case_id)
                summary.notes.append(f"{spec.name} on {case.case_id}: its stored annotation came from segmenter outputs "
                                     "no longer there; removed")
            return None
        digest = at.data.digests[case.case_id]
        return plan_case(spec, case, at.settings, layout, at.stored, digest=at.digests[spec.name],
                         input_sha256=_inputs_digest(digest.image_sha256, sources), label_sha256=digest.label_sha256,
                         image=at.images.get(spec.name),
                         extra_inputs=tuple((f"segmenters/{seg}/probabilities", path) for seg, path in sources.items()),
                         details={"segmenters": sorted(sources)})

    def finish(self, store: Store, data: DataSet, settings: RunSettings, summary: RunSummary) -> None:
        assert isinstance(summary, AnnotateSummary)
        summary.tables = rewrite_tables(store, settings.challenge.annotation_profile, data.cases,
                                        queue_fraction=self.queue_fraction, summary=summary)


def annotate_all(settings: RunSettings, *, say: Say, on_result: OnResult, executor: Executor | None = None,
                 queue_fraction: float = 0.05, after: RunSummary | None = None) -> AnnotateSummary:
    """Run every annotator of the algorithms folder on the cases of the store, through the one driver
    of the segmenters (`harness.pipeline.evaluate`); then write the tables (all of them, or none).
    `after`: the segmenters' summary, when this is the annotation step of `harness run`."""
    summary = evaluate(settings, AnnotatorStage(queue_fraction=queue_fraction), say=say, on_result=on_result,
                       executor=executor, after=after)
    assert isinstance(summary, AnnotateSummary)
    return summary


def rewrite_tables(store: Store, profile: Profile, cases: tuple[Case, ...], *, queue_fraction: float,
                   summary: RunSummary) -> dict[str, Path]:
    """Write the annotation tables of every annotator's accepted runs, replacing the old ones only
    when all are written; with no accepted run, remove them (they would describe other runs)."""
    runs = store.runs()
    done = runs[(runs.kind == Kind.ANNOTATOR) & (runs.status == RunStatus.OK)]
    by_id = {c.case_id: c for c in cases}
    if done.empty:
        store.layout.remove_annotation()
        return {}
    if done.algorithm.nunique() > 1:
        summary.notes.append(f"several annotators ({', '.join(sorted(done.algorithm.unique()))}); the tables are "
                             f"of {sorted(done.algorithm.unique())[0]}")
    annotator = sorted(done.algorithm.unique())[0]
    mine = done[done.algorithm == annotator]
    scored = [by_id[c] for c in sorted(mine[mine.score_status == CaseStatus.OK].case_id) if c in by_id]
    annotated = [c for c in sorted(mine.case_id) if c in by_id]
    try:
        with store.layout.replacing_annotation() as folder:
            return write_tables(store.layout, annotator, profile, annotated, scored, folder, queue_fraction=queue_fraction)
    except Exception as exc:  # noqa: BLE001 - a table that cannot be made leaves the previous ones, never a mix
        summary.problems.append(f"{store.layout.annotation_dir}: not rewritten ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}); the previous tables, if any, are kept")
        return {}


def write_tables(layout: ResultsLayout, annotator: str, profile: Profile, annotated: list[str], scored: list[Case],
                 folder: Path, *, queue_fraction: float) -> dict[str, Path]:
    """Priority list and review queue of the `annotated` cases, and error detection on the `scored`
    ones (ground truth readable), as CSV in `folder`; returns where they will be once in place."""
    summaries = [json.loads((layout.run_dir(annotator, c) / ATTENTION_SUMMARY).read_text()) for c in annotated]
    table = attention_table(summaries)
    priority = priority_list(table, fraction=queue_fraction)
    def place(name: str) -> Path:  # the table's file name, in the fresh folder
        return folder / layout.annotation_table(name).name

    written = {"priority": place("priority"), "review_queue": place("review_queue")}
    priority.to_csv(written["priority"], index=False)
    review_queue(table, priority).to_csv(written["review_queue"], index=False)
    labels = {o.name: o.label for o in profile.organs}
    tolerances = {o.name: o.tolerance_mm for o in profile.organs}  # an error is what lies beyond them
    records: list[dict[str, Any]] = []
    components: list[dict[str, Any]] = []
    for case in scored:
        assert case.label is not None
        gt: NDArray[np.integer]
        if is_mask_folder(case.label):
            assembled = assemble(case.label, profile)
            gt, spacing = assembled.label_map, assembled.grid.spacing_mm
        else:
            gt, grid = read_label(case.label)
            spacing = grid.spacing_mm
        run_dir = layout.run_dir(annotator, case.case_id)
        records += evaluate_case(gt, read_pseudo_label(run_dir), read_attention(run_dir), labels=labels, case=case.case_id,
                                 spacing=tuple(spacing), tolerances=tolerances, components=components)
    if records:
        detections = detection_table(records)
        written.update({name: place(name) for name in ("error_detection", "error_detection_cases", "priority_check",
                                                       "error_by_size")})
        format_table1(table1(detections)).to_csv(written["error_detection"], index=False)
        detections.to_csv(written["error_detection_cases"], index=False, na_rep="nan")
        sensitivity_by_size(components).to_csv(written["error_by_size"], index=False, na_rep="nan")
        check = priority_check(priority, detections, error_column="significant_error_voxels")
        pd.DataFrame([{k: (v if not (isinstance(v, float) and math.isnan(v)) else "nan") for k, v in check.items()}]).to_csv(
            written["priority_check"], index=False)
    return {name: layout.annotation_table(name) for name in written}


def check_revised(revised_dir: Path, pseudo_labels: dict[str, Path], profile_name: str, organs: list[str]) -> None:
    """Every file of a reviewer's folder must be `<annotated case>/<organ>.nii.gz` on that case's grid;
    anything else is refused before a label is written, naming the file and the fix."""
    from harness.data.nifti import check_same_grid, read_grid
    from harness.safetext import safe_text

    for entry in sorted(revised_dir.iterdir()):
        shown = safe_text(str(entry), limit=300)
        if entry.name not in pseudo_labels:
            raise DataError(f"{shown}: not an annotated case of this results folder (annotated: "
                            f"{', '.join(sorted(pseudo_labels)[:5])}{', ...' if len(pseudo_labels) > 5 else ''}); "
                            "name each folder after its case")
        for mask in sorted(entry.iterdir()):
            shown = safe_text(str(mask), limit=300)
            organ = mask.name[: -len(".nii.gz")] if mask.name.endswith(".nii.gz") else None
            if organ not in organs:
                raise DataError(f"{shown}: not <organ>.nii.gz of profile {profile_name}; name it after one of "
                                f"{', '.join(organs)}")
            reference = pseudo_labels[entry.name]
            try:
                check_same_grid(mask, read_grid(mask), reference, read_grid(reference), what="case's pseudo label")
            except CaseError as exc:
                raise DataError(str(exc)) from None


def assemble_all(results_dir: Path, out_dir: Path, *, data_dir: Path | None = None, annotator: str = "attention-annotator",
                 revised_dir: Path | None = None, original_organs: tuple[str, ...] = ()) -> Path:
    """Final labels of every annotated case by priority (original annotation of `original_organs`
    from the data set's labels, then the reviewer's revision from `revised_dir/<case>/<organ>.nii.gz`,
    then the pseudo label), in the label values of the folder's annotation profile; writes
    `out_dir/<case>.nii.gz` and `out_dir/sources.csv`. `data_dir` defaults to the folder's data set."""
    from harness.attention import assemble_case, masks_from_label_map, sources_table
    from harness.attention.io import read_revised, write_label
    from harness.challenge import challenge_of

    with Store.open(results_dir, lock=False, create=False) as store:
        identity = store.identity()
        layout = store.layout
    if identity is None:
        raise StoreError(f"{results_dir}: records no data set; run `harness run --results {results_dir}` first")
    profile = challenge_of(identity).annotation_profile
    labels = {o.name: o.label for o in profile.organs}
    dataset, _ = discover(data_dir if data_dir is not None else Path(identity.dataset_root))
    cases = {c.case_id: c for c in dataset.cases}
    folders = sorted(p.parent for p in layout.algorithm_dir(annotator).glob(f"*/{ATTENTION_SUMMARY}"))
    if not folders:
        raise SpecError(f"{results_dir}: no annotations of {annotator}; run `harness annotate` first")
    unknown = sorted(set(original_organs) - set(labels))
    if unknown:
        raise UsageError(f"--original-organs: {', '.join(unknown)} not in profile {profile.name}; use its organ names "
                         f"({', '.join(labels)})")
    if revised_dir is not None:
        check_revised(revised_dir, {f.name: f / f"{f.name}.nii.gz" for f in folders}, profile.name, list(labels))
    sources: dict[str, dict[str, str]] = {}
    for folder in folders:
        case_id = folder.name
        summary = json.loads((folder / ATTENTION_SUMMARY).read_text())
        organs = list(summary["organs"])
        pseudo = masks_from_label_map(read_pseudo_label(folder), organs, labels=labels)
        original: dict[str, object] = {}
        case = cases.get(case_id)
        if original_organs and case is not None and case.label is not None:
            label_map = (assemble(case.label, profile).label_map if is_mask_folder(case.label)
                         else read_label(case.label)[0])
            original = dict(masks_from_label_map(label_map, [o for o in organs if o in original_organs], labels=labels))
        revised = read_revised(revised_dir, case_id, organs) if revised_dir is not None else {}
        final, used = assemble_case(original, revised, pseudo, labels=labels)  # type: ignore[arg-type]
        write_label(final, folder / f"{case_id}.nii.gz", out_dir / f"{case_id}.nii.gz")
        sources[case_id] = used
    table = sources_table(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "sources.csv", index=False)
    return out_dir / "sources.csv"
