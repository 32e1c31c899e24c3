"""The start-up handoff: the launcher exits 0 only once the daemon is ready,
and a failure before that comes back to the terminal, leaving nothing behind."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    DAEMON,
    ROOT,
    Daemons,
    ProcessTracker,
    Tracker,
    needs_root,
    pid_alive,
    proc_fds,
    read_events,
    run_script,
    searchable_path,
    wait_for,
    wait_gone,
)


def _daemon_pid_from(stderr: str) -> int:
    match = re.search(r"pid (\d+)", stderr)
    assert match, stderr
    return int(match.group(1))


def test_exception_in_the_block_before_ready_reaches_the_terminal(
    daemons: Daemons, tmp_path: Path
) -> None:
    pidfile = tmp_path / "app.pid"
    result, report = daemons.launch(
        {
            "options": {"ready_on_open": False, "pidfile": str(pidfile)},
            "fail_in_block": "cannot bind port 80",
        }
    )
    assert result.returncode == 1
    assert "DaemonStartupError" in result.stderr
    assert "RuntimeError: cannot bind port 80" in result.stderr
    assert "Traceback in the daemon" in result.stderr
    assert 'in <module>\n    raise RuntimeError(config["fail_in_block"])' in result.stderr
    pid = _daemon_pid_from(result.stderr)
    assert not pid_alive(pid), "the failed daemon is gone when the launcher returns"
    assert not pidfile.exists()
    by_daemon = [e["event"] for e in read_events(report) if e["pid"] == pid]
    by_launcher = [e["event"] for e in read_events(report) if e["pid"] != pid]
    assert by_daemon == ["open"], "the daemon ran none of the launcher's cleanup code"
    assert by_launcher == ["closed"], "the launcher's own finally ran, once"


def test_a_failed_daemon_with_much_memory_is_gone_when_the_launcher_returns(
    daemons: Daemons,
) -> None:
    # It closes the pipe, then exits: giving 256 MiB back takes long after the EOF.
    result, _report = daemons.launch(
        {"options": {"ready_on_open": False}, "fail_in_block": "no", "ballast_mib": 256}
    )
    assert result.returncode == 1 and "RuntimeError: no" in result.stderr
    pid = _daemon_pid_from(result.stderr)
    assert not pid_alive(pid), "the failed daemon is gone when the launcher returns"


@pytest.mark.parametrize("worker", ["fork", "multiprocessing"])
def test_a_failed_start_stops_the_workers_the_daemon_forked(daemons: Daemons, worker: str) -> None:
    """A worker forked before the failure holds the start-up pipe open: the error
    comes at once, not after the 5 s given to the daemon to exit, and the worker
    is stopped with the daemon (it was left running)."""
    started = time.monotonic()
    result, report = daemons.launch(
        {"options": {"ready_on_open": False}, "worker": worker, "fail_in_block": "bad config"}
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "RuntimeError: bad config" in result.stderr
    assert elapsed < 3, f"the error took {elapsed:.1f} s"
    assert not pid_alive(daemons.event(report, "worker")["pid"]), "the worker was stopped"


def test_failure_inside_open_reaches_the_terminal(tmp_path: Path) -> None:
    code = """
from daemonctx import DaemonContext
class Pidfile:
    def __enter__(self): raise PermissionError(13, "Permission denied", "/run/app.pid")
    def __exit__(self, *exc): pass
