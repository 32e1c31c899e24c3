"""The ``daemonctx`` command on real processes: start, stop, restart, status, run,
and how its answers compare with Debian's ``start-stop-daemon``.

Every process a test starts carries a unique token in its environment (the
launcher passes its environment on to the program), so the ``tracker`` fixture
can list them, assert that a failed start left none behind, and kill every
survivor when the test ends (by pidfd, after checking the token again).
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    NOBODY,
    ROOT,
    SSD,
    STARTED,
    Terminal,
    Tracker,
    cmdline_of,
    kill,
    mounted_tmpfs,
    needs_root,
    needs_ssd,
    needs_tools,
    pid_alive,
    proc_environ,
    proc_fds,
    proc_stat,
    proc_status,
    python_for_nobody,
    python_program,
    spawn_as_pid,
    wait_for,
    wait_reaped,
)

from daemonctx import control
from daemonctx.pidfile import read_pidfile_status

# -- the command ----------------------------------------------------------------


def test_help_for_the_command_and_each_subcommand(tracker: Tracker) -> None:
    result = tracker.daemonctx("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: daemonctx ")
    for command in ("start", "stop", "restart", "status", "run"):
        assert f"    {command} " in result.stdout
        sub = tracker.daemonctx(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "--pidfile PATH" in sub.stdout
        assert ("-- COMMAND [ARG...]" in sub.stdout) == (command in ("start", "restart", "run"))


def test_console_script_is_declared_and_runs(tracker: Tracker) -> None:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["daemonctx"] == "daemonctx.cli:main"
    script = Path(sys.executable).parent / "daemonctx"
    if not script.exists():
        pytest.skip("the console script is not installed in this environment (reinstall)")
    result = subprocess.run(
        [str(script), "status", "--pidfile", tracker.pidfile],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout) == (3, "app is not running\n")


def test_usage_errors_exit_2(tracker: Tracker) -> None:
    for args in (
        ("start", "--pidfile", tracker.pidfile),  # no COMMAND
        ("stop", "--pidfile", tracker.pidfile, "--signal", "NOPE"),
        ("stop", "--pidfile", tracker.pidfile, "--", "sleep"),
        ("start", "--pidfile", tracker.pidfile, "--umask", "999", "--", "sleep", "1"),
        ("status",),  # no --pidfile
        ("status", "--pidfile", ""),  # "" is the current directory: no file
        ("stop", "--pidfile", str(tracker.tmp_path) + "/"),
    ):
        result = tracker.daemonctx(*args)
        assert result.returncode == 2, args
        assert "daemonctx" in result.stderr and "error" in result.stderr
    assert (
        "unknown signal 'NOPE'"
        in tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--signal", "NOPE").stderr
    )


@pytest.mark.parametrize(
    "args",
    [
        ("start", "--chdir", ""),
        ("start", "--chroot", ""),
        ("run", "--chroot", ""),
        ("start", "--stdout", ""),
        ("start", "--user", ""),
        ("run", "--name", ""),
        ("supervise", "--log", ""),
        ("supervise", "--chdir", ""),
        ("supervise", "--pidfile", ""),
        ("supervise", "--stderr", ""),
        ("ctl", "--config", ""),
    ],
    ids=" ".join,
)
def test_an_empty_path_or_name_is_refused_not_read_as_a_default(
    tracker: Tracker, args: tuple[str, ...]
) -> None:
    """ "" is refused as --pidfile "" is (exit 2, one line naming the option), before
    anything starts: --chdir "" ran the daemon in the current directory, and
    supervise --log "" had it log nowhere (stderr, /dev/null once detached)."""
    command, option, value = args
    if command == "ctl":
        argv: tuple[str, ...] = ("ctl", option, value, "status")
    elif command == "supervise":
        control = str(tracker.tmp_path / "c.sock")
        argv = ("supervise", "--control", control, option, value, "--", "sleep", "100")
    else:
        argv = (command, "--pidfile", tracker.pidfile, option, value, "--", "sleep", "100")
    result = tracker.daemonctx(*argv)
    assert result.returncode == 2, result
    *_usage, line = result.stderr.splitlines()
    assert re.fullmatch(
        rf"daemonctx \w+: error: argument {option}(/-\w)?: must not be empty: ''", line
    )
    assert tracker.processes() == []
    assert not os.path.exists(tracker.pidfile)


# -- start, status, stop -----------------------------------------------------------


def test_start_status_stop(tracker: Tracker) -> None:
    launcher = tracker.popen(
        [*tracker.command(), "start", "--pidfile", "app.pid", "--", "sleep", "1000"],
        cwd=tracker.tmp_path,
        env=tracker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = launcher.communicate(timeout=30)
    assert (launcher.returncode, err) == (0, "")
    match = STARTED.fullmatch(out)
    assert match and match.group(1) == "app", "one default name: the pidfile's"
    pid = int(match.group(2))

    # By the time start returns, the pidfile (relative to our cwd) names the daemon,
    # which holds its lock, and the daemon is the program itself.
    assert Path(tracker.pidfile).read_text() == f"{pid}\n"
    found = read_pidfile_status(tracker.pidfile)
    assert found.running and found.pid == pid
    assert os.readlink(f"/proc/{pid}/exe") == os.path.realpath(shutil.which("sleep") or "")
    assert cmdline_of(pid) == b"sleep\x001000\x00"
    _state, ppid, _pgrp, session, tty = proc_stat(pid)[:5]
    assert int(ppid) != launcher.pid and int(session) != pid and tty == "0"
    assert os.readlink(f"/proc/{pid}/cwd") == "/"

    # start returns once the exec happened: sleep may still hold what it opens as
    # it starts for an instant (its loader's libc.so.6, setlocale's LC_* files)
    def settled() -> dict[int, str] | None:
        found = proc_fds(pid)
        own = ("/usr/", "/lib", "/etc/")  # the system's files: never a launcher's fd
        return None if any(target.startswith(own) for target in found.values()) else found

    fds = wait_for(settled, what="the program to close the files it opens as it starts")
    assert [fds.pop(fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3
    assert list(fds.values()) == [tracker.pidfile], "only the lock is inherited"
    status = proc_status(pid)
    assert status["Umask"] == "0022"
    assert int(status["SigIgn"], 16) == 0, "Python's ignored SIGPIPE must not reach the program"
    assert int(status["SigBlk"], 16) == 0

    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0
    assert re.fullmatch(rf"app is running \(pid {pid}, up \d+\.\d s\): sleep 1000\n", result.stdout)

    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"stopped app \(pid {pid}\) in \d+\.\d\d s\n", result.stdout)
    assert not pid_alive(pid)
    assert not os.path.exists(tracker.pidfile), "stop removes the program's pidfile"

    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stdout) == (3, "app is not running\n")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--name", "web")
    assert (result.returncode, result.stdout) == (0, "web is not running\n"), "LSB: stop succeeds"


@pytest.mark.parametrize(
    ("options", "command", "message"),
    [
        (
            (),
            ("no-such-program-xyz",),
            "command not found: no-such-program-xyz",
        ),
        (
            ("--pidfile", "/nonexistent/dir/app.pid"),
            ("sleep", "1000"),
            "pidfile directory /nonexistent/dir does not exist",
        ),
        (
            ("--user", "no-such-user-xyz"),
            ("sleep", "1000"),
            "--user no-such-user-xyz: no such user",
        ),
        (
            ("--group", "no-such-group-xyz"),
            ("sleep", "1000"),
            "--group no-such-group-xyz: no such group",
        ),
        (("--group", "4294967296"), ("sleep", "1000"), "--group 4294967296: no such group"),
        (("--user", str(2**64)), ("sleep", "1000"), f"--user {2**64}: no such user"),
        ((), ("/",), "/: is a directory"),
        ((), ("",), "command not found: '' (an empty name)"),
        (
            ("--pidfile", "/etc/passwd/app.pid"),
            ("sleep", "1000"),
            "pidfile directory /etc/passwd is not a directory",
        ),
        ((), ("/etc/passwd",), "/etc/passwd: permission denied (not executable)"),
        (("--chdir", "/nonexistent"), ("sleep", "1000"), "--chdir /nonexistent: no such directory"),
        (
            ("--stdout", "/nonexistent/out"),
            ("sleep", "1000"),
            "--stdout /nonexistent/out: no such directory /nonexistent",
        ),
    ],
    ids=[
        "program",
        "pidfile-directory",
        "user",
        "group",
        "group-past-gid_t",
        "user-past-uid_t",
        "directory",
        "empty-command",
        "pidfile-directory-a-file",
        "not-executable",
        "chdir",
        "stdout",
    ],
)
def test_start_fails_in_the_foreground_and_leaves_nothing(
    tracker: Tracker, options: tuple[str, ...], command: tuple[str, ...], message: str
) -> None:
    if "--pidfile" not in options:
        options = ("--pidfile", tracker.pidfile, *options)
    result = tracker.daemonctx("start", *options, "--", *command)
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == ("", f"daemonctx: error: {message}\n")
    assert not os.path.exists(tracker.pidfile)
    assert tracker.processes() == []


def test_a_pidfile_typo_naming_another_file_loses_nothing(tracker: Tracker) -> None:
    """--pidfile app.conf by mistake: stop and restart leave its text as it is,
    start refuses to overwrite it, in the foreground."""
    conf = tracker.tmp_path / "app.conf"
    conf.write_text("listen = 8080\nsecret = x\n")
    stop = tracker.daemonctx("stop", "--pidfile", str(conf))
    assert (stop.returncode, stop.stdout) == (0, "app is not running\n"), stop
    refusal = f"daemonctx: error: app: refusing to overwrite {conf}: it holds something other"
    refusal += " than a pid\n"
    for command in ("start", "restart"):
        result = tracker.daemonctx(command, "--pidfile", str(conf), "--", "sleep", "1000")
        assert (result.returncode, result.stderr) == (1, refusal), result
    assert conf.read_text() == "listen = 8080\nsecret = x\n"
    assert tracker.processes() == []


def test_start_refuses_a_running_daemon_naming_its_pid(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert result.returncode == 1
    assert result.stderr == f"daemonctx: error: app is already running (pid {pid})\n"
    assert tracker.processes() == [pid]
    assert read_pidfile_status(tracker.pidfile).pid == pid


def test_a_failed_exec_is_reported_and_leaves_nothing(tracker: Tracker) -> None:
    program = tracker.tmp_path / "busy"
    shutil.copy("/bin/true", program)  # a program the foreground finds nothing wrong with,
    with open(program, "ab"):  # but open for writing: execve refuses it (ETXTBSY)
        result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", str(program))
    assert result.returncode == 1
    assert re.fullmatch(
        r"daemonctx: error: app failed to start: OSError: \[Errno 26\] "
        r"Text file busy: '.*busy'\n",
        result.stderr,
    ), result.stderr
    assert not os.path.exists(tracker.pidfile)
    assert tracker.processes() == []


def test_chdir_umask_and_output_files(tracker: Tracker) -> None:
    out, err = tracker.tmp_path / "out.log", tracker.tmp_path / "err.log"
    script = "pwd; umask; echo oops >&2; exec sleep 1000"
    pid = tracker.start(
        "sh",
        "-c",
        script,
        options=(
            "--chdir",
            str(tracker.tmp_path),
            "--umask",
            "027",
            "--stdout",
            str(out),
            "--stderr",
            str(err),
        ),
    )
    wait_for(
        lambda: (
            out.exists()
            and out.read_text().count("\n") == 2
            and err.exists()
            and err.read_text() == "oops\n"
        ),
        what="the program's output",
    )
    assert out.read_text() == f"{tracker.tmp_path}\n0027\n"
    assert os.readlink(f"/proc/{pid}/fd/1") == str(out)
    assert os.readlink(f"/proc/{pid}/fd/2") == str(err)


def _received(sock: socket.socket, wanted: int, timeout: float = 10.0) -> bytes:
    """What arrives on ``sock`` until ``wanted`` lines have, or ``timeout`` passes."""
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < wanted and time.monotonic() < deadline:
        if select.select([sock], [], [], deadline - time.monotonic())[0]:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def test_stdout_and_stderr_to_the_launchers_socket_as_under_systemd(tracker: Tracker) -> None:
    """Under systemd a service's stdout and stderr are a socket to the journal, which
    Linux will not open() again through /dev/stdout (/proc/self/fd/1): the daemon
    gets a copy of the launcher's socket, and its lines arrive at the other end."""
    journal, ours = socket.socketpair()
    with journal, ours:
        script = "echo to stdout; echo to stderr >&2; exec sleep 1000"
        argv = ["start", "--pidfile", tracker.pidfile, "--stdout", "/dev/stdout"]
        argv += ["--stderr", "/dev/stderr", "--", "sh", "-c", script]
        result = subprocess.run(
            [*tracker.command(), *argv], stdout=ours, stderr=ours, env=tracker.env, timeout=30
        )
        lines = _received(journal, 3 if result.returncode == 0 else 1).decode()
        match = STARTED.search(lines)
        assert result.returncode == 0 and match, lines
        pid = tracker.add(int(match.group(2)))
        assert sorted(lines.splitlines()) == [f"started app (pid {pid})", "to stderr", "to stdout"]
        socket_name = f"socket:[{os.fstat(ours.fileno()).st_ino}]"
        assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2") == socket_name


