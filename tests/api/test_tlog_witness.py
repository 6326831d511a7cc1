"""The registry asks a standard C2SP tlog-witness (``add-checkpoint``) for its cosignature.

The witness here is written from the tlog-witness, tlog-cosignature and RFC 6962 texts, with
nothing from ``ledger/`` (it parses the request, verifies the log's signature and the
consistency proof itself, keeps its latest cosigned checkpoint, answers 409 with
``text/x.tlog.size`` when the old size is not its own), and the cosigned checkpoint the registry
then serves is checked with the independent verifier of ``test_cosignatures``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from api.client.registry import Client
from api.registry.tlog_witness import WitnessCaller
from ledger.bodies import Consortium, Task, WitnessPolicySet
from ledger.errors import WitnessPolicyError
from ledger.events import SignedEvent, new_event
from ledger.store.ledger import Ledger
from ledger.witness_policy import parse_policy
from tests.api.registry_process import RegistryProcess, init_registry
from tests.api.test_cosignatures import spec_verify
from tests.ledger.factory import World

# ---- a witness from the spec texts ----------------------------------------------------------


def _consistent(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2: verify a consistency proof between tree sizes ``old`` and ``new``."""

    def node(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + a + b).digest()

    if old == new:
        return not proof and old_root == new_root
    if old == 0 or old > new or not proof:
        return False
    if old & (old - 1) == 0:  # old is a power of two: its root starts the path
        proof = [old_root, *proof]
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class SpecWitness:
    """One witness of one log; ``latest`` is what it last cosigned: (size, root)."""

    def __init__(self, name: str, private_pem: bytes, log_vkey: str, origin: str) -> None:
        key = load_pem_private_key(private_pem, None)
        assert isinstance(key, Ed25519PrivateKey)
        self.name, self.key, self.origin = name, key, origin
        public = key.public_key().public_bytes_raw()
        self.key_hash = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
        log_name, log_hash, b64 = log_vkey.split("+", 2)
        raw = base64.b64decode(b64)
        assert raw[0] == 0x01
        self.log_name, self.log_hash = log_name, bytes.fromhex(log_hash)
        self.log_key = Ed25519PublicKey.from_public_bytes(raw[1:])
        self.latest: tuple[int, bytes] = (0, b"")
        self.lock = threading.Lock()
        self.requests: list[tuple[int, bytes]] = []  # (status, body) answered

    def add_checkpoint(self, body: bytes) -> tuple[int, str, bytes]:
        head, sep, note = body.partition(b"\n\n")
        if not sep:
            return 400, "text/plain", b"no empty line\n"
        lines = head.split(b"\n")
        if not lines[0].startswith(b"old "):
            return 400, "text/plain", b"no old line\n"
        old = int(lines[0][4:])
        proof = [base64.b64decode(x) for x in lines[1:]]
        text, sep, signatures = note.decode().rpartition("\n\n")
        checkpoint_body = (text + "\n").encode()
        origin, size_text, root_b64 = text.split("\n")[:3]
        if origin != self.origin:
            return 404, "text/plain", b"unknown log\n"
        verified = False
        for line in signatures.rstrip("\n").split("\n"):
            name, b64 = line[2:].split(" ")
            sig = base64.b64decode(b64)
            if (name, sig[:4]) == (self.log_name, self.log_hash):
                try:
                    self.log_key.verify(sig[4:], checkpoint_body)
                    verified = True
                except InvalidSignature:
                    pass
        if not verified:
            return 403, "text/plain", b"no trusted signature\n"
        size, root = int(size_text), base64.b64decode(root_b64)
        if old > size:
            return 400, "text/plain", b"old size beyond the checkpoint\n"
        with self.lock:  # checked and updated at once (the spec's race)
            latest_size, latest_root = self.latest
            if old != latest_size:
                return 409, "text/x.tlog.size", b"%d\n" % latest_size
            if old == size and root != latest_root:
                return 409, "text/x.tlog.size", b"%d\n" % latest_size
            if old and not _consistent(old, size, latest_root, root, proof):
                return 422, "text/plain", b"consistency proof does not verify\n"
            if old == 0 and proof:
                return 422, "text/plain", b"a proof from size 0 must be empty\n"
            self.latest = (size, root)
        stamp = int(time.time())
        message = b"cosignature/v1\ntime %d\n" % stamp + checkpoint_body
        raw = self.key_hash + struct.pack(">Q", stamp) + self.key.sign(message)
        line = f"\u2014 {self.name} {base64.b64encode(raw).decode()}\n"
        return 200, "text/plain; charset=utf-8", line.encode()

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        witness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if self.path != "/w/add-checkpoint":
                    status, ctype, answer = 404, "text/plain", b"no such path\n"
                else:
                    status, ctype, answer = witness.add_checkpoint(body)
                witness.requests.append((status, body))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/w"


