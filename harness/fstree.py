"""Folder trees written by untrusted code: walked and removed without recursion, links or path limits.

An algorithm can leave thousands of nested folders, paths longer than PATH_MAX and names that are
not UTF-8 in its `/output`. `shutil.rmtree` and Python 3.11's `os.walk` recurse (RecursionError
past ~1000 levels) and full paths fail past PATH_MAX; these work relative to directory descriptors,
iteratively, with at most two descriptors open.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def remove_tree(path: Path | str) -> None:
    """Delete `path` and everything under it (any depth, any name); links are removed, never followed."""
    try:
        root = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError:  # not a folder (a file or a link): remove the entry itself
        os.unlink(path)
        return
    lifted = 0
    try:
        while True:
            with os.scandir(root) as listing:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in listing]
            if not entries:
                break
            for name, is_dir in entries:
                if not is_dir:
                    os.unlink(name, dir_fd=root)
                    continue
                child = os.open(name, _DIR_FLAGS, dir_fd=root)
                try:
                    with os.scandir(child) as listing:
                        inner = [(e.name, e.is_dir(follow_symlinks=False)) for e in listing]
                    for sub, sub_is_dir in inner:
                        if sub_is_dir:  # lift it to the top: the tree gets shallower, never deeper
                            lifted += 1
                            os.rename(sub, f".lifted-{lifted}", src_dir_fd=child, dst_dir_fd=root)
                        else:
                            os.unlink(sub, dir_fd=child)
                finally:
                    os.close(child)
                os.rmdir(name, dir_fd=root)
    finally:
        os.close(root)
    os.rmdir(path)


def walk_entries(root: Path | str) -> Iterator[tuple[bytes, os.stat_result]]:
    """(path relative to `root` as bytes, lstat) of every entry below `root`, iteratively; parts
    that cannot be read (too deep for a path, vanished) are skipped."""
    base = os.fsencode(root)
    stack = [b""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(base, rel) if rel else base) as listing:
                for entry in listing:
                    child = os.path.join(rel, entry.name) if rel else entry.name
                    info = entry.stat(follow_symlinks=False)
                    yield child, info
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(child)
        except OSError:
            continue


def pack_folder(folder: Path) -> bytes:
    """An organiser's staged folder (a case's input) as a tar for `put_archive`, every entry
    writable by anyone (a contract that runs the image's own user, whose id the harness does not
    know, writes there)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(folder.rglob("*")):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o777 if path.is_dir() else 0o666
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            elif path.is_dir():
                archive.addfile(info)
    return buffer.getvalue()
