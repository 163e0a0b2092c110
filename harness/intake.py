"""Intake: the one door in. Everything a submission sends is read here, and only here, with our
own bounded parsers, before any host tool (pip, the daemon's Dockerfile parser, `docker load`,
PyYAML) sees a byte of it; each tool then gets a normalised, checked copy.

- **Files** (`read_file`, `confined`, `context_files`): a path a manifest names must stay inside
  the submission's own folder, lexically and without following any link on the way; only regular
  files with one link (no symbolic or hard link, device, FIFO or socket), without holes (a sparse
  file reads as far more than it holds), within the challenge's size caps, checked before a byte
  is read and read through the descriptor that was checked.
- **requirements.txt** (`check_requirements`): read in pip's own grammar (its encoding rules, line
  joining, comments, `${VAR}` expansion and the split between a requirement and its options), so
  that what we check is what pip would read; only package requirements (name, extras, version
  specifiers, markers, `--hash`) pass, and pip gets the normalised lines, never the file.
- **Dockerfile** (`check_dockerfile`): read in the Docker parser's grammar (parser directives, the
  escape character, line continuation, comment lines inside continuations); FROM only the harness's
  base, nothing fetched (`ADD` of anything but a plain path, `COPY --from` an image, `ONBUILD`), no
  variable in a source; the daemon gets the bytes that were checked.
- **YAML** (`load_yaml`): size-capped, scanned token by token first (no anchor, alias or tag, a
  depth and token budget), only then handed to PyYAML's safe loader.
- **Tarballs** (`extract_tar`, `extracted_once`): MedPerf's additional_files.tar.gz, grand-challenge's
  model.tar.gz and a team's upload, extracted by one bounded streaming walk: regular files and
  folders only, every name inside the folder, each once, entry and byte caps counted as written;
  the uses differ only in a `TarUse` (caps, file modes, the name in messages). An archive that ends
  early is a `TruncatedArchive`, so an upload still being written is looked at again later.
- **Image archives** (`inspect_archive`, `normalised_archive`): `docker save` tars read header by
  header: exactly one image, bounded entry count and uncompressed size, no path that leaves the
  archive, no compressed layer; `docker load` gets a copy with every tag removed, so nothing a
  submitter loads can take another image's name, read again from a file that must hash as inspected.

Every tar a submission sends is walked by one reader (`_TarWalk`) in front of tarfile: gzip, bzip2
and xz decompressed by us no more than each read asks for (tarfile's stream mode decompresses all it
reads at once), an extended header (pax or GNU long name, which tarfile reads whole into memory and
follows by recursion) at most 1 MiB and at most 16 in a row, and the archive whole only on tar's
end-of-archive blocks (tarfile stops quietly on a missing or cut header as at the real end).

Every problem is a `SubmissionError` (a `SpecError`): one line naming the file, the line or key at
fault and the fix, never quoting content; that algorithm fails and the others go on.
"""

from __future__ import annotations

import bz2
import codecs
import errno
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Self

from harness.errors import SpecError

IGNORED_DIRS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = (".pyc",)
MANIFEST_BYTES = 1024**2
REQUIREMENTS_BYTES = 1024**2
DOCKERFILE_BYTES = 256 * 1024
YAML_BYTES = 1024**2
PARAMETERS_BYTES = 64 * 1024**2
YAML_TOKENS = 200_000
YAML_DEPTH = 64
ARCHIVE_ENTRIES = 100_000
ARCHIVE_MANIFEST_BYTES = 1024**2
ARCHIVE_CONFIG_BYTES = 8 * 1024**2


class SubmissionError(SpecError):
    """A submission's input breaks the challenge's rules."""

    @classmethod
    def named(cls, path: Path | str) -> str:
        return shown(path)


