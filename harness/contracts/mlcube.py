"""MLCube: MedPerf's `container_config.yaml` (volumes at their `mount_path`) or a legacy
`mlcube.yaml` (`/mlcube_io<N>` mounts numbered as MLCube's own runner numbers them, and
`infer --data_path=... --parameters_file=... --output_path=...`); the case at `data_path` (in a
folder of its own, `<case>/<case>_0000.nii.gz`, for a legacy cube, as FeTS's model cubes read it;
flat for MedPerf's; `case_layout` says otherwise), predictions in `output_path`; host user.

The config's `docker: image:` (or MedPerf's `image:`) is a name the submission chose: it is never
looked up (any local image could carry it); the image is the manifest's `dockerfile`, pinned
`image` or `archive`, and `harness check` says so."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.contracts.base import Contract, Launch, Mount, allowed_keys, beside, extracted_tarball, is_tarball, text_value
from harness.errors import SpecError


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
    case_layout: str = "flat"  # "folder": data_path/<case>/<case>_0000.nii.gz; "flat": data_path/<case>_0000.nii.gz
    declared_image: str = ""  # the config's image name: shown, never used
    tarball: Path | None = None  # MedPerf's additional_files.tar.gz as given (its bytes: the manifest's identity)


class MLCube(Contract):
    name = "mlcube"
    annotators = False
    table = "mlcube"

    def parse_options(self, table: dict[str, Any], manifest: Path) -> MLCubeOptions:
        return parse_mlcube(table, manifest)

    def option_files(self, options: MLCubeOptions) -> list[Path]:
        return [options.config, *(m.host for m in options.mounts if m.host is not None and m.host.is_file()),
                *((options.tarball,) if options.tarball is not None else ())]

    def notes(self, options: MLCubeOptions) -> list[str]:
        if not options.declared_image:
            return []
        return [f"{options.config.name} names the image {options.declared_image!r}: not used (a name is never looked "
                "up: any local image could carry it); the image is the manifest's dockerfile, pinned image or archive"]

    def stage_input(self, options: MLCubeOptions, case_id: str, image_file: Path, input_dir: Path) -> None:
        if options.case_layout == "folder":
            (input_dir / case_id).mkdir()
            image_file.rename(input_dir / case_id / image_file.name)

    def launch(self, options: MLCubeOptions, *, probabilities: bool) -> Launch:
        return Launch(options.data_mount, options.output_mount, command=options.command, entrypoint=options.entrypoint,
                      mounts=options.mounts, environment=options.environment)


_HARNESS_VOLUMES = {"data_path", "parameters_file", "additional_files", "output_path"}
_RESERVED_TOP = {"tmp", "proc", "sys", "dev", "etc"}  # the sandbox's own, or the container's system


def parse_mlcube(table: dict[str, Any], manifest: Path) -> MLCubeOptions:
    where = "mlcube"
    allowed_keys(table, {"config", "parameters", "additional_files", "workspace", "case_layout"}, where, manifest)
    if "config" not in table:
        raise SpecError.of(manifest, "key 'mlcube.config' is missing; give the container_config.yaml (MedPerf) or "
                        "mlcube.yaml beside the manifest")
    config = beside(manifest, table["config"], "mlcube.config", folder=False)
    parameters = beside(manifest, table["parameters"], "mlcube.parameters", folder=False) if "parameters" in table else None
    extra = given = None
    if "additional_files" in table:  # a folder, or MedPerf's additional_files.tar.gz (extracted by the harness)
        given = beside(manifest, table["additional_files"], "mlcube.additional_files", folder=False) if (
            isinstance(table["additional_files"], str) and is_tarball(Path(table["additional_files"]))) else None
        extra = (extracted_tarball(given, "mlcube.additional_files", manifest) if given is not None
                 else beside(manifest, table["additional_files"], "mlcube.additional_files", folder=True))
    from harness.intake import load_yaml

    parsed = load_yaml(config)  # bounded: size, tokens, depth; no anchors or aliases
    task = ((parsed or {}).get("tasks") or {}).get("infer") if isinstance(parsed, dict) else None
    if not isinstance(task, dict):
        raise SpecError.of(config, "no `tasks: infer:`; a model container declares the infer task")
    medperf = "input_volumes" in task or "output_volumes" in task or "container_type" in parsed
    layout = text_value(table, "case_layout", "flat" if medperf else "folder", where, manifest)
    if layout not in ("folder", "flat"):
        raise SpecError.of(manifest, f"key 'mlcube.case_layout' = {layout!r}; use \"folder\" (data_path/<case>/"
                        "<case>_0000.nii.gz) or \"flat\" (data_path/<case>_0000.nii.gz)")
    docker = parsed.get("docker")
    image = parsed.get("image") if medperf else docker.get("image") if isinstance(docker, dict) else None
    declared = image if isinstance(image, str) else ""
    if medperf:
        options = _medperf(task, config, manifest, parameters, extra)
    else:
        workspace = (beside(manifest, table["workspace"], "mlcube.workspace", folder=True) if "workspace" in table
                     else config.parent / "workspace")
        options = _legacy_mlcube(task, config, manifest, parameters, workspace)
    return replace(options, case_layout=layout, declared_image=declared, tarball=given if extra is not None else None)


def _medperf(task: dict[str, Any], config: Path, manifest: Path, parameters: Path | None,
             extra: Path | None) -> MLCubeOptions:
    """MedPerf's container_config.yaml: each volume at its own mount_path; run_args may set the command."""
    volumes = {**(task.get("input_volumes") or {}), **(task.get("output_volumes") or {})}
    for name, volume in volumes.items():
        if not isinstance(volume, dict) or "mount_path" not in volume or volume.get("type") not in ("file", "directory"):
            raise SpecError.of(config, f"volume {name!r} needs mount_path and type (file or directory)")
        if name not in _HARNESS_VOLUMES:
            raise SpecError.of(config, f"infer volume {name!r} is not one the harness supplies "
                            f"({', '.join(sorted(_HARNESS_VOLUMES))}); remove it or ship it inside the image")
    for needed in ("data_path", "output_path"):
        if needed not in volumes:
            raise SpecError.of(config, f"the infer task has no {needed} volume; declare it")
    targets = [str(v["mount_path"]) for v in volumes.values()]
    for name, target in zip(volumes, targets, strict=True):
        parts = Path(target).parts
        if not target.startswith("/") or ".." in parts or len(parts) < 2 or parts[1] in _RESERVED_TOP:
            raise SpecError.of(config, f"volume {name!r} mount_path {target!r}; mount under a folder of its own, such "
                            "as /mlcommons/volumes/<name> (not /, /tmp, /proc, /sys, /dev, /etc)")
        if targets.count(target) > 1:
            raise SpecError.of(config, f"mount_path {target!r} is given twice; give each volume its own")
    mounts: list[Mount] = []
    if "parameters_file" in volumes:
        if parameters is None:
            raise SpecError.of(manifest, f"{config.name} mounts parameters_file; give key 'mlcube.parameters' (the file)")
        mounts.append(Mount(parameters, str(volumes["parameters_file"]["mount_path"])))
    if "additional_files" in volumes:
        if extra is None:
            raise SpecError.of(manifest, f"{config.name} mounts additional_files; give key 'mlcube.additional_files' "
                            "(a folder)")
        mounts.append(Mount(extra, str(volumes["additional_files"]["mount_path"])))
    run_args = task.get("run_args") or {}
    if not isinstance(run_args, dict):
        raise SpecError.of(config, "run_args must be a mapping")
    unknown = sorted(set(run_args) - {"command", "entrypoint", "environment", "shm_size", "gpus"})
    if unknown:
        raise SpecError.of(config, f"run_args.{unknown[0]} is not allowed (MedPerf allows command, entrypoint, "
                        "environment, shm_size, gpus)")
    env = run_args.get("environment") or {}
    if not isinstance(env, dict):
        raise SpecError.of(config, "run_args.environment must be a mapping")
    return MLCubeOptions(config=config, style="medperf", data_mount=str(volumes["data_path"]["mount_path"]),
                         output_mount=str(volumes["output_path"]["mount_path"]), mounts=tuple(mounts),
                         command=_argv(run_args.get("command"), config, "run_args.command"),
                         entrypoint=_argv(run_args.get("entrypoint"), config, "run_args.entrypoint"),
                         environment=tuple((str(k), str(v)) for k, v in env.items()))


