"""``siteclient``: a hospital's client of the PHT registry.

    siteclient init --dir DIR --site NAME ...     write a validated site config (and keys)
    siteclient check-config --config config.json  reach the registry, Docker, the SPARQL endpoint
    siteclient follow --config config.json        follow the ledger and run what is allowed
    siteclient check-image REF --config config.json   would this image (and REF@sha256:...) run
                                                  here, and why (the allowlist, and the review
                                                  state of a digest in the site's verified view)
    siteclient status --config config.json        cursor, trusted checkpoint, tasks in flight
    siteclient serve-files --config config.json   the FileService: receive files from members

Errors end here as one line, ``siteclient: error: <reason>``, and a non-zero exit code. A fork
or rewrite of the registry's history stops ``follow`` with exit code 3 (evidence is kept); a
revoked site stops with exit code 5 (:mod:`siteclient.helptext` has the whole table).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from api.client.registry import Client
from api.errors import ApiError
from crypto import CryptoError, SigningKey
from crypto.age import load_identity
from ledger.errors import LedgerError
from ledger.reference import ImageRef
from ledger.trust import TrustedLog
from siteclient import helptext
from siteclient.config import SiteConfig
from siteclient.configreload import Reloader
from siteclient.errors import ForkDetectedError, RevokedError, SiteClientError, StateError
from siteclient.fileservice.serve import serve_files
from siteclient.follow.follower import Follower
from siteclient.follow.membership import guard_for
from siteclient.follow.presence import Heartbeats
from siteclient.follow.state import TrustStore
from siteclient.follow.witness import Witness
from siteclient.policy.pinned import pinned_verdict
from siteclient.run import planner
from siteclient.run.agent import RESULT_JOURNAL, RUNNING_MARK, Agent
from siteclient.run.execute import TaskExecutor
from siteclient.run.lifecycle import Lifecycle
from siteclient.runtime.docker import DockerRuntime
from siteclient.setup import checkconfig, init

log = logging.getLogger("siteclient")

EXIT_FORK = 3
EXIT_REVOKED = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siteclient",
        description="Follow a PHT registry and run allowed analyses here.",
        epilog=helptext.MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    init.add_parser(commands)
    checkconfig.add_parser(commands)

    follow = commands.add_parser(
        "follow",
        help="follow the ledger and run what is allowed",
        epilog=helptext.FOLLOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    follow.add_argument("--config", required=True, help="the site config (DIR/config.json)")
    follow.add_argument(
        "--once", action="store_true", help="catch up, run what is pending, then exit"
    )
    follow.add_argument("--heartbeat-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    follow.set_defaults(run=_follow)

    check = commands.add_parser(
        "check-image",
        help="say whether an image (and its pinned form) may run here, and why",
        epilog=helptext.CHECK_IMAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("image", help="an image reference, e.g. myconsortium/avg:1.2")
    check.add_argument("--config", required=True, help="the site config (DIR/config.json)")
    check.set_defaults(run=_check_image)

    status = commands.add_parser("status", help="cursor, trusted checkpoint, tasks in flight")
    status.add_argument("--config", required=True)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)

    serve = commands.add_parser("serve-files", help="receive files from members (FileService)")
    serve.add_argument("--config", required=True)
    serve.set_defaults(run=_serve_files)
    return parser


def _serve_files(args: argparse.Namespace) -> int:
    def ready(url: str) -> None:
        print(f"listening on {url}", flush=True)

    return serve_files(SiteConfig.load(args.config), on_ready=ready)


def _follow(args: argparse.Namespace) -> int:
    config = SiteConfig.load(args.config)
    for warning in config.warnings():
        log.warning("config: %s", warning)
    key = SigningKey.load(config.key_file)
    store = TrustStore(config.state_dir, exclusive=True)
    client = Client(config.registry, key, timeout=10.0)
    try:
        return _run_agent(args, config, key, client, store)
    finally:
        client.close()
        store.close()


def _heartbeats(
    args: argparse.Namespace,
    config: SiteConfig,
    *,
    key: SigningKey,
    follower: Follower,
    agent: Agent,
    runtime: DockerRuntime,
) -> Heartbeats:
    """The site's presence at the registry (a heartbeat every few seconds; none with --once)."""
    beats = Heartbeats.for_site(
        site=config.site,
        registry=config.registry,
        key=key,
        sparql_endpoint=config.sparql_endpoint,
        verified_size=lambda: follower.size,
        running=lambda: agent.running,
        ping_docker=runtime.ping,
        interval=args.heartbeat_interval,
    )
    return beats if args.once else beats.start()


