"""The bodies of a task's life: ``task``, ``cancel``, ``status``, ``result``, ``transfer``.

A task's ``image`` must parse with the sites' strict image-reference parser
(:mod:`ledger.reference`), checked on construction, so a task naming ``-rf:1`` or
``../../etc/passwd`` is a malformed event for the registry (400 ``malformed-event``), for every
follower and for every auditor alike. (Ledgers written before this check may hold such a task and
would no longer replay; only the demo and the tests create ledgers so far.) :attr:`Task.digest`
is the digest a task pins (``name@sha256:...``), the key of algorithm review (DESIGN 11).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from ledger import fields as f
from ledger.errors import FormatError, InvalidReferenceError
from ledger.kinds import (
    EventId,
    EventKind,
    ResultState,
    StatusState,
    digest,
    enum_value,
    event_id,
    text200,
    text1000,
    text2000,
)
from ledger.reference import REFERENCE_MAX_LENGTH, parse_reference

# The tasks of an analysis name few images, each many times: replaying parses each one once.
_parse_image = lru_cache(maxsize=1024)(parse_reference)


def image_digest(image: str) -> str | None:
    """The digest of a reference the strict parser accepted (``name@sha256:...``), or None."""
    _, at, pinned = image.partition("@")
    return pinned if at else None


# Readers of optional fields (module-level so that parsing creates no closures).
def _timeout_s(value: object, where: str) -> int:
    return f.integer(value, where, low=1, high=86400 * 7)


def _memory_mb(value: object, where: str) -> int:
    return f.integer(value, where, low=4, high=1 << 20)


def _cpu_millis(value: object, where: str) -> int:
    return f.integer(value, where, low=1, high=1 << 20)


def _exit_code(value: object, where: str) -> int:
    return f.integer(value, where, low=-(2**31), high=2**32)


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

    @property
    def digest(self) -> str | None:
        """The ``sha256:...`` digest the image is pinned to, or None for a tag alone (the image
        parsed strictly on construction, so whatever follows ``@`` is a digest)."""
        return image_digest(self.image)

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
            parent=f.optional(d, "parent", where, event_id),
            label=f.optional(d, "label", where, text200),
            recipient=f.optional(d, "recipient", where, f.name),
            deliver=deliver,
            inputs=f.array(d.get("inputs", []), f"{where}.inputs", event_id, max_items=64),
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
            reason=f.optional(d, "reason", where, text1000),
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
            state=enum_value(StatusState, d["state"], f"{where}.state"),
            reason=f.optional(d, "reason", where, text1000),
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
            state=enum_value(ResultState, d["state"], f"{where}.state"),
            outputs=f.array(d["outputs"], f"{where}.outputs", Output.from_dict, max_items=1000),
            exit_code=f.optional(d, "exit_code", where, _exit_code),
            image_digest=f.optional(
                d,
                "image_digest",
                where,
                digest,
            ),
            started=f.optional(d, "started", where, f.timestamp),
            finished=f.optional(d, "finished", where, f.timestamp),
            log=f.optional(d, "log", where, BlobRef.from_dict),
            reason=f.optional(d, "reason", where, text2000),
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


# A site that kept only the end of a container's log (its ``log_max_bytes``) starts the stored
# log with this line, so whoever reads the log learns that its beginning was dropped.
LOG_TRUNCATED = b"[pht: the site kept only the end of this log; earlier output was dropped]\n"
