"""The local base image of the algorithm containers, made without a registry and without root.

Two stages, so that an ordinary user in the `docker` group can make it:

1. `debootstrap --foreign` unpacks a minimal Debian with Python 3 into a folder on the host, under
   `fakeroot` when not root (file owners and device nodes are recorded, not made), and the folder
   is packed into a tar as fakeroot saw it and `docker import`ed as a stage image.
2. Docker runs debootstrap's second stage inside that image (`docker build`, no network: the
   packages are already there), as root in the container. The result is exported and imported again
   as one layer, tagged `harness/base:<suite>-<hash>`.

debootstrap and fakeroot come from the host when installed; otherwise Debian's packages are fetched
with `apt-get download` (no root needed) and unpacked into the harness cache (`tools/`). Root stays
optional: as root the first stage simply runs without fakeroot.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.engine import _docker, _image_exists
from harness.errors import HarnessError, HostError
from harness.layout import default_cache_dir

BASE_REPOSITORY = "harness/base"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "passwd")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt/archives",
        "var/lib/apt/lists")
# debootstrap's second stage inside `docker build`: it checks that it may make device nodes in the
# target and mount /proc; Docker already gives /dev and /proc, and `container=lxc` is debootstrap's
# own switch for "a container made them" (functions: check_sane_mount, setup_devices).
_SECOND_STAGE = ("container=lxc /debootstrap/debootstrap --second-stage && rm -rf /debootstrap && "
                 + " && ".join(f"rm -rf /{d} && mkdir -p /{d}" for d in TRIM))

SYSTEM_DIRS = ("/usr/sbin", "/sbin")  # where debootstrap lives, often outside an ordinary user's PATH

Progress = Callable[[str], None]


def host_tool(name: str) -> str | None:
    """`name` installed on this host: on PATH or in the system folders."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_DIRS]))


