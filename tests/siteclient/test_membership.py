"""Who a site client is, decided from the replayed membership (pure; table-driven)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crypto import KeyId, PublicKey, SigningKey
from ledger.kinds import Role
from siteclient.errors import MembershipError, RevokedError
from siteclient.follow.membership import check_membership

KEYS = {name: SigningKey.from_seed(bytes([n + 1]) * 32) for n, name in enumerate("abcd")}


@dataclass(frozen=True)
class Member:
    role: Role
    public_key: PublicKey
    revoked: int | None = None


MEMBERS = {
    "site-a": Member(Role.SITE, KEYS["a"].public),
    "site-b": Member(Role.SITE, KEYS["b"].public, revoked=7),
    "alice": Member(Role.RESEARCHER, KEYS["c"].public),
}
OWNERS: dict[KeyId, str] = {
    KEYS["a"].key_id: "site-a",
    KEYS["b"].key_id: "site-b",
    KEYS["c"].key_id: "alice",
}


def _check(site: str, key: str) -> None:
    check_membership(MEMBERS, OWNERS, site=site, key_id=KEYS[key].key_id, as_of=9)


def test_the_site_with_its_own_key_passes() -> None:
    _check("site-a", "a")


@pytest.mark.parametrize(
    ("site", "key", "expected"),
    [
        (
            "site-z",
            "a",
            f"'site-z' is not a member of this consortium in the ledger (as verified "
            f"up to entry 9); key {KEYS['a'].key_id[:12]}… belongs to 'site-a'",
        ),
        (
            "site-z",
            "d",
            "'site-z' is not a member of this consortium in the ledger (as verified "
            "up to entry 9); ask the admin to add it",
        ),
        ("alice", "c", "'alice' is a researcher, not a site of this consortium"),
        ("site-a", "c", f"key {KEYS['c'].key_id[:12]}… (key_file) belongs to 'alice'"),
        ("site-a", "d", f"key {KEYS['d'].key_id[:12]}… (key_file) is no member's key"),
    ],
)
def test_impostor_configs_are_refused_naming_the_mistake(
    site: str, key: str, expected: str
) -> None:
    with pytest.raises(MembershipError) as error:
        _check(site, key)
    assert not isinstance(error.value, RevokedError)
    assert expected in str(error.value)


def test_revoked_site_is_refused_naming_the_entry() -> None:
    with pytest.raises(RevokedError) as error:
        _check("site-b", "b")
    assert error.value.index == 7
    assert "site 'site-b' was revoked at entry 7" in str(error.value)
