"""docs/members-file.md's example founds a consortium with `pht init`, and its errors are as
the document says: the file's own index and the field's name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "members-file.md"
ROOT = DOC.parents[1]


def _pht(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def _example() -> str:
    return DOC.read_text(encoding="utf-8").split("```json\n", 1)[1].split("```", 1)[0]


def _keys(folder: Path, *names: str) -> None:
    for name in names:
        done = _pht(folder, "keys", "new", name)
        assert done.returncode == 0, done.stderr


def test_the_example_founds_a_consortium(tmp_path: Path) -> None:
    _keys(tmp_path, "admin", "ana", "site-a", "aud")
    (tmp_path / "members.json").write_text(_example())
    done = _pht(
        tmp_path,
        *("init", "--data", "reg", "--origin", "example.org/docs"),
        *("--admin-key", "admin.key", "--members", "members.json"),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["members"] == ["admin", "ana", "site-a", "ttp", "aud"]


def test_an_unknown_field_is_named_with_the_file_s_index(tmp_path: Path) -> None:
    _keys(tmp_path, "admin", "ana")
    members = [
        {"name": "admin", "role": "admin", "public_key_file": "admin.pub"},
        {"name": "ana", "role": "researcher", "public_key_file": "ana.pub", "encryption": "x"},
    ]
    (tmp_path / "members.json").write_text(json.dumps(members))
    done = _pht(
        tmp_path,
        *("init", "--data", "reg", "--origin", "example.org/docs"),
        *("--admin-key", "admin.key", "--members", "members.json"),
    )
    assert done.returncode == 1
    assert "member 1" in done.stderr and "'encryption'" in done.stderr, done.stderr
    assert not (tmp_path / "reg").exists()
