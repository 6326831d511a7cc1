"""The members file ``pht init --members FILE`` reads, and the key arguments ``pht member`` takes.

A JSON array; each member is an object::

    {"name": "ana", "role": "researcher", "public_key_file": "ana.pub",
     "encryption_key_file": "ana.age.pub", "organization": "umc-a"}

- ``name``, ``role`` (admin, researcher, site, auditor, reviewer) and exactly one of
  ``public_key`` (the base64 of the raw Ed25519 key, or a PEM document) or ``public_key_file``
  (a path, relative to the members file, of ``NAME.pub``).
- Optional ``encryption_key`` (an age recipient ``age1...``, what results for the member are
  encrypted for) or ``encryption_key_file``: a file holding a recipient (``NAME.age.pub``) or an
  age identity (``NAME.age``, mode 0600), from which the recipient is derived.
- Optional ``organization`` (a name like ``umc-utrecht``; algorithm review counts approvals by
  distinct organizations; a member without one is its own), ``file_service`` (a site's
  FileService URL) and ``witness_key`` (its C2SP cosignature/v1 verifier key).

Unknown fields are named, with the closest known field when there is one. Every error names the
member by its index in the file (counting from 0) and its name.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

from cli.errors import CliError
from crypto import CryptoError, PublicKey, SigningKey
from crypto.age import AgeRecipient, load_identity
from ledger.canonical import parse_json
from ledger.errors import LedgerError
from ledger.membership import MemberSpec

FIELDS = (
    "name",
    "role",
    "public_key",
    "public_key_file",
    "encryption_key",
    "encryption_key_file",
    "organization",
    "file_service",
    "witness_key",
)
MAX_RECIPIENT_FILE = 4096


def read_members(path: Path, admin: SigningKey, admin_name: str) -> list[dict[str, Any]]:
    """The members file as genesis member objects (each one checked as the ledger will), with
    the admin among them (first, under ``admin_name``, when the file does not list its key)."""
    try:
        value = parse_json(path.read_bytes(), what=f"members file {path}")
    except OSError as exc:
        raise CliError(f"cannot read members file {path}: {exc.strerror}") from exc
    if not isinstance(value, list):
        raise CliError(f"{path}: expected a JSON array of members, found {type(value).__name__}")
    members = [member_spec(item, n, path) for n, item in enumerate(value)]
    own = [m for m in members if m["public_key"] == admin.public.b64()]
    if own and own[0]["role"] != "admin":
        raise CliError(
            f"{path}: the admin key is listed as {own[0]['name']!r} with role {own[0]['role']}, "
            "expected role admin"
        )
    if not own:
        if any(m["name"] == admin_name for m in members):
            raise CliError(
                f"{path}: the admin key is not listed and the name {admin_name!r} is taken; "
                "list the admin or pass --admin-name"
            )
        members.insert(0, {"name": admin_name, "role": "admin", "public_key": admin.public.b64()})
    return members


def member_spec(item: object, n: int, path: Path) -> dict[str, Any]:
    """Member ``n`` of the file as the genesis holds it; a :class:`CliError` naming the field."""
    where = f"{path}: member {n}"
    if not isinstance(item, dict):
        raise CliError(f"{where}: expected an object, found {type(item).__name__}")
    if isinstance(item.get("name"), str):
        where = f"{where} ({item['name'][:64]!r})"
    unknown = sorted(k for k in item if k not in FIELDS)
    if unknown:
        raise CliError(f"{where}: {'; '.join(_unknown(k) for k in unknown)}")
    missing = [k for k in ("name", "role") if k not in item]
    if ("public_key" in item) == ("public_key_file" in item):
        missing.append("public_key or public_key_file (one of them)")
    if missing:
        raise CliError(f"{where}: missing {', '.join(missing)}")
    if "encryption_key" in item and "encryption_key_file" in item:
        raise CliError(f"{where}: give encryption_key or encryption_key_file, not both")
    spec: dict[str, Any] = {"name": item["name"], "role": item["role"]}
    try:
        if "public_key_file" in item:
            spec["public_key"] = PublicKey.load(_relative(path, item, "public_key_file")).b64()
        elif isinstance(item["public_key"], str):
            spec["public_key"] = PublicKey.from_text(item["public_key"]).b64()
        else:
            raise CliError(f"{where}: public_key must be a string")
        if "encryption_key_file" in item:
            file = _relative(path, item, "encryption_key_file")
            spec["encryption_key"] = recipient_of_file(file)
        elif "encryption_key" in item:
            spec["encryption_key"] = item["encryption_key"]
    except CryptoError as exc:
        raise CliError(f"{where}: {exc}") from exc
    for field, key in (("organization", "org"), ("file_service", None), ("witness_key", None)):
        if field in item:
            spec[key or field] = item[field]
    try:  # exactly the checks the genesis gets, under the file's own index
        MemberSpec.from_dict(spec, "member")
    except LedgerError as exc:
        message = str(exc).removeprefix("member.").replace("org:", "organization:", 1)
        raise CliError(f"{where}: {message}") from exc
    if spec["role"] == "reviewer" and "org" not in spec:
        print(f"{where}: warning: {orgless_reviewer(str(spec['name']))}", file=sys.stderr)
    return spec


def _unknown(field: str) -> str:
    close = difflib.get_close_matches(field, FIELDS, n=1, cutoff=0.5)
    if field == "org":
        close = ["organization"]
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(FIELDS)})"
    return f"unknown field {field[:60]!r}{hint}"


def _relative(path: Path, item: dict[str, Any], field: str) -> Path:
    value = item[field]
    if not isinstance(value, str) or not value:
        raise CliError(f"{path}: {field} must be a file name, found {value!r}")
    return path.parent / value


def recipient_of_file(path: Path) -> str:
    """The age recipient in ``path``: a recipient file (``NAME.age.pub``, one ``age1...`` line)
    or an identity file (``NAME.age``), whose recipient is derived from it."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECIPIENT_FILE + 1)
    except OSError as exc:
        raise CliError(f"cannot read encryption key file {path}: {exc.strerror}") from exc
    text = data.decode("ascii", errors="replace")
    if "AGE-SECRET-KEY-" in text:
        return load_identity(path).recipient.to_string()
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if len(data) > MAX_RECIPIENT_FILE or len(keys) != 1:
        raise CliError(
            f"{path}: expected one age recipient (age1...) or an age identity, "
            f"found {len(keys)} line(s)"
        )
    return AgeRecipient.from_string(keys[0]).to_string()


def encryption_key_argument(text: str) -> str:
    """``--encryption-key``'s value: a recipient ``age1...``, or a file holding one (or an
    identity, from which it is derived)."""
    if text.startswith("age1"):
        return AgeRecipient.from_string(text).to_string()
    path = Path(text)
    if path.exists():
        return recipient_of_file(path)
    raise CliError(
        f"--encryption-key {text!r} is neither an age recipient (age1...) nor an existing file "
        "(NAME.age.pub or NAME.age)"
    )


def orgless_reviewer(name: str) -> str:
    """The warning for a reviewer added without an organization: approvals count by distinct
    organizations, and an organization cannot be given later, so say so up front."""
    return (
        f"reviewer {name!r} has no organization, so it counts as one of its own: two such "
        "reviewers from one hospital would meet a policy of two organizations"
    )
