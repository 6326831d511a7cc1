"""The runtime's pure checks: image configurations, repository digests, run specs, times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from siteclient.errors import ConfigError, DigestMismatchError, PolicyError
from siteclient.runtime.sandbox import log_file_bytes
from siteclient.runtime.spec import (
    REPOSITORY,
    RunLimits,
    RunSpec,
    check_image_config,
    check_repo_digest,
    engine_time,
    familiar_repository,
)

DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32
RUNNABLE = {"Cmd": ["/bin/sh"]}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({**RUNNABLE, "Volumes": {"/data": {}}}, "declares VOLUMEs"),
        ({**RUNNABLE, "WorkingDir": "/proc/self/fd/7"}, "under /proc"),
        ({**RUNNABLE, "WorkingDir": "/proc"}, "under /proc"),
        ({**RUNNABLE, "WorkingDir": "//proc/self/cwd"}, "under /proc"),
        ({**RUNNABLE, "WorkingDir": "/tmp/../proc/1/root"}, "under /proc"),
        ({**RUNNABLE, "WorkingDir": "/./proc/./self"}, "under /proc"),
        ({**RUNNABLE, "WorkingDir": "/sys/fs/cgroup"}, "under /sys"),
        ({**RUNNABLE, "WorkingDir": "/dev/shm"}, "under /dev"),
        ({**RUNNABLE, "WorkingDir": ["/app"]}, "malformed working directory"),
        ({}, "declares no command"),
        ({"Cmd": None, "Entrypoint": []}, "declares no command"),
    ],
    ids=[
        "volume",
        "workdir-proc-fd",
        "workdir-proc",
        "workdir-double-slash",
        "workdir-dotdot",
        "workdir-dot",
        "workdir-sys",
        "workdir-dev",
        "workdir-not-text",
        "no-command",
        "empty-command",
    ],
)
def test_image_config_weakening_the_sandbox_is_refused(config: dict[str, Any], match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        check_image_config(config, "img")


@pytest.mark.parametrize(
    "config",
    [
        RUNNABLE,
        {"Entrypoint": ["/app/run"], "WorkingDir": "/app", "Volumes": None},
        {**RUNNABLE, "WorkingDir": "/processes"},  # only a prefix of "/proc" as text
        {**RUNNABLE, "WorkingDir": "/srv/proc"},
        {**RUNNABLE, "Volumes": {}},
    ],
)
def test_ordinary_image_configs_pass(config: dict[str, Any]) -> None:
    check_image_config(config, "img")


@pytest.mark.parametrize(
    ("repository", "familiar"),
    [
        ("docker.io/library/busybox", "busybox"),
        ("docker.io/team/app", "team/app"),
        ("docker.io/library/team/app", "library/team/app"),
        ("127.0.0.1:5000/pht-test/busybox", "127.0.0.1:5000/pht-test/busybox"),
        ("registry.example.org/library/x", "registry.example.org/library/x"),
    ],
)
def test_familiar_repository_as_docker_prints_it(repository: str, familiar: str) -> None:
    assert familiar_repository(repository) == familiar


def test_repo_digest_must_name_the_repository_and_the_digest() -> None:
    check_repo_digest([f"busybox@{DIGEST}"], "docker.io/library/busybox", DIGEST)
    other = "sha256:" + "ef" * 32
    for repo_digests in (
        [],
        [f"busybox@{other}"],
        [f"evil.example/busybox@{DIGEST}"],  # the same digest from another repository
        [f"busybox@{DIGEST}x"],
    ):
        with pytest.raises(DigestMismatchError):
            check_repo_digest(repo_digests, "docker.io/library/busybox", DIGEST)


def _spec(**changes: Any) -> RunSpec:
    values: dict[str, Any] = {
        "image_id": IMAGE_ID,
        "task": "t" * 64,
        "site": "site-a",
        "sparql_endpoint": "http://127.0.0.1:7878/query",
        "config": b"{}",
        "work_dir": Path("/nonexistent"),
    }
    values.update(changes)
    return RunSpec(**values)


@pytest.mark.parametrize(
    "changes",
    [
        {"image_id": "busybox:latest"},  # a name would let the engine resolve (and pull) it
        {"image_id": "sha256:" + "AB" * 32},
        {"network": "host"},
        {"network": "bridge"},
        {"network": "container:abc"},
        {"network": "none"},
        {"site": "a\nb"},
        {"sparql_endpoint": "http://x\x00"},
    ],
    ids=repr,
)
def test_run_spec_refuses_unsafe_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        _spec(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout_s": 0},
        {"memory_bytes": 1024},
        {"cpus": 0},
        {"pids": 0},
        {"log_max_bytes": 0},
        {"output_max_bytes": True},
    ],
    ids=repr,
)
def test_run_limits_refuse_nonsense(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RunLimits(**changes)


def test_engine_times_become_ledger_times() -> None:
    assert engine_time("2026-11-25T18:26:18.53106416Z", "x") == "2026-11-25T18:26:18.531064Z"
    assert engine_time("2026-11-25T18:26:18Z", "x") == "2026-11-25T18:26:18.000000Z"
    assert engine_time("2026-11-25T19:26:18.5+01:00", "x") == "2026-11-25T18:26:18.500000Z"
    assert engine_time("0001-01-01T00:00:00Z", "fallback") == "fallback"
    assert engine_time(None, "fallback") == "fallback"


def test_log_files_hold_more_than_the_tail_even_for_one_byte_lines() -> None:
    limit = 64 * 1024
    one_byte_line = b'{"log":"\\n","stream":"stdout","time":"2026-11-25T18:34:59.370909123Z"}\n'
    entries_per_file = log_file_bytes(limit) // len(one_byte_line)
    assert entries_per_file > limit  # one output byte per entry still fills more than the tail


@pytest.mark.parametrize(
    ("repository", "accepted"),
    [
        ("busybox", True),
        ("team/app", True),
        ("127.0.0.1:5000/pht-test/busybox", True),
        ("Registry.Example.com/team/x", True),  # Docker allows upper case in the host only
        ("localhost:5000/a/b", True),
        ("a__b/c--d", True),
        ("UPPER/case", False),
        ("reg.io/A", False),
        ("a//b", False),
        ("x;rm -rf /", False),
        ("a___b", False),
        ("/x", False),
        ("x/", False),
        ("busybox\n", False),
        ("bu\u0455ybox", False),  # Cyrillic dze
    ],
)
def test_runtime_repository_grammar_is_a_second_line_of_defence(
    repository: str, accepted: bool
) -> None:
    assert (REPOSITORY.fullmatch(repository) is not None) is accepted
