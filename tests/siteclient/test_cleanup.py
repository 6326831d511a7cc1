"""Removing container-written trees of any shape."""

from __future__ import annotations

import os
from pathlib import Path

from siteclient.run.cleanup import remove_tree


def test_removes_a_tree_deeper_than_recursion_and_path_limits(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3000):  # 3000 levels: beyond Python's recursion limit and PATH_MAX
        os.mkdir("d", dir_fd=fd)
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    remove_tree(root)
    assert not root.exists()


def test_does_not_follow_symlinks_out_of_the_tree(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "key").write_text("secret")
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(precious)
    (root / "filelink").symlink_to(precious / "key")
    remove_tree(root)
    assert not root.exists()
    assert (precious / "key").read_text() == "secret"


def test_missing_tree_is_fine(tmp_path: Path) -> None:
    remove_tree(tmp_path / "never-made")