def shown(path: Path | str) -> str:
    """A path as it is safe to print: control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(path).encode("utf-8", "surrogateescape")
                   .decode("utf-8", "backslashreplace"))



# --- files -------------------------------------------------------------------------------------


def confined(root: Path, value: str | Path, *, key: str, where: Path) -> Path:
    """`value` (relative to `root`) as an absolute path inside `root`, decided lexically (no `..`
    that leaves it, no absolute path) and with no symbolic link on the way; nothing is read."""
    text = str(value)
    if not text.strip() or "\0" in text:
        raise SubmissionError.of(where, f"key '{key}' = {shown(text)!r}; give a relative path inside the algorithm's folder")
    joined = os.path.normpath(os.path.join(os.path.abspath(root), text))
    base = os.path.abspath(root)
    if os.path.isabs(text) or os.path.commonpath([joined, base]) != base:
        raise SubmissionError.of(where, f"key '{key}' = {shown(text)!r} leaves the algorithm's folder; keep the file "
                                 "inside it")
    current = Path(base)
    for part in Path(joined).relative_to(base).parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                raise SubmissionError.of(where, f"key '{key}' = {shown(text)!r} passes through the symbolic link "
                                         f"{shown(current.relative_to(base))} (in the algorithm's folder); put the "
                                         "file itself inside the algorithm's folder")
        except FileNotFoundError:
            break
    return Path(joined)


def _open_regular(path: Path, *, what: str, max_bytes: int, fix: str) -> tuple[int, os.stat_result]:
    """An open descriptor of `path` and its stat, refusing a link, a special file, a hard link, a
    file with holes and one over `max_bytes`; the final component is opened without following a
    link and without blocking (a FIFO never blocks the harness)."""
    try:  # what is not a regular file is refused before it is opened (a device's open may act)
        _check_regular(path, os.lstat(path), what=what, max_bytes=max_bytes, fix=fix, fd=None)
    except FileNotFoundError:
        raise SubmissionError.of(path, f"cannot open {what} (No such file or directory); {fix}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SubmissionError.of(path, f"a symbolic link in {what}; replace it by the file itself (links could "
                                  "bring in files from outside the algorithm folder)") from None
        raise SubmissionError.of(path, f"cannot open {what} ({exc.strerror}); {fix}") from None
    try:
        info = os.fstat(fd)
        _check_regular(path, info, what=what, max_bytes=max_bytes, fix=fix, fd=fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _check_regular(path: Path, info: os.stat_result, *, what: str, max_bytes: int, fix: str, fd: int | None) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise SubmissionError.of(path, f"a symbolic link in {what}; replace it by the file itself (links could "
                              "bring in files from outside the algorithm folder)")
    if not stat.S_ISREG(info.st_mode):
        raise SubmissionError.of(path, f"not a regular file (a device, FIFO or socket, or a folder) in {what}; {fix}")
    if info.st_nlink > 1:
        raise SubmissionError.of(path, f"a hard link ({info.st_nlink} names for one file) in {what}; copy the file "
                              "(`cp --no-preserve=links`): a hard link can bring in a file from outside the folder")
    if info.st_size > max_bytes:
        raise SubmissionError.of(path, f"{info.st_size} bytes, over the cap of {max_bytes} for {what}; {fix}")
    if fd is not None and info.st_size > 0 and _has_hole(fd, info.st_size):
        raise SubmissionError.of(path, f"a sparse file (holes that read as zeros) in {what}; write it out in full "
                              "(`cp --sparse=never`)")


def _has_hole(fd: int, size: int) -> bool:
    """Whether the file has a hole before its end (SEEK_HOLE; a file system without it says no)."""
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < size
    except (OSError, AttributeError):
        return False
    finally:
        os.lseek(fd, 0, os.SEEK_SET)


def read_file(path: Path, *, what: str, max_bytes: int, fix: str = "check the file") -> bytes:
    """The bytes of one submission file, checked (`_open_regular`) and read through the checked
    descriptor, never more than `max_bytes`."""
    fd, info = _open_regular(Path(path), what=what, max_bytes=max_bytes, fix=fix)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SubmissionError.of(path, f"grew past the cap of {max_bytes} bytes for {what} while read; {fix}")
    return data


def open_file(path: Path, *, what: str, max_bytes: int, fix: str = "check the file") -> io.BufferedReader:
    """A checked submission file opened for reading (the caller reads it in chunks)."""
    fd, _ = _open_regular(Path(path), what=what, max_bytes=max_bytes, fix=fix)
    return os.fdopen(fd, "rb")


def sha256_file(path: Path, *, what: str, max_bytes: int) -> str:
    """The SHA-256 of a checked submission file, read in chunks."""
    digest = hashlib.sha256()
    with open_file(path, what=what, max_bytes=max_bytes) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ContextFile:
    relative: str  # POSIX path inside the algorithm folder
    path: Path
    size: int
    inode: tuple[int, int] = (0, 0)  # (st_dev, st_ino) when walked: a file swapped afterwards is refused


def context_files(folder: Path, *, max_files: int = 10_000, max_bytes: int = 4 * 1024**3) -> list[ContextFile]:
    """The regular files of a submission folder (a build context, a model folder), walked without
    following any link; raises SubmissionError for a link, a hard link, a special file, a sparse
    file, or a folder beyond the bounds."""
    root = Path(folder)
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SubmissionError.of(root, "the algorithm folder must be a real folder, not a link; copy it in place")
    found: list[ContextFile] = []
    total = 0
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        keep = []
        for name in sorted(dirs):
            entry = here / name
            if stat.S_ISLNK(os.lstat(entry).st_mode):
                raise SubmissionError.of(entry, "a symbolic link in the build context; replace it by the files "
                                      "themselves (links could bring in files from outside the algorithm folder)")
            if name not in IGNORED_DIRS:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            entry = here / name
            entry_info = os.lstat(entry)
            if name.endswith(IGNORED_SUFFIXES) and stat.S_ISREG(entry_info.st_mode) and entry_info.st_nlink == 1:
                continue
            _check_regular(entry, entry_info, what="the build context", max_bytes=max_bytes,
                           fix="remove it from the algorithm folder", fd=None)
            if entry_info.st_blocks * 512 < entry_info.st_size:  # holes are possible: ask the file itself
                fd, _ = _open_regular(entry, what="the build context", max_bytes=max_bytes,
                                      fix="remove it from the algorithm folder")
                os.close(fd)
            total += entry_info.st_size
            found.append(ContextFile(entry.relative_to(root).as_posix(), entry, entry_info.st_size,
                                     (entry_info.st_dev, entry_info.st_ino)))
            if len(found) > max_files or total > max_bytes:
                raise SubmissionError.of(root, f"more than {max_files} files or {max_bytes} bytes in the algorithm "
                                      "folder; ship large models as one file, or raise the challenge's build limits")
    return sorted(found, key=lambda f: f.relative)


def folder_digest(folder: Path) -> str:
    """SHA-256 over a submission folder's checked files (names and bytes, read in chunks)."""
    hasher = hashlib.sha256()
    for item in context_files(folder):
        hasher.update(item.relative.encode() + b"\0")
        with open_context_file(item) as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
    return hasher.hexdigest()


def open_context_file(item: ContextFile) -> io.BufferedReader:
    """A walked file opened again for copying or hashing: still the same regular file, unlinked to
    anything else (a file swapped for a link or another file since the walk is refused)."""
    handle = open_file(item.path, what="the build context", max_bytes=max(item.size, 0),
                       fix="do not change the algorithm folder while it is being built")
    info = os.fstat(handle.fileno())
    if item.inode != (0, 0) and (info.st_dev, info.st_ino) != item.inode:
        handle.close()
        raise SubmissionError.of(item.path, "changed while the build context was read; do not change the "
                              "algorithm folder while it is being built")
    return handle


# --- submission tarballs: one bounded extractor for every use --------------------------------------
# MedPerf's additional_files.tar.gz, grand-challenge's model.tar.gz and a team's upload are read by
# the one walk below; what differs between them (caps, file modes, what messages call the archive)
# is a TarUse value.

FILES_TARBALL_BYTES = 4 * 1024**3  # a files tarball: as sent, and once extracted
FILES_TARBALL_ENTRIES = 10_000
MODEL_TARBALL_BYTES = 16 * 1024**3  # a model tarball: compressed, as sent
MODEL_BYTES = 32 * 1024**3  # extracted
MODEL_ENTRIES = ARCHIVE_ENTRIES
UPLOAD_FILES = 10_000


@dataclass(frozen=True)
class TarUse:
    """One use of a submission's tarball: what messages call it, how to pack one right (the fix of a
    refused member), its caps and the modes its files get (folders are always 0755)."""

    what: str  # "a model tarball"
    fix: str
    max_archive_bytes: int  # the file as sent
    max_bytes: int  # written, counted as written
    max_entries: int  # members, folders included
    file_mode: int = 0o644
    executable_mode: int = 0o755  # a member with any execute bit


FILES_TARBALL = TarUse("a files tarball", "pack the files with `tar -czf additional_files.tar.gz -C <folder> .`",
                       FILES_TARBALL_BYTES, FILES_TARBALL_BYTES, FILES_TARBALL_ENTRIES,
                       file_mode=0o444, executable_mode=0o444)  # mounted read-only, as MedPerf delivers them
MODEL_TARBALL = TarUse("a model tarball", "pack it again with `tar -czf model.tar.gz -C model .` from regular "
                       "files and folders only", MODEL_TARBALL_BYTES, MODEL_BYTES, MODEL_ENTRIES)


