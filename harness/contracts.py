"""Container contracts: how each platform stages a case, starts the container and names its outputs.

A contract is data and file work, never Docker: it says where the case goes (`stage_input`),
where the staged folder, the output file system and any read-only extras are mounted and with
which command the container starts (`launch`), which output paths the runner copies out
(`keep`), and how those outputs become the harness's own layout (`collect`: `<case>.nii.gz` and
`probabilities/<organ>.nii.gz`), on which every check then runs unchanged. algorithms/README.md
has each contract in full, with its sources.

- harness: /input (read-only) -> /output, the image's entry point, our unprivileged user.
- flare (FLARE21-24): /workspace/inputs (a private writable copy) -> /workspace/outputs,
  `/bin/bash -c "sh predict.sh"`, the image's own user.
- grand-challenge: /input/images/<slug>/<uuid>.mha and /input/inputs.json (read-only) -> exactly
  one image under /output/images/<slug>/; the model, when given, at /opt/ml/model (read-only).
- mlcube: MedPerf's `container_config.yaml` (volumes at their `mount_path`) or a legacy
  `mlcube.yaml` (`/mlcube_io<N>` mounts and `infer --data_path=... --parameters_file=...
  --output_path=...`); the case folder is `data_path`, predictions in `output_path`; host user.
- nnunet: the image's entry point with `-i /input -o /output` (and `--save_probabilities`);
  `<case>.nii.gz`, and `<case>.npz` (`probabilities`, channels first) turned into per-organ maps.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import CaseError, SpecError

if TYPE_CHECKING:
    from harness.models import Case, Profile

CONTRACT_NAMES = ("harness", "flare", "grand-challenge", "mlcube", "nnunet")
IMAGE_SUFFIXES_GC = (".mha", ".tif", ".tiff")  # what grand-challenge accepts for an image output
NNUNET_SIDE_FILES = ("plans.json", "dataset.json", "predict_from_raw_data_args.json")  # nnU-Net writes them to -o


@dataclass(frozen=True)
class Mount:
    """A read-only extra the container sees (a model folder, a parameters file)."""

    host: Path
    container: str


@dataclass(frozen=True)
class Launch:
    """How one container is started under a contract."""

    input_path: str  # where the staged case folder is mounted
    output_path: str  # where the run's output file system is mounted
    input_writable: bool = False  # a private writable copy (FLARE's teams write there)
    own_user: bool = False  # the image's own user (no --user), still without capabilities
    command: tuple[str, ...] | None = None  # replaces the image's CMD
    entrypoint: tuple[str, ...] | None = None  # replaces the image's ENTRYPOINT
    mounts: tuple[Mount, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GrandChallengeOptions:
    input_slug: str = "ct-image"
    input_path: str = "images/ct-image"  # the input socket's relative_path under /input
    output_slug: str = "abdominal-organ-segmentation"
    output_path: str = "images/abdominal-organ-segmentation"  # under /output: exactly one image here
    model: Path | None = None  # a folder mounted read-only at /opt/ml/model


@dataclass(frozen=True)
class MLCubeOptions:
    config: Path  # container_config.yaml (MedPerf) or mlcube.yaml (MLCube), absolute
    style: str  # "medperf" | "mlcube"
    data_mount: str  # where data_path is mounted
    output_mount: str  # where output_path is mounted
    mounts: tuple[Mount, ...]  # parameters file, additional files, other workspace inputs
    command: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NnUNetOptions:
    arguments: tuple[str, ...] = ()  # after -i IN -o OUT: -d, -c, -f, ...
    entrypoint: tuple[str, ...] | None = None  # default: the image's own (e.g. nnUNetv2_predict)
    probability_axes: str = "zyx"  # the npz's spatial axis order: nnU-Net's readers give z, y, x


ContractOptions = GrandChallengeOptions | MLCubeOptions | NnUNetOptions | None


# --- manifests --------------------------------------------------------------------------------



def _elided(text: str, limit: int) -> str:
    """`text` within `limit` characters, its middle cut: a path keeps its start and its file name."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[-(limit - 1 - head):]

