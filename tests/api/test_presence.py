"""Site presence: the pure table (:mod:`api.registry.presence`) under a fake clock, and
``POST /v1/heartbeats`` / ``GET /v1/sites`` of a real ``pht serve`` refusing forged heartbeats."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from api.client.registry import Client
from api.client.transport import RetryPolicy
from api.errors import ForbiddenError, HeartbeatRefused, InvalidRequestError, UnauthenticatedError
from api.registry.presence import Presence, PresenceState
from api.wire.heartbeat import Heartbeat
from api.wire.httpsig import RequestSigner
from crypto import SigningKey
from ledger.bodies import Member, MemberAction
from ledger.events import format_time
from tests.api.conftest import FakeClock
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World, key

T0 = 1_800_000_000.0
INTERVAL = 5.0


def beat(site: str = "site-a", *, at: float = T0, verified: int = 10) -> Heartbeat:
    return Heartbeat(
        site=site,
        version="0.1.0",
        verified_size=verified,
        running=0,
        docker=True,
        sparql=True,
        sent_at=format_time(datetime.fromtimestamp(at, UTC)),
    )


# (what happened: (seconds after T0, ledger size, verified size) heartbeats, then the time asked
# and the ledger size then) -> presence
PRESENCE_CASES = [
    pytest.param([], 0.0, 10, PresenceState.NEVER, id="never_beat"),
    pytest.param([(0, 10, 10)], 1.0, 10, PresenceState.ONLINE, id="caught_up"),
    pytest.param([(0, 10, 10)], 14.9, 10, PresenceState.ONLINE, id="two_missed_still_online"),
    pytest.param([(0, 10, 10)], 15.1, 10, PresenceState.OFFLINE, id="offline_after_3_missed"),
    pytest.param([(0, 10, 10)], 9.0, 12, PresenceState.ONLINE, id="behind_briefly_is_online"),
    pytest.param(
        [(0, 10, 10), (5, 12, 10), (10, 12, 10)],
        10.1,
        12,
        PresenceState.LAGGING,
        id="stuck_behind_for_two_intervals_lags",
    ),
    pytest.param(
        [(0, 20, 10), (5, 30, 20), (10, 40, 30)],
        10.1,
        40,
        PresenceState.ONLINE,
        id="behind_but_advancing_every_beat_is_online",
    ),
    pytest.param(
        [(0, 10, 10), (5, 12, 10), (10, 12, 10)],
        30.0,
        12,
        PresenceState.OFFLINE,
        id="offline_wins_over_lagging",
    ),
    pytest.param(
        [(0, 10, 8), (5, 10, 8), (10, 10, 10)],
        10.1,
        10,
        PresenceState.ONLINE,
        id="caught_up_again",
    ),
]


@pytest.mark.parametrize(("beats", "asked", "size", "expected"), PRESENCE_CASES)
def test_presence_rules(
    beats: list[tuple[float, int, int]], asked: float, size: int, expected: PresenceState
) -> None:
    clock = FakeClock(T0)
    table = Presence(clock=clock, interval_s=INTERVAL)
    for at, ledger_size, verified in beats:
        clock.now = T0 + at
        table.record(beat(at=T0 + at, verified=verified), ledger_size)
    clock.now = T0 + asked
    seen = table.status("site-a", size)
    assert seen.presence is expected
    if beats:
        assert seen.behind == max(0, size - beats[-1][2])
        assert seen.last_seen == format_time(datetime.fromtimestamp(T0 + beats[-1][0], UTC))
    else:
        assert seen.last_seen is None and seen.behind is None


@pytest.mark.parametrize(
    ("second_sent_at", "slug"),
    [
        pytest.param(T0, "heartbeat-stale", id="test_refuses_replayed_heartbeat"),
        pytest.param(T0 - 1, "heartbeat-stale", id="test_refuses_older_sent_at"),
        pytest.param(T0 + 31, "heartbeat-from-the-future", id="test_refuses_far_future_sent_at"),
    ],
)
def test_presence_refuses(second_sent_at: float, slug: str) -> None:
    table = Presence(clock=FakeClock(T0), interval_s=INTERVAL)
    table.record(beat(at=T0), 10)
    with pytest.raises(HeartbeatRefused) as refused:
        table.record(beat(at=second_sent_at), 10)
    assert refused.value.slug == slug
    assert table.status("site-a", 10).heartbeat == beat(at=T0)  # the stored one is kept


# ---- a real registry


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[RegistryProcess]:
    data = init_registry(tmp_path_factory.mktemp("presence"), world)
    process = RegistryProcess(data)
    process.start()
    time.sleep(1.0)  # requests signed in the registry's first second are refused by design
    revoke = Member(
        action=MemberAction.REVOKE,
        name="site-c",
        role=world.roles["site-c"],
        public_key=world.keys["site-c"].public.b64(),
    )
    with Client(process.url, world.keys["admin"]) as admin:
        admin.post_event(world.sign("admin", revoke))
    yield process
    process.stop()


def client(registry: RegistryProcess, signer: SigningKey) -> Client:
    return Client(registry.url, signer, retry=RetryPolicy(attempts=1))


def now_beat(site: str, *, ahead: float = 0.0, verified: int = 1) -> Heartbeat:
    return beat(site, at=time.time() + ahead, verified=verified)


def test_heartbeat_shows_the_site_online_and_is_not_in_the_ledger(
    registry: RegistryProcess, world: World
) -> None:
    with client(registry, world.keys["site-a"]) as site:
        size = site.health()
        site.heartbeat(now_beat("site-a", verified=size))
        assert site.health() == size  # never ledger history
        rows = {row.site: row for row in site.sites().sites}
    assert set(rows) == {"site-a", "site-b"}  # current sites only: site-c was revoked
    row = rows["site-a"]
    assert (row.presence, row.behind, row.verified_size, row.docker) == ("online", 0, size, True)
    assert rows["site-b"].presence == "never" and rows["site-b"].last_seen is None


def test_refuses_heartbeat_naming_another_site(registry: RegistryProcess, world: World) -> None:
    with client(registry, world.keys["site-b"]) as site_b, pytest.raises(ForbiddenError) as no:
        site_b.heartbeat(now_beat("site-a"))
    assert no.value.slug == "forbidden" and "signed by 'site-b'" in no.value.detail


def test_refuses_heartbeat_from_a_researcher(registry: RegistryProcess, world: World) -> None:
    with client(registry, world.keys["alice"]) as alice, pytest.raises(ForbiddenError):
        alice.heartbeat(now_beat("alice"))


@pytest.mark.parametrize("who", ["stranger", "site-c"], ids=["non_member_key", "revoked_site"])
def test_refuses_heartbeat_without_a_current_members_key(
    registry: RegistryProcess, world: World, who: str
) -> None:
    signer = world.keys.get(who) or key(who)
    with client(registry, signer) as outsider, pytest.raises(UnauthenticatedError) as no:
        outsider.heartbeat(now_beat(who))
    assert no.value.slug == "unknown-key"


def test_refuses_replayed_heartbeat(registry: RegistryProcess, world: World) -> None:
    heartbeat = now_beat("site-b")
    with client(registry, world.keys["site-b"]) as site_b:
        site_b.heartbeat(heartbeat)
        with pytest.raises(InvalidRequestError) as again:  # signed afresh, same heartbeat
            site_b.heartbeat(heartbeat)
        assert again.value.slug == "heartbeat-stale" and again.value.status == 409
        older = replace(heartbeat, sent_at=format_time(datetime.now(UTC) - timedelta(minutes=1)))
        with pytest.raises(InvalidRequestError) as old:
            site_b.heartbeat(older)
        assert old.value.slug == "heartbeat-stale"


def test_refuses_the_same_signed_request_sent_twice(
    registry: RegistryProcess, world: World
) -> None:
    body = now_beat("site-b").to_json()
    request = requests.Request(
        "POST",
        f"{registry.url}/v1/heartbeats",
        data=body,
        headers={"Content-Type": "application/json"},
    ).prepare()
    RequestSigner(world.keys["site-b"]).sign(
        request, body=body, created=int(time.time()), nonce=secrets.token_hex(16)
    )
    with requests.Session() as session:
        first = session.send(request, timeout=10)
        second = session.send(request, timeout=10)
    assert first.status_code == 204
    assert second.status_code == 401
    assert second.json()["type"].endswith("/request-replayed")


def test_refuses_heartbeat_from_the_future(registry: RegistryProcess, world: World) -> None:
    with client(registry, world.keys["site-a"]) as site, pytest.raises(InvalidRequestError) as no:
        site.heartbeat(now_beat("site-a", ahead=3600))
    assert no.value.slug == "heartbeat-from-the-future" and no.value.status == 422


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"site":"site-a"}',
        b'{"site":"site-a","version":"1","verified_size":-1,"running":0,"docker":true,'
        b'"sparql":true,"sent_at":"2026-01-01T00:00:00Z"}',
        b'{"site":"site-a","version":"1","verified_size":1,"running":0,"docker":1,'
        b'"sparql":true,"sent_at":"2026-01-01T00:00:00Z"}',
        b'{"site":"site-a","version":"1","verified_size":1,"running":0,"docker":true,'
        b'"sparql":true,"sent_at":"yesterday"}',
        b'{"site":"site-a","version":"1","verified_size":1,"running":0,"docker":true,'
        b'"sparql":true,"sent_at":"2026-01-01T00:00:00Z","extra":1}',
    ],
    ids=["not_json", "empty", "missing", "negative", "not_bool", "bad_time", "unknown_field"],
)
def test_refuses_malformed_heartbeat(registry: RegistryProcess, world: World, body: bytes) -> None:
    with client(registry, world.keys["site-a"]) as site, pytest.raises(InvalidRequestError) as no:
        site._http.request("POST", "/v1/heartbeats", body=body, content_type="application/json")
    assert no.value.slug == "malformed-heartbeat"


def test_refuses_oversized_heartbeat(registry: RegistryProcess, world: World) -> None:
    big = b" " * 4096
    with client(registry, world.keys["site-a"]) as site, pytest.raises(InvalidRequestError) as no:
        site._http.request("POST", "/v1/heartbeats", body=big, content_type="application/json")
    assert no.value.slug == "body-too-large"
