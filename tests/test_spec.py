"""Algorithm manifests: every problem is one line naming the file, the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec import discover_algorithms, load_manifest, parse_size

GOOD = """name = "demo"
version = "1.0"
kind = "segmenter"
dockerfile = "dockerfiles/demo.Dockerfile"
profile = "flare22"
writes_probabilities = true
gpu = "optional"

[resources]
memory = "2g"
shm = "128m"
time_limit_s = 90
pids = 64

[local]
command = ["{python}", "predict.py", "{input}", "{output}"]
"""


def _write(root: Path, text: str, name: str = "demo") -> Path:
    (root / "dockerfiles").mkdir(exist_ok=True)
    (root / "dockerfiles" / "demo.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    folder = root / "algorithms" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "algorithm.toml").write_text(text)
    return folder / "algorithm.toml"


def test_good_manifest(tmp_path: Path) -> None:
    spec = load_manifest(_write(tmp_path, GOOD), repo_root=tmp_path)
    assert (spec.name, spec.kind, spec.gpu, spec.writes_probabilities) == ("demo", "segmenter", "optional", True)
    assert spec.resources.memory_bytes == 2 * 1024**3 and spec.resources.shm_bytes == 128 * 1024**2
    assert spec.resources.time_limit_s == 90 and spec.resources.pids == 64
    assert spec.local_command == ("{python}", "predict.py", "{input}", "{output}")
    assert len(spec.manifest_sha256) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("kind = \"segmenter\"\n", ""), r"algorithm\.toml: missing key 'kind'; add it"),
        (("kind = \"segmenter\"", "kind = \"classifier\""), r"key 'kind' = 'classifier'; use one of segmenter, annotator"),
        (("version = \"1.0\"", "version = 1"), r"key 'version' = 1; expected a non-empty string"),
        (("gpu = \"optional\"", "gpu = \"yes\""), r"key 'gpu' = 'yes'; use one of none, optional, required"),
        (("writes_probabilities = true", "writes_probabilities = \"yes\""), r"key 'writes_probabilities' = 'yes'; use true or false"),
        (("memory = \"2g\"", "memory = \"lots\""), r"key 'resources.memory' = 'lots'; use a size like \"4g\""),
        (("time_limit_s = 90", "time_limit_s = -1"), r"key 'resources.time_limit_s' = -1; use seconds"),
        (("pids = 64", "pids = true"), r"key 'resources.pids' = True; use an integer 8..65536"),
        (("demo.Dockerfile", "missing.Dockerfile"), r"key 'dockerfile' = 'dockerfiles/missing\.Dockerfile' does not exist"),
        (("profile = \"flare22\"", "profile = \"flare99\""), r"flare99: no such profile"),
        (("gpu = \"optional\"", "gpu = \"optional\"\ncolour = \"red\""), r"unknown key 'colour'; allowed keys"),
        (("{output}", "{outptu}"), r"key 'local.command' uses \{outptu\}; allowed placeholders"),
        (("name = \"demo\"", "name = \"Demo!\""), r"key 'name' = 'Demo!'; use lower-case letters"),
        (("name = \"demo\"", "name = \"other\""), r"key 'name' = 'other' differs from its folder 'demo'; rename one"),
        (("[resources]", "[resources"), r"algorithm\.toml: not valid TOML .*fix the syntax"),
    ],
)
def test_bad_manifests(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(SpecError, match=message) as err:
        load_manifest(path, repo_root=tmp_path)
    assert str(path) in str(err.value) or "no such profile" in str(err.value)
    assert "\n" not in str(err.value)


def test_discovery_keeps_going_past_a_bad_manifest(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    _write(tmp_path, GOOD.replace("demo", "broken").replace("kind = \"segmenter\"", "kind = 3"), name="broken")
    specs, errors = discover_algorithms(tmp_path / "algorithms", repo_root=tmp_path)
    assert [s.name for s in specs] == ["demo"]
    assert len(errors) == 1 and "broken/algorithm.toml: key 'kind' = 3" in str(errors[0])
    with pytest.raises(SpecError, match=r"nowhere: no such folder; pass the folder holding"):
        discover_algorithms(tmp_path / "nowhere")


@pytest.mark.parametrize("text, kind", [
    (GOOD.replace('kind = "segmenter"', 'kind = "annotator"').replace("gpu = ", "gpu_mode = "), "annotator"),
    (GOOD.replace("pids = 64", "pids = 1"), "segmenter"),
    (GOOD.replace('kind = "segmenter"', 'kind = "judge"'), None),  # not a kind
    (GOOD.replace('kind = "segmenter"', 'kind = ["annotator"]'), None),
    ('name = "demo"\nkind = annotator\n', None),  # not TOML
])
def test_a_refused_manifest_carries_the_kind_it_declares(tmp_path: Path, text: str, kind: str | None) -> None:
    """Each command reports the refusals of its own kind by this field, never by the message's words."""
    from harness.models import Kind
    from harness.spec import ManifestError

    manifest = _write(tmp_path, text)
    with pytest.raises(ManifestError, match=r"demo/algorithm\.toml: ") as refused:
        load_manifest(manifest, repo_root=tmp_path)
    assert refused.value.manifest == manifest
    assert refused.value.kind is (Kind(kind) if kind else None)
    _, errors = discover_algorithms(tmp_path / "algorithms", repo_root=tmp_path)
    assert [(e.manifest, e.kind, str(e)) for e in errors] == [(manifest, refused.value.kind, str(refused.value))]


