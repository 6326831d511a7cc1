"""Witness cosignatures at the registry (DESIGN 12): what it takes, what it refuses, what it serves.

The cosigned checkpoint is checked by a C2SP note verifier written here from the specs
(signed-note, tlog-checkpoint, tlog-cosignature), independent of ledger/checkpoint.py and
ledger/cosignature.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from falcon import testing

from ledger.bodies import Task, WitnessPolicySet
from ledger.checkpoint import Checkpoint
from ledger.cosignature import cosign
from ledger.store.ledger import Ledger
from tests.api.conftest import Caller, FakeClock, make_app
from tests.ledger.factory import World, key

JSON = "application/json"


@pytest.fixture
def world() -> World:
    return World(witnesses=True)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def ledger(data_dir: Path, world: World) -> Iterator[Ledger]:
    opened = Ledger.create(
        data_dir, genesis=world.sign("admin", world.genesis_body()), log_key=world.log_key
    )
    yield opened
    opened.close()


@pytest.fixture
def call(ledger: Ledger, clock: FakeClock) -> Caller:
    return Caller(testing.TestClient(make_app(ledger, clock)), clock)


def checkpoint_of(ledger: Ledger, size: int | None = None) -> Checkpoint:
    size = ledger.size if size is None else size
    return Checkpoint(origin=ledger.origin, size=size, root=ledger.root(size))


def line_by(world: World, name: str, checkpoint: Checkpoint, time: int = 1_700_000_000) -> str:
    return cosign(checkpoint, world.witness_signer(name), name=name, time=time)


def send(call: Caller, world: World, by: str, size: int, line: str) -> testing.Result:
    body = json.dumps({"size": size, "cosignature": line}).encode()
    return call("POST", "/v1/cosignatures", key=world.keys[by], body=body, content_type=JSON)


def grow(ledger: Ledger, world: World) -> None:
    ledger.append(
        world.sign("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={}))
    )


# ---- an independent C2SP verifier (from the spec text, nothing from ledger/) ------------------


def spec_verify(note: bytes, log_vkey: str, witness_vkeys: dict[str, str]) -> dict[str, Any]:
    """Verify a cosigned checkpoint note: the log's Ed25519 (type 0x01) line, and each
    cosignature/v1 (type 0x04) line whose key is listed. Returns origin, size, root and the
    witnesses whose cosignature verified."""
    text = note.decode("utf-8")
    body, _, sigblock = text.rpartition("\n\n")
    body += "\n"
    origin, size, root = body[:-1].split("\n")
    assert sigblock.endswith("\n")

    def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
        name, hash_hex, b64 = vkey.split("+", 2)
        raw = base64.b64decode(b64)
        assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == hash_hex
        return name, bytes.fromhex(hash_hex), raw[0], raw[1:]

    log_name, log_hash, log_type, log_pub = parse_vkey(log_vkey)
    assert log_type == 0x01
    witnesses = {parse_vkey(v)[:2]: parse_vkey(v) for v in witness_vkeys.values()}
    log_ok, cosigned = False, set()
    for line in sigblock[:-1].split("\n"):
        assert line.startswith("\u2014 ")
        name, b64 = line[2:].split(" ")
        sig = base64.b64decode(b64)
        if (name, sig[:4]) == (log_name, log_hash):
            Ed25519PublicKey.from_public_bytes(log_pub).verify(sig[4:], body.encode())
            log_ok = True
        elif (name, sig[:4]) in witnesses:
            _, _, wtype, wpub = witnesses[(name, sig[:4])]
            assert wtype == 0x04 and len(sig) == 4 + 8 + 64
            (stamp,) = struct.unpack(">Q", sig[4:12])
            message = f"cosignature/v1\ntime {stamp}\n".encode() + body.encode()
            try:
                Ed25519PublicKey.from_public_bytes(wpub).verify(sig[12:], message)
            except InvalidSignature:
                continue
            cosigned.add(name)
    assert log_ok, "no verifying log signature"
    return {"origin": origin, "size": int(size), "root": base64.b64decode(root), "by": cosigned}


def test_cosigned_checkpoint_verifies_with_an_independent_c2sp_verifier(
    call: Caller, ledger: Ledger, world: World
) -> None:
    grow(ledger, world)
    checkpoint = checkpoint_of(ledger)
    for site in ("site-a", "site-b"):
        assert (
            send(call, world, site, checkpoint.size, line_by(world, site, checkpoint)).status_code
            == 201
        )
    grow(ledger, world)  # the newest checkpoint is not cosigned yet
    served = call("GET", "/v1/checkpoint/cosigned")
    assert served.status_code == 200
    witness_keys = {s: world.witness_key_text(s) for s in ("site-a", "site-b", "site-c")}
    found = spec_verify(served.content, ledger.log_key, witness_keys)
    assert found == {
        "origin": world.origin,
        "size": checkpoint.size,
        "root": checkpoint.root,
        "by": {"site-a", "site-b"},
    }
    latest = call("GET", "/v1/checkpoint").content
    assert spec_verify(latest, ledger.log_key, witness_keys)["size"] == ledger.size


def test_cosigned_checkpoint_prefers_the_newest_size_meeting_the_quorum(
    call: Caller, ledger: Ledger, world: World
) -> None:
    sites = ("site-a", "site-b", "site-c")
    ledger.append(world.sign("admin", WitnessPolicySet(policy=world.witness_policy(sites, 2))))
    first = checkpoint_of(ledger)
    for site in ("site-a", "site-b"):
        send(call, world, site, first.size, line_by(world, site, first))
    grow(ledger, world)
    send(call, world, "site-c", ledger.size, line_by(world, "site-c", checkpoint_of(ledger)))
    witness_keys = {s: world.witness_key_text(s) for s in sites}
    served = spec_verify(
        call("GET", "/v1/checkpoint/cosigned").content, ledger.log_key, witness_keys
    )
    assert served["size"] == first.size and served["by"] == {"site-a", "site-b"}


def test_the_same_line_again_is_recorded_once_and_survives_a_restart(
    tmp_path: Path, world: World, clock: FakeClock
) -> None:
    data = tmp_path / "own"
    ledger = Ledger.create(
        data, genesis=world.sign("admin", world.genesis_body()), log_key=world.log_key
    )
    call = Caller(testing.TestClient(make_app(ledger, clock)), clock)
    line = line_by(world, "site-a", checkpoint_of(ledger))
    assert send(call, world, "site-a", 1, line).status_code == 201
    assert send(call, world, "site-a", 1, line).status_code == 200
    ledger.close()
    reopened = Ledger.open(data, log_key=world.log_key)
    try:
        assert reopened.cosignatures.witnesses_of(1) == ["site-a"]
        assert line.encode() in reopened.cosigned_checkpoint()
    finally:
        reopened.close()


# ---- refusals -----------------------------------------------------------------------------------

Attack = Callable[[World, Ledger], tuple[str, int, str]]  # (sender, size, line)


def _foreign_origin(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)
    other = Checkpoint(origin="another.example/log", size=cp.size, root=cp.root)
    return "site-a", cp.size, line_by(world, "site-a", other)


def _never_signed(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)
    forged = Checkpoint(origin=cp.origin, size=cp.size, root=bytes(32))
    return "site-a", cp.size, line_by(world, "site-a", forged)


def _size_never_signed(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)
    return "site-a", cp.size + 5, line_by(world, "site-a", cp)


def _non_witness(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)  # audrey published no witness key; she signs as one anyway
    return "audrey", cp.size, cosign(cp, key("audrey/witness"), name="audrey", time=1)


def _another_witness_line(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)  # site-a relays site-b's line: only site-b speaks for site-b
    return "site-a", cp.size, line_by(world, "site-b", cp)


def _unpublished_key(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)  # site-a's name, another key
    return "site-a", cp.size, cosign(cp, key("mallory"), name="site-a", time=1)


def _signing_key_as_witness(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)
    return "site-a", cp.size, cosign(cp, world.keys["site-a"], name="site-a", time=1)


def _dated_in_the_future(world: World, ledger: Ledger) -> tuple[str, int, str]:
    cp = checkpoint_of(ledger)  # an hour ahead: a witness whose clock is wrong, or a lie
    later = int(time.time()) + 3600
    return "site-a", cp.size, cosign(cp, World.witness_signer("site-a"), name="site-a", time=later)


def _malformed(text: str) -> Attack:
    return lambda world, ledger: ("site-a", ledger.size, text)


def _truncated(world: World, ledger: Ledger) -> tuple[str, int, str]:
    line = line_by(world, "site-a", checkpoint_of(ledger))
    name, b64 = line[2:].split(" ")
    short = base64.b64encode(base64.b64decode(b64)[:-1]).decode()
    return "site-a", ledger.size, f"\u2014 {name} {short}"


ATTACKS: dict[str, Attack] = {
    "test_rejects_cosignature_for_another_origin": _foreign_origin,
    "test_rejects_cosignature_for_a_checkpoint_never_signed": _never_signed,
    "test_rejects_cosignature_for_a_size_never_signed": _size_never_signed,
    "test_rejects_cosignature_by_a_non_witness": _non_witness,
    "test_rejects_cosignature_relayed_for_another_witness": _another_witness_line,
    "test_rejects_cosignature_by_an_unpublished_key": _unpublished_key,
    "test_rejects_cosignature_by_the_signing_key": _signing_key_as_witness,
    "test_rejects_cosignature_dated_an_hour_ahead": _dated_in_the_future,
    "test_rejects_malformed_line_without_em_dash": _malformed("- site-a AAAA"),
    "test_rejects_malformed_line_bad_base64": _malformed("\u2014 site-a not*base64"),
    "test_rejects_malformed_line_extra_field": _malformed("\u2014 site-a AAAA AAAA"),
    "test_rejects_malformed_line_two_lines": _malformed("\u2014 site-a AAAA\n\u2014 x AAAA"),
    "test_rejects_truncated_cosignature": _truncated,
}


@pytest.mark.parametrize("attack", list(ATTACKS.values()), ids=list(ATTACKS))
def test_cosignature_refusals(call: Caller, ledger: Ledger, world: World, attack: Attack) -> None:
    sender, size, line = attack(world, ledger)
    answer = send(call, world, sender, size, line)
    assert answer.status_code == 422, answer.text
    assert answer.json["type"].endswith("/bad-cosignature")
    assert ledger.cosignatures.witnesses_of(size) == []


def test_rejects_a_replayed_cosignature_for_an_older_size(
    call: Caller, ledger: Ledger, world: World
) -> None:
    old = checkpoint_of(ledger)
    old_line = line_by(world, "site-a", old)
    grow(ledger, world)
    new = checkpoint_of(ledger)
    assert send(call, world, "site-a", new.size, line_by(world, "site-a", new)).status_code == 201
    answer = send(call, world, "site-a", old.size, old_line)
    assert answer.status_code == 422 and "older or replayed" in answer.json["detail"]
    assert ledger.cosignatures.witnesses_of(old.size) == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"size": 0, "cosignature": "x"}', b'{"size": 1, "cosignature": 5}'],
)
def test_rejects_a_malformed_request_body(call: Caller, world: World, body: bytes) -> None:
    answer = call(
        "POST", "/v1/cosignatures", key=world.keys["site-a"], body=body, content_type=JSON
    )
    assert answer.status_code == 422


def test_cosignatures_need_a_signed_request(call: Caller) -> None:
    body = b'{"size": 1, "cosignature": "x"}'
    assert call("POST", "/v1/cosignatures", body=body, content_type=JSON).status_code == 401
