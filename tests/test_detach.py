"""Detaching: double fork, new session, no terminal; and when not to detach."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DAEMON,
    ROOT,
    UNSHARE_PID,
    Daemons,
    ProcessTracker,
    Terminal,
    needs_pid_namespace,
    needs_root,
    pid_alive,
    proc_stat,
    proc_status,
    read_events,
    run_script,
    wait_for,
    wait_gone,
)


def test_detached_daemon_is_orphaned_in_its_own_session_without_a_terminal(
    daemons: Daemons,
) -> None:
    result, report = daemons.launch({})
    assert result.returncode == 0, result.stderr
    event = daemons.event(report, "open")
    pid = event["pid"]
    _state, _ppid, pgrp, session, tty_nr = proc_stat(pid)[:5]
    assert pid_alive(pid)
    assert int(tty_nr) == 0, "the daemon must have no controlling terminal"
    assert int(session) != pid, "not a session leader, so it can never acquire a terminal"
    assert int(pgrp) == int(session)  # the session the first child created
    assert int(session) != os.getsid(0)
    assert event["ppid"] != os.getpid()


def test_launcher_returns_only_once_the_daemon_is_open(daemons: Daemons, tmp_path) -> None:
    """At the instant the launcher exits, the pidfile names the live daemon."""
    for attempt in range(10):
        pidfile = tmp_path / f"app-{attempt}.pid"
        result, report = daemons.launch({"options": {"pidfile": str(pidfile)}})
        assert result.returncode == 0, result.stderr
        text = pidfile.read_text()  # no waiting: it must be there already
        daemon_pid = int(text)
        daemons.pids.add(daemon_pid)
        assert pid_alive(daemon_pid)
        assert daemons.event(report, "open")["pid"] == daemon_pid


def test_detach_process_false_stays_in_the_foreground(daemons: Daemons, tmp_path) -> None:
    report = tmp_path / "fg.jsonl"
    config = {"report": str(report), "options": {"detach_process": False}}
    proc = daemons.popen([sys.executable, str(DAEMON), json.dumps(config)])
    event = daemons.event(report, "open")
    assert event["pid"] == proc.pid
    proc.terminate()
    assert proc.wait(10) == 0, "SIGTERM is a clean stop: exit status 0"
    assert daemons.event(report, "closed")


@needs_root
def test_not_detaching_as_another_user_gives_up_the_terminal(
    processes: ProcessTracker, tmp_path: Path
) -> None:
    """detach_process=False with uid: a daemon must not keep its launcher's terminal
    (as root's) as its controlling terminal, or it could open /dev/tty and type into
    the input of root's shell (TIOCSTI). Here it leads the terminal's session (a
    shell that exec'd it, `ssh -t host cmd`), so giving the terminal up sends it
    SIGHUP: it survives, and its own SIGHUP handler does not run."""
    report = tmp_path / "report"
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import errno, fcntl, os, signal, termios
from daemonctx import DaemonContext

report = open({str(report)!r}, "w", buffering=1)

def attempt(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "done"

hup = lambda signum, frame: report.write("SIGHUP handled\\n")
leader = os.getsid(0) == os.getpid()
with DaemonContext(
    detach_process=False, uid=65534, gid=65534, stdout=sys.stdout,
    files_preserve=[report], signal_map={{signal.SIGHUP: hup}},
):
    report.write(f"leader {{leader}} uid {{os.getuid()}}\\n")
    report.write("open /dev/tty " + attempt(lambda: os.open("/dev/tty", os.O_RDWR)) + "\\n")
    report.write("TIOCSTI " + attempt(lambda: fcntl.ioctl(1, termios.TIOCSTI, b"#")) + "\\n")
    print("waiting", flush=True)
    signal.pause()
"""
    with Terminal(processes, [sys.executable, "-c", code], dict(os.environ)) as terminal:
        terminal.expect("waiting")
        assert report.read_text().splitlines() == [
            "leader True uid 65534",
            "open /dev/tty ENXIO",
            "TIOCSTI EPERM",
        ]
        assert int(proc_stat(terminal.pid)[4]) == 0, "no controlling terminal"


def test_started_by_inetd_does_not_detach(daemons: Daemons, tmp_path) -> None:
    """stdin is a socket: a super-server handed us a connection."""
    report = tmp_path / "inetd.jsonl"
    ours, theirs = socket.socketpair()
    config = {"report": str(report)}
    with ours, theirs:
        proc = daemons.popen([sys.executable, str(DAEMON), json.dumps(config)], stdin=theirs)
        event = daemons.event(report, "open")
        assert event["pid"] == proc.pid, "auto-detect must not fork under inetd"
        assert proc.poll() is None


@needs_root
@needs_pid_namespace
@pytest.mark.parametrize(
    ("shell", "expected_pid"),
    [
        # python is PID 1 of a new PID namespace (a container's main process)
        ("exec {cmd}", 1),
        # python's parent is PID 1 (started by init): "; true" stops sh from exec'ing
        ("{cmd}; true", 2),
    ],
    ids=["pid-1", "parent-is-init"],
)
def test_no_detach_as_container_init_or_under_init(
    daemons: Daemons, tmp_path, shell: str, expected_pid: int
) -> None:
    report = tmp_path / "ns.jsonl"
    config = json.dumps({"report": str(report), "exit_after": True})
    cmd = f"{sys.executable} {DAEMON} '{config}'"
    result = subprocess.run(
        [*UNSHARE_PID, "sh", "-c", shell.format(cmd=cmd)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    events = read_events(report)
    assert [e["event"] for e in events] == ["open", "closing", "closed"]
    assert events[0]["pid"] == expected_pid, "it must not have forked"


def test_survives_sighup_when_launched_by_a_session_leader_with_a_tty(daemons: Daemons) -> None:
    """`ssh -t host cmd`: the launcher leads a session that owns a terminal.
    When it exits, the kernel sends SIGHUP to the terminal's foreground group;
    python-daemon loses most daemons that way. Every one of ours must live."""
    pids = []
    for _ in range(20):
        result, report = daemons.launch({"before": ["session_with_tty"]})
        assert result.returncode == 0, result.stderr
        pids.append(daemons.event(report, "open")["pid"])
    # The SIGHUP, if any, was sent when each launcher exited; all must still live.
    dead = [pid for pid in pids if not pid_alive(pid)]
    assert dead == []


def test_buffered_output_is_written_once(daemons: Daemons, tmp_path) -> None:
    out = tmp_path / "launcher.out"
    with out.open("w") as handle:
        result, report = daemons.launch(
            {"before": ["print"], "options": {"stdout": str(out)}},
            stdout=handle,
            capture_output=False,
            stderr=subprocess.PIPE,
        )
    assert result.returncode == 0, result.stderr
    daemons.event(report, "open")
    assert out.read_text().count("printed-before-open") == 1


def test_warns_when_other_threads_are_alive(daemons: Daemons) -> None:
    result, report = daemons.launch({"before": ["thread"]})
    assert result.returncode == 0, result.stderr
    daemons.event(report, "open")
    assert "RuntimeWarning" in result.stderr
    assert "other thread(s) alive" in result.stderr


def test_no_warning_without_threads(daemons: Daemons) -> None:
    result, report = daemons.launch({})
    assert result.returncode == 0
    assert result.stderr == ""
    daemons.event(report, "open")  # its pid, for the kill at the end


def test_signal_mask_is_reset(daemons: Daemons) -> None:
    event, _ = daemons.start({"before": ["block_sigusr1"]})
    status = proc_status(event["pid"])
    assert int(status["SigBlk"], 16) == 0


def test_launcher_is_left_unchanged_when_it_raises(tmp_path) -> None:
    """A failing start raises in the launcher, whose cwd, umask and fds are untouched."""
    code = f"""
import os
from daemonctx import DaemonContext, DaemonStartupError
class Bad:
    def __enter__(self): raise RuntimeError("boom")
    def __exit__(self, *a): pass
keep = open({str(tmp_path / "keep")!r}, "w")
os.chdir({str(tmp_path)!r}); os.umask(0o022)
before = (os.getcwd(), os.umask(0o022), sorted(os.listdir("/proc/self/fd")))
try:
    DaemonContext(pidfile=Bad(), working_directory="/tmp", umask=0o077).open()
except DaemonStartupError as exc:
    after = (os.getcwd(), os.umask(0o022), sorted(os.listdir("/proc/self/fd")))
    print(before == after, exc.remote_type, exc.remote_message)
"""
    result = run_script(code)
    assert result.stdout.split() == ["True", "RuntimeError", "boom"], result.stderr


def test_daemons_started_back_to_back_are_independent(daemons: Daemons) -> None:
    pids = {daemons.start({})[0]["pid"] for _ in range(3)}
    assert len(pids) == 3
    wait_for(lambda: all(pid_alive(p) for p in pids), 5, "all daemons alive")


def run_daemon_program(
    daemons: Daemons, tmp_path: Path, argv_prefix: list[str], env: dict[str, str], **popen: Any
) -> tuple[int, dict[str, Any]]:
    """Start tests/programs/daemon.py (detach_process=None) behind ``argv_prefix``;
    return the pid the launcher had and the daemon's open event."""
    report = tmp_path / f"sm-{len(list(tmp_path.iterdir()))}.jsonl"
    config = json.dumps({"report": str(report)})
    proc = daemons.popen([*argv_prefix, sys.executable, str(DAEMON), config], env=env, **popen)
    return proc.pid, daemons.event(report, "open")


def test_no_detach_under_a_user_service_manager(daemons: Daemons, tmp_path: Path) -> None:
    """`systemctl --user` units: the parent is the user's `systemd`, not PID 1."""
    manager = (
        "import subprocess, sys; open('/proc/self/comm', 'w').write('systemd'); "
        "sys.exit(subprocess.call(sys.argv[1:]))"
    )
    _, event = run_daemon_program(
        daemons, tmp_path, [sys.executable, "-c", manager], dict(os.environ)
    )
    assert Path(f"/proc/{event['ppid']}/comm").read_text().strip() == "systemd"
    assert event["ppid"] != 1


def test_no_detach_when_socket_activated(daemons: Daemons, tmp_path: Path) -> None:
    pid, event = run_daemon_program(
        daemons,
        tmp_path,
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=0 exec "$@"', "sh"],
        dict(os.environ),
    )
    assert event["pid"] == pid, "LISTEN_PID names it: it must not fork"


@pytest.mark.parametrize("connected", [True, False])
def test_journal_stream_counts_only_when_it_is_our_stderr(
    daemons: Daemons, tmp_path: Path, connected: bool
) -> None:
    """A service's own process writes to the journal socket that JOURNAL_STREAM names;
    its children (a shell in a terminal started by a user service) inherit the
    variable but not the stream, and must still detach."""
    ours, journal = socket.socketpair()
    with ours, journal:
        st = os.fstat(journal.fileno())
        env = {
            **os.environ,
            "INVOCATION_ID": "0123abcd",
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        }
        stderr = journal if connected else subprocess.DEVNULL
        pid, event = run_daemon_program(daemons, tmp_path, [], env, stderr=stderr)
    assert (event["pid"] == pid) is connected


def test_notify_socket_alone_does_not_stop_the_fork(daemons: Daemons, tmp_path: Path) -> None:
    env = {**os.environ, "NOTIFY_SOCKET": "@inherited-from-a-service"}
    pid, event = run_daemon_program(daemons, tmp_path, [], env, stderr=subprocess.DEVNULL)
    assert event["pid"] != pid, "a service's child that asks to daemonize still forks"


def test_a_context_closed_then_opened_again_detaches_and_reports_ready_again(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """As with python-daemon, open() after close() daemonizes again: the first daemon
    is the second one's launcher, and exits once that one is ready."""
    report = tmp_path / "report"
    pidfile = tmp_path / "app.pid"
    code = f"""
import os, signal, sys; sys.path.insert(0, {str(ROOT)!r})
from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile
report = open({str(report)!r}, "a", buffering=1)
def emit(text):
    report.write(f"{{os.getpid()}} {{text}}\\n")
class Context(DaemonContext):
    def launcher_ready(self, daemon_pid):
        emit(f"launcher saw ready {{daemon_pid}}")
context = Context(detach_process=True, pidfile=TimeoutPIDLockFile({str(pidfile)!r}),
                  files_preserve=[report], stderr=report, ready_timeout=20)
context.open()
emit("first open")
context.close()
context.open()
emit("second open")
signal.pause()
"""
    processes.watch(lambda: [int(line.split()[0]) for line in lines_of(report)])
    launcher = processes.popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    _, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == 0, stderr

    def lines() -> list[str] | None:
        found = lines_of(report)
        return found if len(found) >= 4 else None

    found = wait_for(lines, 15, "both daemons' lines")
    first = next(int(line.split()[0]) for line in found if line.endswith(" first open"))
    second = next(int(line.split()[0]) for line in found if line.endswith(" second open"))
    assert sorted(report.read_text().splitlines()) == sorted(
        [
            f"{launcher.pid} launcher saw ready {first}",
            f"{first} first open",
            f"{first} launcher saw ready {second}",
            f"{second} second open",
        ]
    ), found
    wait_gone(first)  # it exits 0 once the second daemon is ready
    assert pid_alive(second)
    assert int(pidfile.read_text()) == second


def lines_of(report: Path) -> list[str]:
    """The report's lines that a process wrote ("PID what"), not a launcher's message."""
    return [line for line in report.read_text().splitlines() if line.split(" ")[0].isdigit()]
