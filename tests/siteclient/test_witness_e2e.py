"""Witnesses end to end over HTTP (DESIGN 12): a real ``pht serve``, three sites' followers with
their witnesses (real clients, signed requests), a policy of 2 of 3 set with ``pht witness``."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

from api.client.registry import Client
from cli.main import main as pht
from crypto import SigningKey
from ledger.bodies import Task
from ledger.events import SignedEvent, new_event
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from siteclient.follow.witness import Witness
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

SITES = ("site-a", "site-b", "site-c")


def test_three_witnessing_sites_and_a_quorum_of_two_over_http(tmp_path: Path) -> None:
    world = World(witnesses=True)
    with contextlib.redirect_stdout(io.StringIO()):
        data = init_registry(tmp_path, world)
    registry = RegistryProcess(data)
    registry.start()
    clients: list[Client] = []
    try:
        time.sleep(1.1)  # the registry refuses requests signed in its first second
        keys = tmp_path / "keys"
        with Client(registry.url, world.keys["audrey"]) as reader:
            log_key = reader.entry(0).event.event.body.log_key  # type: ignore[union-attr]
        policy = tmp_path / "policy.txt"
        policy.write_text(world.witness_policy(SITES, 2, log_key=log_key))
        base = ["-q", "witness", "policy", str(policy), "--registry", registry.url]
        assert pht([*base, "--key", str(keys / "admin.key")]) == 0

        followers = {}
        for site in SITES:
            client = Client(registry.url, world.keys[site])
            clients.append(client)
            store = TrustStore(tmp_path / site / "state")
            witness_key = SigningKey.load(keys / f"{site}.witness.key")
            witness = Witness(client, witness_key, name=site, store=store)
            followers[site] = Follower(
                client, store, log_key=log_key, genesis=None, witness=witness
            )
        alice = world.keys["alice"]
        task = new_event(
            Task(image="myconsortium/avg:1", sites=SITES, config={}),
            ledger=world.origin,
            author=alice.key_id,
        )
        with Client(registry.url, alice) as researcher:
            researcher.post_event(SignedEvent.sign(task, alice))
        # Each follower waits for a second witness; running them in turn lets each cosign.
        views = {}
        for _ in range(3):
            for site, follower in followers.items():
                with contextlib.suppress(Exception):
                    views[site] = follower.sync(0)
        assert {site: v.size for site, v in views.items()} == dict.fromkeys(SITES, 3)
        for view in views.values():
            assert task.id in view.tasks and len(view.cosigners) >= 2
        with Client(registry.url) as public:
            note = public.cosigned_checkpoint()
        assert note.count("\u2014 ".encode()) == 4  # the log and three witnesses
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = pht(
                [
                    "audit",
                    "--registry",
                    registry.url,
                    "--key",
                    str(keys / "audrey.key"),
                    "--state",
                    str(tmp_path / "audit"),
                ]
            )
        assert code == 0, out.getvalue()
        assert "checkpoint of size 3: cosigned by site-a, site-b, site-c" in out.getvalue()
    finally:
        for client in clients:
            client.close()
        registry.stop()
