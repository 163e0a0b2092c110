"""`harness annotate` end to end (local runner, the real annotator): segmenter probabilities from
the store are staged, the annotator's outputs checked and kept, the pseudo label scored, the
priority list puts the case with a planted error first, and `harness assemble` keeps sources."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from harness.annotate import annotate_all, assemble_all
from harness.challenge import load_challenge
from harness.cli import main
from harness.data.synth import write_dataset
from harness.models import RunnerKind
from harness.pipeline import RunSettings, load_data
from harness.store import Provenance, RunRecord, Store
from tests.attention.helpers import segmenters_from_label

REPO = Path(__file__).resolve().parents[1]


def _fake_segmenter_runs(results: Path, data: Path, *, planted_case: str) -> None:
    """Store two 'segmenters' whose probabilities are blurred ground truth; in `planted_case` one
    of them misses a large part of the liver."""
    with Store.open(results) as store:
        store.bind(load_data(data).identity(load_challenge()))
        for label_path in sorted((data / "labelsTr").glob("*.nii.gz")):
            case = label_path.name[: -len(".nii.gz")]
            img = nib.load(label_path)
            label = np.asarray(img.dataobj)
            models = segmenters_from_label(label, models=("model_a", "model_b"))
            if case == planted_case:
                liver = models["model_a"]["liver"]
                xs = np.nonzero(liver)[0]
                liver[: int(np.percentile(xs, 60))] = 0  # a missed organ part
            for model in ("model_a", "model_b"):
                folder = store.layout.probabilities_dir(model, case)
                folder.mkdir(parents=True)
                for organ, p in models[model].items():
                    nib.save(nib.Nifti1Image(p, img.affine), folder / f"{organ}.nii.gz")
                prov = Provenance("sha256:x", "m", case, "local")
                store.record(RunRecord(model, case, "segmenter", "ok", 0, "", 1.0, 1.0, 0.0, 1.0, "", prov, score_status="ok"))


def _settings(root: Path) -> RunSettings:
    return RunSettings(algorithms_dir=REPO / "algorithms", data_dir=root / "data", results_dir=root / "results",
                       runner=RunnerKind.LOCAL, cache_dir=root / "cache", repo_root=REPO)


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotate")
    write_dataset(root / "data", cases=3, seed=4, size="small")
    _fake_segmenter_runs(root / "results", root / "data", planted_case="phantom_0001")
    summary = annotate_all(_settings(root), say=lambda m: None, on_result=lambda e: None)
    return root, summary


def test_annotator_runs_are_stored_and_scored(annotated) -> None:
    root, summary = annotated
    assert summary.executed == 3 and summary.failed == 0
    with Store.open(root / "results", lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores()
    run = runs.loc[("attention-annotator", "phantom_0000")]
    assert run.status == "ok" and run.kind == "annotator" and '"segmenters": ["model_a", "model_b"]' in run.details
    kept = root / "results" / "runs" / "attention-annotator" / "phantom_0000"
    assert (kept / "attention.json").is_file() and (kept / "attention" / "liver.nii.gz").is_file()
    assert (kept / "heatmap" / "spleen.nii.gz").is_file() and (kept / "phantom_0000.nii.gz").is_file()
    pseudo = scores[(scores.algorithm == "attention-annotator") & (scores.case_id == "phantom_0000")]
    assert len(pseudo) == 9 and pseudo.set_index("organ").loc["liver", "dsc"] > 0.9


def test_priority_list_puts_the_planted_case_first_and_tables_exist(annotated) -> None:
    root, summary = annotated
    priority = pd.read_csv(summary.tables["priority"])
    assert priority.iloc[0]["case"] == "phantom_0001" and bool(priority.iloc[0]["in_queue"])
    queue = pd.read_csv(summary.tables["review_queue"])
    assert set(queue["case"]) == {"phantom_0001"} and queue.iloc[0]["organ"] == "liver"
    table = pd.read_csv(summary.tables["error_detection"])
    assert list(table.organ)[-1] == "all"
    assert list(table.columns[:6]) == ["organ", "cases", "volume_sensitivity", "volume_precision", "paper_sensitivity",
                                       "paper_precision"]  # volume level first, the paper's figures beside
    assert {"component_sensitivity", "component_precision", "voxel_dice"} <= set(table.columns)
    check = pd.read_csv(summary.tables["priority_check"]).iloc[0]
    assert check["queue_cases"] == 1 and not math.isnan(float(check["share_in_queue"]))
    assert check["random_share"] == pytest.approx(1 / 3)  # 1 of the 3 cases queued
    sizes = pd.read_csv(summary.tables["error_by_size"])
    assert list(sizes.columns) == ["error_size", "components", "detected", "sensitivity"] and len(sizes) == 5


def test_reruns_are_reused_and_assemble_records_sources(annotated, tmp_path: Path) -> None:
    root, _ = annotated
    again = annotate_all(_settings(root), say=lambda m: None, on_result=lambda e: None)
    assert again.executed == 0 and again.reused == 3
    revised = tmp_path / "revised" / "phantom_0001"
    revised.mkdir(parents=True)
    ref = nib.load(root / "data" / "labelsTr" / "phantom_0001.nii.gz")
    nib.save(nib.Nifti1Image((np.asarray(ref.dataobj) == 1).astype(np.uint8), ref.affine), revised / "liver.nii.gz")
    sources = pd.read_csv(assemble_all(root / "results", tmp_path / "final", revised_dir=tmp_path / "revised",
                                       original_organs=("spleen",)))  # the data set: the one the folder records
    by = sources.set_index(["case", "organ"]).source
    assert by[("phantom_0001", "liver")] == "revised" and by[("phantom_0000", "liver")] == "pseudo"
    assert by[("phantom_0002", "spleen")] == "original"
    final = np.asarray(nib.load(tmp_path / "final" / "phantom_0001.nii.gz").dataobj)
    assert np.array_equal(final == 1, np.asarray(ref.dataobj) == 1)  # the revision, exactly


def test_annotate_command_needs_two_segmenters(tmp_path: Path, capsys) -> None:
    write_dataset(tmp_path / "data", cases=1, seed=4, size="small")
    with Store.open(tmp_path / "results") as store:
        store.bind(load_data(tmp_path / "data").identity(load_challenge()))
    with pytest.raises(SystemExit) as code:
        main(["annotate", str(REPO / "algorithms"), "--results", str(tmp_path / "results"), "--runner", "local"])
    assert code.value.code == 0
    err = capsys.readouterr().err
    assert "phantom_0000: 0 segmenter(s) with probabilities; the annotator needs 2" in err


@pytest.mark.parametrize("make, status, message", [
    (lambda r, ref: None, 2, r"--original-organs: livr not in profile atlas8; use its organ names \(liver, "),
    (lambda r, ref: nib.save(nib.Nifti1Image(np.zeros(ref.shape, np.uint8), ref.affine), r / "phantom_0001" / "livr.nii.gz"),
     4, r"phantom_0001/livr.nii.gz: not <organ>.nii.gz of profile atlas8; name it after one of liver, "),
    (lambda r, ref: nib.save(nib.Nifti1Image(np.zeros(ref.shape[:2] + (3,), np.uint8), ref.affine),
                             r / "phantom_0001" / "liver.nii.gz"),
     4, r"phantom_0001/liver.nii.gz: shape \(\d+, \d+, 3\) differs from the case's pseudo label"),
    (lambda r, ref: (r / "phantom_0009").mkdir(), 4, r"phantom_0009: not an annotated case of this results folder"),
])
def test_assemble_refuses_a_name_or_grid_it_cannot_place_before_writing(annotated, tmp_path: Path, capsys, make,
                                                                        status: int, message: str) -> None:
    import re

    root, _ = annotated
    revised = tmp_path / "revised"
    (revised / "phantom_0001").mkdir(parents=True)
    make(revised, nib.load(root / "data" / "labelsTr" / "phantom_0001.nii.gz"))
    organs = "livr" if status == 2 else "spleen"
    with pytest.raises(SystemExit) as code:
        main(["assemble", "--results", str(root / "results"), "--out", str(tmp_path / "final"), "--revised", str(revised),
              "--original-organs", organs])
    assert code.value.code == status
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "final").exists()


def _algorithms_with(tmp_path: Path, manifests: dict[str, str], *, annotator: bool) -> Path:
    """An algorithms folder with `manifests` (folder name -> algorithm.toml text), and a copy of the
    real annotator when `annotator`."""
    import shutil

    folder = tmp_path / "algorithms"
    folder.mkdir()
    if annotator:
        shutil.copytree(REPO / "algorithms" / "attention-annotator", folder / "attention-annotator")
    for name, text in manifests.items():
        (folder / name).mkdir()
        (folder / name / "algorithm.toml").write_text(text)
    return folder


def test_an_annotator_manifest_that_is_not_toml_is_named_not_lost(tmp_path: Path) -> None:
    """Its kind cannot be read, so it may be an annotator: `harness annotate` says what is wrong with it."""
    from harness.errors import SpecError

    algorithms = _algorithms_with(tmp_path, {"heatmapper": 'name = "heatmapper"\nkind = annotator\n'}, annotator=False)
    write_dataset(tmp_path / "data", cases=1, seed=4, size="small")
    _fake_segmenter_runs(tmp_path / "results", tmp_path / "data", planted_case="")
    settings = RunSettings(algorithms_dir=algorithms, data_dir=tmp_path / "data", results_dir=tmp_path / "results",
                           runner=RunnerKind.LOCAL, cache_dir=tmp_path / "cache", repo_root=REPO)
    with pytest.raises(SpecError, match=r"no valid annotator manifest \(.*heatmapper/algorithm\.toml: "):
        annotate_all(settings, say=lambda m: None, on_result=lambda e: None)


def test_annotate_reports_refused_annotators_and_leaves_segmenters_to_run(annotated, tmp_path: Path) -> None:
    root, _ = annotated
    algorithms = _algorithms_with(tmp_path, {
        "heatmapper": 'name = "heatmapper"\nkind = annotator\n',  # not TOML: of unknown kind
        "slow-seg": 'name = "slow-seg"\nversion = "1"\nkind = "segmenter"\nprofile = "flare22"\ncolour = "red"\n',
    }, annotator=True)
    said: list[str] = []
    settings = RunSettings(algorithms_dir=algorithms, data_dir=root / "data", results_dir=root / "results",
                           runner=RunnerKind.LOCAL, cache_dir=root / "cache", repo_root=REPO)
    summary = annotate_all(settings, say=said.append, on_result=lambda e: None)
    assert summary.failed == 0 and summary.executed + summary.reused == 3
    assert summary.refused == 1 and len(summary.problems) == 1
    assert "heatmapper/algorithm.toml: " in summary.problems[0]
    assert said[0].startswith("refused: ") and "heatmapper/algorithm.toml" in said[0]
    assert not any("slow-seg" in line for line in [*summary.problems, *said])  # `harness run` reports it


def test_annotate_removes_orphaned_containers_before_and_after(tmp_path: Path, monkeypatch) -> None:
    """As `harness run` does: the containers a killed harness left for this results folder are
    removed before anything is built and once every run has ended."""
    import harness.annotate
    import harness.pipeline

    pruned: list[str] = []
    for module in (harness.pipeline, harness.annotate):
        monkeypatch.setattr(module, "prune_orphans", lambda store, say: pruned.append(store.layout.owner_label),
                            raising=False)
        monkeypatch.setattr(module, "make_images", lambda specs, settings, say: ({}, {s.name: "no engine" for s in specs}),
                            raising=False)
    write_dataset(tmp_path / "data", cases=1, seed=4, size="small")
    _fake_segmenter_runs(tmp_path / "results", tmp_path / "data", planted_case="")
    settings = RunSettings(algorithms_dir=REPO / "algorithms", data_dir=tmp_path / "data",
                           results_dir=tmp_path / "results", runner=RunnerKind.DOCKER, cache_dir=tmp_path / "cache",
                           repo_root=REPO)
    summary = annotate_all(settings, say=lambda m: None, on_result=lambda e: None)
    assert summary.failed == 1 and summary.problems == ["no engine"]
    assert len(pruned) == 2 and len(set(pruned)) == 1
