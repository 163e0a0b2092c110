"""The challenge configuration: the organiser's rules of one evaluation, resolved once into a value.

    # challenge.toml (every key optional; relative profile paths are read from this file's folder)
    name = "my-challenge"
    profile = "flare22"              # scores every segmenter; a built-in name or a profile TOML file
    annotation_profile = "atlas8"    # scores the annotator's pseudo label

    [limits]                         # caps on what any manifest may ask (built-in defaults shown)
    memory = "32g"                   # memory (= memory + swap) of a run
    cpus = 8                         # CPU time of a run, in CPUs (also capped by the host's)
    pids = 4096
    shm = "8g"
    tmp = "16g"
    output = "8g"                    # bytes under /output
    output_files = 10000             # files and folders under /output
    time_limit_s = 3600              # FLARE22's worst time
    build_time_s = 3600              # one image build
    build_memory = "8g"              # memory of a build step's container
    image = "32g"                    # a prebuilt image's archive, uncompressed (checked before `docker load`)

    [teams] / [phases.<name>]        # a challenge over weeks: read by harness.phases.config, ignored here

The built-in default is FLARE22's scoring with AbdomenAtlas-8K's organs for the annotator. The
challenge, not a submission, decides how outputs are scored: a manifest's `profile` only declares
the label system its outputs use, and a manifest whose label system differs from the challenge's is
rejected before anything runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import SpecError
from harness.models import Kind, Profile
from harness.profiles import load_profile

if TYPE_CHECKING:
    from harness.spec import AlgorithmSpec
    from harness.store import FolderIdentity

DEFAULT_NAME = "flare22"
DEFAULT_PROFILE = "flare22"
DEFAULT_ANNOTATION_PROFILE = "atlas8"
_KEYS = {"name", "profile", "annotation_profile", "limits", "teams", "phases"}  # the last two: harness.phases.config


@dataclass(frozen=True)
class Limits:
    """The organiser's caps: a manifest may ask for less, never more."""

    memory_bytes: int = 32 * 1024**3
    cpus: float = 8.0
    pids: int = 4096
    shm_bytes: int = 8 * 1024**3
    tmp_bytes: int = 16 * 1024**3
    output_bytes: int = 8 * 1024**3
    output_files: int = 10_000
    time_limit_s: float = 3600.0
    build_time_s: float = 3600.0
    build_memory_bytes: int = 8 * 1024**3
    image_bytes: int = 32 * 1024**3  # a prebuilt image archive, uncompressed (harness.intake)


# limits key -> (Resources field, manifest key, how to show a value)
_CAPPED = {
    "memory": ("memory_bytes", "resources.memory", "size"),
    "cpus": ("cpus", "resources.cpus", "number"),
    "pids": ("pids", "resources.pids", "number"),
    "shm": ("shm_bytes", "resources.shm", "size"),
    "tmp": ("tmp_bytes", "resources.tmp", "size"),
    "output": ("output_bytes", "resources.output", "size"),
    "output_files": ("output_files", "resources.output_files", "number"),
    "time_limit_s": ("time_limit_s", "resources.time_limit_s", "number"),
}
_LIMIT_KEYS = {*_CAPPED, "build_time_s", "build_memory", "image"}


def _show(value: float, how: str) -> str:
    if how == "size":
        for unit, size in (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024)):
            if value >= size and value % size == 0:
                return f"{int(value // size)}{unit}"
        return f"{int(value)} bytes"
    return f"{value:g}"


