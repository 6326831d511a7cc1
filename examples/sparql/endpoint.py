"""Each site's SPARQL endpoint: an Oxigraph server on the site's own internal Docker network.

``start_site_endpoint(client, "site-a", "site-a.nt")`` creates (or reuses) the network
``pht-site-a-net`` and starts the container ``pht-sparql-site-a`` from the ``pht-examples/oxigraph``
image (``examples/images/build.sh``), which loads the N-Triples file, mounted read-only, into a
fresh store on a tmpfs and serves it read-only. It returns the network's name and the endpoint's
URL as seen from inside that network, ``http://pht-sparql-site-a:7878/query``: the two values a
site's configuration gives its algorithm containers (network and ``SPARQL_ENDPOINT``).

Isolation. The network is ``internal`` (no route out of it) and created with
``com.docker.network.bridge.inhibit_ipv4``: the host has no address on it, so a container there
reaches only the other containers on the same network, not the Docker host's own services nor
another site. The flip side: nothing on the host can reach the endpoint either (a packet from the
host to the network's addresses would follow the host's default route out of the machine), so
every check here runs inside a container, never from the host: readiness is probed with ``docker
exec`` in the endpoint's own container, and :func:`probe` runs a throwaway container on a given
network.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.models.networks import Network
from docker.types import Mount

REGISTRY = os.environ.get("PHT_DOCKER_REGISTRY", "127.0.0.1:5000")
OXIGRAPH_VERSION = "0.5.13"
ENDPOINT_IMAGE = f"{REGISTRY}/pht-examples/oxigraph:{OXIGRAPH_VERSION}"
# Any image with python3 will do for probes; the debootstrap base is already there.
PROBE_IMAGE = f"{REGISTRY}/pht-examples/python-numpy:bookworm"
PORT = 7878
LABEL = "org.pht.examples"
SITE_LABEL = "org.pht.examples.site"
SITE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
COUNT_PATIENTS = "SELECT (COUNT(?p) AS ?n) WHERE { ?p a <https://pht.example/vocab#Patient> }"

# Runs inside a container: POSTs a SPARQL query (argv[2]) to argv[1], prints the first binding's
# first value, exits 0 on success and 1 (with the reason on stderr) otherwise.
_PROBE_SCRIPT = """
import json, sys, urllib.parse, urllib.request
url, query, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = urllib.parse.urlencode({"query": query}).encode()
req = urllib.request.Request(url, data=data,
                             headers={"Accept": "application/sparql-results+json"})
try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
        doc = json.load(r)
