"""MLCube: MedPerf's `container_config.yaml` (volumes at their `mount_path`) or a legacy
`mlcube.yaml` (`/mlcube_io<N>` mounts and `infer --data_path=... --parameters_file=...
--output_path=...`); the case folder is `data_path`, predictions in `output_path`; host user."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.contracts.base import Contract, Launch, Mount, allowed_keys, beside
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


class MLCube(Contract):
    name = "mlcube"
    annotators = False
    table = "mlcube"

    def parse_options(self, table: dict[str, Any], manifest: Path) -> MLCubeOptions:
        return parse_mlcube(table, manifest)

    def option_files(self, options: MLCubeOptions) -> list[Path]:
        return [options.config, *(m.host for m in options.mounts if m.host.is_file())]

    def launch(self, options: MLCubeOptions, *, probabilities: bool) -> Launch:
        return Launch(options.data_mount, options.output_mount, command=options.command, entrypoint=options.entrypoint,
                      mounts=options.mounts, environment=options.environment)


_HARNESS_VOLUMES = {"data_path", "parameters_file", "additional_files", "output_path"}
_RESERVED_TOP = {"tmp", "proc", "sys", "dev", "etc"}  # the sandbox's own, or the container's system


def parse_mlcube(table: dict[str, Any], manifest: Path) -> MLCubeOptions:
    where = "mlcube"
    allowed_keys(table, {"config", "parameters", "additional_files", "workspace"}, where, manifest)
    if "config" not in table:
        raise SpecError(f"{manifest}: key 'mlcube.config' is missing; give the container_config.yaml (MedPerf) or "
                        "mlcube.yaml beside the manifest")
    config = beside(manifest, table["config"], "mlcube.config", folder=False)
    parameters = beside(manifest, table["parameters"], "mlcube.parameters", folder=False) if "parameters" in table else None
    extra = (beside(manifest, table["additional_files"], "mlcube.additional_files", folder=True)
             if "additional_files" in table else None)
    from harness.intake import load_yaml

    parsed = load_yaml(config)  # bounded: size, tokens, depth; no anchors or aliases
    task = ((parsed or {}).get("tasks") or {}).get("infer") if isinstance(parsed, dict) else None
    if not isinstance(task, dict):
        raise SpecError(f"{config}: no `tasks: infer:`; a model container declares the infer task")
    if "input_volumes" in task or "output_volumes" in task or "container_type" in parsed:
        return _medperf(task, config, manifest, parameters, extra)
    workspace = (beside(manifest, table["workspace"], "mlcube.workspace", folder=True) if "workspace" in table
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