def upload_use(max_bytes: int) -> TarUse:
    """A team's upload (harness.phases): at most `max_bytes` as sent and as extracted."""
    return TarUse("an upload", "upload a .tar or .tar.gz of a plain submission folder "
                  "(`tar -czf upload.tar.gz -C <folder> .`)", max_bytes, max_bytes, UPLOAD_FILES)


class _Hashing(io.RawIOBase):
    """A reader that hashes and counts what passes through it, and knows when its file has ended."""

    def __init__(self, handle: io.BufferedReader) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.count = 0
        self.exhausted = False  # a read came back short: the file has ended

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        self.digest.update(data)
        self.count += len(data)
        self.exhausted = self.exhausted or len(data) < len(buffer)
        buffer[: len(data)] = data
        return len(data)


class TruncatedArchive(SubmissionError):
    """A tarball that ends early: still being written, or cut short."""


@dataclass(frozen=True)
class ExtractedTar:
    """What one extraction read and wrote."""

    sha256: str  # of the archive's bytes as they were read
    bytes_written: int
    entries: int


_UNREADABLE = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)  # on the reading side only


def extract_tar(archive: Path, dest: Path, *, use: TarUse) -> ExtractedTar:
    """Extract a submission's tarball (plain, gzip, bzip2 or xz) into `dest`, which must not exist,
    in one bounded streaming pass: folders and regular files only (a link, a device or a FIFO is
    refused), every name relative and inside `dest` (no absolute path, no `..`), no member twice and
    none under a file, at most `use.max_entries` members and `use.max_bytes` bytes written (checked
    against each member's declared size before it is written and counted as written, so a
    compression bomb stops at the cap); files `use.file_mode` (`use.executable_mode` when any
    execute bit is set), folders 0755, owned by whoever runs harness. On any refusal `dest` is
    removed and SubmissionError names the archive, the member and the fix; an archive that ends
    early (cut inside a member or between two, without tar's end-of-archive blocks) is a
    TruncatedArchive."""
    handle = open_file(archive, what=use.what, max_bytes=use.max_archive_bytes, fix=use.fix)
    try:
        dest.mkdir(parents=True)
    except BaseException:
        handle.close()
        raise
    try:
        with handle:
            os.chmod(dest, 0o755)
            return _extract(archive, handle, dest, use)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


# tarfile reads a pax header or a GNU long name whole into memory, and follows a run of them by
# recursion: both are bounded before tarfile sees them.
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
               tarfile.GNUTYPE_LONGLINK)
_META_BYTES = 1024**2
_META_RUN = 16


class _BadHeader(Exception):
    """An extended header beyond the bounds (its size, or a run of them)."""


