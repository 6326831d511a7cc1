"""The registry refuses what every reader would refuse: hostile events, posted signed by current
members to a real registry, are answered with the problem type naming the refusal, and nothing is
appended (the ledger's size is unchanged).

Each attack runs against two registries: ``in-process`` (the Falcon app over a real ledger in a
temp directory, whose clock the test sets) and ``served`` (``pht serve`` in a child process, on
the real clock, reached over HTTP).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests
from falcon import testing

from api.wire.httpsig import RequestSigner
from crypto import Purpose, domain_bytes
from ledger.bodies import (
    BlobRef,
    Body,
    EventId,
    Output,
    Result,
    ResultState,
    Task,
    Transfer,
)
from ledger.canonical import canonical_bytes
from ledger.events import SignedEvent, format_time, new_event
from ledger.store.ledger import Ledger
from tests.api.conftest import Caller, FakeClock, make_app
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

JSON = "application/json"
OCTETS = "application/octet-stream"
PROBLEMS = "https://pht.example/problems/"
NOW = datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC)  # the in-process registry's clock
MAX_BODY = 64 * 1024
MAX_BLOB = 256 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]

    @property
    def slug(self) -> str:
        assert self.headers.get("content-type") == "application/problem+json", self.body
        assert self.body["status"] == self.status
        return str(self.body["type"]).removeprefix(PROBLEMS)


class Registry(Protocol):
    world: World

    def send(
        self,
        method: str,
        path: str,
        *,
        by: str | None = "alice",
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Answer: ...

    def size(self) -> int: ...

    def now(self) -> datetime: ...


class InProcess:
    """The app over a real ledger whose clock (``received``) stands still at ``now``."""

    def __init__(self, tmp: Path) -> None:
        self.world = World(start=NOW - timedelta(seconds=1))
        self.moment = NOW
        self.ledger = Ledger.create(
            tmp / "data",
            genesis=self.world.sign("admin", self.world.genesis_body()),
            log_key=self.world.log_key,
            clock=lambda: format_time(self.moment),
        )
        clock = FakeClock()
        app = make_app(self.ledger, clock, max_body=MAX_BODY, max_blob=MAX_BLOB)
        self._call = Caller(testing.TestClient(app), clock)

    def send(
        self,
        method: str,
        path: str,
        *,
        by: str | None = "alice",
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Answer:
        key = self.world.keys[by] if by is not None else None
        path, _, query = path.partition("?")
        result = self._call(
            method, path, key=key, query=query, body=body, content_type=content_type
        )
        return Answer(result.status_code, result.json or {}, result.headers)

    def size(self) -> int:
        return self.ledger.size

    def now(self) -> datetime:
        return self.moment


class Served:
    """``pht serve`` on the real clock, over HTTP."""

    def __init__(self, process: RegistryProcess, world: World) -> None:
        self.world = world
        self._url = process.url
        self._session = requests.Session()

    def send(
        self,
        method: str,
        path: str,
        *,
        by: str | None = "alice",
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Answer:
        headers = {"Content-Type": content_type} if content_type else {}
        prepared = requests.Request(method, self._url + path, data=body, headers=headers).prepare()
        if by is not None:
            RequestSigner(self.world.keys[by]).sign(
                prepared, body=body, created=int(time.time()), nonce=secrets.token_hex(16)
            )
        resp = self._session.send(prepared, timeout=30)
        try:
            value = resp.json()
        except ValueError:
            value = {}
        return Answer(resp.status_code, value, {k.lower(): v for k, v in resp.headers.items()})

    def size(self) -> int:
        answer = self.send("GET", "/healthz", by=None)
        assert answer.status == 200
        return int(answer.body["size"])

    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture(scope="module")
def served_world() -> World:
    return World()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, served_world: World) -> Iterator[Served]:
    process = RegistryProcess(init_registry(tmp_path_factory.mktemp("served"), served_world))
    process.start()
    time.sleep(1.0)  # requests signed in the registry's first second are refused by design
    yield Served(process, served_world)
    process.stop()


@pytest.fixture(params=["in-process", "served"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "served":
        yield request.getfixturevalue("served")
        return
    local = InProcess(tmp_path)
    yield local
    local.ledger.close()


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[InProcess]:
    local = InProcess(tmp_path)
    yield local
    local.ledger.close()


def signed(world: World, author: str, body: Body, *, time_text: str | None = None) -> bytes:
    """The canonical bytes of ``body`` in an event signed by ``author`` (dated ``time_text``)."""
    clock = (lambda: time_text) if time_text is not None else world.clock
    key = world.keys[author]
    event = new_event(body, ledger=world.origin, author=key.key_id, clock=clock, nonce=world.nonce)
    return SignedEvent.sign(event, key).canonical()


def signed_raw(world: World, author: str, event: dict[str, Any]) -> bytes:
    """``event`` (a JSON object the ledger's types would not build) signed by ``author``."""
    sig = world.keys[author].sign(domain_bytes(Purpose.EVENT, canonical_bytes(event)))
    return canonical_bytes({"event": event, "sig": base64.b64encode(sig).decode()})


def post(registry: Registry, body: bytes, *, by: str = "alice") -> Answer:
    return registry.send("POST", "/v1/events", by=by, body=body, content_type=JSON)


def refused(registry: Registry, body: bytes, *, by: str = "alice") -> Answer:
    """Post ``body``; check that it was refused and that nothing was appended."""
    before = registry.size()
    answer = post(registry, body, by=by)
    assert answer.status >= 400, answer.body
    assert registry.size() == before, "a refused event was appended"
    return answer


def appended(registry: Registry, body: bytes, *, by: str = "alice") -> str:
    answer = post(registry, body, by=by)
    assert answer.status == 201, answer.body
    return str(answer.body["event_id"])


def put_blob(registry: Registry, data: bytes, *, by: str = "site-a") -> str:
    sha = hashlib.sha256(data).hexdigest()
    answer = registry.send("PUT", f"/v1/blobs/{sha}", by=by, body=data, content_type=OCTETS)
    assert answer.status in (200, 201), answer.body
    return sha


def a_task() -> Task:
    return Task(image="busybox:1", sites=("site-a",), config={"n": secrets.token_hex(4)})


# ---- 1. image references no site can parse


UNUSABLE_IMAGES = [
    ("shell_option", "-rf:1"),
    ("path_traversal", "../../etc/passwd"),
    ("command_substitution", "$(id):1"),
    ("truncated_digest", "busybox@sha256:xyz"),
    ("upper_case_name", "UPPER/case:1"),
    ("double_colon", "busybox::1"),
    ("url_scheme", "http://evil/x:1"),
    ("shell_chain", "busybox:1;reboot"),
    ("space_then_docker_flag", "busybox:1 --privileged"),
    ("trailing_newline", "busybox:1\n"),
    ("empty", ""),
    ("fullwidth_letter", "\uff42usybox:1"),
    ("zero_width_space", "busy\u200bbox:1"),
    ("hub_namespace_spoofing_registry", "docker.io/registry.example.org/x:1"),
    ("port_out_of_range", "registry.example.org:65536/x:1"),
    ("ipv6_host_not_compressed", "[0:0::1]:5000/x:1"),
    ("bare_image_id", "0123456789abcdef" * 4),
    ("sha512_digest", "busybox@sha512:" + "a" * 128),
    ("tag_starting_with_dash", "busybox:-rf"),
    ("over_long_name", "a/" + "b" * 300 + ":1"),
]


@pytest.mark.parametrize(
    "image", [c[1] for c in UNUSABLE_IMAGES], ids=[c[0] for c in UNUSABLE_IMAGES]
)
def test_registry_refuses_unusable_image_reference(registry: Registry, image: str) -> None:
    event = SignedEvent.from_json(signed(registry.world, "alice", a_task())).event
    hostile = {**event.to_dict(), "body": {**event.body.to_dict(), "image": image}}
    answer = refused(registry, signed_raw(registry.world, "alice", hostile))
    assert (answer.status, answer.slug) == (400, "malformed-event")
    assert "task.body.image: invalid image reference" in answer.body["detail"]


def test_registry_still_appends_the_references_sites_use(registry: Registry) -> None:
    for image in (
        "busybox",
        "127.0.0.1:5000/pht-test/rt-hello:1",
        "myconsortium/avg:1.2@sha256:" + "ab" * 32,
        "[::1]:5000/pht/x:1",
    ):
        appended(
            registry,
            signed(registry.world, "alice", Task(image=image, sites=("site-a",), config={})),
        )


# ---- 2. event times outside the registry's window


def _at(offset: timedelta) -> Callable[[datetime], str]:
    return lambda now: format_time(now + offset)


OUT_OF_WINDOW: list[tuple[str, Callable[[datetime], str]]] = [
    ("year_9999", lambda now: "9999-12-31T23:59:59Z"),
    ("year_0001", lambda now: "0001-01-01T00:00:00Z"),
    ("eleven_minutes_ahead", _at(timedelta(minutes=11))),
    ("two_days_ahead", _at(timedelta(days=2))),
    ("twenty_five_hours_behind", _at(-timedelta(hours=25))),
    ("a_year_behind", _at(-timedelta(days=365))),
]


@pytest.mark.parametrize("dated", [c[1] for c in OUT_OF_WINDOW], ids=[c[0] for c in OUT_OF_WINDOW])
def test_registry_refuses_event_dated_outside_its_window(
    registry: Registry, dated: Callable[[datetime], str]
) -> None:
    when = dated(registry.now())
    answer = refused(registry, signed(registry.world, "alice", a_task(), time_text=when))
    assert (answer.status, answer.slug) == (422, "event-time-out-of-window")
    detail = answer.body["detail"]
    assert f"event.time {when}" in detail
    assert "the registry's time 2" in detail  # it names its own time...
    assert "from 1 day before to 10 minutes after" in detail  # ...and the window


@pytest.mark.parametrize(
    "offset",
    [timedelta(minutes=10), -timedelta(hours=24), timedelta(0)],
    ids=["exactly_ten_minutes_ahead", "exactly_a_day_behind", "now"],
)
def test_registry_appends_event_dated_at_the_edge_of_its_window(
    in_process: InProcess, offset: timedelta
) -> None:
    when = format_time(NOW + offset)
    appended(in_process, signed(in_process.world, "alice", a_task(), time_text=when))


def test_event_already_in_the_ledger_is_answered_after_its_time_left_the_window(
    in_process: InProcess,
) -> None:
    body = signed(in_process.world, "alice", a_task())
    first = post(in_process, body)
    assert first.status == 201
    in_process.moment = NOW + timedelta(days=3)  # the registry's clock moves on
    again = post(in_process, body)
    assert again.status == 200 and again.body == first.body  # idempotent, not refused


def test_openapi_states_the_window(registry: Registry) -> None:
    answer = registry.send("GET", "/openapi.json", by=None)
    time_doc = answer.body["components"]["schemas"]["Event"]["properties"]["time"]
    assert "from 1 day before to 10 minutes after" in time_doc["description"]


# ---- 3. blobs named but never uploaded


def _task_with_missing_config(registry: Registry) -> bytes:
    missing = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    body = Task(image="busybox:1", sites=("site-a",), config_blob=missing)
    return signed(registry.world, "alice", body)


def _result(registry: Registry, **fields: Any) -> bytes:
    task = appended(registry, signed(registry.world, "alice", a_task()))
    body = Result(task=EventId(task), state=ResultState.COMPLETED, **fields)
    return signed(registry.world, "site-a", body)


def _missing() -> str:
    return hashlib.sha256(secrets.token_bytes(16)).hexdigest()


MISSING_BLOBS: list[tuple[str, Callable[[Registry], bytes], str, int]] = [
    ("task_config_blob_never_uploaded", _task_with_missing_config, "blob-missing", 409),
    (
        "result_output_never_uploaded",
        lambda r: _result(r, outputs=(Output(name="out.csv", sha256=_missing(), size=5),)),
        "blob-missing",
        409,
    ),
    (
        "result_log_never_uploaded",
        lambda r: _result(r, outputs=(), log=BlobRef(sha256=_missing(), size=5)),
        "blob-missing",
        409,
    ),
    (
        "result_output_size_misstated",
        lambda r: _result(
            r, outputs=(Output(name="out.csv", sha256=put_blob(r, b"12345"), size=4),)
        ),
        "blob-mismatch",
        422,
    ),
]


@pytest.mark.parametrize(
    ("make", "slug", "status"),
    [c[1:] for c in MISSING_BLOBS],
    ids=[c[0] for c in MISSING_BLOBS],
)
def test_registry_refuses_event_naming_a_blob_it_does_not_hold(
    registry: Registry, make: Callable[[Registry], bytes], slug: str, status: int
) -> None:
    body = make(registry)
    author = SignedEvent.from_json(body).event.author
    by = next(name for name, key in registry.world.keys.items() if key.key_id == author)
    answer = refused(registry, body, by=by)
    assert (answer.status, answer.slug) == (status, slug)
    assert "blob" in answer.body["detail"]


def test_refused_for_a_missing_blob_the_same_event_is_appended_once_it_is_uploaded(
    registry: Registry,
) -> None:
    config = json.dumps({"lr": secrets.token_hex(4)}).encode()
    sha = hashlib.sha256(config).hexdigest()
    body = signed(
        registry.world, "alice", Task(image="busybox:1", sites=("site-a",), config_blob=sha)
    )
    assert refused(registry, body).slug == "blob-missing"
    put_blob(registry, config, by="alice")
    appended(registry, body)


def test_blobs_the_registry_never_holds_are_not_required(registry: Registry) -> None:
    elsewhere = _missing()
    delivered = Output(name="out.age", sha256=elsewhere, size=9, delivered_to="site-b")
    task = appended(registry, signed(registry.world, "alice", a_task()))
    result = Result(task=EventId(task), state=ResultState.COMPLETED, outputs=(delivered,))
    appended(registry, signed(registry.world, "site-a", result), by="site-a")
    transfer = Transfer(
        sender="site-a", recipient="site-b", task=EventId(task), sha256=elsewhere, size=9
    )
    appended(registry, signed(registry.world, "site-b", transfer), by="site-b")


# ---- 4. methods a path does not have


OVER_EVERY_LIMIT = 2 * 1024 * 1024 + 1  # beyond both registries' event body limits
WRONG_METHODS = [
    ("delete_events_with_a_body_over_the_limit", "DELETE", "/v1/events", OVER_EVERY_LIMIT),
    ("put_an_entry", "PUT", "/v1/events/0", 100),
    ("post_a_blob_with_a_big_body", "POST", "/v1/blobs/" + "ab" * 32, OVER_EVERY_LIMIT),
    ("patch_a_task", "PATCH", "/v1/tasks/" + "00" * 32, 10),
    ("put_the_checkpoint", "PUT", "/v1/checkpoint", OVER_EVERY_LIMIT),
    ("delete_health", "DELETE", "/healthz", 10),
]


@pytest.mark.parametrize("signed_by", ["alice", None], ids=["signed", "unsigned"])
@pytest.mark.parametrize(
    ("method", "path", "length"),
    [c[1:] for c in WRONG_METHODS],
    ids=[c[0] for c in WRONG_METHODS],
)
def test_registry_answers_405_to_a_method_a_path_lacks_whatever_its_body(
    registry: Registry, method: str, path: str, length: int, signed_by: str | None
) -> None:
    before = registry.size()
    answer = registry.send(method, path, by=signed_by, body=b"x" * length, content_type=OCTETS)
    assert (answer.status, answer.slug) == (405, "method-not-allowed")
    assert method not in answer.headers["allow"] and "GET" in answer.headers["allow"]
    assert registry.size() == before


# ---- 5. pages from beyond the end


def test_registry_refuses_a_page_from_beyond_its_size(registry: Registry) -> None:
    size = registry.size()
    answer = registry.send("GET", f"/v1/events?from={size + 1}&wait=5")
    assert (answer.status, answer.slug) == (416, "range-not-satisfiable")
    assert f"size {size}" in answer.body["detail"]
    at_the_end = registry.send("GET", f"/v1/events?from={size}")
    assert at_the_end.status == 200 and at_the_end.body["entries"] == []
