"""Every failure is one true line, and a start's result matches reality.

Each test plays a case that used to give a traceback, a false "failed to start"
while the daemon ran, or a launcher that waited past its timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    NOBODY,
    ROOT,
    STARTED,
    ProcessTracker,
    Tracker,
    fill_up,
    mounted_tmpfs,
    needs_root,
    pid_alive,
    run_in_child,
    run_script,
    wait_for,
    wait_gone,
)

from daemonctx import DaemonContext, Service
from daemonctx.errors import DaemonOptionError


def started_pid(result: subprocess.CompletedProcess[str]) -> int:
    match = STARTED.fullmatch(result.stdout)
    assert match, (result.stdout, result.stderr)
    return int(match.group(2))


# -- NOTIFY_SOCKET that nobody listens on ------------------------------------------------


@pytest.mark.parametrize("address", ["garbage", "/nonexistent/notify.sock", "@unbound-abstract"])
def test_a_bad_notify_socket_is_a_warning_not_a_failed_start(
    tracker: Tracker, address: str
) -> None:
    env = {**tracker.env, "NOTIFY_SOCKET": address}
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--", "sleep", "1000", env=env
    )
    assert result.returncode == 0
    pid = started_pid(result)
    assert result.stderr.startswith("daemonctx: warning: cannot notify the service manager at ")
    assert result.stderr.count("\n") == 1
    assert tracker.processes() == [pid]
    stopped = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, env=env)
    assert stopped.returncode == 0 and tracker.processes() == []


@pytest.mark.parametrize(
    "address", ["@" + "x" * 200, "/tmp/" + "x" * 200], ids=["abstract", "path"]
)
def test_a_notify_socket_too_long_is_a_warning_saying_so(tracker: Tracker, address: str) -> None:
    """Longer than an AF_UNIX address can be (sun_path: 108 bytes). Python's error
    for it has no errno, and the warning ended in ": None"."""
    env = {**tracker.env, "NOTIFY_SOCKET": address}
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--", "sleep", "1000", env=env
    )
    assert result.returncode == 0, result
    pid = started_pid(result)
    assert result.stderr == (
        f"daemonctx: warning: cannot notify the service manager at {address!r}:"
        f" the address is too long ({len(address)} bytes, at most 108)\n"
    ), result.stderr
    assert tracker.processes() == [pid]
    stopped = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, env=env)
    assert stopped.returncode == 0 and tracker.processes() == []


def test_a_bad_notify_socket_does_not_fail_a_detaching_context(processes: ProcessTracker) -> None:
    code = """
import signal
from daemonctx import DaemonContext
with DaemonContext(detach_process=True):
    signal.pause()
"""
    marker = "daemonctx-test-notify-context"
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}", marker],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NOTIFY_SOCKET": "@unbound-abstract"},
    )
    processes.watch(lambda: holders_of(marker))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("daemonctx: warning: cannot notify")
    assert holders_of(marker), "the daemon runs"


def holders_of(marker: str) -> list[int]:
    """Live processes whose command line ends with ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                words = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in words and pid_alive(int(name)):
                found.append(int(name))
    return found


# -- huge and infinite timeouts ----------------------------------------------------------


@pytest.mark.parametrize("timeout", ["1e10", "inf"])
def test_huge_timeouts_mean_wait_forever(tracker: Tracker, timeout: str) -> None:
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--timeout", timeout, "--", "sleep", "1000"
    )
    assert (result.returncode, result.stderr) == (0, "")
    first = started_pid(result)
    result = tracker.daemonctx(
        "restart",
        "--pidfile",
        tracker.pidfile,
        "--stop-timeout",
        timeout,
        "--timeout",
        timeout,
        "--",
        "sleep",
        "1000",
    )
    assert result.returncode == 0, result.stderr
    second = int(result.stdout.splitlines()[1].split("pid ")[1].rstrip(")"))
    assert second != first and not pid_alive(first)
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--timeout", timeout)
    assert (result.returncode, result.stderr) == (0, "")
    assert tracker.processes() == []


def test_an_infinite_ready_timeout_waits_forever() -> None:
    assert DaemonContext(ready_timeout=float("inf")).ready_timeout is None
    assert DaemonContext(ready_timeout=1e12).ready_timeout is None
    assert DaemonContext(ready_timeout=5).ready_timeout == 5.0
    with pytest.raises(DaemonOptionError, match="> 0"):
        DaemonContext(ready_timeout=float("nan"))
    result = run_script(
        """
from daemonctx import DaemonContext
with DaemonContext(ready_timeout=float("inf"), ready_on_open=False) as context:
    context.notify_ready()
"""
    )
    assert (result.returncode, result.stderr) == (0, "")


