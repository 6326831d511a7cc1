"""Is this site client who its config says it is? Pure: a verdict over the replayed membership.

A site client acts for the member named ``site`` in its config, signing with ``key_file``. Both
must agree with the ledger, or the client would follow forever and run nothing (a name that is
no site: no task ever names it), or run tasks whose results the registry then refuses (a key that
is another member's). :func:`check_membership` says which mistake it is, in the operator's words
("key ce9e… belongs to site-a"), or that the site was revoked and at which entry.

It reads ``members`` (name -> record with ``role``, ``public_key``, ``revoked``) and ``keys``
(key id -> member name), as both :class:`ledger.view.View` (verified) and
:class:`ledger.state.State` (a staged, not yet proven, replay) hold them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from crypto import KeyId, PublicKey
from ledger.kinds import Role
from ledger.view import View
from siteclient.errors import MembershipError, RevokedError


class _Member(Protocol):
    @property
    def role(self) -> Role: ...

    @property
    def public_key(self) -> PublicKey: ...

    @property
    def revoked(self) -> int | None: ...


def check_membership(
    members: Mapping[str, _Member],
    keys: Mapping[KeyId, str],
    *,
    site: str,
    key_id: KeyId,
    as_of: int,
    verified: bool = True,
) -> None:
    """Return when ``site`` is a current site whose key is ``key_id``; else raise.

    Raises :class:`RevokedError` (the site was revoked; its ``index`` says where) or
    :class:`MembershipError` naming the mistake. ``as_of`` is the ledger size the membership
    reflects (for the message).
    """
    where = f"the ledger (as verified up to entry {as_of})"
    member = members.get(site)
    owner = keys.get(key_id)
    short = key_id[:12]
    if member is None or member.role is not Role.SITE:
        what = "not a member" if member is None else f"a {member.role.value}, not a site"
        hint = (
            f'; key {short}… belongs to {owner!r}: set "site": {owner!r} in the site config'
            if owner is not None and owner != site
            else '; ask the admin to add it (`pht member add`), or correct "site" in the config'
        )
        raise MembershipError(f"{site!r} is {what} of this consortium in {where}{hint}")
    if member.revoked is not None:
        raise RevokedError(
            f"site {site!r} was revoked at entry {member.revoked}; its key signs nothing after "
            "that entry (ask the admin to add the site again under a new name and key)",
            index=member.revoked,
            verified=verified,
        )
    if member.public_key.key_id != key_id:
        whose = f"belongs to {owner!r}" if owner is not None else "is no member's key"
        raise MembershipError(
            f"key {short}… (key_file) {whose}, but {where} gives site {site!r} key "
            f"{member.public_key.key_id[:12]}…: point key_file at {site!r}'s key"
        )


def guard_for(site: str, key_id: KeyId) -> Callable[[View], None]:
    """:func:`check_membership` of every verified view, for the agent's ``guard``."""

    def guard(view: View) -> None:
        check_membership(view.members, view.keys, site=site, key_id=key_id, as_of=view.size)

    return guard
