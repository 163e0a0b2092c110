"""MLCube (legacy mlcube.yaml, MedPerf) and nnU-Net manifests as their platforms read them: MLCube's
mount numbering and arguments (mlcube/shell.py, generate_mounts_and_args), FeTS's "null" files,
the per-case layout, MedPerf's additional_files tarball, nnUNetv2_predict's model options."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from harness.contracts import contract_of
from harness.contracts.base import Mount
from harness.errors import SpecError
from harness.spec import load_manifest

HEAD = """name = "cube"
version = "1"
kind = "segmenter"
image = "team/cube:1@sha256:{digest}"
profile = "flare22"
gpu = "none"
contract = "{contract}"
"""

# The FeTS model cube's infer task as mlcommons/mlcube_examples ships it (fets/model/mlcube/mlcube.yaml).
FETS = """name: FeTS-like model
platform:
  accelerator_count: 0
docker:
  image: mlcommons/fets_model:0.0.1
  build_context: "../project"
  build_file: "Dockerfile"
tasks:
  infer:
    parameters:
      inputs: {data_path: data/, parameters_file: {type: file, default: "null"}, checkpoint_path: {type: file, default: "null"}}
      outputs: {output_path: output/}
"""


def _cube(tmp_path: Path, contract: str, table: str, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "algorithms" / "cube"
    folder.mkdir(parents=True)
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content.encode() if isinstance(content, str) else content)
    (folder / "algorithm.toml").write_text(HEAD.format(digest="a" * 64, contract=contract) + table)
    return folder / "algorithm.toml"


def _launch(manifest: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = load_manifest(manifest, repo_root=tmp_path)
    return spec, contract_of(spec.contract).launch(spec.options, probabilities=False)


def test_fets_mlcube_yaml_runs_as_shipped_with_mlcubes_numbering(tmp_path: Path) -> None:
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube/mlcube.yaml"\n',
                     {"mlcube/mlcube.yaml": FETS, "mlcube/workspace/output/.gitignore": "*\n"})
    spec, started = _launch(manifest, tmp_path)
    # MLCube: data/ -> io0; "null" (a file) -> its folder, the workspace -> io1, shared by both "null"
    # files; output/ -> io2. The cube finds no /mlcube_io1/null and uses the files in its image.
    assert started.command == ("infer", "--data_path=/mlcube_io0", "--parameters_file=/mlcube_io1/null",
                               "--checkpoint_path=/mlcube_io1/null", "--output_path=/mlcube_io2")
    assert started.entrypoint is None  # the image's own (python3 /mlcube_project/mlcube.py)
    assert (started.input_path, started.output_path) == ("/mlcube_io0", "/mlcube_io2")
    workspace = manifest.parent / "mlcube" / "workspace"
    assert started.mounts == (Mount(workspace, "/mlcube_io1"),)
    assert spec.options.case_layout == "folder"
    notes = contract_of("mlcube").notes(spec.options)
    assert notes == ["mlcube.yaml names the image 'mlcommons/fets_model:0.0.1': not used (a name is never looked up: any "
                     "local image could carry it); the image is the manifest's dockerfile, pinned image or archive"]


def test_a_folder_the_workspace_lacks_is_an_empty_read_only_mount(tmp_path: Path) -> None:
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube.yaml"\n', {"mlcube.yaml": FETS})
    _, started = _launch(manifest, tmp_path)
    assert started.mounts == (Mount(None, "/mlcube_io1"),)


def test_legacy_parameters_share_a_folders_mount_and_keep_their_order(tmp_path: Path) -> None:
    config = """tasks:
  infer:
    entrypoint: python3 /app/infer.py
    parameters:
      inputs:
        data_path: {type: directory, default: data}
        parameters_file: parameters.yaml
        weights: model/weights.bin
        vocabulary: model/vocab.txt
        extra: {type: directory, default: extra/}
      outputs:
        output_path: {type: directory, default: predictions}
