"""`harness.intake.inspect_archive` and `normalised_archive` against a hostile `docker save` archive
read by tarfile's own walk: a long run of pax headers (tarfile follows them by recursion), an
extended header of 200 MiB compressed to a few hundred KiB (tarfile reads one whole into memory, and
no byte cap counts it), and an archive cut short (tarfile stops on a missing header as on the end of
the archive). Each is refused on one line naming the archive, the member and the fix, with bounded
memory; a cut archive is never taken as whole. No Docker."""

from __future__ import annotations

import bz2
import gzip
import json
import re
import struct
import tarfile
import tracemalloc
import zlib
from pathlib import Path

import pytest

from harness.intake import SubmissionError, TruncatedArchive, inspect_archive, normalised_archive

FIX = "save the image again with `docker save IMAGE -o team.tar`"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
MANIFEST = json.dumps([{"Config": "c.json", "RepoTags": ["team:latest"], "Layers": ["l/layer.tar"]}]).encode()
LAYER = bytes(range(256)) * 8  # 2 KiB, not all zeros: a cut inside it is not a run of end blocks


def _member(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    """One member as tar writes it: its header block, its data, padded to 512 bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


def _save(*, before_manifest: bytes = b"", end: bool = True) -> tuple[bytes, dict[str, int]]:
    """A `docker save` archive of one image (config, layer, manifest.json, repositories), with
    `before_manifest` spliced in before manifest.json; also where each member starts and ends."""
    parts = [("c.json", _member("c.json", CONFIG)), ("l/layer.tar", _member("l/layer.tar", LAYER)),
             ("", before_manifest), ("manifest.json", _member("manifest.json", MANIFEST)),
             ("repositories", _member("repositories", b'{"team":{"latest":"x"}}' + b"r" * 600))]
    offsets: dict[str, int] = {}
    raw = b""
    for name, part in parts:
        offsets[name] = len(raw)
        raw += part
        offsets[name + ":end"] = len(raw)
    return raw + (bytes(1024) if end else b""), offsets


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_whole_archive_is_read(tmp_path: Path) -> None:
    for name, data in (("team.tar", _save()[0]), ("team.tar.gz", gzip.compress(_save()[0]))):
        image = inspect_archive(_write(tmp_path / name, data), max_bytes=10**6)
        assert (image.config, image.layers, image.tags) == ("c.json", ("l/layer.tar",), ("team:latest",))


def _pax_run(count: int) -> bytes:
    """`count` pax headers in a row, then a file: tarfile follows each by a recursive call."""
    record = b"20 comment=abcdefgh\n"
    return b"".join(_member(f"pax{i}", record, tarfile.XHDTYPE) for i in range(count)) + _member("x", b"1")


def test_a_short_run_of_pax_headers_is_read(tmp_path: Path) -> None:
    raw, _ = _save(before_manifest=_pax_run(10))
    assert inspect_archive(_write(tmp_path / "team.tar", raw), max_bytes=10**6).config == "c.json"


def _refused(path: Path, message: str, error: type[SubmissionError] = SubmissionError) -> None:
    with pytest.raises(SubmissionError) as caught:
        inspect_archive(path, max_bytes=10**7)
    text = str(caught.value)
    assert type(caught.value) is error, text
    assert "\n" not in text and text.startswith(f"{path}: ") and text.endswith(FIX), text
    assert caught.match(message)


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_a_long_run_of_pax_headers_is_refused_by_name(tmp_path: Path, compress: bool) -> None:
    """2,000 pax headers in a row: a RecursionError inside tarfile before, now refused at the 17th."""
    raw, _ = _save(before_manifest=_pax_run(2000))
    path = _write(tmp_path / "team.tar", gzip.compress(raw) if compress else raw)
    _refused(path, r"more than 16 extended headers \(pax or GNU long name\) in a row after member 'l/layer.tar'; ")


def _bomb(path: Path, kind: bytes, size: int) -> Path:
    """A gzipped `docker save` archive with an extended header (pax or GNU long name) of `size`
    bytes before manifest.json: a few hundred KiB on disk. The header's zeros are one MiB deflated
    once after a full flush (so it refers to nothing before it) and written `size` // 1 MiB times."""
    head, offsets = _save()
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type, info.size = kind, size
    zeros = bytes(1024**2)
    parts = [(head[: offsets["manifest.json"]] + info.tobuf(tarfile.GNU_FORMAT), 1), (zeros, size // len(zeros)),
             (head[offsets["manifest.json"]:], 1)]
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate: the gzip container is written here
    crc = length = 0
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        for data, times in parts:
            block = packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH)
            for _ in range(times):
                out.write(block)
                crc = zlib.crc32(data, crc)
                length += len(data)
        out.write(packer.flush() + struct.pack("<II", crc, length & 0xFFFFFFFF))
    return path


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-long-name"])
def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    """200 MiB of header in a 200 KiB file: tarfile read it whole (twice over, joining chunks), and
    no cap counts it; now refused from its size field, memory bounded."""
    path = _bomb(tmp_path / "team.tar.gz", kind, 200 * 1024**2)
    assert path.stat().st_size < 1024**2
    tracemalloc.start()
    try:
        with pytest.raises(SubmissionError) as caught:
            inspect_archive(path, max_bytes=10**6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2, f"{peak / 1024**2:.0f} MiB held while reading"
    text = str(caught.value)
    assert text == (f"{path}: an extended header (pax or GNU long name) of {200 * 1024**2} bytes, over the cap of "
                    f"1048576 after member 'l/layer.tar'; {FIX}")


def _cuts() -> list[tuple[str, bytes, str]]:
    raw, at = _save()
    whole_gz = gzip.compress(raw)
    return [
        ("no-end-blocks", raw[: at["repositories:end"]], r"the archive ends early \(after member 'repositories'\)"),
        ("cut-between-members", raw[: at["repositories"]], r"the archive ends early \(after member 'manifest.json'\)"),
        ("cut-before-manifest", raw[: at["manifest.json"]], r"the archive ends early \(after member 'l/layer.tar'\)"),
        ("cut-inside-header", raw[: at["repositories"] + 200], r"the archive ends early \(after member 'manifest.json'\)"),
        ("cut-inside-data", raw[: at["repositories"] + 512 + 100],
         r"the archive ends early \((at or )?after member 'repositories'\)"),
        ("cut-inside-layer", raw[: at["l/layer.tar"] + 1024], r"the archive ends early \((at or )?after member 'l/layer.tar'\)"),
        ("gz-between-members", gzip.compress(raw[: at["repositories"]]),
         r"the archive ends early \(after member 'manifest.json'\)"),
        ("gz-stream-cut", whole_gz[: len(whole_gz) - 40], r"the archive ends early \((at or )?after member '[^']+'\)"),
    ]


CUTS = _cuts()


@pytest.mark.parametrize("case, raw, message", CUTS, ids=[c[0] for c in CUTS])
def test_a_cut_archive_is_never_taken_as_whole(tmp_path: Path, case: str, raw: bytes, message: str) -> None:
    path = _write(tmp_path / "team.tar", raw)
    _refused(path, message + r"; it is still being written or was cut short: ", TruncatedArchive)


def _loaded(path: Path, replacement: bytes) -> BaseException | None:
    """inspect_archive on `path`, then the file replaced by `replacement` before `docker load`
    reads its copy: what normalised_archive's writer reports."""
    image = inspect_archive(path, max_bytes=10**7)
    path.write_bytes(replacement)
    chunks, writer, outcome = normalised_archive(image, max_bytes=10**7)
    b"".join(chunks)
    writer.join()
    return next((x for x in outcome if isinstance(x, BaseException)), None)


def test_the_copy_for_docker_load_is_read_as_inspected(tmp_path: Path) -> None:
    raw, at = _save()
    path = _write(tmp_path / "team.tar", raw)
    assert _loaded(path, raw) is None
    cases = [
        (raw[: at["repositories"]], TruncatedArchive, r"the archive ends early \(after member 'manifest.json'\)"),
        (_save(before_manifest=_pax_run(2000))[0], SubmissionError,
         r"more than 16 extended headers \(pax or GNU long name\) in a row after member 'l/layer.tar'"),
        (raw + bytes(10240), SubmissionError, r"changed since it was inspected"),
    ]
    for replacement, error, message in cases:
        path.write_bytes(raw)
        problem = _loaded(path, replacement)
        assert type(problem) is error, problem
        text = str(problem)
        assert text.startswith(f"{path}: ") and "\n" not in text
        assert re.search(message, text), text


def test_a_bzip2_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A layer of 32 MiB of zeros in an archive of about 150 bytes of bzip2: tarfile's stream mode
    decompressed it all at once (96 MiB held); now read a MiB at a time, and refused by size."""
    raw, at = _save()
    layer = tarfile.TarInfo("big/layer.tar")
    layer.size = 32 * 1024**2
    path = _write(tmp_path / "team.tar.bz2", bz2.compress(raw[: at["manifest.json"]] + layer.tobuf() +
                                                          bytes(layer.size) + raw[at["manifest.json"]:], 9))
    assert path.stat().st_size < 1024
    tracemalloc.start()
    try:
        with pytest.raises(SubmissionError, match=r"team\.tar\.bz2: holds more than 1000000 bytes uncompressed"):
            inspect_archive(path, max_bytes=10**6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2, f"{peak / 1024**2:.0f} MiB held"


class _NoImages:
    """A Docker client with no image on it that must not be asked to load one."""

    class images:  # noqa: N801 - the SDK's attribute name
        @staticmethod
        def get(ref: str) -> None:
            import docker

            raise docker.errors.ImageNotFound(ref)

        @staticmethod
        def load(chunks: object) -> None:
            raise AssertionError("docker load must not see an archive that changed")


def test_an_archive_that_changes_between_its_hash_and_its_inspection_is_not_loaded(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's tag names the bytes hashed first; a file swapped before the inspection (another
    whole archive, so the inspection alone passes) must not be loaded under that tag."""
    from types import SimpleNamespace

    from harness import build
    from harness.build import BuildError

    archive = _write(tmp_path / "team.tar", _save()[0])
    real = build.inspect_archive

    def swapped(path: Path, *, max_bytes: int):  # type: ignore[no-untyped-def]
        path.write_bytes(gzip.compress(_save()[0]))  # written while the harness reads it
        return real(path, max_bytes=max_bytes)

    monkeypatch.setattr(build, "inspect_archive", swapped)
    spec = SimpleNamespace(name="team", image=None, archive=archive, manifest=tmp_path / "algorithm.toml",
                           contract="harness")
    with pytest.raises(BuildError, match=r"archive .*team\.tar changed while it was read; let the upload finish"):
        build.prebuilt_image(spec, _NoImages(), image_bytes=10**6)  # type: ignore[arg-type]
