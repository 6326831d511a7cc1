"""Errors raised by :mod:`cli` itself (bad arguments or files that no library call catches).

::

    CliError        a command cannot run as asked; the message is the one line the user sees

Every other error reaching ``cli.main`` comes from a library package (``LedgerError``,
``CryptoError``, ``ApiError``) or the OS, and is reported the same way.
"""

from __future__ import annotations


class CliError(Exception):
    """A command cannot run as asked."""
