"""Helpers for the researcher CLI tests: a profile, an encryption key, a site's result posted
straight to the real registry (with the site's own key) when no container needs to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.client.registry import Client
from cli.main import main as pht
from crypto.age import AgeIdentity, AgeRecipient, encrypt_bytes, save_identity
from ledger.bodies import BlobRef, EventId, Output, Result, ResultState
from ledger.events import SignedEvent, new_event
from tests.siteclient.site_env import SiteEnv


def profile(env: SiteEnv, capsys: pytest.CaptureFixture[str], member: str = "alice") -> Path:
    key = env.tmp / "keys" / f"{member}.key"
    assert pht(["profile", "set", "--registry", env.url, "--key", str(key)]) == 0
    assert "profile written" in capsys.readouterr().out
    return key


def publish_encryption_key(
    env: SiteEnv, capsys: pytest.CaptureFixture[str], identity_file: Path, member: str = "alice"
) -> AgeIdentity:
    """A new age identity saved at ``identity_file``, published by ``member`` itself."""
    identity = AgeIdentity.generate()
    identity_file.parent.mkdir(parents=True, exist_ok=True)
    save_identity(identity_file, identity)
    key = env.tmp / "keys" / f"{member}.key"
    argv = ["member", "rekey", member, "--identity", str(identity_file), "--key", str(key)]
    assert pht([*argv, "--registry", env.url]) == 0
    assert f"rekey {member}" in capsys.readouterr().out
    return identity


def post_result(
    env: SiteEnv,
    task: str,
    *,
    site: str = "site-a",
    state: ResultState = ResultState.COMPLETED,
    outputs: dict[str, bytes] | None = None,
    log: bytes | None = None,
    recipient: AgeRecipient | None = None,
) -> int:
    """Site ``site``'s signed result for ``task`` (outputs and log uploaded first, encrypted for
    ``recipient`` when given); its entry index."""
    key = env.world.keys[site]
    with Client(env.url, key) as client:

        def upload(data: bytes) -> BlobRef:
            sealed = encrypt_bytes(data, [recipient]) if recipient is not None else data
            return BlobRef(sha256=client.put_blob(sealed), size=len(sealed))

        stored = {name: upload(data) for name, data in (outputs or {}).items()}
        body = Result(
            task=EventId(task),
            state=state,
            outputs=tuple(
                Output(name=name, sha256=ref.sha256, size=ref.size) for name, ref in stored.items()
            ),
            exit_code=0 if state is ResultState.COMPLETED else None,
            log=upload(log) if log is not None else None,
        )
        event = new_event(body, ledger=env.world.origin, author=key.key_id)
        return client.post_event(SignedEvent.sign(event, key)).index
