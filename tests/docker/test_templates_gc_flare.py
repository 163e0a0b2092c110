"""The platforms' own participant templates run unchanged (tests/docker/templates/README.md): the
grand-challenge forge's example algorithm and a FLARE team's image, each built exactly as its
template says and handed to harness as a `docker save` archive, score `ok` through `harness run`
and `harness check` with no manifest option beyond the contract's own, and score exactly as the
same container run the platform's way (`docker run` as the platform does, then `harness score` on
what it wrote). A FLARE image keeps scratch files in its WORKDIR; the same image with a smaller
writable cap is `output_too_large`, and the run goes on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.docker.conftest import HERE, REPO, first_cases

TEMPLATES = HERE / "templates"
CASES = 2


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HARNESS_LEADERBOARD_DIR", str(REPO / "leaderboard"))
    return env


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=_python_env(),
                          timeout=900)


def _content_tag(repository: str, *parts: bytes) -> str:
    """`repository:<hash of parts>`: a name that no other test or session gives another image."""
    digest = hashlib.sha256(b"\0".join(parts)).hexdigest()
    return f"{repository}:{digest[:12]}"


def _context_bytes(context: Path) -> bytes:
    return b"".join(f"{p.relative_to(context)}\0".encode() + p.read_bytes() for p in sorted(context.rglob("*")) if p.is_file())


def _build(client, context: Path, tag: str, base: str) -> None:  # type: ignore[no-untyped-def]
    """`docker build` of a template folder, without network, its base given as the build ARG."""
    log = []
    for chunk in client.api.build(path=str(context), tag=tag, buildargs={"BASE": base}, network_mode="none",
                                  rm=True, forcerm=True, decode=True, pull=False):
        log.append(chunk.get("stream") or chunk.get("error") or "")
        if "error" in chunk:
            raise AssertionError(f"{context.name}: build failed: {''.join(log)[-2000:]}")


@pytest.fixture(scope="module")
def templates(docker_client, base_image: str, tmp_path_factory) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The two templates' images (tags) and their `docker save` archives, plus the model tarball."""
    from harness.build import BuildError, ensure_wheelhouse
    from harness.intake import check_requirements

    work = tmp_path_factory.mktemp("templates")
    try:
        wheels = ensure_wheelhouse(check_requirements(TEMPLATES / "gc" / "requirements.txt"), REPO / ".cache" / "wheelhouse")
    except BuildError as exc:
        # as the MLCube/nnU-Net template test: no wheels, no proof (PyPI is reachable wherever CI runs)
        pytest.fail(f"the templates' wheels (SimpleITK, numpy) could not be downloaded or found: {exc}")
    stand_in = work / "pytorch"
    shutil.copytree(TEMPLATES / "pytorch", stand_in)
    shutil.copytree(wheels, stand_in / "wheels")
    pytorch = _content_tag("harness-tests/pytorch-stand-in", base_image.encode(), _context_bytes(stand_in))
    _build(docker_client, stand_in, pytorch, base_image)
    images = {name: _content_tag(f"harness-tests/{repository}", pytorch.encode(), _context_bytes(TEMPLATES / name))
              for name, repository in (("gc", "example-algorithm-gc"), ("flare", "flareteam"))}
    archives = {}
    for name, tag in images.items():
        _build(docker_client, TEMPLATES / name, tag, pytorch)
        raw = b"".join(docker_client.images.get(tag).save(named=True))
        archives[name] = work / f"{name}.tar.gz"
        archives[name].write_bytes(gzip.compress(raw, compresslevel=1))  # do_save.sh: docker save | gzip -c
    model = work / "model.tar.gz"
    subprocess.run(["tar", "-czf", str(model), "-C", str(TEMPLATES / "gc" / "model"), "."], check=True)  # do_save.sh
    ids = {name: docker_client.images.get(tag).id for name, tag in images.items()}
    return {"images": images, "ids": ids, "archives": archives, "model": model}


ALGORITHMS = ("gc-template", "flareteam", "flareteam-small")


def _algorithms(root: Path, templates: dict[str, object], names: tuple[str, ...] = ALGORITHMS) -> Path:
    """gc-template, flareteam (each its template's `docker save` archive) and flareteam-small (the same
    FLARE image, pinned by its id instead of loaded from the archive a second time, with a 2 MiB
    writable cap); only `names`."""
    archives: dict[str, Path] = templates["archives"]  # type: ignore[assignment]
    folder = root / "algorithms"
    common = 'version = "1"\nkind = "segmenter"\nprofile = "flare22"\n'
    if "gc-template" in names:
        gc = folder / "gc-template"
        gc.mkdir(parents=True)
        shutil.copy(archives["gc"], gc / "example-algorithm.tar.gz")
        shutil.copy(templates["model"], gc / "model.tar.gz")  # type: ignore[arg-type]
        (gc / "algorithm.toml").write_text(
            f'name = "gc-template"\n{common}contract = "grand-challenge"\narchive = "example-algorithm.tar.gz"\n\n'
            '[resources]\nmemory = "1g"\ntime_limit_s = 120\n\n[grand-challenge]\nmodel = "model.tar.gz"\n')
    pinned = f'image = "{templates["images"]["flare"]}@{templates["ids"]["flare"]}"'  # type: ignore[index]
    for name, source, extra in (("flareteam", 'archive = "flareteam.tar.gz"', ""),
                                ("flareteam-small", pinned, 'output = "2m"\n')):
        if name not in names:
            continue
        flare = folder / name
        flare.mkdir(parents=True)
        if source.startswith("archive"):
            shutil.copy(archives["flare"], flare / "flareteam.tar.gz")
        (flare / "algorithm.toml").write_text(
            f'name = "{name}"\n{common}contract = "flare"\n{source}\n\n'
            f'[resources]\nmemory = "1g"\ntime_limit_s = 120\n{extra}')
    return folder