"""
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube.yaml"\ncase_layout = "flat"\n',
                     {"mlcube.yaml": config, "workspace/parameters.yaml": "a: 1\n", "workspace/model/weights.bin": "w",
                      "workspace/model/vocab.txt": "v"})
    spec, started = _launch(manifest, tmp_path)
    workspace = manifest.parent / "workspace"
    # a task entrypoint replaces the image's: its first word, then the rest and the arguments without "infer"
    assert started.entrypoint == ("python3",)
    assert started.command == ("/app/infer.py", "--data_path=/mlcube_io0", "--parameters_file=/mlcube_io1/parameters.yaml",
                               "--weights=/mlcube_io2/weights.bin", "--vocabulary=/mlcube_io2/vocab.txt",
                               "--extra=/mlcube_io3", "--output_path=/mlcube_io4")
    assert started.mounts == (Mount(workspace, "/mlcube_io1"), Mount(workspace / "model", "/mlcube_io2"),
                              Mount(None, "/mlcube_io3"))
    assert spec.options.case_layout == "flat"
    assert contract_of("mlcube").notes(spec.options) == []


@pytest.mark.parametrize("inputs, files, message", [
    ("{data_path: data/, weights: w.bin}", {}, r"inputs.weights = 'w.bin' has no type and the workspace .* holds nothing"),
    ("{data_path: data/, weights: /etc/passwd}", {}, r"inputs.weights = '/etc/passwd' is a host path"),
    ("{data_path: data/, weights: '~/w'}", {}, r"inputs.weights = '~/w' is a host path"),
    ("{data_path: data/, weights: '${HOME}/w'}", {}, r"is a host path"),
    ("{data_path: data/, weights: {type: file, default: ../../x}}", {}, r"leaves the algorithm's folder"),
    ("{data_path: {type: file, default: d.nii}}", {}, r"inputs.data_path has type file"),
    ("{data_path: data/, weights: {type: link, default: w}}", {}, r"give a path and a type"),
])
def test_legacy_parameters_that_mlcube_or_the_sandbox_refuses(tmp_path: Path, inputs: str, files: dict[str, str],
                                                              message: str) -> None:
    config = f"tasks:\n  infer:\n    parameters:\n      inputs: {inputs}\n      outputs: {{output_path: out/}}\n"
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube.yaml"\n', {"mlcube.yaml": config, **files})
    with pytest.raises(SpecError, match=message):
        load_manifest(manifest, repo_root=tmp_path)


def test_an_output_without_a_type_is_refused_as_mlcube_refuses_it(tmp_path: Path) -> None:
    config = "tasks:\n  infer:\n    parameters:\n      inputs: {data_path: data/}\n      outputs: {output_path: out/, log: log}\n"
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube.yaml"\n', {"mlcube.yaml": config})
    with pytest.raises(SpecError, match=r"outputs.log has no type; give type: file or directory"):
        load_manifest(manifest, repo_root=tmp_path)


def test_the_case_is_staged_in_a_folder_of_its_own_for_a_legacy_cube(tmp_path: Path) -> None:
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube.yaml"\n', {"mlcube.yaml": FETS})
    spec = load_manifest(manifest, repo_root=tmp_path)
    staged = tmp_path / "in"
    staged.mkdir()
    (staged / "case_7_0000.nii.gz").write_bytes(b"x")
    contract_of("mlcube").stage_input(spec.options, "case_7", staged / "case_7_0000.nii.gz", staged)
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*")) == ["case_7", "case_7/case_7_0000.nii.gz"]
    bad = _cube(tmp_path / "b", "mlcube", '[mlcube]\nconfig = "mlcube.yaml"\ncase_layout = "nested"\n',
                {"mlcube.yaml": FETS})
    with pytest.raises(SpecError, match=r"'mlcube.case_layout' = 'nested'; use \"folder\""):
        load_manifest(bad, repo_root=tmp_path / "b")


MEDPERF = """container_type: DockerImage
image: team/seg:1
tasks:
  infer:
    input_volumes:
      data_path: {mount_path: /mlcommons/volumes/data, type: directory}
      additional_files: {mount_path: /mlcommons/volumes/additional_files, type: directory}
    output_volumes:
      output_path: {mount_path: /mlcommons/volumes/predictions, type: directory}
