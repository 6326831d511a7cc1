"""The deployment images (examples/deploy/build-images.sh) on the real Docker engine.

The build runs ``--offline``: ``.ci/setup`` has built them, and cached what came from PyPI, so
here it only checks that they are current (rebuilding what changed in this checkout). Then, as
an operator would: ``pht init`` in the registry image on a fresh volume, ``pht serve`` from that
volume answering ``/healthz`` on a loopback port, the site client image's ``serve-files``
following that registry by name on a network of their own and answering ``/healthz`` too, and
its ``check-config`` reaching the engine through the socket with the socket's group added (and
not without it). The containers run as the images' own user, with a read-only root file system,
every capability dropped and ``no-new-privileges``: what the images must survive in production.
Everything made here is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker.errors import NotFound
from docker.models.containers import Container

from crypto import SigningKey
from tests.siteclient.conftest import _unavailable

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "examples" / "deploy" / "build-images.sh"
REGISTRY_IMAGE = "pht/registry:dev"
SITECLIENT_IMAGE = "pht/siteclient:dev"
IMAGE_UID = 10001  # the `pht` user of both images
SITE = "site-c"
SOCKET = "/run/docker.sock"
START_WAIT_S = 60.0
# What a build cannot do without the set-up having run once (skipped locally, failed in CI).
NOT_SET_UP = ("is not cached", "base image", "does not answer")


@pytest.fixture(scope="module")
def built(docker_client: docker.DockerClient) -> docker.DockerClient:
    result = subprocess.run(
        ["bash", str(BUILD), "--offline"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        if any(reason in result.stderr for reason in NOT_SET_UP):
            _unavailable(f"the deployment images cannot be built: {result.stderr.strip()[-300:]}")
        pytest.fail(f"build-images.sh failed:\n{result.stderr[-3000:]}", pytrace=False)
    return docker_client


@pytest.fixture
def names() -> str:
    return f"pht-deploy-test-{os.getpid()}-{secrets.token_hex(3)}"


@pytest.fixture
def made(built: docker.DockerClient) -> Iterator[list[Any]]:
    """Containers, networks and volumes a test makes; removed afterwards, in reverse."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        with contextlib.suppress(NotFound):
            if isinstance(thing, Container):
                thing.remove(force=True)
            else:
                thing.remove()


def _for_image_user(path: Path) -> None:
    """Hand a file or folder to the images' user (key files must stay 0600)."""
    if os.geteuid() != 0:
        _unavailable("handing key files to the images' user (uid 10001) needs root")
    os.chown(path, IMAGE_UID, IMAGE_UID)


def _hardened(**options: Any) -> dict[str, Any]:
    return {
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        **options,
    }


def _host_port(container: Container, port: str) -> int:
    container.reload()
    return int(container.ports[port][0]["HostPort"])


def _health(container: Container, url: str) -> dict[str, Any]:
    """``url`` once it answers 200 (polled until START_WAIT_S), or fail with the logs."""
    deadline = time.monotonic() + START_WAIT_S
    last = "no answer"
    while time.monotonic() < deadline:
        container.reload()
        if container.status in {"exited", "dead"}:
            break
        try:
            answer = requests.get(url, timeout=5)
            if answer.status_code == 200:
                body: dict[str, Any] = answer.json()
                return body
            last = f"{answer.status_code} {answer.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.3)
    logs = container.logs().decode(errors="replace")[-3000:]
    pytest.fail(f"{url}: {last}; container {container.status}:\n{logs}", pytrace=False)


def _init_registry(client: docker.DockerClient, made: list[Any], setup: Path, name: str) -> Any:
    """A volume holding a ledger made by ``pht init`` in the registry image; the init summary."""
    admin, site = SigningKey.generate(), SigningKey.generate()
    admin.save(setup / "admin.key")
    site.save(setup / f"{SITE}.key")
    members = [{"name": SITE, "role": "site", "public_key": site.public.b64()}]
    (setup / "members.json").write_text(json.dumps(members))
    for path in [setup, *setup.iterdir()]:
        _for_image_user(path)
    volume = client.volumes.create(name)
    made.append(volume)
    output = client.containers.run(
        REGISTRY_IMAGE,
        [
            *("init", "--data", "/var/lib/pht", "--origin", "deploy.test/pht"),
            *("--admin-key", "/setup/admin.key", "--members", "/setup/members.json"),
        ],
        volumes={name: {"bind": "/var/lib/pht", "mode": "rw"}, str(setup): {"bind": "/setup"}},
        network_mode="none",
        remove=True,
        **_hardened(),
    )
    summary = json.loads(output)
    assert summary["members"] == ["admin", SITE]
    return volume, summary


