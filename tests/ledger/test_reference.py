"""Docker image references: strict parsing and Docker's normalization, table-driven.

One parser (:mod:`ledger.reference`) for the registry, which refuses a task naming an image it
cannot parse, and for each site's allowlist."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.errors import FormatError, InvalidReferenceError
from ledger.reference import ImageRef, parse_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4
OTHER_DIGEST = "sha256:" + "f" * 64

# (input, domain, path, tag, digest, familiar)
VALID = [
    ("ubuntu", "docker.io", "library/ubuntu", "latest", None, "ubuntu:latest"),
    ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None, "ubuntu:22.04"),
    ("docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", None, "ubuntu:latest"),
    ("docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", None, "ubuntu:latest"),
    ("library/ubuntu:20.04", "docker.io", "library/ubuntu", "20.04", None, "ubuntu:20.04"),
    # Docker's legacy default registry name is the same registry.
    ("index.docker.io/ubuntu:1", "docker.io", "library/ubuntu", "1", None, "ubuntu:1"),
    ("index.docker.io/team/x:1", "docker.io", "team/x", "1", None, "team/x:1"),
    ("myconsortium/avg:1.2", "docker.io", "myconsortium/avg", "1.2", None, "myconsortium/avg:1.2"),
    (
        "docker.io/myconsortium/avg:1.2",
        "docker.io",
        "myconsortium/avg",
        "1.2",
        None,
        "myconsortium/avg:1.2",
    ),
    (
        "registry.example.org:5000/team/avg:2",
        "registry.example.org:5000",
        "team/avg",
        "2",
        None,
        "registry.example.org:5000/team/avg:2",
    ),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
    # Without a '/', 'localhost:5000' is the official image 'localhost' with tag '5000'.
    ("localhost:5000", "docker.io", "library/localhost", "5000", None, "localhost:5000"),
    (
        "127.0.0.1:5000/pht-test/busybox:latest",
        "127.0.0.1:5000",
        "pht-test/busybox",
        "latest",
        None,
        "127.0.0.1:5000/pht-test/busybox:latest",
    ),
    ("[::1]:5000/pht/x:1", "[::1]:5000", "pht/x", "1", None, "[::1]:5000/pht/x:1"),
    ("[fd00::2]/pht/x:1", "[fd00::2]", "pht/x", "1", None, "[fd00::2]/pht/x:1"),
    (f"myconsortium/avg@{DIGEST}", "docker.io", "myconsortium/avg", None, DIGEST, None),
    (f"myconsortium/avg:1.2@{DIGEST}", "docker.io", "myconsortium/avg", "1.2", DIGEST, None),
    ("a/b_c__d.e---f:T_a.g-1", "docker.io", "a/b_c__d.e---f", "T_a.g-1", None, None),
    ("x:_", "docker.io", "library/x", "_", None, "x:_"),
    ("x:" + "a" * 128, "docker.io", "library/x", "a" * 128, None, None),
    ("a1-b.c/d", "a1-b.c", "d", "latest", None, "a1-b.c/d:latest"),
    ("library/library/x", "docker.io", "library/library/x", "latest", None, None),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest", "familiar"), VALID)
def test_parses_and_normalizes_like_docker(
    text: str, domain: str, path: str, tag: str | None, digest: str | None, familiar: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    if familiar is not None:
        assert ref.familiar() == familiar
    assert parse_reference(ref.familiar()) == ref
    assert parse_reference(ref.canonical()) == ref


# (attack, input, words of the reason)
HOSTILE = [
    ("empty", "", "empty"),
    ("only_a_tag", ":latest", "repository name is missing"),
    ("only_a_digest", f"@{DIGEST}", "repository name is missing"),
    ("trailing_newline", "myconsortium/avg:1.2\n", "control character"),
    ("leading_newline", "\nmyconsortium/avg:1.2", "control character"),
    ("leading_space", " myconsortium/avg:1.2", "whitespace"),
    ("trailing_space", "myconsortium/avg:1.2 ", "whitespace"),
    ("tab_inside", "myconsortium/avg\t:1.2", "whitespace"),
    ("carriage_return", "myconsortium/avg:1.2\r", "control character"),
    ("nul_byte", "myconsortium/avg\x00:1.2", "control character"),
    ("nul_byte_at_end", "myconsortium/avg:1.2\x00", "control character"),
    ("escape_sequence", "myconsortium/\x1b[31mavg", "control character"),
    ("upper_case_path", "MyConsortium/avg:1.2", "lowercase"),
    ("upper_case_registry", "Registry.example.org/team/avg:1", "lowercase"),
    ("upper_case_first_component_as_docker_host", "EVIL/avg:1", "lowercase"),
    ("cyrillic_a_lookalike", "myconsortium/\u0430vg:1.2", "U+0430 CYRILLIC SMALL LETTER A"),
    ("cyrillic_lookalike_registry", "r\u0435gistry.example.org/x:1", "non-ASCII"),
    ("fullwidth_solidus", "myconsortium\uff0favg:1.2", "FULLWIDTH SOLIDUS"),
    ("fullwidth_letters", "\uff4d\uff59consortium/avg", "non-ASCII"),
    ("zero_width_space", "myconsortium/a\u200bvg", "ZERO WIDTH SPACE"),
    ("right_to_left_override", "myconsortium/avg\u202e:1", "non-ASCII"),
    ("shell_semicolon", "myconsortium/avg:1.2;rm -rf /", "';'"),
    ("shell_command_substitution", "myconsortium/$(id)", "'$'"),
    ("shell_backticks", "myconsortium/`id`", "'`'"),
    ("shell_pipe", "myconsortium/avg|sh", "'|'"),
    ("shell_and", "myconsortium/avg&&reboot", "'&'"),
    ("shell_space_argument", "myconsortium/avg --privileged", "whitespace"),
    ("shell_redirect", "myconsortium/avg>/etc/passwd", "'>'"),
    ("quote", "myconsortium/avg'", '"\'"'),
    ("dot_dot_component", "myconsortium/../avg", "'..'"),
    ("path_traversal_prefix", "../../x", "'..'"),
    ("double_dot_inside_component", "myconsortium/a..b", "'a..b'"),
    ("single_dot_component", "./avg", "'.'"),
    ("leading_separator", "myconsortium/-avg", "'-avg'"),
    ("trailing_separator", "myconsortium/avg_", "'avg_'"),
    ("triple_underscore", "myconsortium/a___b", "'a___b'"),
    ("double_slash", "myconsortium//avg", "empty path component"),
    ("trailing_slash", "myconsortium/avg/", "empty path component"),
    ("leading_slash", "/myconsortium/avg", "empty path component"),
    ("registry_without_path", "registry.example.org/", "repository path is empty"),
    ("over_long_name", "a/" + "b" * 254, "longer than 255"),
    ("over_long_after_library_prefix", "b" * 250, "longer than 255"),
    ("absurdly_long_input", "a" * 100_000, "longer than any valid reference"),
    ("tag_too_long", "x:" + "a" * 129, "longer than 128"),
    ("tag_starting_with_dot", "x:.hidden", "must start with"),
    ("tag_starting_with_dash", "x:-rf", "must start with"),
    ("empty_tag", "x:", "not followed by a tag"),
    ("two_tags", "x:1:2", "lowercase letters and digits"),
    ("at_without_digest", "myconsortium/avg@", "not followed by a digest"),
    ("two_at_signs", f"x@{DIGEST}@{DIGEST}", "more than one '@'"),
    ("digest_without_algorithm", "x@" + "a" * 64, "'sha256:' followed by"),
    ("digest_too_short", "x@sha256:" + "a" * 63, "64 hex digits, found 63"),
    ("digest_too_long", "x@sha256:" + "a" * 65, "64 hex digits, found 65"),
    ("digest_upper_case_hex", "x@sha256:" + "A" * 64, "lowercase hex"),
    ("digest_not_hex", "x@sha256:" + "g" * 64, "lowercase hex"),
    ("digest_sha512", "x@sha512:" + "a" * 128, "must be sha256, found 'sha512'"),
    ("digest_weak_md5", "x@md5:" + "a" * 32, "must be sha256"),
    ("tag_after_digest", f"x@{DIGEST}:1", "64 hex digits"),
    ("bare_image_id", "0123456789abcdef" * 4, "image id"),
    ("port_out_of_range", "registry.example.org:65536/x", "1..65535"),
    ("port_zero", "registry.example.org:0/x", "1..65535"),
    ("port_leading_zero", "registry.example.org:05000/x", "1..65535"),
    ("port_not_numeric", "registry.example.org:http/x", "1..65535"),
    ("empty_port", "registry.example.org:/x", "1..65535"),
    ("two_ports", "localhost:5000:5001/x", "more than one ':'"),
    ("host_label_with_leading_dash", "-evil.example/x", "must be dot-separated labels"),
    ("host_with_empty_label", "evil..example/x", "must be dot-separated labels"),
    ("host_with_underscore", "evil_host.example/x", "must be dot-separated labels"),
    ("host_label_too_long", "a" * 64 + ".example/x", "label longer than 63"),
    ("empty_host_with_port", ":5000/x", "empty host name"),
    ("ipv6_not_compressed", "[0:0::1]:5000/x", "compressed lowercase form [::1]"),
    ("ipv6_upper_case", "[FD00::2]/x", "lowercase"),
    ("ipv6_unclosed", "[::1/x", "closing ']'"),
    ("ipv6_invalid", "[:::1]/x", "not an IPv6 address"),
    ("ipv6_garbage_after_bracket", "[::1]x/y", "after the IPv6 registry host"),
    ("ipv6_unbracketed", "::1/x", "[brackets]"),
    ("dotted_first_component_is_read_as_host", "a.b__c/x", "must be dot-separated labels"),
    ("hub_namespace_spoofing_registry", "docker.io/registry.example.org/team/x:1", "spoofing"),
    ("legacy_hub_namespace_spoofing_registry", "index.docker.io/evil.example/x", "spoofing"),
    ("hub_namespace_spoofing_localhost", "docker.io/localhost/x", "spoofing"),
    ("brackets_in_hostname", "a[b].example/x", "only enclose an IPv6"),
    ("url_scheme", "https://registry.example.org/x", "port '' must be"),
    ("userinfo", "user@registry.example.org/x", "'sha256:' followed by"),
    ("percent_encoding", "myconsortium/%2e%2e", "'%'"),
    ("backslash", "myconsortium\\avg", "'\\\\'"),
    ("not_a_string", 42, "expected a string"),
]


@pytest.mark.parametrize(("text", "why"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_rejects_hostile_reference(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    message = str(caught.value)
    assert why in message
    assert "\n" not in message  # the reason is one line, whatever the input held


def test_invalid_reference_is_a_format_error() -> None:
    # A task naming such an image is a malformed event (400 malformed-event at the registry).
    assert issubclass(InvalidReferenceError, FormatError)


def test_registry_spoof_keeps_its_domain_in_the_familiar_form() -> None:
    spoof = parse_reference("evil.example/myconsortium/x:1")
    assert spoof.domain == "evil.example"
    assert spoof.familiar() == "evil.example/myconsortium/x:1"
    assert spoof.familiar() != parse_reference("myconsortium/x:1").familiar()


def test_tag_and_digest_both_given_pulls_by_digest() -> None:
    ref = parse_reference(f"myconsortium/avg:1.2@{DIGEST}")
    assert ref.familiar() == f"myconsortium/avg:1.2@{DIGEST}"
    assert ref.canonical() == f"docker.io/myconsortium/avg:1.2@{DIGEST}"
    assert ref.pull_ref() == f"docker.io/myconsortium/avg@{DIGEST}"


def test_pull_ref_uses_the_implied_latest_tag() -> None:
    ref = parse_reference("ubuntu")
    assert ref.repository == "docker.io/library/ubuntu"
    assert ref.canonical() == "docker.io/library/ubuntu:latest"
    assert ref.pull_ref() == "docker.io/library/ubuntu:latest"


def test_digest_only_reference_implies_no_tag() -> None:
    ref = parse_reference(f"localhost:5000/pht/x@{DIGEST}")
    assert ref.tag is None
    assert ref.familiar() == f"localhost:5000/pht/x@{DIGEST}"
    assert ref.pull_ref() == f"localhost:5000/pht/x@{DIGEST}"


def test_familiar_repository_drops_only_docker_hub_and_library() -> None:
    assert parse_reference("ubuntu:1").familiar_repository == "ubuntu"
    assert parse_reference("team/x").familiar_repository == "team/x"
    assert parse_reference("localhost/library/x").familiar_repository == "localhost/library/x"


# Direct construction must keep the same invariants as parsing, or familiar() would lie.
UNNORMALIZED = [
    ("domain_not_read_as_registry", dict(domain="evil", path="x", tag="1", digest=None)),
    ("legacy_docker_hub_domain", dict(domain="index.docker.io", path="a/b", tag="1", digest=None)),
    ("official_image_without_library", dict(domain="docker.io", path="x", tag="1", digest=None)),
    ("neither_tag_nor_digest", dict(domain="localhost", path="x", tag=None, digest=None)),
    ("bad_path", dict(domain="localhost", path="../x", tag="1", digest=None)),
    ("bad_tag", dict(domain="localhost", path="x", tag="a b", digest=None)),
    ("bad_digest", dict(domain="localhost", path="x", tag=None, digest="sha256:ab")),
    ("hub_path_printing_as_registry", dict(domain="docker.io", path="a.b/x", tag="1", digest=None)),
    ("newline_in_domain", dict(domain="a.b\n", path="x", tag="1", digest=None)),
]


@pytest.mark.parametrize("fields", [c[1] for c in UNNORMALIZED], ids=[c[0] for c in UNNORMALIZED])
def test_image_ref_refuses_unnormalized_fields(fields: dict[str, str | None]) -> None:
    with pytest.raises(InvalidReferenceError):
        ImageRef(**fields)  # type: ignore[arg-type]


_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,5}){0,2}", fullmatch=True)
_domain = st.sampled_from(
    ["", "docker.io/", "index.docker.io/", "localhost/", "localhost:5000/", "r.example:443/"]
)
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_digest = st.one_of(st.none(), st.just(DIGEST), st.just(OTHER_DIGEST))


@given(_domain, st.lists(_component, min_size=1, max_size=4), _tag, _digest)
def test_familiar_and_canonical_forms_round_trip(
    domain: str, path: list[str], tag: str | None, digest: str | None
) -> None:
    # On Docker Hub (named or implied) a dotted first component would read as a registry host.
    assume(domain not in ("", "docker.io/", "index.docker.io/") or "." not in path[0])
    text = domain + "/".join(path)
    text += f":{tag}" if tag is not None else ""
    text += f"@{digest}" if digest is not None else ""
    ref = parse_reference(text)
    assert parse_reference(ref.familiar()) == ref
    assert parse_reference(ref.canonical()) == ref
    assert parse_reference(ref.pull_ref()).repository == ref.repository
    assert ref.digest == digest
    assert ref.tag == (tag if tag is not None or digest is not None else "latest")