DaemonContext(pidfile=Pidfile()).open()
"""
    result = run_script(code, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("daemonctx.errors.DaemonStartupError: the daemon (pid ")
    assert last.endswith(
        "failed to start: PermissionError: [Errno 13] Permission denied: '/run/app.pid'"
    )
    assert not pid_alive(_daemon_pid_from(last))


def test_second_instance_fails_naming_the_running_pid(daemons: Daemons, tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    config = {"options": {"pidfile": str(pidfile)}, "pidfile_class": "daemonctx"}
    first, _ = daemons.start(config)
    result, _ = daemons.launch(config)
    assert result.returncode == 1
    # Checked in the foreground: lockfile's own exception, raised before any fork.
    last_line = result.stderr.strip().splitlines()[-1]
    assert (
        last_line
        == f"lockfile.AlreadyLocked: {pidfile} is locked by running process {first['pid']}"
    )
    assert "Traceback in the daemon" not in result.stderr
    assert int(pidfile.read_text()) == first["pid"]
    assert pid_alive(first["pid"])


def test_launcher_waits_for_notify_ready(daemons: Daemons) -> None:
    started = time.monotonic()
    result, report = daemons.launch({"options": {"ready_on_open": False}, "ready_late": 0.3})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.3
    assert "open" in [e["event"] for e in read_events(report)], "written before notify_ready()"


def test_daemon_killed_before_ready(daemons: Daemons, tmp_path: Path) -> None:
    report = tmp_path / "killed.jsonl"
    config = {"report": str(report), "options": {"ready_on_open": False}, "ready_late": 60}
    launcher = daemons.popen(
        [sys.executable, str(DAEMON), json.dumps(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = daemons.event(report, "open")["pid"]
    os.kill(pid, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=10)
    assert launcher.returncode == 1
    assert f"the daemon exited before it was ready (pid {pid})" in stderr


def test_a_daemon_killed_before_ready_fails_the_start_though_its_child_holds_the_pipe(
    daemons: Daemons,
) -> None:
    """The daemon's exit, seen through its pidfd, ends the wait: the pipe's end-of-file
    never comes while a child it forked holds it (the launcher waited for ever, saying
    it waited for a dead pid). The child is stopped with the rest of the session."""
    result, report = daemons.launch(
        {"options": {"ready_on_open": False}, "worker": "fork", "kill_self": True}, timeout=15
    )
    pid = daemons.event(report, "open")["pid"]
    assert result.returncode == 1
    assert f"the daemon exited before it was ready (pid {pid})" in result.stderr
    assert "still waiting" not in result.stderr
    assert not pid_alive(daemons.event(report, "worker")["pid"]), "the child was stopped"


@pytest.mark.parametrize("learnt", ["pidfd", "gone"])
def test_the_daemons_exit_ends_the_wait_only_after_its_last_record(
    processes: ProcessTracker, learnt: str
) -> None:
    """A record written before the exit is read, then the exit is the end-of-file, though
    a write end is still open (ours here, a child's in a start). ``gone``: the daemon
    was reaped before its pid was learnt, so there is no pidfd to watch."""
    from daemonctx.handoff import _RecordReader

    read_fd, write_fd = os.pipe()
    exited = processes.popen(["true"])
    pidfd = os.pidfd_open(exited.pid)
    try:
        os.write(write_fd, b"ERROR 42 2\n{}")
        exited.wait(10)
        reader = _RecordReader(read_fd)
        watch = {"pidfd": pidfd, "gone": None}[learnt]
        assert reader.next(None, watch, learnt == "gone") == ("ERROR", 42, b"{}")
        assert reader.next(None, watch, learnt == "gone") is None
    finally:
        for fd in (read_fd, write_fd, pidfd):
            os.close(fd)


def test_ready_timeout_stops_the_slow_daemon(daemons: Daemons, tmp_path: Path) -> None:
    pidfile = tmp_path / "slow.pid"
    result, report = daemons.launch(
        {
            "options": {"ready_on_open": False, "ready_timeout": 0.5, "pidfile": str(pidfile)},
            "ready_late": 60,
        }
    )
    assert result.returncode == 1
    assert "DaemonReadyTimeout: the daemon did not report ready within 0.5 s" in result.stderr
    pid = daemons.event(report, "open")["pid"]
    wait_gone(pid, 10)
    assert not pidfile.exists(), "SIGTERM let the daemon release its pidfile"


def _default_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP at their defaults, as a terminal's shell leaves them:
    a test runner in the background or under nohup has some ignored, and a launcher
    keeps an ignored signal ignored."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"]
)
def test_a_signal_to_the_waiting_launcher_stops_the_daemon(
    daemons: Daemons, tmp_path: Path, signum: int
) -> None:
    """``timeout``, a lost ssh session, a service manager's start timeout: the launcher
    ends by the signal, as before, and the daemon no longer comes up after it
    (only Ctrl-C stopped it)."""
    report, pidfile = tmp_path / "signalled.jsonl", tmp_path / "app.pid"
    options = {"ready_on_open": False, "pidfile": str(pidfile)}
    config = {"report": str(report), "options": options, "ready_late": 60}
    launcher = daemons.popen(
        [sys.executable, str(DAEMON), json.dumps(config)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    pid = daemons.event(report, "open")["pid"]
    launcher.send_signal(signum)
    _, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == -signum, stderr
    assert not pid_alive(pid), "the daemon was stopped before the launcher ended"
    assert not pidfile.exists()


def test_the_launchers_signal_handlers_are_back_after_a_failed_start() -> None:
    result = run_script(
        """
import signal
from daemonctx import DaemonContext, DaemonStartupError
def mine(signum, frame): pass
signal.signal(signal.SIGHUP, mine)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)  # not SIG_IGN, as in a background job
try:
    with DaemonContext(ready_on_open=False):
        raise RuntimeError("no")
except DaemonStartupError:
    pass
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGHUP) is mine,
      signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""
    )
    assert result.stdout.split() == ["True", "True", "True"]


@pytest.mark.parametrize("where", ["wait", "launcher_ready"])
def test_the_first_child_is_reaped_only_after_the_clean_up(where: str) -> None:
    """Its pid is the id of the session the clean-up stops: while it is an unreaped
    zombie no other session can take that id (start's clean-up runs after its
    launcher_ready failed)."""
    result = run_script(
        f"""
import os
from daemonctx import DaemonContext, DaemonStartupError
class Context(DaemonContext):
    def launcher_ready(self, daemon_pid):
        raise RuntimeError("no")
    def _launch_failed(self):
        try:  # waits for it to exit (it may not have yet), without reaping it
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            print("reaped", flush=True)
        else:
            print("unreaped", flush=True)
try:
    with Context(ready_on_open={where == "launcher_ready"}):
        raise RuntimeError("no")
except (DaemonStartupError, RuntimeError):
    pass
"""
    )
    assert result.stdout == "unreaped\n"


def test_launcher_that_catches_the_error_goes_on_once(tmp_path: Path) -> None:
    result = run_script(
        """
from daemonctx import DaemonContext, DaemonStartupError
class Pidfile:
    def __enter__(self): raise OSError("no space left")
    def __exit__(self, *exc): pass
try:
    with DaemonContext(pidfile=Pidfile()):
        print("daemon body ran", flush=True)
except DaemonStartupError as exc:
    print("caught", exc.remote_type, exc.remote_message, flush=True)
print("launcher goes on", flush=True)
"""
    )
    assert result.stdout.splitlines() == ["caught OSError no space left", "launcher goes on"]


# -- sd_notify -------------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
        env_value = address
    else:
        name = f"daemonctx-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        env_value = "@" + name
    sock.settimeout(10)
    with sock:
        yield sock, env_value


