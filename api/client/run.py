"""A finished task as the analyst reads it: each site's verified result, outputs and log."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.errors import AnalysisError
from ledger.bodies import EventId, Result
from ledger.events import Entry

if TYPE_CHECKING:
    from api.client.analyst import Analyst


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteResult:
    site: str
    result: Result
    entry: Entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """A finished task: each site's verified result and a reader for its outputs."""

    task_id: EventId
    results: Mapping[str, SiteResult]
    analyst: Analyst

    def states(self) -> dict[str, str]:
        return {site: r.result.state.value for site, r in self.results.items()}

    def output(self, site: str, name: str) -> bytes:
        """The bytes of output ``name`` of ``site``, checked against the hash in the site's
        signed result, and decrypted with the analyst's identity when the site encrypted them
        (a wrong key, a swapped or altered blob gives a clear error, never garbage)."""
        result = self.results[site].result
        for output in result.outputs:
            if output.name != name:
                continue
            if output.delivered_to is not None:
                raise AnalysisError(
                    f"{site!r}'s {name!r} was delivered to {output.delivered_to!r}, not stored"
                )
            data = self.analyst.client.get_blob(output.sha256, max_size=output.size)
            return self.analyst.open(data, f"{name!r} of site {site!r}")
        raise AnalysisError(f"site {site!r} produced no output {name!r} ({result.state})")

    def json(self, site: str, name: str) -> Any:
        return json.loads(self.output(site, name))

    def log(self, site: str) -> bytes:
        """``site``'s container log (stdout and stderr), decrypted; empty when the container
        wrote nothing. A log the site cut to its end begins with :data:`LOG_TRUNCATED`."""
        return self.analyst.log(self.results[site].result)