# -- a ready_timeout bounds the whole start ----------------------------------------------

STALL = """
import os, sys, time
from daemonctx import DaemonContext, handoff, process
stall_at = sys.argv[1]
real_setsid, real_send_pid = process.start_new_session, handoff.Handoff.send_pid

def stall():
    open(sys.argv[3], "w").write(str(os.getpid()))  # the first child, stalled
    time.sleep(30)

def slow_setsid():
    if stall_at == "before-setsid":
        stall()
    real_setsid()

def slow_send_pid(self, pid):
    if stall_at == "before-pid-record":
        stall()
    real_send_pid(self, pid)

process.start_new_session = slow_setsid
handoff.Handoff.send_pid = slow_send_pid
with DaemonContext(ready_timeout=0.5, ready_on_open=False):  # never ready
    open(sys.argv[2], "w").write(str(os.getpid()))
    time.sleep(1000)
"""


@pytest.mark.parametrize("stall_at", ["before-setsid", "before-pid-record"])
def test_a_timed_out_start_returns_in_time_and_leaves_nothing(
    tmp_path: Path, processes: ProcessTracker, stall_at: str
) -> None:
    """The first child stalls (before it forks the daemon, or after, before telling
    the launcher the daemon's pid): the launcher still gives up at ready_timeout, and
    no daemon comes up after DaemonReadyTimeout was raised."""
    up, first = tmp_path / "daemon-up", tmp_path / "first-child"
    processes.watch(lambda: [int(f.read_text()) for f in (up, first) if f.exists()])
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{STALL}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, stall_at, str(up), str(first)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - started
    assert result.returncode == 1
    assert "DaemonReadyTimeout: the daemon did not report ready within 0.5 s" in result.stderr
    assert took < 3, f"the launcher waited {took:.1f} s for a 0.5 s ready_timeout"
    # The stalled first child is gone, so no daemon can come up after this; and none
    # that it forked is left in its session.
    stalled = int(first.read_text())
    wait_gone(stalled)
    from daemonctx.procfs import session_members

    assert session_members(stalled) == []
    assert not up.exists() or not pid_alive(int(up.read_text()))
    assert (stall_at == "before-setsid") == (not up.exists())


# -- Service options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stop_signal": 999}, "stop_signal=999: unknown signal number 999"),
        ({"stop_signal": "NOPE"}, "stop_signal='NOPE': unknown signal 'NOPE'"),
        ({"stop_timeout": "5"}, "stop_timeout='5': must be a number of seconds > 0"),
        ({"stop_timeout": 0}, "stop_timeout=0: must be a number of seconds > 0"),
        ({"umask": 0o1777}, "umask=0o1777: must be from 0 to 0o777"),
    ],
)
def test_a_service_refuses_bad_options_when_made(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(DaemonOptionError) as info:
        Service(tmp_path / "svc.pid", **options)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_a_service_takes_a_signal_by_name(tmp_path: Path) -> None:
    import signal

    assert Service(tmp_path / "svc.pid", stop_signal="TERM").stop_signal == signal.SIGTERM
    assert Service(tmp_path / "svc.pid", stop_signal="SIGHUP").stop_signal == signal.SIGHUP

    class Bad(Service):
        umask = 0o1777

    with pytest.raises(DaemonOptionError, match="umask=0o1777"):
        Bad(tmp_path / "svc.pid")


# -- the command's own words ---------------------------------------------------------


@needs_root
def test_the_command_names_the_flag_the_user_typed(open_tracker: Tracker) -> None:
    """Not root: --user fails in the foreground, told as --user, with LSB code 4."""
    tracker = open_tracker
    tracker.tmp_path.chmod(0o1777)  # nobody may create its pidfile there, like /tmp

    def as_nobody() -> None:
        import io
        from contextlib import redirect_stderr

        from daemonctx.cli import main

        # Loaded while root: nobody may not read this interpreter's lib directory, nor
        # (a checkout in a 0700 directory) daemonctx's: the command loads its
        # subcommands' modules when it builds its parser.
        for module in ("grp", "json", "pwd", "resource", "shutil", "traceback", "argparse"):
            __import__(module)
        for module in ("daemon", "supervise", "ctl"):
            __import__(f"daemonctx.cli.{module}")

        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        err = io.StringIO()
        with redirect_stderr(err):
            code = main(["start", "--pidfile", tracker.pidfile, "--user", "root", "--", "true"])
        assert (code, err.getvalue()) == (
            4,
            f"daemonctx: error: --user root: cannot switch to it as uid {NOBODY} (not root)\n",
        )

    run_in_child(as_nobody)
    assert tracker.processes() == []


def test_a_huge_pid_in_a_pidfile_is_not_a_pid(tracker: Tracker) -> None:
    Path(tracker.pidfile).write_text("9" * 64 + "\n")
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stdout) == (
        1,
        f"app is not running, but its pidfile {tracker.pidfile} remains\n",
    )


