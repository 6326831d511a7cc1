"""The container runtime: pull and run task images with the Docker engine, locked down.

:class:`DockerRuntime` is the one adapter between the site and the docker SDK; no docker or
requests exception leaves it (they become :mod:`siteclient.errors` with ``from exc``).

**Pull, always.** :meth:`DockerRuntime.pull` asks the engine to pull even when the image is
present (by digest when pinned), reads the whole progress stream and fails on any error in it
(the SDK's ``images.pull`` ignores those and would hand back a stale local image), takes the
digest the engine reports, checks it against the pin and against the image's ``RepoDigests``, and
refuses images whose configuration would weaken the sandbox (:func:`check_image_config`).

**Run, locked down.** :meth:`DockerRuntime.run` uses ``containers.create`` with the image *id*
(``containers.run`` would pull on its own), then start, and always removes the container:

- mounts: the task's config read-only at ``/pht/input/config.json``, optionally an input folder
  read-only at ``/pht/input/files``, and a fresh output folder at ``/pht/output`` owned by the
  container user (uid/gid 65534, ``nobody``) with mode 0700. When the site does not run as root it
  cannot chown, and the folder gets mode 0777 instead; it sits inside the task's private work
  folder (0700), which no other host user can enter.
- environment: ``SPARQL_ENDPOINT``, ``PHT_TASK`` and ``PHT_SITE``. Nothing from the site's own
  environment is ever passed. The engine still merges the image's own ``ENV`` (its author's,
  pinned by digest; ours win on a name clash), adds ``PATH`` when the image sets none, and sets
  ``HOSTNAME`` (fixed to ``pht``) and ``HOME`` (``/``); none of these carries site information.
- user ``65534:65534``, ``cap_drop=ALL``, ``no-new-privileges``, not privileged, the engine's
  default seccomp profile, read-only root file system, ``/tmp`` a small tmpfs
  (``noexec,nosuid,nodev``), private IPC with a ``/dev/shm`` of the same size, an init process
  (``docker-init``) as PID 1 that reaps zombies, ``oom_score_adj`` 1000 so a host-wide memory
  shortage kills the task before the site.
- limits: pids, memory with swap equal to it (no swap), CPUs (``nano_cpus``), open files, no core
  dumps, and a per-file size limit (``RLIMIT_FSIZE``) of the larger of the output and tmpfs
  limits. While the container runs, the output folder is measured every
  :data:`OUTPUT_CHECK_INTERVAL_S` and the container is killed when it holds more than the output
  limits allow, so a task cannot fill the site's disk with many files either.
- network ``none`` unless the spec names a user-defined network (never ``host`` or ``bridge``).
- a wall-clock timeout that kills (state ``timeout``); a set cancel event kills too (state
  ``cancelled``); an OOM kill anywhere in the container means state ``failed`` with reason
  ``out of memory (OOMKilled)``, even when the main process exited 0, since its work is
  incomplete.
- logs: the json-file driver is forced with ``max-size``/``max-file`` so a flood cannot fill the
  engine's disk (at most two files of 80 times ``log_max_bytes``), and after the container
  stopped the log is streamed through a ring buffer of ``log_max_bytes``, so it cannot fill the
  site's memory either; only the tail is kept, and ``log_truncated`` says whether anything was
  dropped. (Following the log while the container runs is not used: this engine's follow mode
  loses lines when a file rotates near the container's exit.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.types import LogConfig, Mount, Ulimit

from ledger.events import utc_now
from siteclient.errors import (
    EngineUnavailableError,
    PolicyError,
    PullError,
    RuntimeFailure,
    StateError,
)
from siteclient.outputs import output_excess
from siteclient.runspec import (
    DIGEST,
    REPOSITORY,
    TAG,
    PulledImage,
    RunLimits,
    RunOutcome,
    RunSpec,
    RunState,
    check_image_config,
    check_repo_digest,
    engine_time,
)

log = logging.getLogger(__name__)

CONTAINER_UID = 65534
CONTAINER_GID = 65534
CONFIG_TARGET = "/pht/input/config.json"
INPUT_TARGET = "/pht/input/files"
OUTPUT_TARGET = "/pht/output"
TMP_TARGET = "/tmp"  # noqa: S108 - inside the container, a tmpfs of its own
LABEL_SITE = "org.pht.site"
LABEL_TASK = "org.pht.task"
POLL_INTERVAL_S = 0.1
OUTPUT_CHECK_INTERVAL_S = 0.5
KILL_GRACE_S = 15.0
OOM_REASON = "out of memory (OOMKilled)"


class DockerRuntime:
    """Pull and run task images with one Docker engine."""

    def __init__(self, client: docker.DockerClient, *, clock: Callable[[], str] = utc_now) -> None:
        self._client = client
        self._clock = clock

    @classmethod
    def from_env(cls, *, timeout: int = 60) -> DockerRuntime:
        """Connect as ``docker`` would (``DOCKER_HOST`` or the local socket)."""
        try:
            client = docker.from_env(timeout=timeout)
        except (DockerException, requests.RequestException) as exc:
            raise EngineUnavailableError(f"cannot reach the Docker engine: {exc}") from exc
        return cls(client)

    def close(self) -> None:
        self._client.close()

    def ping(self) -> None:
        """Raises EngineUnavailableError unless the engine answers."""
        with _translated("ping the Docker engine"):
            self._client.ping()

    # ---- pull

    def pull(self, repository: str, *, tag: str | None, digest: str | None) -> PulledImage:
        """Pull ``repository`` by ``digest`` if given, else by ``tag`` (``latest`` if neither).

        Raises PullError (with the engine's reason), DigestMismatchError, PolicyError for a
        malformed reference or an image that would weaken the sandbox, EngineUnavailableError.
        """
        if REPOSITORY.fullmatch(repository) is None or "//" in repository:
            raise PolicyError(f"malformed repository {repository!r}")
        if digest is not None and DIGEST.fullmatch(digest) is None:
            raise PolicyError(f"malformed digest {digest!r}; expected sha256:<64 hex>")
        if tag is not None and TAG.fullmatch(tag) is None:
            raise PolicyError(f"malformed tag {tag!r}")
        wanted = digest or tag or "latest"
        shown = f"{repository}@{digest}" if digest else f"{repository}:{wanted}"
        pulled: str | None = None
        with _translated(f"pull {shown}", PullError):
            stream = self._client.api.pull(repository, tag=wanted, stream=True, decode=True)
            for message in stream:
                if not isinstance(message, dict):
                    continue
                error = message.get("error") or (message.get("errorDetail") or {}).get("message")
                if error:
                    raise PullError(f"pull {shown} failed: {str(error)[:500]}")
                status = message.get("status")
                if isinstance(status, str) and status.startswith("Digest: "):
                    pulled = status.removeprefix("Digest: ").strip()
        if pulled is None or DIGEST.fullmatch(pulled) is None:
            raise PullError(f"pull {shown}: the engine reported no digest ({pulled!r})")
        if digest is not None and pulled != digest:
            raise PullError(f"pull {shown}: the engine pulled {pulled} instead")
        with _translated(f"inspect {repository}@{pulled}", PullError):
            attrs = self._client.api.inspect_image(f"{repository}@{pulled}")
        check_repo_digest(attrs.get("RepoDigests") or [], repository, pulled)
        check_image_config(attrs.get("Config"), f"{repository}@{pulled}")
        image_id = attrs.get("Id")
        if not isinstance(image_id, str) or DIGEST.fullmatch(image_id) is None:
            raise PullError(f"pull {shown}: the engine reported image id {image_id!r}")
        return PulledImage(repository=repository, digest=pulled, image_id=image_id)

    # ---- run

    def run(self, spec: RunSpec, cancel: threading.Event | None = None) -> RunOutcome:
        """Run ``spec`` to its end and remove the container. See the module docstring.

        Raises RuntimeFailure (EngineUnavailableError when the engine is gone), PolicyError if
        the image would weaken the sandbox, StateError if the run folder cannot be made.
        Whatever the container does, it ends as a :class:`RunOutcome`.
        """
        cancel = cancel or threading.Event()
        run_dir = _make_run_dir(spec)
        output_dir = run_dir / "output"
        if cancel.is_set():
            now = self._clock()
            return RunOutcome(
                state=RunState.CANCELLED,
                exit_code=None,
                started=now,
                finished=now,
                log_tail=b"",
                log_truncated=False,
                reason="cancelled before the container started",
                output_dir=output_dir,
            )
        with _translated(f"inspect image {spec.image_id}"):
            image = self._client.api.inspect_image(spec.image_id)
        check_image_config(image.get("Config"), spec.image_id)
        with _translated(f"create a container from {spec.image_id}"):
            container = self._client.containers.create(
                spec.image_id, **_container_options(spec, run_dir)
            )
        try:
            _check_mounts(container, spec)
            return self._supervise(container, spec, output_dir, cancel)
        finally:
            self._remove(container)

    def remove_stale(self, site: str) -> list[str]:
        """Kill and remove containers this site left behind (after a crash); their ids."""
        with _translated("list this site's containers"):
            stale = self._client.containers.list(
                all=True, filters={"label": f"{LABEL_SITE}={site}"}
            )
        for container in stale:
            self._remove(container)
        return [c.id for c in stale if c.id]

    def _supervise(
        self, container: Container, spec: RunSpec, output_dir: Path, cancel: threading.Event
    ) -> RunOutcome:
        limits = spec.limits
        with _translated(f"start container {container.short_id}"):
            container.start()
        waiter = _Waiter(container, limits.timeout_s + KILL_GRACE_S + 30)
        waiter.start()

        ended_by: RunState | None = None
        reason = ""
        deadline = time.monotonic() + limits.timeout_s
        next_check = time.monotonic() + OUTPUT_CHECK_INTERVAL_S
        while not waiter.done.wait(max(0.0, min(POLL_INTERVAL_S, deadline - time.monotonic()))):
            now = time.monotonic()
            if cancel.is_set():
                ended_by, reason = RunState.CANCELLED, "cancelled while running; killed"
            elif now >= deadline:
                ended_by = RunState.TIMEOUT
                reason = f"wall-clock timeout of {limits.timeout_s:g} s exceeded; killed"
            elif now >= next_check:
                next_check = now + OUTPUT_CHECK_INTERVAL_S
                excess = output_excess(
                    output_dir,
                    max_files=limits.output_max_files,
                    max_bytes=limits.output_max_bytes,
                )
                if excess is not None:
                    ended_by, reason = RunState.FAILED, f"{excess}; killed"
            if ended_by is not None:
                if not self._kill(container):
                    ended_by, reason = None, ""  # it had already ended on its own
                break
        if not waiter.done.wait(KILL_GRACE_S):
            raise RuntimeFailure(f"container {container.short_id} did not stop after a kill")
        if waiter.error is not None:
            _raise_translated(waiter.error, f"wait for container {container.short_id}")
        with _translated(f"read the log of container {container.short_id}"):
            log_tail, log_truncated = _read_log_tail(container, limits.log_max_bytes)

        with _translated(f"inspect container {container.short_id}"):
            container.reload()
        state: dict[str, Any] = container.attrs.get("State") or {}
        exit_code = state.get("ExitCode")
        exit_code = exit_code if isinstance(exit_code, int) else None
        now_text = self._clock()
        if ended_by is None:
            if state.get("OOMKilled"):
                ended_by, reason = RunState.FAILED, OOM_REASON
            elif exit_code == 0:
                ended_by, reason = RunState.COMPLETED, "exited with code 0"
            else:
                ended_by, reason = RunState.FAILED, _exit_reason(exit_code, state)
        return RunOutcome(
            state=ended_by,
            exit_code=exit_code,
            started=engine_time(state.get("StartedAt"), now_text),
            finished=engine_time(state.get("FinishedAt"), now_text),
            log_tail=log_tail,
            log_truncated=log_truncated,
            reason=reason,
            output_dir=output_dir,
        )

    def _kill(self, container: Container) -> bool:
        """SIGKILL the container; False if it was not running any more."""
        try:
            container.kill()
        except APIError as exc:
            if exc.status_code == 409:  # "is not running"
                return False
            _raise_translated(exc, f"kill container {container.short_id}")
        except (DockerException, requests.RequestException) as exc:
            _raise_translated(exc, f"kill container {container.short_id}")
        return True

    def _remove(self, container: Container) -> None:
        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass
        except (DockerException, requests.RequestException) as exc:
            log.error("could not remove container %s: %s", container.short_id, exc)


# ---- container options


def _container_options(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    limits = spec.limits
    mounts = [
        Mount(CONFIG_TARGET, str(run_dir / "config.json"), type="bind", read_only=True),
        Mount(OUTPUT_TARGET, str(run_dir / "output"), type="bind", read_only=False),
    ]
    if spec.input_dir is not None:
        mounts.append(
            Mount(INPUT_TARGET, str(spec.input_dir.resolve()), type="bind", read_only=True)
        )
    file_limit = max(limits.output_max_bytes, limits.tmpfs_bytes) + 1
    return {
        "environment": {
            "SPARQL_ENDPOINT": spec.sparql_endpoint,
            "PHT_TASK": spec.task,
            "PHT_SITE": spec.site,
        },
        "hostname": "pht",
        "user": f"{CONTAINER_UID}:{CONTAINER_GID}",
        "mounts": mounts,
        "read_only": True,
        "tmpfs": {TMP_TARGET: f"rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes}"},
        "ipc_mode": "private",
        "shm_size": limits.tmpfs_bytes,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "init": True,
        "network_mode": spec.network or "none",
        "pids_limit": limits.pids,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "oom_score_adj": 1000,
        "ulimits": [
            Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="fsize", soft=file_limit, hard=file_limit),
        ],
        "log_config": LogConfig(
            type=LogConfig.types.JSON,
            config={
                "max-size": f"{_log_file_bytes(limits.log_max_bytes) // 1024}k",
                "max-file": "2",
            },
        ),
        "labels": {LABEL_SITE: spec.site, LABEL_TASK: spec.task},
        "stdin_open": False,
        "tty": False,
    }


def _check_mounts(container: Container, spec: RunSpec) -> None:
    """Belt and braces: the created container has exactly our bind mounts, no volumes."""
    mounts = container.attrs.get("Mounts") or []
    expected = {CONFIG_TARGET, OUTPUT_TARGET} | ({INPUT_TARGET} if spec.input_dir else set())
    found = {m.get("Destination") for m in mounts}
    kinds = {m.get("Type") for m in mounts}
    if found != expected or kinds != {"bind"}:
        raise PolicyError(
            f"container {container.short_id} would get mounts {sorted(map(str, found))} of "
            f"types {sorted(map(str, kinds))}; expected only {sorted(expected)} as binds"
        )


def _make_run_dir(spec: RunSpec) -> Path:
    """A fresh folder with config.json (0444) and output/ (owned by the container user)."""
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=spec.work_dir))
        config = run_dir / "config.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "wb") as handle:
            handle.write(spec.config)
        os.chmod(config, 0o444)
        output = run_dir / "output"
        output.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(output, CONTAINER_UID, CONTAINER_GID)
        else:
            # The container user cannot be given the folder; see the module docstring.
            os.chmod(output, 0o777)  # noqa: S103
    except OSError as exc:
        raise StateError(f"cannot prepare a run folder in {spec.work_dir}: {exc}") from exc
    return run_dir


def _exit_reason(exit_code: int | None, state: dict[str, Any]) -> str:
    error = state.get("Error")
    if error:
        return f"the engine reported: {str(error)[:300]}"
    if exit_code is None:
        return "exited with an unknown code"
    if exit_code > 128:
        return f"exited with code {exit_code} (killed by signal {exit_code - 128})"
    return f"exited with code {exit_code}"


# ---- threads


def _read_log_tail(container: Container, limit: int) -> tuple[bytes, bool]:
    """The last ``limit`` bytes of the stopped container's log, and whether any were dropped.

    The engine keeps at most two json-file logs of ``max-size`` each (:func:`_log_file_bytes`),
    so this reads a bounded amount; a ring buffer keeps the memory bounded by ``2 * limit``.
    """
    buffer = bytearray()
    seen = 0
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
        seen += len(chunk)
        buffer += chunk
        if len(buffer) > 2 * limit:
            del buffer[:-limit]
    return bytes(buffer[-limit:]), seen > limit


def _log_file_bytes(limit: int) -> int:
    """The json-file ``max-size`` that makes a lost log head visible as more than ``limit``.

    The engine drops the oldest file only on the second rotation, so whenever anything was
    dropped a whole file of at least ``max-size`` bytes is still there. A json-file entry costs at
    most about 75 bytes per byte of output (a one-byte line, or ``\\u00XX`` escapes, plus the
    stream name and time): with ``max-size`` of 80 times ``limit``, that file alone holds more
    than ``limit`` bytes of output, so ``log_truncated`` is exact. The engine's disk use per
    container is bounded by two such files.
    """
    return max(1 << 20, 80 * limit)


class _Waiter:
    """Blocks on the engine's wait in a thread, so the caller can poll cancel and deadline."""

    def __init__(self, container: Container, timeout: float) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._container = container
        self._timeout = timeout
        self._thread = threading.Thread(target=self._wait, name="container-wait", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _wait(self) -> None:
        try:
            self._container.wait(timeout=self._timeout)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


# ---- errors


@contextlib.contextmanager
def _translated(doing: str, api_error: type[RuntimeFailure] = RuntimeFailure) -> Iterator[None]:
    """Turn docker/requests exceptions raised inside into our errors, ``from`` the original."""
    try:
        yield
    except (DockerException, requests.RequestException) as exc:
        _raise_translated(exc, doing, api_error)


def _raise_translated(
    exc: BaseException, doing: str, api_error: type[RuntimeFailure] = RuntimeFailure
) -> NoReturn:
    if isinstance(exc, APIError):
        explanation = exc.explanation or str(exc)
        if isinstance(explanation, bytes):
            explanation = explanation.decode("utf-8", "replace")
        raise api_error(f"{doing}: {str(explanation)[:500]}") from exc
    if isinstance(exc, (DockerException, requests.RequestException, OSError)):
        raise EngineUnavailableError(f"{doing}: the Docker engine is unreachable ({exc})") from exc
    raise RuntimeFailure(f"{doing}: {exc}") from exc


__all__ = [
    "CONFIG_TARGET",
    "CONTAINER_GID",
    "CONTAINER_UID",
    "INPUT_TARGET",
    "OOM_REASON",
    "OUTPUT_TARGET",
    "DockerRuntime",
    "PulledImage",
    "RunLimits",
    "RunOutcome",
    "RunSpec",
    "RunState",
]
