"""``siteclient check-config``: does this site config work, part by part?

One line per check, ``ok``, ``note`` or ``FAIL: reason``, each failure naming its fix; exit 0
only when nothing failed. The checks, in order (a later one is skipped, and says so, when what it
needs failed):

- ``site config``: loads as ``follow`` loads it (every problem at once); its warnings follow as
  ``note`` lines.
- ``registry``: something answers at ``registry`` and it is a PHT registry.
- ``pins``: the whole ledger verifies under ``log_key`` and ``genesis`` (a replay, as the
  follower does; with null pins it notes what would be trusted on first use).
- ``membership``: ``site`` is a current site of the consortium and ``key_file`` is its key.
- ``docker``: the engine answers; ``network``, when set, is a user-defined network.
- ``sparql (host)``: the endpoint answers an ``ASK {}`` from this host; when ``network`` is set
  that is only a note (an endpoint on an internal Docker network is unreachable from the host,
  by design), and the next check decides.
- ``sparql (container)``: containers reach the endpoint: with ``network`` null they have no
  network at all (a failure whenever an endpoint is set); otherwise ``wget`` from a throwaway
  container of ``--probe-image`` on that network.
"""

from __future__ import annotations

import argparse
import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests

from api.errors import ApiError, UnauthenticatedError
from crypto import CryptoError, SigningKey
from ledger.checkpoint import key_fingerprint
from ledger.errors import LedgerError
from siteclient.config import SiteConfig
from siteclient.errors import SiteClientError
from siteclient.follow.membership import check_membership
from siteclient.runtime.docker import DockerRuntime
from siteclient.setup.probe import RegistryFacts, probe_registry, replay

DEFAULT_PROBE_IMAGE = "busybox:latest"

