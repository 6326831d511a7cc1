"""The client checks every blob it downloads against its name, whatever the server sends: a
registry that swapped a blob's bytes (or skipped its own check) is caught at the reader."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import falcon
import pytest
import waitress

from api.client.registry import Client
from api.errors import ProtocolError
from tests.ledger.factory import key

GENUINE = b"the genuine ciphertext"
SWAPPED = b"another task's ciphertext"
NAME = hashlib.sha256(GENUINE).hexdigest()


class LyingBlobs:
    def on_get(self, req: falcon.Request, resp: falcon.Response, sha256: str) -> None:
        resp.content_type = "application/octet-stream"
        resp.data = SWAPPED  # served under the genuine bytes' name


@pytest.fixture
def lying_registry() -> Iterator[str]:
    app = falcon.App()
    app.add_route("/v1/blobs/{sha256}", LyingBlobs())
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()


def test_blob_whose_bytes_miss_their_name_is_refused_in_memory(lying_registry: str) -> None:
    with (
        Client(lying_registry, key("alice")) as client,
        pytest.raises(ProtocolError, match=r"sha256|hash|digest"),
    ):
        client.get_blob(NAME)


def test_blob_whose_bytes_miss_their_name_is_refused_on_disk(
    lying_registry: str, tmp_path: Path
) -> None:
    dest = tmp_path / "out.bin"
    with Client(lying_registry, key("alice")) as client, pytest.raises(ProtocolError):
        client.download_blob(NAME, dest)
    assert not dest.exists()  # nothing half-trusted is left behind
