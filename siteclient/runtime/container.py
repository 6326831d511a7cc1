"""What the Docker adapter reads from one container, and the engine's errors in our terms.

Used only by :mod:`siteclient.runtime.docker`: how a stopped container's exit is told
(:func:`exit_reason`), its log tail read in bounded memory (:func:`read_log_tail`), the engine's
blocking wait run in a thread (:class:`Waiter`), and docker/requests exceptions translated into
:mod:`siteclient.errors` with ``from exc`` (:func:`translated`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

import requests
from docker.errors import APIError, DockerException
from docker.models.containers import Container

from siteclient.errors import EngineUnavailableError, RuntimeFailure


def exit_reason(exit_code: int | None, state: dict[str, Any]) -> str:
    error = state.get("Error")
    if error:
        return f"the engine reported: {str(error)[:300]}"
    if exit_code is None:
        return "exited with an unknown code"
    if exit_code > 128:
        return f"exited with code {exit_code} (killed by signal {exit_code - 128})"
    return f"exited with code {exit_code}"


# ---- logs and waiting


def read_log_tail(container: Container, limit: int) -> tuple[bytes, bool]:
    """The last ``limit`` bytes of the stopped container's log, and whether any were dropped.

    The engine keeps at most two json-file logs (:func:`sandbox.log_file_bytes`), so this reads
    a bounded amount; a ring buffer keeps the memory bounded by ``2 * limit``.
    """
    buffer = bytearray()
    seen = 0
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
        seen += len(chunk)
        buffer += chunk
        if len(buffer) > 2 * limit:
            del buffer[:-limit]
    return bytes(buffer[-limit:]), seen > limit


class Waiter:
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
def translated(doing: str, api_error: type[RuntimeFailure] = RuntimeFailure) -> Iterator[None]:
    """Turn docker/requests exceptions raised inside into our errors, ``from`` the original."""
    try:
        yield
    except (DockerException, requests.RequestException) as exc:
        raise_translated(exc, doing, api_error)


def raise_translated(
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
