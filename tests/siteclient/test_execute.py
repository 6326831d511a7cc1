"""The task executor without an engine: policy, pull, run, collect and upload -> the result.

:class:`FakeRuntime` is a :class:`~siteclient.runtime.base.ContainerRuntime` written for these
tests: ``pull`` answers from its fields and ``run`` makes the real run folder
(:func:`~siteclient.runtime.sandbox.make_run_dir`) and writes files into its output folder as a
container would. :class:`FakeBlobs` keeps the registry's blobs in a dict. Everything else (the
site config, the allowlist, output collection, age encryption) is the real thing.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from api.client.registry import Client
from api.errors import NotFoundError
from crypto.age import AgeIdentity, decrypt_bytes, is_age
from ledger.bodies import EventId, Limits, Result, ResultState, StatusState, Task
from siteclient.config import SiteConfig
from siteclient.errors import (
    DigestMismatchError,
    EngineUnavailableError,
    PolicyError,
    PullError,
    RuntimeFailure,
    SiteClientError,
    StateError,
)
from siteclient.run.agent import Job
from siteclient.run.execute import Report, TaskExecutor
from siteclient.runtime.sandbox import make_run_dir
from siteclient.runtime.spec import PulledImage, RunOutcome, RunSpec, RunState
from tests.ledger.factory import World

MiB = 1 << 20
SITE = "site-a"
IMAGE = "myconsortium/avg:1"
DIGEST = "sha256:" + "d" * 64
IMAGE_ID = "sha256:" + "1" * 64
STARTED = "2024-05-01T12:00:00.000000Z"
FINISHED = "2024-05-01T12:00:03.000000Z"
SITE_LIMITS = {"timeout_s": 600, "memory_mb": 512, "cpu_millis": 2000, "output_max_files": 3}


class FakeRuntime:
    """A container runtime with no engine; records what it was asked to pull and run."""

    def __init__(
        self,
        *,
        pull_error: SiteClientError | None = None,
        run_error: SiteClientError | None = None,
        state: RunState = RunState.COMPLETED,
        reason: str = "exited with code 0",
        exit_code: int | None = 0,
        outputs: dict[str, bytes] | None = None,
        log: bytes = b"",
    ) -> None:
        self._pull_error = pull_error
        self._run_error = run_error
        self._state = state
        self._reason = reason
        self._exit_code = exit_code
        self._outputs = outputs or {}
        self._log = log
        self.pulls: list[tuple[str, str | None, str | None]] = []
        self.runs: list[RunSpec] = []
        self.configs: list[bytes] = []  # what the container found at /pht/input/config.json

    def pull(self, repository: str, *, tag: str | None, digest: str | None) -> PulledImage:
        self.pulls.append((repository, tag, digest))
        if self._pull_error is not None:
            raise self._pull_error
        return PulledImage(repository=repository, digest=DIGEST, image_id=IMAGE_ID)

    def run(
        self, spec: RunSpec, cancel: threading.Event, *, remove_in_background: bool = False
    ) -> RunOutcome:
        self.runs.append(spec)
        if self._run_error is not None:
            raise self._run_error
        run_dir = make_run_dir(spec)
        self.configs.append((run_dir / "config.json").read_bytes())
        if cancel.is_set():
            state, reason, exit_code = RunState.CANCELLED, "cancelled while running; killed", None
        else:
            state, reason, exit_code = self._state, self._reason, self._exit_code
        for name, data in self._outputs.items():
            (run_dir / "output" / name).write_bytes(data)
        return RunOutcome(
            state=state,
            exit_code=exit_code,
            started=STARTED,
            finished=FINISHED,
            log_tail=self._log,
            log_truncated=False,
            reason=reason,
            output_dir=run_dir / "output",
        )


class FakeBlobs:
    """The registry's blob store, as far as the executor uses it."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put_blob(self, data: bytes | Path) -> str:
        raw = data.read_bytes() if isinstance(data, Path) else data
        sha256 = hashlib.sha256(raw).hexdigest()
        self.blobs[sha256] = raw
        return sha256

    def get_blob(self, sha256: str, *, max_size: int = 64 * MiB) -> bytes:
        if sha256 not in self.blobs:  # as the registry client says a 404
            raise NotFoundError(404, {"type": "about:blank", "detail": f"no blob {sha256}"})
        data = self.blobs[sha256]
        assert len(data) <= max_size
        return data


