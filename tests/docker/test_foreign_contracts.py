"""grand-challenge, MLCube/MedPerf and nnU-Net containers, run unchanged next to a native segmenter.

Each image is built here from a script written from its platform's documentation (tests/docker/
contracts/); each draws the same box as the native `box3` algorithm, so every score must equal the
native one. A grand-challenge image reads an .mha and writes an .mha (geometry copied from its
header); an nnU-Net image's `.npz` probabilities become the per-organ maps the annotator reads.
Broken twins (two outputs, a wrong name, axes in the wrong order) are recorded with their reason in
the container's own terms.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from harness.pipeline import RunSettings, run_all
from harness.store import Store
from tests.docker.conftest import HERE, behave_algorithms

CONTRACTS_DIR = HERE / "contracts"

DOCKERFILE = """# {what}
ARG BASE=python:3.11-slim-bookworm
FROM ${{BASE}}
COPY algorithm/ /opt/algorithm/
{extra}ENTRYPOINT {entrypoint}
"""

LEGACY_MLCUBE = """name: Box model
description: a model MLCube (legacy MLCube runner conventions)
platform:
  accelerator_count: 0
docker:
  image: harness-tests/mlcube-box:0.1
  build_context: "../project"
  build_file: "Dockerfile"
tasks:
  infer:
    parameters:
      inputs:
        data_path: data/
        parameters_file: parameters.yaml
        weights: additional_files/weights.txt
      outputs:
        output_path: {type: directory, default: predictions}
"""

MEDPERF_CONFIG = """container_type: DockerImage
image: harness-tests/mlcube-box:0.1
tasks:
  infer:
    input_volumes:
      data_path:
        mount_path: /mlcommons/volumes/data
        type: directory
      parameters_file:
        mount_path: /mlcommons/volumes/parameters/parameters_file.yaml
        type: file
      additional_files:
        mount_path: /mlcommons/volumes/additional_files
        type: directory
    output_volumes:
      output_path:
        mount_path: /mlcommons/volumes/predictions
        type: directory
    run_args:
      command: >-
        infer --data_path=/mlcommons/volumes/data
        --parameters_file=/mlcommons/volumes/parameters/parameters_file.yaml
        --output_path=/mlcommons/volumes/predictions
