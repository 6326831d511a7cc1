"""The container runtime against the real Docker engine and the real local image registry.

Every test builds a tiny image ``FROM`` the busybox test image whose command is the script under
test, pushes it to the local registry, and lets :class:`DockerRuntime` pull and run it, exactly as
the site would. The hostile ones must each end as a clear outcome, with the site (this process
and the engine) still healthy.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
import tracemalloc
from pathlib import Path

import docker
import pytest

from siteclient.errors import (
    ConfigError,
    DigestMismatchError,
    EngineUnavailableError,
    OutputError,
    PolicyError,
    PullError,
)
from siteclient.run.outputs import MAX_SKIPPED, collect_outputs
from siteclient.runtime.docker import (
    OOM_REASON,
    DockerRuntime,
    RunLimits,
    RunOutcome,
    RunSpec,
    RunState,
)
from siteclient.runtime.sandbox import CONTAINER_UID, LABEL_SITE
from tests.siteclient.conftest import BASE_IMAGE, TEST_SITE, BuiltImage, ImageFactory

pytestmark = pytest.mark.docker

MiB = 1 << 20
SPARQL = "http://sparql.site.example:7878/query"
CONFIG = b'{"iterations": 3, "label": "pht"}'
LIMITS = RunLimits(
    timeout_s=3,
    memory_bytes=64 * MiB,
    pids=64,
    tmpfs_bytes=2 * MiB,
    log_max_bytes=64 * 1024,
    output_max_files=10,
    output_max_bytes=1 * MiB,
)
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def spec_for(image_id: str, work_dir: Path, name: str, **changes: object) -> RunSpec:
    values: dict[str, object] = {
        "image_id": image_id,
        "task": f"task-{name}",
        "site": TEST_SITE,
        "sparql_endpoint": SPARQL,
        "config": CONFIG,
        "work_dir": work_dir,
        "limits": LIMITS,
    }
    values.update(changes)
    return RunSpec(**values)  # type: ignore[arg-type]


def run_script(
    runtime: DockerRuntime,
    images: ImageFactory,
    work_dir: Path,
    name: str,
    script: str,
    *,
    cancel: threading.Event | None = None,
    **changes: object,
) -> RunOutcome:
    image = images.script(name, script)
    pulled = runtime.pull(image.repository, tag=image.tag, digest=None)
    assert pulled.digest == image.digest
    return runtime.run(spec_for(pulled.image_id, work_dir, name, **changes), cancel)


def log_text(outcome: RunOutcome) -> str:
    return outcome.log_tail.decode("utf-8", "replace")


# ---- a well-behaved task


def test_well_behaved_task_completes_with_its_outputs(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = (
        "cat /pht/input/config.json > /pht/output/config-copy.json; "
        "echo hello > /pht/output/result.txt; echo done; echo oops >&2"
    )
    outcome = run_script(runtime, images, tmp_path, "well-behaved", script)

    assert outcome.state is RunState.COMPLETED, outcome
    assert outcome.exit_code == 0
    assert TIME.fullmatch(outcome.started) and TIME.fullmatch(outcome.finished)
    assert outcome.started <= outcome.finished
    # stdout and stderr are separate streams to the engine: their relative order is not kept.
    assert sorted(outcome.log_tail.splitlines()) == [b"done", b"oops"]
    assert not outcome.log_truncated

    output = outcome.output_dir
    assert (output.stat().st_uid, stat.S_IMODE(output.stat().st_mode)) == (CONTAINER_UID, 0o700)
    collection = collect_outputs(output, max_files=10, max_bytes=MiB)
    files = {f.name: f for f in collection.files}
    assert sorted(files) == ["config-copy.json", "result.txt"]
    assert files["config-copy.json"].read_bytes() == CONFIG
    assert files["result.txt"].read_bytes() == b"hello\n"
    assert all(f.path.stat().st_uid == CONTAINER_UID for f in collection.files)
    assert collection.skipped == ()


def test_environment_holds_only_the_documented_variables(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHT_SITE_SECRET", "must-not-leak")
    outcome = run_script(runtime, images, tmp_path, "env", "cat /proc/$$/environ | tr '\\0' '\\n'")

    assert outcome.state is RunState.COMPLETED, outcome
    env = dict(line.split("=", 1) for line in log_text(outcome).splitlines())
    # The three PHT variables; PATH from the image; HOSTNAME and HOME set by the engine.
    assert env == {
        "SPARQL_ENDPOINT": SPARQL,
        "PHT_TASK": "task-env",
        "PHT_SITE": TEST_SITE,
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME": "pht",
        "HOME": "/",
    }


def test_config_is_readable_and_read_only(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = (
        "exec 2>&1; cat /pht/input/config.json; echo; "
        "echo evil >> /pht/input/config.json && echo WROTE; "
        "rm -f /pht/input/config.json && echo REMOVED; "
        "touch /pht/input/new && echo CREATED; exit 0"
    )
    outcome = run_script(runtime, images, tmp_path, "config", script)

    text = log_text(outcome)
    assert outcome.state is RunState.COMPLETED, outcome
    assert text.startswith(CONFIG.decode() + "\n")
    assert "Read-only file system" in text
    assert not {"WROTE", "REMOVED", "CREATED"} & set(text.split())
    assert (outcome.output_dir.parent / "config.json").read_bytes() == CONFIG


def test_input_folder_is_mounted_read_only(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "data.csv").write_text("a,b\n1,2\n")
    work = tmp_path / "work"
    work.mkdir()
    script = (
        "exec 2>&1; cat /pht/input/files/data.csv; touch /pht/input/files/x && echo CREATED; exit 0"
    )
    outcome = run_script(runtime, images, work, "inputs", script, input_dir=inputs)

    assert outcome.state is RunState.COMPLETED, outcome
    assert log_text(outcome).startswith("a,b\n1,2\n")
    assert "CREATED" not in log_text(outcome)
    assert sorted(os.listdir(inputs)) == ["data.csv"]


def test_missing_executable_is_a_failed_run_not_a_site_error(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    image = images.build(f'FROM {BASE_IMAGE}\nENTRYPOINT ["/no/such/program"]\n', "no-program")
    pulled = runtime.pull(image.repository, tag=image.tag, digest=None)
    outcome = runtime.run(spec_for(pulled.image_id, tmp_path, "no-program"))

    assert (outcome.state, outcome.exit_code) == (RunState.FAILED, 127), outcome
    assert b"No such file or directory" in outcome.log_tail


def test_failing_task_reports_its_exit_code(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    outcome = run_script(runtime, images, tmp_path, "exit3", "echo bad input >&2; exit 3")

    assert (outcome.state, outcome.exit_code) == (RunState.FAILED, 3)
    assert outcome.reason == "exited with code 3"
    assert outcome.log_tail == b"bad input\n"


def test_limits_reach_the_kernel(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    # cgroup v1 files first, then their v2 names; whichever this engine's host has.
    script = (
        "cd /sys/fs/cgroup; for f in cpu/cpu.cfs_quota_us cpu.max pids/pids.max pids.max "
        "memory/memory.limit_in_bytes memory.max memory/memory.memsw.limit_in_bytes "
        "memory.swap.max; do [ -r $f ] && echo $f=$(cat $f); done; "
        "echo nofile=$(ulimit -n) core=$(ulimit -c) fsize=$(ulimit -f)"
    )
    limits = RunLimits(
        timeout_s=5, memory_bytes=48 * MiB, cpus=0.5, pids=40, tmpfs_bytes=MiB, nofile=256
    )
    outcome = run_script(runtime, images, tmp_path, "limits", script, limits=limits)

    assert outcome.state is RunState.COMPLETED, outcome
    seen = dict(line.split("=", 1) for line in log_text(outcome).split())
    assert seen.get("pids/pids.max", seen.get("pids.max")) == "40"
    if "cpu/cpu.cfs_quota_us" in seen:  # cgroup v1
        assert seen["cpu/cpu.cfs_quota_us"] == "50000"
        assert seen["memory/memory.limit_in_bytes"] == str(48 * MiB)
        assert seen["memory/memory.memsw.limit_in_bytes"] == str(48 * MiB)  # no swap
    else:  # cgroup v2
        assert seen["cpu.max"].split()[0] == "50000"
        assert seen["memory.max"] == str(48 * MiB)
        assert seen.get("memory.swap.max", "0") == "0"
    # 512-byte blocks: the output limit (64 MiB by default) plus one byte, rounded down.
    assert (seen["nofile"], seen["core"], seen["fsize"]) == ("256", "0", str(64 * MiB // 512))


# ---- hostile containers


def test_sleeper_is_killed_at_the_wall_clock_timeout(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    limits = RunLimits(timeout_s=2, memory_bytes=64 * MiB)
    began = time.monotonic()
    outcome = run_script(
        runtime, images, tmp_path, "sleeper", "echo going to sleep; sleep 100000", limits=limits
    )
    took = time.monotonic() - began

    assert outcome.state is RunState.TIMEOUT, outcome
    assert "timeout of 2 s" in outcome.reason
    assert outcome.log_tail == b"going to sleep\n"
    assert 2 <= took < 10


def test_fork_bomb_is_held_by_the_pids_limit(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = "bomb() { bomb | bomb & }; bomb; sleep 1; echo main-survived; exit 0"
    outcome = run_script(runtime, images, tmp_path, "forkbomb", script)

    # The bomb hits the pids limit (forks fail), the main shell ends, and the container's init
    # takes every bomb process down with it -- or the timeout does.
    assert outcome.state in {RunState.COMPLETED, RunState.FAILED, RunState.TIMEOUT}, outcome
    assert "can't fork" in log_text(outcome) or "Resource temporarily" in log_text(outcome)
    runtime.ping()
    healthy = run_script(runtime, images, tmp_path, "after-bomb", "echo fine")
    assert (healthy.state, healthy.log_tail) == (RunState.COMPLETED, b"fine\n")


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("awk 'BEGIN { s = \"x\"; while (1) s = s s }'", id="main-process"),
        pytest.param(
            "awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo survived; exit 0", id="child"
        ),
    ],
)
def test_memory_hog_is_oom_killed(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path, script: str
) -> None:
    limits = RunLimits(timeout_s=20, memory_bytes=32 * MiB, tmpfs_bytes=MiB)
    outcome = run_script(runtime, images, tmp_path, "memhog", script, limits=limits)

    # Even when the main process exits 0, an OOM kill inside means the work is incomplete.
    assert (outcome.state, outcome.reason) == (RunState.FAILED, OOM_REASON), outcome


def test_stdout_flood_keeps_a_bounded_tail_in_bounded_memory(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    # 40 MB without a single newline, then a last line.
    script = "head -c 40000000 /dev/zero | tr '\\000' a; echo; echo THE-END"
    image = images.script("flood", script)
    pulled = runtime.pull(image.repository, tag=image.tag, digest=None)
    limits = RunLimits(timeout_s=60, log_max_bytes=64 * 1024)
    tracemalloc.start()
    try:
        outcome = runtime.run(spec_for(pulled.image_id, tmp_path, "flood", limits=limits))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert outcome.state is RunState.COMPLETED, outcome
    assert outcome.log_truncated
    assert len(outcome.log_tail) == 64 * 1024
    assert outcome.log_tail.endswith(b"aaaa\nTHE-END\n")
    assert peak < 8 * MiB, f"the site held {peak} bytes at once for a 40 MB log"


def test_huge_output_file_is_refused_at_collection(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = "dd if=/dev/zero of=/pht/output/big bs=64k count=1000; exit 0"
    outcome = run_script(runtime, images, tmp_path, "bigfile", script)

    # The file size limit stops the write at output_max_bytes + 1, so nothing near 64 MB lands
    # on the site's disk; the output check may kill the container first.
    size = (outcome.output_dir / "big").stat().st_size
    assert size <= max(LIMITS.output_max_bytes, LIMITS.tmpfs_bytes) + 1
    assert outcome.state in {RunState.COMPLETED, RunState.FAILED}, outcome
    with pytest.raises(OutputError, match=r"'big' is \d+ bytes or more"):
        collect_outputs(outcome.output_dir, max_files=10, max_bytes=LIMITS.output_max_bytes)


@pytest.mark.parametrize(
    ("name", "script", "reason"),
    [
        pytest.param(
            "many-bytes",
            "i=0; while :; do dd if=/dev/zero of=/pht/output/f$i bs=64k count=4 2>/dev/null;"
            " i=$((i+1)); sleep 0.02; done",
            f"more than {LIMITS.output_max_bytes} bytes",
            id="many-bytes",
        ),
        pytest.param(
            "many-files",
            "i=0; while :; do : > /pht/output/f$i; i=$((i+1)); done",
            f"more than {LIMITS.output_max_files + MAX_SKIPPED} entries",
            id="many-files",
        ),
        pytest.param(
            "deep-tree",
            "cd /pht/output; for i in $(seq 40); do mkdir d; cd d; done; sleep 100000",
            "deeper than 16 levels",
            id="deep-tree",
        ),
    ],
)
def test_output_flood_is_stopped_while_running(
    runtime: DockerRuntime,
    images: ImageFactory,
    tmp_path: Path,
    name: str,
    script: str,
    reason: str,
) -> None:
    limits = RunLimits(timeout_s=20, output_max_files=LIMITS.output_max_files, output_max_bytes=MiB)
    began = time.monotonic()
    outcome = run_script(runtime, images, tmp_path, name, script, limits=limits)

    assert time.monotonic() - began < 10
    assert outcome.state is RunState.FAILED, outcome
    assert reason in outcome.reason


def test_planted_symlinks_are_not_followed(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    key = tmp_path / "site.key"
    key.write_text("SITE-PRIVATE-KEY")
    work = tmp_path / "work"
    work.mkdir()
    script = (
        "ln -s /etc/shadow /pht/output/shadow; "
        f"ln -s {key} /pht/output/site.key; "
        "ln -s / /pht/output/root; ln -s ../config.json /pht/output/cfg; "
        "echo real > /pht/output/real.txt"
    )
    outcome = run_script(runtime, images, work, "symlinks", script)
    assert outcome.state is RunState.COMPLETED, outcome

    collection = collect_outputs(outcome.output_dir, max_files=10, max_bytes=MiB)
    assert [f.name for f in collection.files] == ["real.txt"]
    assert collection.files[0].read_bytes() == b"real\n"
    assert {s.name: s.reason for s in collection.skipped} == {
        repr(n): "symbolic link (never followed)" for n in ("cfg", "root", "shadow", "site.key")
    }


def test_hard_links_in_the_output_are_skipped(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = "echo one > /pht/output/a.txt; ln /pht/output/a.txt /pht/output/b.txt; echo ok"
    outcome = run_script(runtime, images, tmp_path, "hardlink", script)
    assert outcome.state is RunState.COMPLETED, outcome

    collection = collect_outputs(outcome.output_dir, max_files=10, max_bytes=MiB)
    assert collection.files == ()
    assert [s.reason for s in collection.skipped] == ["hard link (2 links)"] * 2


def test_fifo_left_in_the_output_does_not_hang_collection(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = "mkfifo /pht/output/pipe; echo ok > /pht/output/ok.txt"
    outcome = run_script(runtime, images, tmp_path, "fifo", script)
    assert outcome.state is RunState.COMPLETED, outcome

    began = time.monotonic()
    collection = collect_outputs(outcome.output_dir, max_files=10, max_bytes=MiB)
    assert time.monotonic() - began < 1
    assert [f.name for f in collection.files] == ["ok.txt"]
    assert [(s.name, s.reason) for s in collection.skipped] == [
        ("'pipe'", "FIFO (not a regular file)")
    ]


def test_network_is_unreachable(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = (
        "exec 2>&1; "
        "nc -w 2 127.0.0.1 5000 </dev/null && echo REACHED-REGISTRY; "
        "nc -w 2 172.17.0.1 5000 </dev/null && echo REACHED-HOST; "
        "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '; exit 0"
    )
    outcome = run_script(runtime, images, tmp_path, "network", script)

    text = log_text(outcome)
    assert outcome.state is RunState.COMPLETED, outcome
    assert "REACHED" not in text
    assert "Connection refused" in text  # 127.0.0.1 is the container's own loopback
    assert "Network is unreachable" in text  # no route to the host or the registry
    assert text.splitlines()[-1:] == ["lo"]  # no interface but loopback


def test_root_file_system_is_read_only_and_tmp_is_noexec(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = (
        "touch /evil && echo WROTE-ROOT; "
        "echo x > /bin/sh && echo WROTE-BIN; "
        "echo scratch > /tmp/scratch && echo TMP-WRITABLE; "
        "cp /bin/busybox /tmp/bb && chmod +x /tmp/bb && /tmp/bb true && echo TMP-EXEC; exit 0"
    )
    outcome = run_script(runtime, images, tmp_path, "rootfs", script)

    words = set(log_text(outcome).split())
    assert outcome.state is RunState.COMPLETED, outcome
    assert "Read-only" in log_text(outcome)
    assert "TMP-WRITABLE" in words
    assert not {"WROTE-ROOT", "WROTE-BIN", "TMP-EXEC"} & words


def test_container_cannot_become_root(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    script = (
        "exec 2>&1; echo uid=$(id -u) gid=$(id -g); "
        "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; "
        "su -c id root && echo BECAME-ROOT; "
        "cp /bin/busybox /pht/output/bb && chmod u+s /pht/output/bb && "
        "/pht/output/bb id -u | grep -qx 0 && echo SETUID-ROOT; "
        "chown 0 /pht/output/bb && echo CHOWNED; exit 0"
    )
    outcome = run_script(runtime, images, tmp_path, "root", script)

    text = log_text(outcome)
    assert outcome.state is RunState.COMPLETED, outcome
    assert "uid=65534 gid=65534" in text
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert re.search(rf"^{field}:\s+0+$", text, re.M), text
    assert re.search(r"^NoNewPrivs:\s+1$", text, re.M), text
    assert not {"BECAME-ROOT", "SETUID-ROOT", "CHOWNED"} & set(text.split())


def test_cancel_kills_a_running_container(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    limits = RunLimits(timeout_s=60)
    timer.start()
    began = time.monotonic()
    try:
        outcome = run_script(
            runtime, images, tmp_path, "cancel", "sleep 100000", cancel=cancel, limits=limits
        )
    finally:
        timer.cancel()

    assert outcome.state is RunState.CANCELLED, outcome
    assert time.monotonic() - began < 10


def test_cancel_before_start_runs_nothing(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    cancel = threading.Event()
    cancel.set()
    outcome = run_script(runtime, images, tmp_path, "precancel", "echo RAN", cancel=cancel)

    assert outcome.state is RunState.CANCELLED
    assert outcome.exit_code is None and outcome.log_tail == b""


# ---- pulling


def test_always_pulls_a_re_pushed_tag(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    first = images.script("repush", "echo content-A")
    pulled = runtime.pull(first.repository, tag=first.tag, digest=None)
    assert runtime.run(spec_for(pulled.image_id, tmp_path, "a")).log_tail == b"content-A\n"

    second = images.script("repush", "echo content-B")
    # The local tag points back at A: only a real pull can bring B.
    docker_client.images.get(first.image_id).tag(first.repository, first.tag)
    pulled = runtime.pull(second.repository, tag=second.tag, digest=None)

    assert (pulled.digest, pulled.image_id) == (second.digest, second.image_id)
    assert runtime.run(spec_for(pulled.image_id, tmp_path, "b")).log_tail == b"content-B\n"


def test_pull_by_pinned_digest(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    image = images.script("pinned", "echo pinned")
    pulled = runtime.pull(image.repository, tag=None, digest=image.digest)

    assert pulled.digest == image.digest
    assert pulled.reference == f"{image.repository}@{image.digest}"
    assert runtime.run(spec_for(pulled.image_id, tmp_path, "pinned")).log_tail == b"pinned\n"


def test_digest_pin_not_in_the_repository_is_refused(
    runtime: DockerRuntime, images: ImageFactory
) -> None:
    # The digest of another repository's image, and one that exists nowhere.
    other = images.script("pin-other", "echo other")
    target = images.script("pin-target", "echo target")
    for digest in (other.digest, "sha256:" + "0" * 64):
        with pytest.raises(PullError, match="manifest unknown"):
            runtime.pull(target.repository, tag=None, digest=digest)


def test_engine_digest_disagreeing_with_the_pin_is_refused(
    runtime: DockerRuntime, images: ImageFactory, docker_client: docker.DockerClient
) -> None:
    # An engine (or a registry in front of it) that answers a pinned pull with another image.
    image = images.script("pin-liar", "echo liar")
    other = "sha256:" + "1" * 64
    liar = _LyingClient(docker_client, f"Digest: {image.digest}")
    with pytest.raises(DigestMismatchError, match="pulled sha256:"):
        DockerRuntime(liar).pull(image.repository, tag=None, digest=other)


class _LyingClient:
    """The real client, whose pull reports a chosen digest line instead of the engine's."""

    def __init__(self, real: docker.DockerClient, status: str) -> None:
        self.api = _LyingApi(real.api, status)


