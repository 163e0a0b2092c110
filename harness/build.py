"""Algorithm images without a registry: a local base image, a wheelhouse, cached builds.

- `ensure_base_image` (`harness.baseimage`): a minimal Debian with Python 3 made by debootstrap in
  two stages, `harness/base:<hash>`. Needs Debian's package mirror (or a local mirror), never a
  container registry, and no root.
- `ensure_wheelhouse`: `pip download` an algorithm's requirements (Linux x86_64 CPython 3.11 wheels)
  on the host into `.cache/wheelhouse/<hash>/`; the image installs them with `--no-index`, so no
  build step needs the network (builds run with `network_mode=none`).
- `build_algorithm`: assembles a build context (Dockerfile, algorithm folder, wheels), tags the image
  by the content hash of all three plus the base image, and reuses an existing image with that tag.

Every Dockerfile takes its base as `ARG BASE`; where a registry exists the same file builds from a
public Python image (`--base python:3.11-slim-bookworm`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.baseimage import base_tag, ensure_base_image  # noqa: F401 - re-exported: callers build from here
from harness.engine import _docker, _image_exists, docker_client  # noqa: F401 - re-exported: callers use them from here
from harness.errors import HarnessError
from harness.spec import AlgorithmSpec
from harness.submission import ContextFile, SubmissionError, check_dockerfile, check_requirements, context_files

# Wheels must match the Python of the base image (Debian bookworm: CPython 3.11, glibc 2.36).
WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64")
WHEEL_PYTHON = "3.11"
IMAGE_PREFIX = "harness-"

Progress = Callable[[str], None]


class BuildError(HarnessError):
    """An image could not be built; the algorithm is recorded as failed, the others go on."""


@dataclass(frozen=True)
class BuiltImage:
    algorithm: str
    tag: str
    image_id: str  # sha256:... of the image configuration: the digest recorded with every run
    cached: bool


def requirements_of(spec: AlgorithmSpec) -> Path | None:
    path = spec.directory / "requirements.txt"
    return path if path.is_file() else None


_wheel_lock = threading.Lock()  # one pip download at a time: two images may share a requirements file


def ensure_wheelhouse(requirements: Path, cache_dir: Path, *, progress: Progress | None = None) -> Path:
    """Linux CPython 3.11 wheels for `requirements`, downloaded once into a folder keyed by its hash."""
    with _wheel_lock:
        return _wheelhouse(requirements, cache_dir, progress)


def _wheelhouse(requirements: Path, cache_dir: Path, progress: Progress | None) -> Path:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    dest = cache_dir / digest
    stamp = dest / ".complete"
    if stamp.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"pip download {requirements} -> {dest}")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
           "--python-version", WHEEL_PYTHON, "--implementation", "cp", "--dest", str(dest), "-r", str(requirements)]
    for platform in WHEEL_PLATFORMS:
        cmd += ["--platform", platform]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
        raise BuildError(
            f"{requirements}: pip download failed ({last[:300]}); on an air-gapped host copy a wheelhouse made "
            f"elsewhere into {dest} and create {stamp.name} in it"
        )
    stamp.touch()
    return dest


def prebuilt_image(spec: AlgorithmSpec, client) -> BuiltImage:  # type: ignore[no-untyped-def]
    """A manifest's prebuilt image: `image` (on this host, with the pinned digest: its image id or
    one of its registry digests) or `archive` (a `docker save` tar / tar.gz, loaded now). The image
    id is what the run records (a changed image runs again)."""
    import docker

    if spec.image is not None:
        name, _, digest = spec.image.partition("@")
        try:
            found = client.images.get(name)
        except docker.errors.ImageNotFound:
            raise BuildError(f"{spec.manifest}: image {name} is not on this host; `docker load` its archive (or give "
                             "`archive = ...` instead)") from None
        except docker.errors.APIError as exc:
            raise BuildError(f"{spec.manifest}: image {name}: docker failed ({' '.join(str(exc).split())[:200]})") from None
        digests = {found.id, *(d.partition("@")[2] for d in found.attrs.get("RepoDigests") or [])}
        if digest not in digests:
            raise BuildError(f"{spec.manifest}: image {name} is {found.id[:19]}..., not the pinned {digest[:19]}...; "
                             "the manifest pins another image: check it, or update the pin")
        return BuiltImage(spec.name, found.id, found.id, cached=True)
    assert spec.archive is not None
    if not spec.archive.is_file():
        raise BuildError(f"{spec.manifest}: archive {spec.archive} is missing; put the team's `docker save` file there")
    try:
        with spec.archive.open("rb") as stream:
            loaded = client.images.load(stream)
    except (docker.errors.APIError, OSError) as exc:
        raise BuildError(f"{spec.archive}: `docker load` failed ({' '.join(str(exc).split())[:200]}); is it a "
                         "`docker save` archive?") from None
    if len(loaded) != 1:
        raise BuildError(f"{spec.archive}: holds {len(loaded)} images; an algorithm's archive holds exactly one")
    return BuiltImage(spec.name, loaded[0].id, loaded[0].id, cached=False)


def content_tag(spec: AlgorithmSpec, base_id: str, wheels: Path | None, files: list[ContextFile] | None = None) -> str:
    """Image tag from the Dockerfile, the algorithm folder's checked files, the wheels and the base image."""
    assert spec.dockerfile is not None
    hasher = hashlib.sha256()
    hasher.update(spec.dockerfile.read_bytes())
    hasher.update(base_id.encode())
    for item in files if files is not None else context_files(spec.directory):
        hasher.update(f"algorithm/{item.relative}\0".encode())
        hasher.update(item.path.read_bytes())
    if wheels is not None:
        for wheel in sorted(wheels.glob("*.whl")):
            hasher.update(f"{wheel.name}:{wheel.stat().st_size}\0".encode())
    return f"{IMAGE_PREFIX}{spec.name}:{hasher.hexdigest()[:16]}"


