"""`harness score` on the embedded default data: small phantom cases and perturbed predictions.

Six cases: enough for a summary over cases and for three broken predictions beside three good ones
(writing and perturbing the cases is most of this module's time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.data.perturb import write_predictions
from harness.data.synth import write_dataset
from harness.errors import ExitStatus
from tests.conftest import write_nifti

CASES = 6


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root / "data", cases=CASES, seed=0, size="small")
    write_predictions(root / "data", root / "pred", seed=1)
    return root / "data", root / "pred"


def _score(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as code:
        main(argv)
    out, err = capsys.readouterr()
    return int(code.value.code), out, err


def test_phantom_cases_score_with_a_summary(phantoms, tmp_path: Path, capsys) -> None:
    data, pred = phantoms
    code, out, err = _score(["score", "--pred", str(pred), "--labels", str(data), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.OK, err
    table = pd.read_csv(tmp_path / "s.csv")
    assert len(table) == CASES * 13 and set(table.status) == {"ok"}
    assert f"{CASES} of {CASES} cases scored, 0 failed" in out
    summary = {line.split()[0]: line.split() for line in out.splitlines() if line and line.split()[0] in set(table.organ)}
    assert len(summary) == 13
    liver_mean = float(summary["liver"][1].split("±")[0])
    assert liver_mean == pytest.approx(table[table.organ == "liver"].dsc.mean(), abs=1e-4)
    assert 0.6 < table.dsc.mean() < 0.99  # the perturbations are real errors, not copies


def test_three_broken_predictions_are_reported_and_the_rest_scored(phantoms, tmp_path: Path, capsys) -> None:
    data, pred = phantoms
    broken = tmp_path / "pred"
    broken.mkdir()
    for path in pred.glob("*.nii.gz"):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "phantom_0001.nii.gz").write_bytes((broken / "phantom_0001.nii.gz").read_bytes()[:500])  # corrupt
    write_nifti(broken / "phantom_0003.nii.gz", np.zeros((10, 10, 10), np.uint8))  # wrong shape
    (broken / "phantom_0005.nii.gz").unlink()  # missing
    code, out, err = _score(["score", "--pred", str(broken), "--labels", str(data), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.PARTIAL
    errors = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 3
    assert f"{CASES - 3} of {CASES} cases scored, 3 failed" in out
