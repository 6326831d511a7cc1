"""The FileService as a real ``siteclient serve-files`` process beside a real registry: what it
accepts and records, and the attacks it refuses (each refusal keeps nothing and records nothing).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto import AgeIdentity, SigningKey, decrypt_bytes, encrypt_bytes
from ledger.bodies import Member, MemberAction, Role
from siteclient.errors import DeliveryError
from siteclient.fileservice.inbox import received_files
from siteclient.main import main as siteclient
from siteclient.run.delivery import FileServiceClient
from tests.ledger.factory import key
from tests.siteclient.fileservice_env import (
    MAX_FILE,
    RECEIVER,
    FileServiceEnv,
    mounted_tmpfs,
    raw_request,
    sha256,
    signed_headers,
)
from tests.siteclient.site_env import SiteEnv


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServiceEnv]:
    tmp = tmp_path_factory.mktemp("fileservice")
    site = SiteEnv(tmp).start()
    env = FileServiceEnv(
        site,
        {
            "host": "127.0.0.1",
            "port": 0,
            "max_file_bytes": MAX_FILE,
            "min_free_bytes": 0,
            "inbox_dir": str(tmp / "inbox"),
        },
    )
    try:
        env.start()
        yield env
        assert env.stop() == 0, "serve-files did not stop cleanly on SIGTERM"
    finally:
        env.stop()
        site.stop()


def _refused_and_nothing_kept(fs: FileServiceEnv, task: str, transfers_before: int) -> None:
    assert fs.stored(task) == [], f"kept after a refusal: {fs.stored(task)}"
    assert len(fs.transfers()) == transfers_before
    assert received_files(fs.inbox, task) == []


# -- what it accepts -------------------------------------------------------------------------


def test_upload_records_a_signed_transfer_event(fs: FileServiceEnv) -> None:
    task = fs.task()
    identity = AgeIdentity.generate()
    plaintext = b"partial sums of site-a: " + secrets.token_bytes(3000)
    ciphertext = encrypt_bytes(plaintext, [identity.recipient])
    with fs.client("site-a") as client:
        receipt = client.upload(task, "partial.age", ciphertext)
    assert receipt.created and receipt.size == len(ciphertext)
    assert receipt.sha256 == sha256(ciphertext)

    with fs.site.client() as registry:
        entry = registry.entry(receipt.transfer_index)
    event = entry.event.event
    assert event.kind.value == "transfer"
    assert event.author == fs.site.world.keys[RECEIVER].key_id  # signed by the receiving site
    fs.site.world.keys[RECEIVER].public.verify(entry.event.sig, event.signing_bytes())
    body = event.body.to_dict()
    assert body == {
        "sender": "site-a",
        "recipient": RECEIVER,
        "task": task,
        "sha256": receipt.sha256,
        "size": len(ciphertext),
    }

    [received] = received_files(fs.inbox, task)
    assert (received.sender, received.name, received.sha256, received.size) == (
        "site-a",
        "partial.age",
        receipt.sha256,
        len(ciphertext),
    )
    assert received.transfer_index == receipt.transfer_index
    assert received.path.read_bytes() == ciphertext  # stored as received: ciphertext
    assert decrypt_bytes(received.path.read_bytes(), [identity]) == plaintext


def test_uploading_the_same_file_again_is_idempotent(fs: FileServiceEnv) -> None:
    task = fs.task()
    data = secrets.token_bytes(5000)
    with fs.client("site-a") as client:
        first = client.upload(task, "out.bin", data)
        again = client.upload(task, "out.bin", data)
    with fs.client("site-b") as client:
        other_sender = client.upload(task, "renamed.bin", data)
    assert first.created and not again.created and not other_sender.created
    assert first.transfer_index == again.transfer_index == other_sender.transfer_index
    recorded = [t for _, t in fs.transfers() if t.task == task]
    assert len(recorded) == 1 and recorded[0].sender == "site-a"
    [received] = received_files(fs.inbox, task)
    assert received.name == "out.bin"


def test_a_file_streamed_from_disk_is_received_whole(fs: FileServiceEnv, tmp_path: Path) -> None:
    task = fs.task()
    path = tmp_path / "big.age"
    path.write_bytes(secrets.token_bytes(MAX_FILE))  # exactly the limit
    with fs.client("site-b") as client:
        receipt = client.upload(task, "big.age", path)
    [received] = received_files(fs.inbox, task)
    assert received.path.read_bytes() == path.read_bytes()
    assert receipt.size == MAX_FILE and received.sender == "site-b"


# -- who may send ----------------------------------------------------------------------------


def _forged_keyid(fs: FileServiceEnv, url: str, digest: str) -> dict[str, str]:
    headers = signed_headers(SigningKey.generate(), url, digest_sha256=digest)
    stranger = headers["Signature-Input"].split('keyid="')[1].split('"')[0]
    member = fs.site.world.keys["site-a"].key_id
    headers["Signature-Input"] = headers["Signature-Input"].replace(stranger, member)
    return headers


@pytest.mark.parametrize(
    ("attack", "slug"),
    [
        ("unsigned", "unauthenticated"),
        ("signed_by_a_stranger", "unknown-key"),
        ("stranger_claims_a_members_keyid", "unauthenticated"),
        ("signed_for_another_file_service", "unauthenticated"),
    ],
)
def test_rejects_upload_by_non_member(fs: FileServiceEnv, attack: str, slug: str) -> None:
    task = fs.task()
    before = len(fs.transfers())
    data = b"not from a member"
    target = f"/v1/files/{task}/{sha256(data)}"
    url = fs.url + target
    headers = {
        "unsigned": {"Content-Type": "application/octet-stream"},
        "signed_by_a_stranger": signed_headers(
            SigningKey.generate(), url, digest_sha256=sha256(data)
        ),
        "stranger_claims_a_members_keyid": _forged_keyid(fs, url, sha256(data)),
        "signed_for_another_file_service": signed_headers(
            fs.site.world.keys["site-a"],
            "http://ttp.example.org:8443" + target,
            digest_sha256=sha256(data),
        ),
    }[attack]
    answer = raw_request(fs.url, target, headers, data)
    assert answer.status == 401 and answer.slug == slug, answer
    _refused_and_nothing_kept(fs, task, before)


def test_auditor_may_not_send_files(fs: FileServiceEnv) -> None:
    task = fs.task()
    before = len(fs.transfers())
    with fs.client("audrey") as client, pytest.raises(DeliveryError) as refused:
        client.upload(task, "x.bin", b"auditors only read")
    assert (refused.value.status, refused.value.slug) == (403, "forbidden")
    _refused_and_nothing_kept(fs, task, before)


def test_upload_for_an_unknown_task_is_404(fs: FileServiceEnv) -> None:
    task = secrets.token_hex(32)
    with fs.client("site-a") as client, pytest.raises(DeliveryError) as refused:
        client.upload(task, "x.bin", b"for no task")
    assert refused.value.status == 404
    assert fs.stored(task) == []


def test_revoked_member_cannot_upload(fs: FileServiceEnv) -> None:
    bob = key("bob")
    world = fs.site.world
    spec: dict[str, Any] = {"name": "bob", "role": Role.RESEARCHER, "public_key": bob.public.b64()}
    with fs.site.client("admin") as admin:
        added = admin.post_event(world.sign("admin", Member(action=MemberAction.ADD, **spec)))
        task = fs.task()
        fs.wait_for_ledger(added.index + 2)
        with FileServiceClient(fs.url, bob) as as_bob:
            assert as_bob.upload(task, "before.bin", b"bob, still a member").created
            revoked = admin.post_event(
                world.sign("admin", Member(action=MemberAction.REVOKE, **spec))
            )
            fs.wait_for_ledger(revoked.index + 1)
            before = len(fs.transfers())
            with pytest.raises(DeliveryError) as refused:
                as_bob.upload(task, "after.bin", b"bob, revoked")
    assert (refused.value.status, refused.value.slug) == (401, "unknown-key")
    assert [f.name for f in received_files(fs.inbox, task)] == ["before.bin"]
    assert len(fs.transfers()) == before


# -- replay and freshness --------------------------------------------------------------------


def test_rejects_replayed_upload(fs: FileServiceEnv) -> None:
    task = fs.task()
    data = secrets.token_bytes(2000)
    target = f"/v1/files/{task}/{sha256(data)}?name=once.bin"
    headers = signed_headers(
        fs.site.world.keys["site-a"], fs.url + target, digest_sha256=sha256(data)
    )
    first = raw_request(fs.url, target, headers, data)
    assert first.status == 201, first
    before = len(fs.transfers())
    replayed = raw_request(fs.url, target, headers, data)
    assert replayed.status == 401 and replayed.slug == "request-replayed", replayed
    # Replayed for another task, the signature no longer covers the target.
    other = fs.task()
    moved = raw_request(fs.url, target.replace(task, other), headers, data)
    assert moved.status == 401, moved
    assert len(fs.transfers()) == before
    assert fs.stored(other) == []


@pytest.mark.parametrize("age_s", [-120, 3600])
def test_rejects_stale_or_future_signed_upload(fs: FileServiceEnv, age_s: int) -> None:
    task = fs.task()
    data = b"signed at the wrong time"
    target = f"/v1/files/{task}/{sha256(data)}"
    headers = signed_headers(
        fs.site.world.keys["site-a"],
        fs.url + target,
        digest_sha256=sha256(data),
        created=int(time.time()) - age_s,
    )
    answer = raw_request(fs.url, target, headers, data)
    assert answer.status == 401 and answer.slug == "signature-expired", answer
    assert fs.stored(task) == []


# -- names and paths -------------------------------------------------------------------------

HEX = "ab" * 32
TRAVERSALS = [
    # (what, task segment, sha256 segment, name query value (raw, already percent-encoded))
    ("dotdot name", None, None, "../../etc/passwd"),
    ("encoded dotdot name", None, None, "..%2f..%2fetc%2fpasswd"),
    ("double-encoded name", None, None, "..%252f..%252fetc"),
    ("absolute name", None, None, "%2fetc%2fpasswd"),
    ("NUL in name", None, None, "out%00.txt"),
    ("backslash name", None, None, "..%5c..%5cwindows"),
    ("fullwidth look-alike name", None, None, "%EF%BD%90asswd"),
    ("one-dot-leader look-alike", None, None, "%E2%80%A4%E2%80%A4%2fx"),
    ("overlong UTF-8 dot", None, None, "%C0%AE%C0%AE%2fx"),
    ("over-long name", None, None, "a" * 129),
    ("hidden name", None, None, ".bashrc"),
    ("empty name", None, None, ""),
    ("dotdot task", "..", None, None),
    ("traversing task", "../../../tmp", None, None),
    ("encoded dotdot task", "%2e%2e", None, None),
    ("encoded slash task", f"{HEX}%2f..%2f..", None, None),
    ("NUL task", f"{HEX[:-1]}%00", None, None),
    ("uppercase task", HEX.upper(), None, None),
    ("over-long task", "a" * 5000, None, None),
    ("dotdot sha256", None, "..", None),
    ("absolute sha256", None, "%2fetc%2fpasswd", None),
    ("traversing sha256", None, "..%2f..%2f..%2ftmp%2fevil", None),
    ("look-alike sha256", None, "%D0%B0" + "b" * 63, None),
    ("over-long sha256", None, "a" * 65, None),
]


@pytest.mark.parametrize(
    ("what", "task_seg", "sha_seg", "name"), TRAVERSALS, ids=[t[0] for t in TRAVERSALS]
)
def test_path_traversal_file_names_never_choose_a_path(
    fs: FileServiceEnv, what: str, task_seg: str | None, sha_seg: str | None, name: str | None
) -> None:
    task = fs.task()
    before = len(fs.transfers())
    outside = sorted(p.name for p in fs.inbox.parent.iterdir())
    data = f"payload for {what}".encode()
    target = f"/v1/files/{task_seg or task}/{sha_seg or sha256(data)}"
    if name is not None:
        target += f"?name={name}"
    headers = signed_headers(
        fs.site.world.keys["site-a"], fs.url + target, digest_sha256=sha256(data)
    )
    answer = raw_request(fs.url, target, headers, data)
    assert answer.status in (400, 404, 414, 431), answer
    _refused_and_nothing_kept(fs, task, before)
    assert sorted(p.name for p in fs.inbox.parent.iterdir()) == outside
    assert all(len(p.name) == 64 for p in fs.inbox.iterdir())


# -- size, digest, disk ----------------------------------------------------------------------


def test_rejects_oversized_upload(fs: FileServiceEnv) -> None:
    task = fs.task()
    before = len(fs.transfers())
    big = secrets.token_bytes(MAX_FILE + 1)
    target = f"/v1/files/{task}/{sha256(big)}"

    def headers() -> dict[str, str]:
        return signed_headers(
            fs.site.world.keys["site-a"], fs.url + target, digest_sha256=sha256(big)
        )

    declared = raw_request(fs.url, target, headers(), b"", content_length=1 << 40)
    assert declared.status == 413, declared
    declared_just_over = raw_request(fs.url, target, headers(), big)
    assert declared_just_over.status == 413, declared_just_over
    streamed = raw_request(fs.url, target, headers(), big + big, chunked=True)
    assert streamed.status == 413, streamed
    # Waitress refuses some of these before the app sees them: the answer is the same document.
    for answer in (declared, declared_just_over, streamed):
        assert answer.slug == "body-too-large", answer
    # A Content-Length smaller than the body: only the declared bytes count, and they are not
    # the signed file.
    short = raw_request(fs.url, target, headers(), big, content_length=1000)
    assert short.status == 400 and short.slug == "digest-mismatch", short
    with fs.client("site-a") as client, pytest.raises(DeliveryError) as refused:
        client.upload(task, "big.bin", big)
    assert refused.value.status in (413, None)
    _refused_and_nothing_kept(fs, task, before)


def test_digest_mismatch_keeps_nothing(fs: FileServiceEnv) -> None:
    task = fs.task()
    before = len(fs.transfers())
    sent = secrets.token_bytes(4096)
    other = secrets.token_bytes(4096)
    key_a = fs.site.world.keys["site-a"]
    # The path names other bytes than the signed digest.
    target = f"/v1/files/{task}/{sha256(other)}"
    answer = raw_request(
        fs.url, target, signed_headers(key_a, fs.url + target, digest_sha256=sha256(sent)), sent
    )
    assert answer.status == 400 and answer.slug == "digest-mismatch", answer
    # Path and signed digest agree, the body differs (same length): found while streaming.
    target = f"/v1/files/{task}/{sha256(sent)}"
    answer = raw_request(
        fs.url, target, signed_headers(key_a, fs.url + target, digest_sha256=sha256(sent)), other
    )
    assert answer.status == 400 and answer.slug == "digest-mismatch", answer
    _refused_and_nothing_kept(fs, task, before)


def test_full_disk_refuses_with_507_and_keeps_nothing(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small-disk", size="1m") as disk:
        site = SiteEnv(tmp_path).start()
        fs = FileServiceEnv(
            site,
            {
                "port": 0,
                "max_file_bytes": 4 * MAX_FILE,
                "min_free_bytes": 64 * 1024,
                "inbox_dir": str(disk / "inbox"),
            },
        )
        try:
            fs.start()
            task = fs.task()
            with fs.client("site-a") as client:
                with pytest.raises(DeliveryError) as refused:
                    client.upload(task, "too-big.age", secrets.token_bytes(2 * MAX_FILE))
                assert (refused.value.status, refused.value.slug) == (507, "insufficient-storage")
                assert fs.stored(task) == []
                fits = secrets.token_bytes(600 * 1024)
                assert client.upload(task, "fits.age", fits).created
                with pytest.raises(DeliveryError) as refused:
                    client.upload(task, "no-room-left.age", secrets.token_bytes(600 * 1024))
                assert refused.value.status == 507
            assert [f.name for f in received_files(fs.inbox, task)] == ["fits.age"]
            assert len(fs.stored(task)) == 2  # the one file and its receipt; no temp file
            assert [t.sha256 for _, t in fs.transfers()] == [sha256(fits)]
        finally:
            fs.stop()
            site.stop()


# -- the command -----------------------------------------------------------------------------


def test_a_second_file_service_on_the_same_state_refuses_to_start(
    fs: FileServiceEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert siteclient(["serve-files", "--config", str(fs.config)]) == 1
    assert "another site client is running" in capsys.readouterr().err
    with fs.client() as client:
        assert client.health() > 0  # the first one serves on


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        (None, 'needs a "file_service" section'),
        ({"host": "0.0.0.0"}, "set file_service.public_url"),
    ],
)
def test_serve_files_refuses_an_incomplete_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: dict[str, str] | None, reason: str
) -> None:
    SigningKey.generate().save(tmp_path / "site.key")
    config: dict[str, Any] = {
        "site": "site-c",
        "key_file": "site.key",
        "registry": "http://127.0.0.1:9",
        "log_key": None,
        "genesis": None,
        "sparql_endpoint": "http://sparql.invalid/query",
        "allowed_images": [],
        "state_dir": "state",
        "work_dir": "work",
    }
    if section is not None:
        config["file_service"] = section
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert siteclient(["serve-files", "--config", str(tmp_path / "config.json")]) == 1
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "inbox").exists()