class Site:
    """One site's executor around a fake runtime and fake blobs, and the tasks it is given."""

    def __init__(self, tmp_path: Path, runtime: FakeRuntime, **config: Any) -> None:
        self.world = World()
        self.runtime = runtime
        self.registry = FakeBlobs()
        self.reports: list[tuple[StatusState, str | None]] = []
        self.config = SiteConfig.from_dict(
            {
                "site": SITE,
                "key_file": "keys/site-a.key",
                "registry": "https://registry.example.org",
                "log_key": None,
                "genesis": None,
                "sparql_endpoint": "http://sparql.site-a.internal:7878/query",
                "allowed_images": [r"myconsortium/[a-z0-9._-]+:[\w.-]+(@sha256:[0-9a-f]{64})?"],
                "limits": SITE_LIMITS,
                "state_dir": "state",
                "work_dir": "work",
            }
            | config,
            base_dir=tmp_path,
        )
        self.executor = TaskExecutor(
            self.config,
            client=cast(Client, self.registry),  # the executor calls only put_blob and get_blob
            runtime=runtime,  # mypy checks it against ContainerRuntime
            allowlist=self.config.allowlist(),
            key=self.world.keys[SITE],
        )

    def job(self, *, encrypt_for: str | None = None, **task: Any) -> Job:
        body = Task(**({"image": IMAGE, "sites": (SITE,), "config": {"n": 3}} | task))
        entry = self.world.push(self.world.sign("alice", body))
        return Job(entry=entry, cancel=threading.Event(), encrypt_for=encrypt_for)

    def execute(self, job: Job, *, on_report: Report | None = None) -> Result:
        """Run ``job`` in a fresh task folder, as the agent does; keep what it reported."""
        folder = self.config.work_dir / job.task_id
        folder.mkdir(parents=True)

        def report(state: StatusState, note: str | None) -> None:
            self.reports.append((state, note))
            if on_report is not None:
                on_report(state, note)

        return self.executor(job, folder, report)

    def output_blobs(self, result: Result) -> dict[str, bytes]:
        """Each output's stored bytes, checked against the sha256 and size the result names."""
        stored = {}
        for output in result.outputs:
            data = self.registry.blobs[output.sha256]
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (output.sha256, output.size)
            stored[output.name] = data
        return stored


# ---- policy and pull


@pytest.mark.parametrize(
    ("image", "config", "reason"),
    [
        ("evil.example/myconsortium/avg:1", {}, "matches no allowed pattern of site 'site-a'"),
        ("otherteam/avg:1", {}, "matches no allowed pattern of site 'site-a'"),
        (IMAGE, {"require_digest": True}, "runs only images pinned by digest"),
        (IMAGE, {"allowed_images": []}, "allows no images"),
    ],
    ids=["registry_spoof", "foreign_repository", "unpinned_at_digest_only_site", "empty_allowlist"],
)
def test_refused_image_is_rejected_with_the_reason_and_never_pulled(
    tmp_path: Path, image: str, config: dict[str, Any], reason: str
) -> None:
    site = Site(tmp_path, FakeRuntime(), **config)
    result = site.execute(site.job(image=image))
    assert result.state is ResultState.REJECTED
    assert result.reason is not None and reason in result.reason
    assert site.runtime.pulls == []
    assert site.runtime.runs == []
    assert site.reports == []


def test_allowed_image_is_pulled_by_its_repository_tag_and_digest(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    site.execute(site.job(image=f"{IMAGE}@{DIGEST}"))
    assert site.runtime.pulls == [("docker.io/myconsortium/avg", "1", DIGEST)]
    assert [spec.image_id for spec in site.runtime.runs] == [IMAGE_ID]


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (DigestMismatchError(f"pull {IMAGE}: the engine pulled {DIGEST} instead"), "rejected"),
        (PolicyError(f"image {IMAGE} declares VOLUMEs (/data); refused"), "rejected"),
        (PullError(f"pull {IMAGE} failed: manifest unknown"), "failed"),
    ],
    ids=["digest_mismatch_rejected", "sandbox_weakening_image_rejected", "pull_failure_failed"],
)
def test_pull_that_cannot_be_trusted_or_done_ends_the_task_with_the_engines_reason(
    tmp_path: Path, error: SiteClientError, state: str
) -> None:
    site = Site(tmp_path, FakeRuntime(pull_error=error))
    result = site.execute(site.job())
    assert (result.state, result.reason) == (ResultState(state), str(error))
    assert result.image_digest is None
    assert site.runtime.runs == []
    assert site.registry.blobs == {}


# ---- failures of the site itself: the agent retries


