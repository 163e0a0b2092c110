"""Outputs judged without trusting them: headers checked before nibabel parses them or any voxel is
read, only the contract's files kept, names and messages made safe. Peak memory of the checks is
measured in a fresh process: for a hostile file it stays within 1.2x (+ 20 MB) of a well-formed
file of the same grid."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.acceptance import InvalidOutput, validate_outputs
from harness.data.nifti import check_untrusted_header
from harness.errors import CaseError
from harness.profiles import load_profile
from harness.safetext import safe_block, safe_text
from tests.conftest import toy_labels, write_nifti

SHAPE = (24, 22, 12)


def _header_bytes(shape: tuple[int, ...], *, extension: bytes = b"\0\0\0\0", vox_offset: int = 352) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = vox_offset
    return header.binaryblock + extension


def _case(tmp_path: Path) -> tuple[Path, Path]:
    image = write_nifti(tmp_path / "input" / "case_00_0000.nii.gz", (toy_labels(0) * 40).astype(np.int16))
    output = tmp_path / "output"
    output.mkdir()
    return image, output


def _gzip_with_zeros(path: Path, head: bytes, zeros: int) -> None:
    """`head` then `zeros` zero bytes (a multiple of 16 MiB), gzip-compressed (a few MB on disk for hundreds
    of MB): one 16 MiB chunk of zeros is deflated once, after a full flush (no history), and repeated."""
    chunk = bytes(16 * 1024**2)
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate; the gzip header and trailer written here
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(zeros // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff")  # gzip, deflate, no name, no time, level 1
        out.write(first)
        out.writelines(block for _ in range(zeros // len(chunk)))
        out.write(deflate.flush(zlib.Z_FINISH))
        out.write(struct.pack("<II", crc, (len(head) + zeros) & 0xFFFFFFFF))


def hostile(kind: str, path: Path) -> Path:
    """Write one hostile label map for the input grid SHAPE."""
    if kind == "header-bomb":  # 100 bytes that claim 3 GiB of voxels
        path.write_bytes(gzip.compress(_header_bytes((2048, 2048, 768))))
    elif kind == "zip-bomb":  # a lying header over 768 MB of real (compressed) voxels: ~1 MB on disk
        _gzip_with_zeros(path, _header_bytes((1024, 1024, 768)), 768 * 1024**2)
    elif kind == "extension-zip-bomb":  # the right grid, and a 512 MB extension that is really there
        _gzip_with_zeros(path, _header_bytes(SHAPE, extension=b"\1\0\0\0") + (512 * 1024**2 + 8).to_bytes(4, "little")
                         + b"\0\0\0\0", 512 * 1024**2)
    elif kind == "extension-bomb":  # the right grid, and an extension whose size says "the rest of 2 GiB"
        path.write_bytes(gzip.compress(_header_bytes(SHAPE, extension=b"\1\0\0\0") + (2**31 - 8).to_bytes(4, "little")
                                       + b"\0\0\0\0" + b"\0" * 64))
    elif kind == "offset-bomb":  # voxels "2 GB further on"
        path.write_bytes(gzip.compress(_header_bytes(SHAPE, vox_offset=2_000_000_000) + bytes(np.prod(SHAPE))))
    elif kind == "padded":  # a valid file followed by 40 MB of noise (stored: noise does not compress)
        rng = np.random.default_rng(0)
        path.write_bytes(gzip.compress(_header_bytes(SHAPE) + bytes(np.prod(SHAPE)) + rng.bytes(40 * 1024**2), 0))
    elif kind == "well-formed":
        write_nifti(path, toy_labels(0))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`made(kind)`: the hostile file of that kind, written once for the module (the bombs take a
    second or more to compress); a test copies it where it needs it."""
    folder = tmp_path_factory.mktemp("hostile")
    files: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in files:
            files[kind] = hostile(kind, folder / f"{kind}.nii.gz")
        return files[kind]
    return get


@pytest.mark.parametrize("kind, message", [
    ("header-bomb", r"header grid 2048x2048x768 differs from the input image's 24x22x12"),
    ("extension-bomb", r"the header has extensions; write a plain NIfTI file"),
    ("offset-bomb", r"voxel data at offset 2000000000, not right after the header"),
    ("padded", r"bytes on disk, more than its 24x22x12 grid needs"),
    ("zip-bomb", r"header grid 1024x1024x768 differs"),
    ("extension-zip-bomb", r"the header has extensions"),
])
def test_hostile_label_maps_are_refused_before_any_voxel_is_read(tmp_path: Path, kind: str, message: str,
                                                                 made: Callable[[str], Path]) -> None:
    image, output = _case(tmp_path)
    shutil.copyfile(made(kind), output / "case_00.nii.gz")
    with pytest.raises(InvalidOutput, match=message):
        validate_outputs(output, case_id="case_00", image=image, profile=load_profile("flare22"), probabilities=False)


