"""``pht task list``, ``pht member list`` and ``pht site list`` against a real registry process:
what they print, their filters, JSON only on stdout, and that the task list is read from the
verified replay (a registry that serves other bytes for a listed entry is caught)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.client.ledgerview import LedgerReader, verified_entry
from api.client.registry import Client
from api.wire.heartbeat import Heartbeat
from cli.main import main as pht
from ledger.bodies import Cancel, EventId, Member, MemberAction, Result, ResultState, Role, Task
from ledger.errors import HistoryRewrittenError
from ledger.events import Entry, format_time
from tests.ledger.factory import key
from tests.siteclient.site_env import SiteEnv

IDS: dict[str, str] = {}  # the tasks the module's scene posted, by name


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteEnv]:
    site = SiteEnv(tmp_path_factory.mktemp("lists"))
    site.world.keys["bob"] = key("bob")
    site.world.roles["bob"] = Role.RESEARCHER
    site.start()
    world = site.world

    def post(author: str, body: Any) -> str:
        signed = world.sign(author, body)
        with Client(site.url, world.keys[author]) as client:
            client.post_event(signed)
        return signed.event.id

    IDS.update(
        {
            "avg": post(
                "alice",
                Task(
                    image="myconsortium/avg:1",
                    sites=("site-a", "site-b"),
                    config={},
                    label="cohort",
                ),
            ),
            "count": post(
                "alice", Task(image="myconsortium/count:2", sites=("site-a",), config={})
            ),
            "bobs": post("bob", Task(image="other/thing:3", sites=("site-b",), config={})),
        }
    )
    ids = IDS
    post("site-a", Result(task=EventId(ids["count"]), state=ResultState.REJECTED, reason="no"))
    post("alice", Cancel(task=EventId(ids["avg"]), reason="wrong cohort"))
    revoke = Member(
        action=MemberAction.REVOKE,
        name="site-c",
        role=Role.SITE,
        public_key=world.keys["site-c"].public.b64(),
    )
    post("admin", revoke)
    yield site
    site.stop()


@pytest.fixture
def as_alice(env: SiteEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "profile.json"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    yield ["--registry", env.url, "--key", str(env.tmp / "keys" / "alice.key")]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    capsys.readouterr()
    assert pht(list(argv)) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_task_list_shows_my_tasks_with_short_ids_states_and_reasons(
    env: SiteEnv, as_alice: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = IDS
    out, err = run(capsys, "task", "list", *as_alice)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["TASK", "CREATED"] and "AUTHOR" not in lines[0]
    assert [line[:12] for line in lines[1:]] == [ids["count"][:12], ids["avg"][:12]]
    assert "site-a rejected (no)" in lines[1]
    assert "CANCELLED at entry" in lines[2] and "wrong cohort" in lines[2]
    assert "site-b pending" in lines[2] and "cohort" in lines[2]
    assert ids["bobs"][:12] not in out
    assert "2 of alice's tasks, verified up to entry" in err


def test_task_list_all_and_filters(
    env: SiteEnv, as_alice: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = IDS

    def listed(*flags: str) -> list[str]:
        out, _ = run(capsys, "task", "list", "--json", *flags, *as_alice)
        by_id = {v: k for k, v in ids.items()}
        return [by_id[line["task"]] for line in json.loads(out)["tasks"]]

    assert listed("--all") == ["bobs", "count", "avg"]
    assert listed("--all", "--site", "site-b") == ["bobs", "avg"]
    assert listed("--all", "--image", r"^myconsortium/") == ["count", "avg"]
    assert listed("--all", "--image", "thing") == ["bobs"]
    assert listed("--state", "rejected") == ["count"]
    assert listed("--state", "cancelled") == ["avg"]
    assert listed("--label", "cohort") == ["avg"]
    assert listed("--all", "--since", "2999-01-01") == []
    assert listed("--all", "--since", "2000-01-01T00:00") == ["bobs", "count", "avg"]
    assert listed("--all", "--limit", "1") == ["bobs"]
    out, _ = run(capsys, "task", "list", "--all", *as_alice)
    assert "AUTHOR" in out.splitlines()[0] and " bob " in out


def test_task_list_json_is_json_only_and_matches_the_registry(
    env: SiteEnv, as_alice: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = run(capsys, "task", "list", "--all", "--json", *as_alice)
    mine = json.loads(out)  # nothing else on stdout
    with Client(env.url, env.world.keys["alice"]) as client:
        theirs = json.loads(client._http.request("GET", "/v1/tasks").content)
    assert mine["tasks"] == theirs["tasks"]


def test_task_list_refuses_a_bad_image_pattern(
    as_alice: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert pht(["task", "list", "--image", "(", *as_alice]) == 1
    assert "--image: not a regular expression" in capsys.readouterr().err


class SwappingClient:
    """A registry client that serves another entry's bytes for one index (a rewritten entry)."""

    def __init__(self, client: Client, index: int, other: int) -> None:
        self._client = client
        self._index = index
        self._other = other

    def entry(self, index: int) -> Entry:
        return self._client.entry(self._other if index == self._index else index)


def test_listed_entries_are_checked_against_the_verified_replay(env: SiteEnv) -> None:
    with Client(env.url, env.world.keys["alice"]) as client:
        genesis = client.entry(0)
        view = LedgerReader(
            client,
            log_key=genesis.event.event.body.log_key,
            genesis=genesis.hash,  # type: ignore[union-attr]
        ).sync()
        task = view.tasks[EventId(IDS["avg"])]
        assert verified_entry(client, view, task.index).event.event.id == task.event_id
        liar = SwappingClient(client, task.index, task.index + 1)
        with pytest.raises(HistoryRewrittenError):
            verified_entry(liar, view, task.index)  # type: ignore[arg-type]


def test_member_list(env: SiteEnv, as_alice: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = run(capsys, "member", "list", "--json", *as_alice)
    members = {m["name"]: m for m in json.loads(out)["members"]}
    assert set(members) == set(env.world.keys)
    assert members["site-c"]["revoked"] is not None and members["bob"]["role"] == "researcher"
    out, _ = run(capsys, "member", "list", *as_alice)
    site_c = next(line for line in out.splitlines() if line.startswith("site-c"))
    assert f"revoked at entry {members['site-c']['revoked']}" in site_c


def test_site_list_shows_who_beats(
    env: SiteEnv, as_alice: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(env.url, env.world.keys["site-a"]) as site:
        site.heartbeat(
            Heartbeat(
                site="site-a",
                version="9.9.9",
                verified_size=site.health(),
                running=2,
                docker=True,
                sparql=False,
                sent_at=format_time(datetime.now(UTC)),
            )
        )
    out, _ = run(capsys, "site", "list", "--json", *as_alice)
    sites = {row["site"]: row for row in json.loads(out)["sites"]}
    assert set(sites) == {"site-a", "site-b"}
    assert sites["site-a"]["presence"] == "online" and sites["site-a"]["running"] == 2
    assert sites["site-b"]["presence"] == "never"
    out, _ = run(capsys, "site", "list", *as_alice)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "online" in rows["site-a"] and "DOWN" in rows["site-a"] and "9.9.9" in rows["site-a"]
    assert "never seen" in rows["site-b"]
