"""Acceptance: the one door out. Whether an algorithm's output is accepted is decided here, and
only here, for every contract, from bounded, header-first reads; nothing else opens an output.

- a label map `<case>.nii.gz`: a regular file (symbolic links anywhere in `/output` are refused
  and never followed), its header read from the first bytes and refused before any voxel when it
  claims another grid, extensions or more data than its grid needs, then a 3D integer label map on
  the input's grid with the profile's labels only;
- declared probabilities `probabilities/<organ>.nii.gz`: every organ of the profile, on the same
  grid, uint8 (p * 255) or float in [0, 1] without NaN;
- an annotator's `attention.json` (a JSON object with "organs", at most 16 MiB) and its maps;
- foreign formats, read for their contract (`harness.contracts` says which files and which format):
  a MetaImage (`.mha`) only with its voxels inside (`ElementDataFile = LOCAL`, read as ITK's MetaIO
  reads `=` and `:`), one scalar volume of the input's shape; an nnU-Net `.npz` read no further than
  the profile's channels.

Every refusal is `harness.errors.InvalidOutput`: one line naming the file and the fix; the run is
`invalid_output` and the evaluation goes on. A refusal names the file as the container saw it, from
the `OutputNames` the checks are given (the contract's output folder, a converted file's own name,
what the runner did not copy out), rendered once where it is raised: nothing rewrites it later.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import nibabel as nib
import numpy as np

from harness.data.nifti import (
    Grid,
    check_labels,
    check_same_grid,
    check_untrusted_header,
    read_grid,
    read_label,
    stream_length,
)
from harness.errors import CaseError, InvalidOutput
from harness.fstree import walk_entries
from harness.layout import PROBABILITY_DIR  # the kept layout mirrors /output
from harness.models import Case, Profile
from harness.safetext import safe_text

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["InvalidOutput", "AcceptedOutput", "OutputNames", "HARNESS_NAMES", "validate_outputs",
           "check_annotator_summary", "accepted_files", "extra_entries", "regular", "read_metaimage_label",
           "read_npz_probabilities", "read_foreign_label", "metaimage_data_file", "map_outputs", "copy_out",
           "archive_bound", "ArchiveTooLong", "Copied"]

SUMMARY_BYTES = 16 * 1024**2
MHA_HEADER_LIMIT = 64 * 1024
NPZ_MEMBER = "probabilities.npy"


@dataclass(frozen=True)
class OutputNames:
    """How a refusal names what a run wrote: in the container's terms.

    - `root`: where the container saw its output folder (`/output`; under Docker, its contract's
      mount, e.g. FLARE's `/workspace/outputs`);
    - `aliases`: "/output/<file as checked>" -> the path the container wrote (a converted output's
      own name; `harness.contracts.Collected.aliases`);
    - `written`: what the container wrote that the runner did not copy out (safe names): what a
      check found when the folder it reads holds nothing."""

    root: str = "/output"
    aliases: Mapping[str, str] = field(default_factory=dict)
    written: tuple[str, ...] = ()

    def of(self, rel: str | Path) -> str:
        """The output file `rel` (relative to the output folder) as the container wrote it."""
        rel = Path(rel).as_posix()
        return self.aliases.get(f"/output/{rel}") or f"{self.root}/{rel}"

    def found(self, present: Sequence[str]) -> str:
        """What a folder held, for a message: `present`, else what the container wrote elsewhere, else "nothing"."""
        return ", ".join(present or self.written[:5]) or "nothing"

    def refusal(self, exc: CaseError, output_dir: Path) -> InvalidOutput:
        """A loader's refusal of a file under `output_dir`, naming the file as the container wrote it."""
        if exc.path is not None and exc.path.is_relative_to(output_dir):
            return InvalidOutput(exc.about(self.of(exc.path.relative_to(output_dir))))
        return InvalidOutput(str(exc))


HARNESS_NAMES = OutputNames()  # the harness's own contract: /output, nothing converted


@dataclass(frozen=True)
class AcceptedOutput:
    label: Path
    probabilities: dict[str, Path]  # organ name -> file; empty when not declared


def _symlinks(root: Path) -> list[Path]:
    """Symbolic links anywhere under `root` (iteratively: any depth, any name)."""
    return [root / os.fsdecode(rel) for rel, info in walk_entries(root) if stat.S_ISLNK(info.st_mode)][:1]


def regular(path: Path, shown: str) -> bool:
    """Whether `path` is a regular file; a symbolic link is refused (never followed)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise InvalidOutput(f"{shown}: symbolic link (never followed); write a regular file")
    return stat.S_ISREG(info.st_mode)


def validate_outputs(output_dir: Path, *, case_id: str, image: Path, profile: Profile,
                     probabilities: bool, names: OutputNames = HARNESS_NAMES) -> AcceptedOutput:
    """The accepted output files, or InvalidOutput with the reason (files named by `names`)."""
    links = _symlinks(output_dir)
    if links:
        raise InvalidOutput(f"{safe_text(str(links[0].relative_to(output_dir)), limit=200)}: symbolic link in "
                            f"{names.root} (never followed); write regular files")
    label = output_dir / f"{case_id}.nii.gz"
    if not label.is_file():
        present = sorted(safe_text(p.name, limit=80) for p in output_dir.iterdir())[:5]
        raise InvalidOutput(f"no label map {names.of(label.name)} (found: {names.found(present)}); write it")
    image_grid = read_grid(image)
    try:
        check_untrusted_header(label, image_grid.shape)  # before nibabel parses it, before any voxel
        data, grid = read_label(label)
        check_same_grid(label, grid, image, image_grid, what="input image")
        check_labels(label, data, profile)
    except CaseError as exc:
        raise names.refusal(exc, output_dir) from None
    probs: dict[str, Path] = {}
    if probabilities:
        for organ in profile.organs:
            path = output_dir / PROBABILITY_DIR / f"{organ.name}.nii.gz"
            if not path.is_file():
                raise InvalidOutput(f"missing {names.of(path.relative_to(output_dir))} (the manifest declares probabilities)")
            _check_probability(path, image, image_grid, output_dir, names)
            probs[organ.name] = path
    return AcceptedOutput(label=label, probabilities=probs)


def _check_probability(path: Path, image: Path, image_grid: Grid, output_dir: Path, names: OutputNames) -> None:
    rel = path.relative_to(output_dir)
    try:
        facts = check_untrusted_header(path, image_grid.shape)
        grid = read_grid(path)
        check_same_grid(path, grid, image, image_grid, what="input image")
        complete = True
        if facts.plain_uint8:  # every value is a valid p * 255: only check that the voxels are all there
            needed = facts.vox_offset + facts.voxels
            complete = stream_length(path, cap=needed) >= needed
        else:
            data = np.asanyarray(nib.load(path).dataobj)  # type: ignore[attr-defined]
    except CaseError as exc:
        raise names.refusal(exc, output_dir) from None
    except Exception as exc:  # noqa: BLE001 - any read failure is the algorithm's
        raise InvalidOutput(f"{rel}: unreadable ({type(exc).__name__}); write a NIfTI file") from None
    if not complete:
        raise InvalidOutput(f"{rel}: truncated (fewer voxels than its header says); write the whole file")
    if facts.plain_uint8:
        return
    if data.dtype == np.uint8:
        return
    if data.dtype not in (np.float16, np.float32, np.float64):
        raise InvalidOutput(f"{rel}: dtype {data.dtype}; write uint8 (p * 255) or float16/float32 in [0, 1]")
    if np.isnan(data).any():
        raise InvalidOutput(f"{rel}: probabilities contain NaN; write values in [0, 1]")
    low, high = float(data.min(initial=0)), float(data.max(initial=0))
    if low < 0 or high > 1:
        raise InvalidOutput(f"{rel}: probabilities span [{low:.3g}, {high:.3g}], outside [0, 1]; write values in [0, 1]")


def check_annotator_summary(output_dir: Path, name: str, *, names: OutputNames = HARNESS_NAMES) -> None:
    """An annotator's summary: a JSON object with an "organs" object, at most SUMMARY_BYTES."""
    summary = output_dir / name
    shown = names.of(name)
    if not regular(summary, shown):
        raise InvalidOutput(f"no {shown}; write the per-organ attention sizes")
    if summary.stat().st_size > SUMMARY_BYTES:
        raise InvalidOutput(f"{shown}: larger than 16 MiB; write a short summary")
    try:
        parsed = json.loads(_read_regular(summary, SUMMARY_BYTES).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidOutput(f"{shown}: not JSON ({type(exc).__name__}); write a JSON object") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("organs"), dict):
        raise InvalidOutput(f"{shown}: no \"organs\" object; write {{\"organs\": {{...}}}}")


def _read_regular(path: Path, cap: int) -> bytes:
    """A regular output file's bytes, opened without following a link or blocking, at most `cap`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InvalidOutput(f"{path.name}: not a regular file; write a regular file")
        return handle.read(cap + 1)[:cap]


def accepted_files(output_dir: Path, allowed: list[str], *, image: Path, names: OutputNames = HARNESS_NAMES
                   ) -> dict[str, bytes]:
    """The bytes of the contract's files that are present (regular files only; each NIfTI bounded by
    the input's grid from its header, anything else by SUMMARY_BYTES), as the run keeps them."""
    files: dict[str, bytes] = {}
    shape = read_grid(image).shape
    for rel in allowed:
        path = output_dir / rel
        if not path.is_file() or path.is_symlink():
            continue
        if rel.endswith(".nii.gz"):
            try:  # maps the checks did not read (an annotator's) are bounded by the grid too
                check_untrusted_header(path, shape)
            except CaseError as exc:
                raise names.refusal(exc, output_dir) from None
            cap = path.stat().st_size
        else:
            cap = SUMMARY_BYTES
            if path.stat().st_size > cap:
                raise InvalidOutput(f"{names.of(rel)}: larger than 16 MiB; write a short summary")
        files[rel] = _read_regular(path, cap)
    return files


def extra_entries(root: Path, taken: set[str] | frozenset[str], allowed_dirs: set[str]) -> list[str]:
    """What `root` holds besides the `taken` files (a folder outside `allowed_dirs` once; safe names,
    at most 20)."""
    others: list[str] = []
    for current, dirs, names in os.walk(os.fsencode(root), followlinks=False):  # bytes: any name
        here = os.fsdecode(os.path.relpath(current, os.fsencode(root)))
        kept_dirs = [d for d in dirs if (here == "." and os.fsdecode(d) in allowed_dirs) or
                     any(t.startswith(("" if here == "." else here + "/") + os.fsdecode(d) + "/") for t in taken)]
        for name in [*names, *(d for d in dirs if d not in kept_dirs)]:
            rel = os.fsdecode(name) if here == "." else f"{here}/{os.fsdecode(name)}"
            if rel not in taken:
                others.append(safe_text(rel, limit=200))
                if len(others) >= 20:
                    return others
        dirs[:] = kept_dirs
    return others


def link_or_copy(source: Path, target: Path) -> None:
    """An output file taken as it is into the collected layout (a regular file: a hard link, or a
    copy across file systems); its checks run on the copy."""
    if not regular(source, source.name):
        return
    try:
        os.link(source, target)
    except OSError:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle, target.open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)


