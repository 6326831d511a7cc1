"""age encryption throughput and memory (issue 6), against the raw cipher in the same run.

    python bench/age_bench.py [--mb 100] [--rounds 3] [--dir /tmp]

1. **Baseline**: ChaCha20-Poly1305 (``cryptography``'s, the cipher age uses) sealing and opening
   64 KiB chunks in memory, the same number of chunks as the file has, with per-chunk nonces.
2. **age**: ``crypto.age.encrypt_stream`` from a plaintext file to a ciphertext file, and
   ``decrypt_stream`` back to a third file, all under ``--dir``; the result is checked.
   Figure: age MB/s / raw MB/s (target >= 0.70 each way), best of ``--rounds``.
3. **Memory**: the increase of peak RSS (``ru_maxrss``) over what the process held before any
   encryption ran (target < 20 MB): streamed in chunks, never read whole.

When the ``age`` command is installed its throughput on the same files is printed too, for
reference only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto.age import AgeIdentity, decrypt_stream, encrypt_stream, save_identity

CHUNK = 64 * 1024
MB = 1_000_000
TARGET_RATIO = 0.70
TARGET_RSS_MB = 20.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_plaintext(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            handle.write(block)
            left -= len(block)


def raw_seal(chunks: int) -> Callable[[], None]:
    aead = ChaCha20Poly1305(os.urandom(32))
    block = os.urandom(CHUNK)

    def run() -> None:
        for counter in range(chunks):
            aead.encrypt(counter.to_bytes(11, "big") + b"\x00", block, None)

    return run


def raw_open(chunks: int) -> Callable[[], None]:
    aead = ChaCha20Poly1305(os.urandom(32))
    nonces = [counter.to_bytes(11, "big") + b"\x00" for counter in range(16)]
    sealed = [aead.encrypt(nonce, os.urandom(CHUNK), None) for nonce in nonces]

    def run() -> None:
        for counter in range(chunks):
            aead.decrypt(nonces[counter % 16], sealed[counter % 16], None)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="plaintext size in MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args(argv)
    size = args.mb * MB
    chunks = -(-size // CHUNK)
    identity = AgeIdentity.generate()

    work = Path(tempfile.mkdtemp(prefix="age-bench-", dir=args.dir))
    try:
        plain, sealed, opened = work / "plain", work / "plain.age", work / "opened"
        make_plaintext(plain, size)
        rss_before = peak_rss_mb()

        raw_seal_s = best_of(args.rounds, raw_seal(chunks))
        raw_open_s = best_of(args.rounds, raw_open(chunks))

        def encrypt() -> None:
            with plain.open("rb") as src, sealed.open("wb") as dst:
                encrypt_stream(src, dst, [identity.recipient])

        def decrypt() -> None:
            with sealed.open("rb") as src, opened.open("wb") as dst:
                decrypt_stream(src, dst, [identity])

        age_seal_s = best_of(args.rounds, encrypt)
        age_open_s = best_of(args.rounds, decrypt)
        rss_increase = peak_rss_mb() - rss_before
        if file_sha256(opened) != file_sha256(plain):
            raise SystemExit("decrypted file differs from the plaintext")

        rate = lambda seconds: size / MB / seconds  # noqa: E731
        seal_ratio = raw_seal_s / age_seal_s
        open_ratio = raw_open_s / age_open_s
        print(f"plaintext {size / MB:.0f} MB in {chunks} chunks of 64 KiB, files in {work.parent}")
        print(f"raw ChaCha20-Poly1305 seal: {rate(raw_seal_s):8.0f} MB/s")
        print(f"raw ChaCha20-Poly1305 open: {rate(raw_open_s):8.0f} MB/s")
        print(
            f"age encrypt, file to file:  {rate(age_seal_s):8.0f} MB/s  "
            f"= {seal_ratio:.2f} of raw (target >= {TARGET_RATIO:.2f})"
        )
        print(
            f"age decrypt, file to file:  {rate(age_open_s):8.0f} MB/s  "
            f"= {open_ratio:.2f} of raw (target >= {TARGET_RATIO:.2f})"
        )
        print(
            f"peak RSS increase: {rss_increase:.1f} MB (target < {TARGET_RSS_MB:.0f} MB; "
            f"before {rss_before:.1f} MB)"
        )

        age_cli = shutil.which("age")
        if age_cli:
            key = work / "key.txt"
            save_identity(key, identity)
            cli_s = best_of(
                args.rounds,
                lambda: subprocess.run(
                    [age_cli, "-d", "-i", str(key), "-o", str(opened), str(sealed)], check=True
                ),
            )
            print(f"for reference, the age CLI decrypting the same file: {rate(cli_s):.0f} MB/s")

        ok = (
            seal_ratio >= TARGET_RATIO
            and open_ratio >= TARGET_RATIO
            and rss_increase < TARGET_RSS_MB
        )
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
