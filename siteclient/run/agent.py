"""The agent loop: follow the ledger, plan, execute, report.

Each sync publishes an immutable view of the verified ledger; the planner
(:func:`siteclient.run.planner.plan`, pure) turns it into actions: a ``task`` naming the site is
queued; a ``cancel`` of a queued or running task stops it. The agent and its worker threads read
only the latest published view, never the state the follower is folding.

Up to ``parallelism`` tasks run at once, each in a worker thread that posts signed ``status``
events (``accepted``, ``started``) and finally a signed ``result``. Status events are progress
for people watching, so the worker does not wait for them: one poster thread appends them in the
order they were made, and a task's result is posted only after its status events are in (a
failed one makes the task retry).

Crash safety. Before a result is posted it is written, signed, to the task's journal file
(``work_dir/<task>/result.json``); after a restart a journaled result is posted again (the
registry appends a signed event once), so a finished run is never repeated and never lost. A task
that was running when the site died has no journaled result: it is announced ``interrupted`` and
run again. A task whose result is already in the ledger never runs again, because the planner
reads the verified view, not the journal.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from api.client.registry import Client
from api.errors import ApiError, ProblemError, ResultExistsError
from crypto import CryptoError, SigningKey
from ledger.bodies import Body, EventId, Result, ResultState, Status, StatusState, Task
from ledger.errors import LedgerError
from ledger.events import Entry, SignedEvent, new_event
from ledger.store.durable import write_atomic
from ledger.view import View
from siteclient.errors import FeedError, MembershipError, SiteClientError, WorkerCrashedError
from siteclient.follow.follower import Follower
from siteclient.run import planner
from siteclient.run.cleanup import remove_tree

log = logging.getLogger(__name__)

RESULT_JOURNAL = "result.json"
RUNNING_MARK = "running"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One task to run here: its entry, a flag set when it is cancelled, and what the ledger
    said when it was appended: whom its outputs are encrypted for (an age recipient) and, when
    they are delivered to a site's FileService instead of the registry, that site and its URL."""

    entry: Entry
    cancel: threading.Event
    encrypt_for: str | None = None
    deliver_to: str | None = None
    deliver_url: str | None = None

    @property
    def task_id(self) -> EventId:
        return self.entry.event.event.id

    @property
    def body(self) -> Task:
        body = self.entry.event.event.body
        assert isinstance(body, Task)
        return body


# Runs a job to its result body; posts progress through the callback it is given.
Execute = Callable[[Job, Path, Callable[[StatusState, str | None], None]], Result]


