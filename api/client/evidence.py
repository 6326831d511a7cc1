"""What a reader keeps when it caught a registry lying: one new folder per lie, never over an
earlier one.

Files (those with nothing to say are left out): ``reason.txt`` (the named lie), the last
checkpoint the reader had verified (``trusted-checkpoint.txt``), the one that contradicts it
(``served-checkpoint.txt``), and an entry served in another version (``entry.json``). Each is
written atomically and synced, so evidence survives the crash that may follow. The site's
follower, ``pht audit`` and every other ``pht`` command keep it the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

from ledger.errors import UntrustedLogError
from ledger.store.durable import fsync_dir, write_atomic


def keep_evidence(
    base: Path, lie: UntrustedLogError, *, name: str = "", entry: bytes = b""
) -> Path:
    """Keep the evidence of ``lie`` in a new folder under ``base`` (named ``name``, by default
    the lie and the time); return the folder. Raises OSError when the disk refuses."""
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = name or f"{type(lie).__name__}-{time.strftime('%Y%m%dT%H%M%S')}"
    for n in range(1, 1000):
        folder = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"too many evidence folders named {stem} in {base}")
    files = {
        "reason.txt": f"{type(lie).__name__}: {lie}\n".encode(),
        "trusted-checkpoint.txt": lie.trusted,
        "served-checkpoint.txt": lie.served,
        "entry.json": entry,
    }
    for file, data in files.items():
        if data:
            write_atomic(folder / file, data)
    fsync_dir(base)
    return folder
