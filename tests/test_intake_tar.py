"""`harness.intake.extract_tar`: the one bounded extractor of a submission's tarball, run over each of
its three uses (MedPerf's files tarball, grand-challenge's model tarball, a team's upload), which
differ only in their `TarUse`: every hostile tarball is refused for each use, whole, with the
archive, the member and the fix on one line, and leaves nothing behind."""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import io
import lzma
import stat
import tarfile
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from harness import intake
from harness.intake import (
    FILES_TARBALL,
    MODEL_TARBALL,
    PartialUpload,
    SubmissionError,
    TarUse,
    TruncatedArchive,
    extract_tar,
    extracted_once,
    unpack_upload,
    upload_use,
)

USES = {"files": FILES_TARBALL, "model": MODEL_TARBALL, "upload": upload_use(10**9)}


@pytest.fixture(params=sorted(USES))
def use(request: pytest.FixtureRequest) -> TarUse:
    """Each use with small caps: 4096 bytes written, 4 entries."""
    return replace(USES[request.param], max_bytes=4096, max_entries=4)


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_short_run_of_pax_headers_is_read(tmp_path: Path) -> None:
    archive = _write(tmp_path / "a.tar", _pax_run(10))
    assert extract_tar(archive, tmp_path / "out", use=MODEL_TARBALL).entries == 1
    assert (tmp_path / "out" / "a").read_bytes() == b""


def test_a_whole_tarball_is_extracted_with_each_uses_modes(tmp_path: Path, use: TarUse) -> None:
    raw = _tar([(_info(".", tarfile.DIRTYPE, mode=0o700), None), (_info("./sub", tarfile.DIRTYPE, mode=0o700), None),
                (_info("./sub/weights.bin", mode=0o600), b"w" * 3000), (_info("./run.sh", mode=0o700), b"#!/bin/sh\n"),
                ], mode="w:gz")
    archive = _write(tmp_path / "a.tar.gz", raw)
    done = extract_tar(archive, tmp_path / "out", use=use)
    out = tmp_path / "out"
    assert (out / "sub" / "weights.bin").read_bytes() == b"w" * 3000
    assert (out / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert (done.sha256, done.bytes_written, done.entries) == (hashlib.sha256(raw).hexdigest(), 3010, 4)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in (out, *out.rglob("*"))}
    assert modes == {".": 0o755, "sub": 0o755, "sub/weights.bin": use.file_mode, "run.sh": use.executable_mode}
    expected = {FILES_TARBALL.what: (0o444, 0o444), MODEL_TARBALL.what: (0o644, 0o755), "an upload": (0o644, 0o755)}
    assert (use.file_mode, use.executable_mode) == expected[use.what]


NOISE = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(100))  # 3200 bytes gzip cannot shrink
CUT_GZIP = gzip.compress(_tar([(_info("a"), NOISE)]))[:2000]


# --- compressed: decompressed by us, no more than each read asks for ----------------------------

COMPRESSIONS = {"gz": gzip.compress, "bz2": functools.partial(bz2.compress, compresslevel=1), "xz": lzma.compress}
BIG_NOISE = NOISE * 40  # 128,000 bytes: more than one bzip2 block (100 kB at level 1)