except Exception as exc:
    print(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    sys.exit(1)
rows = doc["results"]["bindings"]
print(next(iter(rows[0].values()))["value"] if rows and rows[0] else "")
"""


class EndpointError(RuntimeError):
    """The endpoint could not be started or did not become ready."""


def _check_site(site: str) -> None:
    if not SITE_RE.fullmatch(site):
        raise ValueError(f"site name {site!r} must match {SITE_RE.pattern}")


def site_network(site: str) -> str:
    """The name of the site's internal network."""
    _check_site(site)
    return f"pht-{site}-net"


def endpoint_container(site: str) -> str:
    """The name of the site's endpoint container (also its host name on the network)."""
    _check_site(site)
    return f"pht-sparql-{site}"


def endpoint_url(site: str) -> str:
    """The SPARQL query URL as containers on the site's network see it."""
    return f"http://{endpoint_container(site)}:{PORT}/query"


def ensure_network(client: docker.DockerClient, site: str) -> Network:
    """The site's internal network, created when missing; an existing one must be internal."""
    name = site_network(site)
    try:
        network = client.networks.get(name)
    except NotFound:
        return client.networks.create(
            name,
            driver="bridge",
            internal=True,
            check_duplicate=True,
            options={"com.docker.network.bridge.inhibit_ipv4": "true"},
            labels={LABEL: "site-network", SITE_LABEL: site},
        )
    if not network.attrs.get("Internal"):
        raise EndpointError(f"network {name} exists but is not internal; remove it first")
    return network


def _remove_container(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(NotFound):
        client.containers.get(name).remove(force=True)


def _logs_tail(container: Container, lines: int = 20) -> str:
    try:
        raw = container.logs(tail=lines)
    except APIError:
        return "(no logs)"
    return raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else str(raw)


def query_in_container(
    container: Container, query: str, url: str = f"http://127.0.0.1:{PORT}/query"
) -> tuple[bool, str]:
    """Run the probe script with ``docker exec`` in ``container``: (ok, first value or error)."""
    exit_code, output = container.exec_run(
        ["python3", "-c", _PROBE_SCRIPT, url, query, "5"], user="65534", demux=True
    )
    stdout, stderr = output if isinstance(output, tuple) else (output, None)
    if exit_code == 0:
        return True, (stdout or b"").decode("utf-8", "replace").strip()
    return False, (stderr or stdout or b"").decode("utf-8", "replace").strip()


def wait_ready(container: Container, timeout_s: float = 60.0) -> int:
    """Wait until the endpoint answers a query; return how many patients it holds."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        container.reload()
        if container.status in {"exited", "dead"}:
            raise EndpointError(
                f"endpoint container {container.name} exited "
                f"({container.attrs['State'].get('ExitCode')}): {_logs_tail(container)}"
            )
        if container.status == "running":
            ok, value = query_in_container(container, COUNT_PATIENTS)
            if ok:
                return int(value or 0)
            last = value
        time.sleep(0.1)
    raise EndpointError(
        f"endpoint container {container.name} not ready within {timeout_s:.0f} s ({last}): "
        f"{_logs_tail(container)}"
    )


def start_site_endpoint(
    client: docker.DockerClient,
    site: str,
    data_nt_path: str | os.PathLike[str],
    *,
    image: str = ENDPOINT_IMAGE,
    timeout_s: float = 60.0,
) -> tuple[str, str]:
    """Start the site's Oxigraph endpoint loaded with ``data_nt_path``; wait until it answers.

    Returns ``(network_name, endpoint_url_inside_network)``. A container left from an earlier run
    under the same name is replaced. The endpoint runs as nobody on a read-only root with all
    capabilities dropped; its store lives on a tmpfs, so each start loads the file afresh.
    """
    path = Path(data_nt_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no data file {path}")
    try:
        client.images.get(image)
    except ImageNotFound:
        raise EndpointError(f"image {image} is missing; run examples/images/build.sh") from None
    network = ensure_network(client, site)
    name = endpoint_container(site)
    _remove_container(client, name)
    container = client.containers.create(
        image,
        name=name,
        hostname=name,
        network=network.name,
        user="65534:65534",
        read_only=True,
        tmpfs={"/store": "size=256m,mode=1777", "/tmp": "size=16m,mode=1777"},  # noqa: S108
        mounts=[Mount(target="/seed/data.nt", source=str(path), type="bind", read_only=True)],
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="512m",
        pids_limit=256,
        labels={LABEL: "sparql-endpoint", SITE_LABEL: site},
    )
    try:
        container.start()
        wait_ready(container, timeout_s)
    except BaseException:
        container.remove(force=True)
        raise
    return str(network.name), endpoint_url(site)


def stop_site_endpoint(
    client: docker.DockerClient, site: str, *, remove_network: bool = True
) -> None:
    """Remove the site's endpoint container and, unless told otherwise, its network.

    Containers still attached to the network (say, an algorithm container left running) are
    disconnected first. Missing pieces are fine: stopping twice is a no-op.
    """
    _remove_container(client, endpoint_container(site))
    if not remove_network:
        return
    try:
        network = client.networks.get(site_network(site))
    except NotFound:
        return
    network.reload()
    for container in network.containers:
        network.disconnect(container, force=True)
    network.remove()


def stop_all_endpoints(client: docker.DockerClient) -> list[str]:
    """Remove every endpoint container and site network these helpers made; return the sites."""
    sites: set[str] = set()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        sites.add(container.labels.get(SITE_LABEL, ""))
    for network in client.networks.list(filters={"label": LABEL}):
        sites.add(network.attrs.get("Labels", {}).get(SITE_LABEL, ""))
    for site in sorted(s for s in sites if SITE_RE.fullmatch(s)):
        stop_site_endpoint(client, site)
    return sorted(sites)


def probe(
    client: docker.DockerClient,
    url: str,
    network: str | None,
    *,
    query: str = COUNT_PATIENTS,
    image: str = PROBE_IMAGE,
    timeout_s: float = 5.0,
) -> tuple[bool, str]:
    """Query ``url`` from a throwaway container on ``network`` (``None``: no network at all).

    Returns (ok, first value or the error). Only for networks whose every address lives on this
    machine: the site networks and ``none``.
    """
    container = client.containers.create(
        image,
        ["python3", "-c", _PROBE_SCRIPT, url, query, str(timeout_s)],
        network=network or "none",
        # An unknown name fails in a second instead of waiting out the resolver's retries.
        dns_opt=["timeout:1", "attempts:1"],
        user="65534:65534",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        labels={LABEL: "probe"},
    )
    try:
        container.start()
        status: dict[str, Any] = container.wait(timeout=timeout_s + 30)
        out = container.logs(stdout=True, stderr=True).decode("utf-8", "replace").strip()
        return status.get("StatusCode") == 0, out
    finally:
        container.remove(force=True)


def endpoint_address(client: docker.DockerClient, site: str) -> str:
    """The endpoint container's IPv4 address on its site network (for isolation checks)."""
    container = client.containers.get(endpoint_container(site))
    networks = container.attrs["NetworkSettings"]["Networks"]
    return str(networks[site_network(site)]["IPAddress"])


def check_isolation(
    client: docker.DockerClient, site: str, other_network: str | None = None
) -> dict[str, tuple[bool, str]]:
    """Probe the site's endpoint from its own network (must answer) and from outside it: no
    network, and, when given, another site's internal network, by name and by address (must not).

    Raises :class:`EndpointError` when any of these goes the wrong way; returns every probe's
    outcome. Never probes from the host or from Docker's default bridge: see the module docs.
    """
    url = endpoint_url(site)
    by_address = f"http://{endpoint_address(client, site)}:{PORT}/query"
    outcomes = {
        f"from {site_network(site)}": probe(client, url, site_network(site)),
        "from network none by name": probe(client, url, None),
        "from network none by address": probe(client, by_address, None),
    }
    if other_network is not None:
        outcomes[f"from {other_network} by name"] = probe(client, url, other_network)
        outcomes[f"from {other_network} by address"] = probe(
            client, by_address, other_network, timeout_s=2.0
        )
    wrong = [
        f"{where}: {'answered' if ok else 'failed'} ({detail})"
        for where, (ok, detail) in outcomes.items()
        if ok != where.startswith(f"from {site_network(site)}")
    ]
    if wrong:
        raise EndpointError(f"isolation of {site}'s endpoint broken: " + "; ".join(wrong))
    return outcomes
