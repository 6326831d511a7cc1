"""``pht serve``: refuses what it cannot serve; stops cleanly on SIGINT."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from api.client.registry import Client
from cli.main import main
from crypto import SigningKey
from ledger.store.ledger import Ledger
from tests.api.conftest import task
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World


def test_serve_without_a_ledger_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--data", str(tmp_path / "missing"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pht: error: ") and "missing" in err


def test_serve_refuses_too_few_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--data", str(tmp_path), "--threads", "2"]) == 1
    assert "--threads" in capsys.readouterr().err


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    world = World()
    registry = RegistryProcess(init_registry(tmp_path, world))
    registry.start()
    try:
        with Client(registry.url, world.keys["alice"]) as alice:
            alice.post_event(task(world))
        assert registry.proc is not None
        registry.proc.send_signal(signal.SIGINT)
        assert registry.proc.wait(15) == 0
    finally:
        registry.stop()
    assert "stopped; ledger closed at size 2" in (tmp_path / "serve.log").read_text()
    assert registry.start()  # the data directory opens again (its lock was released)
    registry.stop()


def test_serve_on_a_busy_port_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = init_registry(tmp_path, World())
    capsys.readouterr()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--data", str(data), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"pht: error: cannot listen on 127.0.0.1:{port}" in err
    Ledger.open(data, log_key=SigningKey.load(data / "log.key")).close()  # closed, unlocked
