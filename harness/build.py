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
import functools
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
from typing import Any

from harness.baseimage import base_tag, ensure_base_image  # noqa: F401 - re-exported: callers build from here
from harness.engine import _docker, _image_exists, docker_client  # noqa: F401 - re-exported: callers use them from here
from harness.errors import HarnessError
from harness.intake import (
    ArchiveImage,
    ContextFile,
    Dockerfile,
    Requirements,
    SubmissionError,
    check_dockerfile,
    check_requirements,
    context_files,
    inspect_archive,
    normalised_archive,
    open_context_file,
    sha256_file,
)
from harness.spec import AlgorithmSpec

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
    return path if os.path.lexists(path) else None


_wheel_lock = threading.Lock()  # one pip download at a time: two images may share a requirements file
_PIP_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                    "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
UNPRIVILEGED_UID = 65534  # nobody: pip runs as this user when the harness runs as root and it can


def pip_environment(home: Path) -> dict[str, str]:
    """The environment of the host's pip: the organiser's pip settings (PIP_*: index, certificates,
    proxies) and nothing else of the harness's environment, so nothing the organiser keeps there
    can reach a package index."""
    env = {key: value for key, value in os.environ.items() if key in _PIP_ENVIRONMENT or key.startswith("PIP_")}
    env.update(HOME=str(home), PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    return env


def organiser_pip_config(work: Path) -> dict[str, str]:
    """The organiser's own pip configuration file (an air-gapped host's index, say), copied into pip's
    work folder: pip runs with another HOME (and perhaps as another user), so it would not find it
    under the organiser's home. Nothing when PIP_CONFIG_FILE is set (it is passed on) or there is none."""
    if "PIP_CONFIG_FILE" in os.environ:
        return {}
    home = Path(os.path.expanduser("~"))
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    for candidate in (config_home / "pip" / "pip.conf", home / ".pip" / "pip.conf"):
        if candidate.is_file():
            shutil.copyfile(candidate, work / "pip.conf")
            return {"PIP_CONFIG_FILE": str(work / "pip.conf")}
    return {}


@functools.cache
def _unprivileged() -> dict[str, Any]:
    """subprocess arguments that run pip as `nobody` when the harness is root and that user can run
    this Python; empty otherwise (pip then downloads binary wheels only, which runs no package code)."""
    if os.geteuid() != 0:
        return {}
    try:
        probe = subprocess.run([sys.executable, "-c", "import pip"], user=UNPRIVILEGED_UID, group=UNPRIVILEGED_UID,
                               extra_groups=[], capture_output=True, cwd="/", check=False, env={"PATH": os.defpath},
                               timeout=60)
    except (OSError, subprocess.SubprocessError):  # this Python lies where nobody may not read it (~root)
        return {}
    return {"user": UNPRIVILEGED_UID, "group": UNPRIVILEGED_UID, "extra_groups": []} if probe.returncode == 0 else {}


def ensure_wheelhouse(requirements: Requirements, cache_dir: Path, *, progress: Progress | None = None) -> Path:
    """Linux CPython 3.11 wheels for checked `requirements` (`harness.intake`), downloaded once into
    a folder keyed by the normalised lines."""
    with _wheel_lock:
        return _wheelhouse(requirements, cache_dir, progress)


def _wheelhouse(requirements: Requirements, cache_dir: Path, progress: Progress | None) -> Path:
    dest = cache_dir / requirements.sha256[:16]
    stamp = dest / ".complete"
    if stamp.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"pip download {requirements.source} -> {dest}")
    with tempfile.TemporaryDirectory(prefix="harness-pip-") as tmp:
        work = Path(tmp)
        (work / "requirements.txt").write_text(requirements.text, encoding="ascii")  # the checked lines, not the file
        (work / "wheels").mkdir()
        drop = _unprivileged()
        env = {**pip_environment(work), **organiser_pip_config(work)}
        if drop:
            for item in work.iterdir():
                os.chown(item, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
            os.chown(work, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-cache-dir", "--only-binary=:all:",
               "--python-version", WHEEL_PYTHON, "--implementation", "cp", "--dest", str(work / "wheels"),
               "-r", str(work / "requirements.txt")]
        for platform in WHEEL_PLATFORMS:
            cmd += ["--platform", platform]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=work, env=env,
                              **drop)  # type: ignore[call-overload]
        if done.returncode != 0:
            last = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
            raise BuildError(
                f"{requirements.source}: pip download failed ({last[:300]}); on an air-gapped host copy a wheelhouse made "
                f"elsewhere into {dest} and create {stamp.name} in it"
            )
        for wheel in sorted((work / "wheels").iterdir()):
            if wheel.name.endswith(".whl") and wheel.is_file() and not wheel.is_symlink():
                shutil.copyfile(wheel, dest / wheel.name)
    stamp.touch()
    return dest


