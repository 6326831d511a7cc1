"""The analyst's Python client: post a task, wait for every site, read verified outputs, iterate.

An iterative analysis is one short loop::

    key = SigningKey.load("ana.key")
    analyst = Analyst(Client("http://127.0.0.1:8555", key), key, genesis=GENESIS_HASH,
                      identity=load_identity("ana.age"))
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

import time
from collections.abc import Callable, Mapping
from typing import Any

from api.client.answers import Appended, TaskView
from api.client.ledgerview import LedgerReader, Replay
from api.client.registry import Client
from api.client.run import Run, SiteResult
from api.client.waiting import Progress, Unreachable, wait_for
from api.errors import AnalysisError
from crypto import CryptoError, SigningKey
from crypto.age import AgeIdentity, decrypt_bytes, is_age
from ledger.bodies import (
    Body,
    Cancel,
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

INLINE_CONFIG_MAX = 16 * 1024  # larger configurations are uploaded as a blob


class Analyst:
    """A researcher's session with one registry: post tasks, wait, read verified results.

    ``Analyst(client, key, genesis=HASH, identity=AGE_IDENTITY)``: ``key`` signs what the
    analyst posts; ``genesis`` (``genesis_hash`` of ``pht init``, or ``pht audit --json``) pins
    the ledger, so a registry serving another one is refused; ``identity``
    (:func:`crypto.age.load_identity` of ``NAME.age``) decrypts outputs and logs the sites
    encrypted for the analyst. :meth:`run` posts a task and waits for every site;
    :meth:`Run.output`, :meth:`Run.json` and :meth:`Run.log` read what each site returned.
    """

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
            raise AnalysisError(
                f"{what} is encrypted for you: give the Analyst your age identity "
                "(Analyst(..., identity=load_identity('NAME.age')), from crypto.age)"
            )
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
        body = self.task_body(
            image,
            config,
            sites,
            parent=parent,
            label=label,
            limits=limits,
            recipient=recipient,
            deliver=deliver,
            inputs=inputs,
        )
        return EventId(self.append(body).event_id)

    def task_body(
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
    ) -> Task:
        """The task :meth:`post` posts (a configuration over 16 KiB is uploaded as a blob)."""
        encoded = canonical_bytes(dict(config))
        inline = len(encoded) <= INLINE_CONFIG_MAX
        return Task(
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

    def append(self, body: Body) -> Appended:
        """Sign ``body`` with the analyst's key and post it; where the registry appended it."""
        event = new_event(body, ledger=self.origin, author=self._key.key_id)
        return self.client.post_event(SignedEvent.sign(event, self._key))

    def _post(self, body: Body) -> EventId:
        return EventId(self.append(body).event_id)

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

    def wait(
        self,
        task_id: str,
        *,
        timeout: float,
        progress: Progress | None = None,
        unreachable: Unreachable | None = None,
    ) -> TaskView:
        """Block until every site has a result (or the timeout passes); report each change to
        ``progress``. While the registry cannot be reached (a restart, say) it keeps trying
        until the timeout, telling ``unreachable`` the error once per outage and None when the
        registry answers again (default: a log warning)."""
        return wait_for(
            self.client,
            task_id,
            timeout=timeout,
            clock=self._clock,
            progress=progress,
            unreachable=unreachable,
        )

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
            entry = self._verified_entry(progress.index, ledger)
            body = entry.event.event.body
            assert isinstance(body, Result)  # the verified replay recorded it as a result
            out[site] = SiteResult(site=site, result=body, entry=entry)
        return out

    def _verified_entry(self, index: int, ledger: View) -> Entry:
        """Entry ``index`` as the registry serves it, which must be the one the replay verified."""
        entry = self.client.entry(index)
        if entry.leaf_hash != ledger.leaf(index):
            raise HistoryRewrittenError(
                f"entry {index} served now differs from the one verified",
                trusted=ledger.note,
                index=index,
            )
        return entry

    def cancellation(self, task_id: str) -> tuple[int, str | None] | None:
        """Where the task was cancelled and the reason given, from the verified replay; None
        when it was not cancelled."""
        ledger = self.ledger_view()
        record = ledger.tasks.get(EventId(task_id))
        if record is None or record.cancelled is None:
            return None
        body = self._verified_entry(record.cancelled, ledger).event.event.body
        assert isinstance(body, Cancel)  # the verified replay recorded it as the cancellation
        return record.cancelled, body.reason

    def log(self, result: Result) -> bytes:
        """The container log of ``result``, checked against its hash and decrypted (empty when
        the site stored none)."""
        if result.log is None:
            return b""
        data = self.client.get_blob(result.log.sha256, max_size=result.log.size)
        return self.open(data, "the log")

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
