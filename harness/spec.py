"""Algorithm manifests: `algorithms/<name>/algorithm.toml`, validated on load, never imported.

    name = "classical"                      # [a-z0-9][a-z0-9-]*, also the image name
    version = "0.1.0"
    kind = "segmenter"                      # segmenter | annotator
    dockerfile = "dockerfiles/classical.Dockerfile"   # relative to the folder above the algorithms'
                                            # folder (the repository root for algorithms/<name>/); or, for a
                                            # prebuilt image, one of:
                                            #   image = "team/seg:v1@sha256:<64 hex>" (pinned)
                                            #   archive = "team.tar.gz" (`docker save`, beside this file)
    profile = "flare22"                     # the label system of its outputs (must be the challenge's,
    map_labels = false                      # unless this says to map them onto it by organ name)
    writes_probabilities = true
    gpu = "none"                            # none | optional | required
    contract = "harness"                    # harness | flare | grand-challenge | mlcube | nnunet, with
                                            # a table of its own for the last three (harness.contracts)

    [resources]
    memory = "4g"                           # memory = memory + swap limit
    shm = "256m"                            # /dev/shm size
    tmp = "1g"                              # size of the tmpfs on /tmp
    output = "2g"                           # the run is killed when /output grows past this
    output_files = 1000                     # files and folders it may write under /output
    time_limit_s = 600                      # killed and recorded as `timeout` after this
    pids = 256                              # process/thread limit
    cpus = 2                                # CPU time limit, in CPUs (default: the challenge's cap)

Every [resources] value is capped by the challenge (`harness.challenge.Limits`): a manifest may ask
for less, never more.

    [local]                                 # optional: how the local runner starts it
    command = ["{python}", "predict.py", "{input}", "{output}"]

A problem is a `ManifestError` naming the file, the key, the bad value and the fix; it carries the
manifest and its declared kind as fields.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.contracts import ContractOptions, contract_names, contract_of, parse_options
from harness.contracts.base import is_tarball
from harness.errors import SpecError
from harness.intake import FILES_TARBALL_BYTES, MANIFEST_BYTES, PARAMETERS_BYTES, confined, parse_toml, read_file, sha256_file
from harness.models import GpuMode, Kind, Profile
from harness.profiles import BUILTIN_PROFILES, load_profile

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_TOP_KEYS = {"name", "version", "kind", "dockerfile", "image", "archive", "profile", "writes_probabilities", "gpu",
             "resources", "local", "description", "contract", "map_labels"}  # and each registered contract's table
_SOURCES = ("dockerfile", "image", "archive")  # exactly one: how the image is obtained
PINNED_IMAGE = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
_RESOURCE_KEYS = {"memory", "shm", "tmp", "output", "output_files", "time_limit_s", "pids", "cpus"}
_PLACEHOLDERS = {"python", "input", "output"}


@dataclass(frozen=True)
class Resources:
    memory_bytes: int = 4 * 1024**3
    shm_bytes: int = 256 * 1024**2
    tmp_bytes: int = 1024**3
    output_bytes: int = 2 * 1024**3
    time_limit_s: float = 600.0
    pids: int = 256
    cpus: float = 0.0  # 0: as many as the challenge allows
    output_files: int = 1000  # files and folders under /output
    requested: frozenset[str] = field(default=frozenset(), compare=False)  # the keys the manifest set


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm as its manifest declares it."""

    name: str
    version: str
    kind: Kind
    dockerfile: Path | None  # absolute; None for a prebuilt image (`image` or `archive`)
    directory: Path  # algorithms/<name>/, absolute
    manifest: Path
    profile: Profile  # the label system its outputs use, resolved relative to the manifest
    writes_probabilities: bool
    gpu: GpuMode
    resources: Resources
    local_command: tuple[str, ...] | None
    manifest_sha256: str
    description: str = ""
    image: str | None = None  # a local image pinned by digest: "name[:tag]@sha256:<64 hex>"
    archive: Path | None = None  # a `docker save` tar / tar.gz, loaded before the run (absolute)
    contract: str = "harness"  # one of CONTRACTS
    options: ContractOptions = None  # the contract's own table ([grand-challenge], [mlcube], [nnunet]), checked
    map_labels: bool = False  # its outputs use `profile`'s numbering; mapped by organ name onto the challenge's