class _LyingApi:
    def __init__(self, real: docker.APIClient, status: str) -> None:
        self._real = real
        self._status = status

    def pull(self, repository: str, **_: object) -> list[dict[str, str]]:
        return [{"status": "Pulling from x"}, {"status": self._status}]


def test_pull_failure_carries_the_engine_reason(runtime: DockerRuntime) -> None:
    registry = os.environ.get("PHT_DOCKER_REGISTRY", "127.0.0.1:5000")
    with pytest.raises(PullError, match="not found"):
        runtime.pull(f"{registry}/pht-test/does-not-exist", tag="latest", digest=None)


@pytest.mark.parametrize(
    ("name", "dockerfile", "match"),
    [
        ("volume", f'FROM {BASE_IMAGE}\nVOLUME /data\nCMD ["true"]\n', "declares VOLUMEs"),
        ("workdir-proc", f"FROM {BASE_IMAGE}\nWORKDIR /proc/self/fd/7\n", "under /proc"),
        ("no-command", "FROM scratch\nLABEL purpose=no-command\n", "declares no command"),
    ],
    ids=["volume", "workdir-proc", "no-command"],
)
def test_image_weakening_the_sandbox_is_refused(
    runtime: DockerRuntime,
    images: ImageFactory,
    tmp_path: Path,
    name: str,
    dockerfile: str,
    match: str,
) -> None:
    image = images.build(dockerfile, f"refused-{name}")
    with pytest.raises(PolicyError, match=match):
        runtime.pull(image.repository, tag=image.tag, digest=None)
    # run() checks again, for an image id that did not come through pull().
    with pytest.raises(PolicyError, match=match):
        runtime.run(spec_for(image.image_id, tmp_path, "refused"))


