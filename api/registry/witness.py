"""The witness routes (DESIGN 12): cosignatures in, cosigned checkpoints out.

- ``POST /v1/cosignatures`` (signed request by a member that published a ``witness_key``):
  ``{"size": N, "cosignature": "— <name> <base64>"}``. 201 when recorded, 200 when the same line
  was recorded before; 422 ``bad-cosignature`` when the registry refuses it (see
  :class:`ledger.store.cosignatures.CosignatureBook`).
- ``GET /v1/checkpoint/cosigned`` (public, like ``/v1/checkpoint``): the newest checkpoint with
  every cosignature the registry holds for its size, one C2SP signed note. ``/v1/checkpoint``
  keeps serving the newest checkpoint, which may not be cosigned yet.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import falcon

from api.registry.resources import JSON, json_bytes, only_params, require_content_type
from api.wire.problems import Problem
from ledger.bodies import Role
from ledger.store.ledger import Ledger

MAX_COSIGNATURE_BODY = 4096


class CosignedCheckpoint:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        resp.data = self._ledger.cosigned_checkpoint()
        resp.content_type = "text/plain; charset=utf-8"
        resp.cache_control = ["no-store"]


class Cosignatures:
    body_limit = MAX_COSIGNATURE_BODY
    writers: ClassVar[frozenset[Role] | None] = None  # any member that published a witness key

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        require_content_type(req, JSON)
        size, line = _parse(req.context.body)
        created = self._ledger.cosignatures.add(req.context.member, size, line)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.data = json_bytes({"size": size, "witness": req.context.member.name})
        resp.content_type = JSON


def _parse(body: bytes) -> tuple[int, str]:
    try:
        value: Any = json.loads(body)
    except ValueError as exc:
        raise Problem("bad-cosignature", "the body is not JSON") from exc
    if not isinstance(value, dict) or set(value) != {"size", "cosignature"}:
        raise Problem("bad-cosignature", 'the body must be {"size": N, "cosignature": "— ..."}')
    size, line = value["size"], value["cosignature"]
    if type(size) is not int or not 0 < size < 2**63 or not isinstance(line, str):
        raise Problem("bad-cosignature", "size must be a positive integer, cosignature a string")
    return size, line