def parse_size(value: Any, *, where: str) -> int:
    """'4g', '512m', '1.5G', or a byte count -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = SIZE.match(value.strip())
        if match:
            size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
            if size > 0:
                return size
    raise SpecError(f"{where} = {value!r}; use a size like \"4g\" or \"512m\"")


class ManifestError(SpecError):
    """A refused manifest: the one-line message, with the manifest and the kind it declares as
    fields (`kind` None: not readable, as in a file that is not TOML), so that each command reports
    the refusals of its own kind and those of unknown kind."""

    def __init__(self, message: str, *, manifest: Path, kind: Kind | None, path: Path | None = None,
                 detail: str = "") -> None:
        super().__init__(message, path=path, detail=detail)
        self.manifest = manifest
        self.kind = kind


def load_manifest(path: Path, *, repo_root: Path) -> AlgorithmSpec:
    """Read and validate one `algorithm.toml`; raises ManifestError."""
    kind: Kind | None = None
    try:
        raw_bytes = read_file(path, what="a manifest", max_bytes=MANIFEST_BYTES, fix="a manifest is a small TOML file")
        raw = parse_toml(path, raw_bytes)  # the bytes that were read, parsed with their nesting bounded
        kind = next((k for k in Kind if k == raw.get("kind")), None)
        return _from_table(path, raw, raw_bytes, repo_root=repo_root)
    except SpecError as exc:
        raise ManifestError(str(exc), manifest=path, kind=kind, path=exc.path, detail=exc.detail) from None


def _from_table(path: Path, raw: dict[str, Any], raw_bytes: bytes, *, repo_root: Path) -> AlgorithmSpec:
    keys = _TOP_KEYS | {c.table for c in (contract_of(n) for n in contract_names()) if c.table}
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise SpecError.of(path, f"unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(keys))}")
    for key in ("name", "version", "kind", "profile"):
        if key not in raw:
            raise SpecError.of(path, f"missing key '{key}'; add it (see algorithms/README.md)")
    given = [key for key in _SOURCES if key in raw]
    if len(given) != 1:
        raise SpecError.of(path, f"give exactly one of 'dockerfile', 'image' or 'archive' (found: "
                        f"{', '.join(given) or 'none'}); see algorithms/README.md")

    def text(key: str) -> str:
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise SpecError.of(path, f"key '{key}' = {value!r}; expected a non-empty string")
        return value

    name = text("name")
    if not NAME.fullmatch(name):
        raise SpecError.of(path, f"key 'name' = {name!r}; use lower-case letters, digits and '-' (it names the image)")
    if path.parent.name != name:
        raise SpecError.of(path, f"key 'name' = {name!r} differs from its folder '{path.parent.name}'; rename one")
    kind = text("kind")
    if kind not in set(Kind):
        raise SpecError.of(path, f"key 'kind' = {kind!r}; use one of {', '.join(Kind)}")
    gpu = raw.get("gpu")  # absent: its contract's default (resolved below)
    if gpu is not None and gpu not in set(GpuMode):
        raise SpecError.of(path, f"key 'gpu' = {gpu!r}; use one of {', '.join(GpuMode)}")
    probs = raw.get("writes_probabilities", False)
    if not isinstance(probs, bool):
        raise SpecError.of(path, f"key 'writes_probabilities' = {probs!r}; use true or false")
    root = repo_root.resolve()
    dockerfile = image = archive = None
    if "dockerfile" in raw:
        dockerfile = (repo_root / text("dockerfile")).resolve()
        if not dockerfile.is_relative_to(root):  # never read a file outside the repository (its content could leak)
            raise SpecError.of(path, "key 'dockerfile' leaves the repository (the folder above the algorithms' folder); "
                               "give the path of a Dockerfile inside it")
        if not dockerfile.is_file():
            raise SpecError.of(path, f"key 'dockerfile' = {raw['dockerfile']!r} does not exist; give its path from the "
                               "repository (the folder above the algorithms' folder)")
    elif "image" in raw:
        image = text("image")
        if not PINNED_IMAGE.fullmatch(image):
            raise SpecError.of(path, f"key 'image' = {image!r}; pin it by digest: \"name:tag@sha256:<64 hex digits>\" "
                            "(`docker images --digests` or `docker inspect --format '{{{{.Id}}}}'`)")
    else:
        archive = confined(path.parent, text("archive"), key="archive", where=path)  # inside the algorithm's folder
    declared = text("profile")
    if declared not in BUILTIN_PROFILES and not (path.parent / declared).resolve().is_relative_to(root):
        raise SpecError.of(path, "key 'profile' leaves the repository (the folder above the algorithms' folder); use a "
                           "built-in profile "
                        f"({', '.join(BUILTIN_PROFILES)}) or a profile file inside the repository")
    profile = load_profile(declared, relative_to=path.parent)  # resolved once, here, not mid-run
    contract = raw.get("contract", "harness")
    if not isinstance(contract, str) or contract not in contract_names():
        raise SpecError.of(path, f"key 'contract' = {contract!r}; supported: {', '.join(contract_names())} "
                        "(algorithms/README.md)")
    if kind == Kind.ANNOTATOR and not contract_of(contract).annotators:
        raise SpecError.of(path, f"key 'contract' = {contract!r} for an annotator; annotators follow the harness "
                        "contract (algorithms/README.md)")
    options = parse_options(str(contract), raw, path)
    if gpu is None:
        gpu = contract_of(contract).default_gpu
    map_labels = raw.get("map_labels", False)
    if not isinstance(map_labels, bool):
        raise SpecError.of(path, f"key 'map_labels' = {map_labels!r}; use true or false")
    if map_labels and kind == Kind.ANNOTATOR:
        raise SpecError.of(path, "key 'map_labels' for an annotator; an annotator writes the challenge's labels")
    identity = hashlib.sha256(raw_bytes)
    for extra in contract_of(contract).option_files(options):  # what the contract reads runs as part of the manifest
        cap = FILES_TARBALL_BYTES if is_tarball(extra) else PARAMETERS_BYTES  # a files tarball: its extraction's cap
        identity.update(sha256_file(extra, what="a contract's file", max_bytes=cap).encode())
    return AlgorithmSpec(
        name=name,
        version=text("version"),
        kind=Kind(kind),
        dockerfile=dockerfile,
        directory=path.parent.resolve(),
        manifest=path.resolve(),
        profile=profile,
        writes_probabilities=probs,
        gpu=GpuMode(gpu),
        resources=_resources(raw.get("resources", {}), path),
        local_command=_local_command(raw.get("local"), path),
        manifest_sha256=identity.hexdigest(),
        description=str(raw.get("description", "")),
        image=image,
        archive=archive,
        contract=str(contract),
        options=options,
        map_labels=map_labels,
    )


def _resources(raw: Any, path: Path) -> Resources:
    if not isinstance(raw, dict):
        raise SpecError.of(path, "key 'resources' must be a table ([resources])")
    unknown = sorted(set(raw) - _RESOURCE_KEYS)
    if unknown:
        raise SpecError.of(path, f"unknown key 'resources.{unknown[0]}'; allowed: {', '.join(sorted(_RESOURCE_KEYS))}")
    base = Resources()
    limit = raw.get("time_limit_s", base.time_limit_s)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 < limit <= 86400:
        raise SpecError.of(path, f"key 'resources.time_limit_s' = {limit!r}; use seconds, 0 < t <= 86400")
    pids = raw.get("pids", base.pids)
    if isinstance(pids, bool) or not isinstance(pids, int) or not 8 <= pids <= 65536:
        raise SpecError.of(path, f"key 'resources.pids' = {pids!r}; use an integer 8..65536")
    cpus = raw.get("cpus", base.cpus)
    if "cpus" in raw and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus <= 1024):
        raise SpecError.of(path, f"key 'resources.cpus' = {cpus!r}; use a number of CPUs > 0, e.g. 2 or 0.5")
    files = raw.get("output_files", base.output_files)
    if isinstance(files, bool) or not isinstance(files, int) or not 1 <= files <= 10**7:
        raise SpecError.of(path, f"key 'resources.output_files' = {files!r}; use an integer >= 1")
    return Resources(
        cpus=float(cpus),
        output_files=files,
        requested=frozenset(raw),
        memory_bytes=parse_size(raw["memory"], where=f"{path}: key 'resources.memory'") if "memory" in raw else base.memory_bytes,
        shm_bytes=parse_size(raw["shm"], where=f"{path}: key 'resources.shm'") if "shm" in raw else base.shm_bytes,
        tmp_bytes=parse_size(raw["tmp"], where=f"{path}: key 'resources.tmp'") if "tmp" in raw else base.tmp_bytes,
        output_bytes=parse_size(raw["output"], where=f"{path}: key 'resources.output'") if "output" in raw else base.output_bytes,
        time_limit_s=float(limit),
        pids=pids,
    )


def _local_command(raw: Any, path: Path) -> tuple[str, ...] | None:
    if raw is None:
        return None
    command = raw.get("command") if isinstance(raw, dict) else None
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise SpecError.of(path, f"key 'local.command' = {command!r}; use an array of strings such as "
                        '["{python}", "predict.py", "{input}", "{output}"]')
    for part in command:
        for placeholder in re.findall(r"\{(\w*)\}", part):
            if placeholder not in _PLACEHOLDERS:
                raise SpecError.of(path, f"key 'local.command' uses {{{placeholder}}}; allowed placeholders: "
                                f"{', '.join('{' + p + '}' for p in sorted(_PLACEHOLDERS))}")
    return tuple(command)


def discover_algorithms(folder: Path, *, repo_root: Path | None = None) -> tuple[list[AlgorithmSpec], list[ManifestError]]:
    """Every `<folder>/*/algorithm.toml`, sorted by name; invalid manifests are returned as errors."""
    if not folder.is_dir():
        raise SpecError.of(folder, "no such folder; pass the folder holding <name>/algorithm.toml manifests")
    root = repo_root if repo_root is not None else folder.resolve().parent
    specs: list[AlgorithmSpec] = []
    errors: list[ManifestError] = []
    for manifest in sorted(folder.glob("*/algorithm.toml")):
        try:
            specs.append(load_manifest(manifest, repo_root=root))
        except ManifestError as exc:
            errors.append(exc)
    if not specs and not errors:
        raise SpecError.of(folder, "no <name>/algorithm.toml found; add a manifest per algorithm (see algorithms/README.md)")
    return specs, errors
