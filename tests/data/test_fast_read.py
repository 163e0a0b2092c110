"""Label maps are decompressed in one call (ISA-L where installed) and read from memory: the same
array as nibabel's own reader, and nibabel's reader wherever the one-call path declines."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.data.nifti import _gunzip, read_label
from tests.conftest import toy_labels, write_nifti


def _nibabel(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16])
def test_same_array_as_nibabel(tmp_path: Path, dtype: type) -> None:
    path = write_nifti(tmp_path / "l.nii.gz", toy_labels(2).astype(dtype))
    blob = path.read_bytes()
    assert _gunzip(blob, cap=10**8) == gzip.decompress(blob)  # the one-call path is taken
    data, _ = read_label(path)
    expected = _nibabel(path)
    assert data.dtype == expected.dtype and np.array_equal(data, expected)
    assert data.flags.f_contiguous == expected.flags.f_contiguous


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.dtype(">i2")])
def test_read_only_view_is_nibabels_array(tmp_path: Path, dtype: type) -> None:
    # The scoring path's read: a view of the decompressed bytes, the same array nibabel returns
    # (big-endian data too), and read-only (nothing may write into the file's bytes).
    path = write_nifti(tmp_path / "l.nii.gz", toy_labels(2).astype(dtype))
    data, _ = read_label(path, read_only=True)
    expected = _nibabel(path)
    assert data.dtype == expected.dtype and np.array_equal(data, expected)
    assert data.flags.f_contiguous == expected.flags.f_contiguous
    assert not data.flags.writeable


def test_read_only_scaled_voxels_are_still_scaled(tmp_path: Path) -> None:
    labels = toy_labels(1)
    img = nib.Nifti1Image(labels, np.diag([0.8, 0.8, 2.5, 1.0]))
    img.header.set_slope_inter(2.0, 0.0)
    path = tmp_path / "s.nii.gz"
    nib.save(img, path)
    data, _ = read_label(path, read_only=True)
    assert np.array_equal(data, np.round(_nibabel(path)).astype(np.uint8))


def test_scaled_voxels_are_scaled_as_nibabel_scales_them(tmp_path: Path) -> None:
    labels = toy_labels(1)
    img = nib.Nifti1Image(labels, np.diag([0.8, 0.8, 2.5, 1.0]))
    img.header.set_slope_inter(2.0, 0.0)  # stored values are labels / 2
    path = tmp_path / "s.nii.gz"
    nib.save(img, path)
    data, _ = read_label(path)
    assert np.array_equal(data, np.round(_nibabel(path)).astype(np.uint8))


def test_what_the_one_call_path_declines(tmp_path: Path) -> None:
    raw = gzip.decompress(write_nifti(tmp_path / "a.nii.gz", toy_labels(1)).read_bytes())
    two_members = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])
    assert _gunzip(two_members, cap=len(raw)) is None
    assert _gunzip(gzip.compress(raw), cap=len(raw) - 1) is None  # more than the header's grid holds
    assert _gunzip(gzip.compress(raw)[:-20], cap=len(raw)) is None  # truncated
    assert _gunzip(b"not gzip at all", cap=len(raw)) is None
    path = tmp_path / "m.nii.gz"
    path.write_bytes(two_members)  # valid gzip: nibabel reads it
    data, _ = read_label(path)
    assert np.array_equal(data, toy_labels(1))
    member = gzip.compress(raw)
    assert _gunzip(member + b"\0", cap=len(raw)) is None  # anything after the member
    assert _gunzip(member[:-4] + (len(raw) + 1).to_bytes(4, "little"), cap=len(raw)) is None  # the trailer's length
    assert _gunzip(member[:3] + b"\x20" + member[4:], cap=len(raw)) is None  # a reserved flag
    assert _gunzip(member[:12], cap=len(raw)) is None  # a header alone


def _member(raw: bytes, flags: int, fields: bytes) -> bytes:
    """A gzip member with the header `flags` and their `fields` (after the 10 fixed bytes), any header CRC appended."""
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff" + fields
    if flags & 2:
        header += (zlib.crc32(header) & 0xFFFF).to_bytes(2, "little")
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(raw) + deflate.flush()
    return header + body + zlib.crc32(raw).to_bytes(4, "little") + len(raw).to_bytes(4, "little")


@pytest.mark.parametrize(("flags", "fields"), [
    (0, b""), (8, b"labels.nii\0"), (4 | 8 | 16, b"\x03\0abc" + b"name\0" + b"a comment\0"), (2 | 8, b"n\0"),
])
def test_every_gzip_header_field_is_skipped(flags: int, fields: bytes) -> None:
    raw = bytes(range(256)) * 40
    member = _member(raw, flags, fields)
    assert zlib.decompress(member, 31) == raw  # a valid member, as zlib reads it
    assert _gunzip(member, cap=len(raw)) == raw


def test_a_wrong_crc_reads_as_nibabel_reads_it(tmp_path: Path) -> None:
    # The CRC-32 is left unchecked as nibabel leaves it: the same array, by the one-call path.
    path = write_nifti(tmp_path / "l.nii.gz", toy_labels(2))
    blob = bytearray(path.read_bytes())
    blob[-8] ^= 0xFF
    path.write_bytes(blob)
    assert _gunzip(bytes(blob), cap=10**8) is not None
    expected = _nibabel(path)  # nibabel reads the voxels and stops before the trailer
    data, _ = read_label(path, read_only=True)
    assert data.dtype == expected.dtype and np.array_equal(data, expected) and np.array_equal(data, toy_labels(2))
