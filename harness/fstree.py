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
