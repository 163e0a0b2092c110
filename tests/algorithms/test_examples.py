"""algorithms/examples/<contract>/: one working example per contract, what the README shows
`harness check` on. Without Docker: every README `harness check algorithms/...` path that is not a
test's broken twin names an example folder; each example's manifest loads under the path rule the
README states (`dockerfile` from the folder above the algorithms' folder, here `algorithms/`),
passes intake as a build would read it, and its script writes the contract's output when run on a
phantom case with the contract's paths (here on the host, in folders standing for the mounts)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.contracts import contract_of
from harness.spec import load_manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "algorithms" / "examples"
CONTRACTS = {"harness": "harness", "flare": "flare", "grand-challenge": "grand-challenge", "mlcube": "mlcube",
             "medperf": "mlcube", "nnunet": "nnunet"}


def test_every_contract_has_an_example_and_the_readme_checks_only_those() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(CONTRACTS)
    assert set(CONTRACTS.values()) == set(contract_of(n).name for n in CONTRACTS.values())
    readme = (REPO / "README.md").read_text()
    shown = re.findall(r"^\$ harness check (\S+)", readme, flags=re.M)
    assert shown, "README shows no `harness check` example"
    for path in shown:
        if path.endswith("-broken"):  # the broken twins are built by tests/docker/test_check_images.py
            continue
        assert (REPO / path / "algorithm.toml").is_file(), path
        assert Path(path).parent == Path("algorithms/examples"), path


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_each_example_loads_as_harness_check_loads_it(name: str) -> None:
    from harness.build import check_build

    manifest = EXAMPLES / name / "algorithm.toml"
    spec = load_manifest(manifest, repo_root=manifest.resolve().parents[2])  # harness check's rule
    assert spec.contract == CONTRACTS[name] and spec.name == name
    assert spec.dockerfile == EXAMPLES / name / "Dockerfile"  # "examples/<name>/Dockerfile" from algorithms/
    checked = check_build(spec)  # intake: the Dockerfile in Docker's grammar, the folder's files
    assert checked.dockerfile.data.startswith(b"#") and "box.py" in {f.relative for f in checked.files}
    from harness.spec import discover_algorithms

    specs, errors = discover_algorithms(EXAMPLES)  # `harness run algorithms/examples`: the same rule
    assert not errors and [s.name for s in specs] == sorted(CONTRACTS)


def test_the_examples_share_one_model() -> None:
    copies = {(EXAMPLES / name / "box.py").read_bytes() for name in CONTRACTS}
    assert len(copies) == 1


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    from harness.data.synth import write_dataset

    root = tmp_path_factory.mktemp("phantom")
    write_dataset(root, cases=1, seed=3, size="small")
    return next((root / "imagesTr").glob("*_0000.nii.gz"))


def _expected(image: Path) -> np.ndarray:
    nx, ny, nz = nib.load(image).shape[:3]
    label = np.zeros((nx, ny, nz), np.uint8)
    label[nx // 3 : nx // 3 + nx // 3, ny // 3 : 2 * ny // 3, nz // 3 : 2 * nz // 3] = 1
    return label


@pytest.mark.parametrize("name, argv, layout", [
    ("harness", ["predict.py", "{in}", "{out}"], "flat"),
    ("flare", ["predict.py", "{in}", "{out}"], "flat"),
    ("nnunet", ["nnUNetv2_predict.py", "-i", "{in}", "-o", "{out}", "-d", "Dataset001_Box", "-c", "3d_fullres", "-f", "0",
                "-device", "cpu"], "flat"),
    ("mlcube", ["mlcube.py", "infer", "--data_path={in}", "--parameters_file={ws}/null", "--checkpoint_path={ws}/null",
                "--output_path={out}"], "folder"),
    ("medperf", ["mlcube.py", "infer", "--data_path={in}", "--parameters_file={here}/workspace/parameters.yaml",
                 "--output_path={out}"], "flat"),
])
def test_each_example_writes_its_contracts_label_map(tmp_path: Path, case: Path, name: str, argv: list[str],
                                                     layout: str) -> None:
    import shutil

    case_id = case.name[: -len("_0000.nii.gz")]
    given, out, workspace = tmp_path / "in", tmp_path / "out", tmp_path / "ws"
    for folder in (given, out, workspace):
        folder.mkdir()
    (given / case_id).mkdir() if layout == "folder" else None
    shutil.copy(case, given / case_id / case.name if layout == "folder" else given / case.name)
    here = EXAMPLES / name
    words = [w.format(**{"in": given, "out": out, "ws": workspace, "here": here}) for w in argv]
    done = subprocess.run([sys.executable, str(here / words[0]), *words[1:]], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    label = nib.load(out / f"{case_id}.nii.gz")
    assert np.array_equal(np.asarray(label.dataobj), _expected(case))
    assert np.allclose(label.affine, nib.load(case).affine)