def prebuilt_image(spec: AlgorithmSpec, client, *, image_bytes: int = 64 * 1024**3,  # type: ignore[no-untyped-def]
                   progress: Progress | None = None) -> BuiltImage:
    """A manifest's prebuilt image: `image` (on this host, with the pinned digest: its image id or
    one of its registry digests) or `archive` (a `docker save` tar / tar.gz, inspected by
    `harness.intake` and loaded without any of its tags). Referred to by image id from here on; an
    archive's image is named `harness-<name>:archive-<hash>` by the harness, so the same archive is
    recognised by its hash and not loaded again."""
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
    if not os.path.lexists(spec.archive):
        raise BuildError(f"{spec.manifest}: archive {spec.archive} is missing; put the team's `docker save` file there")
    try:
        archive_sha = sha256_file(spec.archive, what="an image archive", max_bytes=image_bytes)
    except SubmissionError as exc:
        raise BuildError(str(exc)) from None
    repository, tag = f"{IMAGE_PREFIX}{spec.name}", f"archive-{archive_sha[:16]}"
    existing = _image_exists(client, f"{repository}:{tag}")
    if existing:
        return BuiltImage(spec.name, f"{repository}:{tag}", existing, cached=True)
    try:
        size = spec.archive.stat().st_size
        if progress:
            progress(f"loading {spec.archive.name} ({size / 1e9:.1f} GB)" if size >= 1e8 else
                     f"loading {spec.archive.name} ({size / 1e6:.1f} MB)")
        inspected = inspect_archive(spec.archive, max_bytes=image_bytes)
    except SubmissionError as exc:
        raise BuildError(str(exc)) from None
    if inspected.sha256 != archive_sha:  # the tag names the bytes hashed first: they must be the ones inspected
        raise BuildError(f"{spec.manifest}: archive {spec.archive} changed while it was read; let the upload finish, "
                         "then run again")
    return _load(spec, inspected, client, repository=repository, tag=tag, image_bytes=image_bytes)


def platform_name(spec: AlgorithmSpec) -> str:
    """The name an archive's image has on its contract's platform (FLARE: `teamname.tar.gz` is
    `teamname:latest`), shown and never tagged: harness refers to images by id and tags an archive
    `harness-<name>:archive-<hash>` only, so an archive named after another image (`ubuntu.tar.gz`,
    a base image, another team's) takes no name on this host. "" where the platform names none."""
    from harness.contracts import contract_of

    return contract_of(spec.contract).platform_image_name(spec.archive) if spec.archive is not None else ""


