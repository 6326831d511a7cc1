"""Collecting a container's outputs: only top-level regular files, within the limits.

These build hostile output folders directly on disk (no engine needed); ``test_runtime.py`` has
the same attacks made by real containers.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from siteclient.errors import OutputError
from siteclient.run.outputs import (
    MAX_DEPTH,
    MAX_SKIPPED,
    Collection,
    collect_outputs,
    output_excess,
)

MiB = 1 << 20


def collect(folder: Path, max_files: int = 10, max_bytes: int = MiB) -> Collection:
    return collect_outputs(folder, max_files=max_files, max_bytes=max_bytes)


def test_collects_top_level_regular_files_with_their_hashes(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"x,y\n1,2\n")
    (tmp_path / "a.json").write_bytes(b"{}")
    (tmp_path / "empty.txt").write_bytes(b"")

    collection = collect(tmp_path)

    assert [(f.name, f.size) for f in collection.files] == [
        ("a.json", 2),
        ("b.csv", 8),
        ("empty.txt", 0),
    ]
    assert collection.files[1].sha256 == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert collection.files[1].read_bytes() == b"x,y\n1,2\n"
    assert collection.total_bytes == 10
    assert collection.skipped == ()


def _symlink_to_secret(folder: Path) -> None:
    secret = folder.parent / "site.key"
    secret.write_text("SITE-PRIVATE-KEY")
    (folder / "key").symlink_to(secret)


def _dangling_symlink(folder: Path) -> None:
    (folder / "gone").symlink_to(folder / "nowhere")


def _symlink_to_dir(folder: Path) -> None:
    (folder / "root").symlink_to("/")


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "pipe")


def _socket(folder: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    sock.close()


def _subdirectory(folder: Path) -> None:
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.txt").write_text("hidden")


def _hard_link(folder: Path) -> None:
    outside = folder.parent / "outside.txt"
    outside.write_text("a file outside the output folder")
    os.link(outside, folder / "linked")


def _bad_name(name: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / name).write_text("x")

    return make


def _device(folder: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(folder / "null", 0o600 | 0o020000, os.makedev(1, 3))


@pytest.mark.parametrize(
    ("attack", "name", "reason"),
    [
        (_symlink_to_secret, "key", "symbolic link (never followed)"),
        (_dangling_symlink, "gone", "symbolic link (never followed)"),
        (_symlink_to_dir, "root", "symbolic link (never followed)"),
        (_fifo, "pipe", "FIFO (not a regular file)"),
        (_socket, "sock", "socket (not a regular file)"),
        (_device, "null", "device node (not a regular file)"),
        (_subdirectory, "sub", "directory (only top-level files are collected)"),
        (_hard_link, "linked", "hard link (2 links)"),
        (_bad_name(".hidden"), ".hidden", "name not allowed"),
        (_bad_name("-rf"), "-rf", "name not allowed"),
        (_bad_name("new\nline"), "new\nline", "name not allowed"),
        (_bad_name("spa ce"), "spa ce", "name not allowed"),
        (_bad_name("résumé.txt"), "résumé.txt", "name not allowed"),
        (_bad_name("x" * 129), "x" * 129, "name not allowed"),
    ],
    ids=[
        "symlink-to-site-key",
        "dangling-symlink",
        "symlink-to-root",
        "fifo",
        "socket",
        "device",
        "subdirectory",
        "hard-link-outside",
        "dotfile",
        "option-like",
        "newline",
        "space",
        "non-ascii",
        "too-long",
    ],
)
def test_skips_what_is_not_a_plain_top_level_file(
    tmp_path: Path, attack: Callable[[Path], None], name: str, reason: str
) -> None:
    folder = tmp_path / "output"
    folder.mkdir()
    (folder / "real.txt").write_text("real")
    attack(folder)

    began = time.monotonic()
    collection = collect(folder)

    assert time.monotonic() - began < 1  # a FIFO must not block
    assert [f.name for f in collection.files] == ["real.txt"]
    assert [s.name for s in collection.skipped] == [repr(name)]
    assert collection.skipped[0].reason.startswith(reason)


def test_names_in_reasons_cannot_forge_log_lines(tmp_path: Path) -> None:
    (tmp_path / "x\nINFO forged").symlink_to("/etc/shadow")
    [skipped] = collect(tmp_path).skipped
    assert "\n" not in skipped.name


def test_refuses_more_files_than_the_limit(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"f{i}").write_text("x")
    assert len(collect(tmp_path, max_files=4).files) == 4
    with pytest.raises(OutputError, match="more than 3 output files"):
        collect(tmp_path, max_files=3)


def test_refuses_more_bytes_than_the_limit(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 600)
    (tmp_path / "b").write_bytes(b"x" * 400)
    assert collect(tmp_path, max_bytes=1000).total_bytes == 1000
    with pytest.raises(OutputError, match=r"'b' is 400 bytes or more, over the 399 bytes left"):
        collect(tmp_path, max_bytes=999)


def test_a_sparse_file_counts_by_its_size(tmp_path: Path) -> None:
    with open(tmp_path / "sparse", "wb") as handle:
        handle.truncate(1 << 40)  # a terabyte that takes no disk
    with pytest.raises(OutputError, match="'sparse' is 1099511627776 bytes"):
        collect(tmp_path)


def test_refuses_a_folder_flooded_with_junk_entries(tmp_path: Path) -> None:
    for i in range(3 + MAX_SKIPPED):
        (tmp_path / f"link{i}").symlink_to("/etc/shadow")
    with pytest.raises(OutputError, match=f"more than {2 + MAX_SKIPPED} entries"):
        collect(tmp_path, max_files=2)


def test_a_symlinked_output_folder_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("a")
    (tmp_path / "output").symlink_to(real)
    with pytest.raises(OutputError, match="cannot open the output folder"):
        collect(tmp_path / "output")


def test_read_bytes_detects_a_replaced_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("original")
    [collected] = collect(tmp_path).files
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").symlink_to("/etc/hostname")
    with pytest.raises(OutputError, match="no longer a regular file"):
        collected.read_bytes()
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").write_text("ORIGINAL")  # another file (the inode number may be reused)
    with pytest.raises(OutputError, match=r"(replaced|changed) after collection"):
        collected.read_bytes()


def test_read_bytes_detects_changed_content(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("original")
    [collected] = collect(tmp_path).files
    with open(tmp_path / "a.txt", "r+b") as handle:
        handle.write(b"ORIGINAL")
    with pytest.raises(OutputError, match="changed after collection"):
        collected.read_bytes()


# ---- the check made while a container runs


def test_output_excess_is_none_within_the_limits(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"x" * 100)
    assert output_excess(tmp_path, max_files=5, max_bytes=200) is None


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda p: (p / "big").write_bytes(b"x" * 201), "more than 200 bytes"),
        (
            lambda p: [(p / f"f{i}").touch() for i in range(6 + MAX_SKIPPED)],
            f"more than {5 + MAX_SKIPPED} entries",
        ),
        (
            lambda p: (p / "/".join(["d"] * (MAX_DEPTH + 1))).mkdir(parents=True),
            f"deeper than {MAX_DEPTH} levels",
        ),
        (
            lambda p: (
                (p / "a" / "b").mkdir(parents=True)
                or (p / "a" / "b" / "hidden").write_bytes(b"x" * 201)
            ),
            "more than 200 bytes",
        ),
    ],
    ids=["bytes", "entries", "depth", "bytes-in-subfolder"],
)
def test_output_excess_names_the_breach(
    tmp_path: Path, build: Callable[[Path], object], expected: str
) -> None:
    build(tmp_path)
    assert expected in (output_excess(tmp_path, max_files=5, max_bytes=200) or "")


def test_output_excess_does_not_follow_links(tmp_path: Path) -> None:
    (tmp_path / "root").symlink_to("/")
    (tmp_path / "usr").symlink_to("/usr")
    assert output_excess(tmp_path, max_files=5, max_bytes=200) is None
