"""The bodies that found and change the consortium: ``consortium`` and ``member`` (DESIGN 3, 11).

A member may carry an ``org``, the organization it belongs to (a member name's grammar, e.g.
``umc-utrecht``). It matters to algorithm review: a reviewer may not review a submission made by
a member of its own organization, and approvals count by distinct organizations. ``org`` is
optional, so a ledger written before organizations existed keeps working: a member without one
is its own organization. It is given when the member is added (in the genesis or a ``member``
``add``) and never changes; a ``revoke`` or ``rekey`` carrying one is malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from crypto import KeyFormatError, PublicKey
from ledger import fields as f
from ledger.cosignature import parse_witness_key
from ledger.errors import CheckpointError, FormatError, LedgerError
from ledger.kinds import EventKind, MemberAction, Role, enum_value
from ledger.witness_policy import parse_policy

ORIGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")
AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
FILE_SERVICE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")


def _public_key(value: object, where: str) -> str:
    text = f.string(value, where, max_len=64)
    try:
        PublicKey.from_b64(text)
    except KeyFormatError as exc:
        raise FormatError(f"{where}: {exc}") from exc
    return text


def _age_recipient(value: object, where: str) -> str:
    return f.string(
        value, where, pattern=AGE_RECIPIENT, max_len=62, what="an age X25519 recipient (age1...)"
    )


def _file_service(value: object, where: str) -> str:
    return f.string(
        value, where, pattern=FILE_SERVICE, max_len=256, what="an http(s) URL of a FileService"
    )


def _witness_key(value: object, where: str) -> str:
    text = f.string(value, where, max_len=300)
    try:
        parse_witness_key(text)
    except CheckpointError as exc:
        raise FormatError(f"{where}: {exc}") from exc
    return text


def _own_witness_key(public_key: str, witness_key: str | None, where: str) -> None:
    """A witness key is the member's own cosigning key, never its signing key (DESIGN 12)."""
    if witness_key is not None and parse_witness_key(witness_key).public_key == PublicKey.from_b64(
        public_key
    ):
        raise FormatError(f"{where}.witness_key: must not be the member's signing key")


def _extras(
    out: dict[str, Any],
    encryption_key: str | None,
    file_service: str | None,
    org: str | None,
    witness_key: str | None = None,
) -> dict[str, Any]:
    if witness_key is not None:
        out["witness_key"] = witness_key
    if encryption_key is not None:
        out["encryption_key"] = encryption_key
    if file_service is not None:
        out["file_service"] = file_service
    if org is not None:
        out["org"] = org
    return out


_OPTIONAL = ("encryption_key", "file_service", "org", "witness_key")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSpec:
    name: str
    role: Role
    public_key: str  # base64 of the 32 raw Ed25519 bytes
    encryption_key: str | None = None  # age X25519 recipient results are encrypted for
    file_service: str | None = None  # where this site receives files directly
    org: str | None = None  # the member's organization (None: it is its own)
    witness_key: str | None = None  # its C2SP cosignature/v1 verifier key, if it witnesses

    @classmethod
    def from_dict(cls, value: object, where: str) -> MemberSpec:
        d = f.obj(value, where, ("name", "role", "public_key"), _OPTIONAL)
        _own_witness_key(d["public_key"], d.get("witness_key"), where)
        return cls(
            name=f.name(d["name"], f"{where}.name"),
            role=enum_value(Role, d["role"], f"{where}.role"),
            public_key=_public_key(d["public_key"], f"{where}.public_key"),
            encryption_key=f.optional(d, "encryption_key", where, _age_recipient),
            file_service=f.optional(d, "file_service", where, _file_service),
            org=f.optional(d, "org", where, f.name),
            witness_key=f.optional(d, "witness_key", where, _witness_key),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "role": self.role.value, "public_key": self.public_key}
        return _extras(out, self.encryption_key, self.file_service, self.org, self.witness_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Consortium:
    KIND: ClassVar[EventKind] = EventKind.CONSORTIUM
    name: str
    origin: str
    log_key: str  # C2SP note verifier key of the registry
    members: tuple[MemberSpec, ...]

    @classmethod
    def from_dict(cls, value: object, where: str) -> Consortium:
        d = f.obj(value, where, ("name", "origin", "log_key", "members"))
        return cls(
            name=f.string(d["name"], f"{where}.name", max_len=200),
            origin=f.string(d["origin"], f"{where}.origin", pattern=ORIGIN, what="a log origin"),
            log_key=f.string(d["log_key"], f"{where}.log_key", max_len=512),
            members=f.array(d["members"], f"{where}.members", MemberSpec.from_dict),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "log_key": self.log_key,
            "members": [m.to_dict() for m in self.members],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    KIND: ClassVar[EventKind] = EventKind.MEMBER
    action: MemberAction
    name: str
    role: Role
    public_key: str
    encryption_key: str | None = None
    file_service: str | None = None
    org: str | None = None  # only when added: an organization never changes
    witness_key: str | None = None  # on add or rekey: the member's cosignature/v1 key

    def __post_init__(self) -> None:
        if (
            self.action is MemberAction.REKEY
            and self.encryption_key is None
            and self.witness_key is None
        ):
            raise FormatError("member.body: rekey must give the new encryption_key or witness_key")
        if self.org is not None and self.action is not MemberAction.ADD:
            raise FormatError(
                f"member.body: org is given only when a member is added, not on {self.action}"
            )

    @classmethod
    def from_dict(cls, value: object, where: str) -> Member:
        d = f.obj(value, where, ("action", "name", "role", "public_key"), _OPTIONAL)
        _own_witness_key(d["public_key"], d.get("witness_key"), where)
        return cls(
            action=enum_value(MemberAction, d["action"], f"{where}.action"),
            name=f.name(d["name"], f"{where}.name"),
            role=enum_value(Role, d["role"], f"{where}.role"),
            public_key=_public_key(d["public_key"], f"{where}.public_key"),
            encryption_key=f.optional(d, "encryption_key", where, _age_recipient),
            file_service=f.optional(d, "file_service", where, _file_service),
            org=f.optional(d, "org", where, f.name),
            witness_key=f.optional(d, "witness_key", where, _witness_key),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "action": self.action.value,
            "name": self.name,
            "role": self.role.value,
            "public_key": self.public_key,
        }
        return _extras(out, self.encryption_key, self.file_service, self.org, self.witness_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessPolicySet:
    """The admin sets the consortium's witness policy: C2SP tlog-policy text (DESIGN 12)."""

    KIND: ClassVar[EventKind] = EventKind.WITNESS_POLICY
    policy: str

    def __post_init__(self) -> None:
        try:  # the body is refused unless it parses
            parse_policy(self.policy)
        except LedgerError as exc:
            raise FormatError(f"witness_policy.body.policy: {exc}") from exc

    @classmethod
    def from_dict(cls, value: object, where: str) -> WitnessPolicySet:
        d = f.obj(value, where, ("policy",))
        return cls(policy=f.string(d["policy"], f"{where}.policy", max_len=16 * 1024))

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy}
