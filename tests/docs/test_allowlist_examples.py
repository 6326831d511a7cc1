"""Every example of docs/allowlist.md, checked against the site client's own allowlist.

Each ``<!-- allowlist example -->`` block of the document holds one pattern and what it does:

    pattern: REGEX              the allowed_images entry
    require_digest: true        (optional) the site config's require_digest
    allowed: REF  # familiar form F   the site admits REF; the note, if any, is REF's familiar form
    refused: REF                the site refuses REF
    warns: TEXT                 a warning the site logs for this pattern holds TEXT
    invalid: REGEX              a pattern the site config refuses

A pattern with no ``warns:`` line must get no warning at all, so the document never shows a
pattern the site would complain about as a recommended one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.reference import parse_reference
from siteclient.config import SiteConfig
from siteclient.errors import ConfigError
from siteclient.policy.allowlist import Allowlist

DOC = Path(__file__).resolve().parents[2] / "docs" / "allowlist.md"
MARKER = "<!-- allowlist example -->"
FAMILIAR = re.compile(r"familiar form (\S+)")


@dataclass
class Example:
    line: int
    pattern: str | None = None
    invalid: str | None = None
    require_digest: bool = False
    allowed: list[tuple[str, str | None]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"docs/allowlist.md:{self.line} {self.pattern or self.invalid!r}"


def _parse(block: list[str], line: int) -> Example:
    example = Example(line=line)
    for number, raw in enumerate(block, start=line):
        text, _, comment = raw.partition("  #")
        key, sep, value = text.partition(": ")
        value = value.strip()
        if not sep or not value:
            raise ValueError(f"docs/allowlist.md:{number}: expected 'key: value', found {raw!r}")
        if key == "pattern":
            example.pattern = value
        elif key == "invalid":
            example.invalid = value
        elif key == "require_digest":
            example.require_digest = value == "true"
        elif key == "allowed":
            note = FAMILIAR.search(comment)
            example.allowed.append((value, note[1] if note else None))
        elif key == "refused":
            example.refused.append(value)
        elif key == "warns":
            example.warns.append(value)
        else:
            raise ValueError(f"docs/allowlist.md:{number}: unknown key {key!r}")
    if (example.pattern is None) == (example.invalid is None):
        raise ValueError(f"docs/allowlist.md:{line}: one of pattern: or invalid: is needed")
    return example


def examples() -> list[Example]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert lines[number + 1] == "```text", f"docs/allowlist.md:{number + 2}: expected ```text"
        end = lines.index("```", number + 2)
        found.append(_parse(lines[number + 2 : end], number + 3))
    return found


EXAMPLES = examples()


def test_the_document_has_the_examples_it_promises() -> None:
    patterns = {e.pattern for e in EXAMPLES}
    assert len(EXAMPLES) >= 10
    assert DOC.read_text().count(MARKER) == len(EXAMPLES)
    assert "myconsortium/.*:.*" in patterns
    assert r"127\.0\.0\.1:5000/team/.*" in patterns
    assert any(p and p.endswith("(@sha256:[0-9a-f]{64})?") for p in patterns)
    assert sum(len(e.allowed) + len(e.refused) for e in EXAMPLES) >= 40


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_does_what_the_document_says(example: Example) -> None:
    if example.invalid is not None:
        with pytest.raises(ConfigError, match="not a valid regular expression"):
            Allowlist([example.invalid], site="docs")
        return
    assert example.pattern is not None
    allowlist = Allowlist([example.pattern], site="docs")
    for reference, familiar in example.allowed:
        decision = allowlist.decide(reference, require_digest=example.require_digest)
        assert decision.allowed, decision.reason
        if familiar is not None:
            assert parse_reference(reference).familiar() == familiar
    for reference in example.refused:
        decision = allowlist.decide(reference, require_digest=example.require_digest)
        assert not decision.allowed, f"{reference} allowed: {decision.reason}"
    if example.warns:
        for text in example.warns:
            assert any(text in warning for warning in allowlist.warnings), allowlist.warnings
    else:
        assert allowlist.warnings == ()


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_loads_as_a_site_config(example: Example, tmp_path: Path) -> None:
    """The same pattern in a site config: accepted, or refused with the pattern named."""
    pattern = example.pattern or example.invalid
    config = {
        "site": "site-a",
        "key_file": "site-a.key",
        "registry": "http://127.0.0.1:8555",
        "log_key": None,
        "genesis": None,
        "sparql_endpoint": "http://sparql:7878/query",
        "allowed_images": [pattern],
        "require_digest": example.require_digest,
        "state_dir": "state",
        "work_dir": "work",
    }
    if example.invalid is not None:
        with pytest.raises(ConfigError, match=re.escape(f"allowed_images[0]: pattern {pattern!r}")):
            SiteConfig.from_dict(config, base_dir=tmp_path)
        return
    site = SiteConfig.from_dict(config, base_dir=tmp_path)
    assert site.allowed_images == (pattern,)
    for reference, _ in example.allowed:
        assert site.allowlist().decide(reference, require_digest=site.require_digest).allowed
