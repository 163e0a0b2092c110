"""The example segmenters' and the annotator's real images: each builds offline, segments a small
phantom case through the Docker runner, and writes probabilities in the documented format that
threshold back to its label map; the annotator then runs on their probabilities in its own image."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.annotate import annotate_all
from harness.executor import LocalExecutor
from harness.pipeline import RunSettings, run_all
from harness.store import Store

REPO = Path(__file__).resolve().parents[2]
SEGMENTERS = sorted(p.parent.name for p in (REPO / "algorithms").glob("*/algorithm.toml")
                    if 'kind = "segmenter"' in p.read_text())


@pytest.fixture(scope="module")
def segmented(tmp_path_factory, base_image: str):
    from harness.data.synth import write_dataset

    root = tmp_path_factory.mktemp("segmenters")
    write_dataset(root / "data", cases=1, seed=0, size="small")
    settings = RunSettings(algorithms_dir=REPO / "algorithms", data_dir=root / "data", results_dir=root / "results",
                           runner="docker", base=base_image, cache_dir=Path.home() / ".cache" / "harness", repo_root=REPO)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: None, executor=LocalExecutor(scoring_workers=0))
    return root, summary


def test_three_segmenters_ship(segmented) -> None:
    assert len(SEGMENTERS) >= 3, SEGMENTERS


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_image_writes_consistent_probabilities(segmented, name: str) -> None:
    root, _ = segmented
    with Store.open(root / "results", lock=False, create=False) as store:
        run = store.runs().set_index("algorithm").loc[name]
        scores = store.scores()
    assert run.status == "ok", run.message + run.log_tail[-500:]
    assert run.image_digest.startswith("sha256:") and "device:" in run.log_tail
    kept = root / "results" / "runs" / name / "phantom_0000"
    label = np.asarray(nib.load(kept / "phantom_0000.nii.gz").dataobj)
    image = nib.load(root / "data" / "imagesTr" / "phantom_0000_0000.nii.gz")
    assert label.dtype == np.uint8 and label.shape == image.shape
    probabilities = {p.name[: -len(".nii.gz")]: nib.load(p) for p in sorted((kept / "probabilities").glob("*.nii.gz"))}
    assert len(probabilities) == 13
    stack = np.stack([np.asarray(img.dataobj) for img in probabilities.values()])
    assert stack.dtype == np.uint8 and stack.shape[1:] == image.shape
    assert all(np.allclose(img.affine, image.affine) for img in probabilities.values())
    # Thresholding at 0.5 gives back (nearly) the label map.
    from harness.profiles import load_profile

    labels = {o.name: o.label for o in load_profile("flare22").organs}
    values = np.array([labels[organ] for organ in probabilities], np.uint8)
    best = stack.argmax(axis=0)
    rebuilt = np.where(stack.max(axis=0) >= 128, values[best], 0)
    assert (rebuilt == label).mean() > 0.99
    liver = scores[(scores.algorithm == name) & (scores.organ == "liver")].dsc.iloc[0]
    assert liver > 0.8


def test_annotator_image_runs_on_their_probabilities(segmented, base_image: str) -> None:
    root, _ = segmented
    settings = RunSettings(algorithms_dir=REPO / "algorithms", data_dir=root / "data", results_dir=root / "results",
                           runner="docker", base=base_image, cache_dir=Path.home() / ".cache" / "harness", repo_root=REPO)
    summary = annotate_all(settings, say=lambda m: None, on_result=lambda e: None)
    assert summary.executed == 1 and summary.failed == 0, summary.skipped
    with Store.open(root / "results", lock=False, create=False) as store:
        run = store.runs().set_index("algorithm").loc["attention-annotator"]
    assert run.status == "ok" and run.image_digest.startswith("sha256:")
    assert (root / "results" / "annotation" / "review_queue.csv").is_file()
    assert (root / "results" / "annotation" / "error_detection.csv").is_file()
