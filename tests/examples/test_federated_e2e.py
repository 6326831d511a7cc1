"""The federated analysis end to end, as the demo runs it (smaller data): a real registry
process, three site clients as real processes, three Oxigraph endpoints on internal Docker
networks, real algorithm containers; then an allowlist refusal and an audit."""

from __future__ import annotations

from pathlib import Path

import docker

from examples.demo import AGREEMENT, SITES, run_demo


def test_federated_fit_equals_pooled_fit_with_refusal_and_audit(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    outcome = run_demo(tmp_path / "demo", patients=60, show=lambda _: None)
    assert outcome.max_difference <= AGREEMENT, (outcome.federated, outcome.pooled)
    assert 3 <= outcome.iterations <= 25
    assert sorted(outcome.refusals) == sorted(SITES)
    for verdict in outcome.refusals.values():
        assert verdict.startswith("rejected: ") and "matches no allowed pattern" in verdict
    assert "all hashes, signatures, rules and proofs verified" in outcome.audit
    assert "untrusted/exfiltrate:1" in outcome.audit  # the refusal is on the record
    tasks, review = outcome.audit.split("algorithm review", 1)
    assert tasks.count("completed") == 3 * outcome.iterations
    # The demo's consortium reviews nothing: every run is on the record as not approved.
    assert review.count("not approved as of the task's entry") == 3 * outcome.iterations
