"""An MLCube (FeTS's legacy mlcube.yaml, one folder per case) and an nnU-Net image, made as their
templates make them (tests/docker/templates/README.md says what differs and why), handed over pinned by id (and the
cube also as a `docker save` archive), score "ok"
through `harness run` and `harness check` with no manifest option beyond the contract's own, and
score exactly as the same container run the platform's way: `docker run` with the platform's
mounts and arguments over all cases at once, then `harness score` on what it wrote (and, for
nnU-Net, its `.npz` probabilities turned into per-organ maps here, independently of the harness).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.docker.conftest import HERE, REPO, first_cases

TEMPLATES = HERE / "templates"
FETS_ARGS = ["infer", "--data_path=/mlcube_io0", "--parameters_file=/mlcube_io1/null",
             "--checkpoint_path=/mlcube_io1/null", "--output_path=/mlcube_io2"]  # MLCube's, for FeTS's infer task
CASES = 2  # more than one: the platforms' own runs take every case at once (MLCube: a folder per case)
STANDIN_BASE = """# Stands in for nvcr.io/nvidia/pytorch:20.08-py3: python3 and pip3 on the PATH; pip installs from
# a local wheelhouse (no network here).
ARG BASE
FROM ${BASE}
COPY wheels/ /opt/wheels/
RUN python3 -m venv /opt/conda
ENV PATH=/opt/conda/bin:$PATH PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheels PIP_NO_CACHE_DIR=1
"""


def _build(client, context: Path, repository: str, base: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """`docker build` of `context` from `base`, tagged `repository:<hash of the context and base>` (a name
    no other test or session can give another image); returns (tag, image id)."""
    digest = hashlib.sha256(base.encode())
    for path in sorted(context.rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(context)}\0".encode() + path.read_bytes())
    tag = f"{repository}:{digest.hexdigest()[:12]}"
    image, _ = client.images.build(path=str(context), tag=tag, buildargs={"BASE": base}, network_mode="none",
                                   rm=True, forcerm=True, pull=False)
    return tag, str(image.id)


def _harness(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"HARNESS_CACHE": str(cache), "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           **{k: os.environ[k] for k in ("DOCKER_HOST", "HOME", "HARNESS_LEADERBOARD_DIR") if k in os.environ}}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def template_images(docker_client, base_image: str, tmp_path_factory) -> dict[str, str]:
    """Image ids of the FeTS cube and the nnU-Net image, built from tests/docker/templates/."""
    from harness.build import ensure_wheelhouse
    from harness.intake import check_requirements

    root = tmp_path_factory.mktemp("templates")
    fets = root / "fets"
    shutil.copytree(TEMPLATES / "fets_model" / "project", fets)
    shutil.copy(HERE / "behave" / "behave.py", fets / "src" / "utils" / "behave.py")  # the trivial model's box
    # the wheelhouse keyed by the requirements, kept between sessions (as the grand-challenge/FLARE test keeps its)
    wheels = ensure_wheelhouse(check_requirements(fets / "requirements.txt"), REPO / ".cache" / "wheelhouse")
    standin = root / "standin"
    shutil.copytree(wheels, standin / "wheels")
    (standin / "Dockerfile").write_text(STANDIN_BASE)
    base, _ = _build(docker_client, standin, "harness-tests/pytorch-standin", base_image)
    nnunet = root / "nnunet"
    shutil.copytree(TEMPLATES / "nnunet", nnunet)
    shutil.copy(HERE / "behave" / "behave.py", nnunet / "nnunetv2" / "inference" / "box.py")
    # a reproducible wheel (fixed timestamps): the same bytes each session, so Docker's build cache
    # keeps the image's venv and pip install instead of redoing them for a wheel that only looks new
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(nnunet / "wheels"), str(nnunet)], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    (fets_tag, fets_id), (nnunet_tag, nnunet_id) = (_build(docker_client, fets, "harness-tests/fets-model", base),
                                                    _build(docker_client, nnunet, "harness-tests/nnunet-box", base_image))
    images = {"fets": fets_id, "nnunet": nnunet_id, "fets-tag": fets_tag, "nnunet-tag": nnunet_tag}
    archive = root / "fets.tar"  # the same cube as a team would hand it in: `docker save`
    with archive.open("wb") as sink:
        for chunk in docker_client.images.get(images["fets"]).save(named=True):
            sink.write(chunk)
    images["fets-archive"] = str(archive)
    return images


def _submissions(root: Path, images: dict[str, str]) -> Path:
    """One folder per image, as an organiser receives them: the manifest pins the image by id."""
    algorithms = root / "algorithms"
    fets = algorithms / "fets"
    shutil.copytree(TEMPLATES / "fets_model" / "mlcube", fets / "mlcube")
    (fets / "algorithm.toml").write_text(
        f'name = "fets"\nversion = "1"\nkind = "segmenter"\nimage = "{images["fets-tag"]}@{images["fets"]}"\n'
        'profile = "flare22"\ncontract = "mlcube"\n\n[mlcube]\nconfig = "mlcube/mlcube.yaml"\n')
    archived = algorithms / "fets-archive"
    shutil.copytree(TEMPLATES / "fets_model" / "mlcube", archived / "mlcube")
    shutil.copy(images["fets-archive"], archived / "fets.tar")
    (archived / "algorithm.toml").write_text(
        'name = "fets-archive"\nversion = "1"\nkind = "segmenter"\narchive = "fets.tar"\nprofile = "flare22"\n'
        'contract = "mlcube"\n\n[mlcube]\nconfig = "mlcube/mlcube.yaml"\n')
    nnunet = algorithms / "nnunet"
    nnunet.mkdir(parents=True)
    (nnunet / "algorithm.toml").write_text(
        f'name = "nnunet"\nversion = "1"\nkind = "segmenter"\nimage = "{images["nnunet-tag"]}@{images["nnunet"]}"\n'
        'profile = "flare22"\ncontract = "nnunet"\nwrites_probabilities = true\n\n'
        '[nnunet]\ndataset = "Dataset001_Box"\nconfiguration = "3d_fullres"\nfolds = [0]\n')
    return algorithms


def _platform_run(client, image: str, *, volumes: dict[str, dict[str, str]], command: list[str]) -> str:  # type: ignore[no-untyped-def]
    return client.containers.run(image, command, volumes=volumes, network_mode="none", remove=True,
                                 stdout=True, stderr=True).decode(errors="replace")



def _scores(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path).rename(columns={"case": "case_id"})
    return table.set_index(["case_id", "organ"]).sort_index()[["dsc", "nsd", "hd95_mm"]]


def test_template_images_score_ok_and_as_their_platform_runs_them(tmp_path: Path, docker_client, base_image: str,  # type: ignore[no-untyped-def]
                                                                  phantom_data: Path, template_images: dict[str, str],
                                                                  harness_cli) -> None:
    from harness.layout import ResultsLayout
    from harness.profiles import BUILTIN_PROFILES, load_profile
    from harness.store import Store

    algorithms = _submissions(tmp_path, template_images)
    data = first_cases(phantom_data, tmp_path / "data", CASES)
    cache = tmp_path / "cache"
    results = tmp_path / "results"
    # the installed command, in its own process; scoring inline (the Dask path has tests of its own)
    done = _harness("run", str(algorithms), "--data", str(data), "--results", str(results), "--base", base_image,
                    "--scoring-workers", "0", cache=cache)
    assert done.returncode == 0, done.stdout + done.stderr
    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"]).sort_index()
        stored = store.scores().set_index(["algorithm", "case_id", "organ"]).sort_index()
    assert set(runs.status) == {"ok"}, runs.message.tolist()
    cases = sorted(runs.loc["fets"].index)
    assert len(cases) == CASES and (stored.dsc > 0).any()
    pd.testing.assert_frame_equal(stored.loc["fets-archive"], stored.loc["fets"])  # loaded from `docker save`: the same
    assert runs.loc["fets-archive"].image_digest.iloc[0] == template_images["fets"]

    images = {case: data / "imagesTr" / f"{case}_0000.nii.gz" for case in cases}
    # MLCube's way (mlcube run --task=infer): the workspace's data/ (one folder per case), the
    # workspace itself for the two "null" files, output/; as root, the image's entry point.
    workspace = tmp_path / "mlcube-workspace"
    for case, image in images.items():
        (workspace / "data" / case).mkdir(parents=True)
        shutil.copy(image, workspace / "data" / case / image.name)
    (workspace / "output").mkdir()
    log = _platform_run(docker_client, template_images["fets"], command=FETS_ARGS, volumes={
        str(workspace / "data"): {"bind": "/mlcube_io0", "mode": "rw"}, str(workspace): {"bind": "/mlcube_io1", "mode": "rw"},
        str(workspace / "output"): {"bind": "/mlcube_io2", "mode": "rw"}})
    assert "Using default path instead" in log  # the "null" files: the cube used the ones in its image
    # nnU-Net's way: all cases in one folder, nnUNetv2_predict with the model's options.
    inputs, outputs = tmp_path / "nnunet-in", tmp_path / "nnunet-out"
    inputs.mkdir()
    outputs.mkdir()
    for image in images.values():
        shutil.copy(image, inputs / image.name)
    _platform_run(docker_client, template_images["nnunet"],
                  command=["-i", "/input", "-o", "/output", "-d", "Dataset001_Box", "-c", "3d_fullres", "-f", "0",
                           "-device", "cpu", "--save_probabilities"],
                  volumes={str(inputs): {"bind": "/input", "mode": "ro"}, str(outputs): {"bind": "/output", "mode": "rw"}})

    layout = ResultsLayout.of(results)
    organs = load_profile("flare22").organs if "flare22" in BUILTIN_PROFILES else ()
    for name, predictions in (("fets", workspace / "output"), ("nnunet", outputs)):
        table = tmp_path / f"{name}.csv"
        status, out, err = harness_cli("score", "--pred", str(predictions), "--labels",
                                       str(data), "--out", str(table), "-j", "1", cache=cache)
        assert status == 0, out + err
        theirs = _scores(table)
        ours = stored.loc[name][["dsc", "nsd", "hd95_mm"]]
        assert list(theirs.index) == list(ours.index)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
        for case in cases:  # the label maps themselves
            assert np.array_equal(np.asarray(nib.load(layout.label_map(name, case)).dataobj),
                                  np.asarray(nib.load(predictions / f"{case}.nii.gz").dataobj))
    for case in cases:  # nnU-Net's probabilities: channel v of the .npz (z, y, x) -> organ with label v, p * 255
        probabilities = np.load(outputs / f"{case}.npz")["probabilities"].astype(np.float64)
        assert organs
        for organ in organs:
            expected = np.rint(probabilities[organ.label].transpose(2, 1, 0) * 255).astype(np.uint8)
            stored_map = np.asarray(nib.load(layout.probabilities_dir("nnunet", case) / f"{organ.name}.nii.gz").dataobj)
            assert np.array_equal(stored_map, expected), (case, organ.name)

    for name in ("fets", "nnunet"):
        status, out, err = harness_cli("check", str(algorithms / name), "--data", str(data),
                                       "--cases", "1", "--base", base_image, cache=cache)
        assert status == 0, out + err
        assert out.splitlines()[-1] == "accepted: it would be accepted as submitted"
        assert f"  [ok]   case {cases[0]}: exit 0 in " in out
        if name == "fets":  # the config's image name is said to be unused, not silently ignored
            assert "[warn] manifest: mlcube.yaml names the image 'mlcommons/fets_model:0.0.1': not used" in out
