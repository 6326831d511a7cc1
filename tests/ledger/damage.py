"""A real registry's data directory, and the damage a disk fault or an edit does to one.

``build_registry`` runs ``pht init``, then ``pht serve`` as a process fed real events and blobs
through the client (a task with a config blob, a result with an output and a log, a task whose
outputs are delivered to a site's FileService and its result, more tasks), and stops it with
SIGTERM, so the directory holds a snapshot and a checkpoint covering every entry.
``crash_registry`` appends more through a registry that is then SIGKILLed, so some entries lie
after the snapshot. The damage functions edit a stopped registry's files as an intruder or a
faulty disk would: records are rewritten with recomputed checksums, so only the ledger's own
hashes can tell.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from api.client.registry import Client
from crypto import AgeIdentity
from ledger.bodies import (
    BlobRef,
    Body,
    Member,
    MemberAction,
    Output,
    Result,
    ResultState,
    Role,
    Task,
)
from ledger.events import SignedEvent, new_event
from ledger.store.readlog import read_log
from ledger.store.records import encode_record
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

IMAGE = "myconsortium/avg:1"


def signed(world: World, author: str, body: Body) -> SignedEvent:
    """``body`` signed by ``author``, dated now (the registry refuses events far from its time)."""
    key = world.keys[author]
    return SignedEvent.sign(new_event(body, ledger=world.origin, author=key.key_id), key)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Registry:
    """A stopped registry's data directory and what was put in it."""

    data: Path
    world: World
    size: int
    config_blob: str  # named by the task at index ``config_task``
    config_task: int
    output_blob: str  # named by the result at index ``result`` (outputs[0], out.json)
    log_blob: str  # named by the same result (log)
    result: int
    delivered: str  # an output delivered to site-b's FileService: never in the registry

    def copy(self, to: Path) -> Path:
        """A copy of the data directory (without its LOCK) at ``to``."""
        shutil.copytree(self.data, to, ignore=shutil.ignore_patterns("LOCK"))
        return to


def build_registry(tmp: Path, world: World) -> Registry:
    data = init_registry(tmp, world)
    registry = RegistryProcess(data)
    url = registry.start()
    try:
        with (
            Client(url, world.keys["alice"]) as alice,
            Client(url, world.keys["site-a"]) as site_a,
            Client(url, world.keys["site-b"]) as site_b,
        ):
            config = alice.put_blob(b'{"rounds": 3}')
            task = alice.post_event(
                signed(world, "alice", Task(image=IMAGE, sites=("site-a",), config_blob=config))
            )
            output, log = site_a.put_blob(b"result bytes"), site_a.put_blob(b"log bytes")
            rekey = Member(
                action=MemberAction.REKEY,
                name="site-b",
                role=Role.SITE,
                public_key=world.keys["site-b"].public.b64(),
                encryption_key=AgeIdentity.generate().recipient.to_string(),
                file_service="https://site-b.example:8443",
            )
            site_b.post_event(signed(world, "site-b", rekey))
            to_b = Task(
                image=IMAGE, sites=("site-a",), config={"n": 1}, recipient="site-b", deliver=True
            )
            delivered_task = alice.post_event(signed(world, "alice", to_b))
            result = Result(
                task=task.event_id,  # type: ignore[arg-type]
                state=ResultState.COMPLETED,
                exit_code=0,
                outputs=(Output(name="out.json", sha256=output, size=12),),
                log=BlobRef(sha256=log, size=9),
            )
            posted = site_a.post_event(signed(world, "site-a", result))
            delivered = sha(b"delivered to site-b")
            site_a.post_event(
                signed(
                    world,
                    "site-a",
                    Result(
                        task=delivered_task.event_id,  # type: ignore[arg-type]
                        state=ResultState.COMPLETED,
                        exit_code=0,
                        outputs=(
                            Output(name="m.bin", sha256=delivered, size=19, delivered_to="site-b"),
                        ),
                    ),
                )
            )
            for n in range(2, 8):
                alice.post_event(
                    signed(world, "alice", Task(image=IMAGE, sites=("site-a",), config={"n": n}))
                )
            size = alice.entries(0, limit=1000).size
    finally:
        registry.stop()
    return Registry(
        data=data,
        world=world,
        size=size,
        config_blob=config,
        config_task=task.index,
        output_blob=output,
        log_blob=log,
        result=posted.index,
        delivered=delivered,
    )