def parse_options(contract: str, raw: dict[str, Any], manifest: Path) -> ContractOptions:
    """The contract's own table of a manifest (`[grand-challenge]`, `[mlcube]`, `[nnunet]`), checked."""
    table = raw.get(contract, {}) if contract in ("grand-challenge", "mlcube", "nnunet") else {}
    for other in ("grand-challenge", "mlcube", "nnunet"):
        if other in raw and other != contract:
            raise SpecError(f"{manifest}: table [{other}] but contract = {contract!r}; set contract = \"{other}\" or "
                            "remove the table")
    if not isinstance(table, dict):
        raise SpecError(f"{manifest}: key '{contract}' must be a table ([{contract}])")
    if contract == "grand-challenge":
        return _grand_challenge(table, manifest)
    if contract == "mlcube":
        return _mlcube(table, manifest)
    if contract == "nnunet":
        return _nnunet(table, manifest)
    return None


def _allowed(table: dict[str, Any], keys: set[str], where: str, manifest: Path) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise SpecError(f"{manifest}: unknown key '{where}.{unknown[0]}'; allowed: {', '.join(sorted(keys))}")


def _text(table: dict[str, Any], key: str, default: str, where: str, manifest: Path, *, pattern: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{manifest}: key '{where}.{key}' = {value!r}; expected a non-empty string")
    if pattern == "relpath" and (value.startswith("/") or ".." in Path(value).parts or "\\" in value):
        raise SpecError(f"{manifest}: key '{where}.{key}' = {value!r}; give a relative path without '..'")
    if pattern == "slug" and not all(c.isalnum() or c == "-" for c in value):
        raise SpecError(f"{manifest}: key '{where}.{key}' = {value!r}; a slug holds letters, digits and '-'")
    return value.strip("/") if pattern == "relpath" else value


def _beside(manifest: Path, value: Any, key: str, *, folder: bool) -> Path:
    """A file or folder given relative to the manifest, which must stay inside the manifest's folder."""
    from harness.intake import confined

    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{manifest}: key '{key}' = {value!r}; give a path relative to the manifest")
    path = confined(manifest.parent, value, key=key, where=manifest)  # no '..' out, no link on the way
    if folder and not path.is_dir():
        raise SpecError(f"{manifest}: key '{key}' = {value!r} is not a folder; give the folder beside the manifest")
    if folder:
        from harness.intake import context_files

        context_files(path)  # mounted into the container: regular files only, no link of any kind
    if not folder and not path.is_file():
        raise SpecError(f"{manifest}: key '{key}' = {value!r} does not exist; give the file beside the manifest")
    return path


def _grand_challenge(table: dict[str, Any], manifest: Path) -> GrandChallengeOptions:
    where = "grand-challenge"
    _allowed(table, {"input_slug", "input_path", "output_slug", "output_path", "model"}, where, manifest)
    base = GrandChallengeOptions()
    in_slug = _text(table, "input_slug", base.input_slug, where, manifest, pattern="slug")
    out_slug = _text(table, "output_slug", base.output_slug, where, manifest, pattern="slug")
    return GrandChallengeOptions(
        input_slug=in_slug,
        input_path=_text(table, "input_path", f"images/{in_slug}", where, manifest, pattern="relpath"),
        output_slug=out_slug,
        output_path=_text(table, "output_path", f"images/{out_slug}", where, manifest, pattern="relpath"),
        model=_beside(manifest, table["model"], f"{where}.model", folder=True) if "model" in table else None,
    )


def _nnunet(table: dict[str, Any], manifest: Path) -> NnUNetOptions:
    where = "nnunet"
    _allowed(table, {"arguments", "entrypoint", "probability_axes"}, where, manifest)
    arguments = table.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise SpecError(f"{manifest}: key 'nnunet.arguments' = {arguments!r}; use an array of strings such as "
                        '["-d", "Dataset001_Abdomen", "-c", "3d_fullres"]')
    if any(a in ("-i", "-o") for a in arguments):
        raise SpecError(f"{manifest}: key 'nnunet.arguments' gives -i or -o; the harness passes -i /input -o /output")
    entry = table.get("entrypoint")
    if entry is not None and (not isinstance(entry, list) or not entry or not all(isinstance(a, str) for a in entry)):
        raise SpecError(f"{manifest}: key 'nnunet.entrypoint' = {entry!r}; use an array such as [\"nnUNetv2_predict\"]")
    axes = table.get("probability_axes", "zyx")
    if axes not in ("zyx", "xyz"):
        raise SpecError(f"{manifest}: key 'nnunet.probability_axes' = {axes!r}; use \"zyx\" (nnU-Net's readers) or \"xyz\"")
    return NnUNetOptions(arguments=tuple(arguments), entrypoint=tuple(entry) if entry else None, probability_axes=axes)


_HARNESS_VOLUMES = {"data_path", "parameters_file", "additional_files", "output_path"}
_RESERVED_TOP = {"tmp", "proc", "sys", "dev", "etc"}  # the sandbox's own, or the container's system


def _mlcube(table: dict[str, Any], manifest: Path) -> MLCubeOptions:
    where = "mlcube"
    _allowed(table, {"config", "parameters", "additional_files", "workspace"}, where, manifest)
    if "config" not in table:
        raise SpecError(f"{manifest}: key 'mlcube.config' is missing; give the container_config.yaml (MedPerf) or "
                        "mlcube.yaml beside the manifest")
    config = _beside(manifest, table["config"], "mlcube.config", folder=False)
    parameters = _beside(manifest, table["parameters"], "mlcube.parameters", folder=False) if "parameters" in table else None
    extra = (_beside(manifest, table["additional_files"], "mlcube.additional_files", folder=True)
             if "additional_files" in table else None)
    from harness.intake import load_yaml

    parsed = load_yaml(config)  # bounded: size, tokens, depth; no anchors or aliases
    task = ((parsed or {}).get("tasks") or {}).get("infer") if isinstance(parsed, dict) else None
    if not isinstance(task, dict):
        raise SpecError(f"{config}: no `tasks: infer:`; a model container declares the infer task")
    if "input_volumes" in task or "output_volumes" in task or "container_type" in parsed:
        return _medperf(task, config, manifest, parameters, extra)
    workspace = (_beside(manifest, table["workspace"], "mlcube.workspace", folder=True) if "workspace" in table
                 else config.parent / "workspace")
    return _legacy_mlcube(task, config, manifest, parameters, workspace)


def _medperf(task: dict[str, Any], config: Path, manifest: Path, parameters: Path | None,
             extra: Path | None) -> MLCubeOptions:
    """MedPerf's container_config.yaml: each volume at its own mount_path; run_args may set the command."""
    volumes = {**(task.get("input_volumes") or {}), **(task.get("output_volumes") or {})}
    for name, volume in volumes.items():
        if not isinstance(volume, dict) or "mount_path" not in volume or volume.get("type") not in ("file", "directory"):
            raise SpecError(f"{config}: volume {name!r} needs mount_path and type (file or directory)")
        if name not in _HARNESS_VOLUMES:
            raise SpecError(f"{config}: infer volume {name!r} is not one the harness supplies "
                            f"({', '.join(sorted(_HARNESS_VOLUMES))}); remove it or ship it inside the image")
    for needed in ("data_path", "output_path"):
        if needed not in volumes:
            raise SpecError(f"{config}: the infer task has no {needed} volume; declare it")
    targets = [str(v["mount_path"]) for v in volumes.values()]
    for name, target in zip(volumes, targets, strict=True):
        parts = Path(target).parts
        if not target.startswith("/") or ".." in parts or len(parts) < 2 or parts[1] in _RESERVED_TOP:
            raise SpecError(f"{config}: volume {name!r} mount_path {target!r}; mount under a folder of its own, such "
                            "as /mlcommons/volumes/<name> (not /, /tmp, /proc, /sys, /dev, /etc)")
        if targets.count(target) > 1:
            raise SpecError(f"{config}: mount_path {target!r} is given twice; give each volume its own")
    mounts: list[Mount] = []
    if "parameters_file" in volumes:
        if parameters is None:
            raise SpecError(f"{manifest}: {config.name} mounts parameters_file; give key 'mlcube.parameters' (the file)")
        mounts.append(Mount(parameters, str(volumes["parameters_file"]["mount_path"])))
    if "additional_files" in volumes:
        if extra is None:
            raise SpecError(f"{manifest}: {config.name} mounts additional_files; give key 'mlcube.additional_files' "
                            "(a folder)")
        mounts.append(Mount(extra, str(volumes["additional_files"]["mount_path"])))
    run_args = task.get("run_args") or {}
    if not isinstance(run_args, dict):
        raise SpecError(f"{config}: run_args must be a mapping")
    unknown = sorted(set(run_args) - {"command", "entrypoint", "environment", "shm_size", "gpus"})
    if unknown:
        raise SpecError(f"{config}: run_args.{unknown[0]} is not allowed (MedPerf allows command, entrypoint, "
                        "environment, shm_size, gpus)")
    env = run_args.get("environment") or {}
    if not isinstance(env, dict):
        raise SpecError(f"{config}: run_args.environment must be a mapping")
    return MLCubeOptions(config=config, style="medperf", data_mount=str(volumes["data_path"]["mount_path"]),
                         output_mount=str(volumes["output_path"]["mount_path"]), mounts=tuple(mounts),
                         command=_argv(run_args.get("command"), config, "command"),
                         entrypoint=_argv(run_args.get("entrypoint"), config, "entrypoint"),
                         environment=tuple((str(k), str(v)) for k, v in env.items()))


def _argv(value: Any, config: Path, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SpecError(f"{config}: run_args.{key} = {value!r}; use a string or a list of strings")


def _legacy_mlcube(task: dict[str, Any], config: Path, manifest: Path, parameters: Path | None,
                   workspace: Path) -> MLCubeOptions:
    """MLCube's own runner: every parameter mounted at /mlcube_io<N> in order (inputs, then outputs;
    a file through its folder) and passed as `--name=<path>` after the task name."""
    params = task.get("parameters") or {}
    inputs, outputs = params.get("inputs") or {}, params.get("outputs") or {}
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise SpecError(f"{config}: tasks.infer.parameters.inputs and .outputs must be mappings")
    if "data_path" not in inputs or "output_path" not in outputs:
        raise SpecError(f"{config}: the infer task needs inputs.data_path and outputs.output_path")
    args: list[str] = []
    mounts: list[Mount] = []
    data_mount = output_mount = ""
    index = 0
    for name, value in [*inputs.items(), *outputs.items()]:
        default = value.get("default") if isinstance(value, dict) else value
        kind = value.get("type") if isinstance(value, dict) else None
        if not isinstance(default, str):
            raise SpecError(f"{config}: parameter {name!r} has no path; give one")
        kind = kind or ("directory" if name in ("data_path", "output_path") or default.endswith("/") else "file")
        target = f"/mlcube_io{index}"
        index += 1
        if name == "data_path":
            data_mount = target
            args.append(f"--{name}={target}")
        elif name == "output_path":
            output_mount = target
            args.append(f"--{name}={target}")
        elif name == "parameters_file":
            if parameters is None:
                raise SpecError(f"{manifest}: {config.name} passes parameters_file; give key 'mlcube.parameters' (the file)")
            mounts.append(Mount(parameters.parent, target))
            args.append(f"--{name}={target}/{parameters.name}")
        else:  # weights and other workspace inputs, read-only from the workspace beside the config
            from harness.intake import SubmissionError, confined, context_files

            try:
                host = confined(workspace, default, key=f"tasks.infer.parameters.inputs.{name}", where=config)
            except SubmissionError:
                raise SpecError(f"{config}: input {name!r} = {default!r} is not in the workspace {workspace}; put it "
                                "there") from None
            if not host.is_relative_to(manifest.parent) or not host.exists():
                raise SpecError(f"{config}: input {name!r} = {default!r} is not in the workspace {workspace}; put it there")
            context_files(host if host.is_dir() else host.parent)  # mounted: regular files only, no link of any kind
            if kind == "file":
                mounts.append(Mount(host.parent, target))
                args.append(f"--{name}={target}/{host.name}")
            else:
                mounts.append(Mount(host, target))
                args.append(f"--{name}={target}")
    return MLCubeOptions(config=config, style="mlcube", data_mount=data_mount, output_mount=output_mount,
                         mounts=tuple(mounts), command=("infer", *args), entrypoint=None)


def option_files(options: ContractOptions) -> list[Path]:
    """The files a contract's options read (their bytes are part of the manifest as it runs)."""
    if isinstance(options, MLCubeOptions):
        return [options.config, *(m.host for m in options.mounts if m.host.is_file())]
    return []


# --- runs --------------------------------------------------------------------------------------


def launch(contract: str, options: ContractOptions, *, probabilities: bool) -> Launch:
    """How the container starts under `contract`."""
    if contract == "flare":
        return Launch("/workspace/inputs", "/workspace/outputs", input_writable=True, own_user=True,
                      command=("/bin/bash", "-c", "sh predict.sh"))
    if isinstance(options, GrandChallengeOptions):
        mounts = (Mount(options.model, "/opt/ml/model"),) if options.model is not None else ()
        return Launch("/input", "/output", mounts=mounts)
    if isinstance(options, MLCubeOptions):
        return Launch(options.data_mount, options.output_mount, command=options.command, entrypoint=options.entrypoint,
                      mounts=options.mounts, environment=options.environment)
    if isinstance(options, NnUNetOptions):
        command = ("-i", "/input", "-o", "/output", *options.arguments, *(("--save_probabilities",) if probabilities else ()))
        return Launch("/input", "/output", command=command, entrypoint=options.entrypoint)
    return Launch("/input", "/output")


def stage_input(options: ContractOptions, case_id: str, image_file: Path, input_dir: Path) -> None:
    """Move the staged `<case>_0000.nii.gz` into the contract's form (grand-challenge: an .mha under
    images/<slug>/ named by a fresh UUID, and inputs.json); other contracts keep it as it is."""
    if not isinstance(options, GrandChallengeOptions):
        return
    from harness.data.nifti import read_volume, write_itk

    data, grid = read_volume(image_file)
    name = f"{uuid.uuid4()}.mha"
    folder = input_dir / options.input_path
    folder.mkdir(parents=True)
    write_itk(folder / name, np.asarray(data), grid)
    image_file.unlink()
    sockets = [{"pk": 1, "interface": {"title": options.input_slug.replace("-", " ").capitalize(),
                                       "slug": options.input_slug, "kind": "Image", "super_kind": "Image",
                                       "relative_path": options.input_path},
                "value": None, "file": None, "image": {"pk": name[:-4], "name": name}}]
    (input_dir / "inputs.json").write_text(json.dumps(sockets, indent=2) + "\n", encoding="utf-8")


def keep(options: ContractOptions, case_id: str, native: list[str], *, probabilities: bool) -> list[str]:
    """The output paths (relative to the output mount) that the runner copies out; `dir/*` is any
    file directly in `dir` (the first few: more than one is already a violation)."""
    if isinstance(options, GrandChallengeOptions):
        return [f"{options.output_path}/*"]
    if isinstance(options, NnUNetOptions):
        return [f"{case_id}.nii.gz", *((f"{case_id}.npz",) if probabilities else ())]
    return native


@dataclass(frozen=True)
class Collected:
    """The outputs in the harness's own layout, and how to name them in the container's terms."""

    folder: Path  # holds <case>.nii.gz (and probabilities/) for the checks
    aliases: dict[str, str]  # "/output/<native path>" -> the path the container wrote
    consumed: frozenset[str]  # paths under the output folder that were read (not reported as extra)
    root: Path  # the output folder the container wrote


def collect(options: ContractOptions, *, case: Case, profile: Profile, output_dir: Path, native_dir: Path,
            probabilities: bool) -> Collected:
    """The contract's outputs in the harness's layout (in `native_dir` when they need converting);
    raises InvalidOutput naming the container's own path and the fix."""
    if isinstance(options, GrandChallengeOptions):
        return _collect_grand_challenge(options, case, output_dir, native_dir)
    if isinstance(options, NnUNetOptions):
        return _collect_nnunet(options, case, profile, output_dir, native_dir, probabilities=probabilities)
    return Collected(output_dir, {}, frozenset(), output_dir)


def _regular(path: Path, shown: str) -> bool:
    """Whether `path` is a regular file; a symbolic link is refused (never followed)."""
    from harness.runner.outputs import InvalidOutput

    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise InvalidOutput(f"{shown}: symbolic link (never followed); write a regular file")
    return stat.S_ISREG(info.st_mode)


def _collect_grand_challenge(options: GrandChallengeOptions, case: Case, output_dir: Path,
                             native_dir: Path) -> Collected:
    import nibabel as nib

    from harness.data.nifti import read_grid, read_label
    from harness.runner.outputs import InvalidOutput
    from harness.safetext import safe_text

    shown_dir = f"/output/{options.output_path}/"
    folder = output_dir / options.output_path
    if folder.is_symlink():
        raise InvalidOutput(f"{shown_dir}: symbolic link (never followed); write into the folder itself")
    found = sorted(os.fsdecode(n) for n in os.listdir(os.fsencode(folder))) if folder.is_dir() else []
    images = [n for n in found if n.lower().endswith(IMAGE_SUFFIXES_GC)]
    if not images:
        present = [safe_text(n, limit=80) for n in found[:5]] or _top_level(output_dir)
        raise InvalidOutput(f"no image in {shown_dir} (found: {', '.join(present) or 'nothing'}); write exactly one "
                            f".mha there (the output socket '{options.output_slug}')")
    if len(images) > 1:
        raise InvalidOutput(f"{shown_dir} holds {len(images)} images ({', '.join(safe_text(n, limit=60) for n in images[:4])}); "
                            "write exactly one")
    name = images[0]
    written, shown = folder / name, f"{shown_dir}{safe_text(name, limit=120)}"
    if not _regular(written, shown):
        raise InvalidOutput(f"{shown}: not a regular file; write the image itself")
    image_grid = read_grid(case.image) if case.image is not None else None
    try:
        check_itk_output(written, shown, image_grid.shape if image_grid is not None else None)
        data, grid = read_label(written)
    except CaseError as exc:
        raise InvalidOutput(str(exc).replace(str(written), shown)) from None
    native_dir.mkdir(exist_ok=True)
    out = nib.Nifti1Image(np.asarray(data), grid.affine)
    out.header.set_zooms(grid.spacing_mm[:3])
    nib.save(out, native_dir / f"{case.case_id}.nii.gz")
    return Collected(native_dir, {f"/output/{case.case_id}.nii.gz": shown}, frozenset({f"{options.output_path}/{name}"}), output_dir)


MHA_HEADER_LIMIT = 64 * 1024


def check_itk_output(path: Path, shown: str, shape: tuple[int, ...] | None) -> None:
    """Refuse, from the header alone, an image output that would read anything but its own voxels
    or more of them than the input has: an .mha must hold its data (`ElementDataFile = LOCAL`, never
    a path on the host, a list or a pattern) and every output must be one scalar 3D volume of the
    input's shape."""
    import SimpleITK as sitk

    from harness.runner.outputs import InvalidOutput

    if path.name.lower().endswith(".mha"):
        with path.open("rb") as handle:
            head = handle.read(MHA_HEADER_LIMIT)
        source = metaimage_data_file(head)
        if source is None:
            raise InvalidOutput(f"{shown}: no MetaImage header (no ElementDataFile in its first 64 KiB); write an .mha")
        if source != "LOCAL":
            raise InvalidOutput(f"{shown}: ElementDataFile = {_elided(source, 80)!r} points outside the file; write the "
                                "voxels into the .mha (ElementDataFile = LOCAL)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InvalidOutput(f"{shown}: not a readable image ({' '.join(str(exc).split())[:160]}); write an .mha") from None
    size = tuple(int(n) for n in reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise InvalidOutput(f"{shown}: {reader.GetNumberOfComponents()} components per voxel; write one label per voxel")
    if shape is not None and size != tuple(shape):
        raise InvalidOutput(f"{shown}: shape {size} differs from the input image {tuple(shape)}; write the "
                            "segmentation on the input's grid")


_META_FIELD = re.compile(r"^\s*([^=:]*?)\s*[=:][=:\s]*(.*?)\s*$")


def metaimage_data_file(head: bytes) -> str | None:
    """The value of a MetaImage header's ElementDataFile, read as ITK's MetaIO reads a header: a
    field name, then `=` or `:` (either, and both), then the value; the header ends at the first
    ElementDataFile. Field names are compared without case, so no spelling hides a second one."""
    for line in head.split(b"\n"):
        found = _META_FIELD.match(line.decode("latin-1"))
        if found is None:
            return None
        if found.group(1).lower() == "elementdatafile":
            return found.group(2)
    return None


def _top_level(output_dir: Path) -> list[str]:
    from harness.safetext import safe_text

    try:
        return [safe_text(os.fsdecode(n), limit=80) for n in sorted(os.listdir(os.fsencode(output_dir)))[:5]]
    except OSError:
        return []


NPZ_MEMBER = "probabilities.npy"


def _collect_nnunet(options: NnUNetOptions, case: Case, profile: Profile, output_dir: Path, native_dir: Path, *,
                    probabilities: bool) -> Collected:
    import nibabel as nib

    from harness.data.nifti import read_grid
    from harness.layout import PROBABILITY_DIR
    from harness.runner.outputs import InvalidOutput

    label = f"{case.case_id}.nii.gz"
    native_dir.mkdir(exist_ok=True)
    consumed = {label}
    if _regular(output_dir / label, f"/output/{label}"):
        _link_or_copy(output_dir / label, native_dir / label)
    if not probabilities:
        return Collected(native_dir, {}, frozenset(consumed), output_dir)
    npz, shown = output_dir / f"{case.case_id}.npz", f"/output/{case.case_id}.npz"
    if not _regular(npz, shown):
        raise InvalidOutput(f"no {shown} (the manifest declares probabilities; nnU-Net writes it with "
                            "--save_probabilities); write it")
    consumed.add(npz.name)
    assert case.image is not None
    grid = read_grid(case.image)
    spatial = tuple(reversed(grid.shape)) if options.probability_axes == "zyx" else tuple(grid.shape)
    needed = max(o.label for o in profile.organs) + 1
    try:
        with zipfile.ZipFile(npz) as archive:
            info = archive.getinfo(NPZ_MEMBER)
            if info.file_size > 256 * 8 * int(np.prod(spatial)) + 4096:  # before anything is inflated
                raise InvalidOutput(f"{shown}: 'probabilities' is larger than 256 channels of float64; write "
                                    "one channel per label")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = read_header(member)  # the header alone, before any voxel
                if len(shape) != 4 or tuple(shape[1:]) != spatial or shape[0] < needed:
                    raise InvalidOutput(f"{shown}: 'probabilities' has shape {tuple(shape)}; expected (channels >= "
                                        f"{needed}, {', '.join(map(str, spatial))}) (channels first, axes "
                                        f"{options.probability_axes}, as nnU-Net writes them)")
                if dtype.kind != "f" or fortran_order:
                    raise InvalidOutput(f"{shown}: 'probabilities' has dtype {dtype}"
                                        f"{' in Fortran order' if fortran_order else ''}; write float probabilities "
                                        "(C order, as numpy.savez writes them)")
                # only the channels the profile scores are read: a file of many channels costs no more
                wanted = needed * int(np.prod(spatial)) * dtype.itemsize
                data = member.read(wanted)
                if len(data) != wanted:
                    raise InvalidOutput(f"{shown}: 'probabilities' ends before its header's shape; write it again")
                array = np.frombuffer(data, dtype=dtype).reshape((needed, *spatial))
    except KeyError:
        raise InvalidOutput(f"{shown}: no array 'probabilities' in it; save it as np.savez(..., probabilities=...)") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InvalidOutput(f"{shown}: not a readable .npz ({type(exc).__name__}); write it with numpy.savez") from None
    folder = native_dir / PROBABILITY_DIR
    folder.mkdir(exist_ok=True)
    for organ in profile.organs:
        channel = array[organ.label]
        if options.probability_axes == "zyx":
            channel = channel.transpose(2, 1, 0)
        if not np.all(np.isfinite(channel)) or channel.min(initial=0) < 0 or channel.max(initial=0) > 1:
            raise InvalidOutput(f"{shown}: channel {organ.label} ({organ.name}) holds values outside [0, 1] or NaN; "
                                "write probabilities")
        quantised = np.rint(channel.astype(np.float64) * 255).astype(np.uint8)
        nib.save(nib.Nifti1Image(quantised, grid.affine), folder / f"{organ.name}.nii.gz")
    return Collected(native_dir, {}, frozenset(consumed), output_dir)


def map_outputs(collected: Collected, *, case: Case, source: Profile, target: Profile, probabilities: bool,
                native_dir: Path) -> tuple[Collected, str]:
    """The collected outputs renumbered from the algorithm's label system (`source`) to the
    challenge's (`target`) by organ name (`map_labels = true`): a label value of an organ the
    challenge lacks becomes background; a challenge organ the algorithm lacks gets no voxels and a
    zero probability map. Returns the mapped outputs and a one-line description of the mapping."""
    import nibabel as nib

    from harness.data.nifti import check_labels, check_untrusted_header, read_grid, read_label
    from harness.layout import PROBABILITY_DIR
    from harness.profiles.mapping import LabelMap
    from harness.runner.outputs import InvalidOutput

    mapping = LabelMap(source, target)
    described = f"{source.name} -> {target.name}: {len(mapping.shared)} organs mapped by name"
    if mapping.only_source:
        described += f"; not the challenge's (background): {', '.join(mapping.only_source)}"
    if mapping.only_target:
        described += f"; never predicted (scored as missed): {', '.join(mapping.only_target)}"
    label = collected.folder / f"{case.case_id}.nii.gz"
    if not _regular(label, f"/output/{label.name}"):
        return collected, described  # the checks report it missing
    assert case.image is not None
    grid = read_grid(case.image)
    try:
        check_untrusted_header(label, grid.shape)  # before any voxel
        data, _ = read_label(label)
        check_labels(label, data, source)  # its own numbering, before it is mapped
    except CaseError as exc:
        raise InvalidOutput(str(exc).replace(str(collected.folder) + os.sep, "/output/")) from None
    native_dir.mkdir(exist_ok=True)
    original = nib.load(label)
    mapped = nib.Nifti1Image(mapping.apply(data), original.affine, original.header)  # type: ignore[attr-defined]
    mapped.set_data_dtype(np.uint8)
    nib.save(mapped, native_dir / label.name)
    own = collected.folder == collected.root  # the container's own files: read here, so not extras
    consumed = set(collected.consumed) | ({label.name} if own else set())
    if probabilities:
        (native_dir / PROBABILITY_DIR).mkdir(exist_ok=True)
        names = {o.name for o in source.organs}
        for organ in source.organs:
            if own:
                consumed.add(f"{PROBABILITY_DIR}/{organ.name}.nii.gz")
        for organ in target.organs:
            written = collected.folder / PROBABILITY_DIR / f"{organ.name}.nii.gz"
            if organ.name not in names:
                nib.save(nib.Nifti1Image(np.zeros(grid.shape, np.uint8), grid.affine),
                         native_dir / PROBABILITY_DIR / written.name)
            elif _regular(written, f"/output/{PROBABILITY_DIR}/{written.name}"):
                _link_or_copy(written, native_dir / PROBABILITY_DIR / written.name)
    return Collected(native_dir, collected.aliases, frozenset(consumed), collected.root), described


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copyfile(source, target)


def ignored_extras(options: ContractOptions, case_id: str) -> frozenset[str]:
    """Files a contract's tool writes beside its outputs by design: neither kept nor reported."""
    if isinstance(options, NnUNetOptions):
        return frozenset({*NNUNET_SIDE_FILES, f"{case_id}.pkl"})
    return frozenset()
