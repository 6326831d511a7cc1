"""The analyst's Python client: post a task, wait for every site, read verified outputs, iterate.

An iterative analysis is one short loop::

    analyst = Analyst(Client(url, key), key)
    task = None
    while True:
        run = analyst.run(IMAGE, {"coefficients": beta}, SITES, parent=task, timeout=600)
        beta, done = update(beta, [run.output(site, "result.json") for site in SITES])
        task = run.task_id
        if done:
            break

Every result the analyst reads is checked through the trust core (:mod:`ledger.trust`): the
checkpoint is signed by the registry's log key (named by the genesis entry, which the analyst may
pin) and consistent with every checkpoint this analyst saw before (the registry's consistency
proof), and the result entry is proven included in it; every output's bytes are checked against
the hash in the signed result. A registry caught lying raises the
:class:`ledger.errors.UntrustedLogError` that names the lie, as it does in every other reader.

Algorithm review (DESIGN 11): :meth:`Analyst.submit` offers a pinned image for review,
:meth:`Analyst.review` approves, rejects or revokes a submission (for a reviewer's key), and
:meth:`Analyst.review_standing` says whether an image is approved now, which is what a site that
requires review will ask about a task posted now. It reads the analyst's own verified replay of
the ledger (:meth:`Analyst.ledger_view`, :mod:`api.client.ledgerview`), never the registry's word.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from api.client.answers import TaskView
from api.client.ledgerview import LedgerReader, Replay
from api.client.registry import Client
from api.errors import AnalysisError
from crypto import CryptoError, SigningKey
from crypto.age import AgeIdentity, decrypt_bytes, is_age
from ledger.bodies import (
    Body,
    Decision,
    EventId,
    Limits,
    Result,
    Review,
    Submission,
    Task,
)
from ledger.canonical import canonical_bytes
from ledger.checkpoint import Checkpoint
from ledger.errors import (
    ForbiddenEntryError,
    GenesisMismatchError,
    HistoryRewrittenError,
    LedgerError,
    UntrustedLogError,
)
from ledger.events import Entry, SignedEvent, new_event
from ledger.reference import parse_reference
from ledger.review_state import Standing
from ledger.rules import apply
from ledger.state import State
from ledger.trust import check_consistency, verify_note
from ledger.view import View
from ledger.witness_policy import parsed_policy, require_quorum

Progress = Callable[[TaskView], None]
INLINE_CONFIG_MAX = 16 * 1024  # larger configurations are uploaded as a blob


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
            return self.analyst.open(data, f"{site!r}'s {name!r}")
        raise AnalysisError(f"site {site!r} produced no output {name!r} ({result.state})")

    def json(self, site: str, name: str) -> Any:
        return json.loads(self.output(site, name))


class Analyst:
    def __init__(
        self,
        client: Client,
        key: SigningKey,
        *,
        genesis: str | None = None,
        identity: AgeIdentity | None = None,
        clock: Callable[[], float] = time.monotonic,
        replay: Callable[[str, str], Replay] | None = None,
    ) -> None:
        """``replay(log_key, genesis)`` makes the analyst's verified replay of the ledger
        (default: in memory, for this analyst's life; the CLI passes one saved between
        commands)."""
        self.client = client
        self._key = key
        self._identity = identity
        self._clock = clock
        state = _genesis(client.entry(0), genesis)
        self.origin = state.origin
        self.genesis = state.head
        self._log_key = state.log_key
        self._trusted: Checkpoint | None = None  # the newest checkpoint verified so far
        self._trusted_note = b""
        self._reader: Replay = (
            replay(self._log_key, self.genesis)
            if replay is not None
            else LedgerReader(client, log_key=self._log_key, genesis=self.genesis)
        )

    def open(self, data: bytes, what: str) -> bytes:
        """``data`` decrypted when it is an age file, else as is."""
        if not is_age(data):
            return data
        if self._identity is None:
            raise AnalysisError(f"{what} is encrypted; give the Analyst your age identity")
        try:
            return decrypt_bytes(data, [self._identity])
        except CryptoError as exc:
            raise AnalysisError(f"{what} cannot be decrypted: {exc}") from exc

    def post(
        self,
        image: str,
        config: Mapping[str, Any],
        sites: list[str],
        *,
        parent: str | None = None,
        label: str | None = None,
        limits: Limits | None = None,
        recipient: str | None = None,
        deliver: bool = False,
        inputs: tuple[str, ...] = (),
    ) -> EventId:
        """Sign and post a task; return its id. Outputs are encrypted for ``recipient`` (default:
        the analyst, when the analyst has published an encryption key); ``deliver`` sends them
        to that site's FileService; ``inputs`` names earlier tasks whose delivered files the
        task's sites receive."""
        encoded = canonical_bytes(dict(config))
        inline = len(encoded) <= INLINE_CONFIG_MAX
        body = Task(
            image=image,
            sites=tuple(sites),
            config=dict(config) if inline else None,
            config_blob=None if inline else self.client.put_blob(encoded),
            parent=EventId(parent) if parent else None,
            label=label,
            limits=limits,
            recipient=recipient,
            deliver=deliver,
            inputs=tuple(EventId(t) for t in inputs),
        )
        return self._post(body)

    def _post(self, body: Body) -> EventId:
        event = new_event(body, ledger=self.origin, author=self._key.key_id)
        self.client.post_event(SignedEvent.sign(event, self._key))
        return event.id

    # ---- algorithm review

    def ledger_view(self) -> View:
        """The analyst's verified replay of the whole ledger, brought up to the registry's
        current checkpoint (the first call replays everything; later ones only what is new)."""
        return self._reader.sync()

    def submit(
        self,
        image: str,
        *,
        name: str,
        version: str,
        description: str,
        source: str,
        config_schema: Mapping[str, Any] | None = None,
    ) -> EventId:
        """Submit the image pinned by digest (``name@sha256:...``) for review; its event id."""
        body = Submission(
            image=image,
            name=name,
            version=version,
            description=description,
            source=source,
            config_schema=dict(config_schema) if config_schema is not None else None,
        )
        return self._post(body)

    def review(self, submission: str, decision: Decision | str, note: str) -> EventId:
        """Approve, reject or revoke ``submission`` (the analyst's key must be a reviewer's)."""
        body = Review(submission=EventId(submission), decision=Decision(decision), note=note)
        return self._post(body)

    def review_standing(self, image: str) -> Standing | None:
        """How the digest ``image`` pins stands in review now, from the verified replay; None
        when the image is not pinned by digest (such a task never passes review)."""
        digest = parse_reference(image).digest
        if digest is None:
            return None
        return self.ledger_view().standing(digest)

    def wait(self, task_id: str, *, timeout: float, progress: Progress | None = None) -> TaskView:
        """Block until every site has a result (or the timeout passes); report progress."""
        deadline = self._clock() + timeout
        cursor = self.client.health()
        last: dict[str, str] | None = None
        while True:
            view = self.client.task(task_id)
            states = {site: s.state for site, s in view.sites.items()}
            if progress is not None and states != last:
                progress(view)
                last = states
            if all(s.finished for s in view.sites.values()):
                return view
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise AnalysisError(
                    f"task {task_id[:12]} unfinished after {timeout:.0f} s: {states}"
                )
            page = self.client.entries(cursor, 1000, wait=max(1, min(25, int(remaining))))
            cursor = page.next

    def checkpoint(self) -> Checkpoint:
        """The registry's checkpoint, verified and proven consistent with every one this analyst
        verified before; raises the :class:`UntrustedLogError` naming the lie. With a witness
        policy in the ledger it is the cosigned checkpoint, and short of its quorum
        :class:`ledger.errors.QuorumError` is raised."""
        policy = self._witness_policy()
        note = self.client.cosigned_checkpoint() if policy else self.client.checkpoint()
        trusted = self._trusted
        try:
            checkpoint = verify_note(note, log_key=self._log_key, origin=self.origin)
            if policy is not None:  # DESIGN 12: only a checkpoint its witnesses cosigned
                require_quorum(note, checkpoint, parsed_policy(policy))
            if trusted is not None:
                proof = None
                if 0 < trusted.size < checkpoint.size:
                    proof = self.client.consistency_proof(trusted.size, checkpoint.size)
                check_consistency(trusted, checkpoint, proof)
        except UntrustedLogError as exc:
            exc.with_notes(trusted=self._trusted_note, served=note)
            raise
        self._trusted, self._trusted_note = checkpoint, note
        return checkpoint

    def _witness_policy(self) -> str | None:
        """The witness policy in force, from the analyst's verified replay (made once)."""
        view = self._reader.view or self._reader.sync()
        return view.witness_policy

    def results(self, view: TaskView) -> dict[str, SiteResult]:
        """Each finished site's result, as the analyst's own verified replay of the ledger says
        (never the registry's read model): the entry is the one the replay verified (signed by
        that site, allowed by the rules, under a checkpoint consistent with every earlier one).

        Raises :class:`AnalysisError` when the registry's task view claims a result that the
        signed log does not hold, or the :class:`UntrustedLogError` naming a lie.
        """
        task_id = view.task.event.event.id
        ledger = self.ledger_view()
        record = ledger.tasks.get(task_id)
        if record is None:
            raise AnalysisError(f"task {task_id[:12]} is not in the registry's signed log")
        claimed = {site for site, state in view.sites.items() if state.finished}
        signed = {site for site, progress in record.sites.items() if progress.finished}
        if claimed - signed:
            raise AnalysisError(
                f"the registry's task view says {sorted(claimed - signed)} finished, but its "
                "signed log holds no such result"
            )
        out: dict[str, SiteResult] = {}
        for site, progress in record.sites.items():
            if not progress.finished or progress.index is None:
                continue
            entry = self.client.entry(progress.index)
            if entry.leaf_hash != ledger.leaf(progress.index):
                raise HistoryRewrittenError(
                    f"entry {progress.index} served now differs from the one verified",
                    trusted=ledger.note,
                    index=progress.index,
                )
            body = entry.event.event.body
            assert isinstance(body, Result)  # the verified replay recorded it as a result
            out[site] = SiteResult(site=site, result=body, entry=entry)
        return out

    def run(
        self,
        image: str,
        config: Mapping[str, Any],
        sites: list[str],
        *,
        timeout: float,
        parent: str | None = None,
        label: str | None = None,
        progress: Progress | None = None,
    ) -> Run:
        """Post a task, wait for every site, and return the verified results."""
        task_id = self.post(image, config, sites, parent=parent, label=label)
        view = self.wait(task_id, timeout=timeout, progress=progress)
        return Run(task_id=task_id, results=self.results(view), analyst=self)


def _genesis(entry: Entry, pinned: str | None) -> State:
    """The state after the registry's entry 0, which must be a valid genesis (and the pinned one).

    Raises :class:`GenesisMismatchError` or :class:`ForbiddenEntryError`.
    """
    if pinned is not None and entry.hash != pinned:
        raise GenesisMismatchError(
            f"the registry's genesis entry hash is {entry.hash}, the analyst pins {pinned}",
            index=0,
        )
    try:
        return apply(State(), entry)
    except LedgerError as exc:
        raise ForbiddenEntryError(
            f"the registry's entry 0 is not a genesis: {exc}", index=0
        ) from exc