def _argv(value: Any, config: Path, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SpecError.of(config, f"{key} = {value!r}; use a string or a list of strings")


def _legacy_mlcube(task: dict[str, Any], config: Path, manifest: Path, parameters: Path | None,
                   workspace: Path) -> MLCubeOptions:
    """MLCube's own Docker runner (mlcube/shell.py, generate_mounts_and_args): each parameter, inputs
    then outputs, resolves against the workspace; a file is mounted through its folder; each distinct
    host folder gets the next `/mlcube_io<N>` (two parameters in one folder share its mount) and is
    passed as `--name=<path>` after the task name. A parameter without a type is a folder when its
    path ends in '/', else whatever the workspace holds there. A folder the workspace does not hold
    (FeTS's `parameters_file: {type: file, default: "null"}`: MLCube makes the folder and the cube
    finds no file) is an empty read-only folder. `data_path` is the case, `output_path` the run's
    output; `parameters_file` is the manifest's `mlcube.parameters` when given (as `mlcube run
    parameters_file=...` would pass it). A task `entrypoint` replaces the image's, without the task
    name, as MLCube runs it."""
    import os

    from harness.intake import SubmissionError, confined, context_files, shown

    params = task.get("parameters") or {}
    inputs, outputs = params.get("inputs") or {}, params.get("outputs") or {}
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise SpecError.of(config, "tasks.infer.parameters.inputs and .outputs must be mappings")
    if "data_path" not in inputs or "output_path" not in outputs:
        raise SpecError.of(config, "the infer task needs inputs.data_path and outputs.output_path")
    args: list[str] = ["infer"]
    folders: dict[Path, str] = {}  # MLCube's host folder -> its /mlcube_io<N>
    sources: dict[Path, Path | None] = {}  # the folder -> what the harness mounts there (None: empty)
    data_key = output_key = None
    for io, name, value in [*(("input", n, v) for n, v in inputs.items()), *(("output", n, v) for n, v in outputs.items())]:
        where = f"tasks.infer.parameters.{io}s.{name}"
        default = value.get("default", name) if isinstance(value, dict) else value
        kind = (value.get("type") if isinstance(value, dict) else None) or "unknown"
        if not isinstance(default, str) or not default.strip() or kind not in ("file", "directory", "unknown"):
            raise SpecError.of(config, f"{where} = {value!r}; give a path and a type (file or directory)")
        if kind == "unknown" and default.endswith(("/", "\\")):
            kind = "directory"
        if name == "parameters_file" and parameters is not None:
            host, kind = parameters, "file"
        else:
            if os.path.isabs(default) or default.startswith(("~", "$")) or "$" in default:
                raise SpecError.of(config, f"{where} = {default!r} is a host path; give a path inside the workspace "
                                "(the harness mounts nothing else)")
            try:
                host = confined(workspace, default.rstrip("/"), key=where, where=config)
            except SubmissionError as exc:
                raise SpecError(str(exc)) from None
        if name in ("data_path", "output_path"):
            if kind == "file":
                raise SpecError.of(config, f"{where} has type file; the harness gives {name} a folder")
            kind = "directory"
        elif kind == "unknown":
            if io == "output":
                raise SpecError.of(config, f"{where} has no type; give type: file or directory (MLCube requires one for "
                                "outputs)")
            kind = "directory" if host.is_dir() else "file" if host.is_file() else ""
            if not kind:
                raise SpecError.of(config, f"{where} = {default!r} has no type and the workspace {shown(workspace)} "
                                "holds nothing there; give type: file or directory")
        folder = host if kind == "directory" else host.parent
        target = folders.setdefault(folder, f"/mlcube_io{len(folders)}")
        args.append(f"--{name}={target}" if kind == "directory" else f"--{name}={target}/{host.name}")
        if name == "data_path":
            data_key = folder
        elif name == "output_path":
            output_key = folder
        elif folder not in sources:
            if folder.is_dir():
                try:
                    context_files(folder)  # mounted: regular files only, no link of any kind
                except SubmissionError as exc:
                    raise SpecError.of(config, f"{where}: {exc}") from None
                sources[folder] = folder
            else:
                sources[folder] = None
    if data_key == output_key:
        raise SpecError.of(config, "data_path and output_path are one folder; give each its own")
    mounts = tuple(Mount(source, folders[folder]) for folder, source in sources.items()
                   if folder not in (data_key, output_key))
    assert data_key is not None and output_key is not None
    command: tuple[str, ...] = tuple(args)
    entrypoint: tuple[str, ...] | None = None
    if task.get("entrypoint"):
        words = _argv(task["entrypoint"], config, "tasks.infer.entrypoint")
        assert words is not None
        entrypoint, command = words[:1], (*words[1:], *args[1:])
    return MLCubeOptions(config=config, style="mlcube", data_mount=folders[data_key], output_mount=folders[output_key],
                         mounts=mounts, command=command, entrypoint=entrypoint)
