"""Shared helpers: start daemons as subprocesses, read their /proc state, and
kill every one of them by pid when the test ends."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
DAEMON = PROGRAMS / "daemon.py"
NOBODY = 65534
TOKEN_VAR = "DAEMONCTX_TEST_TOKEN"
STARTED = re.compile(r"started (\S+) \(pid (\d+)\)\n")
NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
SSD = "/usr/sbin/start-stop-daemon"
# For subprocesses that import this checkout (as nobody, with a Python that is not ours).
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


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


# -- processes started through the daemonctx command ---------------------------------


class Tracker:
    """Runs ``daemonctx`` with a token in the environment and finds every
    process that inherited it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.token = uuid.uuid4().hex
        self.env = {**os.environ, TOKEN_VAR: self.token}
        self.env.pop("NOTIFY_SOCKET", None)
        self.pidfile = str(tmp_path / "app.pid")

    def daemonctx(
        self, *args: str, timeout: float = 30, **popen: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m daemonctx ARGS`` to completion."""
        popen.setdefault("env", self.env)
        return subprocess.run(
            [*self.command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            **popen,
        )

    @staticmethod
    def command() -> list[str]:
        """How the tests invoke the command: ``python -m daemonctx``."""
        return [sys.executable, "-m", "daemonctx"]

    def run_argv(self, *command: str) -> list[str]:
        """The argv of ``python -m daemonctx run --pidfile app.pid -- COMMAND``, for Popen."""
        return [*self.command(), "run", "--pidfile", self.pidfile, "--", *command]

    def start(self, *command: str, options: tuple[str, ...] = ()) -> int:
        """``daemonctx start --pidfile app.pid OPTIONS -- COMMAND``; require success; the pid."""
        result = self.daemonctx("start", "--pidfile", self.pidfile, *options, "--", *command)
        assert result.returncode == 0, result.stderr
        match = STARTED.fullmatch(result.stdout)
        assert match, result.stdout
        return int(match.group(2))

    def ssd_status(self, *extra: str) -> int:
        """``start-stop-daemon --status --pidfile app.pid``'s exit code."""
        args = [SSD, "--status", "--pidfile", self.pidfile, *extra]
        return subprocess.run(args, env=self.env, timeout=30).returncode

    def has_token(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"{TOKEN_VAR}={self.token}".encode() in environ.split(b"\0")

    def processes(self) -> list[int]:
        """Live processes (not zombies) started by this test."""
        pids = (int(name) for name in os.listdir("/proc") if name.isdigit())
        return sorted(pid for pid in pids if self.has_token(pid) and pid_alive(pid))

    def kill_all(self) -> None:
        for _ in range(5):
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                try:
                    pidfd = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
                try:
                    if self.has_token(pid):  # the pidfd names the process we checked
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                        select.select([pidfd], [], [], 5)
                except ProcessLookupError:
                    pass
                finally:
                    os.close(pidfd)


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    tmp_path.chmod(0o755)  # reachable after dropping privileges
    manager = Tracker(tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()


def wait_reaped(pid: int) -> None:
    """Gone from /proc (not even a zombie): start-stop-daemon counts a zombie as alive."""
    wait_gone(pid)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what=f"pid {pid} reaped")


def kill(pid: int) -> None:
    pidfd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
    wait_reaped(pid)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A 0755 directory of ours under /tmp, which nobody can reach but not write
    (pytest's tmp_path is inside a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="daemonctx-test-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shared_dir(open_dir: Path) -> Path:
    """A directory like /tmp: anyone may create entries, only their owner remove them."""
    directory = open_dir / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


@pytest.fixture
def open_tracker(open_dir: Path) -> Iterator[Tracker]:
    """A tracker whose directory nobody can reach."""
    manager = Tracker(open_dir)
    try:
        yield manager
    finally:
        manager.kill_all()


def spawn_as_pid(pid: int, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` so that it gets ``pid``: root chooses the next pid through
    /proc/sys/kernel/ns_last_pid (retried: other processes may fork meanwhile)."""
    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip(f"{NS_LAST_PID} is not writable here")
    for _ in range(100):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        proc = subprocess.Popen(argv)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    pytest.fail(f"could not start a process as pid {pid}")


def python_for_nobody(program: Path) -> str:
    """An interpreter nobody may run ``program`` with, importing this checkout
    (the venv's may live under /root); skip the test when there is none."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            probe = subprocess.run(
                [candidate, "-c", f"open({str(program)!r}).close(); import daemonctx"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                capture_output=True,
                env=ENV,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no Python interpreter nobody may run {program} with")