# --- foreign formats --------------------------------------------------------------------------------

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


def _elided(text: str, limit: int) -> str:
    """`text` within `limit` characters, its middle cut: a path keeps its start and its file name."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[-(limit - 1 - head):]


def check_itk_output(path: Path, shown: str, shape: tuple[int, ...] | None) -> None:
    """Refuse, from the header alone, an image output that would read anything but its own voxels
    or more of them than the input has: an .mha must hold its data (`ElementDataFile = LOCAL`, never
    a path on the host, a list or a pattern) and every output must be one scalar 3D volume of the
    input's shape."""
    import SimpleITK as sitk

    if path.name.lower().endswith(".mha"):
        source = metaimage_data_file(_read_regular(path, MHA_HEADER_LIMIT))
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


def read_metaimage_label(path: Path, shown: str, shape: tuple[int, ...] | None) -> tuple[NDArray[Any], Grid]:
    """A foreign image output (MetaImage, TIFF) as a label map and its grid, once its header passed."""
    if not regular(path, shown):
        raise InvalidOutput(f"{shown}: not a regular file; write the image itself")
    try:
        check_itk_output(path, shown, shape)
        return read_label(path)
    except CaseError as exc:
        raise InvalidOutput(exc.about(shown) if exc.path == path else str(exc)) from None