def test_stop_with_sigkill_does_not_claim_a_second_sigkill(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--signal", "KILL")
    assert result.returncode == 0
    assert result.stdout.startswith(f"stopped app (pid {pid}) in ")
    assert "SIGKILL" not in result.stdout


SLOW_WRITER = """
import fcntl, os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)  # still holding the last run's pid
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.utime(path, (0, time.time()))  # relatime: the next read of the file sets its atime
print("locked", flush=True)
# A starting daemon descheduled between its lock and its write: the pid comes once
# the other start has read the file (2 s at most, where reads leave atime alone).
deadline = time.monotonic() + 2
while os.stat(path).st_atime == 0 and time.monotonic() < deadline:
    time.sleep(0.001)
time.sleep(0.05)
os.ftruncate(fd, 0)
os.pwrite(fd, b"%d\\n" % os.getpid(), 0)
sys.stdin.read()
"""


def test_a_start_racing_a_start_that_has_not_written_its_pid_says_already_running(
    tracker: Tracker,
) -> None:
    """Another start holds the pidfile's lock but has not written its pid yet (the
    file still shows the last run's, a dead pid): `start` says "already running"
    (pid of that start), not "app exited; pid N still holds its lock; stop it
    first". Seen under load as test_concurrent_starts_fail_in_one_line failing."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    Path(tracker.pidfile).write_text(f"{dead.pid}\n")
    os.chmod(tracker.pidfile, 0o644)
    holder = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, tracker.pidfile],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    start: subprocess.Popen[str] | None = None
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        start = subprocess.Popen(
            [*tracker.command(), "start", "--pidfile", tracker.pidfile, "--", "sleep", "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=tracker.env,
        )
        out, err = start.communicate(timeout=30)
        assert start.returncode != 0 and out == "", (out, err)
        assert err == f"daemonctx: error: app is already running (pid {holder.pid})\n", err
    finally:
        for proc in (holder, start):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert tracker.processes() == []


def test_concurrent_starts_fail_in_one_line(tracker: Tracker) -> None:
    """Losing the race between start's two looks at the pidfile was a traceback."""
    for _ in range(2):
        launchers = [
            subprocess.Popen(
                [*tracker.command(), "start", "--pidfile", tracker.pidfile, "--", "sleep", "1000"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=tracker.env,
            )
            for _ in range(12)
        ]
        results = [(p.wait(60), *p.communicate()) for p in launchers]
        winners = [r for r in results if r[0] == 0]
        assert len(winners) == 1, results
        for code, out, err in results:
            if code:
                assert out == "" and err.count("\n") == 1, err
                assert err.startswith("daemonctx: error: app is already running"), err
        assert len(tracker.processes()) == 1
        assert tracker.daemonctx("stop", "--pidfile", tracker.pidfile).returncode == 0
        wait_for(lambda: not tracker.processes(), what="stopped")


# -- what "started" means --------------------------------------------------------------


def test_ready_after_fails_a_program_that_does_not_stay(tracker: Tracker) -> None:
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--ready-after", "0.5", "--", "sh", "-c", "exit 0"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("daemonctx: error: app (pid ")
    assert result.stderr.endswith(" exited within 0.5 s of its start (--ready-after 0.5)\n")
    assert not os.path.exists(tracker.pidfile) and tracker.processes() == []
    started = time.monotonic()
    pid = started_pid(
        tracker.daemonctx(
            "start", "--pidfile", tracker.pidfile, "--ready-after", "0.5", "--", "sleep", "1000"
        )
    )
    assert time.monotonic() - started >= 0.5
    assert tracker.processes() == [pid]
    help_text = tracker.daemonctx("start", "--help").stdout
    assert "'started NAME (pid N)' means" in " ".join(help_text.split())


def test_the_launcher_says_what_a_silent_daemon_waits_for(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """A third-party pidfile (lockfile's, as in PEP 3143's example) on a stale .lock
    blocks forever in the daemon: the launcher says so, and Ctrl-C stops both."""
    import select
    import signal

    pidfile = tmp_path / "app.pid"
    (tmp_path / "app.pid.lock").write_text("")  # a lock left by a process long gone
    # Ctrl-C as in a terminal's foreground job: a background job of a shell without
    # job control (CI may run the suite so) starts with SIGINT ignored, and Python
    # then leaves it ignored.
    code = f"""
import signal, sys; sys.path.insert(0, {str(ROOT)!r})
signal.signal(signal.SIGINT, signal.default_int_handler)
import lockfile
from daemonctx import DaemonContext
with DaemonContext(pidfile=lockfile.FileLock({str(pidfile)!r})):
    pass
"""
    launcher = processes.popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert launcher.stderr is not None
    ready, _, _ = select.select([launcher.stderr], [], [], 15)
    assert ready, "the launcher said nothing"
    line = launcher.stderr.readline()
    assert line.startswith("daemonctx: still waiting for the daemon (pid ")
    assert line.endswith(
        f" to take its pidfile {pidfile} (LinkLockFile) (3 s so far; Ctrl-C stops it)\n"
    )
    daemon = int(line.split("(pid ")[1].split(")")[0])
    processes.add(daemon)
    os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C in the terminal
    # the launcher stops the daemon (SIGTERM, up to GRACE, then SIGKILL): room for a loaded machine
    assert launcher.wait(30) != 0
    wait_gone(daemon)


@needs_root
def test_an_error_after_the_privilege_drop_still_reaches_the_launcher(tmp_path: Path) -> None:
    """The new user may not read the interpreter's library (a Python under /root, as
    here): what the error report needs is imported before the drop."""
    result = run_script(
        f"""
from daemonctx import DaemonContext, DaemonStartupError
try:
    with DaemonContext(uid={NOBODY}, gid={NOBODY}, ready_on_open=False):
        raise RuntimeError("after the drop")
except DaemonStartupError as exc:
    print(exc.remote_type, exc.remote_message, flush=True)
"""
    )
    assert result.stdout == "RuntimeError after the drop\n", result.stderr


def test_a_tiny_fd_limit_is_one_line(tracker: Tracker) -> None:
    out, err = tracker.tmp_path / "out.log", tracker.tmp_path / "err.log"
    result = tracker.daemonctx(
        "start",
        "--pidfile",
        tracker.pidfile,
        "--stdout",
        str(out),
        "--stderr",
        str(err),
        "--",
        "sleep",
        "1000",
        prefix=["prlimit", "--nofile=6"],
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Too many open files" in result.stderr
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize("limit", ["5", "6"])
def test_stop_with_a_descriptor_or_two_left_is_one_line_or_stops(
    tracker: Tracker, limit: str
) -> None:
    """With one fd left, stop cannot look at /proc: one line, at once (it spun at
    100 % CPU, looking again and again); with two, it stops the daemon."""
    pid = tracker.start("sleep", "1000")
    result = tracker.daemonctx(
        "stop", "--pidfile", tracker.pidfile, prefix=["prlimit", f"--nofile={limit}"], timeout=10
    )
    if limit == "5":
        assert (result.returncode, result.stderr) == (
            1,
            f"daemonctx: error: cannot stop {tracker.pidfile}'s daemon: cannot look at /proc:"
            " Too many open files\n",
        )
        assert pid_alive(pid)
    else:
        assert result.returncode == 0, result.stderr
        wait_gone(pid, 5)


def test_a_failed_start_says_what_failed_without_errno_or_class(tracker: Tracker) -> None:
    """Not "[Errno 24] cannot create the start-up pipe", not "lockfile.LockFailed:
    cannot write pid": what failed, and why."""
    start = ["start", "--pidfile", tracker.pidfile, "--notify", "--", "sleep", "1"]
    result = tracker.daemonctx(*start, prefix=["prlimit", "--nofile=5"])
    assert (result.returncode, result.stderr) == (
        1,
        "daemonctx: error: app failed to start: cannot create the start-up pipe:"
        " Too many open files\n",
    )
    with mounted_tmpfs(tracker.tmp_path / "full", "64k") as full:
        fill_up(full)
        result = tracker.daemonctx("start", "--pidfile", str(full / "f.pid"), "--", "sleep", "1")
        assert (result.returncode, result.stderr) == (
            1,
            f"daemonctx: error: f failed to start: cannot write pid to {full}/f.pid:"
            " No space left on device\n",
        )
    assert tracker.processes() == []


def test_check_finds_what_would_fail_in_the_daemon_without_forking(tmp_path: Path) -> None:
    """Service.restart and the command's restart run these checks before they stop
    the running daemon (DaemonContext.check)."""
    missing = Service(tmp_path / "svc.pid", working_directory="/nonexistent")
    with pytest.raises(DaemonOptionError, match="working_directory='/nonexistent'"):
        missing.make_context(detach=True).check(pidfile_held_ok=True)
    if os.geteuid() == 0:
        nameless = Service(tmp_path / "svc.pid", uid=54321, gid=54321, initgroups=True)
        with pytest.raises(DaemonOptionError, match="no passwd entry"):
            nameless.make_context(detach=True).check(pidfile_held_ok=True)


# -- paths that cannot be looked at ---------------------------------------------------------


def test_a_missing_directory_and_an_unreadable_link_are_named_without_errno(
    tracker: Tracker,
) -> None:
    missing = tracker.tmp_path / "nonexistent" / "dir" / "a.pid"
    reason = f"pidfile {missing.parent}: no such directory {missing.parent.parent}"
    status = tracker.daemonctx("status", "--pidfile", str(missing))
    assert (status.returncode, status.stdout) == (4, f"a status is unknown: {reason}\n")
    stop = tracker.daemonctx("stop", "--pidfile", str(missing))
    assert (stop.returncode, stop.stderr) == (1, f"daemonctx: error: {reason}\n")


@needs_root
def test_an_output_path_through_a_link_even_root_may_not_read_is_one_line(
    tracker: Tracker,
) -> None:
    """/proc/PID/fd/N of another process (one that ptrace rules may keep from us):
    refused before its link is read, another process's view; the refusal names
    the flag and the path, on one line."""
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--stdout", "/proc/1/fd/1", "--", "sleep", "1"
    )
    assert result.returncode == 4
    assert result.stderr == (
        "daemonctx: error: refusing --stdout /proc/1/fd/1: /proc/1/fd/1 is another process's"
        " link (its root, cwd or files may be another mount namespace's): give the path itself\n"
    )
    assert tracker.processes() == []


def test_a_newline_or_escape_in_what_the_user_typed_stays_on_one_line(
    tracker: Tracker,
) -> None:
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", "/bin/no\nsuch\x1b[2J")
    assert (result.returncode, result.stderr) == (
        1,
        "daemonctx: error: command not found: /bin/no\\nsuch\\x1b[2J\n",
    )
    config = tracker.tmp_path / "nl.toml"
    config.write_text(
        f'[supervisor]\ncontrol = "{tracker.tmp_path}/c.sock"\n'
        '[program.a]\ncommand = ["/bin/no\\nsuch"]\n'
    )
    result = tracker.daemonctx("supervise", "--config", str(config))
    assert (result.returncode, result.stderr) == (
        1,
        f"daemonctx: error: {config}: [program.a] command: /bin/no\\nsuch: no such file\n",
    )
    assert tracker.processes() == []


def test_a_supervisor_log_that_is_a_directory_is_one_line(tracker: Tracker) -> None:
    config = tracker.tmp_path / "s.toml"
    (tracker.tmp_path / "logdir").mkdir()
    config.write_text(
        f'[supervisor]\ncontrol = "{tracker.tmp_path}/c.sock"\nlog = "{tracker.tmp_path}/logdir"\n'
        '[program.a]\ncommand = ["/bin/sleep", "1000"]\n'
    )
    for foreground in ((), ("--foreground",)):
        result = tracker.daemonctx("supervise", "--config", str(config), *foreground)
        reason = f"cannot open supervisor log {tracker.tmp_path}/logdir: Is a directory"
        assert (result.returncode, result.stderr) == (1, f"daemonctx: error: {reason}\n")
    assert tracker.processes() == []