def test_stdout_to_the_launchers_file_keeps_the_launchers_lines(tracker: Tracker) -> None:
    """``daemonctx start --stdout /dev/stdout ... > out.log``: the daemon writes the
    launcher's own open file, at its offset; "started" does not overwrite what the
    program wrote before it was ready."""
    out = tracker.tmp_path / "out.log"
    code = "print('serving', flush=True); from daemonctx import notify; notify('READY=1')"
    code += "; import time; time.sleep(1000)"
    argv = ["start", "--notify", "--pidfile", tracker.pidfile, "--stdout", "/dev/stdout"]
    with out.open("w") as launcher_stdout:  # a shell's "> out.log": O_TRUNC, no O_APPEND
        result = subprocess.run(
            [*tracker.command(), *argv, "--", sys.executable, "-c", code],
            stdout=launcher_stdout,
            stderr=subprocess.PIPE,
            env=tracker.env,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    match = STARTED.search(out.read_text())
    assert match, out.read_text()
    pid = tracker.add(int(match.group(2)))
    assert out.read_text() == f"serving\nstarted app (pid {pid})\n"


@needs_root
def test_user_drops_privileges_for_real(tracker: Tracker) -> None:
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    pid = tracker.start("sleep", "1000", options=("--user", "nobody"))
    status = proc_status(pid)
    assert status["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
    members = {g.gr_gid for g in grp.getgrall() if "nobody" in g.gr_mem} | {nobody.pw_gid}
    assert {int(g) for g in status["Groups"].split()} == members
    assert int(status["CapEff"], 16) == 0
    environ = dict(item.split("=", 1) for item in proc_environ(pid).decode().split("\0") if item)
    assert (environ["HOME"], environ["USER"], environ["LOGNAME"]) == (
        nobody.pw_dir,
        "nobody",
        "nobody",
    )
    assert os.stat(tracker.pidfile).st_uid == 0, "written as root, before the drop"
    assert read_pidfile_status(tracker.pidfile).pid == pid
    assert tracker.daemonctx("stop", "--pidfile", tracker.pidfile).returncode == 0
    assert not os.path.exists(tracker.pidfile)


@needs_root
def test_group_overrides_the_users_primary_group(tracker: Tracker) -> None:
    import grp

    daemon_gid = grp.getgrnam("daemon").gr_gid
    pid = tracker.start("sleep", "1000", options=("--user", "nobody", "--group", "daemon"))
    assert proc_status(pid)["Gid"].split() == [str(daemon_gid)] * 4


# -- --notify ---------------------------------------------------------------------


#: start --notify's socket: a path in a directory of its own (/run's as root)
_OUR_SOCKET = re.compile(r"/\S*/daemonctx-notify\.[0-9a-f]{16}/notify")


def test_notify_waits_for_ready(tracker: Tracker) -> None:
    marker = tracker.tmp_path / "ready.jsonl"
    before = time.monotonic()
    pid = tracker.start(
        *python_program("--ready-after", "0.3", "--marker", str(marker)),
        options=("--notify", "--name", "app"),
    )
    returned = time.monotonic()
    record = json.loads(marker.read_text())  # written just before READY=1: already there
    assert record["pid"] == pid == read_pidfile_status(tracker.pidfile).pid
    assert before + 0.3 <= record["time"] <= returned
    assert _OUR_SOCKET.fullmatch(record["notify_socket"]), record


def test_notify_program_that_exits_first_fails_the_start(tracker: Tracker) -> None:
    before = time.monotonic()
    result = tracker.daemonctx(
        "start",
        "--pidfile",
        tracker.pidfile,
        "--notify",
        "--name",
        "app",
        "--",
        *python_program("--ready-after", "0.1", "--exit-before-ready", "3"),
    )
    assert time.monotonic() - before < 10, "seen at once through the pidfd, not at --timeout"
    assert result.returncode == 1
    assert re.fullmatch(
        r"daemonctx: error: app \(pid \d+\) exited before it sent READY=1\n", result.stderr
    ), result.stderr
    assert not os.path.exists(tracker.pidfile)
    assert tracker.processes() == []


def test_notify_timeout_stops_the_program(tracker: Tracker) -> None:
    before = time.monotonic()
    result = tracker.daemonctx(
        "start",
        "--pidfile",
        tracker.pidfile,
        "--notify",
        "--timeout",
        "0.5",
        "--name",
        "app",
        "--",
        *python_program("--never-ready"),
    )
    elapsed = time.monotonic() - before
    assert result.returncode == 1
    assert re.fullmatch(
        r"daemonctx: error: app \(pid \d+\) did not send READY=1 within 0\.5 s; stopped it\n",
        result.stderr,
    ), result.stderr
    assert 0.5 <= elapsed < 5
    assert not os.path.exists(tracker.pidfile)
    assert tracker.processes() == []


def _manager_socket(tracker: Tracker) -> socket.socket:
    """A stand-in for systemd's notification socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tracker.tmp_path / "notify.sock"))
    tracker.env["NOTIFY_SOCKET"] = str(tracker.tmp_path / "notify.sock")
    return sock


def _datagrams(sock: socket.socket) -> list[bytes]:
    found = []
    while select.select([sock], [], [], 0)[0]:
        found.append(sock.recv(4096))
    return found


def test_start_notify_under_a_service_manager(tracker: Tracker) -> None:
    """Type=forking/notify units: the program gets our socket; the manager hears
    MAINPID and READY=1 from the launcher, once, after the program was ready."""
    marker = tracker.tmp_path / "ready.jsonl"
    with _manager_socket(tracker) as manager:
        pid = tracker.start(*python_program("--marker", str(marker)), options=("--notify",))
        assert _datagrams(manager) == [f"MAINPID={pid}\nREADY=1".encode()]
    assert _OUR_SOCKET.fullmatch(json.loads(marker.read_text())["notify_socket"])


def test_start_notify_keeps_the_managers_watchdog_from_the_program(tracker: Tracker) -> None:
    """``WatchdogSec=`` on a Type=forking unit with ``start --notify``: WATCHDOG_USEC
    is for the manager's NOTIFY_SOCKET, which the program does not get. Passed on,
    the program believed its watchdog on and pinged start's socket, gone by then;
    now it has none, and one line says why the manager's will not be fed."""
    marker = tracker.tmp_path / "ready.jsonl"
    tracker.env["WATCHDOG_USEC"] = "2000000"  # no WATCHDOG_PID: the watchdog is start's
    with _manager_socket(tracker):
        result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--notify",
                                   "--", *python_program("--marker", str(marker)))  # fmt: skip
    started = STARTED.fullmatch(result.stdout)
    assert result.returncode == 0 and started, result.stderr
    tracker.add(int(started.group(2)))
    assert result.stderr == (
        "daemonctx: warning: --notify gives the program start's own NOTIFY_SOCKET, so not"
        " the service manager's watchdog (WATCHDOG_USEC=2000000); for WatchdogSec=, use"
        " daemonctx run with Type=notify\n"
    )
    assert json.loads(marker.read_text())["watchdog"] == [None, None]


# Ready, then, once start has exited (the test says so with a file), what a
# Type=notify-style program says next: a STATUS= and a watchdog ping.
_NOTIFIES_AFTER_START = """
import os, signal, sys, time
from daemonctx import notify
go, result = sys.argv[1:]
notify("READY=1")
while not os.path.exists(go):
    time.sleep(0.01)
sent = notify(STATUS="serving"), notify(WATCHDOG=1)
with open(result, "w") as file:
    file.write(repr(sent))
signal.pause()
"""


def test_a_program_that_notifies_once_start_has_exited_runs_on(tracker: Tracker) -> None:
    """Its socket is gone with start: ``daemonctx.notify()`` returns False, said once
    on its stderr. It raised (ENOENT, ECONNREFUSED before) and the program died, and
    under systemd the unit failed right after it had started."""
    go, result, log = (tracker.tmp_path / name for name in ("go", "result", "err.log"))
    program = (sys.executable, "-c", _NOTIFIES_AFTER_START, str(go), str(result))
    pid = tracker.start(*program, options=("--notify", "--stderr", str(log)))
    go.touch()
    wait_for(lambda: result.exists() and result.read_text(), what="the program's notify()")
    assert result.read_text() == "(False, False)"
    assert re.fullmatch(
        r"daemonctx: warning: cannot notify the service manager at '/\S+/notify':"
        r" No such file or directory\n",
        log.read_text(),
    ), log.read_text()
    assert tracker.processes() == [pid]


def test_run_passes_the_managers_socket_to_the_program(tracker: Tracker) -> None:
    """Type=notify units with ``daemonctx run``: the program itself says READY=1."""
    marker = tracker.tmp_path / "ready.jsonl"
    with _manager_socket(tracker) as manager:
        proc = tracker.popen(
            tracker.run_argv(*python_program("--marker", str(marker))), env=tracker.env
        )
        assert select.select([manager], [], [], 20)[0], "no READY=1"
        assert _datagrams(manager) == [b"STATUS=up\nREADY=1"]
        record = json.loads(marker.read_text())
        assert record["pid"] == proc.pid
        assert record["notify_socket"] == tracker.env["NOTIFY_SOCKET"]


# -- stop -------------------------------------------------------------------------


def test_stop_escalates_to_sigkill_after_the_timeout(tracker: Tracker) -> None:
    pid = tracker.start(*python_program("--ignore-term"), options=("--notify", "--name", "app"))
    before = time.monotonic()
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--timeout", "0.5")
    elapsed = time.monotonic() - before
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(
        rf"stopped app \(pid {pid}\) in (\d+\.\d\d) s \(sent SIGKILL after 0\.5 s\)\n",
        result.stdout,
    )
    assert match, result.stdout
    assert 0.5 <= float(match.group(1)) < 1.5
    assert 0.5 <= elapsed < 2.5
    assert not pid_alive(pid)
    assert not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize(
    ("given", "name"), [("HUP", "SIGHUP"), ("SIGINT", "SIGINT"), ("10", "SIGUSR1")]
)
def test_stop_sends_the_signal_given(tracker: Tracker, given: str, name: str) -> None:
    record = tracker.tmp_path / "signal"
    pid = tracker.start(*python_program("--signals", str(record)), options=("--notify",))
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--signal", given)
    assert result.returncode == 0, result.stderr
    assert record.read_text() == name
    assert not pid_alive(pid)


def test_stop_continues_a_stopped_daemon_so_that_its_handler_runs(tracker: Tracker) -> None:
    """A daemon stopped by SIGSTOP (``kill -STOP``, a debugger) keeps SIGTERM pending
    until it is continued: ``stop`` sends SIGCONT right after SIGTERM, as systemd
    does, so its handler runs at once, not SIGKILL after the whole ``--timeout``."""
    record = tracker.tmp_path / "signal"
    pid = tracker.start(*python_program("--signals", str(record)), options=("--notify",))
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: proc_stat(pid)[0] == "T", what="the daemon stopped")
    before = time.monotonic()
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--timeout", "10")
    elapsed = time.monotonic() - before
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"stopped app \(pid {pid}\) in \d+\.\d\d s\n", result.stdout)
    assert record.read_text() == "SIGTERM", "its TERM handler ran"
    assert elapsed < 5, elapsed
    assert not pid_alive(pid)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