def _header_class(ends: list[str]) -> type[tarfile.TarInfo]:
    """A TarInfo that records each header error (tarfile ends the walk quietly on an empty or cut
    header as on the end-of-archive blocks, and only this record tells them apart) and refuses an
    extended header over _META_BYTES or a run of more than _META_RUN of them."""
    depth = [0]

    class Header(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            header = super().frombuf(buf, encoding, errors)
            if header.type in _META_TYPES and header.size > _META_BYTES:
                raise _BadHeader(f"an extended header (pax or GNU long name) of {header.size} bytes, over the cap "
                                 f"of {_META_BYTES}")
            return header

        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
            depth[0] += 1
            try:
                if depth[0] > _META_RUN:
                    raise _BadHeader(f"more than {_META_RUN} extended headers (pax or GNU long name) in a row")
                return super().fromtarfile(tar)
            except tarfile.HeaderError as exc:
                ends.append(type(exc).__name__)  # EOFHeaderError (the end blocks), Empty-, Truncated-, Invalid-
                raise
            finally:
                depth[0] -= 1

    return Header


class _TarWalk:
    """One streaming walk over a submitted tar (plain, gzip, bzip2 or xz), the only one: every reader
    of a submission's tar (`extract_tar`, `inspect_archive`, `normalised_archive`) takes its members
    from `members()` and their bytes from `extractfile`. Extended headers are bounded before tarfile
    reads them (`_header_class`); the walk is whole only when it ends on tar's end-of-archive blocks,
    and the rest of the file is then read so that `sha256` covers all of it. Every problem is a
    SubmissionError naming the archive, the member at or after which it lies, and `fix`; an archive
    that ends early (cut inside a member, inside a header or between two) is a TruncatedArchive. A
    reader that stops before `members()` ends has not checked the archive whole."""

    def __init__(self, archive: Path, handle: io.BufferedReader, *, what: str, fix: str, max_archive_bytes: int) -> None:
        self.archive, self.what, self.fix, self.max_archive_bytes = archive, what, fix, max_archive_bytes
        self.reader = _Hashing(handle)
        self.entries = 0
        self.last = ""  # the name of the member read last
        self._ends: list[str] = []
        self._tar: tarfile.TarFile | None = None

    @property
    def sha256(self) -> str:
        """Of the archive's bytes as read (all of them once `members()` has ended)."""
        return self.reader.digest.hexdigest()

    def name(self) -> str:
        return f"member {_shown_name(self.last)}"

    def refuse(self, problem: str, fix: str = "") -> SubmissionError:
        """`problem` of the member read last, on one line with the fix (`fix`, else the walk's)."""
        return SubmissionError.of(self.archive, f"{self.name()} {problem}; {fix or self.fix}")

    def unreadable(self, exc: BaseException) -> SubmissionError:
        where = f"at or after {self.name()}" if self.last else "before its first member"
        # a compressed stream or a member's data that ends early (not a damaged stream, and not a first
        # header cut short: that one is not known to be a tar)
        cut = isinstance(exc, EOFError) or (isinstance(exc, tarfile.ReadError) and str(exc) == "unexpected end of data")
        if self.reader.exhausted and cut and self.entries:
            return TruncatedArchive.of(self.archive, f"the archive ends early ({where}); it is still being "
                                       f"written or was cut short: {self.fix}")
        return SubmissionError.of(self.archive, f"not a readable tar archive (plain, gzip, bzip2 or xz) {where} "
                               f"({type(exc).__name__}); {self.fix}")

    def _bad_header(self, exc: _BadHeader) -> SubmissionError:
        where = f"after {self.name()}" if self.last else "before its first member"
        return SubmissionError.of(self.archive, f"{exc} {where}; {self.fix}")

    def _decompressed(self) -> IO[bytes]:
        """The tar's own bytes, a gzip, bzip2 or xz file (known by its first bytes, as tarfile knows
        it) decompressed by the standard library's file readers, which give at most what each call
        asks for: tarfile's stream mode decompresses each read of its input whole (10 KiB of
        bzip2 can hold gigabytes; 1.5 KB took 1.7 GB to read the first MiB of a member)."""
        raw = io.BufferedReader(self.reader, 1 << 16)
        magic = raw.peek(10)[:10]
        if magic.startswith(b"\x1f\x8b\x08"):
            return io.BufferedReader(_Inflating(gzip.GzipFile(fileobj=raw, mode="rb")), 1 << 20)
        if magic.startswith(b"BZh") and magic[4:10] == b"1AY&SY":
            return io.BufferedReader(_Inflating(bz2.BZ2File(raw, mode="rb")), 1 << 20)
        if magic.startswith((b"\xfd7zXZ", b"\x5d\x00\x00\x80")):
            return io.BufferedReader(_Inflating(lzma.LZMAFile(raw, mode="rb")), 1 << 20)
        return raw

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Each member in turn (`last` and `entries` follow); the archive checked whole at the end."""
        try:
            tar = tarfile.open(fileobj=self._decompressed(), mode="r|", tarinfo=_header_class(self._ends))
        except _UNREADABLE as exc:
            raise self.unreadable(exc) from None
        except _BadHeader as exc:
            raise self._bad_header(exc) from None
        with tar:
            self._tar = tar
            while True:
                try:
                    member = tar.next()
                except _UNREADABLE as exc:
                    raise self.unreadable(exc) from None
                except _BadHeader as exc:
                    raise self._bad_header(exc) from None
                if member is None:
                    break
                self.entries += 1
                self.last = member.name
                yield member
        if not self._ends or self._ends[-1] != "EOFHeaderError":  # ended without tar's end-of-archive blocks
            if self._ends and self._ends[-1] == "InvalidHeaderError":
                raise SubmissionError.of(self.archive, f"a damaged header after {self.name()}; {self.fix}")
            raise TruncatedArchive(f"{shown(self.archive)}: the archive ends early (after {self.name()}); it is still "
                                   f"being written or was cut short: {self.fix}")
        try:
            while self.reader.read(1 << 20):  # the rest (tar's padding), so that the hash covers the whole file
                if self.reader.count > self.max_archive_bytes:
                    raise SubmissionError.of(self.archive, f"grew past the cap of {self.max_archive_bytes} bytes "
                                          f"for {self.what} while read; {self.fix}")
        except OSError as exc:
            raise self.unreadable(exc) from None

    def extractfile(self, member: tarfile.TarInfo) -> _MemberReader:
        """The bytes of `member`, a regular file, the member `members()` gave last."""
        assert self._tar is not None  # inside members()
        source = self._tar.extractfile(member)
        assert source is not None  # a regular file
        return _MemberReader(self, source)


class _Inflating(io.RawIOBase):
    """A compressed file's bytes as they are decompressed, no more than each read asks for; a
    compressed stream that ends early reads as ended, so that tarfile finds the tar cut short, as in
    a plain file, and nothing it had decompressed is lost."""

    def __init__(self, file: gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile) -> None:
        self._file = file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._file.read1(len(buffer))
        except EOFError:  # the compressed stream's end-of-stream marker is missing: a cut file
            return 0
        buffer[: len(data)] = data
        return len(data)


class _MemberReader:
    """A member's bytes, read errors (a cut, a damaged compressed stream) mapped to the walk's."""

    def __init__(self, walk: _TarWalk, source: IO[bytes]) -> None:
        self._walk, self._source = walk, source

    def read(self, size: int = -1) -> bytes:
        try:
            return self._source.read(size)
        except _UNREADABLE as exc:
            raise self._walk.unreadable(exc) from None


def _extract(archive: Path, handle: io.BufferedReader, dest: Path, use: TarUse) -> ExtractedTar:
    walk = _TarWalk(archive, handle, what=use.what, fix=use.fix, max_archive_bytes=use.max_archive_bytes)
    written = 0
    refuse = walk.refuse
    for member in walk.members():
        if walk.entries > use.max_entries:
            raise refuse(f"is entry {walk.entries}, past the cap of {use.max_entries} entries for {use.what}",
                         "pack fewer, larger files")
        pure = PurePosixPath(member.name)
        parts = [part for part in pure.parts if part not in ("", ".")]
        if pure.is_absolute() or ".." in parts:
            raise refuse("leaves the folder it is extracted to (an absolute path or '..')")
        if "\0" in member.name or len(os.fsencode(member.name)) > 4096 or any(len(os.fsencode(p)) > 255 for p in parts):
            raise refuse("has a name no file system takes (a NUL byte, a part over 255 bytes or over 4096 in all)")
        if not (member.isreg() or member.isdir()):
            raise refuse("is a link or a special file (a device, a FIFO), not a regular file or a folder")
        if not parts:
            continue  # the archive's own root folder ("./")
        try:
            _make_folders(dest, parts if member.isdir() else parts[:-1])
        except _Conflict:
            raise refuse("lies under a file of the same archive, or is a folder given as a file too",
                         "pack a folder tree, each name once") from None
        if member.isdir():
            continue
        if written + max(member.size, 0) > use.max_bytes:
            raise refuse(f"takes what is extracted past the cap of {use.max_bytes} bytes for {use.what}",
                         "ship fewer or smaller files")
        target = dest.joinpath(*parts)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise refuse("is given twice (or as a folder too)", "pack each file once") from None
        except OSError as exc:
            raise refuse(f"cannot be written under {shown(dest)} ({exc.strerror})",
                         "free space there or check its permissions") from None
        with os.fdopen(fd, "wb") as sink:
            source = walk.extractfile(member)
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > use.max_bytes:
                    raise refuse(f"takes what is extracted past the cap of {use.max_bytes} bytes for {use.what}",
                                 "ship fewer or smaller files")
                try:
                    sink.write(chunk)
                except OSError as exc:
                    raise refuse(f"cannot be written under {shown(dest)} ({exc.strerror})",
                                 "free space there or check its permissions") from None
            os.fchmod(sink.fileno(), use.executable_mode if member.mode & 0o111 else use.file_mode)
    return ExtractedTar(walk.sha256, written, walk.entries)


class _Conflict(Exception):
    """A name of the archive is a file where a folder is needed."""


def _make_folders(dest: Path, parts: list[str]) -> None:
    """dest/parts[0]/... as folders (0755), never through a link; _Conflict where one is not a folder."""
    current = dest
    for part in parts:
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise _Conflict(current) from None
            continue
        except NotADirectoryError:
            raise _Conflict(current) from None
        os.chmod(current, 0o755)


def _shown_name(name: str) -> str:
    from harness.safetext import safe_text

    return "'" + safe_text(shown(name), limit=80) + "'"


def extracted_once(archive: Path, root: Path, *, use: TarUse) -> Path:
    """`archive` extracted (`extract_tar`) into `root/<sha256 of its bytes>/`, once per content: a
    folder there is always complete (extracted beside it, then renamed into place), so another call,
    thread or process finds it and extracts nothing. An archive that changes while it is read is
    refused (the folder holds what the hash names)."""
    digest = sha256_file(archive, what=use.what, max_bytes=use.max_archive_bytes)
    folder = root / digest
    if folder.is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    try:
        extracted = extract_tar(archive, scratch / "tree", use=use)
        if extracted.sha256 != digest:
            raise SubmissionError.of(archive, f"changed while it was read; do not change {use.what} while "
                                  "harness reads it")
        try:
            os.rename(scratch / "tree", folder)  # atomic: a folder there is always complete
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


# --- requirements.txt, in pip's grammar ----------------------------------------------------------

# PEP 508, the parts a requirements line may use here: no URL (`name @ url`), no path.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_EXTRAS = rf"(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?"
_VERSION = r"(?:===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_]+(?:-[A-Za-z0-9.*+!_]+)*"
_SPEC = rf"(?:\(?\s*{_VERSION}(?:\s*,\s*{_VERSION})*\s*\)?)?"
_MARKER_VARS = ("python_version|python_full_version|os_name|sys_platform|platform_release|platform_system|"
                "platform_version|platform_machine|platform_python_implementation|implementation_name|"
                "implementation_version|extra")
_QUOTED = r"[A-Za-z0-9._*+!<>=~ ]*"  # no '-' at a word's start can hide in a marker's string
_MARKER_TOKEN = rf"""(?:and|or|not\s+in|not|in|\(|\)|===|==|!=|<=|>=|~=|<|>|'{_QUOTED}'|"{_QUOTED}"|{_MARKER_VARS})"""
_MARKER = rf"(?:\s*;(?:\s*{_MARKER_TOKEN})+)?"
REQUIREMENT = re.compile(rf"{_NAME}\s*{_EXTRAS}\s*{_SPEC}{_MARKER}\s*")
_HASH_OPTION = re.compile(r"--hash[=:](sha256|sha384|sha512):([0-9a-f]{64,128})")
_PIP_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip: a comment starts a line, or follows whitespace
_PEP263 = re.compile(rb"coding[:=]\s*([-\w.]+)")
_ASCII_CODECS = {"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252"}  # decode ASCII as ASCII
_ARCHIVE_NAME = re.compile(r"\.(?:whl|zip|tar|tgz|tbz|txz|tlz|tar\.gz|tar\.bz2|tar\.xz|tar\.lz|tar\.lzma)$", re.I)


@dataclass(frozen=True)
class Requirements:
    """A requirements file as checked: the normalised lines pip gets instead of the file."""

    source: Path
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("ascii")).hexdigest()


def _pip_text(path: Path, raw: bytes) -> str:
    """The file's text exactly as pip decodes it, accepted only where that is plain ASCII: a byte-
    order mark, a PEP 263 declaration of a codec that reads ASCII differently (utf-7, utf-16), a
    byte over 127 or a control character is refused."""
    for index, line in enumerate(raw.split(b"\n")[:2]):
        if line[:1] == b"#":
            declared = _PEP263.search(line)
            if declared is not None:
                try:
                    name = codecs.lookup(declared.group(1).decode("ascii")).name
                except LookupError:
                    name = "?"
                if name not in _ASCII_CODECS:
                    raise SubmissionError.of(path, f"line {index + 1}: an encoding "
                                          "declaration pip would obey (coding: ...); remove it and write plain ASCII")
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if any(b > 126 or (b < 32 and b not in (9, 13)) for b in line):
            raise SubmissionError.of(path, f"line {number}: a byte outside printable ASCII (a byte-order mark, "
                                  "another encoding or a control character); write plain ASCII, one package per line")
    return raw.decode("ascii")


def _pip_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, logical line) as pip's preprocessing yields them: a line ending in a
    backslash continues unless it is a comment line; comments are removed after joining."""
    pending: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        is_comment = _PIP_COMMENT.match(line) is not None
        if not line.endswith("\\") or is_comment:
            if is_comment:
                line = " " + line
            if pending:
                pending.append(line)
                yield first, "".join(pending)
                pending = []
            else:
                yield number, line
        else:
            if not pending:
                first = number
            pending.append(line.strip("\\"))
    if pending:
        yield first, "".join(pending)


def parse_requirements(path: Path, raw: bytes) -> Requirements:
    """Requirements from a file's bytes, read as pip reads them; raises SubmissionError naming the
    line (never its content: the file might not be what it claims)."""
    text = _pip_text(path, raw)
    lines: list[str] = []
    for number, logical in _pip_lines(text):
        line = _PIP_COMMENT.sub("", logical).strip()
        if not line:
            continue
        where = f"{shown(path)}: line {number}"
        if "$" in line:
            raise SubmissionError(f"{where}: a '$' (pip expands ${{VARIABLES}} from the host's environment); write the "
                                  "requirement out")
        if "\t" in line or "\r" in line:
            raise SubmissionError(f"{where}: a tab or carriage return inside a requirement; separate with spaces")
        tokens = line.split(" ")
        split = next((i for i, token in enumerate(tokens) if token.startswith("-")), len(tokens))
        args, options = " ".join(tokens[:split]).strip(), [t for t in tokens[split:] if t]
        if not args:
            raise SubmissionError(f"{where}: a pip option; only package requirements (name, extras, version specifiers, "
                                  "--hash) are allowed: the challenge sets pip's index and options")
        hashes = []
        for option in options:
            found = _HASH_OPTION.fullmatch(option)
            if found is None:
                raise SubmissionError(f"{where}: a pip option other than --hash=sha256:<hex> after the requirement; the "
                                      "challenge sets pip's index and options")
            hashes.append(f"--hash={found.group(1)}:{found.group(2)}")
        if len(args) > 2000 or not REQUIREMENT.fullmatch(args) or "@" in args:
            raise SubmissionError(f"{where}: not a package requirement (URLs, paths and includes are refused); write it "
                                  "as name[extras]==version")
        name = re.match(_NAME, args)
        if name is not None and _ARCHIVE_NAME.search(name.group(0)):
            raise SubmissionError(f"{where}: names a file (a wheel or an archive), not a package; write name==version")
        lines.append(" ".join([" ".join(args.split()), *hashes]))
    return Requirements(Path(path), tuple(lines))


def check_requirements(path: Path) -> Requirements:
    """A submission's requirements file, read (bounded) and checked in pip's grammar."""
    raw = read_file(path, what="a requirements file", max_bytes=REQUIREMENTS_BYTES,
                    fix="a requirements file lists packages, one per line")
    return parse_requirements(path, raw)


# --- Dockerfile, in the Docker parser's grammar -------------------------------------------------

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_INSTRUCTION = re.compile(r"^([A-Za-z]+)(?:[ \t]+(.*))?$", re.DOTALL)
_BASE_REFS = {"${BASE}", "$BASE"}
_STAGE = re.compile(r"[a-z][a-z0-9._-]*")
_PLAIN_SOURCE = re.compile(r"[A-Za-z0-9._/*?+=,@%~ -]+")  # a path in the context: no ':', '$', escape or quote
_COPY_FLAGS = ("--chown=", "--chmod=", "--from=", "--link")
_ADD_FLAGS = ("--chown=", "--chmod=", "--link")


@dataclass(frozen=True)
class Dockerfile:
    """A Dockerfile as checked: the daemon builds from exactly these bytes."""

    source: Path
    data: bytes


def dockerfile_instructions(path: Path, text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) as Docker's parser reads them: parser directives at the
    top (`escape` sets the continuation character), comment lines skipped (also inside a
    continuation), a line ending in the escape character (and blanks) joined to the next as it is."""
    escape = "\\"
    lines = text.split("\n")
    start = 0
    seen: set[str] = set()
    for index, line in enumerate(lines):  # parser directives: only before anything else
        found = _DIRECTIVE.match(line.rstrip("\r"))
        if found is None or found.group(1).lower() not in ("escape", "syntax", "check"):
            break
        key, value = found.group(1).lower(), found.group(2)
        if key in seen:
            raise SubmissionError.of(path, f"line {index + 1}: the parser directive '{key}' twice; give it once")
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise SubmissionError.of(path, f"line {index + 1}: escape = {value!r}; use \\ or `")
            escape = value
        start = index + 1
    out: list[tuple[int, str, str]] = []
    pending: str | None = None
    first = 0

    def continues(line: str) -> tuple[str, bool]:
        body = line.rstrip(" \t")
        if body.endswith(escape):
            return body[: -len(escape)], True
        return line, False

    for number, raw_line in enumerate(lines[start:], start=start + 1):
        line = raw_line.rstrip("\r")
        stripped = line.lstrip(" \t")
        if pending is None:
            if not stripped or stripped.startswith("#"):
                continue
            first = number
            body, more = continues(stripped)
            if more:
                pending = body
                continue
            pending = body
        else:
            if stripped.startswith("#") or not stripped.strip(" \t"):
                continue  # comment and empty lines inside a continuation are dropped
            body, more = continues(line)
            pending += body
            if more:
                continue
        found = _INSTRUCTION.match(pending.strip(" \t"))
        if found is None:
            raise SubmissionError.of(path, f"line {first}: not an instruction; fix the Dockerfile's syntax")
        out.append((first, found.group(1).upper(), (found.group(2) or "").strip(" \t")))
        pending = None
    if pending is not None:
        found = _INSTRUCTION.match(pending.strip(" \t"))
        if found is not None:
            out.append((first, found.group(1).upper(), (found.group(2) or "").strip(" \t")))
    return out


def _words(args: str) -> tuple[list[str], list[str]]:
    """Flags and the other words of an ADD/COPY: the exec (JSON) form as JSON, else split on blanks."""
    words = args.split()
    flags: list[str] = []
    while words and words[0].startswith("--"):
        flags.append(words.pop(0))
    rest = " ".join(words)
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(w, str) for w in parsed):
            return flags, parsed
    return flags, words


def parse_dockerfile(path: Path, raw: bytes) -> Dockerfile:
    """A Dockerfile from its bytes, checked: builds from the harness's base (`FROM ${BASE}` or a
    stage of its own) and fetches nothing."""
    if raw.startswith(codecs.BOM_UTF8):
        raise SubmissionError.of(path, "starts with a byte-order mark; save it as UTF-8 without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError.of(path, "not UTF-8 text; is it a Dockerfile?") from None
    for number, line in enumerate(text.split("\n"), start=1):
        if any((ord(c) < 32 and c not in "\t\r") or c in "\x7f\x85\u2028\u2029" or (c.isspace() and c not in " \t\r")
               for c in line):
            raise SubmissionError.of(path, f"line {number}: a control character or an unusual space (parsers "
                                  "disagree on those); use plain spaces and tabs")
    stages: list[str] = []
    saw_from = False
    for number, instruction, args in dockerfile_instructions(path, text):
        where = f"{shown(path)}: line {number}"
        words = args.split()
        if instruction == "FROM":
            saw_from = True
            options = [w for w in words if w.startswith("--")]
            rest = [w for w in words if not w.startswith("--")]
            if options or not rest or len(rest) not in (1, 3) or (
                    rest[0] not in _BASE_REFS and rest[0].lower() not in stages):
                raise SubmissionError(f"{where}: FROM must be the harness's base image: `ARG BASE` then `FROM ${{BASE}}` "
                                      "(or a stage built from it); the challenge supplies the base")
            if len(rest) == 3:
                if rest[1].upper() != "AS" or not _STAGE.fullmatch(rest[2].lower()):
                    raise SubmissionError(f"{where}: FROM ... AS <name>: a stage name of letters, digits, '.', '_', '-'")
                stages.append(rest[2].lower())
            else:
                stages.append(f"#{len(stages)}")
        elif instruction in ("ADD", "COPY"):
            flags, paths = _words(args)
            allowed = _COPY_FLAGS if instruction == "COPY" else _ADD_FLAGS
            for flag in flags:
                if not flag.startswith(allowed) or "$" in flag:
                    raise SubmissionError(f"{where}: {instruction} {flag.split('=')[0]} is not allowed; builds have no "
                                          "network: put the file in the algorithm folder and COPY it")
                if flag.startswith("--from="):
                    source = flag.split("=", 1)[1].lower()
                    if source not in stages and not (source.isdigit() and int(source) < len(stages)):
                        raise SubmissionError(f"{where}: COPY --from an image that is not a stage of this Dockerfile; "
                                              "builds use the harness's base only")
            if len(paths) < 2 or any(not _PLAIN_SOURCE.fullmatch(p) for p in paths) or any(
                    p.startswith("git@") for p in paths):
                what = "ADD of a URL or a" if instruction == "ADD" else "COPY of a"
                raise SubmissionError(f"{where}: {what} path that is not plain (a URL, a variable, an escape or a quote); "
                                      "builds have no network: put the file in the algorithm folder and COPY it by its "
                                      "plain path")
        elif instruction == "ONBUILD":
            raise SubmissionError(f"{where}: ONBUILD is not allowed; write the steps out")
    if not saw_from:
        raise SubmissionError.of(path, "no FROM line; start with `ARG BASE` and `FROM ${BASE}`")
    return Dockerfile(Path(path), raw)


def check_dockerfile(path: Path) -> Dockerfile:
    """A Dockerfile, read (bounded) and checked in the Docker parser's grammar."""
    raw = read_file(path, what="a Dockerfile", max_bytes=DOCKERFILE_BYTES, fix="is it a Dockerfile?")
    return parse_dockerfile(path, raw)


