"""The exact versions of PHT's runtime dependencies as installed here, one ``name==version`` a
line, for the OCI images (``examples/deploy/build-images.sh``): the images then run the very
versions the tests ran with.

The roots are ``[project] dependencies`` and the ``postgres`` extra of ``pyproject.toml`` (the
registry image serves PostgreSQL stores too); their dependencies are followed through the
installed distributions' metadata, markers evaluated for this interpreter (the images' Python is
Debian 12's 3.11, like the hosts this runs on)::

    python3 -m examples.deploy.pins [PYPROJECT]
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

EXTRAS = ("postgres",)
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class PinError(Exception):
    """A dependency is not installed here, so its version cannot be pinned."""


def roots(pyproject: Path, extras: tuple[str, ...] = EXTRAS) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(requirements: list[Requirement]) -> dict[NormalizedName, str]:
    """Every distribution ``requirements`` need, transitively, with its installed version."""
    pins: dict[NormalizedName, str] = {}
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    todo = [(requirement, frozenset[str]()) for requirement in requirements]
    while todo:
        requirement, parent_extras = todo.pop()
        if not _applies(requirement, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise PinError(
                f"{requirement.name} is not installed here; run pip install -e '.[postgres]'"
            ) from exc
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise PinError(f"{name} {dist.version} is installed, but {requirement} is required")
        pins[name] = dist.version
        todo += [(Requirement(text), extras) for text in dist.requires or []]
    return pins


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pyproject = Path(args[0]) if args else PYPROJECT
    try:
        pins = closure(roots(pyproject))
    except PinError as exc:
        print(f"pins: error: {exc}", file=sys.stderr)
        return 1
    for name, version in sorted(pins.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
