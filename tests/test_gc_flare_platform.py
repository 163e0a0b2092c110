"""grand-challenge and FLARE as their platforms run them, without Docker: the model tarball
extracted through intake, an output written without geometry, the image's declared user, FLARE's
archive name and its WORKDIR copy (tests/docker/test_templates_gc_flare.py runs the real images)."""

from __future__ import annotations

import io
import stat
import tarfile
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.acceptance import ArchiveTooLong, folder_copy
from harness.contracts import GrandChallengeOptions, contract_of
from harness.contracts.grand_challenge import (
    RunAs,
    passwd_home,
    platform_user,
    refused_at_upload,
    written_without_geometry,
)
from harness.data.nifti import read_grid
from harness.intake import SubmissionError
from harness.models import Case
from harness.profiles import load_profile

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


PASSWD = """root:x:0:0:root:/root:/bin/bash
toor:x:0:0:another root:/srv/toor:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
this line is malformed
user:x:999:999::/home/user:/bin/sh
1000:x:2000:2000:a user named by a number:/home/named-1000:/bin/sh
algo:x:1000:1000::/home/algo:/bin/sh
"""


@pytest.mark.parametrize("user", ["", "root", "0", "0:0", "root:users", "ROOT", " root ", "Root:0"])
def test_a_root_user_is_refused_by_the_platform_and_run_as_ours(user: str) -> None:
    """grand-challenge's upload refuses these (unset, root or 0, any group, any case); harness runs
    them as its own unprivileged user with its own HOME and says why."""
    assert refused_at_upload(user.strip())
    got = platform_user(user, passwd=PASSWD, env_home="/elsewhere")
    assert (got.user, got.home, got.failure) == (None, None, "")
    assert "grand-challenge refuses such an image at upload" in got.note
    assert "own unprivileged user with HOME=/tmp" in got.note


@pytest.mark.parametrize("user", [":0", ":users", "00", "toor", "toor:users"])
def test_root_the_upload_test_lets_through_is_still_never_root_here(user: str) -> None:
    """`:0`, `00` and a name whose uid is 0 pass the platform's upload test, and would run as root
    there; harness runs them as its own user."""
    assert not refused_at_upload(user)
    got = platform_user(user, passwd=PASSWD, env_home=None)
    assert (got.user, got.home, got.failure) == (None, None, "")
    assert "would run it as root" in got.note


@pytest.mark.parametrize("user, home", [
    ("user", "/home/user"), ("user:user", "/home/user"), ("algo:0", "/home/algo"),
    ("1000", "/home/named-1000"),  # a name first, as getpwnam before getpwuid
    ("999", "/home/user"), ("999:999", "/home/user"),  # by uid
])
def test_home_comes_from_the_images_passwd_over_its_env(user: str, home: str) -> None:
    """The platform's shim sets HOME to the user's home in /etc/passwd, over the image's ENV HOME."""
    assert platform_user(user, passwd=PASSWD, env_home="/elsewhere") == RunAs(user, home)


@pytest.mark.parametrize("env_home, home", [("/data/home", "/data/home"), (None, "/root")])
def test_a_uid_passwd_does_not_know_keeps_the_environments_home(env_home: str | None, home: str) -> None:
    """The shim leaves HOME alone for such a uid: the image's ENV HOME, else that of the shim's own
    (root's) environment."""
    assert platform_user("4242:4242", passwd=PASSWD, env_home=env_home) == RunAs("4242:4242", home)
    assert platform_user("4242", passwd=None, env_home=env_home) == RunAs("4242", home)


@pytest.mark.parametrize("passwd", [PASSWD, None, ""])
def test_a_named_user_passwd_does_not_know_fails_before_it_starts(passwd: str | None) -> None:
    got = platform_user("ghost", passwd=passwd, env_home="/home/ghost")
    assert got.user == "ghost" and got.note == ""
    assert got.failure.startswith("the image's USER ghost is not in its /etc/passwd: grand-challenge's job fails")


def test_passwd_lookup_agrees_with_the_c_library_on_this_hosts_passwd() -> None:
    """An independent oracle: getpwnam/getpwuid over the same file (the host's own /etc/passwd)."""
    import pwd

    text = Path("/etc/passwd").read_text()
    names = [line.split(":")[0] for line in text.splitlines() if line.count(":") >= 6]
    assert names
    for name in names:
        entry = pwd.getpwnam(name)
        assert passwd_home(text, name) == (entry.pw_uid, entry.pw_dir)
        by_uid = pwd.getpwuid(entry.pw_uid)
        assert passwd_home(text, str(entry.pw_uid)) == (by_uid.pw_uid, by_uid.pw_dir)
    assert passwd_home(text, "no-such-user-here") is None


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


class _FakeImages:
    def __init__(self, config: dict[str, object]) -> None:
        self.config = config

    def get(self, image: str) -> object:
        return type("Image", (), {"attrs": {"Config": self.config}})()


