"""Algorithm review figures (issue 15), each beside a baseline measured in the same run.

    python bench/review_bench.py [--submissions 10000] [--reviews-each 4] [--tasks 10000]
                                 [--decisions 20000] [--reps 5]

The ledger: a consortium with two researchers (two organizations) and nine reviewers (four
organizations, one member without an org); ``--submissions`` submitted digests, each with
``--reviews-each`` reviews (approved by four organizations; approved then revoked; approved
only by one organization, so pending; or, for one in twenty, rejected while pending), and
``--tasks`` tasks pinning those digests. With the defaults: 10,000 submissions, 40,000 reviews.
It is verified as a site verifies it (:class:`ledger.trust.TrustedLog`), which publishes the view
the site decides from.

1. A site's decision on a task, p50 and p99 over ``--decisions`` tasks: the image allowlist
   alone (baseline: a site without ``require_review``), and the allowlist then the review rule
   (:func:`siteclient.policy.review.decide_review`) on that view. Target: the review check adds
   at most 1 ms at p50.
2. Replay verification of the whole log (``verify_ledger``: hashes, chain, signatures, rules),
   with the review rules, and of the same log with the review kinds' rules replaced by no-ops
   and the task rule's approval lookup off (baseline). Best of ``--reps`` runs, alternated.
   Target: within 5% of the baseline. Also the rules alone (entries parsed and signatures
   checked beforehand), where the review check's share is the largest it can be.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import review_rules, rules
from ledger.bodies import (
    Consortium,
    Decision,
    EventId,
    EventKind,
    MemberSpec,
    Review,
    Role,
    Submission,
    Task,
)
from ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from ledger.events import Entry
from ledger.merkle import MerkleTree
from ledger.rules import apply
from ledger.state import State
from ledger.trust import Trusted, TrustedLog
from ledger.verify import verify_ledger
from ledger.view import View
from siteclient.policy.allowlist import Allowlist
from siteclient.policy.review import decide_review
from tests.ledger.factory import World, key

SITE = "site-a"
ALLOWED = [r"registry\.example\.org/pht/[a-z0-9-]+:[\w.-]+(@sha256:[0-9a-f]{64})?"]
REVIEWERS = [
    ("c1", "org-c"),
    ("c2", "org-c"),
    ("c3", "org-c"),
    ("c4", "org-c"),
    ("d1", "org-d"),
    ("d2", "org-d"),
    ("e1", "org-e"),
    ("f1", "org-f"),
    ("ray", None),
]


def _world() -> World:
    world = World()
    world.keys = {
        "admin": key("admin"),
        "alice": key("alice"),
        "bella": key("bella"),
        SITE: key(SITE),
    }
    world.roles = {
        "admin": Role.ADMIN,
        "alice": Role.RESEARCHER,
        "bella": Role.RESEARCHER,
        SITE: Role.SITE,
    }
    world.orgs = {"alice": "org-a", "bella": "org-b"}
    for name, org in REVIEWERS:
        world.keys[name] = key(name)
        world.roles[name] = Role.REVIEWER
        if org is not None:
            world.orgs[name] = org
    return world


def _reviews(n: int) -> list[tuple[str, Decision]]:
    approve = Decision.APPROVE
    kind = n % 20
    if kind < 13:  # approved by four organizations
        return [("c1", approve), ("d1", approve), ("e1", approve), ("f1", approve)]
    if kind < 17:  # approved, then revoked
        return [("c2", approve), ("d2", approve), ("ray", approve), ("e1", Decision.REVOKE)]
    if kind < 19:  # approved by one organization only: pending
        return [("c1", approve), ("c2", approve), ("c3", approve), ("c4", approve)]
    return [("c1", approve), ("c2", approve), ("c3", approve), ("d1", Decision.REJECT)]


def build(submissions: int, reviews_each: int, tasks: int) -> tuple[World, list[str]]:
    """The ledger of the module docstring; returns the world and each task's image."""
    world = _world()
    genesis = Consortium(
        name="bench",
        origin=world.origin,
        log_key=verifier_key(world.origin, world.log_key.public),
        members=tuple(
            MemberSpec(
                name=n,
                role=world.roles[n],
                public_key=world.keys[n].public.b64(),
                org=world.orgs.get(n),
            )
            for n in world.keys
        ),
    )
    world.push(world.sign("admin", genesis))
    images = []
    for n in range(submissions):
        image = f"registry.example.org/pht/algo-{n % 97}:{n}@sha256:{n:064x}"
        images.append(image)
        submission = Submission(
            image=image,
            name=f"algorithm {n}",
            version=str(n),
            description="bench",
            source=f"https://git.example.org/pht/algo/{n}",
        )
        sid = world.push(world.sign("alice" if n % 2 else "bella", submission)).event.event.id
        for reviewer, decision in _reviews(n)[:reviews_each]:
            body = Review(submission=EventId(sid), decision=decision, note="bench")
            world.push(world.sign(reviewer, body))
        if n % 2000 == 1999:
            print(f"  {n + 1:,} submissions signed", flush=True)
    task_images = []
    for n in range(tasks):
        image = images[(n * 7919) % len(images)]
        task_images.append(image)
        world.push(world.sign("alice", Task(image=image, sites=(SITE,), config={"n": n})))
    return world, task_images


