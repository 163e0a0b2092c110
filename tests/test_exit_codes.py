"""Exit statuses, path by path, as the README's table documents them (a subprocess each, no mocks
where the real condition can be made: no Docker engine, a scheduler nobody runs, a reader that
went away)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ExitStatus, HostError

REPO = Path(__file__).resolve().parents[1]


def _harness(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, **kw: object
             ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120,
                          env=full_env, cwd=cwd or REPO, **kw)  # type: ignore[call-overload]


NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def test_no_docker_engine_is_the_environment_status_with_what_to_do(tmp_path: Path) -> None:
    done = _harness("build", "algorithms", env=NO_DOCKER)
    assert done.returncode == ExitStatus.ENVIRONMENT == 7, done.stderr
    assert "Docker engine not reachable" in done.stderr and "docker group" in done.stderr
    assert "internal error" not in done.stderr


def test_an_unreachable_scheduler_is_the_environment_status(tmp_path: Path) -> None:
    from harness.data.synth import write_dataset

    write_dataset(tmp_path / "data", cases=1, seed=1, size="small")
    done = _harness("run", "algorithms", "--runner", "local", "--data", str(tmp_path / "data"), "--results",
                    str(tmp_path / "results"), "--scheduler", "tcp://127.0.0.1:9",
                    env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})  # the README's setting, not 30 s
    assert done.returncode == 7, done.stderr
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in done.stderr
    assert "after 1 s" in done.stderr  # Dask's own connect timeout, as the user set it


def test_results_that_is_a_file_is_refused_as_unusable_before_anything_runs(tmp_path: Path) -> None:
    from harness.data.synth import write_dataset

    write_dataset(tmp_path / "data", cases=1, seed=1, size="small")
    (tmp_path / "results.txt").write_text("not a folder")
    done = _harness("run", "algorithms", "--runner", "local", "--data", str(tmp_path / "data"), "--results",
                    str(tmp_path / "results.txt"))
    assert done.returncode == ExitStatus.DATA_ERROR, done.stderr
    assert "results.txt: is a file, not a results folder" in done.stderr


def test_an_unknown_table_format_is_a_bad_command_line(tmp_path: Path) -> None:
    done = _harness("score", "--pred", str(tmp_path), "--labels", str(tmp_path), "--out", str(tmp_path / "scores.json"))
    assert done.returncode == ExitStatus.USAGE == 2, done.stderr
    assert "scores.json: unknown table format '.json'" in done.stderr


def test_a_reader_that_went_away_is_sigpipe_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` after its line
    try:
        done = subprocess.run([sys.executable, "-m", "harness", "--help"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)
    assert done.returncode == ExitStatus.BROKEN_PIPE == 141
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_the_base_image_on_a_host_without_debootstrap_nor_apt_get_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import harness.baseimage as baseimage

    class NoImages:
        class images:  # noqa: N801 - the Docker SDK's attribute name
            @staticmethod
            def get(ref: str) -> None:
                import docker

                raise docker.errors.ImageNotFound(ref)

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH, nothing in the system folders
    monkeypatch.setattr(baseimage, "SYSTEM_DIRS", ())
    with pytest.raises(HostError, match=r"debootstrap is not installed and this host has no apt-get to fetch it; "
                                        r"install debootstrap .* or pass --base"):
        baseimage.ensure_base_image(NoImages(), tools=tmp_path / "tools")