class Agent:
    def __init__(
        self,
        *,
        site: str,
        key: SigningKey,
        client: Client,
        follower: Follower,
        execute: Execute,
        work_dir: Path,
        parallelism: int = 1,
        guard: Callable[[View], None] | None = None,
    ) -> None:
        """``guard`` sees every new view before anything is acted on; what it raises stops the
        site (the site client checks there that it is still the member its config says)."""
        self.site = site
        self._guard = guard
        self._key = key
        self._client = client
        self._follower = follower
        self._execute = execute
        self._work = Path(work_dir)
        self._work.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pool = ThreadPoolExecutor(max_workers=max(1, parallelism), thread_name_prefix="task")
        # One thread, so status events reach the ledger in the order they were made.
        self._poster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status")
        self._statuses: dict[str, list[Future[None]]] = {}
        self._jobs: dict[str, Job] = {}
        self._futures: dict[str, Future[None]] = {}
        self._stopping = threading.Event()
        self._done: set[str] = set()
        self._failed: dict[str, Entry] = {}  # tried, but the site could not finish: retried
        self._lock = threading.Lock()
        self._resumed = False
        self._view: View | None = follower.view
        self._crashed: Exception | None = None

    # ---- the loop

    def step(self, wait: int = 0) -> list[Entry]:
        """One round: sync with the registry, then act on what became trusted; return the
        entries newly verified."""
        if self._crashed is not None:
            raise WorkerCrashedError(
                f"a task worker crashed ({type(self._crashed).__name__}: {self._crashed}); "
                "stopping so that it is seen"
            ) from self._crashed
        view = self._follower.sync(wait, act=self._act)
        with self._lock:
            retry, self._failed = list(self._failed.values()), {}
        for entry in retry:
            if not planner.finished_here(view, entry.event.event.id, self.site):
                self._queue(entry, planner.delivery(view, entry.event.event.id), resumed=True)
        return list(view.fresh)

    @property
    def running(self) -> int:
        """Tasks queued or running here now."""
        with self._lock:
            return len(self._futures)

    def idle(self) -> bool:
        with self._lock:
            return not self._futures

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every queued task to finish."""
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:
            future.result(timeout=timeout)

    def close(self, *, cancel: bool = True) -> None:
        """Stop; with ``cancel``, running containers are killed. Their tasks are not reported as
        cancelled (nobody cancelled them): the next start announces them interrupted and reruns
        them."""
        self._stopping.set()
        if cancel:
            with self._lock:
                for job in self._jobs.values():
                    job.cancel.set()
        self._pool.shutdown(wait=True)
        self._poster.shutdown(wait=True)

    # ---- planning

    @property
    def view(self) -> View:
        view = self._view
        if view is None:
            raise FeedError("no verified view of the ledger yet")
        return view

    def _act(self, view: View) -> None:
        if self._guard is not None:
            self._guard(view)
        self._view = view  # one reference, replaced whole: readers see one view or the next
        if not self._resumed:
            self._resume(view)
            self._resumed = True
        for action in planner.plan(view, site=self.site, key_id=self._key.key_id):
            if isinstance(action, planner.Run):
                self._queue(action.entry, action.delivery)
            elif isinstance(action, planner.Cleanup):
                with self._lock:
                    busy = action.task in self._jobs  # its worker removes the folder itself
                if not busy:
                    _remove_folder(self._work / action.task)  # the journal did its job
            else:
                with self._lock:
                    job = self._jobs.get(action.task)
                if job is not None:
                    log.info("task %s cancelled: stopping it", action.task[:12])
                    job.cancel.set()

    def _resume(self, view: View) -> None:
        """After a (re)start: every task for this site without its result here is picked up."""
        for item in planner.resume(view, site=self.site):
            entry = self._follower.entry(item.index)  # checked against the verified leaf
            self._queue(entry, planner.delivery(view, item.task), resumed=True)
            if item.cancelled:
                with self._lock:
                    job = self._jobs.get(item.task)
                if job is not None:
                    job.cancel.set()

    def _queue(self, entry: Entry, delivery: planner.Delivery, *, resumed: bool = False) -> None:
        cancel = threading.Event()
        if self._view is not None and planner.cancelled(self._view, entry.event.event.id):
            cancel.set()  # a retried task cancelled meanwhile ends as cancelled, never runs
        job = Job(
            entry=entry,
            cancel=cancel,
            encrypt_for=delivery.encrypt_for,
            deliver_to=delivery.deliver_to,
            deliver_url=delivery.deliver_url,
        )
        with self._lock:
            if job.task_id in self._jobs or job.task_id in self._done:
                return
            self._jobs[job.task_id] = job
            self._futures[job.task_id] = self._pool.submit(self._work_on, job, resumed)

    # ---- execution

    def _work_on(self, job: Job, resumed: bool) -> None:
        folder = self._work / job.task_id
        posted = False
        try:
            journal = folder / RESULT_JOURNAL
            if journal.exists():
                log.info("task %s: posting the journaled result again", job.task_id[:12])
                self._post_journaled(journal)
                posted = True
                return
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if resumed and (folder / RUNNING_MARK).exists():
                self._status(job, StatusState.INTERRUPTED, "the site restarted during the run")
            elif not resumed or not planner.has_status(self.view, job.task_id, self.site):
                self._status(job, StatusState.ACCEPTED, None)
            (folder / RUNNING_MARK).touch()
            if job.cancel.is_set():
                result = Result(
                    task=job.task_id, state=ResultState.CANCELLED, reason="cancelled before start"
                )
            else:
                result = self._execute(job, folder, lambda s, r: self._status(job, s, r))
            self._statuses_posted(job)
            if self._stopping.is_set() and not planner.cancelled(self.view, job.task_id):
                log.info(
                    "task %s: stopped by the site's shutdown; rerun on restart", job.task_id[:12]
                )
                return
            signed = self._sign(result)
            write_atomic(journal, json.dumps(signed.to_dict()).encode())
            self._post(signed)
            posted = True
            log.info("task %s: %s", job.task_id[:12], result.state)
        except (ApiError, SiteClientError, LedgerError, CryptoError, OSError) as exc:
            # The registry or the engine failed us (not the task): try again next round.
            log.warning("task %s: will retry: %s", job.task_id[:12], exc)
            with self._lock:
                self._failed[job.task_id] = job.entry
        except Exception as exc:
            # A bug, not bad luck: retrying would hide it. The loop stops the site with it.
            log.exception("task %s: the worker crashed", job.task_id[:12])
            with self._lock:
                self._crashed = self._crashed or exc
        else:
            with self._lock:
                self._done.add(job.task_id)
        finally:
            self._statuses_posted(job, quiet=True)
            # Before the job is forgotten, so the planner never removes the folder at the same
            # time (it leaves the folders of running jobs alone).
            if posted:
                _remove_folder(folder)  # the result is in the ledger: the journal did its job
            else:
                _clean(folder)
            with self._lock:
                self._futures.pop(job.task_id, None)
                self._jobs.pop(job.task_id, None)

    def _status(self, job: Job, state: StatusState, reason: str | None) -> None:
        """Queue a signed status event for the poster thread; see :meth:`_statuses_posted`."""
        signed = self._sign(Status(task=job.task_id, state=state, reason=reason))
        future = self._poster.submit(self._post, signed)
        with self._lock:
            self._statuses.setdefault(job.task_id, []).append(future)

    def _statuses_posted(self, job: Job, *, quiet: bool = False) -> None:
        """Wait until ``job``'s queued status events are in the ledger; raise the first failure
        (or, ``quiet``, only log it)."""
        with self._lock:
            futures = self._statuses.pop(job.task_id, [])
        for future in futures:
            try:
                future.result()
            except Exception as exc:
                if not quiet:
                    raise
                log.warning("task %s: a status event was not posted: %s", job.task_id[:12], exc)

    def _sign(self, body: Body) -> SignedEvent:
        origin = self.view.origin
        event = new_event(body, ledger=origin, author=self._key.key_id)
        return SignedEvent.sign(event, self._key)

    def _post_journaled(self, journal: Path) -> None:
        """Post a journaled result; one older than the registry accepts (an outage longer than
        its time window) is signed again with the current time, same body, and journaled."""
        signed = SignedEvent.from_json(journal.read_bytes())
        try:
            self._post(signed)
        except ProblemError as exc:
            if exc.slug != "event-time-out-of-window":
                raise
            log.info("the journaled result is older than the registry's window: signing it again")
            fresh = self._sign(signed.event.body)
            write_atomic(journal, json.dumps(fresh.to_dict()).encode())
            self._post(fresh)

    def _post(self, signed: SignedEvent) -> None:
        try:
            self._client.post_event(signed)
        except ResultExistsError:
            return  # our result is already in the ledger


def _clean(folder: Path) -> None:
    """Remove the run's files; keep the journal (until the result is in the ledger) and the
    running mark (so that a restart knows the run was interrupted)."""
    if not folder.exists():
        return
    for child in folder.iterdir():
        if child.name in (RESULT_JOURNAL, RUNNING_MARK):
            continue
        remove_tree(child)


def _remove_folder(folder: Path) -> None:
    """Remove a finished task's folder; a failure leaves litter, never stops the site."""
    try:
        remove_tree(folder)
    except OSError as exc:
        log.warning("could not remove %s: %s", folder, exc)


def fatal(exc: Exception) -> bool:
    """A feed that cannot be trusted, a crashed worker, or a site that is not (any more) the
    member its config says stops the site; everything else is retried."""
    return isinstance(exc, FeedError | WorkerCrashedError | MembershipError)