def test_an_answer_nobody_reads_is_no_error(tracker: Tracker, unbuffered: bool) -> None:
    """``daemonctx status | true``: the reader has gone before the line is written.
    The command exits with its own status, quietly, not 120 and "Exception ignored
    ... BrokenPipeError" from the flush at exit, whatever PYTHONUNBUFFERED says."""
    env = {k: v for k, v in tracker.env.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*tracker.command(), "status", "--pidfile", tracker.pidfile],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (3, "")


def test_an_answer_that_cannot_be_written_is_an_error_but_a_start_stands(
    tracker: Tracker,
) -> None:
    """``daemonctx status > /dev/full`` (a full disk) exited with the daemon's
    status and printed nothing: now one line, as tail(1)'s, and LSB's "status
    unknown", 4. A start whose line cannot be written has started its daemon: a
    warning, exit 0 (exit 1 would be a failed start that left it running)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        with open("/dev/full", "w") as full:
            return subprocess.run(
                [*tracker.command(), *args],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                env=tracker.env,
                timeout=30,
            )

    error = "daemonctx: error: write error: No space left on device\n"
    started = run("start", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    pid = tracker.add(int(Path(tracker.pidfile).read_text()))
    assert (started.returncode, started.stderr) == (
        0,
        f"daemonctx: warning: write error: No space left on device (started app, pid {pid})\n",
    )
    assert pid_alive(pid)
    status = run("status", "--pidfile", tracker.pidfile)
    assert (status.returncode, status.stderr) == (4, error)
    stopped = run("stop", "--pidfile", tracker.pidfile)
    assert (stopped.returncode, stopped.stderr) == (1, error)
    assert not pid_alive(pid)


# -- stale pidfiles, reused pids and start-stop-daemon ----------------------------------


def test_stop_says_why_a_stale_pidfile_on_a_read_only_file_system_stays(
    tracker: Tracker,
) -> None:
    """The daemon was killed, then its file system remounted read-only: ``stop``
    said "app is not running" alone, the pidfile still there. It still exits 0 (LSB:
    stopping what does not run), with a warning naming the pidfile and the reason."""
    directory = tracker.tmp_path / "ro"

    def writable() -> None:
        subprocess.run(["mount", "-o", "remount,rw", str(directory)], check=False)

    with mounted_tmpfs(directory, "64k", before_unmount=writable):
        tracker.pidfile = str(directory / "app.pid")
        kill(tracker.start("sleep", "1000"))
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            "app is not running\n",
            f"daemonctx: warning: cannot remove the stale pidfile {tracker.pidfile}:"
            " Read-only file system\n",
        )
        status = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
        assert status.returncode == 1, "the file stays: dead, pidfile exists"


@needs_root
def test_stop_as_a_user_who_may_not_remove_the_stale_pidfile_exits_4(
    open_tracker: Tracker,
) -> None:
    """nobody stops a daemon of root's that was killed, its pidfile in a directory
    nobody may not write: exit 4 (insufficient privilege), as when nobody may not
    read the pidfile or signal the daemon, naming the file and the reason."""
    tracker = open_tracker
    kill(tracker.start("sleep", "1000"))
    python = python_for_nobody(ROOT / "daemonctx" / "__main__.py")
    result = subprocess.run(
        [python, "-m", "daemonctx", "stop", "--pidfile", tracker.pidfile],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env={**tracker.env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        4,
        "app is not running\n",
        f"daemonctx: error: cannot remove the stale pidfile {tracker.pidfile}: Permission denied\n",
    )
    assert os.path.exists(tracker.pidfile)


@needs_ssd
def test_status_agrees_with_start_stop_daemon(tracker: Tracker) -> None:
    def ours() -> int:
        return tracker.daemonctx("status", "--pidfile", tracker.pidfile).returncode

    assert ours() == tracker.ssd_status() == 3, "no pidfile"
    pid = tracker.start("sleep", "1000")
    assert ours() == tracker.ssd_status() == 0, "running"
    kill(pid)
    assert ours() == 1, "dead, pidfile left"
    ssd_says_dead(tracker, pid)
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.stdout == (
        f"app is not running, but its pidfile {tracker.pidfile} remains naming pid {pid}\n"
    )
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stdout) == (0, "app is not running\n")
    assert ours() == tracker.ssd_status() == 3, "stop removed the stale pidfile"
    os.mkdir(tracker.pidfile)
    assert ours() == tracker.ssd_status() == 4, "not a file: unknown"


def ssd_says_dead(tracker: Tracker, pid: int) -> None:
    """start-stop-daemon --status says 1 for the killed daemon's pidfile. It looks
    only for a process with that pid: while another has it (pid_max is small here,
    and other suites fork), it says 0 (cli.md lists this); asked again then."""
    wait_for(
        lambda: (
            (said := tracker.ssd_status()) == 1 or (said == 0 and os.path.exists(f"/proc/{pid}"))
        ),
        what="start-stop-daemon to say 1 (dead, pidfile left)",
    )


@needs_ssd
@needs_root
def test_start_stop_daemon_stops_our_daemon(tracker: Tracker) -> None:
    def ours() -> int:
        return tracker.daemonctx("status", "--pidfile", tracker.pidfile).returncode

    def ssd_stop(*extra: str) -> int:
        args = [SSD, "--stop", "--pidfile", tracker.pidfile, "--retry", "TERM/5", *extra]
        return subprocess.run(args, env=tracker.env, capture_output=True, timeout=30).returncode

    pid = tracker.start("sleep", "1000")
    assert ssd_stop() == 0
    wait_reaped(pid)
    assert ours() == 1, "it leaves the pidfile: dead"
    ssd_says_dead(tracker, pid)

    pid = tracker.start("sleep", "1000")  # takes the stale pidfile over
    assert ssd_stop("--remove-pidfile") == 0
    wait_reaped(pid)
    assert ours() == tracker.ssd_status() == 3


@needs_ssd
@needs_root
def test_a_reused_pid_is_not_running(tracker: Tracker) -> None:
    """The daemon dies and an unrelated process gets its pid: the pidfile names a live
    process. Ours says "dead, pidfile exists" (1: nobody holds the lock). Plain
    start-stop-daemon --status says 0, since it only checks that the pid exists; with
    --exec naming the daemon's program it checks the identity too, and agrees with us."""
    pid = tracker.start("sleep", "1000")
    kill(pid)
    impostor = tracker.adopt(spawn_as_pid(pid, ["tail", "-f", "/dev/null"], env=tracker.env))
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 1, result.stdout
    assert tracker.ssd_status() == 0, "start-stop-daemon trusts the pid"
    assert tracker.ssd_status("--exec", os.path.realpath(shutil.which("sleep") or "")) == 1

    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stdout) == (0, "app is not running\n")
    assert impostor.poll() is None, "stop must not signal the process that reused the pid"
    assert not os.path.exists(tracker.pidfile)