@pytest.mark.parametrize(
    ("at", "error"),
    [
        ("pull", EngineUnavailableError("pull: the Docker engine is unreachable")),
        ("run", EngineUnavailableError("create: the Docker engine is unreachable")),
        ("run", RuntimeFailure("start container 1a2b3c: no space left on device")),
        ("run", StateError("cannot prepare a run folder in /work: disk full")),
    ],
    ids=["engine_gone_at_pull", "engine_gone_at_run", "engine_fails_at_run", "run_folder_unmade"],
)
def test_site_failure_propagates_so_the_agent_retries(
    tmp_path: Path, at: str, error: SiteClientError
) -> None:
    runtime = FakeRuntime(pull_error=error) if at == "pull" else FakeRuntime(run_error=error)
    site = Site(tmp_path, runtime)
    with pytest.raises(type(error)) as raised:
        site.execute(site.job())
    assert raised.value is error


# ---- the run


def test_completed_run_uploads_outputs_named_with_their_sha256_and_size(tmp_path: Path) -> None:
    outputs = {"mean.json": b'{"mean": 4.5}', "counts.csv": b"a,1\nb,2\n"}
    site = Site(tmp_path, FakeRuntime(outputs=outputs, log=b"done\n"))
    result = site.execute(site.job())
    assert result.state is ResultState.COMPLETED
    assert site.output_blobs(result) == outputs
    assert [o.delivered_to for o in result.outputs] == [None, None]
    assert result.log is not None and site.registry.blobs[result.log.sha256] == b"done\n"
    assert result.log.size == len(b"done\n")
    assert (result.exit_code, result.image_digest) == (0, DIGEST)
    assert (result.started, result.finished) == (STARTED, FINISHED)
    assert result.reason == "exited with code 0"
    assert site.reports == [(StatusState.STARTED, f"running {IMAGE} ({DIGEST})")]


def test_run_without_outputs_or_log_stores_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    result = site.execute(site.job())
    assert (result.state, result.outputs, result.log) == (ResultState.COMPLETED, (), None)
    assert site.registry.blobs == {}


def test_outputs_and_log_are_encrypted_for_the_tasks_recipient(tmp_path: Path) -> None:
    researcher = AgeIdentity.generate()
    outputs = {"mean.json": b'{"mean": 4.5}', "rows.csv": b"id,value\n1,2\n"}
    site = Site(tmp_path, FakeRuntime(outputs=outputs, log=b"patient count: 42\n"))
    result = site.execute(site.job(encrypt_for=researcher.recipient.to_string()))
    assert result.state is ResultState.COMPLETED
    stored = site.output_blobs(result)
    assert all(is_age(data) for data in stored.values())
    assert {name: decrypt_bytes(data, [researcher]) for name, data in stored.items()} == outputs
    assert result.log is not None
    sealed_log = site.registry.blobs[result.log.sha256]
    assert is_age(sealed_log) and result.log.size == len(sealed_log)
    assert decrypt_bytes(sealed_log, [researcher]) == b"patient count: 42\n"


@pytest.mark.parametrize(
    ("ran", "reason", "state", "publishes_outputs"),
    [
        (RunState.TIMEOUT, "wall-clock timeout of 600 s exceeded; killed", "timeout", False),
        (RunState.FAILED, "out of memory (OOMKilled)", "failed", True),
        (RunState.FAILED, "exited with code 3", "failed", True),
    ],
    ids=["timeout", "out_of_memory", "non_zero_exit"],
)
def test_how_the_run_ended_is_the_results_state_and_reason(
    tmp_path: Path, ran: RunState, reason: str, state: str, publishes_outputs: bool
) -> None:
    runtime = FakeRuntime(
        state=ran, reason=reason, exit_code=137, outputs={"partial.csv": b"1\n"}, log=b"working\n"
    )
    site = Site(tmp_path, runtime)
    result = site.execute(site.job())
    assert (result.state, result.reason) == (ResultState(state), reason)
    assert [o.name for o in result.outputs] == (["partial.csv"] if publishes_outputs else [])
    assert result.log is not None  # the log says what happened, whatever the state


def test_cancel_during_the_run_reaches_the_container_and_publishes_no_outputs(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path, FakeRuntime(outputs={"mean.json": b"{}"}, log=b"started\n"))
    job = site.job()
    result = site.execute(job, on_report=lambda state, note: job.cancel.set())
    assert (result.state, result.reason) == (
        ResultState.CANCELLED,
        "cancelled while running; killed",
    )
    assert result.outputs == ()
    assert result.log is not None


def test_outputs_over_the_sites_limits_fail_the_task_and_none_is_uploaded(tmp_path: Path) -> None:
    outputs = {f"part-{i}.csv": b"x\n" for i in range(SITE_LIMITS["output_max_files"] + 1)}
    site = Site(tmp_path, FakeRuntime(outputs=outputs))
    result = site.execute(site.job())
    assert result.state is ResultState.FAILED
    assert result.reason == "outputs refused: more than 3 output files"
    assert (result.outputs, site.registry.blobs) == ((), {})