def read_foreign_label(path: Path, shown: str, shape: tuple[int, ...], profile: Profile) -> NDArray[np.integer]:
    """A label map in an algorithm's own label system (before it is mapped onto the challenge's):
    header first, then its voxels and its own labels."""
    try:
        check_untrusted_header(path, shape)  # before any voxel
        data, _ = read_label(path)
        check_labels(path, data, profile)  # its own numbering, before it is mapped
    except CaseError as exc:
        raise InvalidOutput(exc.about(shown) if exc.path == path else str(exc)) from None
    return data


def read_npz_probabilities(path: Path, shown: str, *, channels: int, spatial: tuple[int, ...],
                           axes: str) -> NDArray[Any]:
    """The first `channels` channels of an nnU-Net `.npz` ('probabilities', channels first): its
    header read before anything is inflated, and nothing read beyond those channels."""
    if not regular(path, shown):
        raise InvalidOutput(f"no {shown} (the manifest declares probabilities; nnU-Net writes it with "
                            "--save_probabilities); write it")
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(NPZ_MEMBER)
            if info.file_size > 256 * 8 * int(np.prod(spatial)) + 4096:  # before anything is inflated
                raise InvalidOutput(f"{shown}: 'probabilities' is larger than 256 channels of float64; write "
                                    "one channel per label")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = read_header(member)  # the header alone, before any voxel
                if len(shape) != 4 or tuple(shape[1:]) != spatial or shape[0] < channels:
                    raise InvalidOutput(f"{shown}: 'probabilities' has shape {tuple(shape)}; expected (channels >= "
                                        f"{channels}, {', '.join(map(str, spatial))}) (channels first, axes "
                                        f"{axes}, as nnU-Net writes them)")
                if dtype.kind != "f" or fortran_order:
                    raise InvalidOutput(f"{shown}: 'probabilities' has dtype {dtype}"
                                        f"{' in Fortran order' if fortran_order else ''}; write float probabilities "
                                        "(C order, as numpy.savez writes them)")
                # only the channels the profile scores are read: a file of many channels costs no more
                wanted = channels * int(np.prod(spatial)) * dtype.itemsize
                data = member.read(wanted)
                if len(data) != wanted:
                    raise InvalidOutput(f"{shown}: 'probabilities' ends before its header's shape; write it again")
                return np.frombuffer(data, dtype=dtype).reshape((channels, *spatial))
    except KeyError:
        raise InvalidOutput(f"{shown}: no array 'probabilities' in it; save it as np.savez(..., probabilities=...)") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InvalidOutput(f"{shown}: not a readable .npz ({type(exc).__name__}); write it with numpy.savez") from None