def _platform_gc(client, image: str, model: Path, data: Path, out: Path) -> Path:  # type: ignore[no-untyped-def]
    """Each case run as grand-challenge runs it (the forge's do_test_run.sh: /input read-only,
    /output, a volume at /tmp, the model at /opt/ml/model read-only, no network, the image's own
    user), then its output's voxels placed on the input's grid (the platform stores the image; an
    evaluation reads its voxels) as <case>.nii.gz."""
    import SimpleITK as sitk

    model_dir = out / "model"
    model_dir.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(model), "-C", str(model_dir)], check=True)  # the platform extracts it
    predictions = out / "predictions"
    predictions.mkdir()
    for image_file in sorted((data / "imagesTr").glob("*_0000.nii.gz")):
        case = image_file.name[: -len("_0000.nii.gz")]
        staged, written = out / case / "input", out / case / "output"
        (staged / "images" / "ct").mkdir(parents=True)
        written.mkdir(parents=True)
        written.chmod(0o777)
        ct = sitk.ReadImage(str(image_file))
        name = f"{uuid.uuid4()}.mha"
        sitk.WriteImage(ct, str(staged / "images" / "ct" / name))
        (staged / "inputs.json").write_text(json.dumps([{"interface": {"slug": "ct-image", "kind": "Image",
                                                                       "relative_path": "images/ct"},
                                                         "image": {"name": name}}]))
        for path in (staged, *staged.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp = client.volumes.create(name=f"harness-tests-gc-tmp-{uuid.uuid4().hex[:8]}")
        try:
            client.containers.run(image, remove=True, network_mode="none", volumes={
                str(staged): {"bind": "/input", "mode": "ro"}, str(written): {"bind": "/output", "mode": "rw"},
                tmp.name: {"bind": "/tmp", "mode": "rw"}, str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}})
        finally:
            tmp.remove(force=True)
        result = sitk.ReadImage(str(written / "images" / "abdominal-organ-segmentation" / "output.mha"))
        placed = sitk.GetImageFromArray(sitk.GetArrayFromImage(result))
        placed.CopyInformation(ct)
        sitk.WriteImage(placed, str(predictions / f"{case}.nii.gz"))
    return predictions


def _platform_flare(client, image: str, data: Path, out: Path) -> Path:  # type: ignore[no-untyped-def]
    """All cases in one `docker container run ... -v inputs:/workspace/inputs/ -v
    outputs:/workspace/outputs/ IMAGE /bin/bash -c "sh predict.sh"` (the FLARE organisers' command:
    root, a writable container file system)."""
    inputs, outputs = out / "inputs", out / "outputs"
    shutil.copytree(data / "imagesTr", inputs)
    outputs.mkdir(parents=True)
    client.containers.run(image, ["/bin/bash", "-c", "sh predict.sh"], remove=True, network_mode="none", volumes={
        str(inputs): {"bind": "/workspace/inputs", "mode": "rw"}, str(outputs): {"bind": "/workspace/outputs", "mode": "rw"}})
    return outputs


def _scored(harness_cli, predictions: Path, data: Path, name: str, out: Path) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    table = out / f"{name}.csv"
    status, _, err = harness_cli("score", "--pred", str(predictions), "--labels", str(data), "--algorithm", name,
                                "--out", str(table), "--jobs", "1")
    assert status == 0, err[-3000:]
    return pd.read_csv(table).set_index(["case", "organ"]).sort_index()