def test_images_run_as_their_own_user_and_keep_data_in_a_volume(
    built: docker.DockerClient,
) -> None:
    registry = built.images.get(REGISTRY_IMAGE).attrs["Config"]
    siteclient = built.images.get(SITECLIENT_IMAGE).attrs["Config"]
    assert registry["User"] == siteclient["User"] == "pht"
    assert list(registry["Volumes"]) == ["/var/lib/pht"]
    assert not siteclient.get("Volumes")  # a site's folders are the operator's to mount
    assert registry["Entrypoint"] == ["pht"]
    assert siteclient["Entrypoint"] == ["siteclient"]


def test_siteclient_help_runs_in_its_image(built: docker.DockerClient) -> None:
    output = built.containers.run(
        SITECLIENT_IMAGE, ["--help"], network_mode="none", remove=True, **_hardened()
    ).decode()
    for command in ("follow", "serve-files", "check-config", "status"):
        assert command in output


def test_registry_and_site_client_images_work_together(
    built: docker.DockerClient, made: list[Any], names: str, tmp_path: Path
) -> None:
    setup = tmp_path / "setup"
    setup.mkdir()
    volume, summary = _init_registry(built, made, setup, f"{names}-registry")
    network = built.networks.create(names, driver="bridge")
    made.append(network)

    registry = built.containers.run(
        REGISTRY_IMAGE,
        name=f"{names}-registry",
        detach=True,
        network=names,
        ports={"8555/tcp": ("127.0.0.1", None)},
        volumes={volume.name: {"bind": "/var/lib/pht", "mode": "rw"}},
        **_hardened(),
    )
    made.append(registry)
    port = _host_port(registry, "8555/tcp")
    assert _health(registry, f"http://127.0.0.1:{port}/healthz") == {"status": "ok", "size": 1}
    assert registry.exec_run(["id", "-u"]).output.decode().strip() == str(IMAGE_UID)

    # The site: config and key read-only, its state on a volume of its own, the registry by name.
    site_volume = built.volumes.create(f"{names}-site")
    made.append(site_volume)
    config = {
        "site": SITE,
        "key_file": f"/etc/pht/{SITE}/{SITE}.key",
        "registry": f"http://{names}-registry:8555",
        "log_key": summary["log_key"],
        "genesis": summary["genesis_hash"],
        "sparql_endpoint": None,
        "allowed_images": [],
        "state_dir": "/var/lib/pht/state",
        "work_dir": "/var/lib/pht/work",
        "poll_wait_s": 1,
        "file_service": {
            "host": "0.0.0.0",
            "port": 8443,
            "public_url": "http://127.0.0.1:8443",
            "inbox_dir": "/var/lib/pht/inbox",
        },
    }
    (setup / "config.json").write_text(json.dumps(config))
    _for_image_user(setup / "config.json")
    files = built.containers.run(
        SITECLIENT_IMAGE,
        ["serve-files", "--config", f"/etc/pht/{SITE}/config.json"],
        name=f"{names}-files",
        detach=True,
        network=names,
        ports={"8443/tcp": ("127.0.0.1", None)},
        volumes={
            str(setup): {"bind": f"/etc/pht/{SITE}", "mode": "ro"},
            site_volume.name: {"bind": "/var/lib/pht", "mode": "rw"},
        },
        **_hardened(),
    )
    made.append(files)
    port = _host_port(files, "8443/tcp")
    health = _health(files, f"http://127.0.0.1:{port}/healthz")
    # It verified the registry's ledger (the genesis pinned above) before it answered.
    assert health == {"status": "ok", "site": SITE, "ledger_size": 1}

    # `follow`'s way to the engine, as docs/deploy.md runs it: the socket and its group.
    def check_config(**options: Any) -> tuple[int, str]:
        container = built.containers.run(
            SITECLIENT_IMAGE,
            ["check-config", "--config", f"/etc/pht/{SITE}/config.json"],
            detach=True,
            network=names,
            volumes={
                str(setup): {"bind": f"/etc/pht/{SITE}", "mode": "ro"},
                f"{names}-check": {"bind": "/var/lib/pht", "mode": "rw"},
                SOCKET: {"bind": "/run/docker.sock", "mode": "rw"},
            },
            **_hardened(**options),
        )
        made.append(container)
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode(errors="replace")

    if not Path(SOCKET).is_socket():
        _unavailable(f"no Docker socket at {SOCKET} to hand to the site client")
    made.append(built.volumes.create(f"{names}-check"))
    code, output = check_config(group_add=[str(Path(SOCKET).stat().st_gid)])
    assert code == 0, output
    assert re.search(r"^ok +docker: the engine answers", output, re.M), output
    # Without the group the image's user has no way in: the access is the group's, nothing else.
    code, output = check_config()
    assert code != 0
    assert re.search(r"^FAIL +docker: ", output, re.M), output
