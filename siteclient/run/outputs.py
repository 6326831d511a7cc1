"""Collect what a finished container left in its output folder, without trusting any of it.

The folder was writable by hostile code, so every entry is treated as an attack until proven a
plain file:

- Only **top-level regular files** are collected. Symbolic links are never followed (``lstat``
  type check, then ``os.open`` with ``O_NOFOLLOW`` relative to a descriptor of the folder itself,
  and an ``fstat`` that must show the same regular file). FIFOs, sockets, devices and
  subdirectories are skipped, and a FIFO is never opened, so collection cannot block on one
  (``O_NONBLOCK`` is set as well, in case an entry is swapped between the check and the open).
- A file with more than one hard link is skipped: its content may be shared with a file outside
  the folder.
- A name must match :data:`NAME` (ASCII letters, digits, ``.``, ``_``, ``-``; no leading dot), so
  it is safe as a blob label, a file name at the researcher's end and in a log line.
- Limits are enforced while reading: at most ``max_files`` collected files, at most ``max_bytes``
  in total (counted as the bytes actually read, not the size a file claims), and at most
  ``max_files + MAX_SKIPPED`` entries of any kind. Breaking a limit raises
  :class:`~siteclient.errors.OutputError` naming it; a skipped entry does not.

Skipped entries are returned with their reasons so the result can say what was ignored. Names in
those reasons are shown with :func:`repr`, so control characters cannot forge log lines.

Uploading must use :meth:`CollectedFile.read_bytes`, which reopens the same inode without
following links and checks the size and hash again, never a plain ``open(path)``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from siteclient.errors import OutputError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_SKIPPED = 100
MAX_DEPTH = 16
CHUNK = 1 << 16

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectedFile:
    """One output file: its name in the folder, where it is, its SHA-256 and size."""

    name: str
    path: Path
    sha256: str
    size: int
    device: int
    inode: int

    def read_bytes(self) -> bytes:
        """The file's content, re-verified: same inode, not a link, same size and hash.

        Raises :class:`OutputError` if the file was replaced or changed since it was collected.
        """
        with _open_dir(self.path.parent) as dir_fd:
            try:
                fd = _open_regular(dir_fd, self.name)
            except _NotRegular as exc:
                raise OutputError(f"output {self.name!r} is no longer a regular file") from exc
            try:
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) != (self.device, self.inode):
                    raise OutputError(f"output {self.name!r} was replaced after collection")
                data = _read_at_most(fd, self.size + 1)
            finally:
                os.close(fd)
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise OutputError(
                f"output {self.name!r} changed after collection: expected {self.size} bytes "
                f"with sha256 {self.sha256}, found {len(data)} bytes"
            )
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedEntry:
    """An entry of the output folder that was not collected, and why."""

    name: str  # repr() of the entry's name: printable whatever the container chose
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Collection:
    """What :func:`collect_outputs` found: the files (sorted by name) and what it skipped."""

    files: tuple[CollectedFile, ...]
    skipped: tuple[SkippedEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def collect_outputs(output_dir: Path, *, max_files: int, max_bytes: int) -> Collection:
    """Hash every top-level regular file of ``output_dir`` within the limits.

    Raises :class:`OutputError` if the folder cannot be read, holds more than ``max_files``
    collectable files, more than ``max_bytes`` in total, or more than ``max_files +
    MAX_SKIPPED`` entries.
    """
    if max_files < 0 or max_bytes < 0:
        raise ValueError("limits must not be negative")
    files: list[CollectedFile] = []
    skipped: list[SkippedEntry] = []
    total = 0
    seen = 0
    with _open_dir(output_dir) as dir_fd:
        try:
            entries = sorted(os.scandir(dir_fd), key=lambda e: e.name)
        except OSError as exc:
            raise OutputError(f"cannot list the output folder {output_dir}: {exc}") from exc
        for entry in entries:
            seen += 1
            if seen > max_files + MAX_SKIPPED:
                raise OutputError(
                    f"the output folder holds more than {max_files + MAX_SKIPPED} entries "
                    f"(at most {max_files} files are collected)"
                )
            reason = _refusal(entry)
            if reason is not None:
                skipped.append(SkippedEntry(name=repr(entry.name), reason=reason))
                continue
            if len(files) >= max_files:
                raise OutputError(f"more than {max_files} output files")
            collected = _hash_file(dir_fd, output_dir, entry.name, budget=max_bytes - total)
            if collected is None:
                skipped.append(SkippedEntry(name=repr(entry.name), reason="not a regular file"))
                continue
            total += collected.size
            files.append(collected)
    return Collection(files=tuple(files), skipped=tuple(skipped))


def _refusal(entry: os.DirEntry[str]) -> str | None:
    """Why ``entry`` is not collected, judged from ``lstat``; ``None`` if it may be."""
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return "symbolic link (never followed)"
    if stat.S_ISDIR(mode):
        return "directory (only top-level files are collected)"
    if stat.S_ISFIFO(mode):
        return "FIFO (not a regular file)"
    if stat.S_ISSOCK(mode):
        return "socket (not a regular file)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node (not a regular file)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if info.st_nlink > 1:
        return f"hard link ({info.st_nlink} links)"
    if NAME.fullmatch(entry.name) is None:
        return "name not allowed (ASCII letters, digits, '.', '_', '-'; at most 128)"
    return None


def _hash_file(dir_fd: int, folder: Path, name: str, *, budget: int) -> CollectedFile | None:
    """Stream ``name`` through SHA-256; ``None`` if it turned out not to be a regular file."""
    try:
        fd = _open_regular(dir_fd, name)
    except _NotRegular:
        return None
    try:
        info = os.fstat(fd)
        if info.st_nlink > 1:
            return None
        if info.st_size > budget:
            raise OutputError(_too_big(name, info.st_size, budget))
        digest = hashlib.sha256()
        size = 0
        while chunk := _read(fd, name, CHUNK):
            size += len(chunk)
            if size > budget:
                raise OutputError(_too_big(name, size, budget))
            digest.update(chunk)
    finally:
        os.close(fd)
    return CollectedFile(
        name=name,
        path=folder / name,
        sha256=digest.hexdigest(),
        size=size,
        device=info.st_dev,
        inode=info.st_ino,
    )


def _too_big(name: str, size: int, budget: int) -> str:
    return (
        f"output {name!r} is {size} bytes or more, over the {budget} bytes left "
        "of the output size limit"
    )


class _NotRegular(Exception):
    pass


def _open_regular(dir_fd: int, name: str) -> int:
    """Open ``name`` in ``dir_fd`` for reading, only if it is a regular file and not a link."""
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # ELOOP: it is a symlink now; ENXIO: a socket; anything else: gone or unreadable.
        if exc.errno in {errno.ELOOP, errno.ENXIO}:
            raise _NotRegular from exc
        raise OutputError(f"cannot open output {name!r}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotRegular
    return fd


def _read(fd: int, name: str, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise OutputError(f"cannot read output {name!r}: {exc.strerror}") from exc


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(CHUNK, left))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def output_excess(output_dir: Path, *, max_files: int, max_bytes: int) -> str | None:
    """Why the output folder of a *running* container already breaks the limits, or ``None``.

    Counts every entry at any depth (never following links, opening each directory relative to
    its parent's descriptor), stops counting once a limit is passed, and treats nesting deeper
    than :data:`MAX_DEPTH` as a breach: only top-level files are collected, so a deep tree is
    useless except to hide disk use. Errors while the tree changes under it count as no breach;
    the next check or the collection decides.
    """
    max_entries = max_files + MAX_SKIPPED
    entries = 0
    size = 0

    def walk(dir_fd: int, depth: int) -> str | None:
        nonlocal entries, size
        with os.scandir(dir_fd) as listing:
            for entry in listing:
                entries += 1
                if entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
                if entries > max_entries:
                    return f"the output folder holds more than {max_entries} entries"
                if size > max_bytes:
                    return f"the output folder holds more than {max_bytes} bytes"
                if entry.is_dir(follow_symlinks=False):
                    if depth >= MAX_DEPTH:
                        return f"the output folder nests deeper than {MAX_DEPTH} levels"
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        if (breach := walk(child, depth + 1)) is not None:
                            return breach
                    finally:
                        os.close(child)
        return None

    try:
        with _open_dir(output_dir) as top:
            return walk(top, 1)
    except (OSError, OutputError):
        return None


@contextmanager
def _open_dir(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise OutputError(f"cannot open the output folder {path}: {exc.strerror}") from exc
    try:
        yield fd
    finally:
        os.close(fd)