@dataclass(frozen=True)
class Challenge:
    """The rules of one evaluation: a name, the resolved profile of each kind of algorithm, the caps."""

    name: str
    profile: Profile
    annotation_profile: Profile
    source: str = "built-in"
    limits: Limits = Limits()

    def admit(self, spec: AlgorithmSpec) -> AlgorithmSpec:
        """`spec` with its resources resolved under the caps (an unset value: the smaller of the
        harness default and the cap; cpus unset: the cap); raises SpecError naming the key, the
        value asked and the cap, or a label system that does not fit."""
        reason = self.accepts(spec.kind, spec.profile)
        if reason is not None and not spec.map_labels:
            raise SpecError.of(spec.manifest, f"key 'profile': {reason} (or declare map_labels = true to map its labels "
                            "by organ name)")
        if reason is not None:
            from harness.profiles.mapping import LabelMap

            if not LabelMap(spec.profile, self.profile_for(spec.kind)).shared:
                raise SpecError.of(spec.manifest, f"key 'map_labels' = true, but profile {spec.profile.name} shares no "
                                f"organ name with the challenge's {self.profile_for(spec.kind).name}; nothing would be scored")
        res = spec.resources
        values: dict[str, Any] = {}
        for key, (name, manifest_key, how) in _CAPPED.items():
            cap = getattr(self.limits, name)
            asked = getattr(res, name)
            if manifest_key.split(".")[1] in res.requested:
                if asked > cap:
                    raise SpecError.of(spec.manifest, f"key '{manifest_key}' = {_show(asked, how)} is over the challenge's "
                                    f"cap of {_show(cap, how)} ({self.name}, limits.{key}); ask for at most that")
            else:
                values[name] = cap if name == "cpus" else min(asked, cap)
        return replace(spec, resources=replace(res, **values)) if values else spec

    def profile_for(self, kind: Kind) -> Profile:
        return self.annotation_profile if kind is Kind.ANNOTATOR else self.profile

    def accepts(self, kind: Kind, declared: Profile) -> str | None:
        """None when a manifest declaring `declared` outputs fits this challenge, else the reason."""
        wanted = self.profile_for(kind)
        if declared.label_system == wanted.label_system:
            return None
        return (f"its outputs use the label system of profile {declared.name}, but challenge {self.name} scores "
                f"{kind}s under {wanted.name}; write labels as {wanted.name} does and set profile = \"{wanted.source}\"")


def load_challenge(path: Path | None = None, *, profile: str | None = None) -> Challenge:
    """The challenge of `path` (or the built-in default); `profile` replaces its segmenters' profile."""
    raw: dict[str, object] = {}
    base: Path | None = None
    source = "built-in"
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError.of(path, f"cannot read the challenge file ({exc.strerror}); check the path") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError.of(path, f"not valid TOML ({' '.join(str(exc).split())}); fix the syntax") from None
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise SpecError.of(path, f"unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(_KEYS))}")
        for key, value in raw.items():
            if key not in ("limits", "teams", "phases") and (not isinstance(value, str) or not value.strip()):
                raise SpecError.of(path, f"key '{key}' = {value!r}; expected a non-empty string")
        base = Path(path).resolve().parent
        source = str(Path(path).resolve())
    name = str(raw.get("name", DEFAULT_NAME if path is None else Path(path).stem))
    segmenters = load_profile(profile) if profile is not None else load_profile(
        str(raw.get("profile", DEFAULT_PROFILE)), relative_to=base)
    annotator = load_profile(str(raw.get("annotation_profile", DEFAULT_ANNOTATION_PROFILE)), relative_to=base)
    limits = _limits(raw.get("limits", {}), path)
    return Challenge(name=name, profile=segmenters, annotation_profile=annotator, source=source, limits=limits)


def parse_limits(raw: object, path: Path | None) -> Limits:
    """A `[limits]` table (or a phase's, merged over it) as `Limits`; raises SpecError naming the key."""
    return _limits(raw, path)


def _limits(raw: object, path: Path | None) -> Limits:
    from harness.spec import parse_size

    if not isinstance(raw, dict):
        raise SpecError(f"{path}: key 'limits' must be a table ([limits])")
    unknown = sorted(set(raw) - _LIMIT_KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown key 'limits.{unknown[0]}'; allowed: {', '.join(sorted(_LIMIT_KEYS))}")
    base = Limits()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}: key 'limits.{key}'"
        if key in ("memory", "shm", "tmp", "output", "build_memory", "image"):
            values[f"{key}_bytes"] = parse_size(value, where=where)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise SpecError(f"{where} = {value!r}; use a number > 0")
            values[key] = type(getattr(base, key))(value)
    return replace(base, **values)


def challenge_of(identity: FolderIdentity, *, profile: str | None = None) -> Challenge:
    """The challenge a results folder recorded, its profiles read again from their sources (so that a
    profile file edited since is read as it is now); `profile` replaces the segmenters' profile."""
    limits = Limits()
    if identity.challenge_source != "built-in" and Path(identity.challenge_source).is_file():
        limits = load_challenge(Path(identity.challenge_source)).limits
    return Challenge(name=identity.challenge, profile=load_profile(profile if profile is not None else identity.profile),
                     annotation_profile=load_profile(identity.annotation_profile), source=identity.challenge_source,
                     limits=limits)