def test_a_well_formed_file_passes_the_header_check(tmp_path: Path) -> None:
    check_untrusted_header(hostile("well-formed", tmp_path / "x.nii.gz"), SHAPE)
    with pytest.raises(CaseError, match="no NIfTI header"):
        check_untrusted_header(tmp_path.joinpath("y.nii.gz"), SHAPE) if tmp_path.joinpath("y.nii.gz").write_bytes(
            gzip.compress(b"GIF89a" * 100)) else None


_PEAK = """
import resource, sys
from pathlib import Path
from harness.profiles import load_profile
from harness.acceptance import InvalidOutput, validate_outputs
profile = load_profile("flare22")
image, output = Path(sys.argv[1]), Path(sys.argv[2])
try:
    validate_outputs(output, case_id="case_00", image=image, profile=profile, probabilities=False)
except InvalidOutput:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(image: Path, output: Path) -> int:
    """Peak RSS (KiB) of a fresh process that checks `output` as harness does."""
    done = subprocess.run([sys.executable, "-c", _PEAK, str(image), str(output)], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def good_peak_kib(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak RSS (KiB) of checking a well-formed file of the grid, measured once for the module."""
    image, output = _case(tmp_path_factory.mktemp("well-formed"))
    hostile("well-formed", output / "case_00.nii.gz")
    return peak_rss_kib(image, output)


# The files that made an unguarded check (nibabel reading voxels first) use 3.2 GB, 1.6 GB and 190 MB.
@pytest.mark.parametrize("kind", ["header-bomb", "zip-bomb", "padded"])
def test_checking_a_hostile_file_costs_no_more_memory_than_a_good_one(tmp_path: Path, kind: str, good_peak_kib: int,
                                                                      made: Callable[[str], Path]) -> None:
    image, output = _case(tmp_path)
    good = good_peak_kib
    shutil.copyfile(made(kind), output / "case_00.nii.gz")
    bad = peak_rss_kib(image, output)
    assert bad <= 1.2 * good + 20 * 1024, f"{kind}: {bad} KiB against {good} KiB for a well-formed file"


def test_text_from_an_algorithm_is_made_safe() -> None:
    assert safe_text("red \x1b[31mALERT\x1b[0m\nnext\tline\x07") == "red ALERT next line\\x07"
    assert safe_text(b"name-\xff\xfe".decode("utf-8", "surrogateescape")) == "name-\\xff\\xfe"
    assert safe_block("a\nb\x1b]0;title\x07c") == "a\nbc"
    assert safe_text("x" * 50, limit=10) == "x" * 9 + "\u2026"
    json.dumps(safe_text("\udcff"))  # encodable: the store and the report can hold it


def test_trees_of_any_depth_and_name_are_walked_and_removed_without_following_links(tmp_path: Path) -> None:
    import os

    from harness.fstree import remove_tree, walk_entries

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    root = tmp_path / "output"
    root.mkdir()
    here = os.getcwd()
    os.chdir(root)
    try:
        for _ in range(3000):  # deeper than the recursion limit, longer than PATH_MAX
            os.mkdir("d")
            os.chdir("d")
        open(b"bad-\xff\n", "wb").close()
        os.symlink(outside, "link")
    finally:
        os.chdir(here)
    os.symlink(tmp_path, root / "up")
    names = {os.path.basename(rel) for rel, _ in walk_entries(root)}
    assert {b"d", b"up"} <= names  # the parts past PATH_MAX cannot be named: skipped, never an error
    remove_tree(root)
    assert not root.exists() and outside.read_text() == "keep me" and tmp_path.is_dir()


def test_uint8_probabilities_are_checked_whole_without_being_read_into_memory(tmp_path: Path) -> None:
    image, output = _case(tmp_path)
    write_nifti(output / "case_00.nii.gz", toy_labels(0))
    folder = output / "probabilities"
    profile = load_profile("flare22")
    for organ in profile.organs:
        write_nifti(folder / f"{organ.name}.nii.gz", (toy_labels(0) == organ.label).astype(np.uint8) * 255)
    accepted = validate_outputs(output, case_id="case_00", image=image, profile=profile, probabilities=True)
    assert len(accepted.probabilities) == 13
    liver = folder / "liver.nii.gz"
    liver.write_bytes(gzip.compress(gzip.decompress(liver.read_bytes())[:-100]))  # a valid stream, 100 voxels short
    with pytest.raises(InvalidOutput, match=r"probabilities/liver.nii.gz: truncated"):
        validate_outputs(output, case_id="case_00", image=image, profile=profile, probabilities=True)
    liver.write_bytes(liver.read_bytes()[:-40])  # a cut gzip stream
    with pytest.raises(InvalidOutput, match=r"probabilities/liver.nii.gz: (truncated|.*corrupt|not a readable NIfTI)"):
        validate_outputs(output, case_id="case_00", image=image, profile=profile, probabilities=True)
