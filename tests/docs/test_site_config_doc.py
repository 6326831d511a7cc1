"""docs/site-config.md against the code that reads a site config: the same keys, the same
defaults, and an example that loads."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from siteclient import config as site_config
from siteclient.config import SiteConfig
from siteclient.configsections import LIMIT_BOUNDS, FileServiceConfig, Limits

DOC = Path(__file__).resolve().parents[2] / "docs" / "site-config.md"
TEXT = DOC.read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = TEXT.index(f"\n{title}\n")
    end = TEXT.find("\n## ", start + 1)
    following = TEXT.find("\n### ", start + 1)
    ends = [e for e in (end, following) if e != -1]
    return TEXT[start : min(ends) if ends else len(TEXT)]


def _rows(section: str) -> dict[str, list[str]]:
    """Table rows of ``section`` whose first cell is a `key`: key -> the other cells."""
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `([a-z_]+)` \|(.*)\|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split("|")]
    return rows


def test_every_key_the_code_reads_is_documented_and_no_other() -> None:
    required = _rows(_section("## Required keys"))
    optional = _rows(_section("## Optional keys"))
    assert set(required) == set(site_config._REQUIRED)
    assert set(optional) == set(site_config._OPTIONAL)


def test_limit_defaults_and_ranges_are_the_code_s() -> None:
    rows = _rows(_section("### `limits`"))
    assert set(rows) == set(LIMIT_BOUNDS)
    defaults = Limits()
    for name, (default, bounds, _) in rows.items():
        assert re.match(rf"`{getattr(defaults, name)}`", default), (name, default)
        low, high = LIMIT_BOUNDS[name]
        assert bounds.startswith(f"{low} to "), (name, bounds)
        written = bounds.removeprefix(f"{low} to ")
        value = 2 ** int(written[2:]) if written.startswith("2^") else int(written)
        assert value == high, (name, bounds)


def test_file_service_defaults_are_the_code_s(tmp_path: Path) -> None:
    rows = _rows(_section("### `file_service`"))
    defaults = FileServiceConfig(inbox_dir=tmp_path / "inbox")
    assert set(rows) == {f.name for f in dataclasses.fields(FileServiceConfig)}
    for name in ("host", "port", "max_file_bytes", "min_free_bytes"):
        assert rows[name][0].startswith(f"`{json.dumps(getattr(defaults, name))}`"), name


def test_the_complete_example_loads(tmp_path: Path) -> None:
    example = TEXT.split("## A complete example", 1)[1].split("```json\n", 1)[1].split("```")[0]
    data = json.loads(example)
    config = SiteConfig.from_dict(data, base_dir=tmp_path)
    assert config.key_file == tmp_path / "site-a.key"  # relative to the config's folder
    assert config.state_dir == tmp_path / "state"
    assert config.allowlist().decide("myconsortium/avg:1.2", require_digest=False).allowed
    # The example pins the registry and admits no foreign image: the one note is the network.
    assert len(config.warnings()) == 1 and "'site-a-net'" in config.warnings()[0]