def test_entries_that_are_not_plain_files_are_named_in_the_reason(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime(outputs={"mean.json": b"{}", ".hidden": b"x"}))
    result = site.execute(site.job())
    assert result.state is ResultState.COMPLETED
    assert [o.name for o in result.outputs] == ["mean.json"]
    assert result.reason is not None
    assert result.reason.startswith("exited with code 0; ignored in the output folder: '.hidden'")


def test_image_that_weakens_the_sandbox_at_run_is_rejected_with_its_digest(
    tmp_path: Path,
) -> None:
    error = PolicyError(f"image {IMAGE_ID} has working directory '/proc/self/fd/7'; refused")
    site = Site(tmp_path, FakeRuntime(run_error=error, log=b"never\n"))
    result = site.execute(site.job())
    assert (result.state, result.reason) == (ResultState.REJECTED, str(error))
    assert result.image_digest == DIGEST
    assert (result.outputs, result.log, site.registry.blobs) == ((), None, {})


# ---- what the container is given


@pytest.mark.parametrize(
    ("asked", "timeout_s", "memory_mb", "cpus"),
    [
        (None, 600, 512, 2.0),
        (Limits(timeout_s=60, memory_mb=128, cpu_millis=500), 60, 128, 0.5),
        (Limits(timeout_s=86_400, memory_mb=65_536, cpu_millis=64_000), 600, 512, 2.0),
        (Limits(timeout_s=60, memory_mb=4096), 60, 512, 2.0),
        (Limits(cpu_millis=250), 600, 512, 0.25),
    ],
    ids=[
        "site_limits",
        "task_tightens",
        "task_cannot_loosen",
        "tighten_one_loosen_another",
        "cpu_only",
    ],
)
def test_task_limits_tighten_the_sites_but_never_loosen_them(
    tmp_path: Path, asked: Limits | None, timeout_s: int, memory_mb: int, cpus: float
) -> None:
    site = Site(tmp_path, FakeRuntime())
    site.execute(site.job(limits=asked))
    [spec] = site.runtime.runs
    limits = spec.limits
    assert (limits.timeout_s, limits.memory_bytes, limits.cpus) == (
        timeout_s,
        memory_mb * MiB,
        cpus,
    )
    site_limits = site.config.limits
    assert (limits.pids, limits.tmpfs_bytes) == (site_limits.pids, site_limits.tmpfs_mb * MiB)
    assert (limits.output_max_files, limits.output_max_bytes, limits.log_max_bytes) == (
        site_limits.output_max_files,
        site_limits.output_max_bytes,
        site_limits.log_max_bytes,
    )


def test_run_gets_the_sites_identity_endpoint_and_network(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime(), network="pht-tasks")
    job = site.job()
    site.execute(job)
    [spec] = site.runtime.runs
    assert (spec.task, spec.site, spec.network) == (job.task_id, SITE, "pht-tasks")
    assert spec.sparql_endpoint == "http://sparql.site-a.internal:7878/query"
    assert spec.work_dir == site.config.work_dir / job.task_id
    assert spec.input_dir is None


def test_inline_config_is_handed_to_the_run_as_canonical_json(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    site.execute(site.job(config={"variable": "age", "bins": [0, 18, 65]}))
    expected = b'{"bins":[0,18,65],"variable":"age"}'
    assert [spec.config for spec in site.runtime.runs] == [expected]
    assert site.runtime.configs == [expected]


def test_config_blob_is_fetched_and_handed_to_the_run_as_the_config_bytes(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    config = b'{"query": "SELECT ?age WHERE { ?p :age ?age }"}\n'
    sha256 = site.registry.put_blob(config)
    site.execute(site.job(config=None, config_blob=sha256))
    assert [spec.config for spec in site.runtime.runs] == [config]
    assert site.runtime.configs == [config]


def test_task_inputs_without_a_file_service_fail_with_a_clear_reason(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    result = site.execute(site.job(inputs=(EventId("ab" * 32),)))
    assert result.state is ResultState.FAILED
    assert result.reason == "the task names input tasks but this site runs no FileService"
    assert site.runtime.runs == []


def test_missing_config_blob_fails_the_task_instead_of_retrying_forever(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    result = site.execute(site.job(config=None, config_blob="cd" * 32))
    assert result.state is ResultState.FAILED and result.reason is not None
    assert "config" in result.reason and "cd" * 8 in result.reason
    assert site.runtime.runs == []


def test_unusable_recipient_key_fails_the_task_before_the_run(tmp_path: Path) -> None:
    site = Site(tmp_path, FakeRuntime())
    result = site.execute(site.job(encrypt_for="age1notakey"))
    assert result.state is ResultState.FAILED
    assert result.reason is not None and "encryption key" in result.reason
    assert site.runtime.runs == []