def test_sizes() -> None:
    assert parse_size("4g", where="x") == 4 * 1024**3
    assert parse_size("1.5G", where="x") == int(1.5 * 1024**3)
    assert parse_size(1000, where="x") == 1000
    with pytest.raises(SpecError, match=r"x = '0m'; use a size"):
        parse_size("0m", where="x")


@pytest.mark.parametrize("key, value", [("dockerfile", "../../../../../../etc/shadow"), ("dockerfile", "/etc/passwd"),
                                        ("profile", "/etc/shadow"), ("profile", "../../../../../../../etc/hostname")])
def test_a_manifest_cannot_point_outside_the_repository(tmp_path: Path, key: str, value: str) -> None:
    (tmp_path / "repo").mkdir()
    manifest = _write(tmp_path / "repo", GOOD)
    if key == "dockerfile":
        manifest.write_text(GOOD.replace('dockerfile = "dockerfiles/demo.Dockerfile"', f'dockerfile = "{value}"'))
    else:
        manifest.write_text(GOOD.replace('profile = "flare22"', f'profile = "{value}"'))
    with pytest.raises(SpecError, match=rf"key '{key}' leaves the repository") as error:
        load_manifest(manifest, repo_root=tmp_path / "repo")
    assert "root:" not in str(error.value)  # nothing of the file is read, let alone quoted


@pytest.mark.parametrize("source, message", [
    ('image = "team/seg:v1"', r"key 'image' = 'team/seg:v1'; pin it by digest"),
    ('image = "team/seg@sha256:abc"', r"pin it by digest"),
    ('dockerfile = "dockerfiles/demo.Dockerfile"\nimage = "team/seg@sha256:' + "0" * 64 + '"',
     r"give exactly one of 'dockerfile', 'image' or 'archive' \(found: dockerfile, image\)"),
    ("", r"give exactly one of 'dockerfile', 'image' or 'archive' \(found: none\)"),
])
def test_a_prebuilt_image_is_pinned_and_exactly_one_source_is_given(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "repo").mkdir()
    manifest = _write(tmp_path / "repo", GOOD)
    manifest.write_text(GOOD.replace('dockerfile = "dockerfiles/demo.Dockerfile"', source))
    with pytest.raises(SpecError, match=message):
        load_manifest(manifest, repo_root=tmp_path / "repo")


def test_pinned_images_and_archives_need_no_repository(tmp_path: Path) -> None:
    folder = tmp_path / "submissions" / "demo"
    folder.mkdir(parents=True)
    pinned = GOOD.replace('dockerfile = "dockerfiles/demo.Dockerfile"', 'image = "team/seg:v1@sha256:' + "a" * 64 + '"')
    (folder / "algorithm.toml").write_text(pinned)
    spec = load_manifest(folder / "algorithm.toml", repo_root=tmp_path / "nowhere")
    assert spec.dockerfile is None and spec.image == "team/seg:v1@sha256:" + "a" * 64
    (folder / "algorithm.toml").write_text(GOOD.replace('dockerfile = "dockerfiles/demo.Dockerfile"', 'archive = "team.tar.gz"'))
    assert load_manifest(folder / "algorithm.toml", repo_root=tmp_path / "nowhere").archive == (folder / "team.tar.gz").resolve()


