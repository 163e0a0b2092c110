"""Read images and label maps and check a prediction against its ground truth.

NIfTI (`.nii.gz`, `.nii`) is read with nibabel; MetaImage (`.mha`, `.mhd`) and NRRD (`.nrrd`) with
SimpleITK, converted to nibabel's conventions (array axes x, y, z; a RAS affine from ITK's LPS
origin and direction), so that grids are compared the same way whatever the format.

Every failure is a `CaseError` with a one-line message naming the file, what is wrong and the fix,
and the status to record for the case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from harness.errors import CaseError
from harness.models import CaseStatus, OutsideLabels, Profile

# A prediction's grid may differ from the ground truth's by rounding in its header, no more.
SPACING_RTOL = 1e-4
AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True)
class Grid:
    """Voxel grid of a NIfTI file: shape, spacing in mm (header zooms, array order) and affine."""

    shape: tuple[int, ...]
    spacing_mm: tuple[float, ...]
    affine: NDArray[np.float64]


NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd")
SUFFIXES = (*NIFTI_SUFFIXES, *ITK_SUFFIXES)  # every format an image, a label or a prediction may have
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def suffix_of(path: Path) -> str | None:
    """The supported format ending of `path` (".nii.gz", ".mha", ...), or None."""
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def _itk(path: Path, *, voxels: bool) -> tuple[NDArray[Any] | None, Grid]:
    """A MetaImage / NRRD file's grid (and voxels) in nibabel's conventions."""
    import SimpleITK as sitk

    if not path.exists():
        raise CaseError.of(path, "file is missing; write it or remove the case", status=CaseStatus.MISSING_PREDICTION)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        size = tuple(int(n) for n in reader.GetSize())
        spacing = tuple(float(v) for v in reader.GetSpacing())
        dims = len(size)
        direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dims, dims)
        origin = np.asarray(reader.GetOrigin(), dtype=np.float64)
        data = None
        if voxels:
            data = sitk.GetArrayFromImage(reader.Execute()).transpose(tuple(range(dims - 1, -1, -1)))
    except RuntimeError as exc:  # SimpleITK's one exception type
        raise CaseError.of(path, f"not a readable image ({_reason(exc, path)}); re-export it", status=CaseStatus.UNREADABLE) from None
    affine = np.eye(4)
    if dims == 3:
        affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
        affine[:3, 3] = _LPS_TO_RAS @ origin
    return data, Grid(shape=size, spacing_mm=spacing, affine=affine)


def read_volume(path: Path) -> tuple[NDArray[Any], Grid]:
    """Any supported image's voxels (axes x, y, z) and grid, without label checks."""
    if path.name.lower().endswith(ITK_SUFFIXES):
        data, grid = _itk(path, voxels=True)
        assert data is not None
        return data, grid
    img = _open(path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt voxel data
        raise CaseError.of(path, f"voxel data cannot be read ({_reason(exc, path)}); re-export it",
                        status=CaseStatus.UNREADABLE) from None
    return data, read_grid(path)


def write_itk(path: Path, data: NDArray[Any], grid: Grid) -> None:
    """Write voxels (axes x, y, z) on `grid` as a MetaImage / NRRD file, in ITK's LPS convention:
    `read_volume` of the file gives back the same voxels and affine."""
    import SimpleITK as sitk

    linear = np.asarray(grid.affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in (_LPS_TO_RAS @ linear / spacing).reshape(-1)))
    image.SetOrigin(tuple(float(v) for v in _LPS_TO_RAS @ np.asarray(grid.affine, dtype=np.float64)[:3, 3]))
    sitk.WriteImage(image, str(path), useCompression=True)


