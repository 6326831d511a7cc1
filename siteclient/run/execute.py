"""Executing one task at this site: policy, pull, run, collect, upload -> a ``result`` body.

The policy is decided first and nothing is pulled for a refused image: the allowlist, then, at a
site with ``require_review``, the review rule (:mod:`siteclient.policy.review`) against the
latest verified view when the run starts, so a revocation that arrived after the task was posted
refuses it. A pinned pull that yields another digest is refused too (by the review rule's name
at such a site). Every way a task can end (refused, pull failed, digest mismatch, timeout, out of
memory, cancelled, outputs over the limits) becomes a ``result`` with a state and a reason the
researcher can read. Only a failure of the site itself (engine or registry unreachable) raises,
so that the agent retries later.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from api.client.registry import Client
from api.errors import NotFoundError, ProtocolError
from crypto import CryptoError, SigningKey
from crypto.age import AgeIdentity, AgeRecipient, decrypt_file, encrypt_bytes, is_age_file
from ledger.bodies import BlobRef, Output, Result, ResultState, StatusState
from ledger.canonical import canonical_bytes
from ledger.events import utc_now
from ledger.reference import ImageRef
from ledger.tasks import LOG_TRUNCATED
from ledger.view import View
from siteclient.config import SiteConfig
from siteclient.errors import (
    DigestMismatchError,
    EngineUnavailableError,
    InputError,
    OutputError,
    PolicyError,
    PullError,
)
from siteclient.fileservice.inbox import received_files
from siteclient.policy.allowlist import Allowlist
from siteclient.policy.review import decide_review
from siteclient.run.agent import Job
from siteclient.run.delivery import FileServiceClient
from siteclient.run.outputs import collect_outputs
from siteclient.runtime.base import ContainerRuntime
from siteclient.runtime.spec import RunLimits, RunSpec, RunState

log = logging.getLogger(__name__)

Report = Callable[[StatusState, str | None], None]


_STATES = {
    RunState.COMPLETED: ResultState.COMPLETED,
    RunState.FAILED: ResultState.FAILED,
    RunState.TIMEOUT: ResultState.TIMEOUT,
    RunState.CANCELLED: ResultState.CANCELLED,
}


class TaskExecutor:
    """The site's :data:`siteclient.run.agent.Execute`: one task from policy to result body."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        client: Client,
        runtime: ContainerRuntime,
        allowlist: Allowlist,
        key: SigningKey,
        identity: AgeIdentity | None = None,
        clock: Callable[[], str] = utc_now,
        view: Callable[[], View | None] = lambda: None,
    ) -> None:
        """``view`` gives the latest verified view of the ledger (the follower's); a site with
        ``require_review`` decides from it when each run starts."""
        self._config = config
        self._view = view
        self._key = key
        self._identity = identity
        self._client = client
        self._runtime = runtime
        self._allowlist = allowlist
        self._clock = clock

    def reload(self, config: SiteConfig) -> None:
        """Run later tasks under ``config`` (the site's SIGHUP: a new allowlist or limits)."""
        self._allowlist = config.allowlist()
        self._config = config

    def __call__(self, job: Job, folder: Path, report: Report) -> Result:
        task = job.body
        decision = self._allowlist.decide(task.image, require_digest=self._config.require_digest)
        if not decision.allowed or decision.ref is None:
            log.info("task %s: refused %r: %s", job.task_id[:12], task.image, decision.reason)
            return Result(task=job.task_id, state=ResultState.REJECTED, reason=decision.reason)
        ref = decision.ref
        refused = self._refused_by_review(job, ref)
        if refused is not None:
            return refused
        try:
            config = self._config_bytes(job)
            if job.encrypt_for is not None:
                AgeRecipient.from_string(job.encrypt_for)
        except (NotFoundError, ProtocolError) as exc:  # gone or not its hash: it never will be
            return Result(task=job.task_id, state=ResultState.FAILED, reason=f"config: {exc}")
        except CryptoError as exc:
            return Result(
                task=job.task_id,
                state=ResultState.FAILED,
                reason=f"the recipient's encryption key is unusable: {exc}",
            )
        try:
            pulled = self._runtime.pull(ref.repository, tag=ref.tag, digest=ref.digest)
        except EngineUnavailableError:
            raise
        except DigestMismatchError as exc:
            reason = str(exc)
            if self._config.require_review:
                reason = f"review: the pull did not yield the approved digest {ref.digest}: {exc}"
            return Result(task=job.task_id, state=ResultState.REJECTED, reason=reason)
        except PolicyError as exc:
            return Result(task=job.task_id, state=ResultState.REJECTED, reason=str(exc))
        except PullError as exc:
            return Result(task=job.task_id, state=ResultState.FAILED, reason=str(exc))
        # Again at the last moment: a revocation may have come in while the image was pulled
        # (minutes, for a large image), and DESIGN 11 refuses it "before the run starts".
        refused = self._refused_by_review(job, ref, pulled.digest)
        if refused is not None:
            return refused
        try:
            inputs = self._inputs(job, folder)
        except InputError as exc:
            return Result(task=job.task_id, state=ResultState.FAILED, reason=str(exc))
        report(StatusState.STARTED, f"running {ref.familiar()} ({pulled.digest})")
        spec = RunSpec(
            image_id=pulled.image_id,
            task=job.task_id,
            site=self._config.site,
            sparql_endpoint=self._config.sparql_endpoint,
            config=config,
            work_dir=folder,
            network=self._config.network,
            limits=self._limits(job),
            input_dir=inputs,
        )
        try:
            # The container is removed while the result is reported (the runtime's close waits).
            outcome = self._runtime.run(spec, job.cancel, remove_in_background=True)
        except PolicyError as exc:
            return Result(
                task=job.task_id,
                state=ResultState.REJECTED,
                reason=str(exc),
                image_digest=pulled.digest,
            )
        state = _STATES[outcome.state]
        reason = outcome.reason
        outputs: tuple[Output, ...] = ()
        if state is ResultState.COMPLETED or state is ResultState.FAILED:
            try:
                outputs, note = self._upload_outputs(job, outcome.output_dir, spec.limits)
                reason = "; ".join(part for part in (reason, note) if part)
            except OutputError as exc:
                state, reason = ResultState.FAILED, f"outputs refused: {exc}"
        log_ref = None
        if outcome.log_tail:
            kept = LOG_TRUNCATED + outcome.log_tail if outcome.log_truncated else outcome.log_tail
            sealed = self._seal(job, kept)
            log_ref = BlobRef(sha256=self._client.put_blob(sealed), size=len(sealed))
        return Result(
            task=job.task_id,
            state=state,
            outputs=outputs,
            exit_code=outcome.exit_code,
            image_digest=pulled.digest,
            started=outcome.started,
            finished=outcome.finished,
            log=log_ref,
            reason=(reason or None) and reason[:2000],
        )

    def _refused_by_review(
        self, job: Job, ref: ImageRef, pulled: str | None = None
    ) -> Result | None:
        """The signed refusal of a task whose image the site's review rule does not admit now
        (``require_review``), or None."""
        if not self._config.require_review:
            return None
        review = decide_review(self._view(), job.task_id, ref, site=self._config.site)
        if review.allowed:
            return None
        log.info("task %s: refused %r: %s", job.task_id[:12], job.body.image, review.reason)
        return Result(
            task=job.task_id, state=ResultState.REJECTED, reason=review.reason, image_digest=pulled
        )

    def _inputs(self, job: Job, folder: Path) -> Path | None:
        """The files other sites delivered here for the task's ``inputs``, decrypted into a
        fresh folder (mounted read-only at ``/pht/input/files``), named ``<sender>-<name>``."""
        earlier = job.body.inputs
        if not earlier:
            return None
        service = self._config.file_service
        if service is None:
            raise InputError("the task names input tasks but this site runs no FileService")
        target = folder / "inputs"
        target.mkdir()
        target.chmod(0o755)  # the container's user reads it, whatever the site's umask
        for task_id in earlier:
            for received in received_files(service.inbox_dir, task_id):
                name = f"{received.sender}-{received.name or received.sha256[:16]}"
                destination = target / name
                if is_age_file(received.path):
                    if self._identity is None:
                        raise InputError(f"{name} is encrypted and this site has no identity_file")
                    try:
                        decrypt_file(received.path, destination, [self._identity])
                    except CryptoError as exc:
                        raise InputError(f"input {name} cannot be decrypted here: {exc}") from exc
                else:
                    shutil.copyfile(received.path, destination)
                destination.chmod(0o444)
        return target

    def _config_bytes(self, job: Job) -> bytes:
        task = job.body
        if task.config is not None:
            return canonical_bytes(task.config)
        assert task.config_blob is not None
        return self._client.get_blob(task.config_blob, max_size=16 * 1024 * 1024)

    def _limits(self, job: Job) -> RunLimits:
        """The site's limits, tightened (never loosened) by the task's own."""
        site = self._config.limits
        asked = job.body.limits
        timeout = site.timeout_s
        memory = site.memory_mb
        cpu = site.cpu_millis
        if asked is not None:
            timeout = min(timeout, asked.timeout_s or timeout)
            memory = min(memory, asked.memory_mb or memory)
            cpu = min(cpu, asked.cpu_millis or cpu)
        return RunLimits(
            timeout_s=float(timeout),
            memory_bytes=memory * 1024 * 1024,
            cpus=cpu / 1000,
            pids=site.pids,
            tmpfs_bytes=site.tmpfs_mb * 1024 * 1024,
            log_max_bytes=site.log_max_bytes,
            output_max_files=site.output_max_files,
            output_max_bytes=site.output_max_bytes,
        )

    def _seal(self, job: Job, data: bytes) -> bytes:
        """``data`` encrypted for the task's recipient (age), or as is when it has none."""
        if job.encrypt_for is None:
            return data
        return encrypt_bytes(data, [AgeRecipient.from_string(job.encrypt_for)])

    def _upload_outputs(
        self, job: Job, folder: Path, limits: RunLimits
    ) -> tuple[tuple[Output, ...], str]:
        """Store every output (encrypted for the recipient when the task names one) in the
        registry, or deliver it to the recipient site's FileService. The signed result then
        binds each stored object's hash to this task, this site and the output's name."""
        collection = collect_outputs(
            folder, max_files=limits.output_max_files, max_bytes=limits.output_max_bytes
        )
        outputs = []
        for item in collection.files:
            sealed = self._seal(job, item.read_bytes())
            if job.deliver_to is not None:
                if job.deliver_url is None:
                    raise OutputError(f"site {job.deliver_to!r} has published no FileService")
                with FileServiceClient(job.deliver_url, self._key) as service:
                    receipt = service.upload(job.task_id, item.name, sealed)
                outputs.append(
                    Output(
                        name=item.name,
                        sha256=receipt.sha256,
                        size=receipt.size,
                        delivered_to=job.deliver_to,
                    )
                )
                continue
            sha256 = self._client.put_blob(sealed)
            outputs.append(Output(name=item.name, sha256=sha256, size=len(sealed)))
        note = ""
        if collection.skipped:
            listed = ", ".join(f"{s.name} ({s.reason})" for s in collection.skipped[:10])
            note = f"ignored in the output folder: {listed}"
        return tuple(outputs), note
