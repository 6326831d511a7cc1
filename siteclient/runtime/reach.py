"""Can a container on a given Docker network reach a URL? (``siteclient check-config``)

A site's SPARQL endpoint usually lives on an internal Docker network that the host itself cannot
reach, so the only honest check is from a container on that network, as a task's would be.
"""

from __future__ import annotations

import docker
import requests
from docker.errors import DockerException, NotFound

from siteclient.errors import PullError
from siteclient.runtime.container import translated
from siteclient.runtime.sandbox import LABEL_SITE


def reach(
    client: docker.DockerClient, url: str, *, network: str, image: str, timeout_s: int = 5
) -> str | None:
    """Fetch ``url`` with busybox ``wget`` from a throwaway container of ``image`` on
    ``network``; None when it answered 2xx, else why not.

    The container is as confined as a task's (user 65534, no capabilities, read-only root)
    and removed afterwards. Raises RuntimeFailure when the engine itself fails, PullError
    when ``image`` is neither local nor pullable."""
    with translated(f"look for the probe image {image}"):
        try:
            client.images.get(image)
        except NotFound:
            try:
                client.images.pull(image)
            except (DockerException, requests.RequestException) as exc:
                raise PullError(
                    f"probe image {image} is not here and cannot be pulled: {exc}"
                ) from exc
    with translated(f"run a probe container on network {network!r}"):
        container = client.containers.create(
            image,
            # busybox's own `wget -T` crashes in some builds (Debian 12's); `timeout` does not
            ["timeout", str(timeout_s), "wget", "-q", "-O", "/dev/null", url],
            network=network,
            dns_opt=["timeout:1", "attempts:1"],
            user="65534:65534",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            labels={LABEL_SITE: "check-config"},
        )
        try:
            container.start()
            status = container.wait(timeout=timeout_s + 30)
            out = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            container.remove(force=True)
    if status.get("StatusCode") == 0:
        return None
    return out.strip() or f"wget exited with {status.get('StatusCode')}"