def _load(spec: AlgorithmSpec, inspected: ArchiveImage, client, *, repository: str, tag: str,  # type: ignore[no-untyped-def]
          image_bytes: int) -> BuiltImage:
    """`docker load` of the normalised archive (no tag of the submitter's), checked: exactly the one
    image whose configuration the archive holds; anything else is removed again."""
    import docker

    chunks, writer, outcome = normalised_archive(inspected, max_bytes=image_bytes)
    loaded: list[Any] = []
    failure = ""
    try:
        loaded = list(client.images.load(chunks))
    except (docker.errors.APIError, OSError) as exc:
        failure = " ".join(str(exc).split())[:200]
    finally:
        chunks.close()  # type: ignore[attr-defined]
        writer.join()
    problem = next((str(x) for x in outcome if isinstance(x, BaseException)), "")
    config_id = next((x for x in outcome if isinstance(x, str)), "")
    ids = [image.id for image in loaded]
    if problem or failure or ids != [config_id]:
        for image_id in ids:
            if not _tagged_elsewhere(client, image_id):
                with contextlib.suppress(Exception):
                    client.images.remove(image_id, force=False, noprune=False)
        reason = problem or (f"`docker load` failed ({failure})" if failure else
                             f"loaded {len(ids)} images, not the one its manifest names")
        raise BuildError(f"{spec.archive}: {reason}; is it a `docker save` archive of one image?")
    client.api.tag(config_id, repository, tag)
    return BuiltImage(spec.name, f"{repository}:{tag}", config_id, cached=False)


def _tagged_elsewhere(client, image_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether an image id already carries a tag (another algorithm's or the base image's identical
    content): it is not ours to remove."""
    try:
        return bool(client.images.get(image_id).tags)
    except Exception:  # noqa: BLE001
        return True


def _file_digest(hasher: Any, item: ContextFile) -> None:
    with open_context_file(item) as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)


def content_tag(spec: AlgorithmSpec, base_id: str, wheels: Path | None, files: list[ContextFile] | None = None, *,
                dockerfile: Dockerfile | None = None, requirements: Requirements | None = None) -> str:
    """Image tag from the checked Dockerfile, the algorithm folder's checked files (its requirements
    as normalised), the wheels and the base image."""
    assert spec.dockerfile is not None
    hasher = hashlib.sha256()
    hasher.update(dockerfile.data if dockerfile is not None else check_dockerfile(spec.dockerfile).data)
    hasher.update(base_id.encode())
    for item in files if files is not None else context_files(spec.directory):
        hasher.update(f"algorithm/{item.relative}\0".encode())
        if requirements is not None and item.relative == "requirements.txt":
            hasher.update(requirements.text.encode("ascii"))
        else:
            _file_digest(hasher, item)
    if wheels is not None:
        for wheel in sorted(wheels.glob("*.whl")):
            hasher.update(f"{wheel.name}:{wheel.stat().st_size}\0".encode())
    return f"{IMAGE_PREFIX}{spec.name}:{hasher.hexdigest()[:16]}"


@dataclass(frozen=True)
class CheckedBuild:
    """A submission's build inputs as intake checked them: what the daemon and pip get."""

    dockerfile: Dockerfile
    files: list[ContextFile]
    requirements: Requirements | None