# --- TOML (manifests) ------------------------------------------------------------------------------


def parse_toml(path: Path, raw: bytes) -> dict[str, Any]:
    """A submission's TOML file (its manifest) from its bytes (read by `read_file`): UTF-8, parsed
    by tomllib with deep nesting refused (tomllib recurses on nested arrays: 30,000 `[` exhaust the
    stack)."""
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SubmissionError.of(path, f"not valid TOML ({' '.join(str(exc).split())}); fix the syntax") from None
    except RecursionError:
        raise SubmissionError.of(path, "nested too deeply to be a manifest; flatten it") from None


# --- YAML ---------------------------------------------------------------------------------------


def load_yaml(path: Path, *, max_bytes: int = YAML_BYTES) -> Any:
    """A submission's YAML file (an MLCube or MedPerf configuration): bounded in size, scanned token
    by token first (no anchor, alias or tag: an alias bomb expands far beyond its bytes; nesting at
    most YAML_DEPTH deep: a deep one exhausts the parser's stack), then safe-loaded."""
    import yaml

    raw = read_file(path, what="a YAML file", max_bytes=max_bytes, fix="a configuration is a small text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError.of(path, "not UTF-8 text; save it as UTF-8") from None
    depth = tokens = 0
    opening = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
               yaml.FlowSequenceStartToken)
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            tokens += 1
            if isinstance(token, (yaml.AliasToken, yaml.AnchorToken, yaml.TagToken)):
                line = token.start_mark.line + 1
                raise SubmissionError.of(path, f"line {line}: a YAML anchor, alias or tag; write the values out")
            if isinstance(token, opening):
                depth += 1
                if depth > YAML_DEPTH:
                    raise SubmissionError.of(path, f"line {token.start_mark.line + 1}: nested more than "
                                          f"{YAML_DEPTH} levels deep; flatten it")
            elif isinstance(token, closing):
                depth -= 1
            if tokens > YAML_TOKENS:
                raise SubmissionError.of(path, f"more than {YAML_TOKENS} YAML tokens; a configuration is small")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SubmissionError.of(path, f"not valid YAML ({' '.join(str(exc).split())[:200]}); fix the syntax") from None
    except RecursionError:
        raise SubmissionError.of(path, "nested too deeply; flatten it") from None


