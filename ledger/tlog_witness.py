"""The bytes of C2SP ``tlog-witness`` ``add-checkpoint``, from the log's side (pure).

A witness that speaks the standard protocol is asked by the log, rather than sending its
cosignatures itself (``POST /v1/cosignatures``): the registry posts to
``<submission prefix>/add-checkpoint`` a body of

    old <size>\\n                 the size the witness last cosigned (0 for none)
    <base64 hash>\\n ...          a consistency proof from that size (at most 63 lines; none from 0)
    \\n
    <the signed checkpoint note>

and the witness answers 200 with one or more cosignature lines (``— <name> <base64>\\n``), or
409 ``text/x.tlog.size`` with the size it last cosigned (the log asks again from there), or
another status when it refuses (400, 403, 404, 422).

Everything here parses strictly and raises :class:`ledger.errors.CosignatureError`; whether a
returned line is a valid cosignature by a witness of the policy is for
:class:`ledger.store.cosignatures.CosignatureBook` to decide, as for any other cosignature.
"""

from __future__ import annotations

import base64
import re

from ledger.errors import CosignatureError

MAX_PROOF_LINES = 63
MAX_RESPONSE = 16 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_SIZE = re.compile(rb"(0|[1-9][0-9]{0,18})\n")
_SIGNATURE_PREFIX = "\u2014 "


def add_checkpoint_body(old: int, proof: list[bytes], note: bytes) -> bytes:
    """The request body asking a witness to cosign ``note``, consistent with size ``old``."""
    if old < 0:
        raise CosignatureError(f"the old size must not be negative, found {old}")
    if len(proof) > MAX_PROOF_LINES:
        raise CosignatureError(
            f"a consistency proof has at most {MAX_PROOF_LINES} hashes, found {len(proof)}"
        )
    if old == 0 and proof:
        raise CosignatureError("the consistency proof from size 0 must be empty")
    lines = [b"old %d\n" % old] + [base64.b64encode(h) + b"\n" for h in proof]
    return b"".join(lines) + b"\n" + note


def parse_size(body: bytes) -> int:
    """The witness's latest cosigned size from a 409 ``text/x.tlog.size`` answer."""
    match = _SIZE.fullmatch(body)
    if match is None:
        raise CosignatureError(
            f"a {SIZE_CONTENT_TYPE} body must be a decimal size and a newline, found {body[:40]!r}"
        )
    return int(match.group(1))


def parse_cosignatures(body: bytes) -> list[str]:
    """The cosignature lines of a 200 answer (each ``— <name> <base64>``, newline-terminated).

    Only the shape is checked here; each line is verified when the book takes it.
    """
    if len(body) > MAX_RESPONSE:
        raise CosignatureError(f"a witness answer must be at most {MAX_RESPONSE} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CosignatureError("a witness answer must be UTF-8") from exc
    if not text.endswith("\n"):
        raise CosignatureError("a witness answer must end with a newline")
    lines = text[:-1].split("\n")
    for line in lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CosignatureError(
                f"a witness answer must be cosignature lines ('— <name> <base64>'), found "
                f"{line[:80]!r}"
            )
    return lines
