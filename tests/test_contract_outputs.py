"""What a foreign contract's container wrote becomes the harness's layout, or a one-line refusal.

No Docker here: the outputs a grand-challenge or nnU-Net container would write are made by hand,
the hostile ones included (an .mha whose voxels are another file on the host, a vector image, a
wrong grid, an .npz that claims more than it may hold), and each contract's `collect` reads them through `harness.acceptance`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.acceptance import InvalidOutput
from harness.contracts import GrandChallengeOptions, NnUNetOptions, contract_of
from harness.data.nifti import read_volume, write_itk
from harness.models import Case
from harness.profiles import load_profile

GC, NNUNET = contract_of("grand-challenge"), contract_of("nnunet")
PROFILE = load_profile("flare22")
SLUG_DIR = "images/abdominal-organ-segmentation"


@pytest.fixture()
def case(tmp_path: Path) -> Case:
    turn = np.deg2rad(30)  # an oblique grid, x flipped: direction, spacing and origin must all survive
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.8, 0.7, 2.5])
    affine[:3, 3] = (120.5, -98.25, -301.0)
    image = np.arange(12 * 10 * 6, dtype=np.int16).reshape(12, 10, 6)
    label = np.zeros((12, 10, 6), dtype=np.uint8)
    label[3:7, 2:5, 1:4] = 1
    (tmp_path / "data").mkdir()
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "data" / "c1_0000.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "data" / "c1.nii.gz")
    return Case("c1", tmp_path / "data" / "c1_0000.nii.gz", tmp_path / "data" / "c1.nii.gz")


def _gc(tmp_path: Path, case: Case, write) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / "output"
    (out / SLUG_DIR).mkdir(parents=True)
    write(out / SLUG_DIR)
    return out


def test_grand_challenge_input_is_an_mha_on_the_same_grid_and_inputs_json_names_it(tmp_path: Path, case: Case) -> None:
    import json
    import shutil

    input_dir = tmp_path / "input"
    input_dir.mkdir()
    assert case.image is not None
    shutil.copyfile(case.image, input_dir / "c1_0000.nii.gz")
    GC.stage_input(GrandChallengeOptions(), "c1", input_dir / "c1_0000.nii.gz", input_dir)
    (socket,) = json.loads((input_dir / "inputs.json").read_text())
    assert socket["interface"]["slug"] == "ct-image" and socket["interface"]["kind"] == "Image"
    # grand-challenge's CT socket: slug ct-image, files under images/ct (not images/<slug>)
    assert socket["interface"]["relative_path"] == "images/ct"
    (staged,) = (input_dir / "images" / "ct").glob("*.mha")
    assert socket["image"]["name"] == staged.name and not (input_dir / "c1_0000.nii.gz").exists()
    data, grid = read_volume(staged)
    original, original_grid = read_volume(case.image)
    assert np.array_equal(data, original) and np.allclose(grid.affine, original_grid.affine, rtol=0, atol=1e-9)


def test_grand_challenge_input_paths_default_to_the_platforms_sockets(tmp_path: Path) -> None:
    """The CT socket's relative_path is grand-challenge's own (images/ct); another slug's is
    images/<slug>; an explicit input_path wins."""
    manifest = tmp_path / "algorithm.toml"
    manifest.write_text("")
    assert (GrandChallengeOptions().input_slug, GrandChallengeOptions().input_path) == ("ct-image", "images/ct")
    assert GC.parse_options({}, manifest).input_path == "images/ct"
    assert GC.parse_options({"input_slug": "ct-image"}, manifest).input_path == "images/ct"
    assert GC.parse_options({"input_slug": "mri-image"}, manifest).input_path == "images/mri-image"
    assert GC.parse_options({"input_path": "images/ct-image"}, manifest).input_path == "images/ct-image"


def test_a_grand_challenge_mha_becomes_the_same_label_map(tmp_path: Path, case: Case) -> None:
    assert case.label is not None
    data, grid = read_volume(case.label)
    out = _gc(tmp_path, case, lambda d: write_itk(d / "whatever-name.mha", np.asarray(data), grid))
    got = GC.collect(GrandChallengeOptions(), case=case, profile=PROFILE, output_dir=out, native_dir=tmp_path / "native",
                  probabilities=False)
    native = nib.load(got.folder / "c1.nii.gz")
    assert np.array_equal(np.asarray(native.dataobj), np.asarray(data))
    assert np.allclose(native.affine, nib.load(case.label).affine, rtol=0, atol=1e-9)
    assert got.aliases == {"/output/c1.nii.gz": f"/output/{SLUG_DIR}/whatever-name.mha"}


def _raw_mha(folder: Path, *, data_file: str, shape: tuple[int, int, int] = (12, 10, 6), extra: str = "",
             payload: bytes = b"") -> None:
    header = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n{extra}"
              f"DimSize = {' '.join(map(str, shape))}\nElementType = MET_UCHAR\nElementDataFile = {data_file}\n")
    (folder / "output.mha").write_bytes(header.encode() + payload)


@pytest.mark.parametrize("make, message", [
    (lambda d, c: _raw_mha(d, data_file=str(c.label)), r"ElementDataFile = '/.*c1.nii.gz' points outside the file"),
    (lambda d, c: _raw_mha(d, data_file="LIST"), r"ElementDataFile = 'LIST' points outside the file"),
    # a long path keeps its file name in the message (its middle is cut; a clean machine's longer
    # temporary folder once cut the name off)
    (lambda d, c: _raw_mha(d, data_file="/" + "deep/" * 60 + "labelsTr/secret_case.nii.gz"),
     r"ElementDataFile = '/deep/deep/deep/.*\u2026.*/labelsTr/secret_case.nii.gz' points outside"),
    (lambda d, c: _raw_mha(d, data_file="LOCAL", shape=(1200, 1000, 600)),
     r"shape \(1200, 1000, 600\) differs from the input image \(12, 10, 6\)"),
    (lambda d, c: _raw_mha(d, data_file="LOCAL", extra="ElementNumberOfChannels = 64\n", payload=b"\0" * 720 * 64),
     r"64 components per voxel; write one label per voxel"),
    (lambda d, c: (d / "output.mha").write_bytes(b"\0" * 100), r"no MetaImage header"),
    # ITK's MetaIO reads ':' as '=' (and both together): the first ElementDataFile is the one it obeys
    (lambda d, c: _raw_mha(d, data_file="LOCAL", extra="ElementDataFile:= /dev/stdin\n"),
     r"ElementDataFile = '/dev/stdin' points outside the file"),
    (lambda d, c: _raw_mha(d, data_file="LOCAL", extra=f"ElementDataFile : {c.label}\n"),
     r"ElementDataFile = '/.*c1.nii.gz' points outside the file"),
    (lambda d, c: _raw_mha(d, data_file="LOCAL", extra="elementdatafile = /dev/zero\n"),
     r"ElementDataFile = '/dev/zero' points outside the file"),
    (lambda d, c: (d / "notes.txt").write_text("x"), r"no image in /output/images/abdominal-organ-segmentation/ "
                                                     r"\(found: notes.txt\); write exactly one \.mha there"),
    (lambda d, c: [_raw_mha(d, data_file="LOCAL", payload=b"\0" * 720), (d / "b.mha").write_bytes(b"")],
     r"holds 2 images \(b.mha, output.mha\); write exactly one"),
    (lambda d, c: (d / "output.mha").symlink_to(c.label), r"output.mha: symbolic link \(never followed\)"),
])
def test_grand_challenge_outputs_that_would_read_beyond_themselves_are_refused(tmp_path: Path, case: Case, make,  # type: ignore[no-untyped-def]
                                                                            message: str) -> None:
    out = _gc(tmp_path, case, lambda d: make(d, case))
    with pytest.raises(InvalidOutput, match=message):
        GC.collect(GrandChallengeOptions(), case=case, profile=PROFILE, output_dir=out, native_dir=tmp_path / "native",
                probabilities=False)
    assert not (tmp_path / "native" / "c1.nii.gz").exists()


def _npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def _nnunet_outputs(tmp_path: Path, case: Case, probabilities: np.ndarray | None) -> Path:
    import shutil

    out = tmp_path / "output"
    out.mkdir()
    assert case.label is not None
    shutil.copyfile(case.label, out / "c1.nii.gz")
    if probabilities is not None:
        _npz(out / "c1.npz", probabilities=probabilities)
    return out


def test_nnunet_probabilities_become_per_organ_maps_in_nifti_axis_order(tmp_path: Path, case: Case) -> None:
    assert case.label is not None
    label = np.asarray(nib.load(case.label).dataobj)
    probs = np.zeros((14, *label.shape[::-1]), dtype=np.float32)  # channels first, axes z, y, x
    probs[1] = (label == 1).transpose(2, 1, 0) * 0.75
    probs[0] = 1 - probs[1]
    out = _nnunet_outputs(tmp_path, case, probs)
    got = NNUNET.collect(NnUNetOptions(), case=case, profile=PROFILE, output_dir=out, native_dir=tmp_path / "native",
                  probabilities=True)
    liver = np.asarray(nib.load(got.folder / "probabilities" / "liver.nii.gz").dataobj)
    assert liver.dtype == np.uint8 and np.array_equal(liver, np.where(label == 1, 191, 0))  # rint(0.75 * 255)
    assert not np.asarray(nib.load(got.folder / "probabilities" / "spleen.nii.gz").dataobj).any()
    assert got.consumed == {"c1.nii.gz", "c1.npz"}


@pytest.mark.parametrize("make, message", [
    (lambda shape: np.zeros((14, *shape), dtype=np.float32), r"'probabilities' has shape \(14, 12, 10, 6\); expected "
                                                               r"\(channels >= 14, 6, 10, 12\)"),
    (lambda shape: np.zeros((3, *shape[::-1]), dtype=np.float32), r"expected \(channels >= 14"),
    (lambda shape: np.zeros((14, *shape[::-1]), dtype=np.int64), r"dtype int64; write float probabilities"),
    (lambda shape: np.full((14, *shape[::-1]), np.nan, dtype=np.float16), r"channel 1 \(liver\) holds values outside"),
    (lambda shape: None, r"no /output/c1.npz \(the manifest declares probabilities"),
])
def test_nnunet_probabilities_that_break_the_convention_are_refused(tmp_path: Path, case: Case, make,  # type: ignore[no-untyped-def]
                                                                   message: str) -> None:
    out = _nnunet_outputs(tmp_path, case, make((12, 10, 6)))
    with pytest.raises(InvalidOutput, match=message):
        NNUNET.collect(NnUNetOptions(), case=case, profile=PROFILE, output_dir=out, native_dir=tmp_path / "native",
                probabilities=True)


def test_an_npz_that_claims_more_than_it_may_hold_is_refused_before_inflating(tmp_path: Path, case: Case) -> None:
    out = _nnunet_outputs(tmp_path, case, None)
    with zipfile.ZipFile(out / "c1.npz", "w", zipfile.ZIP_DEFLATED) as archive:  # 64 MB of zeros in 64 KB
        with archive.open("probabilities.npy", "w") as member:
            member.write(b"\0" * (64 << 20))  # the bound for this 720-voxel case is 256 x 8 x 720 bytes
    with pytest.raises(InvalidOutput, match=r"larger than 256 channels of float64"):
        NNUNET.collect(NnUNetOptions(), case=case, profile=PROFILE, output_dir=out, native_dir=tmp_path / "native",
                probabilities=True)


def test_an_npz_of_many_channels_is_read_no_further_than_the_profiles_labels(tmp_path: Path, case: Case) -> None:
    """256 float64 channels (what took 2.4 GB before): only the profile's channels are read, and
    they are the values written."""
    import tracemalloc

    spatial = tuple(reversed(nib.load(case.image).shape))
    probabilities = np.zeros((256, *spatial))
    probabilities[0] = 1.0
    out = _nnunet_outputs(tmp_path, case, None)
    np.savez_compressed(out / "c1.npz", probabilities=probabilities)
    tracemalloc.start()
    got = NNUNET.collect(NnUNetOptions(), case=case, profile=PROFILE, output_dir=out, native_dir=tmp_path / "native",
                  probabilities=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    needed = max(o.label for o in PROFILE.organs) + 1
    assert peak < 4 * needed * probabilities[0].nbytes + (8 << 20)  # not 256 channels' worth
    for organ in PROFILE.organs:
        assert not np.asarray(nib.load(got.folder / "probabilities" / f"{organ.name}.nii.gz").dataobj).any()
