"""Docker image references, parsed strictly and normalized as Docker does.

This is the one parser of image references: the registry runs it on every ``task`` body it
appends (:class:`ledger.bodies.Task` refuses an image no site could parse, so such a task is a
malformed event), and each site runs it again before its allowlist
(:mod:`siteclient.policy.allowlist`) matches the familiar form. It is pure and ASCII only.

The grammar is the one of the distribution/reference project (``reference.go``, ``regexp.go``,
``normalize.go``), restated here and implemented from the grammar, not from its code::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [ domain "/" ] path
    domain          := host [ ":" port ]
    host            := domain-name | "[" IPv6address "]"
    domain-name     := domain-component ( "." domain-component )*
    domain-component:= [a-z0-9] | [a-z0-9] [a-z0-9-]* [a-z0-9]
    path            := path-component ( "/" path-component )*
    path-component  := [a-z0-9]+ ( separator [a-z0-9]+ )*
    separator       := "." | "_" | "__" | "-"+
    tag             := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest          := "sha256:" [a-f0-9]{64}

Normalization (Docker's ``ParseNormalizedNamed``): the first path component is a registry domain
only if it contains ``.`` or ``:`` or is ``localhost``; otherwise the domain is ``docker.io``. The
legacy ``index.docker.io`` becomes ``docker.io``. On ``docker.io`` a single component gets the
``library/`` prefix (``ubuntu`` -> ``docker.io/library/ubuntu``). With neither tag nor digest the
tag ``latest`` is implied and recorded, as ``docker pull`` does.

Decisions, where this parser is stricter than Docker (each refusal fails closed):

- ASCII only, and only the characters the grammar can produce; no whitespace, control characters,
  NUL or a trailing newline (matching uses :func:`re.fullmatch`, never ``$``).
- Upper case is refused in the whole name, registry host included (Docker refuses it in the path
  and treats an upper-case first component as a host): one registry, one spelling.
- Digests are ``sha256`` only, 64 lowercase hex digits.
- A port is a decimal number 1..65535 without leading zeros. Host labels are at most 63
  characters, the host at most 253.
- Bracketed IPv6 hosts (newer grammar) are accepted only in their compressed lowercase form
  (``[::1]``, not ``[0:0::1]``), again one spelling per registry.
- The fully qualified name (``domain/path``) is at most 255 characters, as Docker checks after
  normalization.
- A bare 64-hex name is refused (Docker does too: it would be read as an image id).
- On ``docker.io`` a first path component that would read as a registry host (``docker.io/
  registry.example.org/x``, ``docker.io/localhost/x``) is refused: its familiar form would name
  another registry. Docker Hub namespaces never contain a dot, so nothing real is lost.

The **familiar form** is what Docker prints and what the site allowlist matches: ``docker.io/`` and
an official image's ``library/`` are dropped, the tag (``latest`` when implied) and the digest are
kept: ``ubuntu:latest``, ``myconsortium/avg:1.2``, ``registry.example.org:5000/team/avg:2``,
``myconsortium/avg@sha256:...``, ``myconsortium/avg:1.2@sha256:...``. When both tag and digest are
given Docker pulls by digest and ignores the tag; the tag is kept for the allowlist and display.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass

from ledger.errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX_LENGTH = 255
TAG_MAX_LENGTH = 128
REFERENCE_MAX_LENGTH = 512  # longer than any valid reference (255 + 1 + 128 + 1 + 71)
_HOST_MAX_LENGTH = 253
_LABEL_MAX_LENGTH = 63

_ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/@[]")

_DOMAIN_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")
_IMAGE_ID = _SHA256_HEX


def _fail(text: str, why: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid image reference {text[:80]!r}: {why}")


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{char!r} ({code} {name})" if name else f"{char!r} ({code})"


def _check_chars(text: str) -> None:
    for position, char in enumerate(text):
        if char in _ALLOWED_CHARS:
            continue
        if not char.isascii():
            raise _fail(
                text,
                f"non-ASCII character {_describe_char(char)} at position {position}; "
                "image references are ASCII only",
            )
        if char.isspace() or not char.isprintable():
            raise _fail(
                text,
                f"whitespace or control character {_describe_char(char)} at position {position}",
            )
        raise _fail(
            text,
            f"character {char!r} at position {position} cannot appear in an image reference "
            "(allowed: a-z, A-Z in tags, 0-9, '.', '_', '-', ':', '/', '@', '[', ']')",
        )


def _check_digest(text: str, digest: str) -> str:
    algorithm, colon, encoded = digest.partition(":")
    if not colon:
        raise _fail(text, f"digest {digest[:80]!r} must be 'sha256:' followed by 64 hex digits")
    if algorithm != "sha256":
        raise _fail(text, f"digest algorithm must be sha256, found {algorithm[:20]!r}")
    if not _SHA256_HEX.fullmatch(encoded):
        if len(encoded) != 64:
            raise _fail(text, f"sha256 digest must have 64 hex digits, found {len(encoded)}")
        raise _fail(text, "sha256 digest must be 64 lowercase hex digits (0-9, a-f)")
    return digest


def _check_tag(text: str, tag: str) -> str:
    if not tag:
        raise _fail(text, "':' is not followed by a tag")
    if len(tag) > TAG_MAX_LENGTH:
        raise _fail(text, f"tag is {len(tag)} characters, longer than {TAG_MAX_LENGTH}")
    if not _TAG.fullmatch(tag):
        raise _fail(
            text,
            f"tag {tag[:40]!r} must start with a letter, digit or '_' and hold only "
            "letters, digits, '_', '.' and '-'",
        )
    return tag


def _check_port(text: str, port: str) -> None:
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise _fail(text, f"port {port[:20]!r} must be a number 1..65535 without leading zeros")


def _check_domain(text: str, domain: str) -> str:
    if domain.startswith("["):
        close = domain.find("]")
        if close < 0:
            raise _fail(text, f"IPv6 registry host {domain[:60]!r} lacks its closing ']'")
        inner, rest = domain[1:close], domain[close + 1 :]
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _fail(text, f"{inner[:60]!r} is not an IPv6 address") from None
        if address.compressed != inner:
            raise _fail(
                text,
                f"IPv6 registry host must be written in compressed lowercase form "
                f"[{address.compressed}], found [{inner[:60]}]",
            )
        if rest:
            if not rest.startswith(":"):
                raise _fail(text, f"unexpected {rest[:20]!r} after the IPv6 registry host")
            _check_port(text, rest[1:])
        return domain
    if domain.count(":") > 1:
        raise _fail(
            text,
            f"more than one ':' in registry domain {domain[:60]!r} "
            "(an IPv6 host is written in [brackets])",
        )
    host, colon, port = domain.partition(":")
    if colon:
        _check_port(text, port)
    if not host:
        raise _fail(text, "registry domain has an empty host name")
    if len(host) > _HOST_MAX_LENGTH:
        raise _fail(text, f"registry host is {len(host)} characters, longer than 253")
    if "[" in host or "]" in host:
        raise _fail(text, "'[' and ']' may only enclose an IPv6 registry host")
    if not _DOMAIN_NAME.fullmatch(host):
        raise _fail(
            text,
            f"registry host {host[:60]!r} must be dot-separated labels of a-z, 0-9 and '-' "
            "(a label neither starts nor ends with '-')",
        )
    if any(len(label) > _LABEL_MAX_LENGTH for label in host.split(".")):
        raise _fail(text, f"registry host {host[:60]!r} has a label longer than 63 characters")
    return domain


def _check_path(text: str, path: str) -> str:
    if not path:
        raise _fail(text, "the repository path is empty")
    for component in path.split("/"):
        if not component:
            raise _fail(text, "empty path component (a '//', or a '/' at the start or end)")
        if not _PATH_COMPONENT.fullmatch(component):
            raise _fail(
                text,
                f"path component {component[:60]!r} must be lowercase letters and digits, "
                "separated by one '.', one or two '_', or '-'s (not at the start or end)",
            )
    return path


def _is_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def _check_hub_namespace(text: str, domain: str, path: str) -> None:
    # The familiar form drops 'docker.io/', so 'docker.io/registry.example.org/x' would print as
    # 'registry.example.org/x', another registry's image (a mirror may well serve it): refused.
    first = path.partition("/")[0]
    if domain == DEFAULT_DOMAIN and "/" in path and _is_domain(first):
        raise _fail(
            text,
            f"on {DEFAULT_DOMAIN} the namespace {first[:60]!r} would read as a registry host "
            "once 'docker.io/' is dropped (registry spoofing)",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRef:
    """A parsed, normalized image reference.

    Invariants (checked on construction): every part is valid; ``domain`` is one Docker reads as a
    registry (it holds ``.`` or ``:`` or is ``localhost``), never ``index.docker.io``; on
    ``docker.io`` the path has at least two components; a tag or a digest (or both) is present.
    So ``parse_reference(ref.familiar()) == ref == parse_reference(ref.canonical())``.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __post_init__(self) -> None:
        shown = f"{self.domain}/{self.path}"
        if not _is_domain(self.domain):
            raise _fail(shown, f"{self.domain!r} is not read as a registry domain")
        if self.domain == LEGACY_DEFAULT_DOMAIN:
            raise _fail(shown, f"the domain {LEGACY_DEFAULT_DOMAIN} is written {DEFAULT_DOMAIN}")
        _check_domain(shown, self.domain)
        _check_path(shown, self.path)
        if self.domain == DEFAULT_DOMAIN and "/" not in self.path:
            raise _fail(shown, f"official images on {DEFAULT_DOMAIN} live under 'library/'")
        _check_hub_namespace(shown, self.domain, self.path)
        if len(shown) > NAME_MAX_LENGTH:
            raise _fail(
                shown, f"repository name is {len(shown)} characters, longer than {NAME_MAX_LENGTH}"
            )
        if self.tag is not None:
            _check_tag(shown, self.tag)
        if self.digest is not None:
            _check_digest(shown, self.digest)
        if self.tag is None and self.digest is None:
            raise _fail(shown, "a normalized reference has a tag or a digest")

    @property
    def repository(self) -> str:
        """The fully qualified name without tag or digest (``docker.io/library/ubuntu``)."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The name as Docker prints it, without tag or digest (``ubuntu``, ``team/x``)."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        if self.path.startswith(OFFICIAL_PREFIX):
            rest = self.path[len(OFFICIAL_PREFIX) :]
            if "/" not in rest:
                return rest
        return self.path

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def familiar(self) -> str:
        """The familiar form the allowlist matches (``ubuntu:latest``, ``team/x@sha256:...``)."""
        return self.familiar_repository + self._suffix()

    def canonical(self) -> str:
        """The fully qualified form (``docker.io/library/ubuntu:latest``)."""
        return self.repository + self._suffix()

    def pull_ref(self) -> str:
        """What to pull: by digest when pinned (the tag is then ignored, as Docker does)."""
        if self.digest is not None:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def parse_reference(text: str) -> ImageRef:
    """Parse and normalize ``text``; raise :class:`InvalidReferenceError` saying why not."""
    if not isinstance(text, str):
        raise InvalidReferenceError(
            f"invalid image reference: expected a string, found {type(text).__name__}"
        )
    if not text:
        raise _fail(text, "the reference is empty")
    if len(text) > REFERENCE_MAX_LENGTH:
        raise _fail(text, f"{len(text)} characters, longer than any valid reference")
    _check_chars(text)

    name, at, digest_text = text.partition("@")
    digest: str | None = None
    if at:
        if "@" in digest_text:
            raise _fail(text, "more than one '@'")
        if not digest_text:
            raise _fail(text, "'@' is not followed by a digest")
        digest = _check_digest(text, digest_text)

    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], _check_tag(text, name[colon + 1 :])
    if not name:
        raise _fail(text, "the repository name is missing")
    if name != name.lower():
        raise _fail(text, "image names are lowercase (upper case is allowed only in the tag)")

    first, slash, rest = name.partition("/")
    if slash and _is_domain(first):
        domain, path = _check_domain(text, first), rest
    else:
        if not slash and _IMAGE_ID.fullmatch(name):
            raise _fail(text, "a bare 64-hex-digit name is an image id, not a repository name")
        domain, path = DEFAULT_DOMAIN, name
    _check_path(text, path)
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    _check_hub_namespace(text, domain, path)
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    full = f"{domain}/{path}"
    if len(full) > NAME_MAX_LENGTH:
        raise _fail(
            text,
            f"repository name {full[:60]}... is {len(full)} characters, "
            f"longer than {NAME_MAX_LENGTH}",
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest)