def crash_registry(data: Path, world: World, count: int) -> int:
    """Append ``count`` tasks through ``pht serve`` on ``data``, then SIGKILL it (its snapshot
    and checkpoint stay where the last clean stop left them); return the new size."""
    registry = RegistryProcess(data)
    url = registry.start()
    try:
        with Client(url, world.keys["alice"]) as alice:
            for n in range(count):
                body = Task(image=IMAGE, sites=("site-a",), config={"crashed": n})
                alice.post_event(signed(world, "alice", body))
            size = alice.entries(0, limit=1000).size
        assert registry.proc is not None
        registry.proc.send_signal(signal.SIGKILL)
        registry.proc.wait(10)
    finally:
        registry.stop()
    return size


# ---- damage to the entry log (records rewritten with recomputed checksums)


def records(data: Path) -> list[bytes]:
    return read_log(data)


def write_records(data: Path, payloads: list[bytes]) -> None:
    """Rewrite entries.log as ``payloads``, each framed with a correct checksum; the index is
    left as it was (an intruder would not bother; the registry must cope)."""
    (data / "entries.log").write_bytes(b"".join(encode_record(p) for p in payloads))


def _altered(payload: bytes) -> bytes:
    """``payload`` with one character of its event's nonce changed (same length)."""
    raw = bytearray(payload)
    at = raw.index(b'"nonce":"') + len(b'"nonce":"')
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    return bytes(raw)


def alter_entry(data: Path, index: int) -> None:
    """Change one character inside entry ``index``'s event (same length: every offset holds),
    and recompute the record's checksum."""
    payloads = records(data)
    payloads[index] = _altered(payloads[index])
    write_records(data, payloads)


def rewrite_index_field(data: Path, index: int, to: int) -> None:
    """Make entry ``index``'s record claim to be entry ``to`` (same number of digits)."""
    payloads = records(data)
    old, new = f'"index":{index},'.encode(), f'"index":{to},'.encode()
    assert len(old) == len(new) and payloads[index].count(old) == 1
    payloads[index] = payloads[index].replace(old, new)
    write_records(data, payloads)


def swap_records(data: Path, first: int, second: int) -> None:
    payloads = records(data)
    payloads[first], payloads[second] = payloads[second], payloads[first]
    write_records(data, payloads)


def duplicate_record(data: Path, index: int) -> None:
    """Insert a second copy of entry ``index``'s record right after it."""
    payloads = records(data)
    payloads.insert(index + 1, payloads[index])
    write_records(data, payloads)


def append_copy_of_last(data: Path) -> None:
    payloads = records(data)
    write_records(data, [*payloads, payloads[-1]])


def tear_tail(data: Path) -> None:
    """Half a record at the end of the log, as a crash in the middle of a write leaves."""
    record = encode_record(records(data)[-1])
    with (data / "entries.log").open("ab") as log:
        log.write(record[: len(record) // 2])


def alter_in_place(data: Path, index: int) -> None:
    """``alter_entry`` as a write into the file in place (under a registry that is running)."""
    payloads = records(data)
    offset = sum(len(encode_record(p)) for p in payloads[:index])
    with (data / "entries.log").open("r+b") as log:
        log.seek(offset)
        log.write(encode_record(_altered(payloads[index])))


# ---- damage to the snapshot and the blobs


def snapshot_dir(data: Path) -> Path:
    return data / "snapshots" / (data / "SNAPSHOT").read_text().strip()


def make_admin(data: Path, name: str) -> None:
    """Edit the snapshot's state: member ``name`` becomes an admin."""
    path = snapshot_dir(data) / "state.json"
    state = json.loads(path.read_bytes())
    member = next(m for m in state["members"] if m["name"] == name)
    member["role"] = "admin"
    path.chmod(0o644)
    path.write_text(json.dumps(state, separators=(",", ":")))


def flip_byte(path: Path, at: int = 0) -> None:
    path.chmod(0o644)  # blobs are stored read-only
    raw = bytearray(path.read_bytes())
    raw[at % len(raw)] ^= 0x01
    path.write_bytes(bytes(raw))


def blob_path(data: Path, sha256: str) -> Path:
    return data / "objects" / sha256[:2] / sha256[2:]


def forge_manifest(data: Path, **changes: object) -> None:
    """Change members of the snapshot's manifest and recompute its own digest (what a careful
    editor would do): only what the members are checked against can tell."""
    path = snapshot_dir(data) / "manifest.json"
    manifest = json.loads(path.read_bytes())
    manifest.update(changes)
    rest = {key: value for key, value in manifest.items() if key != "digest"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    manifest["digest"] = hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(manifest, sort_keys=True, indent=1))
