"""The consortium's witness policy: C2SP ``tlog-policy`` text, parsed strictly, and its quorum.

The text (set by the admin in a ``witness_policy`` event, DESIGN 12) is lines of::

    log <vkey> [<url>]                     the log's note verifier key (type 0x01)
    witness <name> <vkey> [<url>]          a witness and its cosignature/v1 key (type 0x04); with
                                           a URL, a C2SP tlog-witness the registry asks itself
    group <name> <all|any|N> <name>...     N of the named witnesses or groups
    quorum <name|none>                     the witness or group whose cosignature is required

Blank lines and ``#`` comments are ignored. Witnesses and groups share one namespace (``none``
is reserved), a group names only what was defined above it, each name is used in at most one
group (so the parts of a group are distinct), and ``quorum`` appears exactly once, last of the
definitions it names. ``quorum none`` means no cosignature is required.

In this ledger a witness's ``name`` is the member that published the key, and its key must be
that member's ``witness_key`` (the rules check it; see :mod:`ledger.witness_rules`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ledger.checkpoint import Checkpoint, parse_verifier_key
from ledger.cosignature import WitnessKey, cosigned_by, parse_witness_key
from ledger.errors import CheckpointError, QuorumError, WitnessPolicyError

MAX_POLICY_SIZE = 16 * 1024
MAX_WITNESSES = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_COUNT = re.compile(r"[1-9][0-9]{0,2}")
_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~\-/]*)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    name: str
    threshold: int
    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessPolicy:
    """A parsed policy: the log key, the witnesses by name, the groups, the quorum's name."""

    text: str
    log_key: str
    witnesses: Mapping[str, WitnessKey]
    urls: Mapping[str, str]  # witness name -> tlog-witness submission prefix (those that have one)
    groups: Mapping[str, Group]
    quorum: str | None  # None: "quorum none"

    def satisfied(self, cosigners: frozenset[str] | set[str], name: str | None = None) -> bool:
        """Whether the witnesses ``cosigners`` (by name) meet the quorum (or group ``name``)."""
        name = self.quorum if name is None else name
        if name is None:
            return True
        if name in self.witnesses:
            return name in cosigners
        group = self.groups[name]
        return sum(self.satisfied(cosigners, part) for part in group.parts) >= group.threshold

    def progress(self, cosigners: frozenset[str] | set[str]) -> tuple[int, int]:
        """(parts met, parts needed) of the top-level quorum, for "waiting for witnesses"."""
        if self.quorum is None:
            return 0, 0
        if self.quorum in self.witnesses:
            return int(self.quorum in cosigners), 1
        group = self.groups[self.quorum]
        return sum(self.satisfied(cosigners, p) for p in group.parts), group.threshold


def cosigners(note: bytes, checkpoint: Checkpoint, policy: WitnessPolicy) -> frozenset[str]:
    """The policy's witnesses (by name) with a verifying cosignature on ``checkpoint``."""
    return cosigned_by(note, checkpoint, policy.witnesses)


def require_quorum(note: bytes, checkpoint: Checkpoint, policy: WitnessPolicy) -> frozenset[str]:
    """The cosigners of ``checkpoint`` if they meet the policy's quorum; else
    :class:`QuorumError` saying how many of the quorum's parts have cosigned."""
    names = cosigners(note, checkpoint, policy)
    if policy.satisfied(names):
        return names
    have, need = policy.progress(names)
    raise QuorumError(
        f"{have} of {need} witnesses required have cosigned the checkpoint of size "
        f"{checkpoint.size} ({', '.join(sorted(names)) or 'none'})",
        have=have,
        need=need,
        size=checkpoint.size,
    )


@functools.lru_cache(maxsize=32)
def parsed_policy(text: str) -> WitnessPolicy:
    """:func:`parse_policy`, memoized: a ledger holds few policies, read at every commit."""
    return parse_policy(text)