"""


def _tarball(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_medperf_additional_files_tarball_is_extracted_once_and_mounted(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    tarball = _tarball([(_member("./", tarfile.DIRTYPE), None), (_member("./weights/w.bin"), b"\x01" * 10),
                        (_member("./README"), b"hello")])  # as `tar -czf additional_files.tar.gz -C folder .` packs it
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "cc.yaml"\nadditional_files = "additional_files.tar.gz"\n',
                     {"cc.yaml": MEDPERF, "additional_files.tar.gz": tarball})
    spec, started = _launch(manifest, tmp_path)
    (mount,) = started.mounts
    assert mount.container == "/mlcommons/volumes/additional_files"
    assert mount.host is not None and mount.host.parent == tmp_path / "cache" / "files"
    assert sorted(p.relative_to(mount.host).as_posix() for p in mount.host.rglob("*")) == ["README", "weights",
                                                                                        "weights/w.bin"]
    assert (mount.host / "weights" / "w.bin").read_bytes() == b"\x01" * 10
    assert (mount.host / "README").stat().st_mode & 0o777 == 0o444
    assert spec.options.case_layout == "flat"  # MedPerf's data_path: the prepared files as they are
    again = load_manifest(manifest, repo_root=tmp_path)  # the same content: the same folder, not extracted again
    assert contract_of("mlcube").launch(again.options, probabilities=False).mounts == started.mounts
    assert [p.name for p in (tmp_path / "cache" / "files").iterdir()] == [mount.host.name]


@pytest.mark.parametrize("members, message", [  # every hostile case, for each use: tests/test_intake_tar.py
    ([(_member("../evil"), b"x")], r"member '\.\./evil' leaves the folder"),
    ([(_member("link", tarfile.SYMTYPE, "/etc/passwd"), None)], r"member 'link' is a link or a special file"),
])
def test_a_hostile_additional_files_tarball_is_refused_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         members: list, message: str) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "cc.yaml"\nadditional_files = "af.tar.gz"\n',
                     {"cc.yaml": MEDPERF, "af.tar.gz": _tarball(members)})
    with pytest.raises(SpecError, match=r"key 'mlcube.additional_files': .*af\.tar\.gz: " + message +
                       r".*; pack the files with `tar -czf additional_files.tar.gz"):
        load_manifest(manifest, repo_root=tmp_path)
    assert list((tmp_path / "cache" / "files").iterdir()) == []


# --- nnU-Net ---------------------------------------------------------------------------------------


def test_nnunet_model_fields_become_nnunetv2_predicts_options(tmp_path: Path) -> None:
    manifest = _cube(tmp_path, "nnunet", '[nnunet]\ndataset = "Dataset001_Box"\nconfiguration = "3d_fullres"\n'
                     'trainer = "nnUNetTrainer_5epochs"\nplans = "nnUNetResEncUNetMPlans"\nfolds = [0, 3]\n'
                     'checkpoint = "checkpoint_best.pth"\ndisable_tta = true\narguments = ["-step_size", "0.7"]\n', {})
    spec = load_manifest(manifest, repo_root=tmp_path)
    started = contract_of("nnunet").launch(contract_of("nnunet").for_device(spec.options, gpu=False), probabilities=True)
    assert started.command == ("-i", "/input", "-o", "/output", "-d", "Dataset001_Box", "-c", "3d_fullres",
                               "-tr", "nnUNetTrainer_5epochs", "-p", "nnUNetResEncUNetMPlans", "-f", "0", "3",
                               "-chk", "checkpoint_best.pth", "--disable_tta", "-step_size", "0.7", "-device", "cpu",
                               "--save_probabilities")


def test_nnunet_fields_left_out_are_not_passed_so_nnunets_defaults_apply(tmp_path: Path) -> None:
    manifest = _cube(tmp_path, "nnunet", '[nnunet]\ndataset = 1\nconfiguration = "2d"\nfolds = "all"\n', {})
    spec = load_manifest(manifest, repo_root=tmp_path)
    started = contract_of("nnunet").launch(contract_of("nnunet").for_device(spec.options, gpu=True), probabilities=False)
    assert started.command == ("-i", "/input", "-o", "/output", "-d", "1", "-c", "2d", "-f", "all", "-device", "cuda")


@pytest.mark.parametrize("table, message", [
    ('trainer = "nnUNetTrainer"\narguments = ["-tr", "X"]\n', r"'nnunet.trainer' and -tr in 'nnunet.arguments'; give it once"),
    ('disable_tta = true\narguments = ["--disable_tta"]\n', r"'nnunet.disable_tta' and --disable_tta"),
    ('disable_tta = "yes"\n', r"'nnunet.disable_tta' = 'yes'; use true or false"),
    ('folds = [0, "x"]\n', r"'nnunet.folds' = \[0, 'x'\]; use fold numbers"),
    ('folds = []\n', r"'nnunet.folds' = \[\]; use fold numbers"),
    ('plans = "--evil"\n', r"'nnunet.plans' = '--evil'; give a name such as \"nnUNetPlans\""),
    ('checkpoint = "a b"\n', r"'nnunet.checkpoint' = 'a b'"),
    ('tr = "x"\n', r"unknown key 'nnunet.tr'"),
])
def test_nnunet_model_fields_are_checked(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_manifest(_cube(tmp_path, "nnunet", "[nnunet]\n" + table, {}), repo_root=tmp_path)


def test_the_additional_files_tarball_is_part_of_the_manifests_identity(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "cc.yaml"\nadditional_files = "af.tgz"\n',
                     {"cc.yaml": MEDPERF, "af.tgz": _tarball([(_member("w"), b"1")])})
    before = load_manifest(manifest, repo_root=tmp_path).manifest_sha256
    (manifest.parent / "af.tgz").write_bytes(_tarball([(_member("w"), b"2")]))  # new weights: the algorithm runs again
    after = load_manifest(manifest, repo_root=tmp_path)
    assert after.manifest_sha256 != before
    (mount,) = contract_of("mlcube").launch(after.options, probabilities=False).mounts
    assert mount.host is not None and (mount.host / "w").read_bytes() == b"2"


def test_the_docker_runner_gives_an_empty_folder_as_a_read_only_tmpfs(tmp_path: Path) -> None:
    from harness.runner.base import RunRequest
    from harness.runner.docker_runner import DockerRunner

    manifest = _cube(tmp_path, "mlcube", '[mlcube]\nconfig = "mlcube/mlcube.yaml"\n', {"mlcube/mlcube.yaml": FETS})
    spec = load_manifest(manifest, repo_root=tmp_path)
    request = RunRequest(spec=spec, case_id="c", input_dir=tmp_path / "in", output_dir=tmp_path / "out", image="x")
    kwargs = DockerRunner(client=object()).container_kwargs(request)
    assert kwargs["tmpfs"]["/mlcube_io1"] == "ro,nosuid,nodev,size=4k,mode=0755"  # type: ignore[index]
    assert kwargs.get("mounts", []) == []  # nothing of the host behind it
    assert kwargs["command"] == ["infer", "--data_path=/mlcube_io0", "--parameters_file=/mlcube_io1/null",
                                 "--checkpoint_path=/mlcube_io1/null", "--output_path=/mlcube_io2"]
    binds = {v["bind"] for v in kwargs["volumes"].values()}  # type: ignore[union-attr]
    assert binds == {"/mlcube_io0", "/mlcube_io2"}