def _receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_detached_launcher_sends_mainpid_and_ready(
    notify_socket: tuple[socket.socket, str], daemons: Daemons
) -> None:
    sock, address = notify_socket
    result, report = daemons.launch({}, env={**os.environ, "NOTIFY_SOCKET": address})
    assert result.returncode == 0, result.stderr
    pid = daemons.event(report, "open")["pid"]
    assert _receive(sock) == [f"MAINPID={pid}", "READY=1"]
    os.kill(pid, signal.SIGTERM)
    assert _receive(sock) == ["STOPPING=1"]
    wait_gone(pid)


def test_foreground_daemon_sends_ready_itself(
    notify_socket: tuple[socket.socket, str], tmp_path: Path, processes: ProcessTracker
) -> None:
    sock, address = notify_socket
    report = tmp_path / "fg.jsonl"
    config = {
        "report": str(report),
        "options": {"detach_process": False, "ready_on_open": False},
        "ready_late": 0,
    }
    proc = processes.popen(
        [sys.executable, str(DAEMON), json.dumps(config)],
        env={**os.environ, "NOTIFY_SOCKET": address},
    )
    assert _receive(sock) == ["READY=1"]
    wait_for(lambda: "ready" in [e["event"] for e in read_events(report)], 10, "ready")
    proc.terminate()
    assert _receive(sock) == ["STOPPING=1"]
    assert proc.wait(10) == 0