# ---- the registry side ------------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    return World(witnesses=True)


@pytest.fixture
def ledger(tmp_path: Path, world: World) -> Iterator[Ledger]:
    opened = Ledger.create(
        tmp_path / "data", genesis=world.sign("admin", world.genesis_body()), log_key=world.log_key
    )
    yield opened
    opened.close()


@pytest.fixture
def witness(world: World, ledger: Ledger) -> Iterator[tuple[SpecWitness, str]]:
    spec = SpecWitness(
        "site-a", world.witness_signer("site-a").private_pem(), world.log_key_text, ledger.origin
    )
    server, url = spec.serve()
    yield spec, url
    server.shutdown()
    server.server_close()


def grow(ledger: Ledger, world: World, n: int = 1) -> None:
    for i in range(n):
        body = Task(image="myconsortium/avg:1", sites=("site-a",), config={"i": i})
        ledger.append(world.sign("alice", body))


def set_policy(ledger: Ledger, world: World, url: str) -> None:
    text = (
        f"log {world.log_key_text}\n"
        f"witness site-a {world.witness_key_text('site-a')} {url}\n"
        f"witness site-b {world.witness_key_text('site-b')}\n"
        "group sites 1 site-a site-b\nquorum sites\n"
    )
    ledger.append(world.sign("admin", WitnessPolicySet(policy=text)))


def test_registry_asks_a_standard_witness_and_serves_its_cosignature(
    ledger: Ledger, world: World, witness: tuple[SpecWitness, str]
) -> None:
    spec, url = witness
    set_policy(ledger, world, url)
    grow(ledger, world, 3)
    caller = WitnessCaller(ledger)
    assert caller.ask_all() == {"site-a": 1}
    assert spec.latest[0] == ledger.size
    seen = spec_verify(
        ledger.cosigned_checkpoint(),
        world.log_key_text,
        {"site-a": world.witness_key_text("site-a")},
    )
    assert seen["size"] == ledger.size and seen["by"] == {"site-a"}

    first = ledger.size  # the next checkpoint: asked with a consistency proof from the first
    grow(ledger, world, 5)
    assert caller.ask_all() == {"site-a": 1}
    status, body = spec.requests[-1]
    assert status == 200 and body.startswith(b"old %d\n" % first)
    assert body.split(b"\n\n")[0].count(b"\n") >= 1  # proof lines were sent and verified
    assert spec.latest[0] == ledger.size
    assert spec_verify(
        ledger.cosigned_checkpoint(),
        world.log_key_text,
        {"site-a": world.witness_key_text("site-a")},
    )["by"] == {"site-a"}
    assert caller.ask_all() == {}  # the same checkpoint is not asked for twice


def test_registry_asks_again_from_the_size_a_witness_says_it_holds(
    ledger: Ledger, world: World, witness: tuple[SpecWitness, str]
) -> None:
    spec, url = witness
    set_policy(ledger, world, url)
    grow(ledger, world, 2)
    spec.latest = (ledger.size, ledger.root(ledger.size))  # it cosigned before the book knew
    grow(ledger, world, 3)
    assert WitnessCaller(ledger).ask_all() == {"site-a": 1}
    assert [status for status, _ in spec.requests] == [409, 200]
    assert ledger.cosignatures.witnesses_of(ledger.size) == ["site-a"]


def test_witness_shown_another_history_refuses_and_nothing_is_taken(
    ledger: Ledger, world: World, witness: tuple[SpecWitness, str]
) -> None:
    spec, url = witness
    set_policy(ledger, world, url)
    grow(ledger, world, 2)
    spec.latest = (ledger.size, bytes(32))  # it cosigned a fork of this size
    grow(ledger, world, 3)
    assert WitnessCaller(ledger).ask_all() == {"site-a": 0}
    assert spec.requests[-1][0] == 422
    assert ledger.cosignatures.witnesses_of(ledger.size) == []


