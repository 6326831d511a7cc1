"""Deterministic consortia, keys and events for ledger tests (pure values, no I/O)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from crypto import SigningKey
from ledger.bodies import Body, Consortium, MemberSpec, Role
from ledger.checkpoint import verifier_key
from ledger.cosignature import witness_key
from ledger.events import ZERO_HASH, Entry, EntryHash, SignedEvent, format_time, new_event

ORIGIN = "pht.example/test"


def key(name: str) -> SigningKey:
    seed = name.encode().ljust(32, b"\x00")[:32]
    return SigningKey.from_seed(seed)


# Every world's clock starts at the second the tests started: two worlds build equal histories
# entry for entry, and a registry on the real clock finds their events inside its time window
# (which admits events up to a day old).
SESSION_START = datetime.now(UTC).replace(microsecond=0)


# With ``reviewers=True``: researchers and reviewers of named organizations (ray has none, so
# he is his own organization).
REVIEW_MEMBERS = [
    ("bella", Role.RESEARCHER, "org-b"),
    ("rita", Role.REVIEWER, "org-a"),
    ("rob", Role.REVIEWER, "org-b"),
    ("ruth", Role.REVIEWER, "org-c"),
    ("rick", Role.REVIEWER, "org-c"),
    ("ray", Role.REVIEWER, None),
]


@dataclass
class World:
    """A consortium with admin, researcher, auditor and three sites; builds chained entries.

    Its clock starts at ``start`` (by default :data:`SESSION_START`) and advances a millisecond
    per value drawn; pass ``start`` for other times. ``reviewers=True`` adds the members of
    :data:`REVIEW_MEMBERS` and puts alice in organization ``org-a``.
    """

    origin: str = ORIGIN
    start: datetime = SESSION_START
    log_key: SigningKey = field(default_factory=lambda: key("log"))
    keys: dict[str, SigningKey] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    reviewers: bool = False
    witnesses: bool = False  # the three sites publish witness keys in the genesis
    orgs: dict[str, str] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for name, role in [
            ("admin", Role.ADMIN),
            ("alice", Role.RESEARCHER),
            ("audrey", Role.AUDITOR),
            ("site-a", Role.SITE),
            ("site-b", Role.SITE),
            ("site-c", Role.SITE),
        ]:
            self.keys[name] = key(name)
            self.roles[name] = role
        if self.reviewers:
            self.orgs["alice"] = "org-a"
            for name, role, org in REVIEW_MEMBERS:
                self.keys[name] = key(name)
                self.roles[name] = role
                if org is not None:
                    self.orgs[name] = org

    def clock(self) -> str:
        return format_time(self.start + timedelta(milliseconds=next(self._counter)))

    def nonce(self) -> str:
        return f"{next(self._counter):032x}"

    def genesis_body(self) -> Consortium:
        return Consortium(
            name="Test consortium",
            origin=self.origin,
            log_key=verifier_key(self.origin, self.log_key.public),
            members=tuple(
                MemberSpec(
                    name=n,
                    role=self.roles[n],
                    public_key=self.keys[n].public.b64(),
                    org=self.orgs.get(n),
                    witness_key=self.witness_key_text(n)
                    if self.witnesses and self.roles[n] is Role.SITE
                    else None,
                )
                for n in self.keys
            ),
        )

    @property
    def log_key_text(self) -> str:
        return verifier_key(self.origin, self.log_key.public)

    @staticmethod
    def witness_signer(name: str) -> SigningKey:
        """The witness key of member ``name`` (never its signing key)."""
        return key(name + "/witness")

    def witness_key_text(self, name: str) -> str:
        return witness_key(name, self.witness_signer(name).public)

    def witness_policy(
        self, names: tuple[str, ...], quorum: int | str, *, log_key: str | None = None
    ) -> str:
        """tlog-policy text: these members as witnesses, ``quorum`` of them required (``log_key``:
        the registry's, when ``pht init`` made it rather than this world)."""
        lines = [f"log {log_key or self.log_key_text}"]
        lines += [f"witness {n} {self.witness_key_text(n)}" for n in names]
        lines += [f"group sites {quorum} {' '.join(names)}", "quorum sites"]
        return "\n".join(lines) + "\n"

    def sign(self, author: str, body: Body, *, ledger: str | None = None) -> SignedEvent:
        signer = self.keys[author] if author in self.keys else key(author)
        event = new_event(
            body,
            ledger=ledger or self.origin,
            author=signer.key_id,
            clock=self.clock,
            nonce=self.nonce,
        )
        return SignedEvent.sign(event, signer)

    def entry(self, signed: SignedEvent) -> Entry:
        """The next entry of the chain around ``signed`` (not recorded until ``push``)."""
        prev = self.entries[-1].hash if self.entries else ZERO_HASH
        return Entry(
            index=len(self.entries), prev=EntryHash(prev), received=self.clock(), event=signed
        )

    def push(self, signed: SignedEvent) -> Entry:
        entry = self.entry(signed)
        self.entries.append(entry)
        return entry
