"""annotate.py as the local runner starts it: the annotator contract, its options and its errors;
the manifest and the README section."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.profiles import load_profile
from harness.spec import load_manifest
from tests.attention.helpers import ALGORITHM, ATLAS8, load_module, run_annotator, segmenters_from_label, stage_case, write_nifti
from tests.attention.oracle import oracle_annotate

REPO = ALGORITHM.parents[1]
AFFINE = np.diag([0.9, 0.8, 2.5, 1.0])
SHAPE = (30, 28, 16)
CASE = "toy_001"


def toy_label() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[3:14, 3:15, 2:12] = ATLAS8["liver"]
    label[17:26, 4:12, 3:10] = ATLAS8["spleen"]
    label[17:24, 16:24, 4:11] = ATLAS8["left_kidney"]
    label[6:11, 19:24, 5:12] = ATLAS8["aorta"]
    return label


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("annotate")
    models = segmenters_from_label(toy_label())
    models["model_b"]["spleen"][20:26, 4:10, 3:9] = 0  # a disagreement
    input_dir = stage_case(root / "input", CASE, models, AFFINE)
    proc = run_annotator(input_dir, root / "output")
    return {"root": root, "input": input_dir, "output": root / "output", "proc": proc, "models": models}


def test_exits_zero_and_logs(toy: dict) -> None:
    assert toy["proc"].returncode == 0, toy["proc"].stderr
    assert "device: cpu" in toy["proc"].stderr
    assert "3 segmenters (model_a, model_b, model_c), 9 organs" in toy["proc"].stderr


def test_outputs_follow_the_contract(toy: dict) -> None:
    out: Path = toy["output"]
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    maps = [f"{folder}/{o}.nii.gz" for folder in ("attention", "heatmap") for o in ATLAS8]
    expected = sorted([f"{CASE}.nii.gz", "attention.json", *maps])
    assert names == expected
    for path in [out / f"{CASE}.nii.gz", *(out / "attention").iterdir(), *(out / "heatmap").iterdir()]:
        img = nib.load(path)
        assert img.shape == SHAPE and img.get_data_dtype() == np.uint8, path
        np.testing.assert_allclose(img.affine, AFFINE)
    for path in (out / "attention").iterdir():
        assert set(np.unique(np.asarray(nib.load(path).dataobj))) <= {0, 1}
    summary = json.loads((out / "attention.json").read_text())
    assert summary["case"] == CASE and summary["models"] == ["model_a", "model_b", "model_c"]
    assert list(summary["organs"]) == list(ATLAS8)
    assert summary["attention_voxels"] == sum(o["attention_voxels"] for o in summary["organs"].values())
    assert summary["settings"]["std_threshold"] == 0.1 and summary["settings"]["erosions"] == 2
    keys = {"attention_voxels", "heat_sum", "inconsistency_voxels", "uncertainty_voxels", "overlap_voxels"}
    assert set(summary["organs"]["spleen"]) == keys
    assert summary["organs"]["spleen"]["inconsistency_voxels"] > 0
    assert summary["organs"]["gallbladder"] == {"attention_voxels": 0, "heat_sum": 0.0, "inconsistency_voxels": 0,
                                                "uncertainty_voxels": 0, "overlap_voxels": 0}


def test_outputs_equal_the_oracle(toy: dict) -> None:
    expected = oracle_annotate({o: [m[o] for m in toy["models"].values()] for o in ATLAS8}, ATLAS8)
    out: Path = toy["output"]
    np.testing.assert_array_equal(np.asarray(nib.load(out / f"{CASE}.nii.gz").dataobj), expected["__label__"]["label"])
    summary = json.loads((out / "attention.json").read_text())
    for organ in ATLAS8:
        attention = np.asarray(nib.load(out / "attention" / f"{organ}.nii.gz").dataobj)
        np.testing.assert_array_equal(attention, expected[organ]["attention"].astype(np.uint8))
        heat = np.asarray(nib.load(out / "heatmap" / f"{organ}.nii.gz").dataobj)
        np.testing.assert_array_equal(heat, np.rint(expected[organ]["heat"] * 255))
        assert summary["organs"][organ]["heat_sum"] == pytest.approx(expected[organ]["heat"].sum(), rel=1e-5)


def test_float_inputs_and_options(toy: dict, tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    shutil.copytree(toy["input"], input_dir)
    for path in (input_dir / "segmenters" / "model_c" / "probabilities").iterdir():
        q = np.asarray(nib.load(path).dataobj)
        write_nifti(path, (q / 255).astype(np.float32), AFFINE)
    proc = run_annotator(input_dir, tmp_path / "out", "--organs", "spleen,liver", "--std-threshold", "0.2", "--erosions", "1")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "attention.json").read_text())
    assert list(summary["organs"]) == ["liver", "spleen"]  # label order
    assert summary["settings"]["std_threshold"] == 0.2 and summary["settings"]["erosions"] == 1
    assert sorted(p.name for p in (tmp_path / "out" / "attention").iterdir()) == ["liver.nii.gz", "spleen.nii.gz"]


def test_help_exits_zero() -> None:
    proc = run_annotator(Path("/nonexistent"), Path("/tmp"), "--help")
    assert proc.returncode == 0 and "--entropy-threshold" in proc.stdout


def remove_segmenter(input_dir: Path) -> None:
    shutil.rmtree(input_dir / "segmenters" / "model_b")
    shutil.rmtree(input_dir / "segmenters" / "model_c")


def remove_organ(input_dir: Path) -> None:
    (input_dir / "segmenters" / "model_b" / "probabilities" / "aorta.nii.gz").unlink()


def wrong_shape(input_dir: Path) -> None:
    write_nifti(input_dir / "segmenters" / "model_a" / "probabilities" / "liver.nii.gz", np.zeros((30, 28, 15), np.uint8), AFFINE)


def out_of_range(input_dir: Path) -> None:
    write_nifti(input_dir / "segmenters" / "model_a" / "probabilities" / "spleen.nii.gz", np.full(SHAPE, 1.5, np.float32), AFFINE)


def with_nan(input_dir: Path) -> None:
    write_nifti(input_dir / "segmenters" / "model_a" / "probabilities" / "spleen.nii.gz", np.full(SHAPE, np.nan, np.float32), AFFINE)


def two_images(input_dir: Path) -> None:
    shutil.copy(input_dir / f"{CASE}_0000.nii.gz", input_dir / "other_0000.nii.gz")


@pytest.mark.parametrize("damage, options, message", [
    (remove_segmenter, (), "1 segmenter folder\\(s\\) \\(model_a\\); the attention map needs N >= 2"),
    (remove_organ, (), "model_b/probabilities: missing aorta.nii.gz"),
    (wrong_shape, (), r"liver.nii.gz: shape \(30, 28, 15\) differs from the image's \(30, 28, 16\)"),
    (out_of_range, (), r"spleen.nii.gz: probabilities span \[1.5, 1.5\]; expected values in \[0, 1\]"),
    (with_nan, (), "spleen.nii.gz: probabilities hold NaN"),
    (two_images, (), "expected exactly one <case>_0000.nii.gz, found 2"),
    (None, ("--organs", "liver,duodenum"), "--organs 'liver,duodenum': give distinct names among liver"),
    (None, ("--entropy-threshold", "0.5"), "bad option: entropy_threshold = 0.5"),
])
def test_bad_input_is_one_line_and_exit_2(toy: dict, tmp_path: Path, damage, options: tuple[str, ...], message: str) -> None:
    input_dir = tmp_path / "input"
    shutil.copytree(toy["input"], input_dir)
    if damage is not None:
        damage(input_dir)
    proc = run_annotator(input_dir, tmp_path / "out", *options)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert re.search(message, lines[0]), lines[0]


def test_manifest_is_a_valid_annotator() -> None:
    spec = load_manifest(ALGORITHM / "algorithm.toml", repo_root=REPO)
    declared = (spec.name, spec.kind, spec.profile.name, spec.gpu, spec.writes_probabilities)
    assert declared == ("attention-annotator", "annotator", "atlas8", "none", False)
    assert spec.local_command == ("{python}", "annotate.py", "{input}", "{output}")
    assert spec.resources.memory_bytes == 4 * 1024**3 and spec.resources.time_limit_s == 900 and spec.resources.pids == 64
    entrypoint = 'ENTRYPOINT ["/opt/venv/bin/python", "/opt/algorithm/annotate.py", "/input", "/output"]'
    lines = spec.dockerfile.read_text().splitlines()
    assert [line for line in lines if line.startswith("ENTRYPOINT")] == [entrypoint]
    assert lines[-1] == "USER 10001:10001"  # the image runs as the unprivileged user


def test_the_annotators_organs_are_its_profiles() -> None:
    # Read from the source: importing annotate.py would need its folder on sys.path.
    tree = ast.parse((ALGORITHM / "annotate.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "ORGANS")
    organs = ast.literal_eval(node.value)
    assert organs == {o.name: o.label for o in load_profile("atlas8").organs}
    assert organs == ATLAS8
    assert load_module("attention").Settings().std_threshold == 0.1


def test_requirements_are_pinned() -> None:
    lines = [line for line in (ALGORITHM / "requirements.txt").read_text().splitlines() if line.strip()]
    assert sorted(line.split("==")[0] for line in lines) == ["nibabel", "numpy", "scipy"]
    assert all("==" in line for line in lines)


def test_the_readme_documents_the_annotator_contract() -> None:
    text = (REPO / "algorithms" / "README.md").read_text()
    section = text[text.index("## Annotator contract"):]
    for needle in ("segmenters/<algorithm>/probabilities/<organ>.nii.gz", "attention/<organ>.nii.gz", "heatmap/<organ>.nii.gz",
                   "attention.json", "--std-threshold"):
        assert needle in section