def build_algorithm(
    spec: AlgorithmSpec,
    *,
    base: str,
    wheel_cache: Path,
    client=None,  # type: ignore[no-untyped-def]
    progress: Progress | None = None,
    force: bool = False,
    time_limit_s: float = 3600.0,
    memory_bytes: int = 8 * 1024**3,
) -> BuiltImage:
    """Build (or reuse) the image of one algorithm, or obtain its prebuilt image (`prebuilt_image`);
    raises BuildError with the failing step.

    The build is as untrusted as a run: its inputs are checked first (`harness.submission`), it has
    no network, each step's container gets `memory_bytes` (memory + swap), and a build still going
    after `time_limit_s` is abandoned (`BuildError`)."""
    client = client or _docker()
    if spec.dockerfile is None:
        return prebuilt_image(spec, client)
    base_id = _image_exists(client, base)
    if base_id is None:
        raise BuildError(f"base image {base} does not exist; run `harness images base` or pass --base with a local image")
    dockerfile = spec.dockerfile
    try:  # the submission's inputs, checked before anything reads, copies or builds them
        check_dockerfile(dockerfile)
        files = context_files(spec.directory)
        requirements = requirements_of(spec)
        if requirements is not None:
            check_requirements(requirements)
    except SubmissionError as exc:
        raise BuildError(str(exc)) from None
    wheels = ensure_wheelhouse(requirements, wheel_cache, progress=progress) if requirements else None
    tag = content_tag(spec, base_id, wheels, files)
    existing = _image_exists(client, tag)
    if existing and not force:
        return BuiltImage(spec.name, tag, existing, cached=True)
    with tempfile.TemporaryDirectory(prefix=f"harness-build-{spec.name}-") as tmp:
        context = Path(tmp)
        shutil.copy2(dockerfile, context / "Dockerfile")
        for item in files:  # regular files only, copied without following anything
            target = context / "algorithm" / item.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.path, target, follow_symlinks=False)
        (context / "wheels").mkdir()
        if wheels is not None:
            for wheel in wheels.glob("*.whl"):
                os.link(wheel, context / "wheels" / wheel.name) if _same_fs(wheel, context) else shutil.copy2(
                    wheel, context / "wheels" / wheel.name)
        if progress:
            progress(f"building {tag}")
        log: list[str] = []
        deadline = time.monotonic() + time_limit_s
        try:
            for chunk in client.api.build(path=str(context), dockerfile="Dockerfile", tag=tag, buildargs={"BASE": base},
                                          rm=True, forcerm=True, decode=True, network_mode="none", pull=False,
                                          container_limits={"memory": memory_bytes, "memswap": memory_bytes},
                                          timeout=max(1, int(time_limit_s))):
                if time.monotonic() > deadline:
                    raise BuildError(f"{spec.dockerfile}: build of {spec.name} took longer than the challenge's build time "
                                     f"limit of {time_limit_s:g} s; abandoned")
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                    raise BuildError(f"{spec.dockerfile}: build of {spec.name} failed: {' '.join(detail.split())[:400]}; "
                                     "fix the Dockerfile (last output: " + " | ".join(log[-3:])[:300] + ")")
                if "stream" in chunk and chunk["stream"].strip():
                    log.append(chunk["stream"].strip())
        except BuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - API errors of any kind fail this build only
            if type(exc).__name__ in ("ReadTimeout", "ReadTimeoutError", "ConnectionError") and time.monotonic() > deadline - 1:
                raise BuildError(f"{spec.dockerfile}: build of {spec.name} took longer than the challenge's build time "
                                 f"limit of {time_limit_s:g} s; abandoned") from None
            raise BuildError(f"{spec.dockerfile}: build of {spec.name} failed: {' '.join(str(exc).split())[:400]}") from None
    image_id = _image_exists(client, tag)
    if image_id is None:
        raise BuildError(f"{spec.dockerfile}: build of {spec.name} produced no image {tag}")
    return BuiltImage(spec.name, tag, image_id, cached=False)