def test_templates_score_ok_and_as_the_platform_runs_them(tmp_path: Path, docker_client, templates,  # type: ignore[no-untyped-def]
                                                          phantom_data: Path, harness_cli) -> None:
    from harness.store import Store

    algorithms = _algorithms(tmp_path, templates)
    data = first_cases(phantom_data, tmp_path / "data", CASES)
    results = tmp_path / "results"
    # the installed command, in its own process; scoring inline (the Dask path has tests of its own)
    done = harness("run", str(algorithms), "--data", str(data), "--results", str(results), "--scoring-workers", "0")
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]  # flareteam-small fails, by design
    # FLARE's name for the archive is shown, never given to an image here
    assert "FLARE's name flareteam:latest, not tagged here" in done.stdout + done.stderr
    assert not docker_client.images.list(name="flareteam")
    with Store.open(results, lock=False, create=False) as store:
        runs = store.runs().set_index(["algorithm", "case_id"]).sort_index()
        scores = store.scores()
    for name in ("gc-template", "flareteam"):
        assert set(runs.loc[name].status) == {"ok"}, runs.loc[name].message.tolist()
    # the same image past its writable cap: its scratch file fills the WORKDIR; recorded, the run went on
    small = runs.loc["flareteam-small"]
    assert set(small.status) == {"output_too_large"}, small.message.tolist()
    assert all(m.startswith("/workspace filled its writable space") for m in small.message), small.message.tolist()
    # the grand-challenge template ran as its own user, with its home and its packages
    assert all("Using device: cpu" in log and "Stand-in model weights" in log
               for log in runs.loc["gc-template"].log_tail), runs.loc["gc-template"].log_tail.tolist()

    images: dict[str, str] = templates["images"]
    platform = {"gc-template": _platform_gc(docker_client, images["gc"], templates["model"], data, tmp_path / "gc"),
                "flareteam": _platform_flare(docker_client, images["flare"], data, tmp_path / "flare")}
    for name, predictions in platform.items():
        theirs = _scored(harness_cli, predictions, data, name, tmp_path)
        ours = scores[scores.algorithm == name].rename(columns={"case_id": "case"}).set_index(["case", "organ"]).sort_index()
        assert list(ours.index) == list(theirs.index), name
        assert (theirs.status == "ok").all(), name
        assert (ours.dsc.to_numpy() > 0).any(), name  # real scores, not all-background
        for column in ("dsc", "nsd"):
            assert np.array_equal(ours[column].to_numpy(), theirs[column].to_numpy(), equal_nan=True), (name, column)
        assert np.allclose(ours.hd95_mm.to_numpy(), theirs.hd95_mm.to_numpy(), equal_nan=True, rtol=0, atol=1e-9), name


@pytest.mark.parametrize("name", ["gc-template", "flareteam"])
def test_templates_pass_harness_check(tmp_path: Path, templates, phantom_data: Path, name: str, harness_cli) -> None:  # type: ignore[no-untyped-def]
    algorithms = _algorithms(tmp_path, templates, (name,))
    data = first_cases(phantom_data, tmp_path / "data", CASES)
    status, out, err = harness_cli("check", str(algorithms / name), "--data", str(data),
                                  "--cases", "1")
    assert status == 0, out[-3000:] + err[-3000:]
    assert "accepted: it would be accepted as submitted" in out


def test_gc_user_and_home_as_the_platforms_shim_sets_them(tmp_path: Path, docker_client, base_image: str,  # type: ignore[no-untyped-def]
                                                          phantom_data: Path, harness_cli) -> None:
    """grand-challenge's shim runs the image's USER with HOME from the image's /etc/passwd, over the
    image's own ENV HOME; an image without a USER (root) is one the platform refuses at upload:
    harness runs it as its own unprivileged user, and `harness check` says so. Each image prints its
    HOME and uid and exits 3, so the check shows them in the crashed case's log line."""
    from harness.runner.docker_runner import sandbox_user

    script = json.dumps('echo "HOME=$HOME uid=$(id -u)"; exit 3')
    dockerfiles = {
        "gc-envhome": f"FROM {base_image}\nRUN useradd -m -u 1234 algo\nENV HOME=/elsewhere\nUSER algo\n"
                      f'ENTRYPOINT ["/bin/sh", "-c", {script}]\n',
        "gc-root": f'FROM {base_image}\nENV HOME=/elsewhere\nENTRYPOINT ["/bin/sh", "-c", {script}]\n',
    }
    data = first_cases(phantom_data, tmp_path / "data", CASES)
    outputs = {}
    for name, dockerfile in dockerfiles.items():
        tag = _content_tag(f"harness-tests/{name}", base_image.encode(), dockerfile.encode())
        image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="none",
                                              pull=False, rm=True, forcerm=True)
        folder = tmp_path / "algorithms" / name
        folder.mkdir(parents=True)
        # pinned by id: the user and HOME come from the image's configuration and /etc/passwd, whichever way
        # the image arrives (the archive's way is the template test's above)
        (folder / "algorithm.toml").write_text(
            f'name = "{name}"\nversion = "1"\nkind = "segmenter"\nprofile = "flare22"\ncontract = "grand-challenge"\n'
            f'image = "{tag}@{image.id}"\n\n[resources]\nmemory = "256m"\ntime_limit_s = 60\n')
        status, out, _ = harness_cli("check", str(folder), "--data", str(data), "--cases", "1")
        assert status != 0, out[-3000:]
        outputs[name] = out
    assert "crashed" in outputs["gc-envhome"] and "log: HOME=/home/algo uid=1234" in outputs["gc-envhome"], \
        outputs["gc-envhome"][-3000:]
    assert "[warn] image:" not in outputs["gc-envhome"]
    ours = sandbox_user()[0]
    assert f"log: HOME=/tmp uid={ours}" in outputs["gc-root"], outputs["gc-root"][-3000:]
    assert ("[warn] image: the image's USER is unset (root): grand-challenge refuses such an image at upload; "
            "harness ran it as its own unprivileged user with HOME=/tmp") in outputs["gc-root"], outputs["gc-root"][-3000:]
