"""The deployment images (examples/deploy/build-images.sh) on the real Docker engine.

The build runs ``--offline``: ``.ci/setup`` has built them, and cached what came from PyPI, so
here it only checks that they are current (rebuilding what changed in this checkout). Then, as
docs/deploy.md runs them: ``pht init`` in the registry image on a fresh volume, and ``pht serve``
from that volume answering ``/healthz`` on a loopback port; the site client image's
``serve-files`` following that registry by name, on a network of their own, and answering
``/healthz`` too; its ``check-config`` reaching the engine through the socket with the socket's
group added (and not without it); and its ``follow`` running a researcher's task in a container
of the host's engine and posting the result. The containers run as the images' own user, with a
read-only root file system, every capability dropped and ``no-new-privileges``. Everything made
here is removed afterwards.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker.errors import NotFound
from docker.models.containers import Container

from api.client.analyst import Analyst
from api.client.registry import Client
from crypto import SigningKey
from tests.siteclient.conftest import REGISTRY, ImageFactory, _unavailable

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "examples" / "deploy" / "build-images.sh"
REGISTRY_IMAGE = "pht/registry:dev"
SITECLIENT_IMAGE = "pht/siteclient:dev"
IMAGE_UID = 10001  # the `pht` user of both images
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


def _for_image_user(path: Path) -> Path:
    """Hand a file or folder to the images' user (key files must stay 0600)."""
    if os.geteuid() != 0:
        _unavailable("handing key files to the images' user (uid 10001) needs root")
    os.chown(path, IMAGE_UID, IMAGE_UID)
    return path


def _hardened(**options: Any) -> dict[str, Any]:
    return {
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        **options,
    }


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


@dataclass
class Deployment:
    """A registry container on a network of its own, and what a site of it needs."""

    client: docker.DockerClient
    names: str  # the prefix of everything made here
    setup: Path  # keys, members file and site config, owned by the images' user
    site: str
    researcher: SigningKey
    made: list[Any] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    registry_url: str = ""  # from the host

    def keep(self, thing: Any) -> Any:
        self.made.append(thing)
        return thing

    def run(self, image: str, command: list[str], **options: Any) -> Container:
        container = self.client.containers.run(
            image, command, detach=True, network=self.names, **_hardened(**options)
        )
        return self.keep(container)

    def port(self, container: Container, port: str) -> int:
        container.reload()
        return int(container.ports[port][0]["HostPort"])

    def site_config(self, **overrides: Any) -> str:
        """Write the site config (state under /var/lib/pht); its path inside the container."""
        config = {
            "site": self.site,
            "key_file": f"/etc/pht/site/{self.site}.key",
            "registry": f"http://{self.names}-registry:8555",
            "log_key": self.summary["log_key"],
            "genesis": self.summary["genesis_hash"],
            "sparql_endpoint": None,
            "allowed_images": [],
            "state_dir": "/var/lib/pht/state",
            "work_dir": "/var/lib/pht/work",
            "poll_wait_s": 1,
            **overrides,
        }
        path = self.setup / "config.json"
        path.unlink(missing_ok=True)
        path.write_text(json.dumps(config))
        _for_image_user(path)
        return "/etc/pht/site/config.json"

    def site_volumes(self, state: str, **more: Any) -> dict[str, Any]:
        return {
            str(self.setup): {"bind": "/etc/pht/site", "mode": "ro"},
            self.keep(self.client.volumes.create(f"{self.names}-{state}")).name: {
                "bind": "/var/lib/pht",
                "mode": "rw",
            },
            **more,
        }

    def remove(self) -> None:
        for thing in reversed(self.made):
            with contextlib.suppress(NotFound):
                if isinstance(thing, Container):
                    thing.remove(force=True)
                else:
                    thing.remove()