def build_jobs(count: int, memory_bytes: int) -> int:
    """How many images to build at once by default: one per core, at most 4, and no more than the
    host's available memory holds at each build's memory limit; at least one."""
    import psutil

    fits = psutil.virtual_memory().available // max(1, memory_bytes)
    return max(1, min(count, 4, os.cpu_count() or 1, fits))


def _built_from(spec: AlgorithmSpec) -> Path | None:
    """The requirements file of an algorithm that is built (not a prebuilt image), if it has one."""
    return requirements_of(spec) if spec.dockerfile is not None else None


def fetch_wheels(specs: list[AlgorithmSpec], wheel_cache: Path, *, progress: Progress | None = None) -> threading.Thread:
    """Start downloading every spec's wheels in the background (while the base image is made, say);
    the builds take them from the cache, or download again and report what failed."""
    def fetch() -> None:
        for spec in specs:
            requirements = _built_from(spec)
            if requirements is not None:
                with contextlib.suppress(BuildError, OSError):
                    ensure_wheelhouse(requirements, wheel_cache, progress=progress)

    thread = threading.Thread(target=fetch, name="fetch-wheels", daemon=True)
    thread.start()
    return thread


def build_all(specs: list[AlgorithmSpec], *, base: str, wheel_cache: Path, progress: Progress | None = None,
              force: bool = False, time_limit_s: float = 3600.0, memory_bytes: int = 8 * 1024**3,
              jobs: int | None = None) -> list[tuple[AlgorithmSpec, BuiltImage | BuildError]]:
    """Every spec's image (`build_algorithm`) or its BuildError, in the specs' order.

    Builds run side by side (`jobs` at once, by default `build_jobs`): each is mostly pip unpacking
    wheels and the daemon writing layers, which one core does not keep busy. Images that install
    the same requirements file are built one after the other, so that the later ones reuse the
    first's layers (Docker's build cache) instead of installing the same wheels at the same time.
    Wheels are downloaded one requirements file at a time. Nothing is measured while images build."""
    groups: dict[str, list[AlgorithmSpec]] = {}
    for spec in specs:
        requirements = _built_from(spec)
        key = hashlib.sha256(requirements.read_bytes()).hexdigest() if requirements else f"alone:{spec.name}"
        groups.setdefault(key, []).append(spec)

    def one_group(group: list[AlgorithmSpec]) -> list[BuiltImage | BuildError]:
        client = docker_client()
        done: list[BuiltImage | BuildError] = []
        for spec in group:
            try:
                done.append(build_algorithm(spec, base=base, wheel_cache=wheel_cache, client=client, progress=progress,
                                            force=force, time_limit_s=time_limit_s, memory_bytes=memory_bytes))
            except BuildError as exc:
                done.append(exc)
        return done

    workers = max(1, jobs) if jobs else build_jobs(len(groups), memory_bytes)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="build") as pool:
        built = {id(spec): image for group, images in zip(groups.values(), pool.map(one_group, groups.values()),
                                                          strict=True)
                 for spec, image in zip(group, images, strict=True)}
    return [(spec, built[id(spec)]) for spec in specs]


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False
