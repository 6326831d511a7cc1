"""Each fast path against the general function it must equal, measured in the same run.

    python bench/fast_paths_bench.py [--seconds 0.3] [--rounds 5]

The fast paths are fenced in ``ledger/_fast_events.py``, ``api/wire/httpsig/_fast_strict.py`` and
``api/wire/pages.py``; their headers cite the figures this prints. Each line gives the rate of the
general path, of the fast path, and their ratio: the best rate of each over ``--rounds``
interleaved rounds, so that load from elsewhere on the machine weighs on both alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.wire.httpsig import RequestSigner, RequestVerifier, ServerMessage
from api.wire.httpsig._fast_strict import verify_strict
from api.wire.pages import _cut_records, _reencoded_records, entries_page
from crypto import KeyId, PublicKey
from ledger._fast_events import entry_bytes, signed_event_bytes
from ledger.bodies import Output, Result, ResultState, Status, StatusState, Task
from ledger.canonical import canonical_bytes, parse_json
from ledger.events import Entry, SignedEvent
from tests.ledger.factory import World

NOW = 1_800_000_000


def _rate(call: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            call()
        count += 50
    return count / (time.perf_counter() - start)


def _entries() -> list[Entry]:
    """A task, its status and its result: what a ledger mostly holds."""
    world = World()
    world.push(world.sign("admin", world.genesis_body()))
    task = world.push(
        world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={"n": [1, 2, 3]}))
    )
    task_id = task.event.event.id
    world.push(world.sign("site-a", Status(task=task_id, state=StatusState.STARTED)))
    result = Result(
        task=task_id,
        state=ResultState.COMPLETED,
        outputs=(Output(name="o.txt", sha256="cd" * 32, size=9),),
        exit_code=0,
    )
    world.push(world.sign("site-a", result))
    return world.entries[1:]


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def _pairs(world: World) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Each fast path's name, its general twin and itself, on the same input."""
    entries = _entries()
    records = [entry.canonical for entry in entries]
    post = entries[0].event.canonical()
    entry = entries[2]
    signed = entry.event

    def each(read: Callable[[bytes], object]) -> Callable[[], object]:
        return lambda: [read(record) for record in records]

    key = world.keys["alice"]
    body = post
    url = "http://127.0.0.1:8080/v1/events"

    def sign(strict: bool) -> Callable[[], object]:
        signer = RequestSigner(key, strict_path=strict)
        return lambda: signer.sign(Request("POST", url), body=body, created=NOW, nonce="n" * 32)

    request = Request("POST", url)
    RequestSigner(key).sign(request, body=body, created=NOW, nonce="n" * 32)
    message = ServerMessage("POST", url, {k.upper(): v for k, v in request.headers.items()})

    def lookup(key_id: KeyId) -> PublicKey | None:
        return key.public if key_id == key.key_id else None

    verifier = RequestVerifier(lookup, clock=lambda: NOW)
    page = entries_page(records * 250, 1000, 1000)
    return {
        "stored entry read (Entry.from_canonical, 3 entries)": (
            each(Entry.parse_canonical),
            each(Entry.from_canonical),
        ),
        "posted event read (SignedEvent.from_json)": (
            lambda: SignedEvent.from_dict(parse_json(post)),
            lambda: SignedEvent.from_json(post),
        ),
        "entry canonical bytes (Entry._seal)": (
            lambda: canonical_bytes(entry.to_dict()),
            lambda: entry_bytes(signed.canonical(), entry.index, entry.prev, entry.received),
        ),
        "envelope canonical bytes (SignedEvent.canonical)": (
            lambda: canonical_bytes(signed.to_dict()),
            lambda: signed_event_bytes(signed.event.canonical, signed.sig_b64),
        ),
        "request signing (RequestSigner.sign)": (sign(False), sign(True)),
        "request verification (RequestVerifier.verify)": (
            lambda: verifier._general(message, body, NOW),
            lambda: verify_strict(message, body, lookup, earliest=NOW - 60, latest=NOW + 5),
        ),
        "entries page of 1,000 records (page_records)": (
            lambda: _reencoded_records(page),
            lambda: _cut_records(page),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pairs = _pairs(World())
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    for _ in range(args.rounds):
        for name, (general, fast) in pairs.items():
            rates[name].append((_rate(general, args.seconds), _rate(fast, args.seconds)))
    print(f"fast path vs its general twin (best of {args.rounds} interleaved rounds):")
    for name, measured in rates.items():
        general = max(g for g, _ in measured)
        fast = max(f for _, f in measured)
        print(f"  {name:52s} {general:9.0f}/s -> {fast:9.0f}/s  = {fast / general:5.1f}x")


if __name__ == "__main__":
    main()