def test_notify_stopping_at_the_start_of_a_shutdown_is_not_repeated_at_close(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """A daemon with a long shutdown says STOPPING=1 when it begins; close() then
    does not send a second one (the supervisor's --foreground run sent two)."""
    sock, address = notify_socket
    code = (
        "from daemonctx import DaemonContext, notify\n"
        "with DaemonContext(detach_process=False) as context:\n"
        "    context.notify_stopping()\n"
        "    context.notify_stopping()\n"
        "    notify(STATUS='draining')\n"
    )
    run_script(code, env={**os.environ, "NOTIFY_SOCKET": address})
    heard = [_receive(sock) for _ in range(3)]
    assert heard == [["READY=1"], ["STOPPING=1"], ["STATUS=draining"]]
    sock.setblocking(False)  # the daemon has exited: all it sent is queued
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_notify_sends_fields(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    code = (
        "import os\n"
        f"os.environ['NOTIFY_SOCKET'] = {address!r}\n"
        "from daemonctx import notify\n"
        "assert notify('RELOADING=1', STATUS='Loading data', WATCHDOG=1)\n"
    )
    run_script(code)
    assert _receive(sock) == ["RELOADING=1", "STATUS=Loading data", "WATCHDOG=1"]


def test_notify_without_notify_socket_does_nothing() -> None:
    result = run_script(
        "import os, sys\n"
        "os.environ.pop('NOTIFY_SOCKET', None)\n"
        "from daemonctx import notify\n"
        "print(notify(READY=1), 'socket' in sys.modules)\n"
    )
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("usec", "pid", "seconds"),
    [("500000", None, 0.5), ("500000", "self", 0.5), ("500000", "1", None),
     ("500000", "x", None), (None, None, None), ("0", None, None), ("-5", None, None),
     ("half", None, None), ("\u00b2", None, None),
     pytest.param("5" * 5000, None, None, id="5000-digits"),
     ("500000", "\u00b2", None), ("18446744073709551615", None, None),
     ("18446744073709551614", None, 18446744073709.551614)],
)  # fmt: skip
def test_watchdog_seconds_as_sd_watchdog_enabled(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, seconds: float | None
) -> None:
    """WATCHDOG_USEC, and WATCHDOG_PID when set must be this process (a child that
    inherited its parent's environment is not watched). A value sd_watchdog_enabled
    refuses is no watchdog: not ASCII digits ("\u00b2", which int() takes; 5000
    digits, which it refuses, naming sys.set_int_max_str_digits), 0, or
    USEC_INFINITY (2**64 - 1) and above."""
    from daemonctx.systemd import watchdog_seconds

    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert watchdog_seconds() == seconds


USEC_RANGE = "not a number of microseconds from 1 to 18446744073709551614"


@pytest.mark.parametrize(
    ("usec", "pid", "problem"),
    [("\u00b2", None, f"ignoring WATCHDOG_USEC='\u00b2': {USEC_RANGE}"),
     pytest.param("5" * 5000, None,
                  f"ignoring WATCHDOG_USEC={'5' * 40!r}... (5000 characters): {USEC_RANGE}",
                  id="5000-digits"),
     ("0", None, f"ignoring WATCHDOG_USEC='0': {USEC_RANGE}"),
     ("500000", "x", "ignoring WATCHDOG_USEC: WATCHDOG_PID='x' is not a process id"),
     ("500000", "1", None), ("500000", None, None), (None, None, None), ("", None, None)],
)  # fmt: skip
def test_watchdog_problem_names_the_variable_and_what_it_holds(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, problem: str | None
) -> None:
    from daemonctx.systemd import watchdog_problem

    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert watchdog_problem() == problem


WATCHED_DAEMON = """
import signal, sys
sys.path.insert(0, sys.argv[1])
from daemonctx import DaemonContext, notify
from daemonctx.systemd import watchdog_seconds
with DaemonContext(detach_process=True):
    notify("WATCHDOG=1", STATUS=f"watchdog {watchdog_seconds()}")
    signal.pause()
"""


def _receive_from(sock: socket.socket) -> tuple[int, list[str]]:
    """A datagram and the pid of its sender (SCM_CREDENTIALS, as systemd reads it)."""
    data, ancillary, _flags, _address = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    pids = [
        struct.unpack("3i", cmsg_data[:12])[0]
        for level, kind, cmsg_data in ancillary
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    ]
    assert len(pids) == 1, ancillary
    return pids[0], data.decode().split("\n")


def test_the_watchdog_systemd_set_for_the_launcher_is_the_daemons(
    notify_socket: tuple[socket.socket, str], processes: ProcessTracker
) -> None:
    """WatchdogSec=: systemd names the process it started, the launcher, in
    WATCHDOG_PID. The daemon sees the watchdog (sd_watchdog_enabled(3) would say no
    to another pid), and its WATCHDOG=1 comes from the pid the launcher's MAINPID=
    names, which systemd then takes it from."""
    sock, address = notify_socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"}
    # exec keeps the shell's pid: WATCHDOG_PID is the launcher's own, as systemd sets it
    launcher = subprocess.run(
        ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", sys.executable, "-c", WATCHED_DAEMON,
         str(ROOT)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert launcher.returncode == 0, launcher.stderr
    messages = dict(_receive_from(sock) for _ in range(2))  # sender -> lines
    (main,) = [int(line[8:]) for lines in messages.values() for line in lines if "MAINPID" in line]
    processes.add(main)
    assert messages.pop(main) == ["WATCHDOG=1", "STATUS=watchdog 30.0"], messages
    assert list(messages.values()) == [[f"MAINPID={main}", "READY=1"]]  # the launcher's
    os.kill(main, signal.SIGTERM)
    wait_gone(main)


def test_a_program_start_execs_gets_the_watchdog_systemd_set_for_the_launcher(
    tracker: Tracker,
) -> None:
    """`daemonctx start`: the program it execs sees WATCHDOG_PID name itself."""
    seen = tracker.tmp_path / "seen"
    program = f'echo "$WATCHDOG_PID $$" > {seen}; exec sleep 1000'
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--", "sh", "-c", program,
        prefix=["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"],
        env={**tracker.env, "WATCHDOG_USEC": "30000000"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pid = tracker.add(int(Path(tracker.pidfile).read_text()))
    wait_for(lambda: seen.exists() and seen.read_text().endswith("\n"), what="its line")
    assert seen.read_text().split() == [str(pid), str(pid)]


@pytest.mark.parametrize("gone", ["no such path", "a path nobody binds", "an abstract name"])
def test_notify_to_a_manager_gone_returns_false_and_says_so_once(tmp_path: Path, gone: str) -> None:
    """As sd_notify(3) returns an error its caller ignores: a program whose manager
    is gone (``start --notify`` has exited) runs on. It raised, and killed the
    program; said once, a watchdog ping every second does not fill its log."""
    address = str(tmp_path / "notify.sock")
    if gone == "a path nobody binds":
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address)  # the file stays: ECONNREFUSED
    elif gone == "an abstract name":
        address = f"@daemonctx-test-{os.getpid()}-{time.monotonic_ns()}"
    result = run_script(
        "import os\n"
        f"os.environ['NOTIFY_SOCKET'] = {address!r}\n"
        "from daemonctx import notify\n"
        "print(notify(READY=1), notify(STATUS='serving'), notify(WATCHDOG=1))\n"
    )
    assert result.stdout == "False False False\n"
    reason = "No such file or directory" if gone == "no such path" else "Connection refused"
    assert result.stderr == (
        f"daemonctx: warning: cannot notify the service manager at {address!r}: {reason}\n"
    )


@pytest.mark.parametrize("address", ["garbage", "run/notify.sock"])
def test_notify_to_what_is_no_address_raises(address: str) -> None:
    """Neither an absolute path nor ``@name``: sd_notify(3) refuses it (EINVAL), and
    a manager that waits for READY=1 would otherwise time out in silence."""
    result = run_script(
        "import os\n"
        f"os.environ['NOTIFY_SOCKET'] = {address!r}\n"
        "from daemonctx import notify, DaemonOSEnvironmentError\n"
        "try:\n"
        "    notify(READY=1)\n"
        "except DaemonOSEnvironmentError as exc:\n"
        "    print(exc.errno, exc.strerror)\n"
    )
    assert result.stdout == (
        f"{errno.EINVAL} cannot notify the service manager at {address!r}:"
        " not an absolute path or @name\n"
    )


# -- hooks for programs built on DaemonContext (the daemonctx command) ------------


EXEC_SCRIPT = """
import os, sys
from daemonctx import DaemonContext
from daemonctx.pidfile import PIDLockFile
pidfile = PIDLockFile({pidfile!r})
context = DaemonContext(pidfile=pidfile, ready_on_open=False)
with context:
    os.set_inheritable(pidfile.fileno(), True)  # the program keeps the lock
    context.notify_ready_on_exec()
    os.execvp({program!r}, [{program!r}, "60"])
"""


def test_successful_exec_counts_as_ready(daemons: Daemons, tmp_path: Path) -> None:
    from daemonctx.pidfile import read_pidfile_status

    pidfile = tmp_path / "sleep.pid"
    run_script(EXEC_SCRIPT.format(pidfile=str(pidfile), program="sleep"))
    state = read_pidfile_status(pidfile)
    assert state.pid is not None
    daemons.pids.add(state.pid)
    assert state.running, "the exec'd program holds the pidfile's lock"
    assert Path(f"/proc/{state.pid}/comm").read_text().strip() == "sleep"


def test_failed_exec_reaches_the_terminal(tmp_path: Path) -> None:
    pidfile = tmp_path / "none.pid"
    code = EXEC_SCRIPT.format(pidfile=str(pidfile), program="no-such-program-dctx")
    # A PATH directory we may not search would make execvp report EACCES, not ENOENT.
    result = run_script(code, check=False, env={**os.environ, "PATH": searchable_path()})
    assert result.returncode == 1
    # os.execvp's error does not name the program: callers check it in the foreground.
    assert "failed to start: FileNotFoundError: [Errno 2]" in result.stderr
    assert not pidfile.exists()


def test_an_exec_before_ready_without_notify_ready_on_exec_is_said(daemons: Daemons) -> None:
    """The pipe closes by the exec while the daemon still runs: the launcher names
    the program it now runs and the call that was missing, rather than "exited ...
    killed, os._exit()", and stops it, as every start that failed."""
    code = """
import os
from daemonctx import DaemonContext
with DaemonContext(ready_on_open=False):
    os.execvp("sleep", ["sleep", "1000"])
"""
    result = run_script(code, check=False, timeout=30)
    pid = _daemon_pid_from(result.stderr)
    daemons.pids.add(pid)  # killed at the end, should the launcher have left it
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"daemonctx.errors.DaemonStartupError: the daemon (pid {pid}) ran another program "
        f"({os.path.realpath(shutil.which('sleep') or 'sleep')}) before it was ready: "
        "call notify_ready_on_exec() just before the exec"
    ), result.stderr
    assert not pid_alive(pid)


def test_launcher_ready_runs_in_the_launcher(daemons: Daemons, tmp_path: Path) -> None:
    report = tmp_path / "hook.jsonl"
    result = run_script(
        f"""
import os, signal
from daemonctx import DaemonContext
class Announcing(DaemonContext):
    def launcher_ready(self, daemon_pid):
        super().launcher_ready(daemon_pid)
        print(f"started app (pid {{daemon_pid}}) from {{os.getpid()}}")
with Announcing(files_preserve=[report := open({str(report)!r}, "a")]):
    report.write(f"{{os.getpid()}}\\n"); report.flush()
    signal.pause()
"""
    )
    daemon_pid = int(wait_for(lambda: report.read_text().strip(), 10, "daemon pid"))
    daemons.pids.add(daemon_pid)
    words = result.stdout.split()
    assert words[:3] == ["started", "app", "(pid"]
    assert int(words[3].rstrip(")")) == daemon_pid
    assert int(words[-1]) != daemon_pid, "printed by the launcher"


def test_a_huge_error_still_arrives_whole(tmp_path: Path) -> None:
    """Records are single atomic pipe writes: a deep traceback and a long message are
    trimmed from the front, keeping the type, the message start and the innermost frame."""
    code = """
from daemonctx import DaemonContext
def deep(n):
    if n == 0:
        raise ValueError("x" * 5000)
    if n % 2:  # two call sites: frames differ, so Python cannot fold them
        deep(n - 1)
    else:
        deep(n - 1)
class Pidfile:
    def __enter__(self): deep(200)
    def __exit__(self, *exc): pass
DaemonContext(pidfile=Pidfile()).open()
"""
    program = tmp_path / "huge.py"  # a file, so the traceback shows source lines
    program.write_text(f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}")
    result = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "failed to start: ValueError: xxxx" in result.stderr
    assert 'raise ValueError("x" * 5000)' in result.stderr, "innermost frame kept"
    assert "Traceback in the daemon:\nTraceback (most recent call last):\n  ...\n" in (
        result.stderr
    ), "outer frames trimmed"


@pytest.mark.parametrize("letter", ["w", "\u00e9"])
def test_a_long_message_keeps_its_end_where_the_reason_is(tmp_path: Path, letter: str) -> None:
    """A message longer than a record's room is cut in its middle, marked: its end
    is often the reason ("NAME failed to start: exited 1", after a long name).
    It was cut at 1,024 characters, the reason gone without a mark; one of
    non-ASCII letters lost its record's JSON end (escaped, 6 bytes each)."""
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from daemonctx import DaemonContext
class Pidfile:
    def __enter__(self): raise ValueError({letter!r} * 3000 + " failed: the reason")
    def __exit__(self, *exc): pass
DaemonContext(pidfile=Pidfile()).open()
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert f"failed to start: ValueError: {letter * 10}" in last, last
    assert last.endswith(" failed: the reason"), last[-80:]
    assert re.search(r"\[\.\.\. \d+ characters cut \.\.\.\]", last), last


def test_a_long_exception_type_name_is_cut_too() -> None:
    """A class made with ``type("E" * 5000, ...)``: its name is cut in its middle as
    a message is; it arrived as "unknown: {"type": "EEEE...", its record's JSON cut."""
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from daemonctx import DaemonContext
class Pidfile:
    def __enter__(self): raise type("E" * 5000, (Exception,), {{}})("x" * 3000 + " END")
    def __exit__(self, *exc): pass
DaemonContext(pidfile=Pidfile()).open()
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20
    )
    last = result.stderr.splitlines()[-1]
    assert "failed to start: EEEE" in last and "unknown:" not in last, last[:200]
    assert last.endswith(" END"), last[-80:]


