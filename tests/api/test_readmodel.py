"""The read endpoints of a real ``pht serve``: ``GET /v1/tasks`` (filters, paging, newest first,
indexes a reader can prove) and ``GET /v1/members`` (current and revoked, the latest entry)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.client.registry import Client
from api.client.transport import SignedTransport
from api.errors import InvalidRequestError, UnauthenticatedError
from crypto.age import AgeIdentity
from ledger.bodies import (
    Cancel,
    EventId,
    Member,
    MemberAction,
    Result,
    ResultState,
    Status,
    StatusState,
    Task,
)
from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.merkle import verify_inclusion
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World, key


@dataclass
class Scene:
    registry: RegistryProcess
    world: World
    tasks: dict[str, str]  # name -> event id
    indexes: dict[str, int]  # name -> entry index


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    world = World()
    registry = RegistryProcess(init_registry(tmp_path_factory.mktemp("readmodel"), world))
    registry.start()
    tasks: dict[str, str] = {}
    indexes: dict[str, int] = {}

    def post(author: str, body: Any, name: str | None = None) -> str:
        signed = world.sign(author, body)
        with Client(registry.url, world.keys[author]) as client:
            appended = client.post_event(signed)
        if name is not None:
            tasks[name], indexes[name] = signed.event.id, appended.index
        return signed.event.id

    def task(name: str, sites: tuple[str, ...], label: str | None, image: str) -> EventId:
        body = Task(image=image, sites=sites, config={"name": name}, label=label)
        return EventId(post("alice", body, name))

    one = task("one", ("site-a", "site-b"), "cohort", "myconsortium/avg:1")
    two = task("two", ("site-a",), None, "myconsortium/count:2")
    three = task("three", ("site-b",), "cohort", "myconsortium/avg:1")
    post("site-a", Status(task=one, state=StatusState.ACCEPTED), "one-accepted")
    post("site-a", Result(task=two, state=ResultState.REJECTED, reason="not allowed"), "two-rej")
    post("alice", Cancel(task=three, reason="typo in the config"), "three-cancel")
    identity = AgeIdentity.from_bytes(b"\x01" * 32)
    rekey = Member(
        action=MemberAction.REKEY,
        name="alice",
        role=world.roles["alice"],
        public_key=world.keys["alice"].public.b64(),
        encryption_key=identity.recipient.to_string(),
    )
    post("alice", rekey, "alice-rekey")
    revoke = Member(
        action=MemberAction.REVOKE,
        name="site-c",
        role=world.roles["site-c"],
        public_key=world.keys["site-c"].public.b64(),
    )
    post("admin", revoke, "site-c-revoked")
    yield Scene(registry=registry, world=world, tasks=tasks, indexes=indexes)
    registry.stop()


def get(scene: Scene, path: str, who: str = "alice", **params: Any) -> Any:
    transport = SignedTransport(scene.registry.url, scene.world.keys[who])
    try:
        return transport.request("GET", path, params=params or None).json()
    finally:
        transport.close()


def names(scene: Scene, listing: dict[str, Any]) -> list[str]:
    by_id = {event_id: name for name, event_id in scene.tasks.items()}
    return [by_id[line["task"]] for line in listing["tasks"]]


def test_lists_tasks_newest_first_with_states_reasons_and_cancel(scene: Scene) -> None:
    listing = get(scene, "/v1/tasks")
    assert names(scene, listing) == ["three", "two", "one"]
    three, two, one = listing["tasks"]
    assert one["image"] == "myconsortium/avg:1" and one["label"] == "cohort"
    assert one["author"] == "alice" and one["parent"] is None
    assert one["sites"] == {
        "site-a": {"state": "accepted", "index": scene.indexes["one-accepted"], "reason": None},
        "site-b": {"state": "pending", "index": None, "reason": None},
    }
    assert two["sites"]["site-a"] == {
        "state": "rejected",
        "index": scene.indexes["two-rej"],
        "reason": "not allowed",
    }
    assert three["cancelled"] == {
        "index": scene.indexes["three-cancel"],
        "reason": "typo in the config",
    }
    assert one["cancelled"] is None and listing["next"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"label": "cohort"}, ["three", "one"]),
        ({"site": "site-a"}, ["two", "one"]),
        ({"state": "rejected"}, ["two"]),
        ({"state": "cancelled"}, ["three"]),
        ({"state": "pending"}, ["three", "one"]),
        ({"state": "pending", "site": "site-a"}, []),
        ({"state": "accepted", "site": "site-a"}, ["one"]),
        ({"state": "finished"}, ["two"]),
        ({"author": "alice", "label": "cohort", "site": "site-b"}, ["three", "one"]),
        ({"author": "admin"}, []),
        ({"since": "2000-01-01T00:00:00Z"}, ["three", "two", "one"]),
        ({"since": "2999-01-01T00:00:00Z"}, []),
    ],
)
def test_task_filters(scene: Scene, params: dict[str, str], expected: list[str]) -> None:
    assert names(scene, get(scene, "/v1/tasks", **params)) == expected


def test_pages_by_after_until_next_is_null(scene: Scene) -> None:
    seen: list[str] = []
    after = None
    for _ in range(5):
        params = {"limit": 1} if after is None else {"limit": 1, "after": after}
        page = get(scene, "/v1/tasks", **params)
        seen += names(scene, page)
        after = page["next"]
        if after is None:
            break
    assert seen == ["three", "two", "one"]


def test_every_listed_index_is_provably_included(scene: Scene) -> None:
    listing = get(scene, "/v1/tasks")
    members = get(scene, "/v1/members")
    indexes = {line["index"] for line in listing["tasks"]}
    for line in listing["tasks"]:
        indexes |= {s["index"] for s in line["sites"].values() if s["index"] is not None}
        if line["cancelled"]:
            indexes.add(line["cancelled"]["index"])
    indexes |= {m["index"] for m in members["members"]}
    with Client(scene.registry.url, scene.world.keys["audrey"]) as client:
        genesis = client.entry(0).event.event.body
        verifier = parse_verifier_key(genesis.log_key)  # type: ignore[union-attr]
        checkpoint = verify_checkpoint(client.checkpoint(), verifier, origin=scene.world.origin)
        assert checkpoint.size >= listing["size"]
        for index in sorted(indexes):
            entry = client.entry(index)
            proof = client.inclusion_proof(index, checkpoint.size)
            verify_inclusion(entry.leaf_hash, index, checkpoint.size, proof, checkpoint.root)
    assert scene.indexes["one"] in indexes


def test_lists_members_with_rekey_and_revocation(scene: Scene) -> None:
    listing = get(scene, "/v1/members", who="audrey")
    by_name = {m["name"]: m for m in listing["members"]}
    assert set(by_name) == set(scene.world.keys)
    alice = by_name["alice"]
    assert alice["index"] == scene.indexes["alice-rekey"]
    assert alice["encryption_key"].startswith("age1") and alice["revoked"] is None
    assert alice["key_id"] == scene.world.keys["alice"].key_id
    assert alice["public_key"] == scene.world.keys["alice"].public.b64()
    site_c = by_name["site-c"]
    assert site_c["revoked"] == site_c["index"] == scene.indexes["site-c-revoked"]
    assert by_name["site-a"] == {
        "name": "site-a",
        "role": "site",
        "key_id": scene.world.keys["site-a"].key_id,
        "public_key": scene.world.keys["site-a"].public.b64(),
        "encryption_key": None,
        "organization": None,
        "file_service": None,
        "index": 0,
        "revoked": None,
    }
    assert listing["size"] >= scene.indexes["site-c-revoked"] + 1


@pytest.mark.parametrize(
    ("params", "slug"),
    [
        ({"state": "exploded"}, "invalid-parameter"),
        ({"since": "yesterday"}, "invalid-parameter"),
        ({"limit": 0}, "invalid-parameter"),
        ({"limit": 100000}, "invalid-parameter"),
        ({"after": "-1"}, "invalid-parameter"),
        ({"author": "Not A Name"}, "invalid-parameter"),
        ({"sort": "oldest"}, "invalid-parameter"),
    ],
)
def test_refuses_bad_parameters(scene: Scene, params: dict[str, Any], slug: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        get(scene, "/v1/tasks", **params)
    assert refused.value.slug == slug


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/members", "/v1/sites"])
def test_listings_need_a_members_signature(scene: Scene, path: str) -> None:
    stranger = SignedTransport(scene.registry.url, key("stranger"))
    with pytest.raises(UnauthenticatedError):
        stranger.request("GET", path)
    stranger.close()
