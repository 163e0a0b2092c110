"""A profile's extra metrics end to end, without Docker: phantoms with lesions (`harness data synth
--profile autopet`, BraTS-like tumours), `harness run` with the local runner (the one scoring path),
the store, `harness rank` and the report. Every stored value equals the official scripts' oracles
(autoPET's val_script.py, BraTS 2023's lesion-wise results, panoptica) run on the same arrays; a
failed run enters the ranking and the report with its metric's failure value."""

from __future__ import annotations

import importlib
import json
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from harness.cli import main
from harness.data.synth import write_dataset
from harness.ranking.config import EXTRA_METRIC_RULES, FLARE22_RANKING
from harness.report import build_report
from harness.report.tables import fmt_value
from harness.store import Store, read_store_scores
from tests.metrics import lesion_oracles as oracle
from tests.metrics.lesion_cases import perturbed_prediction, tumour_phantom
from tests.runpath.conftest import Toy

FEW_DRAWS = replace(FLARE22_RANKING, n_draws=10)  # the report's bootstrap, kept short

CASES = ("case_00", "case_01", "case_02")


@pytest.fixture(scope="module")
def sd() -> ModuleType:
    """The surface-distance package (the oracle's HD95), as tests/metrics/conftest.py provides it."""
    for alias, value in (("Inf", np.inf), ("NaN", np.nan)):
        if not hasattr(np, alias):
            setattr(np, alias, value)
    return importlib.import_module("surface_distance")


def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as code:
        main(args)
    return int(code.value.code or 0)