@needs_root  # chroot
def test_failure_inside_a_chroot_is_still_reported(tmp_path: Path) -> None:
    """No module file is reachable inside an empty chroot: what the error report
    needs was imported before it, so the launcher still gets the whole error."""
    jail = tmp_path / "jail"
    jail.mkdir()
    code = f"""
from daemonctx import DaemonContext
class Pidfile:
    def __enter__(self): raise RuntimeError("inside the jail: " + os.getcwd())
    def __exit__(self, *exc): pass
import os
DaemonContext(pidfile=Pidfile(), chroot_directory={str(jail)!r}).open()
"""
    result = run_script(code, check=False)
    assert result.returncode == 1
    assert "failed to start: RuntimeError: inside the jail: /" in result.stderr


@needs_root  # chroot
def test_notify_works_inside_an_empty_chroot(tmp_path: Path) -> None:
    """sd_notify is loaded before the chroot, where no module file is reachable
    (an @abstract socket is: it lives in the network namespace, not the filesystem)."""
    root = tmp_path / "root"
    root.mkdir()
    name = f"daemonctx-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        run_script(
            "import os\n"
            f"os.environ['NOTIFY_SOCKET'] = '@{name}'\n"
            "from daemonctx import DaemonContext\n"
            f"with DaemonContext(chroot_directory={str(root)!r}, detach_process=False):\n"
            "    assert not os.path.exists('/usr')\n"
            "    from daemonctx import notify\n"
            "    notify(STATUS='inside')\n"
        )
        assert [_receive(sock) for _ in range(3)] == [
            ["READY=1"],
            ["STATUS=inside"],
            ["STOPPING=1"],
        ]


