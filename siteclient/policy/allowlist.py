"""May this image run here? The site's image allowlist, pure.

A site lists regular expressions (``allowed_images`` in its config). An image is allowed when its
reference parses strictly (:mod:`ledger.reference`, the parser the registry also runs on every
task) and one pattern matches its **familiar form** in full (:func:`re.fullmatch`):
``myconsortium/avg:1.2``, ``ubuntu:latest``, ``registry.example.org:5000/team/avg:2``,
``myconsortium/avg@sha256:<64 hex>`` or, with both, ``myconsortium/avg:1.2@sha256:<64 hex>``.
Whatever the researcher wrote (``docker.io/...``, ``index.docker.io/...``, no tag), the one
normalized spelling is matched, so ``docker.io/myconsortium/avg`` and ``myconsortium/avg`` are the
same image and ``evil.example/myconsortium/avg`` is not.

Invariants:

- Deny by default: no patterns, nothing runs; an unparsable reference never runs.
- With ``require_digest`` a reference without ``@sha256:`` is refused, whatever the patterns say.
- Patterns are the site's own and trusted to be written with care; ``.`` matches any character, so
  ``registry.example.org/.*`` also admits ``registryxexample.org/...``. Write
  ``registry\\.example\\.org/.*``. :attr:`Allowlist.warnings` flags such patterns, and patterns
  broad enough to admit an unrelated registry.
- A pattern sees the tag and the digest: ``myconsortium/avg:.*`` also matches
  ``myconsortium/avg:1.2@sha256:...`` (the ``.*`` runs over the digest). When both are given the
  digest decides what is pulled and the tag is only a label; the repository is the trust boundary.
  Recommended shapes::

      myconsortium/[a-z0-9._-]+:[\\w.-]+             any tag of the consortium's repositories
      myconsortium/avg@sha256:[0-9a-f]{64}           only pinned images of one repository
      registry\\.example\\.org:5000/team/[^:@]+(:[\\w.-]+)?(@sha256:[0-9a-f]{64})?

Every refusal reason names the image, its familiar form and the site, so a researcher can act on it;
reasons end up in a signed ``rejected`` result in the ledger.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ledger.errors import InvalidReferenceError
from ledger.reference import ImageRef, parse_reference
from siteclient.errors import ConfigError

# Familiar forms that no sensible pattern admits; a pattern matching one is reported as too broad.
_FOREIGN_PROBES = (
    "attacker.invalid/pwn:latest",
    "attacker.invalid/myconsortium/pwn:latest",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The verdict on one image reference.

    ``ref`` is the parsed reference (``None`` when the text does not parse); ``matched`` is the
    pattern that allowed it (``None`` when refused). ``reason`` is a sentence for the researcher.
    """

    allowed: bool
    reason: str
    ref: ImageRef | None
    matched: str | None

    def __post_init__(self) -> None:
        if self.allowed and (self.ref is None or self.matched is None):
            raise ValueError("an allowed decision names the reference and the matching pattern")
        if not self.allowed and self.matched is not None:
            raise ValueError("a refusal names no matching pattern")


def _has_unescaped_domain_dot(pattern: str) -> bool:
    """Whether the part before the first ``/`` holds a bare ``.`` between word characters.

    A heuristic for ``registry.example.org/...`` written without ``\\.``; ``.*`` and ``[.]`` and
    ``\\.`` are not flagged.
    """
    for i, char in _plain(pattern):
        if char == "/":
            return False
        if char == ".":
            before = pattern[i - 1] if i > 0 else ""
            after = pattern[i + 1] if i + 1 < len(pattern) else ""
            if before.isalnum() and after.isalnum():
                return True
    return False


def _plain(pattern: str) -> Iterator[tuple[int, str]]:
    """Each character of ``pattern`` outside escapes (``\\x``) and character classes
    (``[...]``), with its position: what the heuristics below look at."""
    escaped = in_class = False
    for i, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        else:
            yield i, char


_GLOB_STAR_AFTER = frozenset("/:@-_") | frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _glob_marks(pattern: str) -> list[str]:
    """The glob habits in ``pattern``: a ``*`` after nothing, a name character, ``/``, ``:`` or
    ``@`` (where a glob means "any text" and a regex repeats that one character), and a ``?``
    right after ``/`` or ``:`` (a glob's "one character"). ``.*``, ``[a-z]*``, ``(...)?`` and
    escaped characters are regex and not flagged."""
    marks: list[str] = []
    for i, char in _plain(pattern):
        before = pattern[i - 1] if i > 0 else ""
        if char == "*" and (before == "" or before.lower() in _GLOB_STAR_AFTER):
            marks.append(f"'{before}*'")
        elif char == "?" and before in ("/", ":"):
            marks.append(f"'{before}?'")
    return marks


