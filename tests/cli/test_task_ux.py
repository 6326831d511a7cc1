"""What a researcher sees from ``pht task``: refusals that protect results, results and logs
never left silently encrypted, short task ids, JSON-only output, cancel reasons; against a real
registry process and, where a container must run, the real site client and Docker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from api.client.analyst import Analyst
from api.client.answers import TaskProgress
from cli.errors import CliError
from cli.main import main as pht
from cli.taskid import resolve_task
from ledger.bodies import ResultState
from ledger.tasks import LOG_TRUNCATED
from tests.cli.researcher_env import post_result, profile, publish_encryption_key
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import ROOT, SiteEnv


def _post(env: SiteEnv, *extra: str, image: str = "127.0.0.1:5000/pht-test/rt-x:1") -> list[str]:
    config = env.tmp / "task-config.json"
    config.write_text('{"n": 1}')
    return [
        "task",
        "post",
        "--image",
        image,
        "--config",
        str(config),
        "--sites",
        "site-a",
        "--no-review-check",
        *extra,
    ]


def test_task_post_refuses_recipient_without_encryption_key(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)
    assert pht(_post(env)) == 1
    err = capsys.readouterr().err
    assert "you (alice) have published no encryption key" in err
    assert "pht member rekey alice --identity alice.age" in err and "--plaintext" in err
    assert env.client().health() == 1  # nothing was posted

    assert pht(_post(env, "--plaintext", "--json")) == 0
    captured = capsys.readouterr()
    posted = json.loads(captured.out)
    assert posted["index"] == 1 and len(posted["task"]) == 64
    assert "plaintext" in captured.err

    publish_encryption_key(env, capsys, env.tmp / "keys" / "alice.age")
    assert pht(_post(env)) == 0
    assert len(capsys.readouterr().out.strip()) == 64


def test_results_never_reports_success_for_files_left_encrypted(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)
    elsewhere = env.tmp / "elsewhere" / "alice.age"  # not beside alice.key: no default identity
    identity = publish_encryption_key(env, capsys, elsewhere)
    assert pht(_post(env)) == 0
    task = capsys.readouterr().out.strip()
    answer = b'{"answer": 42}\n'
    post_result(
        env, task, outputs={"answer.json": answer}, log=b"hello\n", recipient=identity.recipient
    )
    out = env.tmp / "out"
    assert pht(["task", "results", task, "--out", str(out)]) == 5
    captured = capsys.readouterr()
    assert "left encrypted" in captured.err and "--identity" in captured.err
    assert not (out / "site-a" / "answer.json").exists()
    assert (out / "site-a" / "answer.json.age").exists()
    assert (out / "site-a.log.age").exists()

    argv = ["task", "results", task, "--out", str(env.tmp / "out2"), "--json"]
    assert pht([*argv, "--identity", str(elsewhere)]) == 0
    saved = json.loads(capsys.readouterr().out)
    (file,) = saved["sites"]["site-a"]["files"]
    assert file["size"] == len(answer)  # the plaintext's size, not the ciphertext's
    assert (env.tmp / "out2" / "site-a" / "answer.json").read_bytes() == answer
    assert (env.tmp / "out2" / "site-a.log").read_bytes() == b"hello\n"
    assert saved["left_encrypted"] == []


def test_identity_defaults_to_name_age_beside_the_key(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)  # no --identity anywhere
    identity = publish_encryption_key(env, capsys, env.tmp / "keys" / "alice.age")
    assert pht(_post(env)) == 0
    task = capsys.readouterr().out.strip()
    post_result(env, task, outputs={"r.txt": b"secret\n"}, recipient=identity.recipient)
    assert pht(["task", "results", task, "--out", str(env.tmp / "out")]) == 0
    assert (env.tmp / "out" / "site-a" / "r.txt").read_bytes() == b"secret\n"


def test_task_logs_prints_each_sites_log_decrypted_and_says_when_truncated(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.script(
        "chatty",
        "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done; "
        "echo '{}' > /pht/output/r.json",
        tag="1",
    )
    profile(env, capsys)
    publish_encryption_key(env, capsys, env.tmp / "keys" / "alice.age")
    assert pht(_post(env, image=image.reference)) == 0
    task = capsys.readouterr().out.strip()
    limits = {"timeout_s": 20, "memory_mb": 64, "log_max_bytes": 300}
    assert env.follow_once(env.write_config(limits=limits)) == 0
    assert pht(["task", "logs", task[:8]]) == 0
    captured = capsys.readouterr()
    assert "line 399" in captured.out and "line 1\n" not in captured.out
    assert "truncated by the site" in captured.out and "truncated" in captured.err

    assert pht(["task", "logs", task[:8], "--site", "site-a", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["sites"]["site-a"]
    assert report["truncated"] is True and report["log"].endswith("line 399\n")

    assert pht(["task", "results", task, "--out", str(env.tmp / "out")]) == 0
    log = (env.tmp / "out" / "site-a.log").read_bytes()
    assert log.startswith(LOG_TRUNCATED) and log.endswith(b"line 399\n")


def test_watch_json_prints_only_json(env: SiteEnv, capsys: pytest.CaptureFixture[str]) -> None:
    profile(env, capsys)
    assert pht(_post(env, "--plaintext")) == 0
    task = capsys.readouterr().out.strip()
    post_result(env, task)
    assert pht(["task", "watch", task, "--json", "--timeout", "30"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is JSON and nothing else
    assert report["sites"]["site-a"]["state"] == "completed"
    assert report["cancelled"] is None
    assert "site-a" in captured.err  # the progress table went to stderr


def test_task_id_prefix_is_accepted(env: SiteEnv, capsys: pytest.CaptureFixture[str]) -> None:
    profile(env, capsys)
    assert pht(_post(env, "--plaintext")) == 0
    task = capsys.readouterr().out.strip()
    post_result(env, task)
    assert pht(["task", "watch", task[:12], "--timeout", "30"]) == 0
    assert "site-a: completed" in capsys.readouterr().out
    assert pht(["task", "results", task[:4].upper(), "--out", str(env.tmp / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == task

    unknown = "0000" if not task.startswith("0000") else "ffff"
    assert pht(["task", "watch", unknown]) == 1
    assert f"no task id starts with '{unknown}'" in capsys.readouterr().err
    assert pht(["task", "watch", "abc"]) == 1
    assert "at least 4 hex digits" in capsys.readouterr().err


def test_task_id_prefix_shared_by_two_tasks_is_refused_as_ambiguous() -> None:
    tasks = {"abcd" + "1" * 60: None, "abcd" + "2" * 60: None, "ef01" + "3" * 60: None}
    view = SimpleNamespace(tasks=tasks, size=4)
    analyst = cast(Analyst, SimpleNamespace(ledger_view=lambda: view))
    assert resolve_task(analyst, "ef01") == "ef01" + "3" * 60
    with pytest.raises(CliError, match="'abcd' is ambiguous: it starts abcd1111, abcd2222"):
        resolve_task(analyst, "abcd")


def test_cancel_reason_is_shown_by_watch_results_and_audit(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)
    assert pht(_post(env, "--plaintext")) == 0
    task = capsys.readouterr().out.strip()
    assert pht(["task", "cancel", task[:8], "--reason", "testing cancel", "--json"]) == 0
    cancelled = json.loads(capsys.readouterr().out)
    assert cancelled == {"task": task, "index": 2}
    post_result(env, task, state=ResultState.CANCELLED)
    assert pht(["task", "watch", task, "--timeout", "30"]) == 4
    assert "cancelled at entry 2: testing cancel" in capsys.readouterr().out
    assert pht(["task", "results", task, "--out", str(env.tmp / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cancelled"] == {
        "index": 2,
        "reason": "testing cancel",
    }
    assert pht(["audit", "--registry", env.url, "--workers", "1"]) == 0
    assert "cancelled at entry 2: testing cancel" in capsys.readouterr().out


def test_analyst_progress_is_one_short_readable_line(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    task = env.post("127.0.0.1:5000/pht-test/rt-x:1")
    post_result(env, task, log=b"done\n")
    seen: list[TaskProgress] = []
    analyst = env.analyst()
    view = analyst.wait(task, timeout=30, progress=seen.append)
    assert repr(seen[-1]) == f"<task {task[:12]}: site-a completed>"
    assert str(seen[-1]) == repr(seen[-1])
    assert analyst.log(analyst.results(view)["site-a"].result) == b"done\n"
    assert "identity" in (Analyst.__doc__ or "")  # the class says how to decrypt


def test_rule_violation_names_no_entry_that_never_existed(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)
    argv = _post(env, "--plaintext")
    argv[argv.index("site-a")] = "site-a,site-z"
    assert pht(argv) == 1
    err = capsys.readouterr().err
    assert "task event: 'site-z' is not an active site" in err
    assert "entry 1" not in err
    assert pht(["member", "revoke", "audrey"]) == 1
    err = capsys.readouterr().err
    assert "'alice' is a researcher, only an admin may post this" in err
    assert "--key admin.key" in err


def test_watch_keeps_retrying_across_a_registry_restart(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)
    assert pht(_post(env, "--plaintext")) == 0
    task = capsys.readouterr().out.strip()
    watch = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "task", "watch", task, "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )
    try:
        assert watch.stdout is not None and watch.stderr is not None
        assert "site" in watch.stdout.readline()  # the table's header: it is watching
        assert env.registry is not None
        env.registry.terminate()
        line = watch.stderr.readline()
        assert "registry unreachable, still retrying" in line, line
        env.registry.start()  # the same port
        post_result(env, task)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert "site-a: completed" in out
    assert "registry reachable again" in err


def test_unreachable_registry_error_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "none.json"))
    assert pht(["keys", "new", "ana", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    argv = ["task", "watch", "ab" * 32, "--key", str(tmp_path / "ana.key")]
    assert pht([*argv, "--registry", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "is `pht serve` running there? check --registry or the profile" in err


def test_a_url_that_is_not_a_registry_says_so(
    env: SiteEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(env.tmp / "keys" / "alice.key")
    assert pht(["task", "watch", "ab" * 32, "--key", key, "--registry", env.url + "/api"]) == 1
    assert "give --registry as its base URL" in capsys.readouterr().err
    server = subprocess.Popen(  # any web server that is not a registry: its 404 is not ours
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = _http_server_port(server.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        assert pht(["task", "watch", "ab" * 32, "--key", key, "--registry", url]) == 1
        assert "answered, but not as a PHT registry" in capsys.readouterr().err
    finally:
        server.terminate()
        server.wait(10)


def _http_server_port(line: str) -> int:
    # "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
    return int(line.split(" port ", 1)[1].split(maxsplit=1)[0])


def test_pin_digest_of_a_missing_image_names_it_without_docker_internals(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys)
    argv = _post(env, "--plaintext", "--pin-digest", image="127.0.0.1:5000/pht-test/rt-nope:1")
    assert pht(argv) == 1
    err = capsys.readouterr().err
    assert "cannot pin 127.0.0.1:5000/pht-test/rt-nope:1: the image registry has no such" in err
    assert "http+docker" not in err and "Client Error" not in err
