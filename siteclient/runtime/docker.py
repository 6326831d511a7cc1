"""The container runtime: pull and run task images with the Docker engine, locked down.

:class:`DockerRuntime` is the one adapter between the site and the docker SDK; no docker or
requests exception leaves it (they become :mod:`siteclient.errors` with ``from exc``).

**Pull, always.** :meth:`DockerRuntime.pull` asks the engine to pull even when the image is
present (by digest when pinned), reads the whole progress stream and fails on any error in it
(the SDK's ``images.pull`` ignores those and would hand back a stale local image), takes the
digest the engine reports, checks it against the pin and against the image's ``RepoDigests``, and
refuses images whose configuration would weaken the sandbox (:func:`check_image_config`).

**Run, locked down.** :meth:`DockerRuntime.run` uses ``containers.create`` with the image *id*
(``containers.run`` would pull on its own), starts it and always removes it afterwards (the
site lets a background thread do that while it reports the outcome). The
confinement (mounts, user, capabilities, limits, network) is decided in
:mod:`siteclient.runtime.sandbox`. While the container runs:

- a wall-clock timeout kills it (state ``timeout``); a set cancel event kills it (``cancelled``);
- the output folder is measured every :data:`OUTPUT_CHECK_INTERVAL_S` and a folder over the
  output limits gets it killed (``failed``). This bounds the site's disk by time: a writer as
  fast as the page cache can overshoot by what it writes in one interval (50-80 MB were measured
  on the test VM); ``RLIMIT_FSIZE`` caps each single file. A hard bound would need a
  size-limited file system for the output (a host tmpfs or a quota), which the site does not
  mount today;
- an OOM kill anywhere in the container means ``failed`` with reason
  ``out of memory (OOMKilled)``, even when the main process exited 0: its work is incomplete.

Logs: after the container stopped its log is streamed through a ring buffer of
``log_max_bytes``, so a flood cannot fill the site's memory; only the tail is kept, and
``log_truncated`` says whether anything was dropped (see :func:`sandbox.log_file_bytes` for why
that is exact). Following the log while the container runs is not used: this engine's follow
mode was seen to lose the last lines when a log file rotates near the container's exit, and to
return nothing for a container that exits at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from ledger.events import utc_now
from siteclient.errors import (
    ConfigError,
    DigestMismatchError,
    EngineUnavailableError,
    PolicyError,
    PullError,
    RuntimeFailure,
)
from siteclient.run.outputs import output_excess
from siteclient.runtime.container import (
    Waiter,
    exit_reason,
    raise_translated,
    read_log_tail,
    translated,
)
from siteclient.runtime.reach import reach
from siteclient.runtime.sandbox import LABEL_SITE, check_mounts, container_options, make_run_dir
from siteclient.runtime.spec import (
    DIGEST,
    FORBIDDEN_NETWORKS,
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

POLL_INTERVAL_S = 0.1
OUTPUT_CHECK_INTERVAL_S = 0.2
KILL_GRACE_S = 15.0
OOM_REASON = "out of memory (OOMKilled)"


class DockerRuntime:
    """Pull and run task images with one Docker engine."""

    def __init__(self, client: docker.DockerClient, *, clock: Callable[[], str] = utc_now) -> None:
        self._client = client
        self._clock = clock
        self._removals: set[threading.Thread] = set()
        self._removals_lock = threading.Lock()

    @classmethod
    def from_env(cls, *, timeout: int = 60) -> DockerRuntime:
        """Connect as ``docker`` would (``DOCKER_HOST`` or the local socket)."""
        try:
            client = docker.from_env(timeout=timeout)
        except (DockerException, requests.RequestException) as exc:
            raise EngineUnavailableError(f"cannot reach the Docker engine: {exc}") from exc
        return cls(client)

    def close(self) -> None:
        """Wait for background removals, then close the engine connection."""
        self.wait_for_removals()
        self._client.close()

    def wait_for_removals(self, timeout: float = 60.0) -> None:
        """Block until the containers handed to background removal are gone (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._removals_lock:
                pending = list(self._removals)
            if not pending:
                return
            for thread in pending:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                log.error("%d container removal(s) still running at shutdown", len(pending))
                return

    def ping(self) -> None:
        """Raises EngineUnavailableError unless the engine answers."""
        with translated("ping the Docker engine"):
            self._client.ping()

    def reach(self, url: str, *, network: str, image: str, timeout_s: int = 5) -> str | None:
        """Fetch ``url`` from a throwaway container on ``network`` (:func:`reach`)."""
        return reach(self._client, url, network=network, image=image, timeout_s=timeout_s)

    # ---- pull

    def pull(self, repository: str, *, tag: str | None, digest: str | None) -> PulledImage:
        """Pull ``repository`` by ``digest`` if given, else by ``tag`` (``latest`` if neither).

        Raises PullError (with the engine's reason), DigestMismatchError, PolicyError for a
        malformed reference or an image that would weaken the sandbox, EngineUnavailableError.
        """
        if len(repository) > 255 or REPOSITORY.fullmatch(repository) is None:
            raise PolicyError(f"malformed repository {repository!r}")
        if digest is not None and DIGEST.fullmatch(digest) is None:
            raise PolicyError(f"malformed digest {digest!r}; expected sha256:<64 hex>")
        if tag is not None and TAG.fullmatch(tag) is None:
            raise PolicyError(f"malformed tag {tag!r}")
        wanted = digest or tag or "latest"
        shown = f"{repository}@{digest}" if digest else f"{repository}:{wanted}"
        pulled: str | None = None
        with translated(f"pull {shown}", PullError):
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
            raise DigestMismatchError(f"pull {shown}: the engine pulled {pulled} instead")
        with translated(f"inspect {repository}@{pulled}", PullError):
            attrs = self._client.api.inspect_image(f"{repository}@{pulled}")
        check_repo_digest(attrs.get("RepoDigests") or [], repository, pulled)
        check_image_config(attrs.get("Config"), f"{repository}@{pulled}")
        image_id = attrs.get("Id")
        if not isinstance(image_id, str) or DIGEST.fullmatch(image_id) is None:
            raise PullError(f"pull {shown}: the engine reported image id {image_id!r}")
        return PulledImage(repository=repository, digest=pulled, image_id=image_id)

    # ---- run

    def run(
        self,
        spec: RunSpec,
        cancel: threading.Event | None = None,
        *,
        remove_in_background: bool = False,
    ) -> RunOutcome:
        """Run ``spec`` to its end and remove the container. See the module docstring.

        With ``remove_in_background`` the stopped container is removed by a background thread
        while the caller reports the outcome (removal takes the engine 50-150 ms); :meth:`close`
        waits for those removals, and after a crash :meth:`remove_stale` finds what is left.

        Raises RuntimeFailure (EngineUnavailableError when the engine is gone), PolicyError if
        the image would weaken the sandbox, StateError if the run folder cannot be made.
        Whatever the container does, it ends as a :class:`RunOutcome`.
        """
        cancel = cancel or threading.Event()
        run_dir = make_run_dir(spec)
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
        with translated(f"inspect image {spec.image_id}"):
            image = self._client.api.inspect_image(spec.image_id)
        check_image_config(image.get("Config"), spec.image_id)
        with translated(f"create a container from {spec.image_id}"):
            container = self._client.containers.create(
                spec.image_id, **container_options(spec, run_dir)
            )
        try:
            check_mounts(container.attrs, spec)
            return self._supervise(container, spec, output_dir, cancel)
        finally:
            if remove_in_background:
                self._remove_later(container)
            else:
                self._remove(container)

    def check_network(self, name: str) -> None:
        """The Docker network a site config names exists and is a network of its own.

        Raises ConfigError if it does not exist or uses the ``host`` or ``null`` driver.
        """
        if name in FORBIDDEN_NETWORKS or name == "none" or ":" in name:
            raise ConfigError(f"network {name!r} is not a user-defined Docker network")
        try:
            network = self._client.networks.get(name)
        except NotFound as exc:
            raise ConfigError(f"Docker network {name!r} does not exist") from exc
        except (DockerException, requests.RequestException) as exc:
            raise_translated(exc, f"inspect network {name!r}")
        if network.name != name:  # the engine also matches id prefixes
            raise ConfigError(f"Docker network {name!r} does not exist")
        driver = network.attrs.get("Driver")
        if driver in {"host", "null"}:
            raise ConfigError(f"Docker network {name!r} uses the {driver!r} driver")

    def remove_stale(self, site: str) -> list[str]:
        """Kill and remove containers this site left behind (after a crash); their ids."""
        with translated("list this site's containers"):
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
        with translated(f"start container {container.short_id}"):
            container.start()
        waiter = Waiter(container, limits.timeout_s + KILL_GRACE_S + 30)
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
            raise_translated(waiter.error, f"wait for container {container.short_id}")
        with translated(f"read the log of container {container.short_id}"):
            log_tail, log_truncated = read_log_tail(container, limits.log_max_bytes)

        with translated(f"inspect container {container.short_id}"):
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
                ended_by, reason = RunState.FAILED, exit_reason(exit_code, state)
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
            raise_translated(exc, f"kill container {container.short_id}")
        except (DockerException, requests.RequestException) as exc:
            raise_translated(exc, f"kill container {container.short_id}")
        return True

    def _remove_later(self, container: Container) -> None:
        def remove() -> None:
            try:
                self._remove(container)
            finally:
                with self._removals_lock:
                    self._removals.discard(thread)

        thread = threading.Thread(target=remove, name="container-remove", daemon=True)
        with self._removals_lock:
            self._removals.add(thread)
        thread.start()

    def _remove(self, container: Container) -> None:
        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass
        except (DockerException, requests.RequestException) as exc:
            log.error("could not remove container %s: %s", container.short_id, exc)


__all__ = [
    "OOM_REASON",
    "DockerRuntime",
    "PulledImage",
    "RunLimits",
    "RunOutcome",
    "RunSpec",
    "RunState",
]
