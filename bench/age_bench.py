"""age encryption throughput and memory (issue 6), against the raw cipher in the same run.

    python bench/age_bench.py [--mb 100] [--rounds 5] [--dir /tmp]

Every figure is the best of ``--rounds``; the rounds interleave all measurements so that load
from elsewhere on the machine hits baselines and candidates alike.

Baselines, all ChaCha20-Poly1305 from ``cryptography`` (the cipher age uses) over 64 KiB chunks:

- **raw, in memory**: seal / open the same number of chunks, nothing else.
- **raw, file to file**: the smallest loop that reads a 64 KiB chunk from the plaintext file,
  seals it and writes it (and the reverse) -- the cipher plus the same file I/O, no format.
- **copy, file to file**: the same loop without the cipher: the I/O floor of this machine.

Candidates: ``encrypt_stream`` from the plaintext file to a ciphertext file and
``decrypt_stream`` back to a third file (checked against the plaintext), and the same two from
memory to a sink that discards (the format's own cost). Target: age >= 0.70 of raw. Memory:
the increase of peak RSS (``ru_maxrss``) over what the process held before any of it ran
(target < 20 MB): streamed in chunks, never read whole. All files live in a temp directory
under ``--dir``. When the ``age`` command is installed, its speed is printed for reference.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto.age import AgeIdentity, decrypt_stream, encrypt_stream, save_identity

CHUNK = 64 * 1024
MB = 1_000_000
TARGET_RATIO = 0.70
TARGET_RSS_MB = 20.0


class Discard(io.RawIOBase):
    """A sink that keeps nothing (to time the format without the kernel's write path)."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        return len(memoryview(data))  # type: ignore[arg-type]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def nonce(counter: int) -> bytes:
    return counter.to_bytes(11, "big") + b"\x00"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="plaintext size in MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args(argv)
    size = args.mb * MB
    chunks = -(-size // CHUNK)
    identity = AgeIdentity.generate()
    aead = ChaCha20Poly1305(os.urandom(32))
    block = os.urandom(CHUNK)
    sealed_blocks = [aead.encrypt(nonce(i), block, None) for i in range(16)]
    memory_plain = os.urandom(8 * MB)  # in-memory runs loop over this, 8 MB at a time

    work = Path(tempfile.mkdtemp(prefix="age-bench-", dir=args.dir))
    plain, raw_sealed = work / "plain", work / "raw.sealed"
    sealed, opened, copied = work / "plain.age", work / "opened", work / "copied"
    with plain.open("wb") as handle:
        for offset in range(0, size, MB):
            handle.write(os.urandom(min(MB, size - offset)))
    rss_before = peak_rss_mb()

    def raw_seal_memory() -> None:
        for counter in range(chunks):
            aead.encrypt(nonce(counter), block, None)

    def raw_open_memory() -> None:
        for counter in range(chunks):
            aead.decrypt(nonce(counter % 16), sealed_blocks[counter % 16], None)

    def copy_files() -> None:
        with plain.open("rb") as src, copied.open("wb") as dst:
            while data := src.read(CHUNK):
                dst.write(data)

    def raw_seal_files() -> None:
        with plain.open("rb") as src, raw_sealed.open("wb") as dst:
            counter = 0
            while data := src.read(CHUNK):
                dst.write(aead.encrypt(nonce(counter), data, None))
                counter += 1

    def raw_open_files() -> None:
        with raw_sealed.open("rb") as src, copied.open("wb") as dst:
            counter = 0
            while data := src.read(CHUNK + 16):
                dst.write(aead.decrypt(nonce(counter), data, None))
                counter += 1

    def age_seal_files() -> None:
        with plain.open("rb") as src, sealed.open("wb") as dst:
            encrypt_stream(src, dst, [identity.recipient])

    def age_open_files() -> None:
        with sealed.open("rb") as src, opened.open("wb") as dst:
            decrypt_stream(src, dst, [identity])

    memory_sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(memory_plain), memory_sealed, [identity.recipient])

    def age_seal_memory() -> None:
        for _ in range(size // len(memory_plain)):
            encrypt_stream(io.BytesIO(memory_plain), Discard(), [identity.recipient])

    def age_open_memory() -> None:
        for _ in range(size // len(memory_plain)):
            decrypt_stream(io.BytesIO(memory_sealed.getvalue()), Discard(), [identity])

    memory_size = size // len(memory_plain) * len(memory_plain)
    runs: dict[str, tuple[Callable[[], None], int]] = {
        "raw seal, memory": (raw_seal_memory, size),
        "raw open, memory": (raw_open_memory, size),
        "copy, file to file": (copy_files, size),
        "raw seal, file to file": (raw_seal_files, size),
        "raw open, file to file": (raw_open_files, size),
        "age encrypt, file to file": (age_seal_files, size),
        "age decrypt, file to file": (age_open_files, size),
        "age encrypt, memory": (age_seal_memory, memory_size),
        "age decrypt, memory": (age_open_memory, memory_size),
    }
    best = dict.fromkeys(runs, float("inf"))
    try:
        for _ in range(args.rounds):
            for name, (run, _) in runs.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        rss_increase = peak_rss_mb() - rss_before
        if file_sha256(opened) != file_sha256(plain):
            raise SystemExit("decrypted file differs from the plaintext")
        rate = {name: runs[name][1] / MB / seconds for name, seconds in best.items()}

        print(f"{size / MB:.0f} MB in {chunks} chunks of 64 KiB, files under {args.dir}, ", end="")
        print(f"best of {args.rounds}")
        for name, value in rate.items():
            print(f"  {name:28s} {value:7.0f} MB/s")
        ratios = {
            "encrypt, file to file vs raw file to file": (
                rate["age encrypt, file to file"] / rate["raw seal, file to file"]
            ),
            "decrypt, file to file vs raw file to file": (
                rate["age decrypt, file to file"] / rate["raw open, file to file"]
            ),
            "encrypt, memory vs raw memory": (
                rate["age encrypt, memory"] / rate["raw seal, memory"]
            ),
            "decrypt, memory vs raw memory": (
                rate["age decrypt, memory"] / rate["raw open, memory"]
            ),
        }
        print(f"age / raw (target >= {TARGET_RATIO:.2f}):")
        for name, value in ratios.items():
            print(f"  {name:44s} {value:5.2f}")
        print("for context (no target; the kernel's page cache is part of these):")
        for name, baseline in (("encrypt", "raw seal, memory"), ("decrypt", "raw open, memory")):
            value = rate[f"age {name}, file to file"] / rate[baseline]
            print(f"  {name}, file to file vs raw memory{'':14s} {value:5.2f}")
        print(f"  copy, file to file vs raw memory{'':17s} ", end="")
        print(f"{rate['copy, file to file'] / rate['raw seal, memory']:5.2f}")
        print(
            f"peak RSS increase: {rss_increase:.1f} MB (target < {TARGET_RSS_MB:.0f} MB; "
            f"{rss_before:.1f} MB before)"
        )

        age_cli = shutil.which("age")
        if age_cli:
            key = work / "key.txt"
            save_identity(key, identity)
            start = time.perf_counter()
            command = [age_cli, "-d", "-i", str(key), "-o", str(copied), str(sealed)]
            subprocess.run(command, check=True)
            elapsed = time.perf_counter() - start
            print(
                f"for reference, the age CLI decrypting the same file: {size / MB / elapsed:.0f} MB/s"
            )

        ok = all(value >= TARGET_RATIO for value in ratios.values())
        ok = ok and rss_increase < TARGET_RSS_MB
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