def verified_view(world: World) -> View:
    """The entries verified by a site's trust core, and the view it publishes."""
    log = TrustedLog(Trusted())
    log.stage(world.entries)
    tree = MerkleTree()
    tree.extend(entry.leaf_hash for entry in world.entries)
    checkpoint = Checkpoint(origin=world.origin, size=tree.size, root=tree.root())
    return log.commit(sign_checkpoint(checkpoint, world.log_key))


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def decisions(view: View, tasks: list[Entry], *, review: bool) -> list[float]:
    """Seconds per decision on each task (allowlist, then the review rule when ``review``)."""
    allowlist = Allowlist(ALLOWED, site=SITE)
    out = []
    clock = time.perf_counter
    for entry in tasks:
        body = entry.event.event.body
        assert isinstance(body, Task)
        task_id = entry.event.event.id
        start = clock()
        decision = allowlist.decide(body.image, require_digest=False)
        if review and decision.ref is not None:
            decide_review(view, task_id, decision.ref, site=SITE)
        out.append(clock() - start)
    return out


def _noop(*_: object) -> None:
    return None


@contextmanager
def without_review_check() -> Iterator[None]:
    """The baseline: the review kinds' rules do nothing, a task records no approval."""
    saved = {kind: rules._RULES[kind] for kind in _REVIEW_KINDS}
    approved = review_rules.approved
    try:
        for kind in _REVIEW_KINDS:
            rules._RULES[kind] = _noop
        review_rules.approved = lambda state, digest: False  # type: ignore[assignment]
        yield
    finally:
        rules._RULES.update(saved)
        review_rules.approved = approved  # type: ignore[assignment]


_REVIEW_KINDS = (EventKind.SUBMISSION, EventKind.REVIEW, EventKind.REVIEW_POLICY)


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _fold(entries: list[Entry]) -> State:
    state = State()
    for entry in entries:
        apply(state, entry, signature_checked=True)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=10_000)
    parser.add_argument("--reviews-each", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    print("building the ledger ...", flush=True)
    world, _ = build(args.submissions, args.reviews_each, args.tasks)
    entries = world.entries
    kinds = [e.event.event.kind for e in entries]
    print(
        f"ledger: {len(entries):,} entries: {kinds.count(EventKind.SUBMISSION):,} submissions, "
        f"{kinds.count(EventKind.REVIEW):,} reviews, {kinds.count(EventKind.TASK):,} tasks"
    )
    view = verified_view(world)
    approved = sum(view.standing(d).approved for d in view.reviews)
    print(f"verified view: {len(view.reviews):,} reviewed digests, {approved:,} approved now")

    tasks = [e for e in entries if e.event.event.kind is EventKind.TASK]
    picked = [tasks[i % len(tasks)] for i in range(args.decisions)]
    decisions(view, picked[:1000], review=True)  # warm up
    base_samples: list[float] = []
    with_samples: list[float] = []
    for _ in range(args.reps):  # alternated, so drift hits both alike
        base_samples += decisions(view, picked, review=False)
        with_samples += decisions(view, picked, review=True)
    base50, base99 = _percentiles(base_samples)
    with50, with99 = _percentiles(with_samples)
    print("\n1. a site's decision on a task (allowlist; allowlist + review), per decision:")
    print(f"   without require_review: p50 {base50 * 1e6:7.1f} us  p99 {base99 * 1e6:7.1f} us")
    print(f"   with require_review:    p50 {with50 * 1e6:7.1f} us  p99 {with99 * 1e6:7.1f} us")
    added = (with50 - base50) * 1e3
    print(
        f"   the review check adds {added * 1e3:.1f} us at p50 ({with50 / base50:.2f}x the "
        f"baseline): target <= 1 ms -> {'met' if added <= 1.0 else 'MISSED'}"
    )

    rules_full: list[float] = []
    rules_bare: list[float] = []
    fold = partial(_fold, entries)
    for _ in range(args.reps):
        rules_full.append(_timed(fold))
        with without_review_check():
            rules_bare.append(_timed(fold))
    with without_review_check():
        assert not _fold(entries).reviews  # the baseline really skips the review rules

    # An auditor holds the records, not parsed entries: so does the replay measured here.
    records = [entry.canonical for entry in entries]
    del world, entries, tasks, picked, view, fold
    gc.collect()
    full: list[float] = []
    bare: list[float] = []
    for _ in range(args.reps):
        full.append(_timed(partial(verify_ledger, records)))
        with without_review_check():
            bare.append(_timed(partial(verify_ledger, records)))
    print(f"\n2. replay verification of {len(records):,} entries (best of {args.reps}):")
    print(f"   without the review check: {min(bare):6.2f} s ({len(records) / min(bare):,.0f}/s)")
    print(f"   with the review check:    {min(full):6.2f} s ({len(records) / min(full):,.0f}/s)")
    ratio = min(full) / min(bare)
    print(
        f"   ratio {ratio:.3f}: target <= 1.05 -> {'met' if ratio <= 1.05 else 'MISSED'}; "
        f"the rules alone (entries parsed, signatures checked beforehand): "
        f"{min(rules_full):.3f} s against {min(rules_bare):.3f} s "
        f"({min(rules_full) / min(rules_bare):.2f}x)"
    )


if __name__ == "__main__":
    main()