def _open(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise CaseError.of(path, "file is missing; write it or remove the case", status=CaseStatus.MISSING_PREDICTION) from None
    except Exception as exc:  # nibabel raises many types for a file that is not NIfTI
        raise CaseError.of(
            path, f"not a readable NIfTI file ({_reason(exc, path)}); re-export it as .nii.gz",
            status=CaseStatus.UNREADABLE,
        ) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise CaseError.of(path, f"{type(img).__name__} is not NIfTI; re-export it as .nii.gz", status=CaseStatus.UNREADABLE)
    return img


HEADER_READ = 544  # a NIfTI-2 header (540 bytes) and its 4-byte extension flag
GZIP_SLACK_BYTES = 1024**2  # a gzip stream is never much larger than what it holds


@dataclass(frozen=True)
class HeaderFacts:
    """What `check_untrusted_header` read: enough to judge the voxels without nibabel."""

    datatype: int  # NIfTI datatype code (2 = uint8)
    vox_offset: int
    voxels: int
    bytes_per_voxel: int
    scl_slope: float
    scl_inter: float

    @property
    def plain_uint8(self) -> bool:
        """uint8 voxels stored as they are (no scaling): every value is valid as a probability."""
        return self.datatype == 2 and self.scl_slope in (0.0, 1.0) and self.scl_inter == 0.0


def stream_length(path: Path, *, cap: int) -> int:
    """How many bytes the file holds once decompressed (a plain file: its size), counted in chunks
    without keeping them, and never past `cap` + 1; raises `CaseError` for a corrupt stream."""
    import zlib

    total = 0
    try:
        with path.open("rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                return path.stat().st_size
            raw.seek(0)
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while total <= cap and (chunk := raw.read(1 << 20)):
                total += len(inflate.decompress(chunk, cap + 1 - total))
                while inflate.unconsumed_tail and total <= cap:
                    total += len(inflate.decompress(inflate.unconsumed_tail, cap + 1 - total))
    except (OSError, zlib.error) as exc:
        raise CaseError.of(path, f"the compressed data is corrupt ({_reason(exc, path)}); re-export it",
                           status=CaseStatus.UNREADABLE) from None
    return total


def check_untrusted_header(path: Path, shape: tuple[int, ...], *, what: str = "input image") -> HeaderFacts:
    """Check an untrusted NIfTI file from its first bytes alone, before nibabel parses it or any
    voxel is read: a NIfTI-1/2 header whose grid is `shape`, no header extensions, the voxels right
    after the header, and a file no larger than that grid needs. Raises `CaseError` (one line).

    This is what stops a 124-byte file whose header claims 2048x2048x768 voxels, or a header
    extension whose size field says "to the end", from making the harness allocate gigabytes."""
    import gzip
    import zlib

    try:
        size = path.stat().st_size
        with path.open("rb") as raw:
            magic = raw.read(2)
            raw.seek(0)
            if magic == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=raw) as stream:
                    head = stream.read(HEADER_READ)
            else:
                head = raw.read(HEADER_READ)
    except FileNotFoundError:
        raise CaseError.of(path, "file is missing; write it", status=CaseStatus.MISSING_PREDICTION) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CaseError.of(path, f"not a readable NIfTI file ({_reason(exc, path)}); re-export it as .nii.gz",
                        status=CaseStatus.UNREADABLE) from None
    header = None
    for dtype, flag_at, plain_offset in ((nib.nifti1.header_dtype, 348, 352), (nib.nifti2.header_dtype, 540, 544)):
        if len(head) < dtype.itemsize:
            continue
        for order in ("<", ">"):
            candidate = np.frombuffer(head[: dtype.itemsize], dtype=dtype.newbyteorder(order))[0]
            if int(candidate["sizeof_hdr"]) == dtype.itemsize:
                header, ext_flag_at, max_offset = candidate, flag_at, plain_offset
                break
        if header is not None:
            break
    if header is None:
        raise CaseError.of(path, "no NIfTI header in its first bytes; write a NIfTI file (.nii.gz)", status=CaseStatus.UNREADABLE)
    dims = [int(d) for d in header["dim"]]
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise CaseError.of(path, f"header dim[0] = {ndim}; write a 3D NIfTI file", status=CaseStatus.UNREADABLE)
    found = tuple(dims[1 : ndim + 1])
    while len(found) > len(shape) and found[-1] == 1:
        found = found[:-1]
    if found != tuple(shape):
        raise CaseError.of(path, f"header grid {'x'.join(map(str, found))} differs from the {what}'s "
                        f"{'x'.join(map(str, shape))}; write it on the {what}'s grid", status=CaseStatus.GRID_MISMATCH)
    if len(head) > ext_flag_at and head[ext_flag_at] != 0:
        raise CaseError.of(path, "the header has extensions; write a plain NIfTI file without them",
                        status=CaseStatus.UNREADABLE)
    offset = int(header["vox_offset"])
    if not 0 <= offset <= max_offset:
        raise CaseError.of(path, f"voxel data at offset {offset}, not right after the header; write a plain NIfTI file",
                        status=CaseStatus.UNREADABLE)
    bits = int(header["bitpix"])
    if bits not in (8, 16, 32, 64, 128):
        raise CaseError.of(path, f"{bits} bits per voxel; write uint8 labels", status=CaseStatus.UNREADABLE)
    voxels = int(np.prod(found, dtype=np.int64))
    needed = max_offset + voxels * bits // 8
    if size > needed + GZIP_SLACK_BYTES:
        raise CaseError.of(path, f"{size} bytes on disk, more than its {'x'.join(map(str, found))} grid needs "
                        f"({needed}); write only the image", status=CaseStatus.UNREADABLE)
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    return HeaderFacts(datatype=int(header["datatype"]), vox_offset=offset, voxels=voxels, bytes_per_voxel=bits // 8,
                       scl_slope=0.0 if math.isnan(slope) else slope, scl_inter=0.0 if math.isnan(inter) else inter)


def read_grid(path: Path) -> Grid:
    """The grid from the header alone (no voxel data read)."""
    if path.name.lower().endswith(ITK_SUFFIXES):
        return _itk(path, voxels=False)[1]
    img = _open(path)
    ndim = len(img.shape)
    return Grid(
        shape=tuple(int(n) for n in img.shape),
        spacing_mm=tuple(float(z) for z in img.header.get_zooms()[:ndim]),
        affine=np.asarray(img.affine, dtype=np.float64),
    )


def read_label(path: Path, *, read_only: bool = False) -> tuple[NDArray[np.integer], Grid]:
    """A label map as an integer array (its on-disk integer dtype kept) and its grid.

    Float files whose values are all whole numbers are accepted and converted (many tools write
    labels as float); any other float content is an `invalid_labels` error. `read_only`: the
    array may be a read-only view of the decompressed file (one copy of the volume fewer).
    """
    zooms: tuple[float, ...] | None = None
    affine: NDArray[np.float64] | None = None
    if path.name.lower().endswith(ITK_SUFFIXES):
        itk_data, itk_grid = _itk(path, voxels=True)
        assert itk_data is not None
        data, zooms, affine = itk_data, itk_grid.spacing_mm, itk_grid.affine
    else:
        img = _open(path)
        try:
            data = _voxels(path, img, read_only=read_only)
        except Exception as exc:  # truncated gzip stream, short file, bad header offsets
            raise CaseError.of(
                path, f"voxel data cannot be read ({_reason(exc, path)}); the file is corrupt or "
                "truncated, re-export it",
                status=CaseStatus.UNREADABLE,
            ) from None
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        affine = np.asarray(img.affine, dtype=np.float64)
    if data.ndim != 3:
        raise CaseError.of(
            path, f"label map has {data.ndim} dimensions {data.shape}; write a 3D label map",
            status=CaseStatus.INVALID_LABELS,
        )
    if not np.issubdtype(data.dtype, np.integer):
        if not np.issubdtype(data.dtype, np.floating) or not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise CaseError.of(
                path, f"label map holds non-integer values (dtype {data.dtype}); write integer labels (uint8)",
                status=CaseStatus.INVALID_LABELS,
            )
        if data.min(initial=0) < 0 or data.max(initial=0) > 255:
            raise CaseError.of(
                path, "label values outside 0..255; write the profile's labels only",
                status=CaseStatus.INVALID_LABELS,
            )
        data = data.astype(np.uint8)
    grid = Grid(shape=tuple(int(n) for n in data.shape), spacing_mm=tuple(zooms[:3]), affine=affine)
    return data, grid


def inflate_module() -> Any:
    """ISA-L's zlib-compatible module where `isal` is installed, else zlib."""
    try:
        from isal import isal_zlib
    except ImportError:  # a platform without its wheel: zlib, as nibabel would
        import zlib

        return zlib
    return isal_zlib


def _deflate_start(blob: bytes) -> int | None:
    """Where the deflate stream of a gzip member starts (after its RFC 1952 header), or None."""
    if len(blob) < 18 or blob[:3] != b"\x1f\x8b\x08" or blob[3] & 0xE0:  # magic, deflate, no reserved flag
        return None
    flags, at = blob[3], 10
    if flags & 4:  # FEXTRA: a 2-byte length, then that many bytes
        at += 2 + int.from_bytes(blob[at : at + 2], "little")
    for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & flag:
            at = blob.find(b"\0", at) + 1
            if at == 0:
                return None
    if flags & 2:  # FHCRC: the header's CRC-16, which Python's gzip reader does not check either
        at += 2
    return at if at <= len(blob) - 8 else None


def _gunzip(blob: bytes, cap: int) -> bytes | None:
    """One gzip member decompressed in one call, with ISA-L where `isal` is installed (2.3x
    zlib's speed on label maps), else zlib; None when it is not exactly one complete member of at
    most `cap` bytes (the caller then lets nibabel read the file and name the problem).

    The member's CRC-32 is not computed (a second pass over the volume, 40 % of the time): nibabel,
    whose reader reads the voxels and stops before the trailer, never checks it either, so a wrong
    CRC gave the same array before, by the slower path. The trailer's length is checked."""
    start = _deflate_start(blob)
    if start is None:
        return None
    try:
        inflate = inflate_module().decompressobj(wbits=-15)  # the raw deflate stream
        out = inflate.decompress(memoryview(blob)[start:], cap + 1)
    except Exception:  # noqa: BLE001 - a corrupt stream: nibabel's reader reports it
        return None
    trailer = inflate.unused_data  # CRC-32, then the length modulo 2**32
    if len(out) > cap or not inflate.eof or len(trailer) != 8 or int.from_bytes(trailer[4:], "little") != len(out) % 2**32:
        return None
    return out


def _voxels(path: Path, img: nib.Nifti1Image, *, read_only: bool = False) -> NDArray[Any]:
    """The voxels of a NIfTI file nibabel has opened: a .nii.gz is decompressed in one call and
    read from memory (same array, dtype and scaling as `img.dataobj`); anything else, or a stream
    `_gunzip` declines, through nibabel. `read_only` and unscaled: the array is a view of the
    decompressed bytes, where nibabel would copy them into a new array."""
    if path.name.lower().endswith(".gz"):
        offset = int(getattr(img.dataobj, "offset", img.header["vox_offset"]))  # the header's own may read 0 once loaded
        dtype = img.header.get_data_dtype()
        cap = offset + int(np.prod(img.shape)) * dtype.itemsize
        blob = _gunzip(path.read_bytes(), cap)
        if blob is not None:
            proxy = img.dataobj
            if (read_only and len(blob) == cap and getattr(proxy, "dtype", None) == dtype
                    and (getattr(proxy, "slope", None), getattr(proxy, "inter", None)) == (1, 0)):
                # What nibabel's ArrayProxy returns for unscaled data, without its copy.
                return np.ndarray(img.shape, dtype=dtype, buffer=blob, offset=offset,
                                  order=getattr(proxy, "order", "F"))
            return np.asanyarray(type(img).from_bytes(blob).dataobj)
    return np.asanyarray(img.dataobj)


def label_values(data: NDArray[np.integer]) -> set[int]:
    """The distinct values of a label map (fast path for the usual small non-negative labels)."""
    if data.size == 0:
        return set()
    flat = data.reshape(-1, order="A")  # the array's own order: no copy of a Fortran-ordered array
    if data.dtype in (np.uint8, np.uint16):  # the usual label maps: one pass, no min/max, no 8-byte copy
        seen = np.zeros(np.iinfo(data.dtype).max + 1, dtype=bool)
        seen[flat] = True  # indexing converts the small indices in buffered chunks, never the whole volume
        return {int(v) for v in np.flatnonzero(seen)}
    low, high = int(data.min()), int(data.max())
    if low >= 0 and high < 65536:
        seen = np.zeros(high + 1, dtype=bool)
        seen[flat] = True
        return {int(v) for v in np.flatnonzero(seen)}
    return {int(v) for v in np.unique(data)}


def outside_labels(data: NDArray[np.integer], profile: Profile) -> list[int]:
    """The values of `data` that are neither background nor one of the profile's labels, sorted."""
    if data.size and np.issubdtype(data.dtype, np.unsignedinteger):
        # The usual case in one vectorised pass: the largest value, when every value up to it is
        # valid (labels 0..n), proves the map clean without collecting its values (0.1 s a volume).
        top = int(data.max())
        if top < 4096 and set(range(top + 1)) <= profile.valid_labels | {0}:
            return []
    return sorted(label_values(data) - profile.valid_labels)


def check_labels(path: Path, data: NDArray[np.integer], profile: Profile) -> list[int]:
    """Every value must be background or one of the profile's labels, or, under a profile whose
    `outside_labels` is `background`, the others are returned (to be counted as background)."""
    extra = outside_labels(data, profile)
    if extra and profile.outside_labels is OutsideLabels.REFUSE:
        raise CaseError.of(
            path, f"label values {_shown(extra)} are not in profile {profile.name} "
            f"(valid: 0, {', '.join(str(v) for v in sorted(profile.valid_labels - {0}))}); "
            "map them to the profile's labels or choose another --profile",
            status=CaseStatus.INVALID_LABELS,
        )
    return extra


def outside_as_background(path: Path | str, data: NDArray[np.integer], extra: list[int], profile: Profile
                          ) -> tuple[NDArray[np.integer], str]:
    """`data` with the values `extra` set to background, and the warning that says so."""
    if not extra:
        return data, ""
    return np.where(np.isin(data, extra), np.zeros((), data.dtype), data), outside_warning(path, extra, profile)


def outside_warning(path: Path | str, extra: list[int], profile: Profile) -> str:
    """The warning for label values outside `profile` counted as background ("" when there are none);
    `path` is the file as the message names it."""
    if not extra:
        return ""
    return (f"{path}: label values {_shown(extra)} are not in profile {profile.name}; counted as background "
            "(the profile's outside_labels rule)")


def _shown(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")


def check_same_grid(path: Path, grid: Grid, ref_path: Path, ref: Grid, *, what: str = "ground truth") -> None:
    """`path` must lie on the grid of `ref_path` (shape exactly; spacing and affine to rounding)."""
    if grid.shape != ref.shape:
        raise CaseError.of(
            path, f"shape {grid.shape} differs from the {what} {ref_path.name} {ref.shape}; "
            f"resample it onto the {what}'s grid",
            status=CaseStatus.GRID_MISMATCH,
        )
    if not np.allclose(grid.spacing_mm, ref.spacing_mm, rtol=SPACING_RTOL, atol=0):
        raise CaseError.of(
            path, f"spacing {_fmt(grid.spacing_mm)} mm differs from the {what} {ref_path.name} "
            f"{_fmt(ref.spacing_mm)} mm; copy the {what}'s header (spacing and affine)",
            status=CaseStatus.GRID_MISMATCH,
        )
    if not np.allclose(grid.affine, ref.affine, rtol=0, atol=AFFINE_ATOL_MM):
        worst = float(np.max(np.abs(grid.affine - ref.affine)))
        raise CaseError.of(
            path, f"affine differs from the {what} {ref_path.name} by up to {worst:.4g} "
            f"(tolerance {AFFINE_ATOL_MM}); copy the {what}'s header (orientation and origin)",
            status=CaseStatus.GRID_MISMATCH,
        )


def _reason(exc: BaseException, path: Path) -> str:
    """A library's exception about `path` as one line (nibabel's messages can span several), the
    file named by its name (SimpleITK's name it by its whole path): the message's own first word
    names the file, as its caller shows it (`CaseError.about`)."""
    text = " ".join(str(exc).split()).replace(str(path), path.name)  # a library's text, not ours
    return f"{type(exc).__name__}: {text}"


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
