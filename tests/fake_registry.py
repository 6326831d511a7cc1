"""A registry that can lie: the read surface of :class:`api.client.registry.Client`, in process.

It serves byte-exact signed data (entries, checkpoints, RFC 9162 proofs) built from
:class:`tests.ledger.factory.World` histories, so every reader runs its real verification against
it. A test sets what it serves next (``serve``), including histories that fork, roll back,
withhold entries or come with a forged checkpoint or proof (python-tuf's RepositorySimulator is the
model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from api.client.answers import Page
from api.errors import PROBLEM_BASE, problem_error
from crypto import SigningKey
from ledger import tiles as tlog_tiles
from ledger.bodies import Result, ResultState, Task
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import with_cosignatures
from ledger.errors import UnknownTileError
from ledger.events import Entry
from ledger.merkle import MerkleTree
from tests.ledger.factory import World, key


def history(
    size: int,
    *,
    fork_at: int | None = None,
    forbidden_at: int | None = None,
    consortium: str = "Test consortium",
) -> World:
    """A valid ledger of ``size`` entries: the genesis, then tasks by alice for site-a.

    ``fork_at`` makes the tasks from that index on differ (another config), so two histories
    built with different ``fork_at`` share their first entries exactly. ``forbidden_at`` puts
    there, properly chained and signed, an entry the rules refuse (a researcher's result).
    ``consortium`` names the genesis: another name is another genesis.
    """
    world = World()
    world.push(world.sign("admin", dataclasses.replace(world.genesis_body(), name=consortium)))
    while len(world.entries) < size:
        index = len(world.entries)
        config = {"n": index, "fork": fork_at is not None and index >= fork_at}
        if forbidden_at == index:
            task_id = world.entries[1].event.event.id
            body = Result(task=task_id, state=ResultState.COMPLETED, outputs=())
            world.push(world.sign("alice", body))
            continue
        world.push(
            world.sign("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config=config))
        )
    return world


def note_for(
    entries: Sequence[Entry],
    size: int | None = None,
    *,
    signer: SigningKey | None = None,
    origin: str | None = None,
) -> bytes:
    """The checkpoint note of the first ``size`` of ``entries`` (by the log key by default)."""
    tree = MerkleTree()
    tree.extend(entry.leaf_hash for entry in entries)
    size = tree.size if size is None else size
    origin = origin or entries[0].event.event.ledger
    checkpoint = Checkpoint(origin=origin, size=size, root=tree.root(size))
    return sign_checkpoint(checkpoint, signer or key("log"), name=entries[0].event.event.ledger)


@dataclass
class FakeRegistry:
    """Serves the ``served`` entries under ``note``; ``proof`` overrides the consistency proofs."""

    served: list[Entry] = field(default_factory=list)
    note: bytes = b""
    proof: list[bytes] | None = None
    consistency_requests: list[tuple[int, int]] = field(default_factory=list)
    base_url: str = "http://registry.invalid"
    # Cosignature lines sent to it (share one list between fakes to model one registry showing
    # several views): a lying registry appends every line it holds to every cosigned note.
    pool: list[str] = field(default_factory=list)
    posted: list[tuple[int, str]] = field(default_factory=list)
    tiles: bool = True  # serve C2SP tiles of what it serves (False: a registry before tiles)

    def serve(
        self, entries: Sequence[Entry], note: bytes, *, proof: list[bytes] | None = None
    ) -> None:
        self.served = list(entries)
        self.note = note
        self.proof = proof

    def _tree(self) -> MerkleTree:
        tree = MerkleTree()
        tree.extend(entry.leaf_hash for entry in self.served)
        return tree

    # the read surface of api.client.registry.Client

    def health(self) -> int:
        return len(self.served)

    def checkpoint(self) -> bytes:
        return self.note

    def cosigned_checkpoint(self) -> bytes:
        return with_cosignatures(self.note, list(self.pool))

    def post_cosignature(self, size: int, line: str) -> bool:
        self.posted.append((size, line))
        if line in self.pool:
            return False
        self.pool.append(line)
        return True

    def entries(self, start: int = 0, limit: int = 100, *, wait: int = 0) -> Page:
        if start > len(self.served):  # as the registry answers a page from beyond its size
            raise problem_error(
                416,
                {"type": PROBLEM_BASE + "range-not-satisfiable", "status": 416, "detail": "beyond"},
            )
        chunk = tuple(self.served[start : start + limit])
        return Page(entries=chunk, next=start + len(chunk), size=len(self.served))

    def entry_records(self, start: int = 0, limit: int = 1000) -> tuple[list[bytes], int]:
        chunk = [entry.canonical for entry in self.served[start : start + limit]]
        return chunk, start + len(chunk)

    def entry(self, index: int) -> Entry:
        return self.served[index]

    def tile(self, path: str) -> bytes:
        try:
            if not self.tiles:
                raise UnknownTileError(path)
            tile = tlog_tiles.parse(path)
            if tile.level is not None:
                return tlog_tiles.hash_tile(self._tree(), tile)
            start, stop = tlog_tiles.entries_range(len(self.served), tile)
            return tlog_tiles.bundle([e.canonical for e in self.served[start:stop]], start)
        except UnknownTileError:
            raise problem_error(
                404, {"type": PROBLEM_BASE + "not-found", "status": 404, "detail": path}
            ) from None

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._tree().inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self.consistency_requests.append((old, new))
        if self.proof is not None:
            return self.proof
        tree = self._tree()
        return tree.consistency_proof(old, min(new, tree.size))

    def close(self) -> None:
        pass