EPILOG = """\
example:
  siteclient check-config --config site-a/config.json
  siteclient check-config --config site-a/config.json \\
      --probe-image 127.0.0.1:5000/pht-test/busybox:latest

Prints one line per check (site config, registry, pins, membership, docker, sparql (host),
sparql (container)): "ok", "note" or "FAIL: reason; fix".

exit codes: 0 every check passed; 1 a check failed (or the site config does not load); 2 usage"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "check-config",
        help="check a site config: registry, pins, membership, Docker, SPARQL endpoint",
        description="Validate a site config, then reach everything it names.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="the site config (DIR/config.json)")
    parser.add_argument(
        "--probe-image",
        default=DEFAULT_PROBE_IMAGE,
        help="a local image with busybox wget, for the SPARQL check from a container "
        f"(default {DEFAULT_PROBE_IMAGE})",
    )
    parser.set_defaults(run=run)


@dataclass
class _Report:
    failed: int = 0

    def ok(self, check: str, text: str) -> None:
        print(f"ok    {check}: {text}", flush=True)

    def note(self, check: str, text: str) -> None:
        print(f"note  {check}: {text}", flush=True)

    def fail(self, check: str, text: str) -> None:
        self.failed += 1
        print(f"FAIL  {check}: {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    report = _Report()
    try:
        config = SiteConfig.load(args.config)
    except SiteClientError as exc:
        report.fail("site config", f"{exc}")
        return 1
    report.ok("site config", f"{config.site!r} from {args.config}")
    for warning in config.warnings():
        report.note("site config", warning)
    facts = _registry(config, report)
    if facts is not None:
        _ledger(config, report)
    else:
        report.fail("pins", "skipped: no registry to check them against")
        report.fail("membership", "skipped: no registry to check it against")
    _docker_and_sparql(config, args.probe_image, report)
    return 0 if report.failed == 0 else 1


def _registry(config: SiteConfig, report: _Report) -> RegistryFacts | None:
    try:
        facts = probe_registry(config.registry)
    except SiteClientError as exc:
        report.fail("registry", str(exc))
        return None
    report.ok(
        "registry",
        f"{facts.url} is a PHT registry (ledger {facts.origin!r}, {facts.size} entries)",
    )
    return facts


def _ledger(config: SiteConfig, report: _Report) -> None:
    try:
        key = SigningKey.load(config.key_file)
        view = replay(config.registry, key, log_key=config.log_key, genesis=config.genesis)
    except UnauthenticatedError as exc:
        if exc.slug != "unknown-key":
            report.fail("pins", str(exc))
            return
        report.fail("pins", "not checked: the registry does not let this key read the ledger")
        report.fail(
            "membership",
            f"the registry does not know key_file's key ({exc}): send the admin the "
            "members-file line `siteclient init` printed, or point key_file at the site's key",
        )
        return
    except LedgerError as exc:
        report.fail(
            "pins",
            f"the ledger does not verify under the pinned log_key/genesis: {exc}; compare "
            "them with what the admin published (`pht init` printed log_key, genesis_hash)",
        )
        return
    except (ApiError, CryptoError) as exc:
        report.fail("pins", str(exc))
        return
    if config.trust_on_first_use:
        report.note(
            "pins",
            f"{' and '.join(config.trust_on_first_use)} null (trust on first use): the "
            f"registry serves log_key {view.log_key} (fingerprint "
            f"{key_fingerprint(view.log_key)}) and genesis {view.genesis}; pin them",
        )
    else:
        report.ok("pins", f"{view.size} entries verify under the pinned log_key and genesis")
    try:
        check_membership(
            view.members, view.keys, site=config.site, key_id=key.key_id, as_of=view.size
        )
    except SiteClientError as exc:
        report.fail("membership", str(exc))
        return
    report.ok("membership", f"{config.site!r} is a current site with key {key.key_id[:12]}…")


def _docker_and_sparql(config: SiteConfig, probe_image: str, report: _Report) -> None:
    runtime: DockerRuntime | None = None
    try:
        runtime = DockerRuntime.from_env(timeout=30)
        runtime.ping()
    except SiteClientError as exc:
        report.fail("docker", f"{exc} (is dockerd running, and may this user use its socket?)")
        if runtime is not None:
            runtime.close()
        runtime = None
    if runtime is not None:
        try:
            if config.network is not None:
                runtime.check_network(config.network)
            network = f"; network {config.network!r} exists" if config.network else ""
            report.ok("docker", f"the engine answers{network}")
        except SiteClientError as exc:
            report.fail(
                "docker",
                f"{exc}: `network` must name a user-defined network the SPARQL endpoint is on "
                "(e.g. docker network create --internal NAME)",
            )
    endpoint = config.sparql_endpoint
    if endpoint is None:
        report.ok("sparql (host)", "none configured: $SPARQL_ENDPOINT is unset in containers")
        report.ok("sparql (container)", "none configured")
    else:
        url = _ask_url(endpoint)
        problem = _from_host(url)
        if problem is None:
            report.ok("sparql (host)", f"{endpoint} answers ASK {{}}")
        elif config.network is not None:
            report.note(
                "sparql (host)",
                f"{endpoint}: {problem} (expected for an endpoint on an internal Docker "
                "network; the container check decides)",
            )
        else:
            report.fail("sparql (host)", f"{endpoint}: {problem}")
        _from_container(config, url, runtime, probe_image, report)
    if runtime is not None:
        runtime.close()


def _from_container(
    config: SiteConfig,
    url: str,
    runtime: DockerRuntime | None,
    probe_image: str,
    report: _Report,
) -> None:
    check = "sparql (container)"
    if config.network is None:
        report.fail(
            check,
            "containers get no network (network is null), so they cannot reach "
            f"{config.sparql_endpoint}: put the endpoint on a user-defined Docker network and "
            "name it in `network`, or set sparql_endpoint to null",
        )
        return
    if runtime is None:
        report.fail(check, "skipped: no Docker engine")
        return
    try:
        problem = runtime.reach(url, network=config.network, image=probe_image)
    except SiteClientError as exc:
        report.fail(check, f"{exc}; pass --probe-image with a local image that has wget")
        return
    if problem is None:
        report.ok(check, f"{config.sparql_endpoint} answers from network {config.network!r}")
    else:
        report.fail(
            check,
            f"{config.sparql_endpoint} from network {config.network!r}: {problem}; is the "
            "endpoint's container on that network, under that name?",
        )


def _ask_url(endpoint: str) -> str:
    joiner = "&" if urllib.parse.urlsplit(endpoint).query else "?"
    return f"{endpoint}{joiner}query={urllib.parse.quote('ASK {}')}"


def _from_host(url: str) -> str | None:
    try:
        resp = requests.get(
            url, headers={"Accept": "application/sparql-results+json"}, timeout=(3.05, 10)
        )
    except requests.RequestException as exc:
        return f"unreachable from this host ({type(exc).__name__})"
    if not 200 <= resp.status_code < 300:
        return f"answered HTTP {resp.status_code} to ASK {{}}"
    return None
