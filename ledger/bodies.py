"""The body of each event kind (DESIGN 3), as strict, frozen values.

``from_dict`` rejects missing, unknown and ill-typed fields; ``to_dict`` gives back exactly the
object that was parsed (optional fields absent when None), so canonical bytes computed from the
parsed JSON and from the value always agree.

A body is refused when no reader could use it, not only when it is ill-typed: a task's ``image``
must parse with the sites' strict image-reference parser (:mod:`ledger.reference`), checked on
construction, so a task naming ``-rf:1`` or ``../../etc/passwd`` is a malformed event for the
registry (400 ``malformed-event``), for every follower and for every auditor alike. (Ledgers
written before this check may hold such a task and would no longer replay; only the demo and the
tests create ledgers so far.) Which blobs the registry must hold before it appends a body is
stated by :func:`registry_blobs`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any, ClassVar, NamedTuple, NewType, TypeVar

from crypto import KeyFormatError, PublicKey
from ledger import fields as f
from ledger.errors import FormatError, InvalidReferenceError
from ledger.reference import REFERENCE_MAX_LENGTH, parse_reference

EventId = NewType("EventId", str)

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The tasks of an analysis name few images, each many times: replaying parses each one once.
_parse_image = lru_cache(maxsize=1024)(parse_reference)
ORIGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")
E = TypeVar("E", bound=StrEnum)


class EventKind(StrEnum):
    CONSORTIUM = "consortium"
    MEMBER = "member"
    TASK = "task"
    CANCEL = "cancel"
    STATUS = "status"
    RESULT = "result"
    TRANSFER = "transfer"


class Role(StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    SITE = "site"
    AUDITOR = "auditor"


class MemberAction(StrEnum):
    ADD = "add"
    REVOKE = "revoke"
    REKEY = "rekey"  # publish or rotate the member's encryption key / file service address


class StatusState(StrEnum):
    ACCEPTED = "accepted"
    STARTED = "started"
    INTERRUPTED = "interrupted"


class ResultState(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@cache
def _members(cls: type[E]) -> dict[str, E]:
    return {member.value: member for member in cls}


def _enum(cls: type[E], value: object, where: str) -> E:
    members: dict[str, E] = _members(cls)
    member = members.get(value) if isinstance(value, str) else None
    if member is not None:
        return member
    text = f.string(value, where, max_len=32)
    allowed = ", ".join(member.value for member in cls)
    raise FormatError(f"{where}: expected one of {allowed}, found {text!r}")


def _public_key(value: object, where: str) -> str:
    text = f.string(value, where, max_len=64)
    try:
        PublicKey.from_b64(text)
    except KeyFormatError as exc:
        raise FormatError(f"{where}: {exc}") from exc
    return text


# Readers of optional fields (module-level so that parsing creates no closures).
def _timeout_s(value: object, where: str) -> int:
    return f.integer(value, where, low=1, high=86400 * 7)


def _memory_mb(value: object, where: str) -> int:
    return f.integer(value, where, low=4, high=1 << 20)


def _cpu_millis(value: object, where: str) -> int:
    return f.integer(value, where, low=1, high=1 << 20)


def _exit_code(value: object, where: str) -> int:
    return f.integer(value, where, low=-(2**31), high=2**32)


def _event_id(value: object, where: str) -> EventId:
    return EventId(f.hex64(value, where))


def _digest(value: object, where: str) -> str:
    return f.string(value, where, pattern=DIGEST, max_len=80, what="sha256:<64 hex>")


def _text200(value: object, where: str) -> str:
    return f.string(value, where, max_len=200)


def _text1000(value: object, where: str) -> str:
    return f.string(value, where, max_len=1000)


def _text2000(value: object, where: str) -> str:
    return f.string(value, where, max_len=2000)


AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
FILE_SERVICE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")


def _age_recipient(value: object, where: str) -> str:
    return f.string(
        value, where, pattern=AGE_RECIPIENT, max_len=62, what="an age X25519 recipient (age1...)"
    )


def _file_service(value: object, where: str) -> str:
    return f.string(
        value, where, pattern=FILE_SERVICE, max_len=256, what="an http(s) URL of a FileService"
    )


def _contact(out: dict[str, Any], encryption_key: str | None, file_service: str | None) -> None:
    if encryption_key is not None:
        out["encryption_key"] = encryption_key
    if file_service is not None:
        out["file_service"] = file_service


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSpec:
    name: str
    role: Role
    public_key: str  # base64 of the 32 raw Ed25519 bytes
    encryption_key: str | None = None  # age X25519 recipient results are encrypted for
    file_service: str | None = None  # where this site receives files directly

    @classmethod
    def from_dict(cls, value: object, where: str) -> MemberSpec:
        d = f.obj(value, where, ("name", "role", "public_key"), ("encryption_key", "file_service"))
        return cls(
            name=f.name(d["name"], f"{where}.name"),
            role=_enum(Role, d["role"], f"{where}.role"),
            public_key=_public_key(d["public_key"], f"{where}.public_key"),
            encryption_key=f.optional(d, "encryption_key", where, _age_recipient),
            file_service=f.optional(d, "file_service", where, _file_service),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "role": self.role.value, "public_key": self.public_key}
        _contact(out, self.encryption_key, self.file_service)
        return out


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

    def __post_init__(self) -> None:
        if self.action is MemberAction.REKEY and self.encryption_key is None:
            raise FormatError("member.body: rekey must give the new encryption_key")

    @classmethod
    def from_dict(cls, value: object, where: str) -> Member:
        d = f.obj(
            value,
            where,
            ("action", "name", "role", "public_key"),
            ("encryption_key", "file_service"),
        )
        return cls(
            action=_enum(MemberAction, d["action"], f"{where}.action"),
            name=f.name(d["name"], f"{where}.name"),
            role=_enum(Role, d["role"], f"{where}.role"),
            public_key=_public_key(d["public_key"], f"{where}.public_key"),
            encryption_key=f.optional(d, "encryption_key", where, _age_recipient),
            file_service=f.optional(d, "file_service", where, _file_service),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "action": self.action.value,
            "name": self.name,
            "role": self.role.value,
            "public_key": self.public_key,
        }
        _contact(out, self.encryption_key, self.file_service)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Optional per-task limits; each site caps them by its own configuration."""

    timeout_s: int | None = None
    memory_mb: int | None = None
    cpu_millis: int | None = None

    @classmethod
    def from_dict(cls, value: object, where: str) -> Limits:
        d = f.obj(value, where, (), ("timeout_s", "memory_mb", "cpu_millis"))
        return cls(
            timeout_s=f.optional(d, "timeout_s", where, _timeout_s),
            memory_mb=f.optional(d, "memory_mb", where, _memory_mb),
            cpu_millis=f.optional(d, "cpu_millis", where, _cpu_millis),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in (
                ("timeout_s", self.timeout_s),
                ("memory_mb", self.memory_mb),
                ("cpu_millis", self.cpu_millis),
            )
            if value is not None
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    KIND: ClassVar[EventKind] = EventKind.TASK
    image: str
    sites: tuple[str, ...]
    config: Mapping[str, Any] | None = None
    config_blob: str | None = None
    limits: Limits | None = None
    parent: EventId | None = None
    label: str | None = None
    recipient: str | None = None  # who results are encrypted for (default: the author)
    deliver: bool = False  # outputs go to the recipient site's FileService, not the registry
    inputs: tuple[EventId, ...] = ()  # earlier tasks whose files delivered here are inputs

    def __post_init__(self) -> None:
        try:
            (_parse_image if type(self.image) is str else parse_reference)(self.image)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"task.body.image: {exc}") from exc
        if self.deliver and self.recipient is None:
            raise FormatError("task.body: deliver needs a recipient site")
        if (self.config is None) == (self.config_blob is None):
            raise FormatError("task.body: give exactly one of config (inline) and config_blob")
        if not self.sites:
            raise FormatError("task.body.sites: name at least one site")
        if len(set(self.sites)) != len(self.sites):
            raise FormatError(f"task.body.sites: a site is named twice in {list(self.sites)}")

    @classmethod
    def from_dict(cls, value: object, where: str) -> Task:
        d = f.obj(
            value,
            where,
            ("image", "sites"),
            (
                "config",
                "config_blob",
                "limits",
                "parent",
                "label",
                "recipient",
                "deliver",
                "inputs",
            ),
        )
        deliver = d.get("deliver", False)
        if not isinstance(deliver, bool) or ("deliver" in d and deliver is False):
            raise FormatError(f"{where}.deliver: expected true (or leave it out)")
        if d.get("inputs") == []:
            raise FormatError(f"{where}.inputs: name at least one task (or leave it out)")
        config = d.get("config")
        if config is not None and not isinstance(config, dict):
            raise FormatError(f"{where}.config: expected an object, found {f.describe(config)}")
        return cls(
            image=f.string(d["image"], f"{where}.image", max_len=REFERENCE_MAX_LENGTH),
            sites=f.array(d["sites"], f"{where}.sites", f.name, max_items=256),
            config=config,
            config_blob=f.optional(d, "config_blob", where, f.hex64),
            limits=f.optional(d, "limits", where, Limits.from_dict),
            parent=f.optional(d, "parent", where, _event_id),
            label=f.optional(d, "label", where, _text200),
            recipient=f.optional(d, "recipient", where, f.name),
            deliver=deliver,
            inputs=f.array(d.get("inputs", []), f"{where}.inputs", _event_id, max_items=64),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image, "sites": list(self.sites)}
        if self.config is not None:
            out["config"] = self.config
        if self.config_blob is not None:
            out["config_blob"] = self.config_blob
        if self.limits is not None:
            out["limits"] = self.limits.to_dict()
        if self.parent is not None:
            out["parent"] = self.parent
        if self.label is not None:
            out["label"] = self.label
        if self.recipient is not None:
            out["recipient"] = self.recipient
        if self.deliver:
            out["deliver"] = True
        if self.inputs:
            out["inputs"] = list(self.inputs)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    KIND: ClassVar[EventKind] = EventKind.CANCEL
    task: EventId
    reason: str | None = None

    @classmethod
    def from_dict(cls, value: object, where: str) -> Cancel:
        d = f.obj(value, where, ("task",), ("reason",))
        return cls(
            task=EventId(f.hex64(d["task"], f"{where}.task")),
            reason=f.optional(d, "reason", where, _text1000),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    KIND: ClassVar[EventKind] = EventKind.STATUS
    task: EventId
    state: StatusState
    reason: str | None = None

    @classmethod
    def from_dict(cls, value: object, where: str) -> Status:
        d = f.obj(value, where, ("task", "state"), ("reason",))
        return cls(
            task=EventId(f.hex64(d["task"], f"{where}.task")),
            state=_enum(StatusState, d["state"], f"{where}.state"),
            reason=f.optional(d, "reason", where, _text1000),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task, "state": self.state.value}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobRef:
    """A content-addressed blob: its SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int

    @classmethod
    def from_dict(cls, value: object, where: str) -> BlobRef:
        d = f.obj(value, where, ("sha256", "size"))
        return cls(
            sha256=f.hex64(d["sha256"], f"{where}.sha256"),
            size=f.integer(d["size"], f"{where}.size"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


OUTPUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """One output: its name, and the SHA-256 and size of the stored bytes (the ciphertext when
    the task has a recipient). ``delivered_to`` names the site whose FileService received it
    instead of the registry."""

    name: str
    sha256: str
    size: int
    delivered_to: str | None = None

    @classmethod
    def from_dict(cls, value: object, where: str) -> Output:
        d = f.obj(value, where, ("name", "sha256", "size"), ("delivered_to",))
        return cls(
            name=f.string(
                d["name"],
                f"{where}.name",
                pattern=OUTPUT_NAME,
                max_len=128,
                what="a file name of A-Z, a-z, 0-9, '.', '_', '-'",
            ),
            sha256=f.hex64(d["sha256"], f"{where}.sha256"),
            size=f.integer(d["size"], f"{where}.size"),
            delivered_to=f.optional(d, "delivered_to", where, f.name),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "size": self.size}
        if self.delivered_to is not None:
            out["delivered_to"] = self.delivered_to
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    KIND: ClassVar[EventKind] = EventKind.RESULT
    task: EventId
    state: ResultState
    outputs: tuple[Output, ...] = ()
    exit_code: int | None = None
    image_digest: str | None = None
    started: str | None = None
    finished: str | None = None
    log: BlobRef | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise FormatError("result.body.outputs: an output name appears twice")

    @classmethod
    def from_dict(cls, value: object, where: str) -> Result:
        d = f.obj(
            value,
            where,
            ("task", "state", "outputs"),
            ("exit_code", "image_digest", "started", "finished", "log", "reason"),
        )
        return cls(
            task=EventId(f.hex64(d["task"], f"{where}.task")),
            state=_enum(ResultState, d["state"], f"{where}.state"),
            outputs=f.array(d["outputs"], f"{where}.outputs", Output.from_dict, max_items=1000),
            exit_code=f.optional(d, "exit_code", where, _exit_code),
            image_digest=f.optional(
                d,
                "image_digest",
                where,
                _digest,
            ),
            started=f.optional(d, "started", where, f.timestamp),
            finished=f.optional(d, "finished", where, f.timestamp),
            log=f.optional(d, "log", where, BlobRef.from_dict),
            reason=f.optional(d, "reason", where, _text2000),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "state": self.state.value,
            "outputs": [o.to_dict() for o in self.outputs],
        }
        for key in ("exit_code", "image_digest", "started", "finished", "reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.log is not None:
            out["log"] = self.log.to_dict()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    KIND: ClassVar[EventKind] = EventKind.TRANSFER
    sender: str
    recipient: str
    task: EventId
    sha256: str
    size: int

    @classmethod
    def from_dict(cls, value: object, where: str) -> Transfer:
        d = f.obj(value, where, ("sender", "recipient", "task", "sha256", "size"))
        return cls(
            sender=f.name(d["sender"], f"{where}.sender"),
            recipient=f.name(d["recipient"], f"{where}.recipient"),
            task=EventId(f.hex64(d["task"], f"{where}.task")),
            sha256=f.hex64(d["sha256"], f"{where}.sha256"),
            size=f.integer(d["size"], f"{where}.size"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "recipient": self.recipient,
            "task": self.task,
            "sha256": self.sha256,
            "size": self.size,
        }


Body = Consortium | Member | Task | Cancel | Status | Result | Transfer

BODY_TYPES: dict[EventKind, type[Body]] = {
    EventKind.CONSORTIUM: Consortium,
    EventKind.MEMBER: Member,
    EventKind.TASK: Task,
    EventKind.CANCEL: Cancel,
    EventKind.STATUS: Status,
    EventKind.RESULT: Result,
    EventKind.TRANSFER: Transfer,
}


class NamedBlob(NamedTuple):
    """A blob a body names: where in the body, its SHA-256, and its size (None: not stated)."""

    where: str
    sha256: str
    size: int | None


def registry_blobs(body: Body) -> tuple[NamedBlob, ...]:
    """The blobs ``body`` names that live in the registry's blob store, which must hold each one
    before it appends the event (DESIGN 3: blobs are uploaded before the event that names them).

    They are a task's ``config_blob`` and a result's ``log`` and outputs, except outputs with
    ``delivered_to``: those went to a site's FileService and the registry never sees them. A
    task's ``inputs`` name earlier tasks, not blobs, and a ``transfer`` records a file a
    FileService received: neither is the registry's to hold.
    """
    if isinstance(body, Task):
        if body.config_blob is None:
            return ()
        return (NamedBlob("task.body.config_blob", body.config_blob, None),)
    if isinstance(body, Result):
        named = [
            NamedBlob(f"result.body.outputs[{i}] ({o.name})", o.sha256, o.size)
            for i, o in enumerate(body.outputs)
            if o.delivered_to is None
        ]
        if body.log is not None:
            named.append(NamedBlob("result.body.log", body.log.sha256, body.log.size))
        return tuple(named)
    return ()
