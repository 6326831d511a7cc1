"""examples/deploy/pins.py: the exact versions the deployment images install are the ones
installed here, for PHT's dependencies and the ``postgres`` extra, followed transitively."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from examples.deploy import pins


def _pyproject(tmp_path: Path, dependencies: list[str], postgres: list[str] | None = None) -> Path:
    path = tmp_path / "pyproject.toml"
    quoted = ", ".join(f'"{text}"' for text in dependencies)
    extra = ", ".join(f'"{text}"' for text in postgres or [])
    path.write_text(
        f'[project]\nname = "x"\ndependencies = [{quoted}]\n'
        f"[project.optional-dependencies]\npostgres = [{extra}]\n"
    )
    return path


def test_the_project_pins_its_runtime_closure_at_the_installed_versions() -> None:
    found = pins.closure(pins.roots(pins.PYPROJECT))
    for root in pins.roots(pins.PYPROJECT):
        assert canonicalize_name(root.name) in found
    # Through psycopg[binary]'s extra, and through requests to its own dependencies.
    assert {"psycopg-binary", "urllib3", "idna"} <= set(found)
    for name, version in found.items():
        assert metadata.version(name) == version
    # Test tools are not runtime dependencies.
    assert not {"pytest", "mypy", "ruff"} & set(found)


def test_markers_that_do_not_apply_leave_a_requirement_out() -> None:
    found = pins.closure(
        [
            Requirement('requests>=2; python_version < "3"'),
            Requirement('requests>=2; extra == "nope"'),
            Requirement("idna"),
        ]
    )
    assert set(found) == {"idna"}


def test_a_dependency_not_installed_here_is_refused_with_the_fix() -> None:
    with pytest.raises(pins.PinError, match=r"no-such-dist-pht is not installed.*pip install"):
        pins.closure([Requirement("no-such-dist-pht>=1")])


def test_an_installed_version_outside_the_requirement_is_refused() -> None:
    with pytest.raises(pins.PinError, match=r"idna .* is installed, but idna<1 is required"):
        pins.closure([Requirement("idna<1")])


def test_main_prints_pip_requirements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pins.main([str(_pyproject(tmp_path, ["requests>=2"], ["idna"]))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == sorted(lines)
    assert f"idna=={metadata.version('idna')}" in lines
    assert all(Requirement(line).specifier for line in lines)


def test_main_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pins.main([str(_pyproject(tmp_path, ["no-such-dist-pht"]))]) == 1
    assert capsys.readouterr().err.startswith("pins: error: no-such-dist-pht is not installed")