def check_probability_channel(channel: NDArray[Any], shown: str, label: int, organ: str) -> None:
    if not np.all(np.isfinite(channel)) or channel.min(initial=0) < 0 or channel.max(initial=0) > 1:
        raise InvalidOutput(f"{shown}: channel {label} ({organ}) holds values outside [0, 1] or NaN; "
                            "write probabilities")


def map_outputs(collected: Any, *, case: Case, source: Profile, target: Profile, probabilities: bool,
                native_dir: Path, names: OutputNames = HARNESS_NAMES) -> tuple[Any, str]:
    """The collected outputs renumbered from the algorithm's label system (`source`) to the
    challenge's (`target`) by organ name (`map_labels = true`): a label value of an organ the
    challenge lacks becomes background; a challenge organ the algorithm lacks gets no voxels and a
    zero probability map. Returns the mapped outputs and a one-line description of the mapping."""
    from harness.profiles.mapping import LabelMap

    mapping = LabelMap(source, target)
    described = f"{source.name} -> {target.name}: {len(mapping.shared)} organs mapped by name"
    if mapping.only_source:
        described += f"; not the challenge's (background): {', '.join(mapping.only_source)}"
    if mapping.only_target:
        described += f"; never predicted (scored as missed): {', '.join(mapping.only_target)}"
    label = collected.folder / f"{case.case_id}.nii.gz"
    if not regular(label, names.of(label.name)):
        return collected, described  # the checks report it missing
    assert case.image is not None
    grid = read_grid(case.image)
    data = read_foreign_label(label, names.of(label.name), grid.shape, source)
    native_dir.mkdir(exist_ok=True)
    original = nib.load(label)
    mapped = nib.Nifti1Image(mapping.apply(data), original.affine, original.header)  # type: ignore[attr-defined]
    mapped.set_data_dtype(np.uint8)
    nib.save(mapped, native_dir / label.name)
    own = collected.folder == collected.root  # the container's own files: read here, so not extras
    consumed = set(collected.consumed) | ({label.name} if own else set())
    if probabilities:
        (native_dir / PROBABILITY_DIR).mkdir(exist_ok=True)
        predicted = {o.name for o in source.organs}
        for organ in source.organs:
            if own:
                consumed.add(f"{PROBABILITY_DIR}/{organ.name}.nii.gz")
        for organ in target.organs:
            written = collected.folder / PROBABILITY_DIR / f"{organ.name}.nii.gz"
            if organ.name not in predicted:
                nib.save(nib.Nifti1Image(np.zeros(grid.shape, np.uint8), grid.affine),
                         native_dir / PROBABILITY_DIR / written.name)
            elif regular(written, names.of(f"{PROBABILITY_DIR}/{written.name}")):
                link_or_copy(written, native_dir / PROBABILITY_DIR / written.name)
    # the contract's `Collected` (a frozen dataclass), re-pointed: no import of the contracts back
    return dataclasses.replace(collected, folder=native_dir, consumed=frozenset(consumed)), described


