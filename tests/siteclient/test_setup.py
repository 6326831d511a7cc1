"""``siteclient init`` and ``siteclient check-config``: a hospital operator's first hour (findings
4, 8, 10, 16), against a real registry process, real Docker and a real SPARQL endpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from api.client.registry import Client
from crypto import SigningKey
from examples.sparql.endpoint import start_site_endpoint, stop_site_endpoint
from ledger.checkpoint import verifier_key
from siteclient.config import SiteConfig
from siteclient.main import main as siteclient
from tests.siteclient.conftest import BASE_IMAGE, ImageFactory
from tests.siteclient.site_env import SiteEnv

ALLOW = r"127\.0\.0\.1:5000/pht-test/rt-[a-z0-9-]+:[\w.-]+(@sha256:[0-9a-f]{64})?"


@pytest.fixture
def env(tmp_path: Path, docker_client: object) -> Iterator[SiteEnv]:
    site = SiteEnv(tmp_path).start()
    yield site
    site.stop()


def _init(env: SiteEnv, folder: Path, *extra: str, site: str = "site-a") -> int:
    return siteclient(
        [
            "init",
            "--dir",
            str(folder),
            "--site",
            site,
            "--registry",
            env.url,
            "--allow",
            ALLOW,
            "--sparql-endpoint",
            "none",
            "--timeout-s",
            "30",
            *extra,
        ]
    )


def _pins(env: SiteEnv) -> tuple[str, str]:
    entry = Client(env.url, env.world.keys["site-a"]).entry(0)
    body = entry.event.event.body
    return body.log_key, entry.hash  # type: ignore[union-attr]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_init_writes_config_that_follow_accepts(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = env.tmp / "site-a-init"
    key_file = env.tmp / "keys" / "site-a.key"
    assert _init(env, folder, "--key-file", str(key_file), "--yes") == 0
    out = capsys.readouterr().out
    log_key, genesis = _pins(env)
    assert f"log key   {log_key}" in out and f"genesis   {genesis}" in out
    # SHA-256 of the raw Ed25519 key, in groups of four, as the web view shows it
    raw = base64.b64decode(log_key.split("+", 2)[2])[1:]
    digest = hashlib.sha256(raw).hexdigest()
    assert f"fingerprint {' '.join(digest[i : i + 4] for i in range(0, 64, 4))}" in out
    line = next(json.loads(x) for x in out.splitlines() if x.startswith('{"name"'))
    assert line == {
        "name": "site-a",
        "role": "site",
        "public_key": env.world.keys["site-a"].public.b64(),
    }
    data = json.loads((folder / "config.json").read_text())
    assert (data["log_key"], data["genesis"], data["sparql_endpoint"]) == (log_key, genesis, None)
    assert data["limits"] == {"timeout_s": 30}
    assert SiteConfig.load(folder / "config.json").trust_on_first_use == ()

    image = images.script("initdemo", "echo hi > /pht/output/hi.txt", tag="1")
    task = env.post(f"{image.reference}@{image.digest}")  # as `pht task post --pin-digest` does
    assert siteclient(["follow", "--once", "--config", str(folder / "config.json")]) == 0
    view = env.analyst().wait(task, timeout=60)
    result = env.analyst().results(view)["site-a"].result
    assert result.state.value == "completed", result.reason


def test_init_without_a_terminal_names_every_missing_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert siteclient(["init", "--site", "site-a"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "siteclient: error: missing --dir, --registry, --allow, --sparql-endpoint, --key-file "
        "or --new-key (see `siteclient init --help` for an example)"
    )


def test_init_validates_before_writing_anything(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = env.tmp / "bad"
    code = siteclient(
        [
            "init",
            "--dir",
            str(folder),
            "--site",
            "Site A",
            "--registry",
            "127.0.0.1:8555",
            "--allow",
            "*",
            "--sparql-endpoint",
            "none",
            "--new-key",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "site: expected a member name" in err
    assert "registry: expected an http:// or https:// URL" in err
    assert "not a valid regular expression" in err
    assert not folder.exists()


def test_init_never_overwrites_without_force(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = env.tmp / "again"
    key_file = str(env.tmp / "keys" / "site-a.key")
    assert _init(env, folder, "--key-file", key_file, "--yes") == 0
    before = (folder / "config.json").read_bytes()
    capsys.readouterr()
    assert _init(env, folder, "--key-file", key_file, "--yes", "--network", "other") == 1
    assert "already exist(s); pass --force to overwrite" in capsys.readouterr().err
    assert (folder / "config.json").read_bytes() == before
    assert _init(env, folder, "--key-file", key_file, "--yes", "--force") == 0


def test_init_with_a_new_key_prints_the_members_line_and_needs_published_pins(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = env.tmp / "site-new"
    assert _init(env, folder, "--new-key", "--organization", "Hospital N", site="site-n") == 1
    captured = capsys.readouterr()
    key = SigningKey.load(folder / "site-n.key")
    assert stat.S_IMODE(os.stat(folder / "site-n.key").st_mode) == 0o600
    line = next(json.loads(x) for x in captured.out.splitlines() if x.startswith('{"name"'))
    assert line == {
        "name": "site-n",
        "role": "site",
        "public_key": key.public.b64(),
        "organization": "Hospital N",
    }
    assert "serves its log key and genesis only to members" in captured.err
    assert "pass --log-key and --genesis as the admin published them" in captured.err
    assert not (folder / "config.json").exists()

    log_key, genesis = _pins(env)
    other_log_key = SigningKey.generate()
    wrong = verifier_key("pht.example/test", other_log_key.public)
    args = ("--key-file", str(folder / "site-n.key"), "--genesis", genesis)
    assert _init(env, folder, *args, "--log-key", wrong, site="site-n") == 1
    assert "does not verify with the pinned log_key" in capsys.readouterr().err
    assert _init(env, folder, *args, "--log-key", log_key, site="site-n") == 0
    assert "checks the genesis pin once the admin has added this site" in capsys.readouterr().out
    assert json.loads((folder / "config.json").read_text())["genesis"] == genesis


def _lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """check name -> the line's status and text."""
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        check, _, text = rest.strip().partition(": ")
        if status in ("ok", "FAIL"):
            lines[check] = f"{status}: {text}"
    return lines


