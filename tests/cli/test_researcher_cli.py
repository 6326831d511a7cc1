"""The researcher's and auditor's commands, through ``main(argv)`` and as real processes,
against a real registry process (and, where a task must run, the real site client)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main as pht
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import ROOT, SiteEnv


def _profile(env: SiteEnv, capsys: pytest.CaptureFixture[str], member: str = "alice") -> None:
    key = str(env.tmp / "keys" / f"{member}.key")
    assert pht(["profile", "set", "--registry", env.url, "--key", key]) == 0
    assert "profile written" in capsys.readouterr().out


def test_keys_new_writes_a_private_key_only_its_owner_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pht(["keys", "new", "ana", "--dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE((tmp_path / "ana.key").stat().st_mode) == 0o600
    assert (tmp_path / "ana.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert len(out["key_id"]) == 64
    assert pht(["keys", "new", "ana", "--dir", str(tmp_path)]) == 1  # never overwrites
    assert "refusing to overwrite" in capsys.readouterr().err


def test_post_watch_results_through_the_cli(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.script("clihello", "echo '{\"answer\": 42}' > /pht/output/answer.json", tag="1")
    _profile(env, capsys)
    (env.tmp / "config.json").write_text('{"question": "life"}')
    assert (
        pht(
            [
                "task",
                "post",
                "--image",
                image.reference,
                "--config",
                str(env.tmp / "config.json"),
                "--sites",
                "site-a",
                "--pin-digest",
                "--plaintext",
            ]
        )
        == 0
    )
    task = capsys.readouterr().out.strip()
    assert len(task) == 64
    assert env.follow_once(env.write_config()) == 0
    assert pht(["task", "watch", task, "--timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert "site-a" in out and "completed" in out
    assert pht(["task", "results", task, "--out", str(env.tmp / "out"), "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["sites"]["site-a"]["state"] == "completed"
    assert json.loads((env.tmp / "out" / "site-a" / "answer.json").read_text()) == {"answer": 42}
    # the pinned digest is what ran
    entry = env.client().entry(1)
    assert entry.event.event.body.image == f"{image.reference}@{image.digest}"  # type: ignore[union-attr]


def test_audit_of_registry_and_data_directory(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    _profile(env, capsys, "audrey")
    env.post("127.0.0.1:5000/pht-test/rt-nothing:1", {"n": 1})
    assert pht(["audit", "--registry", env.url, "--json", "--workers", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"] == 2
    assert report["tasks"][0]["author"] == "alice"
    assert report["tasks"][0]["sites"] == {
        "site-a": {
            "state": "pending",
            "index": None,
            "image_digest": None,
            "exit_code": None,
            "reason": None,
            "outputs": 0,
        }
    }
    assert env.registry is not None
    env.registry.stop()
    assert pht(["audit", "--data", str(env.registry.data)]) == 0
    assert "all hashes, signatures, rules and proofs verified" in capsys.readouterr().out
    # a flipped byte in the data directory fails the audit, naming the entry
    log = env.registry.data / "entries.log"
    raw = bytearray(log.read_bytes())
    raw[raw.index(b"rt-nothing")] ^= 0x01
    log.write_bytes(bytes(raw))
    assert pht(["audit", "--data", str(env.registry.data)]) == 2
    assert "entry 1" in capsys.readouterr().err


def test_member_add_then_revoke_stops_the_key(
    env: SiteEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _profile(env, capsys, "admin")
    assert pht(["keys", "new", "bob", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert (
        pht(
            [
                "member",
                "add",
                "bob",
                "--role",
                "researcher",
                "--public-key",
                str(tmp_path / "bob.pub"),
            ]
        )
        == 0
    )
    assert pht(["member", "revoke", "bob"]) == 0
    assert "revoke bob" in capsys.readouterr().out
    (tmp_path / "c.json").write_text("{}")
    code = pht(
        [
            "task",
            "post",
            "--image",
            "a/b:1",
            "--config",
            str(tmp_path / "c.json"),
            "--sites",
            "site-a",
            "--registry",
            env.url,
            "--key",
            str(tmp_path / "bob.key"),
        ]
    )
    assert code == 1
    assert "pht: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            [
                "task",
                "post",
                "--image",
                "a/b:1",
                "--config",
                "/nonexistent.json",
                "--sites",
                "x",
                "--registry",
                "http://127.0.0.1:9",
                "--key",
                "/nonexistent.key",
            ],
            1,
            "cannot open",
        ),
        (["task", "watch", "ab" * 32], 1, "no registry given"),
        (["audit", "--data", "/nonexistent-dir"], 2, "cannot read"),
        (["task"], 2, ""),
        (["no-such-command"], 2, ""),
    ],
)
def test_errors_are_one_clear_line_and_a_non_zero_exit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "none.json"))
    assert pht(argv) == code
    err = capsys.readouterr().err
    assert message in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1


def test_cli_runs_as_a_real_process_with_help() -> None:
    for argv in (["--help"], ["task", "--help"], ["audit", "--help"], ["keys", "new", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "usage: pht" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "siteclient.main", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0 and "check-image" in done.stdout