JAILED_DAEMON = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from daemonctx import DaemonContext, notify
context = DaemonContext(chroot_directory=sys.argv[2], detach_process=sys.argv[3] == "detached",
                        ready_on_open=False, stderr=sys.stderr)
with context:
    context.notify_ready()
    notify(STATUS=f"jailed: /usr {'exists' if os.path.exists('/usr') else 'missing'}")
    signal.pause()
"""


@needs_root  # chroot
@pytest.mark.parametrize("how", ["foreground", "detached"])
def test_notify_reaches_a_path_socket_from_inside_a_chroot(
    tmp_path: Path, processes: ProcessTracker, how: str
) -> None:
    """systemd's NOTIFY_SOCKET is a path (/run/systemd/notify) that the jail lacks:
    the daemon's READY=1 (Type=notify), notify() and STOPPING=1 still reach the
    manager, through a socket connected before the chroot, which a program the
    daemon would exec does not inherit (close-on-exec). They went nowhere, with a
    warning, and systemd killed the unit when TimeoutStartSec= ran out."""
    jail = tmp_path / "jail"
    jail.mkdir()
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        manager.settimeout(10)
        launcher = processes.popen(
            [sys.executable, "-c", JAILED_DAEMON, str(ROOT), str(jail), how],
            env={**os.environ, "NOTIFY_SOCKET": address},
            stderr=subprocess.PIPE,
            text=True,
        )
        received = [_receive_from(manager) for _ in range(2)]  # (sender, lines)
        if how == "foreground":
            daemon = launcher.pid
            assert received == [(daemon, ["READY=1"]), (daemon, ["STATUS=jailed: /usr missing"])]
        else:
            assert launcher.wait(10) == 0
            sent = dict(received)
            (daemon,) = [int(line[8:]) for lines in sent.values() for line in lines
                         if line.startswith("MAINPID=")]  # fmt: skip
            processes.add(daemon)
            assert sent == {launcher.pid: [f"MAINPID={daemon}", "READY=1"],
                            daemon: ["STATUS=jailed: /usr missing"]}  # fmt: skip
        assert os.readlink(f"/proc/{daemon}/root") == str(jail)
        sockets = [fd for fd, target in proc_fds(daemon).items() if target.startswith("socket:")]
        assert len(sockets) == 1, proc_fds(daemon)
        flags = Path(f"/proc/{daemon}/fdinfo/{sockets[0]}").read_text().split("\n")[1]
        assert int(flags.split()[1], 8) & os.O_CLOEXEC, flags
        os.kill(daemon, signal.SIGTERM)
        assert _receive_from(manager) == (daemon, ["STOPPING=1"])
    wait_gone(daemon)
    if how == "foreground":
        assert launcher.wait(10) == 0
        assert launcher.stderr is not None
        assert launcher.stderr.read() == "", "no 'cannot notify the service manager' warning"


def test_launcher_waiting_is_true_in_a_detached_daemon_until_ready(tmp_path: Path) -> None:
    """What a daemon built on DaemonContext checks before it fails its own start
    on purpose (the supervisor stopped during its boot): a launcher waits only
    between the fork and ready, and never without a detach."""
    seen = tmp_path / "seen"
    run_script(
        f"""
from daemonctx import DaemonContext
report = open({str(seen)!r}, "w")
with DaemonContext(detach_process=False, ready_on_open=False, files_preserve=[report]) as c:
    report.write(f"foreground {{c.launcher_waiting}}\\n")
with DaemonContext(ready_on_open=False, files_preserve=[report]) as context:
    report.write(f"before {{context.launcher_waiting}}\\n")
    context.notify_ready()
    report.write(f"after {{context.launcher_waiting}}\\n")
    report.close()
"""
    )
    wait_for(lambda: seen.read_text().count("\n") == 3, what="the daemon's report")
    assert seen.read_text().split("\n")[:3] == ["foreground False", "before True", "after False"]


_READY_LATE = {
    "context": """
context = DaemonContext(ready_on_open=False, pidfile=TimeoutPIDLockFile(PIDFILE))
with context:
    wait_for_the_launcher()
    context.notify_ready()
""",
    "service": """
class App(Service):
    ready_on_open = False
    def run(self):
        wait_for_the_launcher()
        self.notify_ready()
