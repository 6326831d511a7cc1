"""The systemd units in examples/deploy/: ``systemd-analyze verify`` accepts each one without a
word, ``systemd-analyze security --offline`` rates each well hardened, and each keeps the
hardening, restart and stop settings docs/deploy.md promises.

The units name ``/usr/local/bin/pht`` and ``/usr/local/bin/siteclient`` (what an operator adapts);
``verify`` insists that an ExecStart binary exists, so each unit is verified as a copy in a temp
folder with the paths of the programs installed here. ``verify`` exits 0 on an unknown key or a
value it cannot parse (it only warns), so any output at all counts as a failure; the broken
copies below prove that this check catches what an operator's typo would do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from siteclient.main import EXIT_FORK, EXIT_REVOKED

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "deploy"
UNITS = sorted(path.name for path in DEPLOY.glob("*.service"))
PROGRAMS = {"/usr/local/bin/pht": "pht", "/usr/local/bin/siteclient": "siteclient"}
# systemd-analyze security's overall exposure, times ten (0 is best, 100 worst; "OK" is below 30).
EXPOSURE_THRESHOLD = 25
HINT = "apt-get install systemd (.ci/setup does)"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if _in_ci():
            pytest.fail(f"CI=true but systemd-analyze is missing; {HINT}", pytrace=False)
        pytest.skip(f"systemd-analyze is missing; {HINT}")
    return found


def _installed(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        pytest.fail(f"`{program}` is not on PATH: pip install -e . first", pytrace=False)
    return str(Path(found).resolve())


def _copy(unit: str, folder: Path, edit: tuple[str, str] | None = None) -> Path:
    """``unit`` copied into ``folder`` with the installed programs' paths; the path to verify
    (a template is verified as its instance ``test``)."""
    text = (DEPLOY / unit).read_text()
    for path, program in PROGRAMS.items():
        text = text.replace(path, _installed(program))
    if edit is not None:
        old, new = edit
        assert old in text, f"{unit} has no {old!r} to break"
        text = text.replace(old, new, 1)
    (folder / unit).write_text(text)
    return folder / unit.replace("@.", "@test.")


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_analyze(), "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _settings(unit: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit (continuation lines joined), values in file order."""
    settings: dict[str, list[str]] = {}
    logical = (DEPLOY / unit).read_text().replace("\\\n", " ")
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_three_units_are_there() -> None:
    assert UNITS == [
        "pht-serve@.service",
        "siteclient-follow@.service",
        "siteclient-serve-files@.service",
    ]


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_cleanly(unit: str, tmp_path: Path) -> None:
    result = _verify(_copy(unit, tmp_path))
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), (
        f"systemd-analyze verify {unit}: exit {result.returncode}\n{result.stderr}{result.stdout}"
    )


@pytest.mark.parametrize("unit", UNITS)
def test_unit_names_the_documented_program_path(unit: str) -> None:
    """The path operators adapt is the one the unit's comment and docs/deploy.md name."""
    exec_start = _settings(unit)["ExecStart"]
    assert len(exec_start) == 1
    assert exec_start[0].split()[0] in PROGRAMS


BREAKAGES = {
    "unknown-key": ("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    "bad-restart-value": ("Restart=on-failure", "Restart=sometimes"),
    "bad-timeout": ("TimeoutStopSec=", "TimeoutStopSec=soon"),
    "missing-program": ("ExecStart=/", "ExecStart=/nonexistent/"),
    "relative-program": ("ExecStart=/", "ExecStart="),
    "broken-section": ("[Service]", "[Service"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
@pytest.mark.parametrize("unit", UNITS)
def test_verify_catches_a_broken_unit(unit: str, breakage: str, tmp_path: Path) -> None:
    result = _verify(_copy(unit, tmp_path, BREAKAGES[breakage]))
    assert result.returncode != 0 or result.stderr.strip() or result.stdout.strip(), (
        f"systemd-analyze verify said nothing about {unit} with {breakage}"
    )


def _exposure(path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze security --offline``, failing (non-zero) above the threshold."""
    return subprocess.run(
        [
            _analyze(),
            "security",
            "--offline=true",
            f"--threshold={EXPOSURE_THRESHOLD}",
            "--no-pager",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_is_low(unit: str, tmp_path: Path) -> None:
    result = _exposure(_copy(unit, tmp_path))
    verdict = (result.stdout.strip().splitlines() or [result.stderr])[-1]
    assert result.returncode == 0, f"{unit}: {verdict} (threshold {EXPOSURE_THRESHOLD / 10})"


def test_exposure_check_catches_an_unhardened_unit(tmp_path: Path) -> None:
    """The same unit without its sandboxing block (UMask= to [Install]) fails the threshold."""
    unit = "pht-serve@.service"
    text = (DEPLOY / unit).read_text()
    block = text[text.index("UMask=") : text.index("[Install]")]
    result = _exposure(_copy(unit, tmp_path, (block, "")))
    assert result.returncode != 0, result.stdout[-300:]


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_hardened_as_documented(unit: str) -> None:
    settings = _settings(unit)

    def one(key: str) -> str:
        values = settings.get(key, [])
        assert len(values) == 1, f"{unit}: {key}= is set {len(values)} times"
        return values[0]

    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
    }.items():
        assert one(key) == value, f"{unit}: {key}={one(key)}, expected {value}"
    assert one("User") not in {"", "root", "0"}, f"{unit} runs as root"
    # The only writable place is the state directory (no ReadWritePaths widening it).
    assert one("StateDirectory").startswith(("pht/", "pht-site/"))
    assert "ReadWritePaths" not in settings
    assert int(one("TimeoutStopSec")) >= 30  # long-polls and uploads in flight get to finish


def test_follow_unit_reloads_stops_for_good_and_reaches_docker() -> None:
    settings = _settings("siteclient-follow@.service")
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert set(settings["RestartPreventExitStatus"][0].split()) == {
        str(EXIT_FORK),
        str(EXIT_REVOKED),
    }
    assert settings["SupplementaryGroups"] == ["docker"]
    assert "docker.service" in settings["Requires"][0].split()


@pytest.mark.parametrize("unit", ["pht-serve@.service", "siteclient-serve-files@.service"])
def test_units_whose_program_dies_on_sighup_have_no_reload(unit: str) -> None:
    """``pht serve`` and ``serve-files`` do not handle SIGHUP (it would end them), so their units
    offer no ``systemctl reload``; neither needs the Docker engine."""
    settings = _settings(unit)
    assert "ExecReload" not in settings
    assert "SupplementaryGroups" not in settings


def test_deploy_doc_names_every_unit_and_what_it_writes() -> None:
    doc = (DEPLOY.parents[1] / "docs" / "deploy.md").read_text()
    for unit in UNITS:
        assert f"`{unit}`" in doc, f"docs/deploy.md does not list {unit}"
        state = _settings(unit)["StateDirectory"][0]
        assert f"/var/lib/{state}" in doc, f"docs/deploy.md does not name /var/lib/{state}"