def _contract(tmp_path: Path, contract: str, table: str, files: dict[str, str] | None = None) -> Path:
    manifest = _write(tmp_path, GOOD)
    for rel, text in (files or {}).items():
        (manifest.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        (manifest.parent / rel).write_text(text)
    manifest.write_text(GOOD.replace('gpu = "optional"', f'gpu = "optional"\ncontract = "{contract}"') + "\n" + table)
    return manifest


MEDPERF = """container_type: DockerImage
image: team/seg:1
tasks:
  infer:
    input_volumes:
      data_path: {mount_path: /mlcommons/volumes/data, type: directory}
      parameters_file: {mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file}
    output_volumes:
      output_path: {mount_path: /mlcommons/volumes/predictions, type: directory}
    run_args: {command: "infer --data_path=/mlcommons/volumes/data"}
"""


def test_foreign_contracts_read_their_own_tables(tmp_path: Path) -> None:
    from harness.contracts import GrandChallengeOptions, MLCubeOptions, NnUNetOptions, contract_of

    spec = load_manifest(_contract(tmp_path, "grand-challenge", '[grand-challenge]\noutput_slug = "organs"\n'),
                         repo_root=tmp_path)
    assert spec.options == GrandChallengeOptions(output_slug="organs", output_path="images/organs")
    spec = load_manifest(_contract(tmp_path, "nnunet", '[nnunet]\narguments = ["-d", "1", "-c", "3d_fullres"]\n'),
                         repo_root=tmp_path)
    assert isinstance(spec.options, NnUNetOptions)
    assert contract_of(spec.contract).launch(spec.options, probabilities=True).command == (
        "-i", "/input", "-o", "/output", "-d", "1", "-c", "3d_fullres", "--save_probabilities")
    spec = load_manifest(_contract(tmp_path, "mlcube", '[mlcube]\nconfig = "cc.yaml"\nparameters = "p.yaml"\n',
                                   {"cc.yaml": MEDPERF, "p.yaml": "offset: 1\n"}), repo_root=tmp_path)
    assert isinstance(spec.options, MLCubeOptions) and spec.options.style == "medperf"
    started = contract_of(spec.contract).launch(spec.options, probabilities=False)
    assert (started.input_path, started.output_path) == ("/mlcommons/volumes/data", "/mlcommons/volumes/predictions")
    assert started.command == ("infer", "--data_path=/mlcommons/volumes/data")
    assert [m.container for m in started.mounts] == ["/mlcommons/volumes/parameters/parameters_file.yaml"]
    before = spec.manifest_sha256
    (spec.directory / "p.yaml").write_text("offset: 2\n")  # what the contract reads is part of the manifest
    assert load_manifest(spec.manifest, repo_root=tmp_path).manifest_sha256 != before


@pytest.mark.parametrize("contract, table, files, message", [
    ("harness", '[nnunet]\narguments = []\n', {}, r"table \[nnunet\] but contract = 'harness'"),
    ("nnunet", '[nnunet]\narguments = ["-i", "/x"]\n', {}, r"gives -i or -o; the harness passes -i /input -o /output"),
    ("nnunet", '[nnunet]\nprobability_axes = "yxz"\n', {}, r"'nnunet.probability_axes' = 'yxz'"),
    ("mlcube", "", {}, r"key 'mlcube.config' is missing"),
    ("mlcube", '[mlcube]\nconfig = "../../secret.yaml"\n', {}, r"leaves the algorithm's folder"),
    ("mlcube", '[mlcube]\nconfig = "cc.yaml"\n', {"cc.yaml": MEDPERF}, r"mounts parameters_file; give key 'mlcube.parameters'"),
    ("mlcube", '[mlcube]\nconfig = "cc.yaml"\n', {"cc.yaml": "tasks: {train: {}}\n"}, r"no `tasks: infer:`"),
    ("mlcube", '[mlcube]\nconfig = "cc.yaml"\nparameters = "p.yaml"\n',
     {"cc.yaml": MEDPERF.replace("/mlcommons/volumes/predictions", "/tmp"), "p.yaml": ""},
     r"volume 'output_path' mount_path '/tmp'; mount under a folder of its own"),
    ("mlcube", '[mlcube]\nconfig = "cc.yaml"\nparameters = "p.yaml"\n',
     {"cc.yaml": MEDPERF.replace("/mlcommons/volumes/predictions", "/mlcommons/volumes/data"), "p.yaml": ""},
     r"mount_path '/mlcommons/volumes/data' is given twice"),
    ("grand-challenge", '[grand-challenge]\noutput_path = "../x"\n', {}, r"give a relative path without '..'"),
    ("grand-challenge", '[grand-challenge]\nmodel = "weights"\n', {}, r"'grand-challenge.model' = 'weights' is not a folder"),
    ("sagemaker", "", {}, r"key 'contract' = 'sagemaker'; supported: harness, flare, grand-challenge, mlcube, nnunet"),
])
def test_foreign_contract_tables_are_checked(tmp_path: Path, contract: str, table: str, files: dict[str, str],
                                            message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_manifest(_contract(tmp_path, contract, table, files), repo_root=tmp_path)


def test_an_annotator_follows_the_harness_contract(tmp_path: Path) -> None:
    manifest = _contract(tmp_path, "nnunet", "")
    manifest.write_text(manifest.read_text().replace('kind = "segmenter"', 'kind = "annotator"'))
    with pytest.raises(SpecError, match="annotators follow the harness contract"):
        load_manifest(manifest, repo_root=tmp_path)


@pytest.mark.parametrize(("gpu_line", "arguments", "gpu_ids", "device"), [
    ("", "", ("0",), ["-device", "cuda"]),  # nnU-Net's default gpu is "optional": a GPU host gives it its GPU
    ("", "", (), ["-device", "cpu"]),  # no GPU here: nnU-Net would crash looking for one ("Found no NVIDIA driver")
    ('gpu = "none"\n', "", ("0",), ["-device", "cpu"]),  # said explicitly: no GPU, so the CPU
    ('gpu = "optional"\n', "", ("0",), ["-device", "cuda"]),
    ('gpu = "optional"\n', "", (), ["-device", "cpu"]),
    ('gpu = "required"\n', "", ("0", "1"), ["-device", "cuda"]),
    ("", ', "-device", "cpu"', ("0",), ["-device", "cpu"]),  # the manifest's own -device is kept, never doubled
    ('gpu = "none"\n', ', "-device=cuda"', (), ["-device=cuda"]),
])
def test_nnunet_device_follows_the_gpu_the_run_gets(tmp_path: Path, gpu_line: str, arguments: str,
                                                    gpu_ids: tuple[str, ...], device: list[str]) -> None:
    from harness.casework import run_spec
    from harness.contracts import contract_of

    manifest = _write(tmp_path, GOOD.replace('gpu = "optional"\n', gpu_line + 'contract = "nnunet"\n')
                      + f'\n[nnunet]\narguments = ["-d", "1", "-c", "3d_fullres"{arguments}]\n')
    spec = load_manifest(manifest, repo_root=tmp_path)
    started = run_spec(spec, gpu_ids=gpu_ids)
    command = list(contract_of(started.contract).launch(started.options, probabilities=True).command or ())
    assert command == ["-i", "/input", "-o", "/output", "-d", "1", "-c", "3d_fullres", *device, "--save_probabilities"]
    assert [a for a in command if a.startswith("-device")] == device[:1]


def test_the_gpu_default_is_the_contracts(tmp_path: Path) -> None:
    """No `gpu` key: "none" for the harness's own contract, "optional" for nnU-Net (whose tool uses the GPU)."""
    from harness.models import GpuMode

    assert load_manifest(_write(tmp_path, GOOD.replace('gpu = "optional"\n', "")), repo_root=tmp_path).gpu is GpuMode.NONE
    nnunet = load_manifest(_write(tmp_path, GOOD.replace('gpu = "optional"\n', 'contract = "nnunet"\n')),
                           repo_root=tmp_path)
    assert nnunet.gpu is GpuMode.OPTIONAL
