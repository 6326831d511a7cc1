"""``GET /v1/tile/...``: the ledger as C2SP tlog-tiles, with ``/v1/checkpoint`` as its checkpoint
(:mod:`ledger.tiles` has the paths and the format).

Tiles are immutable once served (a tile is served only when all it covers exists), so each is
answered with a year-long, immutable cache lifetime; ``private`` because, like every entry, they
are for members (a signed request) only. A path that names no tile, or one the ledger does not
hold yet, is 404 ``not-found``.
"""

from __future__ import annotations

import falcon

from api.registry.resources import only_params
from ledger import tiles
from ledger.store.ledger import Ledger

OCTETS = "application/octet-stream"


class Tiles:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        only_params(req, ())
        resp.data = self._ledger.tile(tiles.parse(path))
        resp.content_type = OCTETS
        resp.cache_control = ["private", "max-age=31536000", "immutable"]
