"""The Docker runner's copy-out of /output's tar stream (no Docker needed): only the contract's files
are written, the rest is counted and listed, and a stream longer than its bound stops at once."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.acceptance import ArchiveTooLong, archive_bound, copy_out


def _stream(entries: list[tuple[str, bytes | None]], *, hard_link: tuple[str, str] | None = None,
            chunk: int = 4096) -> tuple[Iterator[bytes], list[int]]:
    """A tar of `output/` as the daemon streams it (None: a folder), in chunks; and how many chunks were read."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(_dir("output"))
        for name, data in entries:
            if data is None:
                archive.addfile(_dir(f"output/{name}"))
            else:
                info = tarfile.TarInfo(f"output/{name}")
                info.size, info.mtime = len(data), 1_700_000_000
                archive.addfile(info, io.BytesIO(data))
        if hard_link is not None:
            info = tarfile.TarInfo(f"output/{hard_link[0]}")
            info.type, info.linkname = tarfile.LNKTYPE, f"output/{hard_link[1]}"
            archive.addfile(info)
    raw = buffer.getvalue()
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(raw), chunk):
            read.append(start)
            yield raw[start:start + chunk]

    return chunks(), read


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_the_contract_is_copied_and_the_rest_counted(tmp_path: Path) -> None:
    label = b"L" * 5000
    chunks, _ = _stream([("case.nii.gz", label), ("notes", None), ("notes/a.txt", b"x" * 10), ("empty", b"")],
                        hard_link=("again.nii.gz", "case.nii.gz"))
    copied = copy_out(chunks, tmp_path, ("case.nii.gz",))
    assert (tmp_path / "case.nii.gz").read_bytes() == label
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz"]
    assert copied.others == ["notes", "empty", "again.nii.gz"]
    assert copied.first == 1_700_000_000
    # pages: 5000 B -> 8 KiB, 10 B -> 4 KiB, an empty file none; the hard link holds no page of its
    # own but takes an inode slot, as tmpfs counts each link
    assert (copied.held, copied.entries) == (8192 + 4096, 5)


def test_a_stream_past_its_bound_stops_there(tmp_path: Path) -> None:
    big = b"\0" * (4 << 20)  # as a sparse file reads: zeros, whatever it holds
    chunks, read = _stream([("sparse.bin", big), ("case.nii.gz", b"L")], chunk=64 * 1024)
    with pytest.raises(ArchiveTooLong):
        copy_out(chunks, tmp_path, ("case.nii.gz",), bound=256 * 1024)
    assert len(read) * 64 * 1024 <= 256 * 1024 + 2 * 64 * 1024  # the bound and a chunk, not the 4 MiB
    chunks, _ = _stream([("sparse.bin", big), ("case.nii.gz", b"L")])
    assert copy_out(chunks, tmp_path, ("case.nii.gz",), bound=archive_bound(4 << 20, 10)).entries == 2


def test_the_bound_is_the_limit_plus_headers() -> None:
    assert archive_bound(64 * 1024**2, 1000) == 64 * 1024**2 + 1001 * 16 * 1024 + 1024**2
