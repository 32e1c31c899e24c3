"""Shared helpers: start daemons as subprocesses, read their /proc state, and
kill every one of them by pid when the test ends."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
DAEMON = PROGRAMS / "daemon.py"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait on a pidfd until ``pid`` has exited (works for non-children)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"pid {pid} still alive after {timeout} s"
    finally:
        os.close(fd)


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: [0] is state, [1] ppid,
    [2] pgrp, [3] session, [4] tty_nr."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_fds(pid: int) -> dict[int, str]:
    base = f"/proc/{pid}/fd"
    return {int(fd): os.readlink(f"{base}/{fd}") for fd in os.listdir(base)}


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Daemons:
    """Starts tests/programs/daemon.py and remembers every pid it learns of."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pids: set[int] = set()
        self.count = 0

    def launch(
        self, config: dict[str, Any], *, wait: bool = True, timeout: float = 20, **popen: Any
    ) -> tuple[subprocess.CompletedProcess[str], Path]:
        """Run the launcher to completion; return it and the report path."""
        self.count += 1
        report = self.tmp_path / f"report-{self.count}.jsonl"
        config = {"report": str(report), **config}
        popen.setdefault("capture_output", True)
        result = subprocess.run(
            [*popen.pop("prefix", []), sys.executable, str(DAEMON), json.dumps(config)],
            text=True,
            timeout=timeout,
            **popen,
        )
        self.track(report)
        return result, report

    def start(self, config: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        """Launch, require exit 0, and return the daemon's "open" event."""
        result, report = self.launch(config)
        assert result.returncode == 0, result.stderr
        event = self.event(report, "open")
        return event, report

    def event(self, report: Path, name: str, timeout: float = 10) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for event in read_events(report):
                if event["event"] == name:
                    self.pids.add(event["pid"])
                    return event
            return None

        found: dict[str, Any] = wait_for(find, timeout, f"event {name!r} in {report.name}")
        return found

    def track(self, report: Path) -> None:
        for event in read_events(report):
            self.pids.add(event["pid"])

    def kill_all(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            wait_gone(pid, 5)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    tmp_path.chmod(0o755)  # reachable after dropping privileges
    manager = Daemons(tmp_path)
    try:
        yield manager
    finally:
        for report in tmp_path.glob("report-*.jsonl"):
            manager.track(report)
        manager.kill_all()


def run_in_child(func: Callable[[], None]) -> None:
    """Run ``func`` in a forked child and re-raise its failure here.

    For tests that drop privileges: pytest-forked's child can no longer write
    its result file once it is not root, so this child reports over a pipe.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        status = 0
        try:
            func()
        except BaseException:
            import traceback

            os.write(write_fd, traceback.format_exc().encode()[-8000:])
            status = 1
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, message


def run_script(
    code: str, timeout: float = 20, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout.

    With ``check`` (the default) it must exit 0. For in-process tests whose
    open() succeeds (it closes every fd the test runner holds, so it must run
    in a process of its own) and for launchers expected to fail.
    """
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result