def _unglob(pattern: str) -> str:
    """The regex a glob writer probably meant: ``*`` -> ``.*``, ``?`` -> ``.``, bare dots
    escaped (what is already escaped stays as it is)."""
    out = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        else:
            out.append({"*": ".*", "?": ".", ".": "\\."}.get(char, char))
    return "".join(out)


def _compile(patterns: Iterable[object]) -> tuple[list[tuple[str, re.Pattern[str]]], list[str]]:
    compiled: list[tuple[str, re.Pattern[str]]] = []
    problems: list[str] = []
    for index, pattern in enumerate(patterns):
        where = f"allowed_images[{index}]"
        if not isinstance(pattern, str):
            problems.append(
                f"{where}: expected a regular expression string, found {type(pattern).__name__}"
            )
        elif not pattern:
            problems.append(f"{where}: an empty pattern matches no image")
        else:
            try:
                compiled.append((pattern, re.compile(pattern)))
            except re.error as exc:
                problems.append(
                    f"{where}: pattern {pattern!r} is not a valid regular expression: {exc}"
                )
    return compiled, problems


def pattern_problems(patterns: Iterable[object]) -> list[str]:
    """One message per unusable pattern (not a string, empty, or not a valid regex)."""
    return _compile(patterns)[1]


class Allowlist:
    """The compiled ``allowed_images`` of site ``site``; :meth:`decide` is the whole policy."""

    __slots__ = ("_compiled", "_site", "_warnings")

    def __init__(self, patterns: Iterable[str], *, site: str) -> None:
        """Compile every pattern; raise :class:`ConfigError` naming each one that is unusable."""
        compiled, problems = _compile(patterns)
        if problems:
            raise ConfigError("; ".join(problems))
        self._site = site
        self._compiled = tuple(compiled)
        self._warnings = tuple(self._lint())

    @property
    def site(self) -> str:
        return self._site

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(pattern for pattern, _ in self._compiled)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Patterns that are probably wider than meant (for the site operator's log)."""
        return self._warnings

    def _lint(self) -> Iterable[str]:
        if not self._compiled:
            yield f"site {self._site!r} allows no images (allowed_images is empty): nothing runs"
        for pattern, regex in self._compiled:
            if _has_unescaped_domain_dot(pattern):
                yield (
                    f"pattern {pattern!r} has an unescaped '.' in its registry part; '.' matches "
                    "any character, so look-alike registries match too (write '\\.')"
                )
            glob = _glob_marks(pattern)
            if glob:
                yield (
                    f"pattern {pattern!r} looks like a glob ({', '.join(glob)}), but patterns are "
                    "regular expressions matched in full against the image's familiar form: '*' "
                    "repeats the character before it and '?' makes it optional; for 'any text' "
                    f"write '.*', e.g. '{_unglob(pattern)}'"
                )
            foreign = next((probe for probe in _FOREIGN_PROBES if regex.fullmatch(probe)), None)
            if foreign is not None:
                yield (
                    f"pattern {pattern!r} admits images from any registry (it matches {foreign!r})"
                )

    def decide(self, reference_text: str, *, require_digest: bool) -> Decision:
        """May the image ``reference_text`` run at this site? Never raises for bad input."""
        try:
            ref = parse_reference(reference_text)
        except InvalidReferenceError as exc:
            return Decision(allowed=False, reason=str(exc), ref=None, matched=None)
        familiar = ref.familiar()
        shown = (
            f"image {familiar!r} (familiar form)"
            if familiar == reference_text
            else f"image {reference_text!r} (familiar form {familiar!r})"
        )
        if not self._compiled:
            return Decision(
                allowed=False,
                reason=f"{shown} refused: site {self._site!r} allows no images "
                "(its allowed_images list is empty)",
                ref=ref,
                matched=None,
            )
        if require_digest and ref.digest is None:
            return Decision(
                allowed=False,
                reason=f"{shown} refused: site {self._site!r} runs only images pinned by digest; "
                f"name it as '{ref.familiar_repository}@sha256:<digest>'",
                ref=ref,
                matched=None,
            )
        for pattern, regex in self._compiled:
            if regex.fullmatch(familiar):
                return Decision(
                    allowed=True,
                    reason=f"{shown} allowed by pattern {pattern!r} of site {self._site!r}",
                    ref=ref,
                    matched=pattern,
                )
        return Decision(
            allowed=False,
            reason=f"{shown} matches no allowed pattern of site {self._site!r}",
            ref=ref,
            matched=None,
        )