# -- run and restart ------------------------------------------------------------------


def test_run_stays_in_the_foreground(tracker: Tracker) -> None:
    proc = tracker.popen(
        tracker.run_argv("sh", "-c", "echo hello from $$; exec sleep 1000"),
        env=tracker.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"hello from {proc.pid}\n", "our stdout, same process"
    found = read_pidfile_status(tracker.pidfile)
    assert found.running and found.pid == proc.pid
    assert int(proc_stat(proc.pid)[1]) == os.getpid(), "not detached: still our child"
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert not os.path.exists(tracker.pidfile)


def test_run_keeps_socket_activation_fds(tracker: Tracker) -> None:
    passed = tracker.tmp_path / "socket-stand-in"
    passed.write_text("")
    script = (
        f'exec 3<"{passed}"; LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" -m daemonctx run'
        f' --pidfile "{tracker.pidfile}" -- sleep 1000'
    )
    proc = tracker.popen(["sh", "-c", script], env=tracker.env)
    found = wait_for(lambda: read_pidfile_status(tracker.pidfile).running, what="pidfile")
    assert found
    assert os.readlink(f"/proc/{proc.pid}/fd/3") == str(passed)


SOCKET_ACTIVATED = """
import os, socket
listener = socket.socket(fileno=3)  # sd_listen_fds(3): ours when LISTEN_PID is our pid
client, _ = listener.accept()
client.sendall(f"served by {os.getpid()}: LISTEN_PID={os.environ['LISTEN_PID']}".encode())
client.close()
"""


def test_start_hands_socket_activation_fds_to_the_program(tracker: Tracker) -> None:
    """A Type=forking unit behind a .socket: the listening socket comes as fd 3, with
    LISTEN_FDS=1 and LISTEN_PID naming start. The program gets it, with LISTEN_PID
    its own pid, as sd_listen_fds(3) asks, and serves a client. start closed it and
    passed LISTEN_PID=<start> on: the unit was active and every connection refused."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        # the shell execs daemonctx: LISTEN_PID=$$ is start's pid, as systemd sets it
        launcher = 'exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
        result = subprocess.run(
            ["sh", "-c", launcher, "sh", *tracker.command(), "start", "--pidfile",
             tracker.pidfile, "--", sys.executable, "-c", SOCKET_ACTIVATED],
            stdin=listener, env=tracker.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = STARTED.fullmatch(result.stdout)
    assert match, result.stdout
    pid = tracker.add(int(match.group(2)))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.settimeout(10)
        served = client.recv(200).decode()
    assert served == f"served by {pid}: LISTEN_PID={pid}"


@pytest.mark.parametrize(
    ("count", "message"),
    [("5", "LISTEN_FDS=5 passes fds 3 to 7, but fd 5 is not open"),
     ("100000000", "LISTEN_FDS=100000000 passes fds 3 to 100000002, but fd 5 is not open"),
     ("99999999999999999999",
      "LISTEN_FDS='99999999999999999999': not a number of fds from 0 to 2147483644"),
     ("\u00b2", "LISTEN_FDS='\u00b2': not a number of fds from 0 to 2147483644")],
    ids=["5", "10^8", "20-digits", "superscript-2"],
)  # fmt: skip
def test_run_refuses_a_listen_fds_that_passes_fds_not_open(
    tracker: Tracker, count: str, message: str
) -> None:
    """Two fds passed (3 and 4), LISTEN_FDS saying otherwise: one line naming
    LISTEN_FDS, before anything starts. It built a list of that many fds (10^8:
    4 GB, a MemoryError traceback under the 1 GB address-space limit set here;
    20 digits: an OverflowError one), or blamed `files_preserve`, an option a
    command-line user never gave."""
    import resource

    passed = tracker.tmp_path / "socket-stand-in"
    passed.write_text("")
    script = (
        f'exec 3<"{passed}" 4<"{passed}"; LISTEN_PID=$$ LISTEN_FDS="$1" exec "{sys.executable}"'
        f' -m daemonctx run --pidfile "{tracker.pidfile}" -- sleep 1000'
    )

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        ["sh", "-c", script, "sh", count],
        env=tracker.env,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=limited,
    )
    assert (result.returncode, result.stderr) == (1, f"daemonctx: error: {message}\n"), result
    assert not os.path.exists(tracker.pidfile)
    assert tracker.processes() == []


def test_run_fails_in_the_foreground(tracker: Tracker) -> None:
    result = tracker.daemonctx("run", "--pidfile", tracker.pidfile, "--", "/nonexistent/prog")
    assert result.returncode == 1
    assert result.stderr == "daemonctx: error: command not found: /nonexistent/prog\n"
    assert tracker.processes() == []


# What a program on a terminal may do with it, written to its stderr: its controlling
# terminal (tty_nr), whether it can open /dev/tty, and with an argument, whether it
# can type that line into the shell's input with TIOCSTI on its stdout, the terminal.
TERMINAL_PROGRAM = r"""
import errno, fcntl, os, signal, sys, termios

def attempt(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "done"

def type_line():
    for byte in sys.argv[1].encode() + b"\n":
        fcntl.ioctl(1, termios.TIOCSTI, bytes([byte]))

stat = open("/proc/self/stat").read()
print("pid:", os.getpid(), file=sys.stderr)
print("tty_nr:", stat[stat.rindex(")") + 2 :].split()[4], file=sys.stderr)
print("open /dev/tty:", attempt(lambda: os.close(os.open("/dev/tty", os.O_RDWR))), file=sys.stderr)
if sys.argv[1:]:
    print("TIOCSTI:", attempt(type_line), file=sys.stderr)
sys.stderr.flush()
signal.signal(signal.SIGINT, signal.SIG_DFL)
print("waiting for Ctrl-C", flush=True)
signal.pause()
"""


def _terminal_report(path: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in path.read_text().splitlines())


def _run_terminal_program_as_nobody(
    tracker: Tracker, typed: str, *options: str
) -> tuple[list[str], Path]:
    """``daemonctx run --user nobody [OPTIONS] -- python terminal.py TYPED``, its
    stderr (the program's report) in a file: the command, and that file."""
    program = tracker.tmp_path / "terminal.py"
    program.write_text(TERMINAL_PROGRAM)
    report = tracker.tmp_path / "report"
    flags = ["--user", "nobody", *options, "--stderr", str(report)]
    command = [*tracker.command(), "run", "--pidfile", tracker.pidfile, *flags, "--"]
    return [*command, python_for_nobody(program), str(program), typed], report


def _interactive_shell(tracker: Tracker) -> Terminal:
    """root's interactive bash on a terminal of its own, with job control."""
    env = {**tracker.env, "PS1": "$ ", "HISTFILE": str(tracker.tmp_path / "history")}
    return Terminal(tracker, [shutil.which("bash") or "bash", "--norc", "-i"], env)


@needs_root
@needs_tools("bash")
def test_run_as_another_user_cannot_type_into_the_callers_shell(open_tracker: Tracker) -> None:
    """root types `daemonctx run --user nobody` in its shell: the program, as nobody,
    must not keep root's terminal as its controlling terminal, or it could type a
    command into root's shell (TIOCSTI; for a child it leaves behind, after `run`
    returned). Ctrl-C still stops it: it stays in the terminal's foreground job."""
    tracker = open_tracker
    injected = tracker.tmp_path / "INJECTED"
    command, report = _run_terminal_program_as_nobody(tracker, f"touch {injected}")
    with _interactive_shell(tracker) as shell:
        shell.type(shlex.join(command) + "\n")
        shell.expect("waiting for Ctrl-C")
        seen = _terminal_report(report)
        assert seen["tty_nr"] == "0", "no controlling terminal"
        assert seen["open /dev/tty"] == "ENXIO"
        assert seen["TIOCSTI"] == "EPERM"
        assert proc_status(int(seen["pid"]))["Uid"].split()[0] == "65534"
        shell.type("\x03")
        shell.type('echo "status $?"\n')
        assert shell.expect(r"status (\d+)").group(1) == b"130", "ended by SIGINT"
        assert not pid_alive(int(seen["pid"]))
    assert not injected.exists(), "root's shell ran a command the program typed"


@needs_root
def test_run_as_another_user_leading_the_terminals_session(open_tracker: Tracker) -> None:
    """`ssh -t host daemonctx run --user nobody ...`: run leads the terminal's session.
    Giving the terminal up then sends run SIGHUP: the program starts all the same,
    without the terminal as controlling terminal, its output still shown there."""
    tracker = open_tracker
    command, report = _run_terminal_program_as_nobody(tracker, "# typed by the program")
    with Terminal(tracker, command, tracker.env) as terminal:
        terminal.expect("waiting for Ctrl-C")
        seen = _terminal_report(report)
        assert int(seen["pid"]) == terminal.pid, "run exec'd the program in place"
        assert seen["tty_nr"] == "0", "no controlling terminal"
        assert (seen["open /dev/tty"], seen["TIOCSTI"]) == ("ENXIO", "EPERM")


@needs_root
@needs_tools("unshare", "mount")
def test_run_as_another_user_gives_up_the_terminal_without_dev_tty(open_tracker: Tracker) -> None:
    """A /dev/tty that is no terminal (here /dev/null mounted on it): the terminal
    is found as the fd 0, 1 or 2 that /proc names, and given up all the same."""
    tracker = open_tracker
    command, report = _run_terminal_program_as_nobody(tracker, "# typed by the program")
    mount = 'mount --bind /dev/null /dev/tty || { echo "no mount"; exit; }; exec "$@"'
    unshare = [shutil.which("unshare") or "unshare", "--mount", "sh", "-c", mount, "sh"]
    with Terminal(tracker, [*unshare, *command], tracker.env) as terminal:
        if terminal.expect("waiting for Ctrl-C|no mount").group() == b"no mount":
            pytest.skip("cannot mount in a new mount namespace here")
        seen = _terminal_report(report)
        assert seen["tty_nr"] == "0", "no controlling terminal"
        assert (seen["open /dev/tty"], seen["TIOCSTI"]) == ("done", "EPERM")


@needs_root
@needs_tools("unshare")
def test_run_as_another_user_without_dev_tty_nor_output_on_it_runs(open_tracker: Tracker) -> None:
    """A /dev/tty that is no terminal, and run's and the program's fds 0-2 none on
    the terminal: no node opens it for nobody, so the program cannot reach it: it runs
    (the start failed: "cannot open the controlling terminal /dev/tty to give it
    up", where before this release it ran)."""
    tracker = open_tracker
    out = str(tracker.tmp_path / "out")
    command, report = _run_terminal_program_as_nobody(
        tracker, "# typed by the program", "--stdout", out
    )
    said = shlex.quote(str(tracker.tmp_path / "run.log"))  # run's own: none on the terminal
    mount = 'mount --bind /dev/null /dev/tty || { echo "no mount"; exit; }; echo in; '
    mount += f'exec "$@" </dev/null >{said} 2>&1'
    unshare = [shutil.which("unshare") or "unshare", "--mount", "sh", "-c", mount, "sh"]
    with Terminal(tracker, [*unshare, *command], tracker.env) as terminal:
        if terminal.expect("in|no mount").group() == b"no mount":
            pytest.skip("cannot mount in a new mount namespace here")
        seen = wait_for(
            lambda: (
                "TIOCSTI" in (found := _terminal_report(report) if report.exists() else {})
                and found
            ),
            what="the program's report",
        )
        assert (seen["open /dev/tty"], seen["TIOCSTI"]) == ("done", "ENOTTY"), seen
        assert proc_status(int(seen["pid"]))["Uid"].split()[0] == "65534"


@needs_tools("bash")
def test_run_as_the_same_user_keeps_the_terminal(open_tracker: Tracker) -> None:
    """Without --user, run changes nothing: the program keeps the caller's terminal."""
    tracker = open_tracker
    program = tracker.tmp_path / "terminal.py"
    program.write_text(TERMINAL_PROGRAM)
    report = tracker.tmp_path / "report"
    command = [*tracker.command(), "run", "--pidfile", tracker.pidfile, "--stderr", str(report)]
    command += ["--", sys.executable, str(program)]
    with _interactive_shell(tracker) as shell:
        shell.type(shlex.join(command) + "\n")
        shell.expect("waiting for Ctrl-C")
        seen = _terminal_report(report)
        assert seen["tty_nr"] == proc_stat(shell.pid)[4] != "0", "the shell's terminal"
        assert seen["open /dev/tty"] == "done"
        shell.type("\x03")
        shell.type('echo "status $?"\n')
        assert shell.expect(r"status (\d+)").group(1) == b"130"


def test_restart_gives_a_new_pid(tracker: Tracker) -> None:
    old = tracker.start("sleep", "1000")
    result = tracker.daemonctx("restart", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines(keepends=True)
    assert re.fullmatch(rf"stopped app \(pid {old}\) in \d+\.\d\d s\n", lines[0])
    match = STARTED.fullmatch(lines[1])
    assert match
    new = int(match.group(2))
    assert new != old and not pid_alive(old)
    assert read_pidfile_status(tracker.pidfile).pid == new
    assert tracker.processes() == [new]


def test_restart_when_stopped_starts(tracker: Tracker) -> None:
    result = tracker.daemonctx("restart", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("app is not running\nstarted app (pid ")


def test_restart_with_a_bad_option_keeps_the_daemon(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    result = tracker.daemonctx(
        "restart", "--pidfile", tracker.pidfile, "--user", "no-such-user-xyz", "--", "sleep", "1"
    )
    assert result.returncode == 1
    assert result.stderr == "daemonctx: error: --user no-such-user-xyz: no such user\n"
    assert tracker.processes() == [pid]


def test_status_shows_the_command_line_a_daemon_chose_escaped(tracker: Tracker) -> None:
    """A daemon may set its own command line (``exec -a``, setproctitle): status
    shows its escape sequences, carriage return and bytes that are not UTF-8
    escaped, as systemctl does, so it can neither act on the operator's terminal
    nor write "app is not running" over the line; and so does ``message()``."""
    forged = os.fsdecode(b"\x1b]0;PWNED\x07\x1b[2J\rapp is not running\xff")
    pid = tracker.start("bash", "-c", 'exec -a "$0" sleep 1000', forged)
    wait_for(lambda: cmdline_of(pid) == os.fsencode(forged) + b"\x001000\x00", what="the exec")
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stderr) == (0, "")
    shown = "\\x1b]0;PWNED\\x07\\x1b[2J\\rapp is not running\\xff 1000"
    assert re.fullmatch(
        rf"app is running \(pid {pid}, up [^)]*\): {re.escape(shown)}\n", result.stdout
    )
    message = control.status(tracker.pidfile).message("app")  # Service.status()'s
    assert message.startswith(f"app is running (pid {pid}, ") and message.endswith(f"): {shown}")


def test_a_pidfile_path_that_is_not_text(tracker: Tracker) -> None:
    """A pidfile's path may be any bytes: start, status and stop work, and status
    writes the name (from the path) as it is, even to a strict stdout."""
    odd = os.fsdecode(os.fsencode(str(tracker.tmp_path)) + b"/\xff.pid")
    bytes_as_they_are = {"errors": "surrogateescape"}
    result = tracker.daemonctx(
        "start",
        "--pidfile",
        odd,
        "--",
        "sh",
        "-c",
        "exec sleep 1000",
        "\udcff",
        **bytes_as_they_are,
    )
    assert result.returncode == 0, result.stderr
    pid = read_pidfile_status(odd).pid
    assert pid is not None
    # sh execs sleep after start returned: mid-exec, /proc/PID/environ reads empty
    wait_for(lambda: tracker.processes() == [pid], what="the daemon, found by its token")
    status = subprocess.run(
        [*tracker.command(), "status", "--pidfile", odd],
        capture_output=True,
        env={**tracker.env, "PYTHONIOENCODING": "utf-8"},
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.endswith(b"): sleep 1000\n"), status.stdout  # exec'd: argv is sleep's
    assert b"\xff" in status.stdout.split(b" is running")[0]  # the name, from the path
    assert tracker.daemonctx("stop", "--pidfile", odd, **bytes_as_they_are).returncode == 0
    assert not os.path.exists(odd) and tracker.processes() == []