def _run_agent(
    args: argparse.Namespace,
    config: SiteConfig,
    key: SigningKey,
    client: Client,
    store: TrustStore,
) -> int:
    witness = None
    if config.witness_key_file is not None:  # the site cosigns what it verified (DESIGN 12)
        witness_key = SigningKey.load(config.witness_key_file)
        witness = Witness(client, witness_key, name=config.site, store=store)
    follower = Follower(
        client, store, log_key=config.log_key, genesis=config.genesis, witness=witness
    )
    runtime = DockerRuntime.from_env()
    runtime.ping()
    if config.network is not None:
        runtime.check_network(config.network)
    stale = runtime.remove_stale(config.site)
    if stale:
        log.warning("removed %d container(s) left by an earlier run of this site", len(stale))
    identity = load_identity(config.identity_file) if config.identity_file else None
    executor = TaskExecutor(
        config,
        client=client,
        runtime=runtime,
        allowlist=config.allowlist(),
        key=key,
        identity=identity,
        view=lambda: follower.view,
    )
    agent = Agent(
        site=config.site,
        key=key,
        client=client,
        follower=follower,
        execute=executor,
        work_dir=config.work_dir,
        parallelism=config.parallelism,
        guard=guard_for(config.site, key.key_id),
    )
    lifecycle = Lifecycle(
        agent=agent,
        follower=follower,
        site=config.site,
        key_id=key.key_id,
        registry=config.registry,
        wait=config.poll_wait_s,
        store=store,
    )
    beats = _heartbeats(args, config, key=key, follower=follower, agent=agent, runtime=runtime)
    stop = threading.Event()
    reloader = Reloader(config, Path(args.config), executor.reload)

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping; running containers are killed and rerun on restart", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, reloader.request)
    log.info(
        "site %r following %s from entry %d (allowlist: %s; review %s)",
        config.site,
        config.registry,
        follower.size,
        ", ".join(config.allowed_images) or "empty: nothing will run",
        "required" if config.require_review else "not required",
    )
    try:
        if args.once:
            lifecycle.once()
        else:
            lifecycle.serve(stop, on_tick=reloader.poll)
    finally:
        beats.stop()
        agent.close(cancel=True)
        runtime.close()
    return 0


def _check_image(args: argparse.Namespace) -> int:
    """The allowlist's verdict on the reference and on its pinned form (what ``--pin-digest``
    posts, :mod:`siteclient.policy.pinned`), then how the image stands in review as of the
    site's last verified view; refused (exit 1) when any of them refuses where it applies."""
    config = SiteConfig.load(args.config)
    allowlist = config.allowlist()
    for warning in allowlist.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    decision = allowlist.decide(args.image, require_digest=config.require_digest)
    verdict = "allowed" if decision.allowed else "refused"
    print(f"{verdict}: {decision.reason}")
    pinned = pinned_verdict(allowlist, decision, require_digest=config.require_digest)
    if pinned is not None:
        print("\n".join(pinned.lines))
    allowed = decision.allowed or (pinned is not None and config.require_digest)
    allowed = allowed and (pinned is None or pinned.allowed)
    approved = _print_review(config, decision.ref)
    return 0 if allowed and (approved or not config.require_review) else 1


def _print_review(config: SiteConfig, ref: ImageRef | None) -> bool:
    """Print the review state of ``ref``'s digest; whether it is approved now."""
    required = "required here" if config.require_review else "not required here"
    if ref is None:
        return False
    if ref.digest is None:
        if config.require_review:
            print(f"review ({required}): not pinned by digest, so it never passes review")
        return False
    try:
        view = TrustedLog(TrustStore(config.state_dir).load()).view
    except LedgerError as exc:
        raise StateError(f"the site's saved state does not verify: {exc}") from exc
    if view is None:
        print(f"review ({required}): unknown: this site has not verified the ledger yet")
        return False
    standing = view.standing(ref.digest)
    print(f"review ({required}, as of entry {view.size}): {standing.describe()}")
    record = view.reviews.get(ref.digest)
    if record is not None:
        print(
            f"  submission {record.submission[:16]} at entry {record.index} by "
            f"{record.submitter} ({record.org}): {record.name} {record.version}"
        )
        for verdict in record.approvals.values():
            print(f"  approved at entry {verdict.entry} by {verdict.reviewer} ({verdict.org})")
    return standing.approved


def _status(args: argparse.Namespace) -> int:
    config = SiteConfig.load(args.config)
    try:
        view = TrustedLog(TrustStore(config.state_dir).load()).view
    except LedgerError as exc:
        raise StateError(f"the site's saved state does not verify: {exc}") from exc
    checkpoint = view.checkpoint if view is not None else None
    in_flight = []
    if config.work_dir.exists():
        for folder in sorted(config.work_dir.iterdir()):
            if (folder / RESULT_JOURNAL).exists():
                in_flight.append({"task": folder.name, "state": "result not yet in the ledger"})
            elif (folder / RUNNING_MARK).exists():
                in_flight.append({"task": folder.name, "state": "running (or interrupted)"})
    pending = [item.task for item in planner.resume(view, site=config.site)] if view else []
    report = {
        "site": config.site,
        "cursor": view.size if view else 0,
        "checkpoint": None
        if checkpoint is None
        else {"origin": checkpoint.origin, "size": checkpoint.size, "root": checkpoint.root.hex()},
        "genesis": view.genesis if view else None,
        "pending_tasks": pending,
        "in_flight": in_flight,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"site:        {config.site}")
    print(f"cursor:      {view.size if view else 0} entries verified")
    if checkpoint is not None:
        print(
            f"checkpoint:  {checkpoint.origin} size {checkpoint.size} root {checkpoint.root.hex()}"
        )
    print(f"genesis:     {(view.genesis if view else None) or '(not yet pinned)'}")
    print(f"pending:     {len(pending)} task(s) addressed here without a result")
    for item in in_flight:
        print(f"  {item['task'][:16]}  {item['state']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except ForkDetectedError as exc:
        print(f"siteclient: FORK DETECTED, stopping: {exc}", file=sys.stderr)
        return EXIT_FORK
    except RevokedError as exc:
        print(f"siteclient: REVOKED, stopping: {exc}", file=sys.stderr)
        return EXIT_REVOKED
    except (SiteClientError, ApiError, LedgerError, CryptoError) as exc:
        print(f"siteclient: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"siteclient: error: {exc.strerror or exc} ({exc.filename})", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
