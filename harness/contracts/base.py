"""What every container contract is: one class behind one interface (`Contract`), registered by
name in `harness.contracts`. A contract is data and file work, never Docker: where the case goes
(`stage_input`), how the container starts (`launch`), which output paths are copied out (`keep`),
how those outputs become the harness's own layout (`collect`), and what its manifest table holds
(`parse_options`). It reads a submission's files only through `harness.intake` and an output only
through `harness.acceptance`, so a new contract cannot skip either door."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import SpecError
from harness.models import GpuMode

if TYPE_CHECKING:
    from harness.acceptance import OutputNames
    from harness.models import Case, Profile


@dataclass(frozen=True)
class Mount:
    """A read-only extra the container sees (a model folder, a parameters file); `host` None: an
    empty read-only folder (a path the platform mounts although nothing is delivered there)."""

    host: Path | None
    container: str


@dataclass(frozen=True)
class Launch:
    """How one container is started under a contract."""

    input_path: str  # where the staged case folder is mounted
    output_path: str  # where the run's output file system is mounted
    input_writable: bool = False  # a private writable copy (FLARE's teams write there)
    own_user: bool = False  # the image's own user (no --user), still without capabilities
    declared_user: bool = False  # the image's USER when it is not root (HOME from its passwd), else ours
    writable_workdir: bool = False  # the image's WORKDIR on a bounded tmpfs seeded with its contents (FLARE)
    command: tuple[str, ...] | None = None  # replaces the image's CMD
    entrypoint: tuple[str, ...] | None = None  # replaces the image's ENTRYPOINT
    mounts: tuple[Mount, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Collected:
    """The outputs in the harness's own layout, and how to name them in the container's terms."""

    folder: Path  # holds <case>.nii.gz (and probabilities/) for the checks
    aliases: dict[str, str]  # "/output/<native path>" -> the path the container wrote (`names.of`)
    consumed: frozenset[str]  # paths under the output folder that were read (not reported as extra)
    root: Path  # the output folder the container wrote


class Contract:
    """The harness's own contract, and the defaults of every other: /input (read-only) ->
    /output, the image's entry point, our unprivileged user; outputs already in our layout."""

    name: ClassVar[str] = "harness"
    table: ClassVar[str | None] = None  # the manifest's own table for this contract, if it has one
    annotators: ClassVar[bool] = True  # whether an annotator may use it (only the harness's own contract)
    default_gpu: ClassVar[GpuMode] = GpuMode.NONE  # a manifest's `gpu` when it gives none

    def parse_options(self, table: dict[str, Any], manifest: Path) -> Any:
        """The contract's manifest table, checked (None when it has none)."""
        return None

    def option_files(self, options: Any) -> list[Path]:
        """The files its options read (their bytes are part of the manifest as it runs)."""
        return []

    def for_device(self, options: Any, *, gpu: bool) -> Any:
        """The options as one run starts them, given whether that run gets the host's GPUs (nnU-Net:
        its -device); unchanged by default."""
        return options

    def launch(self, options: Any, *, probabilities: bool) -> Launch:
        return Launch("/input", "/output")

    def stage_input(self, options: Any, case_id: str, image_file: Path, input_dir: Path) -> None:
        """Move the staged `<case>_0000.nii.gz` into the contract's form (kept as it is here)."""

    def keep(self, options: Any, case_id: str, native: list[str], *, probabilities: bool) -> list[str]:
        """The output paths (relative to the output mount) that the runner copies out; `dir/*` is any
        file directly in `dir` (the first few: more than one is already a violation)."""
        return native

    def collect(self, options: Any, *, case: Case, profile: Profile, output_dir: Path, native_dir: Path,
                probabilities: bool, names: OutputNames | None = None) -> Collected:
        """The contract's outputs in the harness's layout (in `native_dir` when they need converting);
        raises InvalidOutput naming the container's own path (`names.of`; default: the harness's
        `/output`) and the fix."""
        return Collected(output_dir, {}, frozenset(), output_dir)

    def notes(self, options: Any) -> list[str]:
        """What an author should know about how the manifest's table was read (`harness check` shows
        each as a warning): something the submission says that the harness does not use."""
        return []

    def platform_image_name(self, archive: Path) -> str:
        """The name the platform gives an image loaded from `archive` ("" where it gives none)."""
        return ""

    def ignored_extras(self, options: Any, case_id: str) -> frozenset[str]:
        """Files a contract's tool writes beside its outputs by design: neither kept nor reported."""
        return frozenset()


# --- helpers for manifests' tables --------------------------------------------------------------


def allowed_keys(table: dict[str, Any], keys: set[str], where: str, manifest: Path) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise SpecError.of(manifest, f"unknown key '{where}.{unknown[0]}'; allowed: {', '.join(sorted(keys))}")


def text_value(table: dict[str, Any], key: str, default: str, where: str, manifest: Path, *, pattern: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise SpecError.of(manifest, f"key '{where}.{key}' = {value!r}; expected a non-empty string")
    if pattern == "relpath" and (value.startswith("/") or ".." in Path(value).parts or "\\" in value):
        raise SpecError.of(manifest, f"key '{where}.{key}' = {value!r}; give a relative path without '..'")
    if pattern == "slug" and not all(c.isalnum() or c == "-" for c in value):
        raise SpecError.of(manifest, f"key '{where}.{key}' = {value!r}; a slug holds letters, digits and '-'")
    return value.strip("/") if pattern == "relpath" else value


def beside(manifest: Path, value: Any, key: str, *, folder: bool) -> Path:
    """A file or folder given relative to the manifest, which must stay inside the manifest's folder
    (`harness.intake.confined`: no '..' out, no link on the way); a folder is mounted into the
    container, so it must hold regular files only (`harness.intake.context_files`)."""
    from harness.intake import confined, context_files

    if not isinstance(value, str) or not value.strip():
        raise SpecError.of(manifest, f"key '{key}' = {value!r}; give a path relative to the manifest")
    path = confined(manifest.parent, value, key=key, where=manifest)
    if folder and not path.is_dir():
        raise SpecError.of(manifest, f"key '{key}' = {value!r} is not a folder; give the folder beside the manifest")
    if not folder and not path.is_file():
        raise SpecError.of(manifest, f"key '{key}' = {value!r} does not exist; give the file beside the manifest")
    if folder:
        context_files(path)
    return path


TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


def is_tarball(path: Path) -> bool:
    return path.name.lower().endswith(TARBALL_SUFFIXES)


def extracted_tarball(archive: Path, key: str, manifest: Path) -> Path:
    """The folder a submission's tarball (MedPerf's additional_files.tar.gz) extracts to, made once per
    content hash under the harness cache (`files/<sha256>/`) by `harness.intake.extracted_once`
    (bounded, regular files and folders only, nothing outside it); mounted read-only as the platform
    delivers it. A refused tarball is a SpecError naming the manifest's key."""
    from harness.intake import FILES_TARBALL, SubmissionError, extracted_once
    from harness.layout import default_cache_dir

    try:
        return extracted_once(archive, default_cache_dir() / "files", use=FILES_TARBALL)
    except SubmissionError as exc:
        raise SpecError.of(manifest, f"key '{key}': {exc}") from None
