"""`harness annotate`: run the attention-map annotator on every case, then prioritise and judge.

For each case with at least two segmenters' accepted probabilities in the store, the annotator runs
in its own sandbox (as segmenters do) with `/input/<case>_0000.nii.gz` and
`/input/segmenters/<alg>/probabilities/`; its outputs (pseudo label, attention and heat maps,
attention.json) are checked, kept under `runs/<annotator>/<case>/`, the pseudo label is scored
against the ground truth, and the run is recorded in the store. Then, over all cases:
`annotation/priority.csv` (attention size, descending), `annotation/review_queue.csv` (top 5 %, at
least one case, organs by heat-map sum), and where ground truth exists
`annotation/error_detection.csv` (Table-1 layout), `annotation/error_detection_cases.csv` (per
case and organ) and `annotation/priority_check.csv` (Spearman, share of error voxels in the queue).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.attention import (
    attention_table,
    detection_table,
    evaluate_case,
    format_table1,
    priority_check,
    priority_list,
    review_queue,
    table1,
)
from harness.attention.io import read_attention, read_pseudo_label
from harness.data.dataset import discover
from harness.data.nifti import read_label
from harness.errors import SpecError
from harness.models import Case, OrganScore
from harness.profiles import load_profile
from harness.runner.base import RunOutcome, RunStatus
from harness.spec import AlgorithmSpec, discover_algorithms
from harness.store import Provenance, RunRecord, Store

Say = Callable[[str], None]
ANNOTATION_DIR = "annotation"


@dataclass
class AnnotateSummary:
    executed: int = 0
    reused: int = 0
    failed: int = 0
    skipped: list[str] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)


def annotators_in(algorithms_dir: Path, *, repo_root: Path | None = None) -> list[AlgorithmSpec]:
    specs, _ = discover_algorithms(algorithms_dir, repo_root=repo_root)
    return [s for s in specs if s.kind == "annotator"]


def _inputs_digest(case_sha: str, sources: dict[str, Path]) -> str:
    hasher = hashlib.sha256(case_sha.encode())
    for name in sorted(sources):
        for path in sorted(sources[name].glob("*.nii.gz")):
            hasher.update(f"{name}/{path.name}:".encode() + path.read_bytes())
    return hasher.hexdigest()


def annotate_all(algorithms_dir: Path, data_dir: Path, results_dir: Path, *, runner: str = "docker", base: str | None = None,
                 cache_dir: Path, repo_root: Path | None = None, rerun: bool = False, queue_fraction: float = 0.05,
                 say: Say, on_result: Callable[[str, str, RunOutcome, list[OrganScore]], None]) -> AnnotateSummary:
    """Run every annotator of `algorithms_dir` on the cases of the store; write the tables."""
    from harness.pipeline import (
        RunSettings,
        _provenance,
        build_images,
        case_digest,
        execute_case,
        local_digest,
        make_runner,
        score_label_map,
    )

    summary = AnnotateSummary()
    annotators = annotators_in(algorithms_dir, repo_root=repo_root)
    if not annotators:
        raise SpecError(f"{algorithms_dir}: no annotator manifest (kind = \"annotator\"); add one, e.g. attention-annotator")
    dataset, _ = discover(data_dir)
    cases = {c.case_id: c for c in dataset.cases if c.image is not None}
    images: dict[str, str] = {}
    digests: dict[str, str] = {}
    build_failures: dict[str, str] = {}
    if runner == "docker":
        settings = RunSettings(algorithms_dir=algorithms_dir, data_dir=data_dir, results_dir=results_dir, runner=runner,
                               base=base, cache_dir=cache_dir, repo_root=repo_root)
        built, build_failures = build_images(annotators, settings, say)
        images = {name: b.tag for name, b in built.items()}
        digests = {name: b.image_id for name, b in built.items()}
    run = make_runner(runner)
    with Store.open(results_dir) as store:
        runs = store.runs()
        stored = store.valid_keys()
        segmenter_runs = runs[(runs.kind == "segmenter") & (runs.status == "ok")]
        for spec in annotators:
            if spec.name in build_failures:
                summary.failed += 1
                summary.skipped.append(build_failures[spec.name])
                continue
            digest = digests.get(spec.name) or local_digest(spec)
            for case_id, case in sorted(cases.items()):
                sources = {
                    seg: store.run_dir(seg, case_id) / "probabilities"
                    for seg in sorted(segmenter_runs[segmenter_runs.case_id == case_id].algorithm)
                    if (store.run_dir(seg, case_id) / "probabilities").is_dir()
                }
                if len(sources) < 2:
                    summary.skipped.append(f"{case_id}: {len(sources)} segmenter(s) with probabilities; the annotator needs 2")
                    continue
                base_prov = _provenance(spec, digest, case_digest(case), runner)
                prov = Provenance(**{**base_prov.__dict__, "case_sha256": _inputs_digest(base_prov.case_sha256, sources)})
                if not rerun and stored.get((spec.name, case_id)) == prov.key():
                    summary.reused += 1
                    continue
                extra = {f"segmenters/{seg}/probabilities": path for seg, path in sources.items()}
                result = execute_case(run, spec, case, image=images.get(spec.name), work_dir=results_dir,
                                      keep_dir=store.run_dir(spec.name, case_id), extra_inputs=extra, score=False)
                outcome, scores = result.outcome, []
                keep = store.run_dir(spec.name, case_id)
                if outcome.status == RunStatus.OK:
                    if not (keep / "attention.json").is_file():
                        from dataclasses import replace

                        outcome = replace(outcome, status=RunStatus.INVALID_OUTPUT,
                                          message="no /output/attention.json; write the per-organ attention sizes")
                    elif case.label is not None:
                        scores = score_label_map(spec.profile, case, keep / f"{case_id}.nii.gz")
                store.record(RunRecord(
                    algorithm=spec.name, case_id=case_id, kind=spec.kind, status=str(outcome.status), exit_code=outcome.exit_code,
                    message=outcome.message, elapsed_s=outcome.elapsed_s, wall_s=outcome.wall_s, started_at=outcome.started_at,
                    ended_at=outcome.ended_at, log_tail=outcome.log_tail, provenance=prov,
                    details={**result.details, "segmenters": sorted(sources)},
                ), scores, result.measurements)
                summary.executed += 1
                summary.failed += outcome.status != RunStatus.OK
                on_result(spec.name, case_id, outcome, scores)
        ok_annotations = store.runs()
    for spec in annotators:
        done = ok_annotations[(ok_annotations.algorithm == spec.name) & (ok_annotations.status == "ok")]
        if not done.empty:
            summary.tables.update(write_tables(spec, results_dir, [cases[c] for c in sorted(done.case_id) if c in cases],
                                               queue_fraction=queue_fraction))
    return summary


def write_tables(spec: AlgorithmSpec, results_dir: Path, cases: list[Case], *, queue_fraction: float) -> dict[str, Path]:
    """Priority list, review queue and (where ground truth exists) error detection, as CSV."""
    out = results_dir / ANNOTATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    folders = {c.case_id: results_dir / "runs" / spec.name / c.case_id for c in cases}
    summaries = [json.loads((folder / "attention.json").read_text()) for folder in folders.values()]
    table = attention_table(summaries)
    priority = priority_list(table, fraction=queue_fraction)
    written = {"priority": out / "priority.csv", "review_queue": out / "review_queue.csv"}
    priority.to_csv(written["priority"], index=False)
    review_queue(table, priority).to_csv(written["review_queue"], index=False)
    labels = {o.name: o.label for o in load_profile(spec.profile).organs}
    records = []
    for case in cases:
        if case.label is None:
            continue
        gt, _ = read_label(case.label)
        folder = folders[case.case_id]
        records += evaluate_case(gt, read_pseudo_label(folder), read_attention(folder), labels=labels,
                                 case=case.case_id)
    if records:
        detections = detection_table(records)
        written.update(error_detection=out / "error_detection.csv", error_detection_cases=out / "error_detection_cases.csv",
                       priority_check=out / "priority_check.csv")
        format_table1(table1(detections)).to_csv(written["error_detection"], index=False)
        detections.to_csv(written["error_detection_cases"], index=False, na_rep="nan")
        check = priority_check(priority, detections)
        pd.DataFrame([{k: (v if not (isinstance(v, float) and math.isnan(v)) else "nan") for k, v in check.items()}]).to_csv(
            written["priority_check"], index=False)
    return written


def assemble_all(results_dir: Path, data_dir: Path, out_dir: Path, *, annotator: str = "attention-annotator",
                 revised_dir: Path | None = None, original_organs: tuple[str, ...] = ()) -> Path:
    """Final labels of every annotated case by priority (original annotation of `original_organs`
    from the data set's labels, then the reviewer's revision from `revised_dir/<case>/<organ>.nii.gz`,
    then the pseudo label); writes `out_dir/<case>.nii.gz` and `out_dir/sources.csv`."""
    from harness.attention import assemble_case, masks_from_label_map, sources_table
    from harness.attention.io import read_revised, write_label

    dataset, _ = discover(data_dir)
    cases = {c.case_id: c for c in dataset.cases}
    folders = sorted(p.parent for p in (results_dir / "runs" / annotator).glob("*/attention.json"))
    if not folders:
        raise SpecError(f"{results_dir}: no annotations of {annotator}; run `harness annotate` first")
    sources: dict[str, dict[str, str]] = {}
    for folder in folders:
        case_id = folder.name
        summary = json.loads((folder / "attention.json").read_text())
        organs = list(summary["organs"])
        pseudo = masks_from_label_map(read_pseudo_label(folder), organs)
        original: dict[str, object] = {}
        case = cases.get(case_id)
        if original_organs and case is not None and case.label is not None:
            label_map, _ = read_label(case.label)
            original = dict(masks_from_label_map(label_map, [o for o in organs if o in original_organs]))
        revised = read_revised(revised_dir, case_id, organs) if revised_dir is not None else {}
        final, used = assemble_case(original, revised, pseudo)  # type: ignore[arg-type]
        write_label(final, folder / f"{case_id}.nii.gz", out_dir / f"{case_id}.nii.gz")
        sources[case_id] = used
    table = sources_table(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "sources.csv", index=False)
    return out_dir / "sources.csv"
