"""`harness run` end to end without Docker: planning (run, rescore, reuse), the one-case layer, the
store, and every way a case can go wrong while the others go on."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import DataError, SpecError
from harness.pipeline import RunSummary, run_all
from harness.store import Store, StoreError, read_store_scores
from tests.conftest import toy_labels, write_nifti
from tests.runpath.conftest import TOY_NIFTI, TOY_ORGANS, Toy


def _run(toy: Toy, **changes: object) -> RunSummary:
    return run_all(toy.settings(**changes), say=lambda m: None, on_result=lambda e: None)


def _runs(toy: Toy) -> pd.DataFrame:
    with Store.open(toy.results, lock=False, create=False) as store:
        return store.runs().set_index(["algorithm", "case_id"])


def _scores(toy: Toy) -> pd.DataFrame:
    with Store.open(toy.results, lock=False, create=False) as store:
        return store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()


def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as code:
        main(args)
    return int(code.value.code or 0)


def test_the_toy_writes_without_nibabel_the_bytes_its_nibabel_code_writes(tmp_path: Path) -> None:
    """The toy segmenter reads and writes NIfTI with the standard library where it can (a start without
    NumPy and nibabel): byte for byte what its nibabel code, the reference, writes; anything else it
    leaves to that code."""
    toy_io: dict = {}
    exec(TOY_NIFTI, toy_io)
    labels = toy_labels(3)
    plain = {"toy data": write_nifti(tmp_path / "toy.nii.gz", (labels * 40).astype(np.int16))}
    affine = np.array([[1.5, 0, 0, -100.2], [0, 0.7, 0, 50.1], [0, 0, 3.0, 7.0], [0, 0, 0, 1]])
    noise = np.random.default_rng(3).integers(0, 21, labels.shape)  # rounded up, down, and halves to even
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        plain[np.dtype(dtype).name] = write_nifti(tmp_path / f"{np.dtype(dtype).name}.nii.gz",
                                                  (labels * 40 + noise).astype(dtype), (1.5, 0.7, 3.0), affine=affine)
    others = {"flipped axes": write_nifti(tmp_path / "flipped.nii.gz", (labels * 40).astype(np.int16),
                                          affine=np.diag([-0.8, -0.8, 2.5, 1.0]))}
    scaled = nib.Nifti1Image((labels * 20).astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0]))
    scaled.header.set_slope_inter(2.0, 0.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    others["scaled"] = tmp_path / "scaled.nii.gz"
    for name, image in {**plain, **others}.items():
        for mode in ("ok", "shift", "wrong_grid", "empty"):
            fast, reference = tmp_path / f"{name}-{mode}", tmp_path / f"{name}-{mode}-nibabel"
            fast.mkdir()
            reference.mkdir()
            written = toy_io["write_plain"](image, fast, "case_00", mode, TOY_ORGANS, True)
            assert written is (name in plain), name
            if not written:
                assert list(fast.iterdir()) == []
                continue
            toy_io["write_with_nibabel"](image, reference, "case_00", mode, TOY_ORGANS, True)
            files = sorted(p.relative_to(fast) for p in fast.rglob("*.nii.gz"))
            assert files == sorted(p.relative_to(reference) for p in reference.rglob("*.nii.gz")) and len(files) == 5
            for file in files:
                assert (fast / file).read_bytes() == (reference / file).read_bytes(), (name, mode, file)


def test_unchanged_runs_are_reused_and_a_changed_algorithm_runs_again(toy: Toy) -> None:
    toy.write_data(4)
    toy.segmenter("alpha")
    toy.segmenter("beta", "shift")
    first = _run(toy)
    assert (first.executed, first.reused, first.failed, first.partial) == (8, 0, 0, False)
    assert len(toy.starts()) == 8
    again = _run(toy)
    assert (again.executed, again.reused, again.rescored) == (0, 8, 0) and len(toy.starts()) == 8  # nothing started
    script = toy.algorithms / "beta" / "toy.py"
    script.write_text(script.read_text() + "# a new version of beta\n")  # a changed image (here: folder) digest
    changed = _run(toy)
    assert (changed.executed, changed.reused) == (4, 4)
    assert sorted(toy.starts()[8:]) == [f"beta case_{i:02d}" for i in range(4)]
    runs = _runs(toy)
    assert set(runs.status) == {"ok"} and set(runs.score_status) == {"ok"}


def test_a_changed_profile_rescores_kept_outputs_without_starting_anything(toy: Toy) -> None:
    toy.write_data(3)
    toy.segmenter("alpha")
    toy.segmenter("beta", "shift")
    _run(toy)
    before = _scores(toy)
    toy.write_profile(liver=0.1, kidney=0.1, spleen=0.1, aorta=0.1)
    summary = _run(toy)
    assert (summary.executed, summary.rescored, summary.reused) == (0, 6, 0)
    assert len(toy.starts()) == 6  # no run started
    after = _scores(toy)
    assert after.dsc.equals(before.dsc)
    shifted = after.loc["beta"]
    assert (shifted.nsd < before.loc["beta"].nsd).all()  # every organ of the shifted prediction
    assert (after.loc["alpha"].nsd == 1.0).all()  # a perfect prediction is perfect at any tolerance
    # A fixed ground-truth label rescores that case only.
    label_file = toy.data / "labelsTr" / "case_01.nii.gz"
    fixed = toy_labels(1)
    fixed[fixed == 3] = 0  # the spleen was never there
    write_nifti(label_file, fixed)
    summary = _run(toy)
    assert (summary.executed, summary.rescored, summary.reused) == (0, 2, 4) and len(toy.starts()) == 6
    assert _scores(toy).loc[("alpha", "case_01", "spleen"), "dsc"] == 0.0  # predicted where the truth has none


def test_ground_truth_problems_are_recorded_and_the_other_cases_go_on(toy: Toy, capsys) -> None:
    toy.write_data(6)
    toy.segmenter("alpha")
    labels = toy.data / "labelsTr"
    bad = toy_labels(1)
    bad[0, 0, 0] = 14  # a label value the profile does not have
    write_nifti(labels / "case_01.nii.gz", bad)
    (labels / "case_02.nii.gz").write_bytes(gzip.compress(b"not a nifti file at all" * 20))
    write_nifti(labels / "case_03.nii.gz", toy_labels(3)[:, :, :-1])  # not the image's grid
    (labels / "case_04.nii.gz").write_bytes(b"")
    wraps = toy_labels(5)
    wraps[wraps == 1] = 20  # a label that would wrap in uint8 arithmetic
    write_nifti(labels / "case_05.nii.gz", wraps)
    args = ["run", str(toy.algorithms), "--data", str(toy.data), "--results", str(toy.results), "--runner", "local",
            "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report"]  # the store is the point
    code = _cli(args)
    err = capsys.readouterr().err
    assert code == 3  # partial
    runs = _runs(toy).loc["alpha"]
    assert set(runs.status) == {"ok"}  # the algorithm did nothing wrong
    assert runs.score_status.to_dict() == {"case_00": "ok", "case_01": "invalid_labels", "case_02": "unreadable",
                                           "case_03": "grid_mismatch", "case_04": "unreadable", "case_05": "invalid_labels"}
    for case in ("case_01", "case_02", "case_03", "case_04", "case_05"):
        assert f"{labels / case}.nii.gz" in runs.loc[case, "score_message"]
        assert f"harness: error: {case}: ground truth not scored" in err
    assert "14" in runs.loc["case_01", "score_message"] and "20" in runs.loc["case_05", "score_message"]
    assert set(read_store_scores(toy.results).case) == {"case_00"}  # the ranking leaves them out
    assert len(toy.starts()) == 6
    # Run again: nothing starts, and the stored unscorable cases still make the evaluation partial.
    code = _cli(args)
    err = capsys.readouterr().err
    assert code == 3 and len(toy.starts()) == 6
    assert "harness: error: case_02: ground truth not scored (unreadable, stored by an earlier run)" in err


def test_labels_outside_a_background_profile_are_scored_with_a_warning_on_the_run(toy: Toy, capsys) -> None:
    """Under a profile whose `outside_labels` is background (flare22's rule), a 14 in the ground truth is
    background: the case is scored, and the warning is recorded on the run and printed."""
    toy.write_data(2)
    with toy.profile_file.open("a") as stream:
        stream.write('outside_labels = "background"\n')
    toy.segmenter("alpha")
    labels = toy.data / "labelsTr"
    lesion = toy_labels(1)
    lesion[0:2, 0:2, 0:2] = 14
    write_nifti(labels / "case_01.nii.gz", lesion)
    code = _cli(["run", str(toy.algorithms), "--data", str(toy.data), "--results", str(toy.results), "--runner", "local",
                 "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report"])
    err = capsys.readouterr().err
    assert code == 0, err
    runs = _runs(toy).loc["alpha"]
    assert runs.score_status.to_dict() == {"case_00": "ok", "case_01": "ok"}
    warning = f"{labels / 'case_01.nii.gz'}: label values 14 are not in profile toy; counted as background"
    assert runs.loc["case_01", "score_message"].startswith(warning) and runs.loc["case_00", "score_message"] == ""
    assert "| warning: " + warning in err


def test_bad_outputs_are_the_algorithms_and_the_other_cases_go_on(toy: Toy) -> None:
    toy.write_data(4)
    toy.segmenter("alpha", "empty:case_01")
    toy.segmenter("beta", "wrong_grid:case_02")
    toy.segmenter("gamma", "crash:case_03")
    summary = _run(toy)
    assert summary.executed == 12 and summary.failed == 3 and summary.partial
    runs = _runs(toy)
    assert runs.loc[("alpha", "case_01"), "status"] == "invalid_output"
    assert "/output/case_01.nii.gz" in runs.loc[("alpha", "case_01"), "message"]
    assert runs.loc[("beta", "case_02"), "status"] == "invalid_output"
    assert "/output/case_02.nii.gz" in runs.loc[("beta", "case_02"), "message"]
    assert "grid" in runs.loc[("beta", "case_02"), "message"]
    assert runs.loc[("gamma", "case_03"), "status"] == "crashed"
    assert "crashing on purpose" in runs.loc[("gamma", "case_03"), "log_tail"]
    assert (runs.status == "ok").sum() == 9
    assert _scores(toy).loc[("alpha", "case_00")].dsc.eq(1.0).all()
    with Store.open(toy.results, lock=False, create=False) as store:
        assert store.scores().query("algorithm == 'alpha' and case_id == 'case_01'").empty
    # A failure is a result: reused like the others until its algorithm changes.
    again = _run(toy)
    assert (again.executed, again.reused, again.failed, again.failed_earlier, again.partial) == (0, 12, 3, 3, True)
    toy.set_mode("alpha", "ok")
    fixed = _run(toy)  # beta's and gamma's stored failures still count
    assert (fixed.executed, fixed.reused, fixed.failed, fixed.failed_earlier) == (4, 8, 2, 2)
    assert _runs(toy).loc[("alpha", "case_01"), "status"] == "ok" and (_runs(toy).status != "ok").sum() == 2


def test_a_results_folder_of_other_data_or_rules_is_refused(toy: Toy, capsys) -> None:
    toy.write_data(3)
    toy.segmenter("alpha")
    _run(toy)
    other = toy.write_data(2, root=toy.root / "other-data", seed=50)
    with pytest.raises(StoreError, match=r"holds results of data set .*data \(3 cases, id [0-9a-f]{12}\), not of --data "
                                         r".*other-data \(2 cases.*use a new --results folder"):
        _run(toy, data_dir=other)
    code = _cli(["run", str(toy.algorithms), "--data", str(other), "--results", str(toy.results), "--runner", "local",
                 "--challenge", str(toy.challenge_file), "--scoring-workers", "0"])
    assert code == 4 and "a results folder belongs to one data set" in capsys.readouterr().err
    (toy.root / "copy.toml").write_text(toy.profile_file.read_text())  # same rules, another file: another config
    (toy.root / "other-challenge.toml").write_text('name = "toy-challenge"\nprofile = "copy.toml"\n')
    code = _cli(["run", str(toy.algorithms), "--data", str(toy.data), "--results", str(toy.results), "--runner", "local",
                 "--challenge", str(toy.root / "other-challenge.toml"), "--scoring-workers", "0"])
    assert code == 4 and "harness rescore --results" in capsys.readouterr().err
    code = _cli(["annotate", str(toy.algorithms), "--data", str(other), "--results", str(toy.results), "--runner", "local"])
    assert code in (4, 5)
    assert len(_runs(toy)) == 3 and len(toy.starts()) == 3  # nothing written, nothing started


def test_a_manifest_whose_labels_do_not_fit_the_challenge_never_runs(toy: Toy) -> None:
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("flare", profile="flare22")  # FLARE22's 13 labels; the challenge scores the toy's 4
    summary = _run(toy)
    assert summary.executed == 2 and summary.partial
    assert any("flare/algorithm.toml: key 'profile'" in p and "toy-challenge" in p for p in summary.problems)
    assert not any(s.startswith("flare ") for s in toy.starts())


def test_a_withdrawn_algorithm_is_noted_until_forgotten(toy: Toy, capsys) -> None:
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("beta")
    _run(toy)
    shutil.rmtree(toy.algorithms / "beta")
    summary = _run(toy)
    assert any("holds runs of beta, which is not in" in n and "harness forget beta" in n for n in summary.notes)
    assert _cli(["forget", "beta", "--results", str(toy.results)]) == 0
    assert "beta: 2 runs removed" in capsys.readouterr().out
    assert set(_runs(toy).index.get_level_values(0)) == {"alpha"}
    assert not (toy.results / "runs" / "beta").exists()
    assert _cli(["forget", "nobody", "--results", str(toy.results)]) == 4


def test_a_killed_run_resumes_where_it_stopped(toy: Toy) -> None:
    toy.write_data(4)
    toy.segmenter("alpha", "slow:case_02")  # case_02 sleeps the first time: the harness is killed there
    env = {**os.environ, "HARNESS_CACHE": str(toy.root / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(toy.algorithms), "--data", str(toy.data), "--results",
         str(toy.results), "--runner", "local", "--challenge", str(toy.challenge_file), "--scoring-workers", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = toy.starts_file.parent / "slow-started"
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the slow case never started"
    proc.kill()
    proc.wait()
    try:
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the orphaned algorithm process
    except (ProcessLookupError, ValueError):
        pass
    assert sorted(_runs(toy).index.get_level_values(1)) == ["case_00", "case_01"]  # each case committed as it ended
    summary = _run(toy)
    assert (summary.executed, summary.reused, summary.failed) == (2, 2, 0)
    assert toy.starts().count("alpha case_00") == 1 and toy.starts().count("alpha case_02") == 2
    with Store.open(toy.results, lock=False, create=False) as store:
        assert store.integrity_ok() and len(store.runs()) == 4


def test_unreadable_data_is_one_line_not_a_crash(toy: Toy, capsys) -> None:
    toy.segmenter("alpha")
    (toy.data / "imagesTr").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data: no cases found; expected imagesTr/<case>_0000.nii.gz"):
        _run(toy)
    code = _cli(["run", str(toy.algorithms), "--data", str(toy.root / "nowhere"), "--results", str(toy.results),
                 "--runner", "local", "--challenge", str(toy.challenge_file), "--scoring-workers", "0"])
    assert code == 4 and "internal error" not in capsys.readouterr().err


def test_annotation_tables_always_describe_the_stored_annotations(toy: Toy) -> None:
    from harness.annotate import annotate_all

    toy.write_data(3)
    # FLARE22's organs hold the annotator's (AbdomenAtlas-8K's): segmenters write probabilities for all 13.
    toy.challenge_file.write_text('name = "toy-challenge"\nprofile = "flare22"\n')
    toy.segmenter("alpha", probabilities=True, profile="flare22")
    toy.segmenter("beta", "shift", probabilities=True, profile="flare22")
    toy.annotator()
    _run(toy)
    first = annotate_all(toy.settings(), say=lambda m: None, on_result=lambda e: None)
    assert first.executed == 3 and first.failed == 0, first.problems
    priority = toy.results / "annotation" / "priority.csv"
    assert set(pd.read_csv(priority).case) == {f"case_{i:02d}" for i in range(3)}
    # beta now fails on case_01: its annotation there came from outputs that are gone.
    toy.set_mode("beta", "crash:case_01")
    _run(toy)
    second = annotate_all(toy.settings(), say=lambda m: None, on_result=lambda e: None)
    assert any("case_01: 1 segmenter(s)" in s for s in second.skipped)
    stored = _runs(toy).loc["attention-annotator"]
    assert set(pd.read_csv(priority).case) == set(stored.index) == {"case_00", "case_02"}
    # A table that cannot be written leaves the previous ones whole, and says so.
    kept = {p.name: p.read_bytes() for p in (toy.results / "annotation").iterdir()}
    (toy.results / "runs" / "attention-annotator" / "case_02" / "attention.json").write_text("{ not json")
    third = annotate_all(toy.settings(), say=lambda m: None, on_result=lambda e: None)
    assert third.partial and any("annotation: not rewritten" in p for p in third.problems)
    assert {p.name: p.read_bytes() for p in (toy.results / "annotation").iterdir()} == kept
    assert not list(toy.results.glob(".annotation-*"))  # no half-written folder left behind


def test_the_report_and_ranking_read_a_store_made_by_run(toy: Toy) -> None:
    toy.write_data(3)
    toy.segmenter("alpha")
    toy.segmenter("beta", "shift")
    _run(toy)
    assert _cli(["report", "--results", str(toy.results), "--draws", "20"]) == 0
    html = (toy.results / "report.html").read_text()
    assert "alpha" in html and "beta" in html


def _oracle_nsd(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], label: int, tolerance: float,
                zrange_only: bool) -> tuple[float, float]:
    """(DSC, NSD) of one organ by DeepMind's surface-distance package, with FLARE22's rules as
    reference/flare22.md gives them (z-range cut with its off-by-one, DSC < 0.2 => NSD 0, 4 decimals)."""
    for alias, value in (("Inf", np.inf), ("NaN", np.nan)):  # surface-distance 0.1 predates NumPy 2
        if not hasattr(np, alias):
            setattr(np, alias, value)
    import surface_distance

    g, p = gt == label, pred == label
    if zrange_only:
        zs = np.nonzero(g.any(axis=(0, 1)))[0]
        g, p = g[:, :, zs.min():zs.max()], p[:, :, zs.min():zs.max()]
    dsc = 2 * (g & p).sum() / (g.sum() + p.sum())
    if dsc < 0.2:
        return round(float(dsc), 4), 0.0
    distances = surface_distance.compute_surface_distances(g, p, spacing)
    return round(float(dsc), 4), round(float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance)), 4)


def test_rescore_after_a_tolerance_change_matches_an_independent_recomputation(toy: Toy, capsys) -> None:
    toy.write_data(3)
    toy.segmenter("alpha")
    toy.segmenter("beta", "shift")
    common = ["--results", str(toy.results)]
    assert _cli(["run", str(toy.algorithms), "--data", str(toy.data), *common, "--runner", "local",
                 "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report"]) == 0
    before = _scores(toy)
    starts = len(toy.starts())
    tolerances = {"liver": 0.5, "right_kidney": 0.2, "spleen": 0.3, "aorta": 0.4}  # under the 0.8 mm shift
    toy.write_profile(liver=0.5, kidney=0.2, spleen=0.3, aorta=0.4)
    assert _cli(["rescore", *common, "--no-report"]) == 0
    assert "6 runs rescored" in capsys.readouterr().out
    assert len(toy.starts()) == starts  # no container, no process started
    after = _scores(toy)
    assert after.dsc.equals(before.dsc)
    assert (after.loc["beta"].nsd != before.loc["beta"].nsd).all()  # every NSD of the imperfect prediction moved
    checked = 0
    for (algorithm, case_id, organ), row in after.iterrows():
        gt_img = nib.load(toy.data / "labelsTr" / f"{case_id}.nii.gz")
        gt = np.asarray(gt_img.dataobj)
        pred = np.asarray(nib.load(toy.results / "runs" / algorithm / case_id / f"{case_id}.nii.gz").dataobj)
        dsc, nsd = _oracle_nsd(gt, pred, tuple(float(z) for z in gt_img.header.get_zooms()), int(row.label),
                               tolerances[organ], organ == "aorta")
        assert row.dsc == pytest.approx(dsc, abs=1e-4) and row.nsd == pytest.approx(nsd, abs=1e-4), (algorithm, case_id, organ)
        checked += 1
    assert checked == 2 * 3 * 4
    # The folder's own profile is what a later `harness run` checks against: nothing to do now.
    again = _run(toy)
    assert (again.executed, again.rescored, again.reused) == (0, 0, 6)


def test_the_challenges_caps_bound_every_manifest(toy: Toy) -> None:
    toy.write_data(2)
    toy.segmenter("alpha", "slow:case_00")  # sleeps 60 s on its first case
    greedy = toy.segmenter("greedy")
    manifest = greedy / "algorithm.toml"
    manifest.write_text(manifest.read_text().replace("time_limit_s = 120", 'time_limit_s = 120\nmemory = "999g"'))
    toy.challenge_file.write_text('name = "toy-challenge"\nprofile = "toy.toml"\n[limits]\ntime_limit_s = 2\n')
    with pytest.raises(SpecError, match="no valid segmenter manifest"):  # alpha asks for 120 s, over the 2 s cap
        _run(toy)
    manifest_alpha = toy.algorithms / "alpha" / "algorithm.toml"
    manifest_alpha.write_text(manifest_alpha.read_text().replace("time_limit_s = 120\n", ""))  # unset: the cap
    summary = _run(toy)
    assert any("greedy/algorithm.toml: key 'resources.memory' = 999g is over the challenge's cap of 32g" in p
               for p in summary.problems)
    assert not any(s.startswith("greedy ") for s in toy.starts())  # never ran
    runs = _runs(toy)
    assert runs.loc[("alpha", "case_00"), "status"] == "timeout"  # the organiser's 2 s, not the manifest's
    assert runs.loc[("alpha", "case_00"), "elapsed_s"] < 10
    assert runs.loc[("alpha", "case_01"), "status"] == "ok"


def test_junk_in_output_is_reported_not_kept_and_the_run_goes_on(toy: Toy) -> None:
    toy.write_data(2)
    alpha = toy.segmenter("alpha", "junk:case_00")  # valid label map, plus 1500 nested folders, a hostile name, extras
    manifest = alpha / "algorithm.toml"  # within its count of files and folders (the local runner holds it to it)
    manifest.write_text(manifest.read_text().replace("time_limit_s = 120", "time_limit_s = 120\noutput_files = 2000"))
    toy.segmenter("beta")
    summary = _run(toy)
    assert summary.executed == 4 and summary.failed == 0
    runs = _runs(toy)
    assert set(runs.status) == {"ok"}
    details = json.loads(runs.loc[("alpha", "case_00"), "details"])
    assert set(details["not_kept"]) == {"d", "bad-\\xff\\xfe-red", "notes.txt", "probabilities"}
    assert "not_kept" not in json.loads(runs.loc[("alpha", "case_01"), "details"])  # its next case: nothing extra
    assert details["manifest_version"] == "0.0.1"  # the manifest's own words travel with each run, for the report
    kept = sorted(p.relative_to(toy.results / "runs" / "alpha" / "case_00").as_posix()
                  for p in (toy.results / "runs" / "alpha" / "case_00").rglob("*"))
    assert kept == ["case_00.nii.gz", "log.txt", "monitor.parquet"]
    assert "\x1b" not in runs.loc[("alpha", "case_00"), "log_tail"] and "coloured" in runs.loc[("alpha", "case_00"), "log_tail"]


def test_the_organisers_data_is_never_modified(toy: Toy) -> None:
    toy.write_data(2)
    image = toy.data / "imagesTr" / "case_00_0000.nii.gz"
    image.chmod(0o600)
    before = (image.stat().st_ino, image.stat().st_mode, image.read_bytes())
    toy.segmenter("alpha", "attack_input")  # chmods and overwrites its /input file
    _run(toy)
    assert (image.stat().st_ino, image.stat().st_mode, image.read_bytes()) == before
    assert "alpha case_00" in toy.starts()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_cleanly_and_the_next_run_resumes(toy: Toy, signum: int, code: int) -> None:
    toy.write_data(3)
    toy.segmenter("alpha", "slow:case_01")
    scratch = toy.root / "scratch"
    scratch.mkdir()
    env = {**os.environ, "HARNESS_CACHE": str(toy.root / "cache"), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(toy.algorithms), "--data", str(toy.data), "--results",
         str(toy.results), "--runner", "local", "--challenge", str(toy.challenge_file), "--scoring-workers", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = toy.starts_file.parent / "slow-started"
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the slow case never started"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name}; the running container was removed" in err
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):  # the algorithm's process went with it
        os.kill(pid, 0)
    assert list(scratch.iterdir()) == []  # no temp folder left behind
    with Store.open(toy.results, lock=False, create=False) as store:
        assert store.integrity_ok() and list(store.runs().case_id) == ["case_00"]
    summary = _run(toy)
    assert (summary.executed, summary.reused, summary.failed) == (2, 1, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs as a full disk")
def test_a_full_disk_is_its_own_exit_status_and_the_next_run_resumes(toy: Toy, capsys) -> None:
    toy.write_data(6)
    toy.segmenter("alpha")
    toy.results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(toy.results)], check=True)
    try:
        filler = toy.results / "filler"
        with filler.open("wb") as out:  # leave about 200 KB: the store and a few cases fit, not all
            try:
                out.write(b"\0" * (2 * 1024**2 - 200 * 1024))
            except OSError:
                pass
        args = ["run", str(toy.algorithms), "--data", str(toy.data), "--results", str(toy.results), "--runner", "local",
                "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report"]  # the store is the point
        code = _cli(args)
        err = capsys.readouterr().err
        assert code == 6, err
        assert "no space left on the device" in err and "run the same command again to resume" in err
        with Store.open(toy.results, lock=False, create=False) as store:  # what ended before the disk filled is kept
            kept, intact = len(store.runs()), store.integrity_ok()
        assert 0 < kept < 6 and intact
        filler.unlink()
        assert _cli(args) == 0
        with Store.open(toy.results, lock=False, create=False) as store:
            assert store.integrity_ok() and len(store.runs()) == 6 and set(store.runs().status) == {"ok"}
    finally:
        subprocess.run(["umount", "-l", str(toy.results)], check=False)


def test_an_organ_the_rules_cannot_score_is_counted_apart_with_its_reason(toy: Toy, capsys) -> None:
    toy.write_data(2)
    label = toy_labels(0)
    label[label == 5] = 0
    label[13:18, 12:17, 5] = 5  # the aorta on one slice: the flare22-style z-range cut leaves nothing
    write_nifti(toy.data / "labelsTr" / "case_00.nii.gz", label)
    write_nifti(toy.data / "imagesTr" / "case_00_0000.nii.gz", (label * 40).astype(np.int16))
    toy.segmenter("alpha")
    code = _cli(["run", str(toy.algorithms), "--data", str(toy.data), "--results", str(toy.results), "--runner", "local",
                 "--challenge", str(toy.challenge_file), "--scoring-workers", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "1 organ(s) not scorable" in out
    with Store.open(toy.results, lock=False, create=False) as store:
        scores = store.scores().set_index(["case_id", "organ"])
    assert scores.loc[("case_00", "aorta"), "organ_status"] == "not_scorable"
    assert "labelled on one slice only" in scores.loc[("case_00", "aorta"), "organ_message"]
    assert scores.loc[("case_01", "aorta"), "organ_status"] == "ok"
    html = (toy.results / "report.html").read_text()
    assert "Organs not scorable under the profile" in html and "labelled on one slice only" in html


def test_a_data_set_in_metaimage_format_runs_and_scores_as_its_nifti_twin(toy: Toy) -> None:
    from tests.data.test_formats import write_as

    for i in range(2):
        write_as(toy.data / "labelsTr" / f"case_{i:02d}.mha", toy_labels(i))
        write_as(toy.data / "imagesTr" / f"case_{i:02d}_0000.mha", (toy_labels(i) * 40).astype(np.int16))
    toy.segmenter("beta", "shift")
    summary = _run(toy)
    assert summary.executed == 2 and summary.failed == 0 and not summary.unscorable
    mha = _scores(toy)
    twin = toy.root / "twin"
    for i in range(2):
        write_as(twin / "labelsTr" / f"case_{i:02d}.nii.gz", toy_labels(i))
        write_as(twin / "imagesTr" / f"case_{i:02d}_0000.nii.gz", (toy_labels(i) * 40).astype(np.int16))
    _run(toy, data_dir=twin, results_dir=toy.root / "twin-results")
    with Store.open(toy.root / "twin-results", lock=False, create=False) as store:
        nifti = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    assert mha.dsc.equals(nifti.dsc) and mha.nsd.equals(nifti.nsd)


def test_an_abdomenatlas_layout_runs_and_scores_only_the_annotated_organs(toy: Toy) -> None:
    names = {1: "liver", 2: "kidney_right", 3: "spleen"}  # no aorta mask: not annotated in this set
    for i in range(2):
        case = toy.data / f"BDMAP_{i:08d}"
        write_nifti(case / "ct.nii.gz", (toy_labels(i) * 40).astype(np.int16))
        for value, name in names.items():
            write_nifti(case / "segmentations" / f"{name}.nii.gz", (toy_labels(i) == value).astype(np.uint8))
    toy.segmenter("alpha")
    summary = _run(toy)
    assert summary.executed == 2 and summary.failed == 0 and not summary.unscorable
    scores = _scores(toy)
    assert set(scores.index.get_level_values("organ")) == {"liver", "right_kidney", "spleen"}
    assert (scores.dsc == 1.0).all()


def test_a_refused_manifest_is_said_before_any_run_and_counted(toy: Toy, capsys) -> None:
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("crasher", "crash:case_01")
    (toy.algorithms / "typo").mkdir()
    (toy.algorithms / "typo" / "algorithm.toml").write_text('name = "typo"\nverison = "1"\n')
    # Scored on a local Dask cluster (harness run's default path; one worker is enough to take it)
    code = _cli(["run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results),
                 "--challenge", str(toy.challenge_file), "--scoring-workers", "1", "--no-report"])
    assert code == 3
    err, out = capsys.readouterr()[::-1]
    lines = err.splitlines()
    refused = next(i for i, line in enumerate(lines) if line.startswith("harness: refused: ") and "typo/algorithm.toml" in line)
    first_run = next(i for i, line in enumerate(lines) if " run " in line and ("alpha" in line or "crasher" in line))
    assert refused < first_run  # said before anything ran, not only at the end
    crash = next(line for line in lines if "] ERR " in line and "crasher" in line)
    progress = [line.split("]")[0] + "]" for line in lines if line.startswith("[")]
    assert [p.split(",")[0].strip("[]") for p in progress] == ["1/4", "2/4", "3/4", "4/4"]  # n/N on every run
    assert "left]" in progress[0] and progress[-1] == "[4/4]"  # an estimate of the rest, none at the end
    assert "| log: toy: crashing on purpose" in crash and "(whole log: " in crash and crash.endswith("log.txt)")
    assert "1 failed, 1 manifest(s) refused;" in out


def test_no_valid_manifest_says_why_in_the_one_line(toy: Toy, capsys) -> None:
    toy.write_data(1)
    (toy.algorithms / "typo").mkdir(parents=True)
    (toy.algorithms / "typo" / "algorithm.toml").write_text("not toml [")
    code = _cli(["run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results)])
    assert code == 5
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("harness: error: ") and "no valid segmenter manifest (" in last
    assert "typo/algorithm.toml: not valid TOML" in last  # the reason is in the line itself, not "above"


def test_quiet_says_only_what_went_wrong_and_verbose_every_runs_log_line(toy: Toy, capsys) -> None:
    toy.write_data(2)
    toy.segmenter("alpha")
    toy.segmenter("crasher", "crash:case_01")
    args = ["run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results),
            "--challenge", str(toy.challenge_file), "--rerun", "--scoring-workers", "0"]
    assert _cli(["-q", *args]) == 3
    out, err = capsys.readouterr()
    runs = [line for line in err.splitlines() if line.startswith("[")]
    assert len(runs) == 1 and "crasher" in runs[0] and "| log: toy: crashing on purpose" in runs[0]
    assert not [line for line in err.splitlines() if line.startswith("harness: ") and "error" not in line]
    assert "4 runs executed" in out  # the final summary stays
    assert _cli(["-v", *args, "--no-report"]) == 3
    err = capsys.readouterr().err
    alpha = [line for line in err.splitlines() if line.startswith("[") and "alpha" in line]
    assert len(alpha) == 2 and all("| log: toy: case_0" in line and "done (ok)" in line for line in alpha)


def test_a_long_run_is_said_to_be_going_on_while_it_runs(toy: Toy, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    toy.write_data(1)
    toy.segmenter("napper", "nap")  # sleeps 1 s
    monkeypatch.setenv("HARNESS_HEARTBEAT_S", "0.2")  # read when each run starts
    args = ["run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results),
            "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report"]
    assert _cli(args) == 0
    err = capsys.readouterr().err
    beats = [line for line in err.splitlines() if line.startswith("harness: still running napper on case_00: ")]
    assert len(beats) >= 2 and beats[0].endswith("s of its 120 s limit")
    assert _cli(["-q", *args, "--rerun"]) == 0
    assert "still running" not in capsys.readouterr().err
    assert toy.starts() == ["napper case_00"] * 2  # the quiet run napped as long


def test_a_refused_annotator_is_reported_once_by_harness_run(toy: Toy, capsys) -> None:
    """`harness run` over a folder whose only annotator is refused: the segmenters run, the
    annotator's refusal is said once (by the annotation step, which owns its kind), counted, in --json too."""
    import json

    toy.write_data(1)
    toy.segmenter("alpha")
    (toy.algorithms / "heatmapper").mkdir()
    (toy.algorithms / "heatmapper" / "algorithm.toml").write_text(
        'name = "heatmapper"\nversion = "1"\nkind = "annotator"\nprofile = "atlas8"\ncolour = "red"\n')
    args = ["run", str(toy.algorithms), "--runner", "local", "--data", str(toy.data), "--results", str(toy.results),
            "--challenge", str(toy.challenge_file), "--scoring-workers", "0", "--no-report"]
    assert _cli(args) == 3
    out, err = capsys.readouterr()
    said = [line for line in err.splitlines() if "heatmapper" in line]  # before the runs, and among the errors at the end
    assert [line.split(": ")[1] for line in said] == ["refused", "error"]
    assert all(f"{toy.algorithms / 'heatmapper' / 'algorithm.toml'}: unknown key 'colour'; allowed keys: " in line
               for line in said)
    assert "0 failed, 1 manifest(s) refused;" in out
    assert _cli([*args, "--json"]) == 3
    document = json.loads(capsys.readouterr().out)
    assert document["refused"] == 1 and len(document["problems"]) == 1 and "heatmapper" in document["problems"][0]