def parse_policy(text: object) -> WitnessPolicy:
    """Parse tlog-policy ``text``; :class:`WitnessPolicyError` names the line at fault."""
    if not isinstance(text, str):
        raise WitnessPolicyError(f"a witness policy must be text, found {type(text).__name__}")
    if len(text.encode()) > MAX_POLICY_SIZE:
        raise WitnessPolicyError(f"a witness policy must be at most {MAX_POLICY_SIZE} bytes")
    log_key: str | None = None
    witnesses: dict[str, WitnessKey] = {}
    urls: dict[str, str] = {}
    groups: dict[str, Group] = {}
    used: set[str] = set()
    quorum: str | None = None
    seen_quorum = False
    for number, raw in enumerate(text.split("\n"), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        where = f"witness policy line {number}"
        keyword, args = words[0], words[1:]
        if seen_quorum:
            raise WitnessPolicyError(f"{where}: nothing may follow the quorum line")
        if keyword == "log":
            if log_key is not None or len(args) not in (1, 2):
                raise WitnessPolicyError(f"{where}: exactly one 'log <vkey> [<url>]' line")
            try:
                parse_verifier_key(args[0])
            except CheckpointError as exc:
                raise WitnessPolicyError(f"{where}: {exc}") from exc
            log_key = args[0]
        elif keyword == "witness":
            _witness(args, witnesses, groups, where)
            if len(args) == 3:
                urls[args[0]] = _url(args[2], where)
        elif keyword == "group":
            _group(args, witnesses, groups, used, where)
        elif keyword == "quorum":
            if len(args) != 1:
                raise WitnessPolicyError(f"{where}: must be 'quorum <name>'")
            if args[0] != "none" and args[0] not in witnesses and args[0] not in groups:
                raise WitnessPolicyError(f"{where}: quorum {args[0]!r} is not defined")
            quorum = None if args[0] == "none" else args[0]
            seen_quorum = True
        else:
            raise WitnessPolicyError(f"{where}: unknown keyword {keyword[:20]!r}")
    if log_key is None:
        raise WitnessPolicyError("a witness policy needs a 'log <vkey>' line")
    if not seen_quorum:
        raise WitnessPolicyError("a witness policy needs a 'quorum <name>' line")
    return WitnessPolicy(
        text=text,
        log_key=log_key,
        witnesses=MappingProxyType(witnesses),
        urls=MappingProxyType(urls),
        groups=MappingProxyType(groups),
        quorum=quorum,
    )


def _witness(
    args: list[str], witnesses: dict[str, WitnessKey], groups: dict[str, Group], where: str
) -> None:
    if len(args) not in (2, 3):
        raise WitnessPolicyError(f"{where}: must be 'witness <name> <vkey> [<url>]'")
    name = _new_name(args[0], witnesses, groups, where)
    try:
        witnesses[name] = parse_witness_key(args[1])
    except CheckpointError as exc:
        raise WitnessPolicyError(f"{where}: {exc}") from exc
    if len(witnesses) > MAX_WITNESSES:
        raise WitnessPolicyError(f"{where}: at most {MAX_WITNESSES} witnesses")


def _url(text: str, where: str) -> str:
    """A witness's submission prefix: http(s)://host[:port][/path], no query, at most 512 bytes."""
    if len(text) > 512 or not _URL.fullmatch(text):
        raise WitnessPolicyError(
            f"{where}: the witness URL must be http(s)://host[:port][/path], found {text[:80]!r}"
        )
    return text.rstrip("/")


def _group(
    args: list[str],
    witnesses: dict[str, WitnessKey],
    groups: dict[str, Group],
    used: set[str],
    where: str,
) -> None:
    if len(args) < 3:
        raise WitnessPolicyError(f"{where}: must be 'group <name> <all|any|N> <name>...'")
    name = _new_name(args[0], witnesses, groups, where)
    parts = tuple(args[2:])
    for part in parts:
        if part not in witnesses and part not in groups:
            raise WitnessPolicyError(f"{where}: {part!r} is not defined above")
        if part in used:
            raise WitnessPolicyError(f"{where}: {part!r} is already in a group")
        used.add(part)
    threshold = _threshold(args[1], len(parts), where)
    groups[name] = Group(name=name, threshold=threshold, parts=parts)


def _new_name(
    name: str, witnesses: Mapping[str, object], groups: Mapping[str, object], where: str
) -> str:
    if not _NAME.fullmatch(name) or name == "none":
        raise WitnessPolicyError(f"{where}: {name[:40]!r} is not a witness or group name")
    if name in witnesses or name in groups:
        raise WitnessPolicyError(f"{where}: {name!r} is defined twice")
    return name


def _threshold(text: str, parts: int, where: str) -> int:
    if text == "all":
        return parts
    if text == "any":
        return 1
    if not _COUNT.fullmatch(text) or not 1 <= int(text) <= parts:
        raise WitnessPolicyError(
            f"{where}: the threshold must be all, any or 1..{parts}, found {text[:20]!r}"
        )
    return int(text)
