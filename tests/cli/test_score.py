"""`harness score` end to end on real NIfTI files, through the installed console script's main()."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import ExitStatus
from harness.metrics.case import score_case
from harness.profiles import load_profile
from tests.conftest import toy_labels, write_nifti


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code), out, err


def test_score_all_ok(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    out_csv = tmp_path / "scores.csv"
    code, out, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(out_csv), "--jobs", "2"], capsys)
    assert code == ExitStatus.OK, err
    table = pd.read_csv(out_csv)
    assert len(table) == 5 * 13 and set(table.status) == {"ok"}
    # Same numbers as the metric function applied directly to the arrays.
    direct = score_case(toy_labels(3), np.roll(toy_labels(3), 1, axis=0), (0.8, 0.8, 2.5), load_profile("flare22"))
    got = table[table.case == "case_03"].set_index("organ")
    for s in direct:
        assert got.loc[s.organ, "dsc"] == pytest.approx(s.dsc, abs=1e-12)
        assert got.loc[s.organ, "nsd"] == pytest.approx(s.nsd, abs=1e-12)
    assert "5 of 5 cases scored, 0 failed" in out
    assert "liver" in out and "mean" in out


def test_score_partial_with_three_broken_cases(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    (pred / "case_01.nii.gz").write_bytes(b"\x1f\x8b garbage")  # corrupt
    write_nifti(pred / "case_02.nii.gz", np.zeros((5, 5, 5), np.uint8))  # wrong shape
    (pred / "case_03.nii.gz").unlink()  # missing
    out_parquet = tmp_path / "scores.parquet"
    code, out, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(out_parquet)], capsys)
    assert code == ExitStatus.PARTIAL
    errors = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 3
    assert any("case_01.nii.gz: not a readable NIfTI file" in e and "re-export it" in e for e in errors)
    assert any("case_02.nii.gz: shape (5, 5, 5) differs from the ground truth" in e and "resample it" in e for e in errors)
    assert any("case_03.nii.gz: prediction is missing" in e for e in errors)
    table = pd.read_parquet(out_parquet)
    status = table.groupby("case").status.first().to_dict()
    assert status == {"case_00": "ok", "case_01": "unreadable", "case_02": "grid_mismatch",
                      "case_03": "missing_prediction", "case_04": "ok"}
    assert table[table.status != "ok"].dsc.isna().all()
    assert "2 of 5 cases scored, 3 failed" in out


def test_score_labels_outside_profile_and_image_label_mismatch(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    bad = toy_labels(0)
    bad[0, 0, 0] = 42
    write_nifti(pred / "case_00.nii.gz", bad)
    write_nifti(root / "imagesTr" / "case_04_0000.nii.gz", np.zeros((24, 22, 13), np.int16))
    code, _, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.PARTIAL
    assert "case_00.nii.gz: label values 42 are not in profile flare22" in err
    assert "case_04.nii.gz: shape (24, 22, 12) differs from its image case_04_0000.nii.gz (24, 22, 13)" in err


def test_strict_profile_records_not_applicable_as_nan(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    out_csv = tmp_path / "s.csv"
    code, _, _ = run(["score", "--pred", str(pred), "--labels", str(root), "--profile", "strict", "--out", str(out_csv)], capsys)
    assert code == ExitStatus.OK
    table = pd.read_csv(out_csv)
    pancreas = table[table.organ == "pancreas"]  # absent from every toy case
    assert pancreas.dsc.isna().all() and pancreas.nsd.isna().all()
    assert not math.isnan(table[table.organ == "liver"].dsc.iloc[0])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--pred", "{tmp}/nope"], ExitStatus.DATA_ERROR, "nope: no such folder; pass the folder of predicted"),
        (["--labels", "{tmp}/empty"], ExitStatus.DATA_ERROR, "empty: no cases found"),
        (["--profile", "{tmp}/p.toml"], ExitStatus.SPEC_ERROR, "p.toml: no such profile"),
        (["--out", "{tmp}/s.xlsx"], ExitStatus.USAGE, "s.xlsx: unknown table format '.xlsx'; use a .csv or .parquet"),
    ],
)
def test_score_bad_arguments_are_one_line_errors(toy_dataset, tmp_path: Path, capsys, args, code, message) -> None:
    root, pred = toy_dataset
    (tmp_path / "empty").mkdir()
    base = {"--pred": str(pred), "--labels": str(root), "--out": str(tmp_path / "s.csv")}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value.format(tmp=tmp_path)
    argv = ["score"] + [x for kv in base.items() for x in kv]
    got, _, err = run(argv, capsys)
    assert got == code
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_debug_shows_traceback(tmp_path: Path, capsys) -> None:
    code, _, err = run(["--debug", "score", "--pred", str(tmp_path), "--labels", str(tmp_path / "x"), "--out", "s.csv"], capsys)
    assert code == ExitStatus.DATA_ERROR and "Traceback" in err


def test_every_command_has_help(capsys) -> None:
    for argv in (["--help"], ["score", "--help"], ["data", "--help"], ["rank", "--help"]):
        code, out, _ = run(argv, capsys)
        assert code == 0 and "Usage:" in out