App(pidfile=PIDFILE).main(["start"])
""",
}


@pytest.mark.parametrize("kind", sorted(_READY_LATE))
def test_once_the_pidfile_is_taken_the_launcher_waits_for_ready_not_for_the_pidfile(
    tmp_path: Path, processes: ProcessTracker, kind: str
) -> None:
    """A daemon that took its pidfile, then takes long before notify_ready(): the
    launcher's "still waiting" line says it waits for ready, not for the pidfile."""
    pidfile = tmp_path / "app.pid"
    said = tmp_path / "launcher.err"
    code = f"""
import sys, time; sys.path.insert(0, {str(ROOT)!r})
from daemonctx import DaemonContext, Service, handoff
from daemonctx.pidfile import TimeoutPIDLockFile
handoff.NAG_AFTER = 0.5
PIDFILE = {str(pidfile)!r}
def wait_for_the_launcher():  # until it has said what it waits for (bounded)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with open({str(said)!r}) as said:
            if "to report ready" in said.read():
                return
        time.sleep(0.01)
{_READY_LATE[kind]}"""
    with open(said, "w") as stderr:
        launcher = processes.popen([sys.executable, "-c", code], stderr=stderr)
        assert launcher.wait(30) == 0, said.read_text()
    daemon = _daemon_pid_from(said.read_text())
    processes.add(daemon)
    assert said.read_text() == (
        f"daemonctx: still waiting for the daemon (pid {daemon}) to report ready"
        " (0.5 s so far; Ctrl-C stops it)\n"
    )


def test_an_error_whose_str_fails_still_reaches_the_terminal_with_its_traceback() -> None:
    """str() of the daemon's exception raises: its type and traceback still come
    back, with traceback's placeholder for the message."""
    code = """
from daemonctx import DaemonContext
class Unprintable(Exception):
    def __str__(self):
        raise ValueError("no text")
with DaemonContext(ready_on_open=False):
    raise Unprintable()
"""
    result = run_script(code, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("daemonctx.errors.DaemonStartupError: the daemon (pid "), last
    assert last.endswith(") failed to start: Unprintable: <exception str() failed>"), last
    daemon_part = result.stderr.split("Traceback in the daemon:\n", 1)[1]
    assert ", in <module>\n" in daemon_part
    # traceback's own placeholder: "<unprintable Unprintable object>" before 3.11
    last_line = re.compile(
        r"^Unprintable: <(exception str\(\) failed|unprintable \w+ object)>$", re.M
    )
    assert last_line.search(daemon_part), daemon_part
    assert not pid_alive(_daemon_pid_from(last))


def test_a_context_opened_again_in_the_foreground_sends_ready_again(
    notify_socket: tuple[socket.socket, str], tmp_path: Path, processes: ProcessTracker
) -> None:
    """Detached first, closed, then opened again without detaching: the service
    manager hears READY=1 from the daemon itself, as from any foreground open."""
    sock, address = notify_socket
    report = tmp_path / "pid"
    code = f"""
import os
from daemonctx import DaemonContext
context = DaemonContext(detach_process=True)
context.open()
with open({str(report)!r}, "w") as report:
    report.write(str(os.getpid()))
context.close()
context.detach_process = False
context.open()
context.close()
"""
    run_script(code, env={**os.environ, "NOTIFY_SOCKET": address})
    # the daemon writes it after its open: once the launcher has returned, perhaps
    written = wait_for(lambda: report.exists() and report.read_text(), 10, "the daemon's pid")
    daemon = processes.add(int(written))
    heard = [_receive(sock) for _ in range(4)]
    heard.remove([f"MAINPID={daemon}", "READY=1"])  # the launcher's, in its own time
    assert heard == [["STOPPING=1"], ["READY=1"], ["STOPPING=1"]], "the daemon's, in order"


WORKER_ENDS = """
import os, sys, time
sys.path.insert(0, {root!r})
from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile
log = open({log!r}, "a")
context = DaemonContext(detach_process=False, ready_on_open=False, stdout=log, stderr=log,
                        pidfile=TimeoutPIDLockFile({pidfile!r}))
with context:
    context.notify_ready()
    worker = os.fork()
    if worker == 0:  # says so once Python's after-fork is done (it drops a signal before)
        with open({status!r} + ".worker.tmp", "w") as out:
            out.write(str(os.getpid()))
        os.rename({status!r} + ".worker.tmp", {status!r} + ".worker")
        while True:  # SIGTERM: context.terminate, the with block's exit, atexit
            time.sleep(0.1)  # not pause(): a signal just before it would be waited past
    _, status = os.waitpid(worker, 0)
    with open({status!r} + ".tmp", "w") as out:
        out.write(f"{{worker}} {{os.waitstatus_to_exitcode(status)}}")
    os.rename({status!r} + ".tmp", {status!r})
    while True:
        time.sleep(0.1)
"""


def test_a_worker_that_ends_does_not_close_the_daemons_context(
    notify_socket: tuple[socket.socket, str], tmp_path: Path, processes: ProcessTracker
) -> None:
    """A worker forked inside the ``with`` block and stopped by SIGTERM exits 0 and
    leaves the daemon's context alone: no STOPPING=1 from the worker's pid (under
    NotifyAccess=all the whole service would read as stopping), no attempt to
    release the daemon's pidfile (lockfile.NotMyLock, exit 1). The daemon's own
    exit still sends STOPPING=1 and removes its pidfile."""
    from daemonctx.pidfile import read_pidfile_status

    sock, address = notify_socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    log, pidfile, status = tmp_path / "log", tmp_path / "app.pid", tmp_path / "status"
    code = WORKER_ENDS.format(
        root=str(ROOT), log=str(log), pidfile=str(pidfile), status=str(status)
    )
    daemon = processes.popen(
        [sys.executable, "-c", code], env={**os.environ, "NOTIFY_SOCKET": address}
    )
    assert _receive_from(sock) == (daemon.pid, ["READY=1"])
    started = Path(f"{status}.worker")
    worker = processes.add(int(wait_for(lambda: started.exists() and started.read_text(), 10)))
    os.kill(worker, signal.SIGTERM)
    ended = wait_for(lambda: status.exists() and status.read_text(), 10, "the worker's exit")
    assert ended == f"{worker} 0", log.read_text()
    sock.setblocking(False)  # a worker's message would be queued before it exited
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
    sock.setblocking(True)
    state = read_pidfile_status(pidfile)
    assert (state.running, state.pid) == (True, daemon.pid)
    assert "Traceback" not in log.read_text()
    daemon.terminate()
    assert _receive_from(sock) == (daemon.pid, ["STOPPING=1"])
    assert daemon.wait(10) == 0, log.read_text()
    assert not pidfile.exists()


FORKED_THEN_EXEC = """
import os, sys
from daemonctx import DaemonContext
from daemonctx.pidfile import PIDLockFile
pidfile = PIDLockFile({pidfile!r})
context = DaemonContext(pidfile=pidfile, ready_on_open=False, ready_timeout=20)
with context:
    worker = os.fork()
    if worker == 0:  # a helper forked before the exec: it keeps running Python
        with open({worker_file!r} + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.rename({worker_file!r} + ".tmp", {worker_file!r})
        import time
        time.sleep(1000)
        os._exit(0)
    os.set_inheritable(pidfile.fileno(), True)
    context.notify_ready_on_exec()
    os.execvp("sleep", ["sleep", "999"])
"""


def test_exec_is_ready_though_the_daemon_forked_a_worker_first(
    daemons: Daemons, tmp_path: Path
) -> None:
    """A worker the daemon forked before its exec does not hold the start-up pipe
    open: the launcher returns 0 once the exec has happened, not after
    ``ready_timeout`` with an error (the worker's copy of the pipe is closed as it
    is forked)."""
    from daemonctx.pidfile import read_pidfile_status

    pidfile, worker_file = tmp_path / "app.pid", tmp_path / "worker"
    code = FORKED_THEN_EXEC.format(pidfile=str(pidfile), worker_file=str(worker_file))
    try:
        result = run_script(code, check=False, timeout=60)
    finally:
        state = read_pidfile_status(pidfile)
        if state.pid is not None:
            daemons.pids.add(state.pid)
        worker = int(wait_for(lambda: worker_file.exists() and worker_file.read_text(), 10))
        daemons.pids.add(worker)
    assert result.returncode == 0, result.stderr
    assert state.running and state.pid is not None
    assert Path(f"/proc/{state.pid}/comm").read_text().strip() == "sleep"
    assert pid_alive(worker), "the worker keeps running"


def test_a_ready_from_a_sender_reaped_since_is_not_taken_for_the_program_s() -> None:
    """``start --notify``'s listener takes READY=1 from the program only (its
    ``accept``), knowing the sender by its pid. A sender reaped before the message
    is read may have left its pid to the program itself (pid reuse): on Linux 6.5
    and later the kernel's pidfd of the sender tells, and ``accept`` is asked again
    with pid 0: only the sender's uid can tell then. Here ``accept`` takes any pid,
    as if the program had that pid now, and no uid alone."""
    import socket as socket_module

    from daemonctx.systemd import NotifyListener

    listener = NotifyListener()
    try:
        if not listener._pidfds:
            pytest.skip("no SO_PASSPIDFD here (Linux < 6.5)")
        listener.accept = lambda pid, uid: pid > 0
        address = "\0" + listener.address[1:]
        sender = subprocess.run(
            [sys.executable, "-c",
             "import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
             "s.sendto(b'READY=1', '\\0' + sys.argv[1][1:])\n",
             listener.address],
            timeout=30,
        )  # fmt: skip
        assert sender.returncode == 0  # run() reaped it: its pid is free for anyone
        assert not listener._ready_received()
        with socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_DGRAM) as alive:
            alive.sendto(b"READY=1", address)  # this process, unreaped: taken
            assert listener._ready_received()
    finally:
        listener.close()


