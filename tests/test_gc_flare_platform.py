"""grand-challenge and FLARE as their platforms run them, without Docker: the model tarball
extracted through intake, an output written without geometry, the image's declared user, FLARE's
archive name and its WORKDIR copy (tests/docker/test_templates_gc_flare.py runs the real images)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.acceptance import ArchiveTooLong, folder_copy
from harness.contracts import GrandChallengeOptions, contract_of
from harness.contracts.grand_challenge import written_without_geometry
from harness.data.nifti import read_grid
from harness.intake import SubmissionError
from harness.models import Case
from harness.profiles import load_profile
from harness.runner.docker_runner import declared_user

GC = contract_of("grand-challenge")
SLUG_DIR = "images/abdominal-organ-segmentation"


def _tarball(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, mode: int = 0o600) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o700
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_model_tarball_is_extracted_readable_and_named_in_the_manifests_hash(tmp_path: Path) -> None:
    """`model = "model.tar.gz"` as the forge's do_save.sh packs it (`tar -czf model.tar.gz -C model .`)."""
    tarball = _tarball(tmp_path / "model.tar.gz", [
        (_dir("."), None), (_dir("./a_tarball_subdirectory"), None),
        (_file("./a_tarball_subdirectory/some_tarball_resource.txt"), b"weights\n"),
        (_file("./run.sh", 0o700), b"#!/bin/sh\n")])
    manifest = tmp_path / "algorithm.toml"
    manifest.write_text("")
    options = GC.parse_options({"model": "model.tar.gz"}, manifest)
    assert options.model is not None and options.model_tarball == tarball
    assert (options.model / "a_tarball_subdirectory" / "some_tarball_resource.txt").read_bytes() == b"weights\n"
    modes = {p.relative_to(options.model).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in (options.model, *options.model.rglob("*"))}
    # readable by the container's user, whoever it is; executable bits kept, nothing writable by others
    assert modes == {".": 0o755, "a_tarball_subdirectory": 0o755,
                     "a_tarball_subdirectory/some_tarball_resource.txt": 0o644, "run.sh": 0o755}
    assert GC.option_files(options) == [tarball]  # its bytes are part of the manifest as it runs
    assert GC.launch(options, probabilities=False).mounts[0].host == options.model
    assert GC.parse_options({"model": "model.tar.gz"}, manifest).model == options.model  # once per content


@pytest.mark.parametrize("entries, message", [  # every hostile case, for each use: tests/test_intake_tar.py
    ([(_link("weights", "/etc/passwd", tarfile.SYMTYPE), None)], r"member 'weights' is a link or a special file"),
    ([(_file("../outside"), b"x")], r"member '\.\./outside' leaves the folder"),
])
def test_a_hostile_model_tarball_is_refused_naming_the_entry(tmp_path: Path, entries, message: str) -> None:  # type: ignore[no-untyped-def]
    _tarball(tmp_path / "model.tar.gz", entries)
    (tmp_path / "algorithm.toml").write_text("")
    with pytest.raises(SubmissionError, match=r"model.tar.gz: " + message + r".*; pack it again with `tar -czf"):
        GC.parse_options({"model": "model.tar.gz"}, tmp_path / "algorithm.toml")
    assert not (tmp_path / "outside").exists()


def test_a_model_that_is_not_a_tarball_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.tar.gz").write_bytes(b"not a tar at all" * 100)
    (tmp_path / "algorithm.toml").write_text("")
    with pytest.raises(SubmissionError, match=r"model.tar.gz: not a readable tar archive .*; pack it again with `tar -czf"):
        GC.parse_options({"model": "model.tar.gz"}, tmp_path / "algorithm.toml")


@pytest.fixture()
def case(tmp_path: Path) -> Case:
    affine = np.diag([-0.8, 0.7, 2.5, 1.0])
    affine[:3, 3] = (120.5, -98.25, -301.0)
    image = np.arange(12 * 10 * 6, dtype=np.int16).reshape(12, 10, 6)
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "c1_0000.nii.gz")
    label = np.zeros((12, 10, 6), dtype=np.uint8)
    label[3:7, 2:5, 1:4] = 1
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "c1.nii.gz")
    return Case("c1", tmp_path / "c1_0000.nii.gz", tmp_path / "c1.nii.gz")


