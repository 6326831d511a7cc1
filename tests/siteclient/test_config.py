"""The site's config.json: every problem reported at once, one clear line each."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from crypto.keys import SigningKey
from ledger.checkpoint import verifier_key
from siteclient.config import SiteConfig
from siteclient.configsections import FileServiceConfig, Limits
from siteclient.errors import ConfigError

LOG_KEY = verifier_key("pht.example.org/consortium", SigningKey.from_seed(bytes(32)).public)
GENESIS = "ab" * 32


def _minimal() -> dict[str, Any]:
    return {
        "site": "site-a",
        "key_file": "keys/site-a.key",
        "registry": "https://registry.example.org/",
        "log_key": LOG_KEY,
        "genesis": GENESIS,
        "sparql_endpoint": "http://127.0.0.1:7878/query",
        "allowed_images": [r"myconsortium/[a-z0-9._-]+:[\w.-]+"],
        "state_dir": "state",
        "work_dir": "work",
    }


def _write(directory: Path, data: object, *, key_mode: int = 0o600) -> Path:
    keys = directory / "keys"
    keys.mkdir(exist_ok=True)
    key = keys / "site-a.key"
    if not key.exists():
        SigningKey.from_seed(bytes([1]) * 32).save(key)
    os.chmod(key, key_mode)
    path = directory / "config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def _problems(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [line[4:] for line in str(error.value).splitlines()[1:]]


def test_minimal_config_loads_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    config = SiteConfig.load(_write(tmp_path, _minimal()))
    assert config.site == "site-a"
    assert config.key_file == tmp_path / "keys" / "site-a.key"
    assert config.state_dir == tmp_path / "state"
    assert config.work_dir == tmp_path / "work"
    assert config.registry == "https://registry.example.org"
    assert config.limits == Limits()
    assert config.limits.output_max_bytes == 100 * 1024 * 1024
    assert config.limits.log_max_bytes == 1024 * 1024
    assert (config.require_digest, config.network, config.parallelism) == (False, None, 1)
    assert config.poll_wait_s == 25
    assert config.trust_on_first_use == ()
    assert config.warnings() == ()
    assert config.allowlist().decide("myconsortium/avg:1", require_digest=False).allowed


def test_relative_paths_resolve_against_the_config_dir_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "etc" / "pht"
    site_dir.mkdir(parents=True)
    data = _minimal() | {"state_dir": "../../var/state", "work_dir": "/srv/pht/work"}
    path = _write(site_dir, data)
    monkeypatch.chdir(tmp_path)
    config = SiteConfig.load(os.path.relpath(path))
    assert config.state_dir == tmp_path / "var" / "state"
    assert config.work_dir == Path("/srv/pht/work")
    assert config.key_file == site_dir / "keys" / "site-a.key"


def test_every_field_can_be_set(tmp_path: Path) -> None:
    limits = {
        "timeout_s": 30,
        "memory_mb": 64,
        "cpu_millis": 500,
        "pids": 32,
        "output_max_bytes": 1000,
        "output_max_files": 3,
        "log_max_bytes": 4096,
        "tmpfs_mb": 8,
    }
    data = _minimal() | {
        "require_digest": True,
        "network": "pht-sparql",
        "limits": limits,
        "parallelism": 4,
        "poll_wait_s": 0,
    }
    config = SiteConfig.load(_write(tmp_path, data))
    assert config.limits == Limits(**limits)
    assert (config.require_digest, config.network, config.parallelism) == (True, "pht-sparql", 4)
    assert config.poll_wait_s == 0
    assert any("pht-sparql" in warning for warning in config.warnings())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json does not exist"):
        SiteConfig.load(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"site": "site-a",}', "not valid JSON: .* line 1 column"),
        ("", "not valid JSON"),
        ('{"site": NaN}', "NaN is not JSON"),
        ('{"site": "a", "site": "b"}', "key 'site' appears twice"),
        ('{"limits": {"pids": 1, "pids": 2}}', "key 'pids' appears twice"),
        ("[" * 100_000, "not valid JSON"),
    ],
    ids=["trailing_comma", "empty", "nan", "duplicate_key", "nested_duplicate_key", "deep"],
)
def test_bad_json(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        SiteConfig.load(_write(tmp_path, text))


def test_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, {})
    path.write_bytes(b'{"site": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        SiteConfig.load(path)


def test_oversized_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {})
    path.write_bytes(b" " * (1 << 20) + b"{}")
    with pytest.raises(ConfigError, match="larger than"):
        SiteConfig.load(path)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a JSON object, found an array"):
        SiteConfig.load(_write(tmp_path, [1]))


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("allowed_image", "allowed_images"),
        ("requires_digest", "require_digest"),
        ("paralelism", "parallelism"),
        ("sparql_endpiont", "sparql_endpoint"),
    ],
)
def test_unknown_key_is_refused_with_a_suggestion(
    tmp_path: Path, key: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, _minimal() | {key: True}))
    assert _problems(caught) == [f"{key!r}: unknown key; did you mean {suggestion!r}?"]


def test_unknown_limit_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, _minimal() | {"limits": {"memory": 100}}))
    assert _problems(caught) == ["limits.'memory': unknown key; did you mean limits.'memory_mb'?"]


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, _minimal() | {"zzz": 1}))
    assert _problems(caught) == ["'zzz': unknown key"]


# (case, field, value, words of the problem)
WRONG = [
    ("site_not_a_string", "site", 7, "site: expected a non-empty string, found an integer"),
    ("site_upper_case", "site", "Site-A", "site: expected a member name"),
    ("site_empty", "site", "", "site: expected a non-empty string"),
    ("key_file_null", "key_file", None, "key_file: expected a non-empty string, found null"),
    ("key_file_tilde", "key_file", "~/site.key", "'~' is not expanded"),
    ("path_with_nul", "state_dir", "st\x00ate", "cannot contain a NUL"),
    ("registry_ftp", "registry", "ftp://registry.example.org", "http:// or https:// URL"),
    ("registry_no_scheme", "registry", "registry.example.org", "http:// or https:// URL"),
    ("registry_credentials", "registry", "https://u:p@r.example.org", "credentials"),
    ("registry_query", "registry", "https://r.example.org/?x=1", "without a query or fragment"),
    ("registry_bad_port", "registry", "https://r.example.org:99999", "not a valid URL"),
    ("registry_with_space", "registry", "https://r.example.org /", "whitespace"),
    ("sparql_fragment", "sparql_endpoint", "http://s.example/q#x", "without a fragment"),
    ("sparql_javascript", "sparql_endpoint", "javascript:alert(1)", "http:// or https://"),
    ("log_key_garbage", "log_key", "not-a-key", "log_key: not a registry note verifier key"),
    ("log_key_number", "log_key", 1, "log_key: expected a non-empty string or null"),
    ("genesis_short", "genesis", "ab" * 31, "genesis: expected 64 lowercase hex"),
    ("genesis_upper", "genesis", "AB" * 32, "genesis: expected 64 lowercase hex"),
    ("allowed_images_string", "allowed_images", ".*", "expected an array of regular expressions"),
    ("allowed_images_bad_regex", "allowed_images", ["ok", "(x"], "allowed_images[1]: pattern"),
    ("require_digest_string", "require_digest", "yes", "require_digest: expected true or false"),
    ("require_digest_integer", "require_digest", 1, "require_digest: expected true or false"),
    ("network_host", "network", "host", "'host' is refused"),
    ("network_none_string", "network", "none", "use null for no network"),
    ("network_container_mode", "network", "container:abc", "expected a Docker network name"),
    ("parallelism_zero", "parallelism", 0, "parallelism: expected an integer in [1, 64], found 0"),
    ("parallelism_bool", "parallelism", True, "parallelism: expected an integer in [1, 64]"),
    ("parallelism_float", "parallelism", 2.0, "found a number"),
    ("poll_wait_beyond_api", "poll_wait_s", 31, "poll_wait_s: expected an integer in [0, 30]"),
    ("limits_array", "limits", [], "limits: expected an object, found an array"),
    ("limit_negative", "limits", {"timeout_s": -1}, "limits.timeout_s: expected an integer"),
    ("limit_string", "limits", {"pids": "128"}, "limits.pids: expected an integer"),
    ("memory_below_docker_minimum", "limits", {"memory_mb": 1}, "limits.memory_mb"),
]


@pytest.mark.parametrize(
    ("field", "value", "why"), [c[1:] for c in WRONG], ids=[c[0] for c in WRONG]
)
def test_wrong_value_is_one_clear_problem(
    tmp_path: Path, field: str, value: object, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, _minimal() | {field: value}))
    problems = _problems(caught)
    assert len(problems) == 1, problems
    assert why in problems[0]


def test_multiple_problems_are_reported_together(tmp_path: Path) -> None:
    data = _minimal() | {
        "site": 1,
        "registry": "ftp://x",
        "allowed_image": [],
        "limits": {"pids": 0, "memroy_mb": 5},
        "network": "host",
    }
    del data["genesis"]
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, data))
    message = str(caught.value)
    assert message.startswith(f"config file {tmp_path / 'config.json'} has 7 problems:\n")
    problems = _problems(caught)
    assert len(problems) == 7
    for words in (
        "'allowed_image': unknown key; did you mean 'allowed_images'?",
        "'genesis': missing (required)",
        "site: expected a non-empty string",
        "registry: expected an http:// or https:// URL",
        "network: 'host' is refused",
        "limits.'memroy_mb': unknown key; did you mean limits.'memory_mb'?",
        "limits.pids: expected an integer in [1, 4194304], found 0",
    ):
        assert any(words in problem for problem in problems), (words, problems)


def test_empty_object_lists_every_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, {}))
    assert _problems(caught) == [
        f"{key!r}: missing (required)"
        for key in (
            "site",
            "key_file",
            "registry",
            "log_key",
            "genesis",
            "sparql_endpoint",
            "allowed_images",
            "state_dir",
            "work_dir",
        )
    ]


def test_trust_on_first_use_must_be_explicit_and_is_said(tmp_path: Path) -> None:
    config = SiteConfig.load(_write(tmp_path, _minimal() | {"log_key": None, "genesis": None}))
    assert config.trust_on_first_use == ("log_key", "genesis")
    warnings = config.warnings()
    assert sum("trusting the registry's value on first use" in w for w in warnings) == 2


def test_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SiteConfig.load(_write(tmp_path, _minimal() | {"key_file": "nope.key"}))
    assert _problems(caught) == [
        f"key_file: {tmp_path / 'nope.key'} does not exist (create it with: pht keys new)"
    ]


def test_key_file_readable_by_others(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has mode 0644; expected 0600"):
        SiteConfig.load(_write(tmp_path, _minimal(), key_mode=0o644))


def test_key_file_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        SiteConfig.load(_write(tmp_path, _minimal() | {"key_file": "keys"}))


@pytest.mark.parametrize(
    ("state_dir", "work_dir", "key_file"),
    [
        ("same", "same", "keys/site-a.key"),
        ("work/state", "work", "keys/site-a.key"),
        ("state", "state/work", "keys/site-a.key"),
        ("state", "work", "work/site-a.key"),
        ("state", "work/../keys", "keys/site-a.key"),
    ],
    ids=["equal", "state_in_work", "work_in_state", "key_in_work", "key_in_work_via_dotdot"],
)
def test_containers_work_dir_never_reaches_key_or_state(
    state_dir: str, work_dir: str, key_file: str
) -> None:
    data = _minimal() | {"state_dir": state_dir, "work_dir": work_dir, "key_file": key_file}
    with pytest.raises(ConfigError, match="work_dir"):
        SiteConfig.from_dict(data, base_dir="/etc/pht")


def test_from_dict_touches_no_file_system() -> None:
    config = SiteConfig.from_dict(_minimal(), base_dir="/nonexistent/site")
    assert config.key_file == Path("/nonexistent/site/keys/site-a.key")


def test_config_is_immutable() -> None:
    config = SiteConfig.from_dict(_minimal(), base_dir="/etc/pht")
    with pytest.raises(AttributeError):
        config.site = "site-b"  # type: ignore[misc]


def test_limits_are_checked_on_construction() -> None:
    with pytest.raises(ConfigError, match=r"limits\.pids: expected an integer in \[1, 4194304\]"):
        Limits(pids=0)


def test_file_service_is_absent_unless_configured_and_has_safe_defaults(tmp_path: Path) -> None:
    assert SiteConfig.load(_write(tmp_path, _minimal())).file_service is None
    config = SiteConfig.load(_write(tmp_path, _minimal() | {"file_service": {}}))
    fs = config.file_service
    assert fs == FileServiceConfig(inbox_dir=tmp_path / "inbox")
    assert (fs.host, fs.port, fs.public_url) == ("127.0.0.1", 8443, None)
    assert (fs.max_file_bytes, fs.min_free_bytes) == (256 << 20, 64 << 20)


def test_every_file_service_field_can_be_set(tmp_path: Path) -> None:
    section = {
        "host": "0.0.0.0",
        "port": 0,
        "max_file_bytes": 1000,
        "min_free_bytes": 0,
        "inbox_dir": "/srv/pht/inbox",
        "public_url": "https://TTP.example.org/",
    }
    fs = SiteConfig.load(_write(tmp_path, _minimal() | {"file_service": section})).file_service
    assert fs == FileServiceConfig(
        host="0.0.0.0",
        port=0,
        max_file_bytes=1000,
        min_free_bytes=0,
        inbox_dir=Path("/srv/pht/inbox"),
        public_url="https://TTP.example.org",
    )


def test_file_service_problems_are_reported_together(tmp_path: Path) -> None:
    section = {
        "host": "evil host/",
        "port": 70000,
        "max_file_bytes": 0,
        "min_free_bytes": -1,
        "inbox_dir": "work/inbox",
        "public_url": "https://ttp.example.org/files",
        "max_file_byte": 5,
    }
    with pytest.raises(ConfigError) as error:
        SiteConfig.load(_write(tmp_path, _minimal() | {"file_service": section}))
    problems = _problems(error)
    assert len(problems) == 7, problems
    assert (
        "file_service.'max_file_byte': unknown key; did you mean file_service.'max_file_bytes'?"
        in problems
    )
    expected = [
        "file_service.host: expected a host name or IP address",
        "file_service.public_url: expected scheme://host[:port] without a path",
        "file_service.port: expected an integer in [0, 65535], found 70000",
        "file_service.max_file_bytes: expected an integer in [1,",
        "file_service.min_free_bytes: expected an integer in [0,",
        "file_service.inbox_dir",
    ]
    for text in expected:
        assert any(text in problem for problem in problems), (text, problems)
    assert any("work_dir" in p and "inbox_dir" in p for p in problems)


@pytest.mark.parametrize(
    ("inbox_dir", "clash"),
    [("state/inbox", "state_dir"), ("work", "work_dir"), (".", "state_dir"), ("keys", "key_file")],
)
def test_inbox_never_overlaps_state_work_or_key(tmp_path: Path, inbox_dir: str, clash: str) -> None:
    data = _minimal() | {"file_service": {"inbox_dir": inbox_dir}}
    with pytest.raises(ConfigError) as error:
        SiteConfig.load(_write(tmp_path, data))
    assert any(clash in p and "inbox_dir" in p for p in _problems(error)), _problems(error)


def test_file_service_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file_service: expected an object, found an array"):
        SiteConfig.load(_write(tmp_path, _minimal() | {"file_service": []}))


def test_site_without_sparql_store_writes_null(tmp_path: Path) -> None:
    """Finding 8: `"sparql_endpoint": ""` was refused, so a site without a store had to invent
    a URL; null says there is none. An empty string is still refused (a typo, not a choice)."""
    config = SiteConfig.load(_write(tmp_path, {**_minimal(), "sparql_endpoint": None}))
    assert config.sparql_endpoint is None
    with pytest.raises(ConfigError) as error:
        SiteConfig.load(_write(tmp_path, {**_minimal(), "sparql_endpoint": ""}))
    assert _problems(error) == [
        "sparql_endpoint: expected a non-empty string or null, found the string ''"
    ]
    missing = {k: v for k, v in _minimal().items() if k != "sparql_endpoint"}
    with pytest.raises(ConfigError) as error:
        SiteConfig.load(_write(tmp_path, missing))
    assert _problems(error) == ["'sparql_endpoint': missing (required)"]
