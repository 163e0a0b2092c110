"""`harness.intake.unpack_upload`: a team's tar becomes checked regular files, or is refused (a tar
cut short is partial: looked at again later)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from harness.intake import PartialUpload, SubmissionError, folder_digest, unpack_upload


def _tar(path: Path, members: list[tuple[str, bytes | None, int]], *, mode: str = "w") -> Path:
    """Members (name, content or None for a symbolic link to /etc/passwd, file mode)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        for name, content, file_mode in members:
            info = tarfile.TarInfo(name)
            info.mode = file_mode
            if content is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    path.write_bytes(buffer.getvalue())
    return path


def test_a_whole_tar_is_copied_with_its_executable_bits(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "u.tar.gz", [("toy/algorithm.toml", b"x" * 3000, 0o644), ("toy/run.sh", b"#!/bin/sh\n", 0o755)],
                   mode="w:gz")
    digest = unpack_upload(archive, tmp_path / "out", max_bytes=10**6)
    assert (tmp_path / "out" / "toy" / "algorithm.toml").read_bytes() == b"x" * 3000
    assert os.stat(tmp_path / "out" / "toy" / "run.sh").st_mode & 0o777 == 0o755
    assert digest == folder_digest(tmp_path / "out")


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_a_tar_cut_short_is_partial(tmp_path: Path, mode: str) -> None:
    whole = _tar(tmp_path / "w.tar", [("toy/algorithm.toml", os.urandom(20_000), 0o644)], mode=mode)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[: 9_000])
    with pytest.raises(PartialUpload, match="cut.tar: the archive ends early"):
        unpack_upload(cut, tmp_path / "out", max_bytes=10**6)


@pytest.mark.parametrize(("members", "message"), [  # every hostile case, for each use: tests/test_intake_tar.py
    ([("../evil", b"x", 0o644)], r"member '\.\./evil' leaves the folder"),
    ([("toy/link", None, 0o777)], r"member 'toy/link' is a link or a special file"),
])
def test_what_a_tar_may_not_hold_is_refused(tmp_path: Path, members: list[tuple[str, bytes | None, int]],
                                            message: str) -> None:
    with pytest.raises(SubmissionError, match=r"u\.tar: " + message + r".*; upload a \.tar or \.tar\.gz") as caught:
        unpack_upload(_tar(tmp_path / "u.tar", members), tmp_path / "out", max_bytes=10**6)
    assert not isinstance(caught.value, PartialUpload)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out").exists()


def test_an_upload_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "u.tar", [("toy/weights.bin", b"w" * 5000, 0o644)])
    with pytest.raises(SubmissionError, match="over the cap of 4000 for an upload"):
        unpack_upload(archive, tmp_path / "out", max_bytes=4000)
    bomb = _tar(tmp_path / "u.tar.gz", [("toy/weights.bin", b"w" * 50_000, 0o644)], mode="w:gz")  # small compressed
    assert bomb.stat().st_size < 4000
    with pytest.raises(SubmissionError, match="member 'toy/weights.bin' takes what is extracted past the cap of 4000 "
                                              "bytes for an upload"):
        unpack_upload(bomb, tmp_path / "out2", max_bytes=4000)


def test_a_refused_upload_is_named_as_the_team_sent_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reasons name the upload and the files in it by the names the team gave them, never a path on
    the harness's host (the drop folder, the checked copy): rendered from the error's file and detail."""
    from harness.phases.arrivals import Decision, intake
    from harness.phases.config import load_challenge_config
    from harness.phases.layout import ChallengeLayout
    from tests.phases.conftest import World

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    world = World(tmp_path / "challenge", validation_cases=1)
    config = load_challenge_config(world.challenge)
    layout = ChallengeLayout.of(world.root)
    painter = world.upload("validation", "alpha", "a1", drop=0.3, token="tokua1")
    manifest = painter / "toy" / "algorithm.toml"
    manifest.write_text(manifest.read_text().replace('kind = "segmenter"', 'kind = "painter"'))
    linked = world.upload("validation", "bravo", "b1", drop=0.3, token="tokub1")
    (linked / "toy" / "weights").symlink_to("/etc/passwd")
    world.upload("validation", "charlie", "c1", drop=0.3, token="tokuc1", as_tar=True, cut=True)
    lost = world.upload("validation", "echo", "e1", drop=0.3, token="tokue1") / "toy" / "algorithm.toml"
    lost.write_text(lost.read_text().replace("dockerfiles/toy.Dockerfile", "dockerfiles/lost.Dockerfile"))
    evil = world.root / "drop" / "validation" / "delta" / "d1.tar"
    evil.parent.mkdir(parents=True)
    _tar(evil, [("../evil", b"x", 0o644)])
    decisions = {d.team: d for d in intake(config, config.phase("validation"), layout, settle_s=0, clock=world.clock)}
    assert decisions["alpha"].decision == Decision.INVALID
    assert decisions["alpha"].reason.startswith("a1/toy/algorithm.toml: key 'kind' = 'painter'; use one of ")
    assert decisions["bravo"].decision == Decision.INVALID
    assert decisions["bravo"].reason.startswith("b1/toy/weights: a symbolic link in the build context; ")
    assert decisions["charlie"].decision == Decision.PARTIAL
    assert decisions["charlie"].reason.startswith("c1.tar.gz: the archive ends early (")
    assert decisions["delta"].decision == Decision.INVALID
    assert decisions["delta"].reason.startswith("d1.tar: member '../evil' leaves the folder")
    assert decisions["echo"].decision == Decision.INVALID
    assert decisions["echo"].reason.startswith("e1/toy/algorithm.toml: key 'dockerfile' = 'dockerfiles/lost.Dockerfile' "
                                               "does not exist; give its path from the repository (")
    assert not [d.reason for d in decisions.values() if str(tmp_path) in d.reason]