def test_check_config_reports_each_part(
    env: SiteEnv, capsys: pytest.CaptureFixture[str], docker_client: docker.DockerClient
) -> None:
    folder = env.tmp / "checked"
    assert _init(env, folder, "--key-file", str(env.tmp / "keys" / "site-a.key"), "--yes") == 0
    config = folder / "config.json"
    capsys.readouterr()
    assert siteclient(["check-config", "--config", str(config)]) == 0
    lines = _lines(capsys)
    assert list(lines) == [
        "site config",
        "registry",
        "pins",
        "membership",
        "docker",
        "sparql (host)",
        "sparql (container)",
    ]
    assert all(value.startswith("ok: ") for value in lines.values()), lines
    assert "is a PHT registry" in lines["registry"]
    assert "'site-a' is a current site" in lines["membership"]

    # the wrong site name for this key, and an endpoint containers cannot reach
    data = json.loads(config.read_text())
    data.update(site="site-z", sparql_endpoint=f"http://127.0.0.1:{_free_port()}/query")
    config.write_text(json.dumps(data))
    assert siteclient(["check-config", "--config", str(config)]) == 1
    lines = _lines(capsys)
    assert lines["membership"].startswith("FAIL: 'site-z' is not a member")
    assert "belongs to 'site-a'" in lines["membership"]
    assert lines["sparql (host)"].startswith("FAIL: ") and "unreachable" in lines["sparql (host)"]
    assert "containers get no network (network is null)" in lines["sparql (container)"]

    # nothing at the registry URL
    data.update(site="site-a", sparql_endpoint=None, registry=f"http://127.0.0.1:{_free_port()}")
    config.write_text(json.dumps(data))
    assert siteclient(["check-config", "--config", str(config)]) == 1
    lines = _lines(capsys)
    assert "is `pht serve` running there?" in lines["registry"]
    assert lines["docker"].startswith("ok: ")

    # something that is not a PHT registry: the image registry
    data.update(registry="http://127.0.0.1:5000")
    config.write_text(json.dumps(data))
    assert siteclient(["check-config", "--config", str(config)]) == 1
    assert "answers but is not a PHT registry" in _lines(capsys)["registry"]

    # a Docker network that does not exist
    data.update(network=f"no-such-net-{os.getpid()}")
    config.write_text(json.dumps(data))
    assert siteclient(["check-config", "--config", str(config)]) == 1
    docker_line = _lines(capsys)["docker"]
    assert docker_line.startswith("FAIL: ") and "does not exist" in docker_line
    assert "docker network create --internal NAME" in docker_line


def test_check_config_reaches_the_sparql_endpoint_from_a_container_on_its_network(
    env: SiteEnv, capsys: pytest.CaptureFixture[str], docker_client: docker.DockerClient
) -> None:
    site = f"ckcfg{os.getpid()}"
    data_file = env.tmp / "data.nt"
    data_file.write_text(
        "<https://pht.example/p/1> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> "
        "<https://pht.example/vocab#Patient> .\n"
    )
    network, url = start_site_endpoint(docker_client, site, data_file)
    try:
        config = env.write_config(sparql_endpoint=url, network=network)
        probe = ["--probe-image", BASE_IMAGE]
        code = siteclient(["check-config", "--config", str(config), *probe])
        lines = _lines(capsys)
        assert code == 0, "\n".join(f"{k} {v}" for k, v in lines.items())

        assert lines["sparql (container)"] == f"ok: {url} answers from network {network!r}"
        assert "sparql (host)" not in lines  # a note: the host cannot see an internal network

        data = json.loads(config.read_text())
        data["sparql_endpoint"] = url.replace("7878", "7879")  # the wrong port
        config.write_text(json.dumps(data))
        assert siteclient(["check-config", "--config", str(config), *probe]) == 1
        assert _lines(capsys)["sparql (container)"].startswith(f"FAIL: {data['sparql_endpoint']}")
    finally:
        stop_site_endpoint(docker_client, site)


def test_init_on_a_terminal_prompts_for_what_is_missing(env: SiteEnv) -> None:
    """Finding 4: a wizard, as `v6 node new` is; here every answer comes through a real pty."""
    folder = env.tmp / "prompted"
    answers = [
        str(folder),
        "site-a",
        env.url,
        ALLOW,
        "none",
        str(env.tmp / "keys" / "site-a.key"),
        "y",
    ]
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "siteclient.main", "init"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        os.write(master, ("\n".join(answers) + "\n").encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err
    for prompt in ("directory for the site config", "site name", "registry URL", "SPARQL"):
        assert prompt in out
    assert "Do both match what the admin published? [y/N]" in out
    config = SiteConfig.load(folder / "config.json")
    assert (config.site, config.sparql_endpoint, config.allowed_images) == (
        "site-a",
        None,
        (ALLOW,),
    )
    assert config.trust_on_first_use == ()
