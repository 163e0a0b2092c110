"""The base image's tools without root: debootstrap and fakeroot fetched from Debian's packages
(`apt-get download`, no root) when the host lacks them, and fakeroot doing its job for an ordinary
user. The whole two-stage build runs in the Docker tests' `base_image` fixture, and as an ordinary
user in `benchmarks/bench_clean_machine.sh`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness.baseimage as baseimage


@pytest.fixture()
def fetched_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a host where debootstrap and fakeroot are not installed."""
    real = baseimage.host_tool
    monkeypatch.setattr(baseimage, "host_tool", lambda name: None if name in ("debootstrap", "fakeroot") else real(name))


def _fetch_or_skip(fetch, tools: Path):  # type: ignore[no-untyped-def]
    if shutil.which("apt-get") is None:
        pytest.skip("this host has no apt-get (not Debian or Ubuntu): the fetch path needs it")
    try:
        return fetch(tools)
    except baseimage.HostError as exc:
        if "apt-get download" in str(exc):
            pytest.skip(f"Debian's package mirror is unreachable from here: {exc}")
        raise


def _as_ordinary_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


@pytest.mark.usefixtures("fetched_only")
def test_debootstrap_fetched_from_debian_runs_from_the_cache(tmp_path: Path) -> None:
    command, env = _fetch_or_skip(baseimage.debootstrap_command, tmp_path / "tools")
    assert command[0] == "sh" and command[1].startswith(str(tmp_path / "tools" / "debootstrap"))
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("debootstrap 1."), done.stdout
    assert Path(env["DEBOOTSTRAP_DIR"], "scripts", "bookworm").exists()


@pytest.mark.usefixtures("fetched_only")
def test_fakeroot_fetched_from_debian_fakes_root_for_an_ordinary_user() -> None:
    with tempfile.TemporaryDirectory(prefix="harness-fakeroot-") as shared:  # pytest's tmp_path is root's alone
        Path(shared).chmod(0o755)
        _fakeroot_as_an_ordinary_user(Path(shared))


def _fakeroot_as_an_ordinary_user(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    command = _fetch_or_skip(baseimage.fakeroot_command, tools)
    for folder in [tools, *tools.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    state = work / "state"
    script = f"id -u; touch {work}/f; chown 1234:5678 {work}/f; mknod {work}/null c 1 3; stat -c '%u:%g %F' {work}/f {work}/null"
    done = subprocess.run(_as_ordinary_user([*command, "-s", str(state), "sh", "-c", script]), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["0", "1234:5678 regular empty file", "0:0 character special file"]
    # on disk the file stays the ordinary user's, and the device is a plain file
    assert (work / "f").stat().st_uid == (65534 if os.geteuid() == 0 else os.geteuid())
    assert not (work / "null").is_char_device()
    # a second fakeroot with the saved state sees what the first recorded: what `tar` packs
    again = subprocess.run(_as_ordinary_user([*command, "-i", str(state), "stat", "-c", "%u %F", str(work / "null")]),
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.stdout.strip() == "0 character special file", again.stderr