# --- the copy-out of a container's /output (the daemon's tar stream) ----------------------------------


class ArchiveTooLong(Exception):
    """The /output archive streams more than its bound (a sparse file reads as its full size)."""


def archive_bound(output_bytes: int, output_files: int) -> int:
    """The most an /output archive can honestly stream: the limit's bytes, plus a header of up to
    16 KiB (long names) for each file and folder, plus 1 MiB."""
    return output_bytes + (output_files + 1) * 16 * 1024 + 1024**2


class _ChunkReader(io.RawIOBase):
    """A file over an iterator of byte chunks (the daemon's archive stream), of at most `bound` bytes."""

    def __init__(self, chunks: Iterator[bytes], bound: int | None = None) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self._bound = bound
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self._read += n
        if self._bound is not None and self._read > self._bound:
            raise ArchiveTooLong(self._read)
        return n


class Copied(NamedTuple):
    others: list[str]  # the entries outside the contract (safe names, at most `limit_names`)
    first: float  # the earliest modification time of the files copied (NaN: none)
    held: int  # the regular files' sizes, each rounded up to 4 KiB pages
    entries: int  # files, folders and links, hard links included


def copy_out(chunks: Iterator[bytes], target: Path, contract: tuple[str, ...], *, limit_names: int = 20,
             per_folder: int = 4, bound: int | None = None) -> Copied:
    """Write the contract's paths of an `/output` tar stream into `target` (regular files, and links
    as links, for the checks to refuse); an entry `dir/*` is any file directly in `dir` (the first
    `per_folder` of them). Returns the other entries' safe names (a folder outside the contract
    once, at most `limit_names`), the earliest modification time of the files copied (NaN: none),
    and what the archive says /output holds. A stream longer than `bound` bytes raises
    ArchiveTooLong as soon as it is."""
    wanted = {c for c in contract if not c.endswith("/*")}
    patterns = {c[:-2] for c in contract if c.endswith("/*")}
    ancestors = {str(parent) for c in (*wanted, *patterns) for parent in Path(c).parents if str(parent) != "."}
    ancestors |= patterns
    contract_dirs = {c.split("/", 1)[0] for c in ancestors}
    taken: dict[str, int] = {}
    seen: set[str] = set()
    others: list[str] = []
    first = math.nan
    held = entries = 0
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks, bound), 1 << 20), mode="r|") as archive:
        for member in archive:
            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
            if rel:
                entries += 1  # tmpfs takes an inode slot for each hard link too
                held += -(-member.size // 4096) * 4096 if member.isfile() else 0
            if not rel or (rel in ancestors and member.isdir()):
                continue
            folder = rel.rpartition("/")[0]
            matched = rel in wanted or (folder in patterns and taken.get(folder, 0) < per_folder)
            if matched and (member.isfile() or member.issym()):
                taken[folder] = taken.get(folder, 0) + 1
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if member.issym():
                    os.symlink(member.linkname, path)
                    continue
                source = archive.extractfile(member)
                assert source is not None
                with path.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                first = member.mtime if math.isnan(first) else min(first, member.mtime)
                continue
            top = rel.split("/", 1)[0]
            name = rel if top in contract_dirs else top
            if name not in seen and len(others) < limit_names:
                seen.add(name)
                others.append(safe_text(name, limit=200))
    return Copied(others, first, held, entries)


def archive_usage(chunks: Iterator[bytes], *, bound: int) -> tuple[int, int]:
    """What a tar stream of a container's folder holds, read header by header (never more than
    `bound` bytes): regular files' sizes rounded up to 4 KiB pages, and entries."""
    held = entries = 0
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks, bound), 1 << 20), mode="r|") as archive:
        for member in archive:
            entries += 1
            held += -(-member.size // 4096) * 4096 if member.isfile() else 0
    return held, entries


def image_file(chunks: Iterator[bytes], *, limit: int) -> bytes | None:
    """The first `limit` bytes of the one file in the daemon's archive of an image's path (e.g. its
    /etc/passwd, whose contents the image's author chose), read header by header from a stream of at
    most `limit` bytes plus its headers; None where the path is not a regular file or the stream is
    not a tar."""
    try:
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks, limit + 256 * 1024), 1 << 16),
                          mode="r|") as archive:
            member = archive.next()
            handle = archive.extractfile(member) if member is not None and member.isfile() else None
            return handle.read(limit) if handle is not None else None
    except (tarfile.TarError, ArchiveTooLong, OSError):
        return None


