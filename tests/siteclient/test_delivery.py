"""FileServiceClient against a scripted HTTP server on 127.0.0.1 (what it retries, what it
refuses to believe); its run against the real FileService is in test_fileservice.py."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import waitress

from api.client.transport import RetryPolicy
from siteclient.errors import DeliveryError
from siteclient.run.delivery import FileServiceClient
from tests.ledger.factory import key

TASK = "5e" * 32
Reply = tuple[str, dict[str, Any]]


@dataclass
class Scripted:
    """Answers each request with the next scripted reply; remembers what it received."""

    replies: list[Reply]
    seen: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.bodies.append(environ["wsgi.input"].read(length))
        self.seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        status, body = self.replies.pop(0)
        media = "application/problem+json" if status[0] in "45" else "application/json"
        start_response(status, [("Content-Type", media)])
        return [json.dumps(body).encode()]


@pytest.fixture
def serve() -> Iterator[Callable[[list[Reply]], tuple[str, Scripted]]]:
    servers: list[tuple[Any, threading.Thread]] = []

    def start(replies: list[Reply]) -> tuple[str, Scripted]:
        app = Scripted(replies)
        server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.effective_port}", app

    yield start
    for server, thread in servers:
        # Closed from its own loop thread (closing the sockets from here could pull them from
        # under the loop's select(): EBADF in that thread), keep-alive channels too, so that
        # the loop, left with nothing to watch, ends.
        server.trigger.pull_trigger(lambda s=server: [d.close() for d in list(s._map.values())])
        thread.join(5)
        server.task_dispatcher.shutdown()


def _receipt(data: bytes, index: int = 7, **changes: Any) -> dict[str, Any]:
    return {
        "task": TASK,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "transfer_index": index,
    } | changes


def _client(url: str) -> FileServiceClient:
    return FileServiceClient(
        url, key("site-a"), retry=RetryPolicy(attempts=3, backoff=0.01), sleep=lambda s: None
    )


def test_upload_retries_a_busy_service_signing_each_attempt_afresh(
    serve: Callable[[list[Reply]], tuple[str, Scripted]], tmp_path: Path
) -> None:
    data = b"ciphertext " * 1000
    path = tmp_path / "out.age"
    path.write_bytes(data)
    busy = {"type": "https://pht.example/problems/unavailable", "detail": "registry down"}
    url, app = serve([("503 Service Unavailable", busy), ("201 Created", _receipt(data))])
    with _client(url) as client:
        receipt = client.upload(TASK, "out.age", path)
    assert (receipt.transfer_index, receipt.created, receipt.size) == (7, True, len(data))
    assert app.bodies == [data, data]
    nonces = [seen["HTTP_SIGNATURE_INPUT"].split('nonce="')[1][:32] for seen in app.seen]
    assert len(set(nonces)) == 2
    digest = app.seen[0]["HTTP_CONTENT_DIGEST"]
    assert digest.startswith("sha-256=:") and all(
        s["HTTP_CONTENT_DIGEST"] == digest for s in app.seen
    )


def test_upload_refusal_is_a_delivery_error_with_status_and_slug(
    serve: Callable[[list[Reply]], tuple[str, Scripted]],
) -> None:
    full = {"type": "https://pht.example/problems/insufficient-storage", "detail": "disk full"}
    url, app = serve([("507 Insufficient Storage", full)])
    with _client(url) as client, pytest.raises(DeliveryError, match="disk full") as refused:
        client.upload(TASK, "out.age", b"x")
    assert (refused.value.status, refused.value.slug) == (507, "insufficient-storage")
    assert len(app.bodies) == 1  # not retried


@pytest.mark.parametrize(
    "lie",
    [{"sha256": "00" * 32}, {"size": 1}, {"task": "ff" * 32}, {"transfer_index": -1}],
    ids=["other_hash", "other_size", "other_task", "bad_index"],
)
def test_a_receipt_for_something_else_is_not_believed(
    serve: Callable[[list[Reply]], tuple[str, Scripted]], lie: dict[str, Any]
) -> None:
    data = b"what was sent"
    url, _ = serve([("201 Created", _receipt(data, **lie))])
    with _client(url) as client, pytest.raises(DeliveryError):
        client.upload(TASK, "out.age", data)


@pytest.mark.parametrize(
    ("task", "name"),
    [(TASK, "../../etc/passwd"), (TASK, "a/b"), (TASK, ""), ("../x", "out"), (TASK.upper(), "o")],
)
def test_bad_task_or_name_is_refused_before_sending(task: str, name: str) -> None:
    with _client("http://127.0.0.1:9") as client, pytest.raises(DeliveryError):
        client.upload(task, name, b"data")


def test_unreachable_service_is_a_delivery_error_without_status() -> None:
    with _client("http://127.0.0.1:9") as client, pytest.raises(DeliveryError) as failed:
        client.upload(TASK, "out.age", b"data")
    assert failed.value.status is None and "3 attempts" in str(failed.value)


def test_base_url_must_be_http() -> None:
    with pytest.raises(DeliveryError, match="not a FileService URL"):
        FileServiceClient("ftp://ttp.example.org", key("site-a"))