@pytest.fixture(scope="module")
def deployment(
    built: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    names = f"pht-deploy-test-{os.getpid()}-{secrets.token_hex(3)}"
    setup = _for_image_user(tmp_path_factory.mktemp("deploy-setup"))
    env = Deployment(
        client=built,
        names=names,
        setup=setup,
        site=f"deploy-site-{os.getpid()}",  # its own: follow removes containers of its name
        researcher=SigningKey.generate(),
    )
    try:
        admin, site = SigningKey.generate(), SigningKey.generate()
        admin.save(setup / "admin.key")
        site.save(setup / f"{env.site}.key")
        members = [
            {"name": env.site, "role": "site", "public_key": site.public.b64()},
            {"name": "rhea", "role": "researcher", "public_key": env.researcher.public.b64()},
        ]
        (setup / "members.json").write_text(json.dumps(members))
        for path in setup.iterdir():
            _for_image_user(path)
        volume = env.keep(built.volumes.create(f"{names}-registry"))
        output = built.containers.run(
            REGISTRY_IMAGE,
            [
                *("init", "--data", "/var/lib/pht", "--origin", "deploy.test/pht"),
                *("--admin-key", "/setup/admin.key", "--members", "/setup/members.json"),
            ],
            volumes={volume.name: {"bind": "/var/lib/pht"}, str(setup): {"bind": "/setup"}},
            network_mode="none",
            remove=True,
            **_hardened(),
        )
        env.summary = json.loads(output)
        assert env.summary["members"] == ["admin", env.site, "rhea"]
        env.keep(built.networks.create(names, driver="bridge"))
        registry = env.run(
            REGISTRY_IMAGE,
            [],  # the image's default command: serve the volume
            name=f"{names}-registry",
            ports={"8555/tcp": ("127.0.0.1", None)},
            volumes={volume.name: {"bind": "/var/lib/pht", "mode": "rw"}},
        )
        env.registry_url = f"http://127.0.0.1:{env.port(registry, '8555/tcp')}"
        health = _health(registry, f"{env.registry_url}/healthz")
        assert health == {"status": "ok", "size": 1, "integrator": True}
        assert registry.exec_run(["id", "-u"]).output.decode().strip() == str(IMAGE_UID)
        yield env
    finally:
        env.remove()


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


def test_registry_image_serves_the_ledger_pht_init_made(deployment: Deployment) -> None:
    """The fixture started it: ``/healthz`` answered with the genesis alone; the checkpoint is
    signed with the log key ``pht init`` printed."""
    note = requests.get(f"{deployment.registry_url}/v1/checkpoint", timeout=10).text
    assert note.startswith("deploy.test/pht\n1\n")
    key_name = deployment.summary["log_key"].split("+")[0]
    assert f"\u2014 {key_name} " in note


def test_file_service_image_follows_the_registry_and_serves_healthz(
    deployment: Deployment,
) -> None:
    config = deployment.site_config(
        file_service={
            "host": "0.0.0.0",
            "port": 8443,
            "public_url": "http://127.0.0.1:8443",
            "inbox_dir": "/var/lib/pht/inbox",
        }
    )
    files = deployment.run(
        SITECLIENT_IMAGE,
        ["serve-files", "--config", config],
        ports={"8443/tcp": ("127.0.0.1", None)},
        volumes=deployment.site_volumes("files"),
    )
    url = f"http://127.0.0.1:{deployment.port(files, '8443/tcp')}/healthz"
    # It verified the registry's ledger (the genesis pinned above) before it answered.
    assert _health(files, url) == {"status": "ok", "site": deployment.site, "ledger_size": 1}


def _socket() -> dict[str, Any]:
    if not Path(SOCKET).is_socket():
        _unavailable(f"no Docker socket at {SOCKET} to hand to the site client")
    return {SOCKET: {"bind": "/run/docker.sock", "mode": "rw"}}


def _finish(container: Container) -> tuple[int, str]:
    code = int(container.wait(timeout=180)["StatusCode"])
    return code, container.logs().decode(errors="replace")


def test_site_client_image_reaches_the_engine_only_with_the_sockets_group(
    deployment: Deployment,
) -> None:
    config = deployment.site_config()
    group = str(Path(SOCKET).stat().st_gid)
    with_group = deployment.run(
        SITECLIENT_IMAGE,
        ["check-config", "--config", config],
        volumes=deployment.site_volumes("check", **_socket()),
        group_add=[group],
    )
    code, output = _finish(with_group)
    assert code == 0, output
    assert re.search(r"^ok +docker: the engine answers", output, re.M), output
    # Without the group the image's user has no way in: the access is the group's, nothing else.
    without = deployment.run(
        SITECLIENT_IMAGE,
        ["check-config", "--config", config],
        volumes=deployment.site_volumes("check-without", **_socket()),
    )
    code, output = _finish(without)
    assert code != 0
    assert re.search(r"^FAIL +docker: ", output, re.M), output


def test_follow_in_its_image_runs_a_task_on_the_hosts_engine(
    deployment: Deployment, images: ImageFactory, tmp_path: Path
) -> None:
    """``follow --once`` in the image, its work_dir mounted at the same path inside as outside
    (the engine bind-mounts task folders by their host path): the task's container runs on the
    host's engine and its output reaches the researcher."""
    image = images.script("deploy-hello", "echo from-the-image > /pht/output/hello.txt", tag="1")
    work = tmp_path / "work"
    work.mkdir()
    _for_image_user(work)
    config = deployment.site_config(
        allowed_images=[
            rf"{re.escape(REGISTRY)}/pht-test/rt-deploy-hello:1(@sha256:[0-9a-f]{{64}})?"
        ],
        work_dir=str(work),
    )
    analyst = Analyst(Client(deployment.registry_url, deployment.researcher), deployment.researcher)
    task = analyst.post(image.reference, {}, [deployment.site])
    follow = deployment.run(
        SITECLIENT_IMAGE,
        ["follow", "--once", "--config", config],
        volumes=deployment.site_volumes(
            "follow", **_socket(), **{str(work): {"bind": str(work), "mode": "rw"}}
        ),
        group_add=[str(Path(SOCKET).stat().st_gid)],
    )
    code, output = _finish(follow)
    assert code == 0, output
    run = analyst.results(analyst.wait(task, timeout=60))[deployment.site]
    assert run.result.state.value == "completed", run.result.reason
    assert run.result.image_digest == image.digest
    (hello,) = run.result.outputs
    assert analyst.client.get_blob(hello.sha256) == b"from-the-image\n"
