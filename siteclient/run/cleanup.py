"""Removing what containers wrote, whatever shape it has.

A container controls the shape of its output folder: a directory nested thousands of levels deep
would make a recursive remover (``shutil.rmtree`` in Python 3.11) fail with ``RecursionError`` or
paths longer than ``PATH_MAX``. ``remove_tree`` works iteratively through directory file
descriptors and renames every subdirectory up to the top before emptying it, so depth never
matters, and it never follows a symbolic link.
"""

from __future__ import annotations

import os
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(root: Path) -> None:
    """Delete ``root`` and everything below it; a missing ``root`` is fine."""
    try:
        root_fd = os.open(root, _DIR)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(root)
        return
    try:
        pending = ["."]
        moved = 0
        while pending:
            name = pending.pop()
            fd = os.open(name, _DIR, dir_fd=root_fd)
            try:
                with os.scandir(fd) as entries:
                    children = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                for child, is_dir in children:
                    if is_dir:
                        moved += 1
                        flat = f".pht-rm-{moved}"
                        os.rename(child, flat, src_dir_fd=fd, dst_dir_fd=root_fd)
                        pending.append(flat)
                    else:
                        os.unlink(child, dir_fd=fd)
            finally:
                os.close(fd)
            if name != ".":
                os.rmdir(name, dir_fd=root_fd)
    finally:
        os.close(root_fd)
    os.rmdir(root)