class FolderCopy(NamedTuple):
    path: Path  # a tar of the folder's contents, names relative to it (a temporary file: the caller removes it)
    held: int  # its regular files' bytes, rounded up to 4 KiB pages
    entries: int


def folder_copy(chunks: Iterator[bytes], *, bound: int) -> FolderCopy:
    """The daemon's archive of an image's folder (`name/`, `name/...`; FLARE's WORKDIR) rewritten
    as its contents (`...`, a hard link's target too) into a temporary tar for `put_archive` into a
    volume, read header by header and never more than `bound` bytes (ArchiveTooLong). Its entries
    are not judged: they are the image's own files, going back into a container of that image."""
    import tempfile

    held = entries = 0
    handle, name = tempfile.mkstemp(prefix="harness-workdir-", suffix=".tar")
    try:
        with os.fdopen(handle, "wb") as sink, \
                tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks, bound), 1 << 20), mode="r|") as source, \
                tarfile.open(fileobj=sink, mode="w|") as out:
            for member in source:
                rest = member.name.partition("/")[2]
                if not rest:
                    continue  # the folder itself: the volume's root
                member.name = rest
                if member.islnk():
                    member.linkname = member.linkname.partition("/")[2]
                entries += 1
                held += -(-member.size // 4096) * 4096 if member.isfile() else 0
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    except BaseException:
        os.unlink(name)
        raise
    return FolderCopy(Path(name), held, entries)


def open_folder_copy(path: Path) -> io.BufferedReader:
    """A `folder_copy` opened for streaming to the daemon."""
    return open(path, "rb")