"""


def _algorithm(root: Path, name: str, *, script: str, mode: str, manifest_tail: str, entrypoint: str,
               probabilities: bool = False, files: dict[str, str] | None = None) -> None:
    folder = root / "algorithms" / name
    folder.mkdir(parents=True)
    shutil.copy(CONTRACTS_DIR / script, folder / script)
    shutil.copy(HERE / "behave" / "behave.py", folder / "behave.py")
    (folder / "mode").write_text(mode + "\n")
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (root / "dockerfiles" / f"{name}.Dockerfile").write_text(
        DOCKERFILE.format(what=f"{name}: {script}", extra="", entrypoint=entrypoint))
    (folder / "algorithm.toml").write_text(
        f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/{name}.Dockerfile"\n'
        f'profile = "flare22"\nwrites_probabilities = {"true" if probabilities else "false"}\ngpu = "none"\n'
        f'{manifest_tail}\n[resources]\nmemory = "256m"\ntime_limit_s = 60\n')


def foreign_algorithms(root: Path, *, broken: bool) -> Path:
    """One algorithm per foreign contract (broken: each violating its contract once); returns the
    algorithms folder, which also holds the native `box3` segmenter."""
    algorithms = behave_algorithms(root, {"native": ("box3", {})})
    suffix = "-broken" if broken else ""
    _algorithm(root, f"gc{suffix}", script="gc_inference.py", mode="two" if broken else "ok",
               entrypoint='["python3", "/opt/algorithm/gc_inference.py"]',
               manifest_tail='contract = "grand-challenge"\n\n[grand-challenge]\ninput_slug = "ct-image"\n'
                             'output_slug = "abdominal-organ-segmentation"\nmodel = "model"\n',
               files={"model/offset.txt": "3\n"})
    _algorithm(root, f"mlcube{suffix}", script="mlcube_model.py", mode="wrong_name" if broken else "ok",
               entrypoint='["python3", "/opt/algorithm/mlcube_model.py"]',
               manifest_tail='contract = "mlcube"\n\n[mlcube]\nconfig = "mlcube/mlcube.yaml"\n'
                             'parameters = "mlcube/workspace/parameters.yaml"\n',
               files={"mlcube/mlcube.yaml": LEGACY_MLCUBE, "mlcube/workspace/parameters.yaml": "offset: 3\n",
                      "mlcube/workspace/additional_files/weights.txt": "weights\n"})
    _algorithm(root, f"nnunet{suffix}", script="nnunet_predict.py", mode="xyz" if broken else "ok",
               entrypoint='["python3", "/opt/algorithm/nnunet_predict.py"]', probabilities=True,
               manifest_tail='contract = "nnunet"\n\n[nnunet]\narguments = ["-d", "Dataset001_Box", "-c", '
                             '"3d_fullres", "-f", "3"]\n')
    if not broken:
        _algorithm(root, "medperf", script="mlcube_model.py", mode="ok",
                   entrypoint='["python3", "/opt/algorithm/mlcube_model.py"]',
                   manifest_tail='contract = "mlcube"\n\n[mlcube]\nconfig = "container_config.yaml"\n'
                                 'parameters = "workspace/parameters.yaml"\nadditional_files = "workspace/additional_files"\n',
                   files={"container_config.yaml": MEDPERF_CONFIG, "workspace/parameters.yaml": "offset: 3\n",
                          "workspace/additional_files/README": "weights would be here\n"})
    return algorithms


def _run(root: Path, algorithms: Path, data: Path, base: str, *,
         case_limit: int | None = None) -> tuple[object, object, Path]:
    settings = RunSettings(algorithms_dir=algorithms, data_dir=data, results_dir=root / "results",
                           runner="docker", base=base, cache_dir=root / "cache", repo_root=root, case_limit=case_limit)
    summary = run_all(settings, say=lambda m: None, on_result=lambda e: None)
    with Store.open(root / "results", lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"]).sort_index()
        scores = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    return summary, (runs, scores), root / "results"


def test_foreign_contract_images_score_as_the_native_algorithm(tmp_path: Path, base_image: str,
                                                               phantom_data: Path) -> None:
    from harness.layout import ResultsLayout

    algorithms = foreign_algorithms(tmp_path, broken=False)
    summary, (runs, scores), results = _run(tmp_path, algorithms, phantom_data, base_image)
    assert summary.failed == 0, runs.message.tolist()
    assert set(runs.status) == {"ok"}
    native = scores.loc["native"]
    assert (native.dsc > 0).any()  # real, varied scores, not all-background
    for name in ("gc", "mlcube", "medperf", "nnunet"):
        assert scores.loc[name].dsc.equals(native.dsc), name
        assert scores.loc[name].nsd.equals(native.nsd), name
    layout = ResultsLayout.of(results)
    for case_id in sorted(set(runs.loc["gc"].index)):
        image = nib.load(phantom_data / "imagesTr" / f"{case_id}_0000.nii.gz")
        from_mha = nib.load(layout.label_map("gc", case_id))  # converted back from the .mha it wrote
        assert np.array_equal(from_mha.affine, image.affine)  # spacing, origin and direction preserved
        assert np.array_equal(np.asarray(from_mha.dataobj), np.asarray(nib.load(layout.label_map("native", case_id)).dataobj))
        liver = np.asarray(nib.load(layout.probabilities_dir("nnunet", case_id) / "liver.nii.gz").dataobj)
        label = np.asarray(nib.load(layout.label_map("nnunet", case_id)).dataobj)
        assert np.array_equal(liver, np.where(label == 1, 255, 0).astype(np.uint8))  # channel 1, axes z,y,x undone
        spleen = np.asarray(nib.load(layout.probabilities_dir("nnunet", case_id) / "spleen.nii.gz").dataobj)
        assert not spleen.any()
    # nnU-Net's side files are its tool's by design: neither kept nor reported
    assert all("plans.json" not in str(d) for d in runs.loc["nnunet"].details)


def test_foreign_contract_violations_are_recorded_in_the_containers_terms(tmp_path: Path, base_image: str,
                                                                          phantom_data: Path) -> None:
    algorithms = foreign_algorithms(tmp_path, broken=True)
    # One case: each violation is the same on every case (the scores-alike test above runs all three).
    _, (runs, _), _ = _run(tmp_path, algorithms, phantom_data, base_image, case_limit=1)
    assert len(runs) == 4 and set(runs.loc["native"].status) == {"ok"}  # the others go on
    gc = runs.loc["gc-broken"]
    assert set(gc.status) == {"invalid_output"}
    assert gc.message.iloc[0] == ("/output/images/abdominal-organ-segmentation/ holds 2 images (output.mha, "
                                  "second.mha); write exactly one")
    mlcube = runs.loc["mlcube-broken"]
    assert set(mlcube.status) == {"invalid_output"}
    assert mlcube.message.iloc[0].startswith("no label map /mlcube_io3/phantom_")  # output_path is the 4th mount
    assert "(found: prediction.nii.gz)" in mlcube.message.iloc[0]
    nnunet = runs.loc["nnunet-broken"]
    assert set(nnunet.status) == {"invalid_output"}
    assert nnunet.message.iloc[0].startswith("/output/phantom_")
    assert "'probabilities' has shape (14, " in nnunet.message.iloc[0] and "axes zyx" in nnunet.message.iloc[0]