def test_an_output_written_without_geometry_is_placed_on_the_inputs_grid(tmp_path: Path, case: Case) -> None:
    """The forge template's writer: `SimpleITK.GetImageFromArray(array)` of an array read with
    `GetArrayFromImage` (z, y, x), no geometry; its voxels land where the input's are."""
    import SimpleITK as sitk

    assert case.label is not None
    label = np.asarray(nib.load(case.label).dataobj)
    out = tmp_path / "output"
    (out / SLUG_DIR).mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(label.transpose(2, 1, 0)), str(out / SLUG_DIR / "output.mha"), True)
    got = GC.collect(GrandChallengeOptions(), case=case, profile=load_profile("flare22"), output_dir=out,
                     native_dir=tmp_path / "native", probabilities=False)
    native = nib.load(got.folder / "c1.nii.gz")
    assert np.array_equal(np.asarray(native.dataobj), label)
    assert np.array_equal(native.affine, read_grid(case.image).affine)  # type: ignore[arg-type]


def test_an_output_with_a_geometry_of_its_own_keeps_it(tmp_path: Path, case: Case) -> None:
    """Only ITK's defaults mean "no geometry": spacing 2 is another grid (acceptance refuses it)."""
    import SimpleITK as sitk

    assert case.label is not None
    label = np.asarray(nib.load(case.label).dataobj)
    out = tmp_path / "output"
    (out / SLUG_DIR).mkdir(parents=True)
    image = sitk.GetImageFromArray(label.transpose(2, 1, 0))
    image.SetSpacing((2.0, 1.0, 1.0))
    sitk.WriteImage(image, str(out / SLUG_DIR / "output.mha"))
    got = GC.collect(GrandChallengeOptions(), case=case, profile=load_profile("flare22"), output_dir=out,
                     native_dir=tmp_path / "native", probabilities=False)
    written = read_grid(got.folder / "c1.nii.gz")
    assert not written_without_geometry(written)
    assert not np.allclose(written.affine, read_grid(case.image).affine)  # type: ignore[arg-type]
    assert written.spacing_mm == (2.0, 1.0, 1.0)


@pytest.mark.parametrize("user, runs_as", [
    ("user", "user"), ("user:user", "user:user"), ("1000:1000", "1000:1000"), (" algo ", "algo"),
    ("", None), ("root", None), ("0", None), ("0:0", None), ("root:users", None), ("ROOT", None),
])
def test_the_declared_user_is_run_unless_it_is_root(user: str, runs_as: str | None) -> None:
    """grand-challenge runs the image's USER and refuses root at upload; harness runs root's images
    as its own unprivileged user instead (never as root)."""
    assert declared_user(user) == runs_as


def test_flare_names_an_archives_image_after_it_without_tagging(tmp_path: Path) -> None:
    from harness.build import platform_name
    from harness.spec import load_manifest

    folder = tmp_path / "algorithms" / "team"
    folder.mkdir(parents=True)
    (folder / "TeamName.tar.gz").write_bytes(b"")
    common = 'name = "team"\nversion = "1"\nkind = "segmenter"\nprofile = "flare22"\narchive = "TeamName.tar.gz"\n'
    (folder / "algorithm.toml").write_text(common + 'contract = "flare"\n')
    assert platform_name(load_manifest(folder / "algorithm.toml", repo_root=tmp_path)) == "teamname:latest"
    (folder / "algorithm.toml").write_text(common)  # the harness contract: no platform name
    assert platform_name(load_manifest(folder / "algorithm.toml", repo_root=tmp_path)) == ""


def test_a_workdir_archive_becomes_its_contents() -> None:
    """Docker's archive of /workspace (`workspace/...`) as the contents of the WORKDIR volume."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        archive.addfile(_dir("workspace"))
        data = b"sh predict.sh\n"
        info = _file("workspace/predict.sh", 0o755)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        archive.addfile(_dir("workspace/model"))
        archive.addfile(_link("workspace/model/same", "workspace/predict.sh", tarfile.LNKTYPE))
    copy = folder_copy(iter([raw.getvalue()]), bound=1 << 20)
    assert (copy.held, copy.entries) == (4096, 3)
    with tarfile.open(copy.path) as out:
        members = {m.name: m for m in out}
        assert set(members) == {"predict.sh", "model", "model/same"}
        assert members["model/same"].linkname == "predict.sh"
        assert out.extractfile("predict.sh").read() == data  # type: ignore[union-attr]
    copy.path.unlink()
    with pytest.raises(ArchiveTooLong):  # never more than its bound is read
        folder_copy(iter([raw.getvalue()]), bound=1000)