# --- image archives (`docker save`) --------------------------------------------------------------

_COMPRESSED = (b"\x1f\x8b", b"(\xb5/\xfd", b"BZh", b"\xfd7zXZ")
_IMAGE_FIX = "save the image again with `docker save IMAGE -o team.tar`"


@dataclass(frozen=True)
class ArchiveImage:
    """What a `docker save` archive holds, read from its headers and its manifest."""

    source: Path
    sha256: str  # of the archive file as given
    config: str  # the member holding the image configuration
    layers: tuple[str, ...]
    uncompressed_bytes: int
    tags: tuple[str, ...]  # what the submitter named it: reported, never applied


def _member_name(path: Path, name: str) -> str:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\0" in name or len(name) > 4096:
        raise SubmissionError.of(path, f"an entry {shown(name)[:80]!r} leaves the archive; give a `docker save` "
                              "archive")
    return str(PurePosixPath(*[p for p in pure.parts if p != "."])) if pure.parts else ""


def inspect_archive(path: Path, *, max_bytes: int) -> ArchiveImage:
    """A `docker save` archive (tar, or tar.gz/bz2/xz) read entry by entry without extracting
    anything: regular files and folders only (links only to files inside it), at most
    ARCHIVE_ENTRIES entries and `max_bytes` uncompressed, exactly one image in its manifest.json."""
    handle = open_file(path, what="an image archive", max_bytes=max_bytes,
                       fix="an image archive is a `docker save` file within the challenge's image size")
    walk = _TarWalk(path, handle, what="an image archive", fix=_IMAGE_FIX, max_archive_bytes=max_bytes)
    entries: dict[str, tarfile.TarInfo] = {}
    manifest_raw: bytes | None = None
    total = 0
    try:
        with handle:
            for member in walk.members():
                name = _member_name(path, member.name)
                if len(entries) >= ARCHIVE_ENTRIES:
                    raise SubmissionError.of(path, f"more than {ARCHIVE_ENTRIES} entries; give a `docker save` "
                                          "archive of one image")
                if member.issym() or member.islnk():
                    target = member.linkname if member.islnk() else str(PurePosixPath(name).parent / member.linkname)
                    _member_name(path, os.path.normpath(target) if target else "..")
                elif not (member.isfile() or member.isdir()):
                    raise SubmissionError.of(path, f"entry {shown(name)[:80]!r} is a device or FIFO; give a "
                                          "`docker save` archive")
                total += max(member.size, 0)
                if total > max_bytes:
                    raise SubmissionError.of(path, f"holds more than {max_bytes} bytes uncompressed, over the "
                                          "challenge's image size (limits.image); make the image smaller")
                entries[name] = member
                if name == "manifest.json" and member.isfile():
                    if member.size > ARCHIVE_MANIFEST_BYTES:
                        raise SubmissionError.of(path, "manifest.json is too large; give a `docker save` archive")
                    manifest_raw = walk.extractfile(member).read()
    except SubmissionError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parse error of a hostile file that the walk does not name
        where = f"at or after {walk.name()}" if walk.last else "before its first member"
        raise SubmissionError.of(path, f"not a readable `docker save` archive {where} ({type(exc).__name__}); "
                              f"{_IMAGE_FIX}") from None
    if manifest_raw is None:
        raise SubmissionError.of(path, "no manifest.json (an OCI layout without Docker's manifest?); save the "
                              "image with `docker save IMAGE -o team.tar`")
    try:
        manifest = json.loads(manifest_raw)
    except ValueError:
        raise SubmissionError.of(path, "manifest.json is not JSON; save the image again") from None
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else "no list of"
        raise SubmissionError.of(path, f"holds {count} images; an algorithm's archive holds exactly one")
    entry = manifest[0]
    config, layers = entry.get("Config"), entry.get("Layers")
    if entry.get("LayerSources"):
        raise SubmissionError.of(path, "foreign layers (LayerSources) would be fetched; save a self-contained image")
    if not isinstance(config, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise SubmissionError.of(path, "manifest.json has no Config and Layers; save the image again")
    config = _member_name(path, config)
    layers = [_member_name(path, layer) for layer in layers]
    for needed in (config, *layers):
        if needed not in entries or not (entries[needed].isfile() or entries[needed].issym() or entries[needed].islnk()):
            raise SubmissionError.of(path, f"manifest.json names {shown(needed)[:80]!r}, which the archive lacks")
    if entries[config].size > ARCHIVE_CONFIG_BYTES:
        raise SubmissionError.of(path, "the image configuration is too large; save the image again")
    tags = entry.get("RepoTags") or []
    return ArchiveImage(source=Path(path), sha256=walk.sha256, config=config, layers=tuple(layers),
                        uncompressed_bytes=total,
                        tags=tuple(str(t)[:200] for t in tags if isinstance(t, str)))


def _resolve_member(entries: dict[str, tarfile.TarInfo], name: str) -> str:
    seen = 0
    while name in entries and (entries[name].issym() or entries[name].islnk()) and seen < 16:
        member = entries[name]
        target = member.linkname if member.islnk() else str(PurePosixPath(name).parent / member.linkname)
        name = os.path.normpath(target)
        seen += 1
    return name


def normalised_archive(image: ArchiveImage, *, max_bytes: int) -> tuple[Iterator[bytes], threading.Thread, list[Any]]:
    """The archive as `docker load` gets it: manifest.json without any tag, the configuration and
    the layers it names (links resolved inside the archive), nothing else; streamed through a pipe
    while it is read again. Returns the byte chunks, the writer thread and a list that holds the
    writer's error (or the configuration's image id) once the thread has ended."""
    wanted = {image.config, *image.layers}
    read_fd, write_fd = os.pipe()
    outcome: list[Any] = []

    def write() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as out:
                manifest = json.dumps([{"Config": image.config, "RepoTags": None, "Layers": list(image.layers)}]).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size = len(manifest)
                out.addfile(info, io.BytesIO(manifest))
                handle = open_file(image.source, what="an image archive", max_bytes=max_bytes)
                walk = _TarWalk(image.source, handle, what="an image archive", fix=_IMAGE_FIX, max_archive_bytes=max_bytes)
                entries: dict[str, tarfile.TarInfo] = {}
                written: set[str] = set()
                with handle:
                    for member in walk.members():
                        name = _member_name(image.source, member.name)
                        entries[name] = member
                        if name not in wanted or not member.isfile():
                            continue
                        source = walk.extractfile(member)
                        head = source.read(8)
                        if name != image.config and head.startswith(_COMPRESSED):
                            raise SubmissionError.of(image.source, f"layer {shown(name)[:80]!r} is compressed "
                                                  "(its unpacked size cannot be bounded first); save the image with "
                                                  "`docker save`, which writes plain layers")
                        copy = tarfile.TarInfo(name)
                        copy.size = member.size
                        copy.mode = 0o644
                        digest = hashlib.sha256(head) if name == image.config else None
                        stream = _Prefixed(head, source, digest)
                        out.addfile(copy, stream)
                        if digest is not None:
                            outcome.append(f"sha256:{digest.hexdigest()}")
                        written.add(name)
                if walk.sha256 != image.sha256:
                    raise SubmissionError.of(image.source, "changed since it was inspected; do not change an "
                                          "image archive while harness loads it")
                for name in sorted(wanted - written):  # a link: the file it names, written again under this name
                    target = _resolve_member(entries, name)
                    if target not in written:
                        raise SubmissionError.of(image.source, f"{shown(name)[:80]!r} links to nothing in the "
                                              "archive; save the image again")
                    out.addfile(_alias(name, target), None)  # a hard link: tar stores no data twice
        except BaseException as exc:  # noqa: BLE001 - reported to the loader's side
            outcome.insert(0, exc)

    def chunks() -> Iterator[bytes]:
        with os.fdopen(read_fd, "rb") as source:
            while chunk := source.read(1 << 20):
                yield chunk

    thread = threading.Thread(target=write, name="archive-normalise", daemon=True)
    thread.start()
    return chunks(), thread, outcome


def _alias(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    info.size = 0
    return info


class _Prefixed(io.RawIOBase):
    """The bytes already read from a member, then the rest of it (hashed when asked)."""

    def __init__(self, head: bytes, rest: Any, digest: Any) -> None:
        self._head, self._rest, self._digest = head, rest, digest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        head, self._head = self._head, b""
        if size >= 0 and len(head) > size:
            head, self._head = head[:size], head[size:]
            return head
        data = self._rest.read(size - len(head) if size >= 0 else -1)
        if self._digest is not None:
            self._digest.update(data)
        return head + data


# --- challenge uploads (harness.phases): a team's folder or tar of one submission -------------------

UPLOAD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class PartialUpload(SubmissionError):
    """An upload that is still being written (or was cut short): looked at again later, never run."""


def upload_snapshot(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative name, size, mtime ns) of every entry of an upload (a file, or a folder walked without
    following links): two equal snapshots some seconds apart say that nobody is writing it."""
    root = Path(path)
    info = os.lstat(root)
    if stat.S_ISREG(info.st_mode):
        return (("", info.st_size, info.st_mtime_ns),)
    found = []
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in sorted([*dirs, *files]):
            entry = Path(current) / name
            entry_info = os.lstat(entry)
            found.append((entry.relative_to(root).as_posix(), entry_info.st_size, entry_info.st_mtime_ns))
            if len(found) > UPLOAD_FILES:
                raise SubmissionError.of(root, f"more than {UPLOAD_FILES} entries; upload one algorithm")
    return tuple(sorted(found))


def unpack_upload(path: Path, target: Path, *, max_bytes: int) -> str:
    """Copy a team's upload (a folder, or a .tar/.tar.gz of one) into the new folder `target` as
    checked regular files and folders only; returns the sha256 of what was taken (names and bytes,
    as `folder_digest`). A tar is read by `extract_tar` under `upload_use(max_bytes)`: one that ends
    early is a PartialUpload, every other refusal a SubmissionError."""
    source = Path(path)
    if stat.S_ISDIR(os.lstat(source).st_mode):
        total = 0
        for item in context_files(source, max_files=UPLOAD_FILES, max_bytes=max_bytes):
            destination = target / item.relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with open_context_file(item) as handle, open(destination, "wb") as out:
                while chunk := handle.read(1 << 20):
                    total += len(chunk)
                    out.write(chunk)
                executable = os.fstat(handle.fileno()).st_mode & 0o100
            os.chmod(destination, 0o755 if executable else 0o644)
        return folder_digest(target)
    if not source.name.endswith(UPLOAD_SUFFIXES):
        raise SubmissionError.of(source, "an upload is a folder or a .tar/.tar.gz of one; upload that")
    try:
        extract_tar(source, target, use=upload_use(max_bytes))
    except TruncatedArchive as exc:
        raise PartialUpload(str(exc), path=exc.path, detail=exc.detail) from None
    return folder_digest(target)
