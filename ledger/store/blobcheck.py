"""Does a registry's store (its data directory or its database) hold, whole, every blob its
ledger names? (``pht audit --data``)

The registry must hold each blob an event names for it (:func:`ledger.bodies.registry_blobs`: a
task's ``config_blob``, a result's outputs and log), except outputs ``delivered_to`` a site's
FileService, which the registry never sees, and files a ``transfer`` records, which a FileService
received. :func:`check_blobs` hashes every such blob once and reports each one that is missing or
whose bytes no longer hash to its name, by the entry and field that name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ledger.bodies import registry_blobs
from ledger.errors import BlobError, DamagedBlobError
from ledger.events import Entry
from ledger.store import Blobs

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobFinding:
    """A blob entry ``index`` names at ``where`` (``result.body.outputs[0] (out.json)``) that
    the data directory does not hold whole; ``problem`` says how."""

    index: int
    where: str
    sha256: str
    problem: str

    def __str__(self) -> str:
        return f"entry {self.index}: {self.where} names blob {self.sha256}: {self.problem}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobReport:
    checked: int  # distinct blobs hashed
    findings: tuple[BlobFinding, ...]


def check_blobs(
    records: Iterable[bytes], blobs: Blobs, *, progress: Progress | None = None
) -> BlobReport:
    """Hash every blob the entries ``records`` (verified already: they are parsed, not judged)
    name for the registry; report each missing or damaged one, once per entry naming it."""
    verdicts: dict[str, str | None] = {}
    findings: list[BlobFinding] = []
    for index, data in enumerate(records):
        if progress is not None and index % 1024 == 0:
            progress(index)
        if b'"config_blob"' not in data and b'"kind":"result"' not in data:
            continue  # nothing else names a registry blob; spares parsing most entries
        body = Entry.from_canonical(data).event.event.body
        for named in registry_blobs(body):
            if named.sha256 not in verdicts:
                verdicts[named.sha256] = _verdict(blobs, named.sha256)
            problem = verdicts[named.sha256]
            if problem is not None:
                findings.append(
                    BlobFinding(
                        index=index, where=named.where, sha256=named.sha256, problem=problem
                    )
                )
    return BlobReport(checked=len(verdicts), findings=tuple(findings))


def _verdict(blobs: Blobs, sha256: str) -> str | None:
    try:
        blobs.open_verified(sha256).close()
    except DamagedBlobError as exc:
        return f"damaged, {exc.reason}"
    except BlobError as exc:
        return "missing" if not blobs.exists(sha256) else f"unreadable ({exc})"
    return None