def check_build(spec: AlgorithmSpec) -> CheckedBuild:
    """The build inputs of `spec`, checked by `harness.intake` before anything reads, hashes, copies,
    downloads or builds them; raises SubmissionError."""
    assert spec.dockerfile is not None
    dockerfile = check_dockerfile(spec.dockerfile)
    files = context_files(spec.directory)
    path = requirements_of(spec)
    return CheckedBuild(dockerfile, files, check_requirements(path) if path is not None else None)


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
    image_bytes: int = 64 * 1024**3,
) -> BuiltImage:
    """Build (or reuse) the image of one algorithm, or obtain its prebuilt image (`prebuilt_image`);
    raises BuildError with the failing step.

    The build is as untrusted as a run: its inputs are checked first (`harness.intake`), it has
    no network, each step's container gets `memory_bytes` (memory + swap), and a build still going
    after `time_limit_s` is abandoned (`BuildError`)."""
    client = client or _docker()
    if spec.dockerfile is None:
        return prebuilt_image(spec, client, image_bytes=image_bytes, progress=progress)
    base_id = _image_exists(client, base)
    if base_id is None:
        raise BuildError(f"base image {base} does not exist; run `harness images base` or pass --base with a local image")
    try:  # the submission's inputs, checked before anything reads, copies or builds them
        checked = check_build(spec)
        files, requirements = checked.files, checked.requirements
        wheels = ensure_wheelhouse(requirements, wheel_cache, progress=progress) if requirements else None
        tag = content_tag(spec, base_id, wheels, files, dockerfile=checked.dockerfile, requirements=requirements)
    except SubmissionError as exc:
        raise BuildError(str(exc)) from None
    existing = _image_exists(client, tag)
    if existing and not force:
        return BuiltImage(spec.name, tag, existing, cached=True)
    with tempfile.TemporaryDirectory(prefix=f"harness-build-{spec.name}-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_bytes(checked.dockerfile.data)  # the bytes that were checked
        try:
            for item in files:  # regular files only, read through the descriptor that was checked
                target = context / "algorithm" / item.relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if requirements is not None and item.relative == "requirements.txt":
                    target.write_text(requirements.text, encoding="ascii")  # the normalised lines
                    continue
                with open_context_file(item) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
        except SubmissionError as exc:
            raise BuildError(str(exc)) from None
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


def _checked_requirements(spec: AlgorithmSpec) -> Requirements | None:
    """The checked requirements of an algorithm that is built (not a prebuilt image), if it has
    any and they pass intake; None otherwise (the build reports what is wrong)."""
    path = requirements_of(spec) if spec.dockerfile is not None else None
    if path is None:
        return None
    try:
        return check_requirements(path)
    except SubmissionError:
        return None


def fetch_wheels(specs: list[AlgorithmSpec], wheel_cache: Path, *, progress: Progress | None = None) -> threading.Thread:
    """Start downloading the wheels of every spec whose requirements passed intake (while the base
    image is made, say); pip never sees a requirements file that was not checked. The builds take
    the wheels from the cache, or download again and report what failed."""
    checked = [requirements for spec in specs if (requirements := _checked_requirements(spec)) is not None]

    def fetch() -> None:
        for requirements in checked:
            with contextlib.suppress(BuildError, OSError):
                ensure_wheelhouse(requirements, wheel_cache, progress=progress)

    thread = threading.Thread(target=fetch, name="fetch-wheels", daemon=True)
    thread.start()
    return thread


def build_all(specs: list[AlgorithmSpec], *, base: str, wheel_cache: Path, progress: Progress | None = None,
              force: bool = False, time_limit_s: float = 3600.0, memory_bytes: int = 8 * 1024**3,
              jobs: int | None = None, image_bytes: int = 64 * 1024**3) -> list[tuple[AlgorithmSpec, BuiltImage | BuildError]]:
    """Every spec's image (`build_algorithm`) or its BuildError, in the specs' order.

    Builds run side by side (`jobs` at once, by default `build_jobs`): each is mostly pip unpacking
    wheels and the daemon writing layers, which one core does not keep busy. Images that install
    the same requirements are built one after the other, so that the later ones reuse the
    first's layers (Docker's build cache) instead of installing the same wheels at the same time.
    Wheels are downloaded one requirements file at a time. Nothing is measured while images build."""
    groups: dict[str, list[AlgorithmSpec]] = {}
    for spec in specs:
        requirements = _checked_requirements(spec)
        key = requirements.sha256 if requirements else f"alone:{spec.name}"
        groups.setdefault(key, []).append(spec)

    def one_group(group: list[AlgorithmSpec]) -> list[BuiltImage | BuildError]:
        client = docker_client()
        done: list[BuiltImage | BuildError] = []
        for spec in group:
            try:
                done.append(build_algorithm(spec, base=base, wheel_cache=wheel_cache, client=client, progress=progress,
                                            force=force, time_limit_s=time_limit_s, memory_bytes=memory_bytes,
                                            image_bytes=image_bytes))
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