def test_unreachable_witness_is_logged_and_appends_go_on(
    ledger: Ledger, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    set_policy(ledger, world, "http://127.0.0.1:9")  # the discard port: nothing listens
    grow(ledger, world)
    with caplog.at_level(logging.WARNING, logger="pht.witness"):  # whatever -q set before
        assert WitnessCaller(ledger).ask_all() == {"site-a": 0}
    assert "asking again at the next checkpoint" in caplog.text
    grow(ledger, world)
    assert ledger.cosignatures.witnesses_of(ledger.size) == []


def test_caller_thread_cosigns_new_checkpoints_until_stopped(
    ledger: Ledger, world: World, witness: tuple[SpecWitness, str]
) -> None:
    spec, url = witness
    set_policy(ledger, world, url)
    caller = WitnessCaller(ledger, idle=0.05).start()
    try:
        grow(ledger, world, 2)
        deadline = time.monotonic() + 10
        while spec.latest[0] != ledger.size and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spec.latest[0] == ledger.size
    finally:
        caller.stop()


@pytest.mark.parametrize(
    "url",
    ["ftp://w.example", "http://w.example?x=1", "http://", "http://w example", "w.example/x"],
)
def test_witness_policy_refuses_a_bad_witness_url(world: World, url: str) -> None:
    text = f"log {world.log_key_text}\nwitness site-a {world.witness_key_text('site-a')} {url}\n"
    with pytest.raises(WitnessPolicyError):
        parse_policy(text + "quorum site-a\n")


def test_witness_policy_keeps_the_witness_url(world: World) -> None:
    text = (
        f"log {world.log_key_text}\n"
        f"witness site-a {world.witness_key_text('site-a')} https://w.example:8443/tlog/\n"
        f"witness site-b {world.witness_key_text('site-b')}\n"
        "group g 2 site-a site-b\nquorum g\n"
    )
    assert dict(parse_policy(text).urls) == {"site-a": "https://w.example:8443/tlog"}


def test_a_running_registry_gets_cosigned_by_a_standard_witness(tmp_path: Path) -> None:
    """``pht serve`` asks the witness named in the policy; its cosigned checkpoint carries the
    witness's line, verified independently."""
    world = World(witnesses=True)
    data = init_registry(tmp_path, world)
    process = RegistryProcess(data)
    process.start()
    server = None
    try:
        time.sleep(1.1)  # the registry refuses requests signed in its first second
        with Client(process.url, world.keys["admin"]) as admin:
            genesis = admin.entry(0).event.event.body
            assert isinstance(genesis, Consortium)
            spec = SpecWitness(
                "site-a",
                world.witness_signer("site-a").private_pem(),
                genesis.log_key,
                world.origin,
            )
            server, url = spec.serve()
            text = (
                f"log {genesis.log_key}\n"
                f"witness site-a {world.witness_key_text('site-a')} {url}\nquorum site-a\n"
            )
            event = new_event(
                WitnessPolicySet(policy=text),
                ledger=world.origin,
                author=world.keys["admin"].key_id,
            )
            admin.post_event(SignedEvent.sign(event, world.keys["admin"]))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                note = admin.cosigned_checkpoint()
                seen = spec_verify(
                    note, genesis.log_key, {"site-a": world.witness_key_text("site-a")}
                )
                if seen["by"] == {"site-a"}:
                    break
                time.sleep(0.1)
            assert seen["by"] == {"site-a"}, "the registry never asked the witness"
            assert seen["size"] == spec.latest[0]
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        process.stop()


def test_caller_sleeps_while_the_ledger_does_not_grow(ledger: Ledger, world: World) -> None:
    """It looks once per new size, never in a loop (a spinning caller slowed every request)."""
    looks = []

    class Counting(WitnessCaller):
        def ask_all(self) -> dict[str, int]:
            looks.append(ledger.size)
            return super().ask_all()

    caller = Counting(ledger, idle=0.05).start()
    try:
        time.sleep(0.5)
        assert looks == [1]
        grow(ledger, world)
        deadline = time.monotonic() + 5
        while len(looks) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert looks == [1, 2]
    finally:
        caller.stop()
