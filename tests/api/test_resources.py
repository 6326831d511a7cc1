"""The registry's resources through falcon.testing, over a real ledger in a temp directory."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any

import falcon
import pytest
from falcon import testing

from api.registry.app import create_app
from api.wire.httpsig import RequestSigner
from ledger.bodies import Member, MemberAction, Role, Status, StatusState, Task
from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.events import Entry, SignedEvent
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.store.ledger import Ledger
from tests.api.conftest import (
    Caller,
    FakeClock,
    Message,
    make_app,
    problem_slug,
    signed_headers,
    task,
)
from tests.ledger.factory import World

BOTH_STORES = True  # every test over a ledger runs on the data directory and on PostgreSQL

JSON = "application/json"
OCTETS = "application/octet-stream"


def post(call: Caller, world: World, signed: SignedEvent, *, by: str = "alice") -> testing.Result:
    return call(
        "POST", "/v1/events", key=world.keys[by], body=signed.canonical(), content_type=JSON
    )


# ---- public resources


def test_health_and_openapi_need_no_signature(call: Caller) -> None:
    health = call("GET", "/healthz")
    assert health.status_code == 200 and health.json == {
        "status": "ok",
        "size": 1,
        "integrator": True,
    }
    ready = call("GET", "/readyz")  # the embedded store: ready whenever the process is up
    assert ready.status_code == 200 and ready.json == {
        "status": "ready",
        "size": 1,
        "integrator": True,
    }
    spec = call("GET", "/openapi.json")
    assert spec.status_code == 200
    assert spec.json["openapi"] == "3.1.0"
    assert "/v1/events" in spec.json["paths"]


def test_checkpoint_is_public_and_verifies(call: Caller, ledger: Ledger, world: World) -> None:
    result = call("GET", "/v1/checkpoint")
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/plain; charset=utf-8"
    cp = verify_checkpoint(result.content, parse_verifier_key(ledger.log_key), origin=world.origin)
    assert cp.size == 1


# ---- posting events


def test_post_appends_then_returns_same_entry_for_duplicate(call: Caller, world: World) -> None:
    signed = task(world)
    first = post(call, world, signed)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/v1/events/1"
    assert first.json["index"] == 1 and first.json["event_id"] == signed.event.id
    again = post(call, world, signed)
    assert again.status_code == 200
    assert again.json == first.json


def test_any_member_may_relay_an_event_the_rules_allow(call: Caller, world: World) -> None:
    result = post(call, world, task(world), by="site-b")
    assert result.status_code == 201


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        (b"{not json", "malformed-event"),
        (b'{"event": {}, "event": {}, "sig": ""}', "malformed-event"),
        (b"[]", "malformed-event"),
        (b'{"event": {"v": 1}, "sig": "AAAA"}', "malformed-event"),
        (b"\xff\xfe", "malformed-event"),
        (b"NaN", "malformed-event"),
        (b'{"event": ' + b"9" * 5000 + b', "sig": ""}', "malformed-event"),
    ],
    ids=[
        "broken-json",
        "duplicate-key",
        "not-an-object",
        "missing-fields",
        "not-utf8",
        "nan",
        "integer-of-5000-digits",
    ],
)
def test_malformed_event_is_400(call: Caller, world: World, body: bytes, slug: str) -> None:
    result = call("POST", "/v1/events", key=world.keys["alice"], body=body, content_type=JSON)
    assert result.status_code == 400
    assert problem_slug(result) == slug


def test_unknown_event_field_is_400_naming_it(call: Caller, world: World) -> None:
    value = task(world).to_dict()
    value["event"]["extra"] = 1
    result = call(
        "POST",
        "/v1/events",
        key=world.keys["alice"],
        body=json.dumps(value).encode(),
        content_type=JSON,
    )
    assert result.status_code == 400 and problem_slug(result) == "malformed-event"
    assert "extra" in result.json["detail"]


def test_event_with_bad_signature_is_422(call: Caller, world: World) -> None:
    signed = task(world)
    forged = SignedEvent(event=signed.event, sig=bytes(64))
    result = post(call, world, forged)
    assert result.status_code == 422 and problem_slug(result) == "bad-signature"


def test_stored_event_reposted_with_a_bad_signature_is_422(call: Caller, world: World) -> None:
    signed = task(world)
    assert post(call, world, signed).status_code == 201
    flipped = bytearray(signed.sig)
    flipped[10] ^= 1
    forged = SignedEvent(event=signed.event, sig=bytes(flipped))
    result = post(call, world, forged)
    assert result.status_code == 422 and problem_slug(result) == "bad-signature"
    again = post(call, world, signed)  # the genuine one still answers with its entry
    assert again.status_code == 200 and again.json["index"] == 1


def test_event_the_rules_refuse_is_403_rule_violation(call: Caller, world: World) -> None:
    signed = world.sign("site-a", Task(image="x:1", sites=("site-a",), config={}))
    result = post(call, world, signed, by="site-a")
    assert result.status_code == 403 and problem_slug(result) == "rule-violation"
    assert "researcher" in result.json["detail"]


def test_event_for_another_ledger_is_refused(call: Caller, world: World) -> None:
    signed = world.sign("alice", Task(image="x:1", sites=("site-a",), config={}), ledger="other")
    result = post(call, world, signed)
    assert result.status_code == 403 and problem_slug(result) == "rule-violation"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_post_with_wrong_content_type_is_415(
    call: Caller, world: World, content_type: str | None
) -> None:
    result = call(
        "POST",
        "/v1/events",
        key=world.keys["alice"],
        body=task(world).canonical(),
        content_type=content_type,
    )
    assert result.status_code == 415 and problem_slug(result) == "unsupported-media-type"


def test_oversized_body_is_413_before_anything_is_read(call: Caller, world: World) -> None:
    body = b"[" + b"0," * 40_000 + b"0]"
    result = call("POST", "/v1/events", key=world.keys["alice"], body=body, content_type=JSON)
    assert result.status_code == 413 and problem_slug(result) == "body-too-large"
    unsigned = call("POST", "/v1/events", body=body, content_type=JSON)
    assert unsigned.status_code == 413


# ---- reading entries


def test_entries_page_holds_the_stored_canonical_bytes(
    call: Caller, world: World, ledger: Ledger
) -> None:
    for n in range(3):
        post(call, world, task(world, n))
    result = call("GET", "/v1/events", key=world.keys["audrey"], query="from=1&limit=2")
    assert result.status_code == 200
    assert result.json["next"] == 3 and result.json["size"] == 4
    assert result.content == (
        b'{"entries":['
        + ledger.entry_bytes(1)
        + b",\n"
        + ledger.entry_bytes(2)
        + b'],"next":3,"size":4}'
    )
    entries = [Entry.from_dict(e) for e in result.json["entries"]]
    assert [e.index for e in entries] == [1, 2]


def test_one_entry_and_missing_entries(call: Caller, world: World, ledger: Ledger) -> None:
    alice = world.keys["alice"]
    one = call("GET", "/v1/events/0", key=alice)
    assert one.status_code == 200 and one.content == ledger.entry_bytes(0)
    missing = call("GET", "/v1/events/5", key=alice)
    assert missing.status_code == 404 and problem_slug(missing) == "not-found"
    not_entries = ["/v1/events/-1", "/v1/events/abc", "/v1/events/1/", "/v1/nothing"]
    other_spellings_of_0 = ["/v1/events/00", "/v1/events/+0", "/v1/events/%EF%BC%90"]
    for path in [*not_entries, *other_spellings_of_0]:
        result = call("GET", path, key=alice)
        assert result.status_code == 404, path
        assert problem_slug(result) == "not-found"


@pytest.mark.parametrize(
    "query",
    [
        "from=-1",
        "limit=0",
        "limit=100000",
        "wait=31",
        "from=x",
        "form=3",
        "from=1&from=2",
        "limit=%2B1",
        "limit=01",
        "limit=1_0",
        "from=%D9%A3",
        "limit=%201",
    ],
    ids=[
        "negative",
        "zero-limit",
        "huge-limit",
        "long-wait",
        "not-int",
        "typo",
        "repeated",
        "plus-sign",
        "leading-zero",
        "underscore",
        "arabic-indic-digit",
        "space",
    ],
)
def test_bad_query_parameters_are_400(call: Caller, world: World, query: str) -> None:
    result = call("GET", "/v1/events", key=world.keys["alice"], query=query)
    assert result.status_code == 400
    assert problem_slug(result) == "invalid-parameter"


def test_long_poll_is_woken_by_an_append(call: Caller, world: World, ledger: Ledger) -> None:
    signed = task(world)
    poster = threading.Timer(0.3, lambda: ledger.append(signed))
    started = time.monotonic()
    poster.start()
    result = call("GET", "/v1/events", key=world.keys["site-a"], query="from=1&wait=10")
    elapsed = time.monotonic() - started
    poster.join()
    assert result.status_code == 200
    assert [e["index"] for e in result.json["entries"]] == [1]
    assert 0.25 < elapsed < 5


def test_long_poll_times_out_with_an_empty_page(call: Caller, world: World) -> None:
    started = time.monotonic()
    result = call("GET", "/v1/events", key=world.keys["site-a"], query="from=1&wait=1")
    assert result.status_code == 200 and result.json["entries"] == []
    assert 0.9 < time.monotonic() - started < 5


def test_without_free_slots_a_long_poll_answers_at_once(
    ledger: Ledger, clock: FakeClock, world: World
) -> None:
    caller = Caller(testing.TestClient(make_app(ledger, clock, long_poll_slots=0)), clock)
    started = time.monotonic()
    result = caller("GET", "/v1/events", key=world.keys["site-b"], query="from=1&wait=5")
    assert time.monotonic() - started < 2
    assert result.status_code == 200 and result.json["entries"] == []
    assert result.headers["retry-after"] == "1"


def test_long_polls_beyond_the_slots_answer_at_once(
    ledger: Ledger, clock: FakeClock, world: World
) -> None:
    app = make_app(ledger, clock, long_poll_slots=1)
    caller = Caller(testing.TestClient(app), clock)
    holder = threading.Thread(
        target=caller,
        args=("GET", "/v1/events"),
        kwargs={"key": world.keys["site-a"], "query": "from=1&wait=8"},
    )
    holder.start()
    time.sleep(1.0)  # the holder now occupies the only slot
    started = time.monotonic()
    result = caller("GET", "/v1/events", key=world.keys["site-b"], query="from=1&wait=8")
    assert time.monotonic() - started < 4
    assert result.status_code == 200 and result.json["entries"] == []
    assert result.headers["retry-after"] == "1"
    ledger.append(task(world))
    holder.join(timeout=5)
    assert not holder.is_alive()


def test_stop_ends_waiting_long_polls(ledger: Ledger, clock: FakeClock, world: World) -> None:
    stop = threading.Event()
    app = make_app(ledger, clock, stop=stop)
    caller = Caller(testing.TestClient(app), clock)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    result = caller("GET", "/v1/events", key=world.keys["site-a"], query="from=1&wait=20")
    assert result.status_code == 200 and time.monotonic() - started < 3


# ---- proofs


def test_proofs_verify_against_the_checkpoint(call: Caller, world: World, ledger: Ledger) -> None:
    for n in range(5):
        post(call, world, task(world, n))
    key = world.keys["site-a"]
    note = call("GET", "/v1/checkpoint").content
    cp = verify_checkpoint(note, parse_verifier_key(ledger.log_key), origin=world.origin)
    assert cp.size == 6
    inclusion = call("GET", "/v1/proofs/inclusion", key=key, query="index=3&size=6")
    assert inclusion.status_code == 200
    proof = [bytes.fromhex(h) for h in inclusion.json["proof"]]
    leaf = Entry.from_canonical(ledger.entry_bytes(3)).leaf_hash
    verify_inclusion(leaf, 3, 6, proof, cp.root)
    consistency = call("GET", "/v1/proofs/consistency", key=key, query="from=2&to=6")
    assert consistency.status_code == 200
    proof = [bytes.fromhex(h) for h in consistency.json["proof"]]
    verify_consistency(2, 6, ledger.root(2), cp.root, proof)


@pytest.mark.parametrize(
    ("path", "query", "slug"),
    [
        ("/v1/proofs/inclusion", "index=3&size=2", "invalid-proof-request"),
        ("/v1/proofs/inclusion", "index=0&size=99", "invalid-proof-request"),
        ("/v1/proofs/inclusion", "index=0", "invalid-parameter"),
        ("/v1/proofs/consistency", "from=2&to=1", "invalid-proof-request"),
        ("/v1/proofs/consistency", "from=0&to=99", "invalid-proof-request"),
        ("/v1/proofs/consistency", "to=1", "invalid-parameter"),
    ],
)
def test_impossible_proof_requests_are_400(
    call: Caller, world: World, path: str, query: str, slug: str
) -> None:
    result = call("GET", path, key=world.keys["site-a"], query=query)
    assert result.status_code == 400 and problem_slug(result) == slug


# ---- blobs


def test_blob_round_trip(call: Caller, world: World) -> None:
    data = b"outputs\x00" * 1000
    sha = hashlib.sha256(data).hexdigest()
    put = call("PUT", f"/v1/blobs/{sha}", key=world.keys["site-a"], body=data, content_type=OCTETS)
    assert put.status_code == 201 and put.json == {"sha256": sha, "size": len(data)}
    again = call(
        "PUT", f"/v1/blobs/{sha}", key=world.keys["site-b"], body=data, content_type=OCTETS
    )
    assert again.status_code == 200
    got = call("GET", f"/v1/blobs/{sha}", key=world.keys["audrey"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == OCTETS
    assert got.headers["content-digest"].startswith("sha-256=:")


def test_blob_under_another_name_is_refused(call: Caller, world: World) -> None:
    data = b"real bytes"
    other = hashlib.sha256(b"other").hexdigest()
    result = call(
        "PUT", f"/v1/blobs/{other}", key=world.keys["site-a"], body=data, content_type=OCTETS
    )
    assert result.status_code == 422 and problem_slug(result) == "blob-mismatch"
    missing = call("GET", f"/v1/blobs/{other}", key=world.keys["site-a"])
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("name", "status", "slug"),
    [("ABC", 400, "invalid-parameter"), ("0" * 63, 400, "invalid-parameter")],
)
def test_bad_blob_names(call: Caller, world: World, name: str, status: int, slug: str) -> None:
    result = call("GET", f"/v1/blobs/{name}", key=world.keys["site-a"])
    assert result.status_code == status and problem_slug(result) == slug


def test_blob_limits_and_content_type(call: Caller, world: World) -> None:
    big = b"x" * (1024 * 1024 + 1)
    sha = hashlib.sha256(big).hexdigest()
    result = call(
        "PUT", f"/v1/blobs/{sha}", key=world.keys["site-a"], body=big, content_type=OCTETS
    )
    assert result.status_code == 413 and problem_slug(result) == "body-too-large"
    small = b"{}"
    sha = hashlib.sha256(small).hexdigest()
    result = call(
        "PUT", f"/v1/blobs/{sha}", key=world.keys["site-a"], body=small, content_type=JSON
    )
    assert result.status_code == 415


def test_auditor_may_read_but_not_upload(call: Caller, world: World) -> None:
    data = b"audit"
    sha = hashlib.sha256(data).hexdigest()
    result = call(
        "PUT", f"/v1/blobs/{sha}", key=world.keys["audrey"], body=data, content_type=OCTETS
    )
    assert result.status_code == 403 and problem_slug(result) == "forbidden"
    assert call("GET", "/v1/events", key=world.keys["audrey"]).status_code == 200


# ---- tasks


def test_task_view_follows_the_sites(call: Caller, world: World, ledger: Ledger) -> None:
    signed = task(world)
    post(call, world, signed)
    result = call("GET", f"/v1/tasks/{signed.event.id}", key=world.keys["site-a"])
    assert result.status_code == 200
    assert result.json["task"]["index"] == 1
    assert result.json["sites"] == {
        "site-a": {"state": "pending", "index": None, "finished": False, "history": []}
    }
    assert result.json["cancelled"] is None
    for state in (StatusState.ACCEPTED, StatusState.STARTED):
        status = world.sign("site-a", Status(task=signed.event.id, state=state))
        assert post(call, world, status, by="site-a").status_code == 201
    result = call("GET", f"/v1/tasks/{signed.event.id}", key=world.keys["site-a"])
    assert result.json["sites"] == {
        "site-a": {"state": "started", "index": 3, "finished": False, "history": [2, 3]}
    }
    unknown = call("GET", f"/v1/tasks/{'0' * 64}", key=world.keys["site-a"])
    assert unknown.status_code == 404 and problem_slug(unknown) == "not-found"
    bad = call("GET", "/v1/tasks/xyz", key=world.keys["site-a"])
    assert bad.status_code == 400 and problem_slug(bad) == "invalid-parameter"


# ---- errors never leak


class _Boom:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("secret /srv/pht/data/log.key")


def test_unexpected_errors_are_an_opaque_500(
    ledger: Ledger, clock: FakeClock, world: World
) -> None:
    app = make_app(ledger, clock)
    app.add_route("/v1/boom", _Boom())
    result = Caller(testing.TestClient(app), clock)("GET", "/v1/boom", key=world.keys["alice"])
    assert result.status_code == 500 and problem_slug(result) == "internal-error"
    assert "secret" not in result.text and "Traceback" not in result.text
    assert "detail" not in result.json


def test_method_not_allowed_names_the_allowed_ones(call: Caller, world: World) -> None:
    result = call("DELETE", "/v1/events", key=world.keys["alice"])
    assert result.status_code == 405 and problem_slug(result) == "method-not-allowed"
    assert "POST" in result.headers["allow"]


def test_create_app_is_independent_per_ledger(tmp_path: Any, world: World) -> None:
    """Two apps over two ledgers share nothing (no module-level state)."""
    apps = []
    for name in ("one", "two"):
        opened = Ledger.create(
            tmp_path / name,
            genesis=world.sign("admin", world.genesis_body()),
            log_key=world.log_key,
        )
        apps.append((opened, create_app(opened)))
    apps[0][0].append(task(world))
    sizes = [testing.TestClient(app).simulate_get("/healthz").json["size"] for _, app in apps]
    assert sizes == [2, 1]
    for opened, _ in apps:
        opened.close()


def test_revoked_members_events_are_refused_by_the_rules(
    call: Caller, world: World, ledger: Ledger
) -> None:
    revoke = world.sign(
        "admin",
        Member(
            action=MemberAction.REVOKE,
            name="site-c",
            role=Role.SITE,
            public_key=world.keys["site-c"].public.b64(),
        ),
    )
    assert post(call, world, revoke, by="admin").status_code == 201
    late = world.sign("site-c", Task(image="x:1", sites=("site-a",), config={}))
    result = post(call, world, late, by="alice")
    assert result.status_code == 403 and problem_slug(result) == "rule-violation"


def test_public_url_pins_the_signed_origin(ledger: Ledger, clock: FakeClock, world: World) -> None:
    """Behind a proxy the registry verifies against its public URL, not the Host it receives."""
    app = make_app(ledger, clock, public_url="https://registry.example/")
    client = testing.TestClient(app)
    alice = world.keys["alice"]
    plain_http = signed_headers(
        alice, "GET", "/v1/events/0", created=int(clock()), host="registry.example"
    )
    wrong_scheme = client.simulate_get("/v1/events/0", headers=plain_http)
    assert wrong_scheme.status_code == 401  # signed for http://, the public URL is https://
    message = Message("GET", "https://registry.example/v1/events/0")
    RequestSigner(alice).sign(message, body=None, created=int(clock()), nonce="a" * 32)
    assert client.simulate_get("/v1/events/0", headers=message.headers).status_code == 200
    as_received = signed_headers(alice, "GET", "/v1/events/0", created=int(clock()))
    assert client.simulate_get("/v1/events/0", headers=as_received).status_code == 401


@pytest.mark.parametrize("query", ["from=2", "from=5&wait=10", f"from={2**63 - 1}&limit=1"])
def test_reading_beyond_the_end_is_416_at_once(call: Caller, world: World, query: str) -> None:
    started = time.monotonic()
    result = call("GET", "/v1/events", key=world.keys["alice"], query=query)
    assert time.monotonic() - started < 1  # no long-poll on a range that does not exist
    assert result.status_code == 416 and problem_slug(result) == "range-not-satisfiable"
    assert "size 1" in result.json["detail"] and "from=1" in result.json["detail"]


def test_reading_from_exactly_the_size_is_an_empty_page(call: Caller, world: World) -> None:
    result = call("GET", "/v1/events", key=world.keys["alice"], query="from=1")
    assert result.status_code == 200
    assert result.json == {"entries": [], "next": 1, "size": 1}


def test_access_log_line_cannot_be_split_by_an_encoded_newline(
    call: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "/nope%0A2026-11-25%2020:00:00,000%20ERROR%20pht.api:%20FORGED%0D%00"
    with caplog.at_level(logging.INFO, logger="pht.access"):
        result = call("GET", forged)
    assert result.status_code == 404
    [line] = [record.getMessage() for record in caplog.records if record.name == "pht.access"]
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert "/nope\\n2026-11-25 20:00:00,000 ERROR pht.api: FORGED\\r\\x00" in line