def base_tag(*, suite: str = BASE_SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    recipe = f"{suite}|{','.join(sorted(packages))}|trim={','.join(TRIM)}|uid|two-stage"
    return f"{BASE_REPOSITORY}:{suite}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def _run(cmd: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    except OSError as exc:
        raise HostError(f"{what}: cannot start {cmd[0]} ({exc.strerror})") from None
    if done.returncode != 0:
        tail = " ".join((done.stdout.splitlines()[-3:]) + done.stderr.splitlines()[-3:])
        raise HarnessError(f"{what} failed (exit {done.returncode}): {' '.join(tail.split())[:300]}")
    return done.stdout


def _unpacked(package: str, tools: Path) -> Path:
    """Debian's `package`, fetched with `apt-get download` (no root) and unpacked into tools/<package>/."""
    root = tools / package
    if (root / ".complete").exists():
        return root
    apt_get, dpkg_deb = host_tool("apt-get"), host_tool("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise HostError(f"{package} is not installed and this host has no apt-get to fetch it; install {package} "
                        "(Debian or Ubuntu package), or pass --base with a Python 3.11 image that exists locally")
    shutil.rmtree(root, ignore_errors=True)
    download = root / "deb"
    download.mkdir(parents=True)
    try:
        _run([apt_get, "download", package], f"apt-get download {package}", cwd=download)
    except HarnessError as exc:
        raise HostError(f"{exc}; install {package} (sudo apt-get install {package}) or pass --base with a Python 3.11 "
                        "image that exists locally") from None
    for deb in download.glob("*.deb"):
        _run([dpkg_deb, "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
    (root / ".complete").touch()
    return root


def debootstrap_command(tools: Path) -> tuple[list[str], dict[str, str]]:
    """The command that runs debootstrap here and its environment: the host's, or Debian's package
    unpacked into `tools` (DEBOOTSTRAP_DIR points it at its own scripts)."""
    env = dict(os.environ)
    found = host_tool("debootstrap")
    if found is not None:
        return [found], env
    root = _unpacked("debootstrap", tools)
    env["DEBOOTSTRAP_DIR"] = str(root / "usr/share/debootstrap")
    return ["sh", str(root / "usr/sbin/debootstrap")], env


def fakeroot_command(tools: Path) -> list[str]:
    """`fakeroot` as a command prefix: the host's, or Debian's fakeroot + libfakeroot unpacked into
    `tools` and pointed at its own library and daemon."""
    found = host_tool("fakeroot")
    if found is not None:
        return [found]
    root = _unpacked("fakeroot", tools)
    lib_root = _unpacked("libfakeroot", tools)
    libs = glob.glob(str(lib_root / "usr/lib/*/libfakeroot/libfakeroot-sysv.so"))
    if not libs:
        raise HostError(f"{lib_root}: libfakeroot-sysv.so not found in Debian's libfakeroot; install fakeroot")
    return ["sh", str(root / "usr/bin/fakeroot-sysv"), "--lib", libs[0], "--faked", str(root / "usr/bin/faked-sysv")]


def ensure_base_image(
    client=None,  # type: ignore[no-untyped-def]
    *,
    suite: str = BASE_SUITE,
    mirror: str = DEFAULT_MIRROR,
    progress: Progress | None = None,
    tools: Path | None = None,
) -> str:
    """The local base image's tag, made in two stages (module docstring) if it does not exist."""
    client = client or _docker()
    tag = base_tag(suite=suite)
    if _image_exists(client, tag):
        return tag
    say = progress or (lambda _msg: None)
    if tools is None:
        tools = default_cache_dir() / "tools"
    debootstrap, env = debootstrap_command(tools)
    as_root = os.geteuid() == 0
    with tempfile.TemporaryDirectory(prefix="harness-base-") as tmp:
        work = Path(tmp)
        state = work / "fakeroot.state"
        fakeroot = [] if as_root else fakeroot_command(tools)
        fake = [*fakeroot, "-s", str(state)] if fakeroot else []
        rootfs = work / "rootfs"
        say(f"debootstrap {suite} with {', '.join(BASE_PACKAGES)}, first stage{'' if as_root else ' under fakeroot'} "
            "(about half a minute)")
        try:
            _run([*fake, *debootstrap, "--foreign", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", suite,
                  str(rootfs), mirror], "debootstrap --foreign", env=env)
        except HostError:
            raise
        except HarnessError as exc:
            raise HarnessError(f"{exc}; check the mirror {mirror}") from None
        tarball = work / "stage.tar"
        pack = [*fakeroot, "-i", str(state)] if fakeroot else []
        _run([*pack, "tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], "tar of the first stage")
        shutil.rmtree(rootfs, ignore_errors=True)  # half the disk it takes, freed before docker copies it
        stage = f"{tag}-stage"
        repository, _, version = stage.partition(":")
        say(f"docker import as {stage}; debootstrap's second stage in a container (about a minute and a half)")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
        tarball.unlink()
        built = f"{tag}-built"
        try:
            _second_stage(client, stage, built, work)
            _flatten(client, built, tag, work)
        finally:
            for ref in (built, stage):
                try:
                    client.images.remove(ref, noprune=False)
                except Exception:  # noqa: BLE001 - a leftover helper image is harmless
                    pass
    if not _image_exists(client, tag):
        raise HarnessError(f"docker import did not create {tag}; check `docker images`")
    return tag


def _second_stage(client, stage: str, built: str, work: Path) -> None:  # type: ignore[no-untyped-def]
    context = work / "second-stage"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {stage}\nRUN {_SECOND_STAGE}\n")
    log: list[str] = []
    for chunk in client.api.build(path=str(context), tag=built, rm=True, forcerm=True, decode=True,
                                  network_mode="none", pull=False):
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
            raise HarnessError(f"debootstrap --second-stage failed in Docker: {' '.join(detail.split())[:300]} "
                               f"(last output: {' | '.join(log[-3:])[:300]})")
        if "stream" in chunk and chunk["stream"].strip():
            log.append(chunk["stream"].strip())


def _flatten(client, built: str, tag: str, work: Path) -> None:  # type: ignore[no-untyped-def]
    """One layer, as a plain `docker import` gives: the stage's .deb files do not stay in a lower layer."""
    container = client.containers.create(built, command=["true"], network_mode="none")
    try:
        flat = work / "base.tar"
        with flat.open("wb") as out:
            for chunk in container.export():
                out.write(chunk)
    finally:
        container.remove(force=True)
    repository, _, version = tag.partition(":")
    client.api.import_image_from_file(str(flat), repository=repository, tag=version,
                                      changes=["ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
    flat.unlink()