def test_malformed_references_are_refused_before_the_engine(runtime: DockerRuntime) -> None:
    for repository, tag, digest in [
        ("127.0.0.1:5000/x;rm -rf /", "latest", None),
        ("127.0.0.1:5000/x", "latest\n", None),
        ("127.0.0.1:5000/x", None, "sha256:abc"),
        ("UPPER/case", "latest", None),
    ]:
        with pytest.raises(PolicyError):
            runtime.pull(repository, tag=tag, digest=digest)


# ---- the engine


def test_unreachable_engine_is_reported(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.41")
    runtime = DockerRuntime(client)
    with pytest.raises(EngineUnavailableError):
        runtime.ping()
    with pytest.raises(EngineUnavailableError):
        runtime.pull("127.0.0.1:5000/pht-test/busybox", tag="latest", digest=None)


def test_site_network_must_exist_and_be_its_own(runtime: DockerRuntime) -> None:
    for name in ("host", "bridge", "none", "container:abc"):
        with pytest.raises(ConfigError, match="not a user-defined"):
            runtime.check_network(name)
    with pytest.raises(ConfigError, match="does not exist"):
        runtime.check_network("pht-no-such-network")


def test_stale_containers_of_the_site_are_removed(
    runtime: DockerRuntime, images: ImageFactory, docker_client: docker.DockerClient
) -> None:
    image: BuiltImage = images.script("stale", "sleep 100000")
    container = docker_client.containers.create(
        image.image_id, labels={LABEL_SITE: TEST_SITE}, network_mode="none"
    )
    container.start()
    assert runtime.remove_stale(TEST_SITE) == [container.id]
    with pytest.raises(docker.errors.NotFound):
        container.reload()


def test_site_without_sparql_store_leaves_sparql_endpoint_unset(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path
) -> None:
    """Finding 8: ``"sparql_endpoint": null`` is a site with no SPARQL store."""
    script = "cat /proc/$$/environ | tr '\\0' '\\n'"
    outcome = run_script(runtime, images, tmp_path, "nosparql", script, sparql_endpoint=None)
    assert outcome.state is RunState.COMPLETED, outcome
    env = dict(line.split("=", 1) for line in log_text(outcome).splitlines())
    assert "SPARQL_ENDPOINT" not in env
    assert env["PHT_SITE"] == TEST_SITE


def test_container_name_says_task_and_site(
    runtime: DockerRuntime, images: ImageFactory, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Finding 24: `docker ps` showed random names (`hungry_tu`); each rerun gets its own."""
    image = images.script("named", "sleep 100000")
    pulled = runtime.pull(image.repository, tag=image.tag, digest=None)
    task = "ab12" * 16
    names = []
    for _ in range(2):  # a rerun of the same task on the same site
        cancel = threading.Event()
        spec = spec_for(
            pulled.image_id, tmp_path, "named", task=task, limits=RunLimits(timeout_s=60)
        )
        seen: list[str] = []

        def look(cancel: threading.Event = cancel, seen: list[str] = seen) -> None:
            deadline = time.monotonic() + 30
            while not seen and time.monotonic() < deadline:
                found = docker_client.containers.list(filters={"label": f"org.pht.task={task}"})
                seen.extend(c.name for c in found)
                time.sleep(0.1)
            cancel.set()

        watcher = threading.Thread(target=look)
        watcher.start()
        outcome = runtime.run(spec, cancel)
        watcher.join()
        assert outcome.state is RunState.CANCELLED, outcome
        assert len(seen) == 1, seen
        names.append(seen[0])
    for name in names:
        assert re.fullmatch(rf"pht-ab12ab12ab12-{re.escape(TEST_SITE)}-[a-z0-9_]+", name), name
    assert names[0] != names[1]
