"""A sixth contract registered from one file (`sixth_contract.py`) goes through both doors: its
manifest table's paths through intake, its outputs through acceptance, with no code of its own
for either."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.contracts import CONTRACTS, register
from harness.errors import SpecError
from harness.pipeline import run_all
from harness.spec import load_manifest
from harness.store import Store
from tests.runpath.sixth_contract import Drop

SCRIPT = '''\
import sys
from pathlib import Path
import nibabel as nib
import numpy as np
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
image = next(inp.glob("*_0000.nii.gz"))
img = nib.load(image)
label = np.rint(np.asarray(img.dataobj) / 40.0).astype(np.uint8)
if (Path(__file__).parent / "garbage").exists():
    label = label[:-1]  # another grid
(out / "result").mkdir()
nib.save(nib.Nifti1Image(label, img.affine), out / "result" / "anything.nii.gz")
'''


@pytest.fixture
def drop():
    register(Drop())
    yield
    CONTRACTS.pop("drop")


def _algorithm(toy, name: str, table: str) -> Path:  # type: ignore[no-untyped-def]
    folder = toy.algorithms / name
    folder.mkdir(parents=True)
    (folder / "drop.py").write_text(SCRIPT)
    (folder / "weights").mkdir()
    (folder / "weights" / "model.bin").write_bytes(b"\1" * 64)
    (folder / "algorithm.toml").write_text(
        f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/toy.Dockerfile"\n'
        f'profile = "../../toy.toml"\ncontract = "drop"\n\n[drop]\n{table}\n\n'
        '[local]\ncommand = ["{python}", "drop.py", "{input}", "{output}"]\n')
    return folder


def test_its_manifest_paths_pass_intake(toy, drop) -> None:  # type: ignore[no-untyped-def]
    outside = _algorithm(toy, "outside", 'model = "../other"')
    with pytest.raises(SpecError, match=r"key 'drop.model' = '../other' leaves the algorithm's folder"):
        load_manifest(outside / "algorithm.toml", repo_root=toy.root)
    linked = _algorithm(toy, "linked", 'model = "weights"')
    toy.write_data(1)
    os.link(toy.data / "labelsTr" / "case_00.nii.gz", linked / "weights" / "truth.nii.gz")
    with pytest.raises(SpecError, match=r"truth.nii.gz: a hard link"):
        load_manifest(linked / "algorithm.toml", repo_root=toy.root)
    spec = load_manifest(_algorithm(toy, "fine", 'model = "weights"') / "algorithm.toml", repo_root=toy.root)
    assert spec.contract == "drop" and spec.options.model == toy.algorithms / "fine" / "weights"


def test_its_outputs_pass_acceptance_and_score_as_the_harness_contracts(toy, drop) -> None:  # type: ignore[no-untyped-def]
    toy.write_data(3)
    _algorithm(toy, "dropper", 'model = "weights"')
    garbage = _algorithm(toy, "garbage", "")
    (garbage / "garbage").write_text("")
    toy.segmenter("native")  # the same labels under the harness's own contract
    run_all(toy.settings(), say=lambda m: None, on_result=lambda e: None)
    with Store.open(toy.results, lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"])
        scores = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    assert set(runs.loc["dropper"].status) == {"ok"} and set(runs.loc["native"].status) == {"ok"}
    assert scores.loc["dropper"].dsc.equals(scores.loc["native"].dsc)
    assert set(runs.loc["garbage"].status) == {"invalid_output"}
    message = runs.loc["garbage"].message.iloc[0]
    assert message.startswith("/output/result/anything.nii.gz: header grid 23x22x12 differs from the input image")