class _FakeSource:
    """A created, never started container whose /etc/passwd is `passwd` (None: the image has none)."""

    def __init__(self, passwd: bytes | None) -> None:
        self.passwd, self.removed = passwd, False

    def get_archive(self, path: str) -> tuple[object, dict[str, object]]:
        import docker

        if self.passwd is None:
            raise docker.errors.NotFound(f"Could not find the file {path} in container")
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            info = tarfile.TarInfo("passwd")
            info.size = len(self.passwd)
            archive.addfile(info, io.BytesIO(self.passwd))
        raw = out.getvalue()
        return (raw[i:i + 1000] for i in range(0, len(raw), 1000)), {}

    def remove(self, force: bool = False) -> None:
        self.removed = True


class _FakeContainers:
    def __init__(self, passwd: bytes | None) -> None:
        self.passwd, self.created = passwd, []  # type: list[_FakeSource]

    def create(self, **kwargs: object) -> _FakeSource:
        assert kwargs["network_mode"] == "none" and kwargs["entrypoint"] == ["true"]
        self.created.append(_FakeSource(self.passwd))
        return self.created[-1]


def _gc_request(tmp_path: Path):  # type: ignore[no-untyped-def]
    from harness.runner.base import RunRequest
    from harness.spec import load_manifest

    folder = tmp_path / "algorithms" / "gc"
    folder.mkdir(parents=True)
    (folder / "algorithm.toml").write_text('name = "gc"\nversion = "1"\nkind = "segmenter"\nprofile = "flare22"\n'
                                           f'image = "team/gc:1@sha256:{"0" * 64}"\ncontract = "grand-challenge"\n')
    spec = load_manifest(folder / "algorithm.toml", repo_root=tmp_path)
    return RunRequest(spec=spec, case_id="c", input_dir=tmp_path, output_dir=tmp_path, image="sha256:feed")


@pytest.mark.parametrize("config, passwd, user, home", [
    ({"User": "algo", "Env": ["PATH=/bin", "HOME=/elsewhere"]}, PASSWD.encode(), "algo", "/home/algo"),
    ({"User": "999:999"}, PASSWD.encode(), "999:999", "/home/user"),
    ({"User": "4242", "Env": ["HOME=/data"]}, None, "4242", "/data"),
    ({"User": "", "Env": ["HOME=/elsewhere"]}, PASSWD.encode(), None, "/tmp"),
    ({"User": "toor"}, PASSWD.encode(), None, "/tmp"),
])
def test_the_docker_runner_starts_grand_challenge_images_as_the_shim_does(
        tmp_path: Path, config: dict[str, object], passwd: bytes | None, user: str | None, home: str) -> None:
    """The container's --user and HOME from the image's config and its /etc/passwd (read once per
    image from a created container, removed again); root's images as harness's own user."""
    from harness.runner.docker_runner import DockerRunner, sandbox_user

    containers = _FakeContainers(passwd)
    client = type("Client", (), {"images": _FakeImages(config), "containers": containers})()
    runner = DockerRunner(client=client)
    request = _gc_request(tmp_path)
    for _ in range(2):
        kwargs = runner.container_kwargs(request)
        assert kwargs["user"] == (user if user is not None else "{}:{}".format(*sandbox_user()))
        assert kwargs["environment"]["HOME"] == home  # type: ignore[index]
    assert len(containers.created) == (0 if user is None and config["User"] == "" else 1)
    assert all(source.removed for source in containers.created)


def test_a_named_user_the_images_passwd_lacks_is_crashed_before_anything_starts(tmp_path: Path) -> None:
    from harness.models import RunStatus
    from harness.runner.docker_runner import DockerRunner

    containers = _FakeContainers(PASSWD.encode())
    client = type("Client", (), {"images": _FakeImages({"User": "ghost"}), "containers": containers})()
    request = _gc_request(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    outcome = DockerRunner(client=client).run(replace(request, input_dir=tmp_path / "in", output_dir=tmp_path / "out"))
    assert outcome.status is RunStatus.CRASHED and outcome.exit_code is None
    assert outcome.message.startswith("the image's USER ghost is not in its /etc/passwd: grand-challenge's job fails "
                                      "before it starts")
    assert len(containers.created) == 1 and containers.created[0].removed  # only the passwd reader was made


def _daemon_archive(member: tarfile.TarInfo, data: bytes = b"") -> list[bytes]:
    """The daemon's archive of one path (`get_archive`), in the chunks it streams."""
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    raw = buffer.getvalue()
    return [raw[k:k + 1000] for k in range(0, len(raw), 1000)]


def test_an_images_passwd_is_read_by_acceptance_bounded_and_only_as_a_regular_file() -> None:
    from harness.acceptance import image_file

    passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
    regular = tarfile.TarInfo("passwd")
    regular.size = len(passwd)
    assert image_file(iter(_daemon_archive(regular, passwd)), limit=1 << 20) == passwd
    huge = b"u:x:1:1::/h:/bin/sh\n" * 200_000  # 4 MB: only its first `limit` bytes are read
    regular.size = len(huge)
    assert image_file(iter(_daemon_archive(regular, huge)), limit=1 << 20) == huge[:1 << 20]
    link = tarfile.TarInfo("passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    assert image_file(iter(_daemon_archive(link)), limit=1 << 20) is None
    assert image_file(iter([b"not a tar stream" * 100]), limit=1 << 20) is None