@pytest.mark.parametrize("started", ["its own", "another"])
def test_a_daemon_pid_read_after_its_reuse_is_not_taken_for_the_daemon(
    processes: ProcessTracker, started: str
) -> None:
    """The launcher may read the first child's PID record only once the daemon has
    died and another process has its pid (the launcher stopped, the system loaded).
    The record carries the daemon's start time: a process that started at another
    time is not the daemon, which "exited before it was ready"; it was taken for a
    daemon that ran /usr/bin/sleep before it was ready. A process that started
    when the record says is the daemon (the record read in time)."""
    from daemonctx.errors import DaemonStartupError
    from daemonctx.handoff import Handoff, _start_ticks

    other = processes.popen([shutil.which("sleep") or "/bin/sleep", "1000"])
    ticks = _start_ticks(other.pid)
    assert ticks is not None
    handoff = Handoff()
    try:
        # as the first child writes it: the pid, and the start time it read
        if started == "its own":
            handoff._send("PID", str(ticks).encode(), pid=other.pid)
        else:
            handoff._send("PID", str(ticks - 1).encode(), pid=other.pid)
        handoff.in_launcher()  # the write end closed: the end of file after the record
        with pytest.raises(DaemonStartupError) as raised:
            handoff.wait(10)
    finally:
        handoff.close_pidfd()
    if started == "its own":
        assert f"(pid {other.pid}) ran another program" in str(raised.value)
    else:
        assert f"the daemon exited before it was ready (pid {other.pid})" in str(raised.value)
    assert other.poll() is None
