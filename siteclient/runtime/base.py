"""The container runtime as the executor sees it: pull an image, run one locked-down container.

:class:`ContainerRuntime` is the whole contract between :class:`siteclient.run.execute.TaskExecutor`
and a container engine. :class:`siteclient.runtime.docker.DockerRuntime` is its one adapter today
and satisfies it structurally; a Podman or Kubernetes adapter would be one more module beside it.
Engine administration (ping, networks, stale containers, shutdown) stays on the adapter, wired
where the site starts.

Every adapter keeps these invariants:

- Only :mod:`siteclient.errors` leave it; foreign exceptions are translated with ``from exc``.
- The executor tells the task's fault from the site's by the error: ``PolicyError`` and
  ``DigestMismatchError`` reject the task, ``PullError`` fails it with the engine's reason,
  anything else (``EngineUnavailableError`` above all) propagates so the agent retries later.
- What is run is what was pinned: the digest :meth:`ContainerRuntime.pull` returns is the one
  the engine actually pulled, and :meth:`ContainerRuntime.run` runs exactly that image id.
- Whatever the container does, a started run ends as a :class:`RunOutcome`, never an exception.
"""

from __future__ import annotations

import threading
from typing import Protocol

from siteclient.runtime.spec import PulledImage, RunOutcome, RunSpec


class ContainerRuntime(Protocol):
    """Pulls task images and runs them confined (:mod:`siteclient.runtime.sandbox`)."""

    def pull(self, repository: str, *, tag: str | None, digest: str | None) -> PulledImage:
        """Pull ``repository`` by ``digest`` if given, else by ``tag`` (``latest`` if neither).

        Always asks the registry, even when the image is present locally. The result's
        ``digest`` is the repository digest the engine pulled (equal to ``digest`` when pinned)
        and its ``image_id`` is what :meth:`run` is given.

        Raises PullError with the engine's reason when the image cannot be pulled,
        DigestMismatchError when the pulled image is not the pinned one, PolicyError for a
        malformed reference or an image whose configuration would weaken the sandbox, and
        EngineUnavailableError when the engine cannot be reached.
        """
        ...

    def run(
        self, spec: RunSpec, cancel: threading.Event, *, remove_in_background: bool = False
    ) -> RunOutcome:
        """Run ``spec`` to its end, confined, and remove the container.

        The run gets a fresh folder in ``spec.work_dir`` (:func:`sandbox.make_run_dir`: the
        config read-only, an empty output folder); the container's files are collected from the
        outcome's ``output_dir``, and the caller removes the folder. The spec's limits are
        enforced: the wall-clock timeout ends the run as ``timeout``, a set ``cancel`` as
        ``cancelled``, an OOM kill or an output folder over its limits as ``failed``. With
        ``remove_in_background`` the stopped container may be removed after this returns.

        Raises PolicyError if the image would weaken the sandbox, StateError if the run folder
        cannot be made, EngineUnavailableError when the engine is gone, and RuntimeFailure for
        any other failure of the engine. Whatever the container itself does ends as a
        :class:`RunOutcome`.
        """
        ...


__all__ = ["ContainerRuntime"]