def _perturbed(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A prediction of a lesion mask (0/1): the smallest lesion missed (when there are two or more), the
    others grown by a voxel, and a false 3x3x2 lesion far from every true one."""
    pred = ndimage.binary_dilation(gt > 0).astype(np.uint8)
    components, n = ndimage.label(gt > 0, structure=np.ones((3, 3, 3)))
    if n >= 2:
        sizes = np.bincount(components.ravel())[1:]
        pred[ndimage.binary_dilation(components == 1 + int(np.argmin(sizes)), iterations=2)] = 0
    far = ndimage.distance_transform_edt(gt == 0) > 12
    far[:4], far[-4:], far[:, :4], far[:, -4:], far[:, :, :3], far[:, :, -3:] = (False,) * 6
    x, y, z = np.argwhere(far)[int(rng.integers(int(far.sum())))]
    pred[x - 1:x + 2, y - 1:y + 2, z:z + 2] = 1
    return pred


def _write_case(toy: Toy, case: str, gt: np.ndarray, pred: np.ndarray, affine: np.ndarray) -> None:
    """Ground truth, and an image from which the toy segmenter reads `pred` (image = label * 40)."""
    for folder, name, data in (("labelsTr", f"{case}.nii.gz", gt.astype(np.uint8)),
                               ("imagesTr", f"{case}_0000.nii.gz", (pred * 40).astype(np.int16))):
        (toy.data / folder).mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(data, affine)
        img.header.set_zooms(tuple(float(v) for v in np.diag(affine)[:3]))
        nib.save(img, toy.data / folder / name)


def _run(toy: Toy, profile: str) -> None:
    """`harness run` of three toy segmenters under `profile`: exact (the image's map), shifted by a
    voxel, and one that crashes on case_01."""
    toy.challenge_file.write_text(f'name = "lesions"\nprofile = "{profile}"\n')
    toy.segmenter("exact", profile=profile)
    toy.segmenter("shifted", "shift", profile=profile)
    toy.segmenter("flaky", "crash:case_01", profile=profile)
    code = _cli(["run", str(toy.algorithms), "--data", str(toy.data), "--results", str(toy.results), "--runner", "local",
                 "--challenge", str(toy.challenge_file), "--scoring-workers", "0"])
    assert code == 3  # partial: flaky crashed on one case


def _predictions(toy: Toy) -> dict[tuple[str, str], np.ndarray]:
    """What each segmenter wrote (known exactly: the toy's rule on the image), by (algorithm, case)."""
    out = {}
    for case in CASES:
        pred = np.rint(np.asarray(nib.load(toy.data / "imagesTr" / f"{case}_0000.nii.gz").dataobj) / 40.0).astype(np.uint8)
        out[("exact", case)] = pred
        out[("shifted", case)] = np.roll(pred, 1, axis=0)
        if case != "case_01":
            out[("flaky", case)] = pred
    return out


@pytest.fixture(scope="module")
def autopet_run(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    """Three autoPET cases: `harness data synth --profile autopet --pathology 1` phantoms (liver lesions
    labelled 1 on the phantoms' CT grid), each with a perturbed prediction; run once for the module's
    tests, which only read it (`autopet` below)."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("autopet")
        patch.setenv("HARNESS_CACHE", str(root / "cache"))
        toy = Toy(root)
        synth = toy.root / "synth"
        write_dataset(synth, cases=len(CASES), seed=35, pathology=1.0, profile="autopet")
        rng = np.random.default_rng(35)
        for index, case in enumerate(CASES):
            img = nib.load(synth / "labelsTr" / f"phantom_{index:04d}.nii.gz")
            gt = np.asarray(img.dataobj)
            assert set(np.unique(gt)) == {0, 1}  # lesions only, labelled 1
            _write_case(toy, case, gt, _perturbed(gt, rng), img.affine)
        _run(toy, "autopet")
    return toy


@pytest.fixture
def autopet(autopet_run: Toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Toy, Path]:
    """The module's autoPET run, not to be changed (a test that changes its store copies it first), and
    this test's own folder for what it writes."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return autopet_run, tmp_path


def _autopet_reference(toy: Toy) -> pd.DataFrame:
    """val_script.py's Dice, false-positive and false-negative volumes (ml) of every run scored,
    computed as the script does: the ground truth read with get_fdata, the voxel volume from pixdim."""
    rows = []
    for (algorithm, case), pred in _predictions(toy).items():
        nii = nib.load(toy.data / "labelsTr" / f"{case}.nii.gz")
        gt = nii.get_fdata()
        pixdim = nii.header["pixdim"]
        voxel_vol = pixdim[1] * pixdim[2] * pixdim[3] / 1000
        fp_ml, fn_ml = oracle.autopet_false_volumes(gt, pred.astype(np.float64), voxel_vol)
        dice = 2 * (gt * pred).sum() / (gt.sum() + pred.sum())
        rows.append({"algorithm": algorithm, "case_id": case, "dsc": float(dice), "fp_volume_ml": float(fp_ml),
                     "fn_volume_ml": float(fn_ml)})
    return pd.DataFrame(rows).set_index(["algorithm", "case_id"]).sort_index()


def test_autopet_volumes_are_stored_ranked_and_reported_as_the_official_script_gives_them(
        autopet: tuple[Toy, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    toy, out = autopet
    reference = _autopet_reference(toy)
    assert (reference["fp_volume_ml"] > 0).all() and (reference["fn_volume_ml"] > 0).sum() >= 2  # really exercised
    with Store.open(toy.results, lock=False, create=False) as store:
        scores = store.scores()
    assert list(scores.columns[-2:]) == ["fp_volume_ml", "fn_volume_ml"]
    stored = scores.set_index(["algorithm", "case_id"]).sort_index()
    assert stored.index.tolist() == reference.index.tolist()  # one row (the lesion) per run scored; not flaky/case_01
    for column in ("dsc", "fp_volume_ml", "fn_volume_ml"):
        assert stored[column].tolist() == reference[column].tolist(), column

    tidy = read_store_scores(toy.results).set_index(["algorithm", "case", "metric"])
    assert tidy.loc[("exact", "case_02", "fn_volume_ml"), "value"] == reference.loc[("exact", "case_02"), "fn_volume_ml"]
    assert math.isnan(tidy.loc[("flaky", "case_01", "fp_volume_ml"), "value"])
    assert tidy.loc[("flaky", "case_01", "fp_volume_ml"), "status"] == "crashed"

    # harness rank on the store with autoPET's ranking (shipped beside FLARE22's)
    config = Path(__file__).resolve().parents[2] / "harness" / "ranking" / "autopet_ranking.toml"
    capsys.readouterr()
    assert _cli(["rank", "--results", str(toy.results), "--config", str(config), "--draws", "10",
                 "--out", str(out / "ranking"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["metrics"] == ["dsc", "fp_volume_ml", "fn_volume_ml"] and document["left_out"] == []
    board = {row["algorithm"]: row for row in document["leaderboard"]}
    worst = EXTRA_METRIC_RULES["fp_volume_ml"].worst_value
    assert worst == 1_000_000.0
    for metric in ("fp_volume_ml", "fn_volume_ml"):
        for algorithm in ("exact", "shifted", "flaky"):
            values = [worst if (algorithm, case) == ("flaky", "case_01") else reference.loc[(algorithm, case), metric]
                      for case in CASES]
            assert board[algorithm][f"mean_{metric}"] == sum(values) / 3, (algorithm, metric)
    assert board["flaky"]["rank"] == 3  # its failed case's 1e6 ml puts it last

    # The report: a per-organ table per volume, a failed run at its failure value; private (the one
    # `harness run` wrote) and public
    pages = [(toy.results / "report.html").read_text(),
             build_report(toy.results, out / "report-public.html", config=FEW_DRAWS, public=True).read_text()]
    for page in pages:
        for metric in ("fp_volume_ml", "fn_volume_ml"):
            table = re.search(rf'<table id="organs-{metric}".*?</table>', page, re.S)
            assert table is not None, metric
            for algorithm in ("exact", "flaky"):
                values = [worst if (algorithm, case) == ("flaky", "case_01") else reference.loc[(algorithm, case), metric]
                          for case in CASES]
                row = re.search(rf"<tr><td[^>]*>{algorithm}</td><td[^>]*>([^<]*)</td>", table.group(0))
                assert row is not None and row.group(1) == fmt_value(float(np.mean(values)), metric), (metric, algorithm)
        assert "<h3>False-positive volume (ml) (lower is better; a failed run counts 1M)</h3>" in page
        assert "<h3>False-negative volume (ml) (lower is better; a failed run counts 1M)</h3>" in page


def test_a_score_table_of_lesion_columns_ranks_as_the_store_does(autopet: tuple[Toy, Path],
                                                                 capsys) -> None:  # type: ignore[no-untyped-def]
    """`harness score --pred-root` writes the volumes; `harness rank` on that table takes each case's mean,
    a missing prediction at the failure value, equal to the store's ranking."""
    toy, out = autopet
    root = out / "preds"
    for (algorithm, case), pred in _predictions(toy).items():
        (root / algorithm).mkdir(parents=True, exist_ok=True)
        affine = nib.load(toy.data / "labelsTr" / f"{case}.nii.gz").affine
        nib.save(nib.Nifti1Image(pred, affine), root / algorithm / f"{case}.nii.gz")
    table = out / "scores.csv"
    assert _cli(["score", "--pred-root", str(root), "--labels", str(toy.data), "--profile", "autopet",
                 "--out", str(table)]) == 3  # flaky has no case_01
    written = pd.read_csv(table)
    assert list(written.columns[-2:]) == ["fp_volume_ml", "fn_volume_ml"]
    reference = _autopet_reference(toy)
    printed = capsys.readouterr().out  # each algorithm's mean volumes over its cases scored ok
    exact = reference.loc["exact"]
    assert (f"{'lesion':<22}{exact['fp_volume_ml'].mean():>16.4f}{exact['fn_volume_ml'].mean():>16.4f}" in printed
            and f"{'extra metrics (mean)':<22}{'fp_volume_ml':>16}{'fn_volume_ml':>16}" in printed)
    ok = written[written["status"] == "ok"].set_index(["algorithm", "case"]).sort_index()
    assert ok["fp_volume_ml"].tolist() == reference["fp_volume_ml"].tolist()
    config = out / "rank.toml"
    # named without a direction (theirs is known: lower is better), the case mean and the lesion label's own
    config.write_text('name = "v"\nmethod = "aggregate_then_rank"\ndraws = 10\n[metrics.fn_volume_ml]\n'
                      '[metrics."fn_volume_ml@lesion"]\n')
    boards = []
    for results in (table, toy.results):
        capsys.readouterr()
        assert _cli(["rank", "--results", str(results), "--config", str(config), "--out", str(out / "r"),
                     "--json"]) == 0
        boards.append({r["algorithm"]: (r["rank"], r["mean_fn_volume_ml"], r["mean_fn_volume_ml@lesion"])
                       for r in json.loads(capsys.readouterr().out)["leaderboard"]})
    assert boards[0] == boards[1]
    assert boards[0]["flaky"][1] == (reference.loc[("flaky", "case_00"), "fn_volume_ml"] + 1_000_000.0
                                     + reference.loc[("flaky", "case_02"), "fn_volume_ml"]) / 3
    assert all(mean == own for _, mean, own in boards[0].values())  # one organ: its own value is the mean


OFFICIAL = {"whole_tumor": "WT", "tumor_core": "TC", "enhancing_tumor": "ET"}


def test_brats2023_lesion_wise_scores_are_stored_as_the_official_script_gives_them(toy: Toy, sd: ModuleType) -> None:
    rng = np.random.default_rng(3523)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for case in CASES:
        gt = tumour_phantom(rng, (56, 60, 44), n_lesions=7)
        _write_case(toy, case, gt, perturbed_prediction(rng, gt), affine)
    _run(toy, "brats2023")
    with Store.open(toy.results, lock=False, create=False) as store:
        scores = store.scores()
    assert list(scores.columns[-5:]) == ["lesion_dice", "lesion_hd95_mm", "lesion_tp", "lesion_fn", "lesion_fp"]
    checked = 0
    for (algorithm, case), pred in _predictions(toy).items():
        gt = nib.load(toy.data / "labelsTr" / f"{case}.nii.gz").get_fdata()
        for region, short in OFFICIAL.items():
            row = scores[(scores.algorithm == algorithm) & (scores.case_id == case) & (scores.organ == region)].iloc[0]
            ref = oracle.brats_lesion_results(pred.astype(np.float64), gt, (1.0, 1.0, 1.0), short, dilation_factor=3,
                                              lesion_volume_thresh=50, sd=sd)
            assert (row.lesion_dice, row.lesion_hd95_mm) == (ref["LesionWise_Score_Dice"], ref["LesionWise_Score_HD95"])
            assert (row.lesion_tp, row.lesion_fn, row.lesion_fp) == (ref["Num_TP"], ref["Num_FN"], ref["Num_FP"])
            checked += 1
    assert checked == 3 * 8 and (scores.lesion_fp > 0).any() and (scores.lesion_fn > 0).any()
    tidy = read_store_scores(toy.results).set_index(["algorithm", "case", "metric"])["value"]
    regions = scores[(scores.algorithm == "shifted") & (scores.case_id == "case_01")]
    assert tidy[("shifted", "case_01", "lesion_hd95_mm")] == regions.lesion_hd95_mm.mean()  # case value: region mean
    # BraTS 2023's ranking: per-case ranks of the six region metrics pooled; flaky's failed case at Dice 0, HD95 374
    config = Path(__file__).resolve().parents[2] / "harness" / "ranking" / "brats2023_ranking.toml"
    assert _cli(["rank", "--results", str(toy.results), "--config", str(config), "--draws", "10",
                 "--out", str(toy.root / "ranking")]) == 0
    ranks = pd.read_csv(toy.root / "ranking" / "per_case_ranks.csv").set_index(["algorithm", "case", "metric"])
    assert len(ranks) == 3 * 3 * 6
    for region in OFFICIAL:
        assert ranks.loc[("flaky", "case_01", f"lesion_dice@{region}"), "value"] == 0.0
        assert ranks.loc[("flaky", "case_01", f"lesion_hd95_mm@{region}"), "value"] == 374.0
        stored = scores[(scores.algorithm == "shifted") & (scores.case_id == "case_02") & (scores.organ == region)]
        assert ranks.loc[("shifted", "case_02", f"lesion_hd95_mm@{region}"), "value"] == stored.lesion_hd95_mm.iloc[0]
    page = (toy.results / "report.html").read_text()  # the report `harness run` wrote
    table = re.search(r'<table id="organs-lesion_hd95_mm".*?</table>', page, re.S)
    assert table is not None and 'data-first="ascending"' in table.group(0)  # lower is better
    assert '<table id="organs-lesion_tp"' not in page  # counts are not a per-organ table


def test_panoptic_quality_of_a_user_profile_is_stored_as_panoptica_gives_it(autopet: tuple[Toy, Path]) -> None:
    panoptica = pytest.importorskip("panoptica", reason="panoptica (the oracle, pinned in the test extras) is not installed")
    from panoptica import (
        ConnectedComponentsInstanceApproximator,
        InputType,
        Metric,
        NaiveThresholdMatching,
        Panoptica_Evaluator,
    )

    toy, out = autopet
    results = shutil.copytree(toy.results, out / "results")  # rescored: this test's own copy of the store
    profile = out / "lesions_pq.toml"
    text = (Path(__file__).resolve().parents[2] / "harness" / "profiles" / "autopet.toml").read_text()
    profile.write_text(text.replace('name = "autopet"', 'name = "lesions_pq"')
                       + '\npanoptic = { matching_metric = "iou", matching_threshold = 0.5 }\n')
    code = _cli(["rescore", "--results", str(results), "--profile", str(profile), "--no-report"])  # the store is the point
    assert code == 0
    with Store.open(results, lock=False, create=False) as store:
        scores = store.scores().set_index(["algorithm", "case_id"])
    assert list(scores.columns[-7:]) == ["fp_volume_ml", "fn_volume_ml", "pq", "sq", "rq", "sq_dsc", "pq_dsc"]
    evaluator = Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC, instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=NaiveThresholdMatching(matching_metric=Metric.IOU, matching_threshold=0.5),
        instance_metrics=[Metric.DSC, Metric.IOU], global_metrics=[Metric.DSC])
    for (algorithm, case), pred in _predictions(toy).items():
        gt = np.asarray(nib.load(toy.data / "labelsTr" / f"{case}.nii.gz").dataobj).astype(np.uint8)
        ref = evaluator.evaluate(pred.astype(np.uint8), gt, verbose=False)["ungrouped"]
        row = scores.loc[(algorithm, case)]
        assert (row.pq, row.sq, row.rq, row.sq_dsc, row.pq_dsc) == tuple(
            float(getattr(ref, name)) for name in ("pq", "sq", "rq", "sq_dsc", "pq_dsc"))
    assert panoptica is not None and (scores.pq < 1).any()