@pytest.mark.parametrize("kind", sorted(COMPRESSIONS))
def test_each_compression_is_read_and_a_cut_or_damaged_stream_told_apart(tmp_path: Path, kind: str) -> None:
    """A whole tar in each compression is extracted and hashed as sent; the same stream cut short
    is a TruncatedArchive (an upload still being written), a damaged one is not."""
    raw = COMPRESSIONS[kind](_tar([(_info("a"), BIG_NOISE), (_info("b"), BIG_NOISE)]))
    archive = _write(tmp_path / f"a.tar.{kind}", raw)
    done = extract_tar(archive, tmp_path / "out", use=MODEL_TARBALL)
    assert (done.sha256, done.entries) == (hashlib.sha256(raw).hexdigest(), 2)
    assert (tmp_path / "out" / "b").read_bytes() == BIG_NOISE
    _write(archive, raw[: len(raw) * 3 // 4])
    with pytest.raises(TruncatedArchive, match=r"a\.tar\.\w+: the archive ends early \(at or after member '[ab]'\); "):
        extract_tar(archive, tmp_path / "cut", use=MODEL_TARBALL)
    damaged = bytearray(raw)
    damaged[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    _write(archive, bytes(damaged))
    with pytest.raises(SubmissionError) as caught:
        extract_tar(archive, tmp_path / "damaged", use=MODEL_TARBALL)
    assert type(caught.value) is SubmissionError, caught.value  # not a TruncatedArchive: waiting would not mend it
    assert caught.match(r"^\S+a\.tar\.\w+: (not a readable tar archive|a damaged header)")
    assert str(caught.value).endswith(MODEL_TARBALL.fix) and "\n" not in str(caught.value)


@functools.cache
def _bzip2_bomb() -> bytes:
    """A tar of one member of 32 MiB of zeros in about 100 bytes of bzip2 (tarfile's stream mode
    decompressed all it read at once: three times the member's size held to read its header)."""
    info = _info("zeros")
    info.size = 32 * 1024**2
    return bz2.compress(info.tobuf() + bytes(info.size) + bytes(1024), 9)


@pytest.mark.parametrize("cap", [4096, 10**9], ids=["refused", "extracted"])
def test_a_bzip2_bomb_is_read_in_bounded_memory(tmp_path: Path, use: TarUse, cap: int) -> None:
    archive = _write(tmp_path / "a.tar.bz2", _bzip2_bomb())
    tracemalloc.start()
    try:
        if cap == 4096:
            with pytest.raises(SubmissionError, match=r"member 'zeros' takes what is extracted past the cap of 4096"):
                extract_tar(archive, tmp_path / "out", use=replace(use, max_bytes=cap))
        else:
            assert extract_tar(archive, tmp_path / "out", use=replace(use, max_bytes=cap)).bytes_written == 32 * 1024**2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2, f"{peak / 1024**2:.0f} MiB held"


def _cut_between_members() -> bytes:
    """A plain tar cut right after its first member: no second header, no end-of-archive blocks."""
    whole = _tar([(_info("a"), b"x" * 600), (_info("b"), b"y")])
    return whole[: 512 + 1024]


def _damaged_second_header() -> bytes:
    whole = bytearray(_tar([(_info("a"), b"x" * 600), (_info("b"), b"y")]))
    whole[512 + 1024: 512 + 1024 + 100] = b"\xff" * 100  # the second header's name and its checksum no longer agree
    return bytes(whole)


def _pax_run(count: int) -> bytes:
    """`count` pax headers in a row before a file (tarfile follows them by recursion)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for i in range(count):
            record = b"13 comment=x\n"
            info = _info(f"pax{i}", tarfile.XHDTYPE)
            info.size = len(record)
            archive.addfile(info, io.BytesIO(record))
        archive.addfile(_info("a"), io.BytesIO(b""))
    return buffer.getvalue()


def _huge_pax() -> bytes:
    """A pax header of 2 MiB (tarfile reads one whole into memory): a few KiB compressed."""
    info = _info("a")
    info.pax_headers = {"comment": "x" * 2 * 1024**2}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


# (case, archive bytes, the error, its message after "<archive>: ")
HOSTILE = [
    ("dot-dot", _tar([(_info("../evil"), b"x")]), SubmissionError,
     r"member '\.\./evil' leaves the folder it is extracted to \(an absolute path or '\.\.'\); "),
    ("dot-dot-inside", _tar([(_info("a/../../evil"), b"x")]), SubmissionError, r"member 'a/\.\./\.\./evil' leaves"),
    ("absolute", _tar([(_info("/etc/evil"), b"x")]), SubmissionError, r"member '/etc/evil' leaves the folder"),
    ("symlink", _tar([(_info("link", tarfile.SYMTYPE, link="/etc/passwd"), None)]), SubmissionError,
     r"member 'link' is a link or a special file \(a device, a FIFO\), not a regular file or a folder; "),
    ("hardlink", _tar([(_info("a"), b"x"), (_info("hard", tarfile.LNKTYPE, link="a"), None)]), SubmissionError,
     r"member 'hard' is a link or a special file"),
    ("device", _tar([(_info("null", tarfile.CHRTYPE), None)]), SubmissionError, r"member 'null' is a link or a special"),
    ("fifo", _tar([(_info("fifo", tarfile.FIFOTYPE), None)]), SubmissionError, r"member 'fifo' is a link or a special"),
    ("twice", _tar([(_info("a"), b"1"), (_info("a"), b"2")]), SubmissionError,
     r"member 'a' is given twice \(or as a folder too\); pack each file once"),
    ("file-under-file", _tar([(_info("a"), b"1"), (_info("a/b"), b"2")]), SubmissionError,
     r"member 'a/b' lies under a file of the same archive"),
    ("folder-over-file", _tar([(_info("a"), b"1"), (_info("a", tarfile.DIRTYPE), None)]), SubmissionError,
     r"member 'a' lies under a file of the same archive, or is a folder given as a file too"),
    ("file-over-folder", _tar([(_info("a", tarfile.DIRTYPE), None), (_info("a"), b"1")]), SubmissionError,
     r"member 'a' is given twice \(or as a folder too\)"),
    ("long-name", _tar([(_info("x" * 300), b"1")]), SubmissionError, r"member 'x+…' has a name no file system takes"),
    ("entries", _tar([(_info(f"f{i}"), b"") for i in range(5)]), SubmissionError,
     r"member 'f4' is entry 5, past the cap of 4 entries for (a files tarball|a model tarball|an upload); "
     "pack fewer, larger files$"),
    ("bomb", _tar([(_info("zeros"), bytes(1024**2))], mode="w:gz"), SubmissionError,
     r"member 'zeros' takes what is extracted past the cap of 4096 bytes for .*; ship fewer or smaller files$"),
    ("bytes-in-all", _tar([(_info("a"), b"1" * 3000), (_info("b"), b"2" * 3000)]), SubmissionError,
     r"member 'b' takes what is extracted past the cap of 4096 bytes"),
    ("pax-run", _pax_run(2000), SubmissionError,
     r"more than 16 extended headers \(pax or GNU long name\) in a row before its first member; "),
    ("huge-pax", _huge_pax(), SubmissionError,
     r"an extended header \(pax or GNU long name\) of 2097\d+ bytes, over the cap of 1048576 before its first member; "),
    ("junk", b"not a tar at all" * 100, SubmissionError,
     r"not a readable tar archive \(plain, gzip, bzip2 or xz\) before its first member \(ReadError\); "),
    ("bad-gzip", b"\x1f\x8b\x08" + b"not gzip at all" * 10, SubmissionError, r"not a readable tar archive .*; "),
    ("short-junk", b"\x1f\x8b" + b"not gzip at all" * 10, SubmissionError, r"not a readable tar archive .*; "),
    ("damaged-header", _damaged_second_header(), SubmissionError, r"a damaged header after member 'a'; "),
    ("cut-inside-data", _tar([(_info("a"), NOISE)])[:2000], TruncatedArchive,
     r"the archive ends early \(at or after member 'a'\); it is still being written or was cut short: "),
    ("cut-inside-gzip", CUT_GZIP, TruncatedArchive,
     r"the archive ends early \(at or after member 'a'\)"),
    ("cut-between-members", _cut_between_members(), TruncatedArchive, r"the archive ends early \(after member 'a'\)"),
    ("cut-between-members-gzip", gzip.compress(_cut_between_members()), TruncatedArchive,
     r"the archive ends early \(after member 'a'\)"),
    ("cut-inside-header", _tar([(_info("a"), b"x" * 600), (_info("b"), b"y")])[: 512 + 1024 + 200], TruncatedArchive,
     r"the archive ends early \(after member 'a'\)"),
]


@pytest.mark.parametrize("case, raw, error, message", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_tarball_is_refused_whole_for_each_use(tmp_path: Path, use: TarUse, case: str, raw: bytes,
                                                         error: type[SubmissionError], message: str) -> None:
    (tmp_path / "in").mkdir()
    archive = _write(tmp_path / "in" / "a.tar.gz", raw)
    with pytest.raises(SubmissionError) as caught:
        extract_tar(archive, tmp_path / "in" / "out", use=use)
    assert type(caught.value) is error
    text = str(caught.value)
    assert text.startswith(f"{archive}: ") and "\n" not in text
    assert caught.match(r"^" + str(archive).replace(".", r"\.") + ": " + message)
    if message.endswith("; "):  # the use's own fix closes the line
        assert text.endswith(use.fix)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.tar.gz", "in"]  # nothing left, nothing outside


def test_a_member_name_is_shown_on_one_line(tmp_path: Path, use: TarUse) -> None:
    archive = _write(tmp_path / "a.tar", _tar([(_info("evil\nname\x1b[31m", tarfile.SYMTYPE, link="/x"), None)]))
    with pytest.raises(SubmissionError, match=r"member 'evil\\x0aname\\x1b\[31m' is a link") as caught:
        extract_tar(archive, tmp_path / "out", use=use)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_an_archive_over_the_cap_as_sent_is_refused_before_it_is_read(tmp_path: Path, use: TarUse) -> None:
    archive = _write(tmp_path / "a.tar", _tar([(_info("a"), b"1" * 2000)]))
    with pytest.raises(SubmissionError, match=rf"a\.tar: \d+ bytes, over the cap of 1024 for {use.what}; "):
        extract_tar(archive, tmp_path / "out", use=replace(use, max_archive_bytes=1024))
    assert not (tmp_path / "out").exists()


# --- extracted once per content (the files and model caches) -------------------------------------


def test_a_tarball_is_extracted_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _write(tmp_path / "a.tar.gz", _tar([(_info("w.bin"), b"w" * 10)], mode="w:gz"))
    folder = extracted_once(archive, tmp_path / "cache", use=MODEL_TARBALL)
    assert folder == tmp_path / "cache" / hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (folder / "w.bin").read_bytes() == b"w" * 10
    monkeypatch.setattr(intake, "extract_tar", lambda *a, **k: pytest.fail("extracted twice"))
    copy = _write(tmp_path / "b.tar.gz", archive.read_bytes())  # the same content under another name
    assert extracted_once(copy, tmp_path / "cache", use=MODEL_TARBALL) == folder
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # no scratch folder left


def test_a_refused_or_changed_tarball_leaves_no_folder_in_the_cache(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _write(tmp_path / "bad.tar", _tar([(_info("../evil"), b"x")]))
    with pytest.raises(SubmissionError, match=r"bad\.tar: member '\.\./evil' leaves"):
        extracted_once(bad, tmp_path / "cache", use=FILES_TARBALL)
    good = _write(tmp_path / "good.tar", _tar([(_info("a"), b"x")]))
    monkeypatch.setattr(intake, "sha256_file", lambda *a, **k: "0" * 64)  # hashed before it was changed
    with pytest.raises(SubmissionError, match=r"good\.tar: changed while it was read; do not change a files tarball"):
        extracted_once(good, tmp_path / "cache", use=FILES_TARBALL)
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "evil").exists()


# --- the upload's own: a cut archive is partial, a damaged one is not ---------------------------


@pytest.mark.parametrize("raw, partial", [
    (_cut_between_members(), True), (CUT_GZIP, True),
    (_damaged_second_header(), False), (b"not a tar at all" * 100, False)])
def test_an_upload_that_ends_early_is_partial_and_a_damaged_one_invalid(tmp_path: Path, raw: bytes,
                                                                        partial: bool) -> None:
    archive = _write(tmp_path / "u.tar.gz", raw)
    with pytest.raises(SubmissionError, match=r"u\.tar\.gz: ") as caught:
        unpack_upload(archive, tmp_path / "out", max_bytes=10**6)
    assert isinstance(caught.value, PartialUpload) is partial
    assert not (tmp_path / "out").exists()
