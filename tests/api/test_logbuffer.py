"""BufferedHandler: the access log's lines, written in batches off the request threads."""

from __future__ import annotations

import io
import logging
import logging.handlers
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.wire.accesslog import ACCESS_LOG, buffer_access_log
from api.wire.logbuffer import BufferedHandler

FORMAT = "%(name)s %(levelname)s %(message)s"


def stream_target(
    level: int = logging.NOTSET,
) -> tuple[logging.StreamHandler[io.StringIO], io.StringIO]:
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(logging.Formatter(FORMAT))
    target.setLevel(level)
    return target, out


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"test.logbuffer.{time.monotonic_ns()}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    log.handlers.clear()


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_lines_arrive_in_order_within_the_interval(logger: logging.Logger) -> None:
    target, out = stream_target()
    handler = BufferedHandler([target], interval=0.05)
    logger.addHandler(handler)
    for n in range(3):
        logger.info("request %d", n)
    wait_for(lambda: len(lines(out)) == 3, "three lines")
    assert lines(out) == [f"{logger.name} INFO request {n}" for n in range(3)]
    handler.close()


def test_nothing_is_written_on_the_callers_thread_and_close_writes_everything(
    logger: logging.Logger,
) -> None:
    target, out = stream_target()
    handler = BufferedHandler([target], interval=60)
    logger.addHandler(handler)
    logger.info("first")
    logger.warning("second")
    time.sleep(0.05)
    assert out.getvalue() == ""  # buffered: no write yet
    handler.close()
    assert lines(out) == [f"{logger.name} INFO first", f"{logger.name} WARNING second"]
    handler.close()  # idempotent
    assert len(lines(out)) == 2


def test_a_full_buffer_is_written_at_once(logger: logging.Logger) -> None:
    target, out = stream_target()
    handler = BufferedHandler([target], interval=60, capacity=5)
    logger.addHandler(handler)
    for n in range(5):
        logger.info("line %d", n)
    wait_for(lambda: len(lines(out)) == 5, "the full buffer to be written")
    handler.close()


def test_each_target_keeps_its_level(logger: logging.Logger) -> None:
    verbose, everything = stream_target(logging.DEBUG)
    terse, warnings = stream_target(logging.WARNING)
    handler = BufferedHandler([verbose, terse], interval=60)
    logger.addHandler(handler)
    logger.info("routine")
    logger.error("broken")
    handler.close()
    assert lines(everything) == [f"{logger.name} INFO routine", f"{logger.name} ERROR broken"]
    assert lines(warnings) == [f"{logger.name} ERROR broken"]


def test_concurrent_writers_lose_nothing_and_keep_each_threads_order(
    logger: logging.Logger,
) -> None:
    target, out = stream_target()
    handler = BufferedHandler([target], interval=0.01, capacity=64)
    logger.addHandler(handler)

    def writer(t: int) -> None:
        for n in range(500):
            logger.info("t%d n%d", t, n)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    written = lines(out)
    assert len(written) == 4000
    for t in range(8):
        mine = [line for line in written if f" t{t} " in line]
        assert mine == [f"{logger.name} INFO t{t} n{n}" for n in range(500)]


def test_a_record_that_cannot_be_formatted_does_not_stop_the_others(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError stays quiet
    target, out = stream_target()
    handler = BufferedHandler([target], interval=0.02)
    logger.addHandler(handler)
    logger.info("before")
    logger.info("broken %d", "not a number")  # %d of a string: formatting raises
    logger.info("after")
    wait_for(lambda: len(lines(out)) == 2, "the two good lines")
    logger.info("later")
    wait_for(lambda: len(lines(out)) == 3, "the flusher to go on")
    handler.close()
    assert lines(out) == [f"{logger.name} INFO {m}" for m in ("before", "after", "later")]


def test_file_handlers_keep_their_own_way_of_writing(
    logger: logging.Logger, tmp_path: Path
) -> None:
    delayed = logging.FileHandler(tmp_path / "delayed.log", delay=True)
    rotating = logging.handlers.RotatingFileHandler(
        tmp_path / "rotating.log", maxBytes=200, backupCount=2
    )
    handler = BufferedHandler([delayed, rotating], interval=60)
    logger.addHandler(handler)
    for n in range(20):
        logger.info("line %02d with some padding to fill the file", n)
    handler.close()
    delayed.close()
    rotating.close()
    assert len((tmp_path / "delayed.log").read_text().splitlines()) == 20
    assert (tmp_path / "rotating.log.1").exists()  # it rotated


def test_a_broken_target_does_not_starve_the_others(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)

    class Broken(logging.Handler):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("broken target")

    target, out = stream_target()
    handler = BufferedHandler([Broken(), target], interval=0.02)
    logger.addHandler(handler)
    logger.info("one")
    wait_for(lambda: len(lines(out)) == 1, "the good target's line")
    logger.info("two")
    wait_for(lambda: len(lines(out)) == 2, "the flusher to go on")
    handler.close()


def test_a_record_after_close_is_written_at_once(logger: logging.Logger) -> None:
    target, out = stream_target()
    handler = BufferedHandler([target], interval=60)
    logger.addHandler(handler)
    handler.close()
    logger.info("late")
    assert lines(out) == [f"{logger.name} INFO late"]


def test_serving_buffers_the_access_log_once_and_restores_it() -> None:
    access = logging.getLogger(ACCESS_LOG)
    target, out = stream_target()
    saved = (list(access.handlers), access.propagate, access.level)
    access.handlers = [target]
    access.propagate = False
    access.setLevel(logging.INFO)
    try:
        restore = buffer_access_log()
        access.info("GET /healthz 200")
        assert out.getvalue() == ""  # buffered
        restore()
        assert lines(out) == [f"{ACCESS_LOG} INFO GET /healthz 200"]  # once, not twice
        assert access.handlers == [target] and access.propagate is False
    finally:
        access.handlers, access.propagate = saved[0], saved[1]
        access.setLevel(saved[2])
