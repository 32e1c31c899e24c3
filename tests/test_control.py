"""The Python API behind ``daemonctx status`` and ``stop``: ``daemonctx.control``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    ProcessTracker,
    Tracker,
    kill,
    needs_root,
    pid_alive,
    proc_stat,
    python_program,
    run_as_nobody,
    wait_for,
)

from daemonctx import ServiceState, ServiceStatus, StopResult, status, stop
from daemonctx.control import (
    AlreadyRunning,
    ControlError,
    check_not_running,
    default_name,
    format_duration,
    parse_signal,
    process_command,
    process_uptime,
    remove_stale_pidfile,
    startup_failure,
    terminate,
    wait_exit,
)
from daemonctx.errors import DaemonOptionError, DaemonStartupError
from daemonctx.pidfile import PIDLockFile
from daemonctx.signals import signal_name


@pytest.fixture
def child(processes: ProcessTracker) -> subprocess.Popen[bytes]:
    return processes.popen(["sleep", "1000"])


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("TERM", 15),
        ("sigterm", 15),
        ("SIGTERM", 15),
        ("15", 15),
        (" hup ", 1),
        ("KILL", 9),
        ("RTMIN", signal.SIGRTMIN),
        ("RTMIN+2", signal.SIGRTMIN + 2),
        ("sigrtmax-1", signal.SIGRTMAX - 1),
        ("SIGRTMAX-0", signal.SIGRTMAX),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number
    name = signal_name(number)
    assert parse_signal(name) == number, f"{name}: what signal_name writes is read back"


def test_real_time_signals_are_named_as_kill_l_names_them() -> None:
    assert signal_name(signal.SIGRTMIN + 2) == "SIGRTMIN+2"
    assert signal_name(signal.SIGRTMAX - 1) == "SIGRTMAX-1"
    assert signal_name(signal.SIGRTMIN + 15) == "SIGRTMIN+15"
    assert signal_name(signal.SIGRTMAX - 14) == "SIGRTMAX-14"


@pytest.mark.parametrize(
    "text", ["NOPE", "0", "", "999", "SIG_DFL", "-1", "RTMIN+99", "RTMAX-99", "RTMIN+", "RTMIN+x"]
)
def test_parse_signal_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (3.25, "3.2 s"),
        (42.9, "42 s"),
        (303, "5 min 3 s"),
        (7620, "2 h 7 min"),
        (273600, "3 d 4 h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_default_name() -> None:
    assert default_name("/run/app.pid") == "app"
    assert default_name("/run/app") == "app"
    assert default_name("/run/web.v2.pid") == "web.v2"


def test_process_uptime_and_command(processes: ProcessTracker) -> None:
    started = time.monotonic()
    other = processes.popen(["sleep", "1000", "0"])
    uptime = process_uptime(other.pid)
    elapsed = time.monotonic() - started
    assert uptime is not None
    assert 0 <= uptime <= elapsed + 0.02, "start time counts whole clock ticks (10 ms)"
    wait_for(lambda: process_command(other.pid) == ("sleep", "1000", "0"), what="exec")
    other.kill()
    other.wait()
    assert process_uptime(other.pid) is None and process_command(other.pid) is None


def test_status_of_each_state(tracker: Tracker) -> None:
    missing = status(tracker.pidfile)
    assert (missing.state, missing.exit_code, missing.running) == (ServiceState.STOPPED, 3, False)

    before = time.monotonic()
    pid = tracker.start("sleep", "1000")
    found = status(Path(tracker.pidfile))
    assert isinstance(found, ServiceStatus)
    assert (found.state, found.exit_code, found.running, found.pid) == (
        ServiceState.RUNNING,
        0,
        True,
        pid,
    )
    assert found.uptime is not None and 0 <= found.uptime <= time.monotonic() - before + 0.02
    assert found.command == ("sleep", "1000")
    assert "RUNNING" in repr(found)
    assert found.message("web").startswith(f"web is running (pid {pid}, up ")

    kill(pid)
    dead = status(tracker.pidfile)
    assert (dead.state, dead.exit_code, dead.pid, dead.recorded_pid) == (
        ServiceState.DEAD,
        1,
        None,
        pid,
    )

    os.unlink(tracker.pidfile)
    os.symlink("/etc/passwd", tracker.pidfile)
    unknown = status(tracker.pidfile)
    assert (unknown.state, unknown.exit_code) == (ServiceState.UNKNOWN, 4)
    assert unknown.reason and "symbolic link" in unknown.reason


def test_stop_result(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    result = stop(tracker.pidfile)
    assert isinstance(result, StopResult)
    assert (result.pid, result.was_running, result.exited, result.killed) == (
        pid,
        True,
        True,
        False,
    )
    assert result.signal == signal.SIGTERM
    assert 0 <= result.seconds < 1
    assert result.pidfile_removed and not os.path.exists(tracker.pidfile)
    assert not pid_alive(pid)

    again = stop(tracker.pidfile)
    assert (again.pid, again.was_running, again.pidfile_removed) == (None, False, False)
    assert again.message("app") == "app is not running"


def test_stop_kills_after_the_timeout(tracker: Tracker) -> None:
    pid = tracker.start(*python_program("--ignore-term"), options=("--notify",))
    result = stop(tracker.pidfile, timeout=0.3)
    assert (result.pid, result.exited, result.killed) == (pid, True, True)
    assert 0.3 <= result.seconds < 1.3
    assert result.message("app", 0.3).endswith("(sent SIGKILL after 0.3 s)")


_SECONDS = "a number of seconds more than 0, not"


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"timeout": -1}, ValueError, f"timeout: {_SECONDS} -1"),
        ({"timeout": 0}, ValueError, f"timeout: {_SECONDS} 0"),
        ({"timeout": float("nan")}, ValueError, f"timeout: {_SECONDS} nan"),
        ({"timeout": "5"}, TypeError, f"timeout: {_SECONDS} '5'"),
        ({"timeout": True}, TypeError, f"timeout: {_SECONDS} True"),
        ({"kill_timeout": -1.5}, ValueError, f"kill_timeout: {_SECONDS} -1.5"),
        ({"signal": 999}, ValueError, "signal: unknown signal number 999"),
        ({"signal": "TREM"}, ValueError, "signal: unknown signal 'TREM'"),
        ({"signal": 15.0}, TypeError, "signal: a signal number or name, not 15.0"),
    ],
    ids=["timeout=-1", "timeout=0", "timeout=nan", "timeout='5'", "timeout=True",
         "kill_timeout=-1.5", "signal=999", "signal='TREM'", "signal=15.0"],
)  # fmt: skip
def test_stop_refuses_bad_arguments_whether_or_not_the_daemon_runs(
    tracker: Tracker, arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    """As ``daemonctx stop --timeout -1`` is refused: one line naming the argument,
    and nothing sent (``timeout=-1`` killed the daemon at once)."""
    with pytest.raises(error) as refused:
        stop(tracker.pidfile, **arguments)  # type: ignore[arg-type]
    assert str(refused.value) == message
    pid = tracker.start("sleep", "1000")
    with pytest.raises(error) as refused:
        stop(tracker.pidfile, **arguments)  # type: ignore[arg-type]
    assert str(refused.value) == message
    assert pid_alive(pid) and status(tracker.pidfile).pid == pid


def test_stop_takes_a_signal_by_name(tracker: Tracker) -> None:
    pid = tracker.start(*python_program("--ignore-term"), options=("--notify",))
    result = stop(tracker.pidfile, timeout=5, signal="INT")
    assert (result.pid, result.signal, result.exited, result.killed) == (
        pid,
        signal.SIGINT,
        True,
        False,
    )
    assert not pid_alive(pid)


def test_stop_with_a_stale_pidfile_removes_it(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    kill(pid)
    result = stop(tracker.pidfile)
    assert (result.pid, result.pidfile_removed) == (None, True)
    assert not os.path.exists(tracker.pidfile)


def test_a_held_pidfile_is_never_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "app.pid")
    lock = PIDLockFile(path)
    lock.acquire()
    try:
        assert remove_stale_pidfile(path) is False
        assert os.path.exists(path)
        with pytest.raises(
            AlreadyRunning, match=rf"app is already running \(pid {os.getpid()}\)"
        ) as info:
            check_not_running(path, "app")
        assert info.value.pid == os.getpid() and info.value.exit_code == 1
    finally:
        lock.release()
    check_not_running(path, "app")
    assert remove_stale_pidfile(path) is False, "nothing to remove"


def test_terminate_and_wait_exit_on_a_pidfd(child: subprocess.Popen[bytes]) -> None:
    pidfd = os.pidfd_open(child.pid)
    try:
        assert wait_exit(pidfd, 0) is False
        assert terminate(pidfd, signal.SIGTERM, timeout=5) == (True, False)
        assert wait_exit(pidfd, 0) is True
        assert terminate(pidfd) == (True, False), "already gone: nothing to do"
    finally:
        os.close(pidfd)
    assert child.wait(timeout=5) == -signal.SIGTERM


def test_terminate_continues_a_stopped_process_so_that_its_handler_runs(
    processes: ProcessTracker,
) -> None:
    """A process stopped by SIGSTOP with a SIGTERM handler keeps SIGTERM pending:
    ``terminate`` sends SIGCONT after it, and the handler runs at once (its exit
    code says so), not SIGKILL after ``timeout``."""
    code = (
        "import signal, sys, time; signal.signal(15, lambda *a: sys.exit(3));"
        " print('up', flush=True); time.sleep(1000)"
    )
    proc = processes.popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    os.kill(proc.pid, signal.SIGSTOP)
    wait_for(lambda: proc_stat(proc.pid)[0] == "T", what="the process stopped")
    pidfd = os.pidfd_open(proc.pid)
    try:
        began = time.monotonic()
        assert terminate(pidfd, signal.SIGTERM, timeout=10) == (True, False)
        assert time.monotonic() - began < 5
    finally:
        os.close(pidfd)
    assert proc.wait(timeout=5) == 3, "its handler ran"


@needs_root  # switches to nobody
def test_unreadable_pidfile_is_unknown_and_stop_reports_privilege(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    path = str(private / "app.pid")
    Path(path).write_text("1\n")

    def look() -> None:
        found = status(path)
        assert (found.state, found.exit_code) == (ServiceState.UNKNOWN, 4), found
        with pytest.raises(ControlError, match="Permission denied") as info:
            stop(path)
        assert info.value.exit_code == 4

    run_as_nobody(look)


def _remote(remote_type: str, message: str) -> DaemonStartupError:
    """A failure the daemon reported: its exception's type and message."""
    return DaemonStartupError(
        "the daemon (pid 7) failed to start: ...",
        remote_type=remote_type,
        remote_message=message,
        daemon_pid=7,
    )


def test_startup_failure_messages() -> None:
    remote = _remote("OSError", "boom")
    assert str(startup_failure("app", remote)) == "app failed to start: OSError: boom"
    own = "daemonctx.errors.DaemonOSEnvironmentError"
    ours = _remote(own, "[Errno 1] cannot change process owner to uid 5: Operation not permitted")
    assert str(startup_failure("app", ours)) == (
        "app failed to start: cannot change process owner to uid 5: Operation not permitted"
    )
    assert str(startup_failure("app", _remote(own, "[Errno 2] "))) == (
        f"app failed to start: {own}: [Errno 2]"
    ), "nothing after the errno: the type, and the errno"
    assert str(startup_failure("app", _remote("daemonctx.errors.DaemonError", ""))) == (
        "app failed to start: daemonctx.errors.DaemonError"
    ), "no words of its own: its type, not nothing"
    local = DaemonOptionError("uid", 5, "cannot switch to it")
    assert str(startup_failure("app", local)) == "app failed to start: uid=5: cannot switch to it"
