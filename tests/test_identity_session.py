"""A daemon's workers: stopped with it, as the processes of its own session.

A worker (``os.fork``, a ``multiprocessing.Process``) loses the lock when the
daemon exits cleanly (``flock(LOCK_UN)`` on the shared open file description), so
``stop`` finds it through the daemon's session: only a session that is the
daemon's own, never a shell's, and never a session that took its id afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    PROGRAMS,
    ProcessTracker,
    Tracker,
    needs_root,
    pid_alive,
    spawn_as_pid,
    wait_for,
    wait_gone,
    wait_reaped,
)

import daemonctx

WORKERS = PROGRAMS / "worker_daemon.py"


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def app(tracker: Tracker, kind: str, command: str) -> subprocess.CompletedProcess[str]:
    """``worker_daemon.py PIDFILE KIND COMMAND``, to completion."""
    argv = [sys.executable, str(WORKERS), tracker.pidfile, kind, command]
    return subprocess.run(argv, env=tracker.env, capture_output=True, text=True, timeout=60)


def started(tracker: Tracker, result: subprocess.CompletedProcess[str]) -> tuple[int, list[int]]:
    """The daemon's pid and its workers', each tracked (killed when the test ends)."""
    assert result.returncode == 0, result.stderr
    match = re.search(r"started app \(pid (\d+)\)", result.stdout)
    assert match, result.stdout
    main = tracker.add(int(match.group(1)))
    workers = Path(f"{tracker.pidfile}.workers").read_text().split()
    os.unlink(f"{tracker.pidfile}.workers")
    return main, [tracker.add(int(pid)) for pid in workers]


@pytest.mark.parametrize(
    ("kind", "report"),
    [
        ("fork", ", and pid {worker}, which still held its lock\n"),
        ("mp-fork", ", and pid {worker}, which still held its lock\n"),
        ("mp-spawn", " and 2 processes of its session in "),
    ],
)
def test_stop_leaves_none_of_a_detached_daemons_workers(
    tracker: Tracker, kind: str, report: str
) -> None:
    main, workers = started(tracker, app(tracker, kind, "start"))
    assert {session_of(pid) for pid in workers} == {session_of(main)} != {main}
    began = time.monotonic()
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    seconds = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped app (pid {main})")
    assert report.format(worker=workers[0]) in result.stdout
    assert "SIGKILL" not in result.stdout and seconds < 5, "no wait for the stop timeout"
    assert not [pid for pid in [main, *workers] if pid_alive(pid)]
    assert tracker.processes() == [], "nothing of the daemon runs after stop exits 0"
    assert tracker.daemonctx("status", "--pidfile", tracker.pidfile).returncode == 3


def test_the_stop_function_names_the_processes_of_the_session(tracker: Tracker) -> None:
    main, workers = started(tracker, app(tracker, "mp-spawn", "start"))
    result = daemonctx.stop(tracker.pidfile)
    assert (result.pid, result.session, result.others) == (main, tuple(workers), ())
    assert result.exited and not result.killed and not os.path.exists(tracker.pidfile)
    assert tracker.processes() == []


def test_restart_stops_the_workers_before_it_starts(tracker: Tracker) -> None:
    main, workers = started(tracker, app(tracker, "fork", "start"))
    result = app(tracker, "fork", "restart")
    assert result.stdout.startswith(f"stopped app (pid {main}) in ")
    new, new_workers = started(tracker, result)
    assert not [pid for pid in [main, *workers] if pid_alive(pid)]
    assert sorted(tracker.processes()) == sorted([new, *new_workers])
    result = app(tracker, "fork", "stop")
    assert result.returncode == 0 and result.stdout.startswith(f"stopped app (pid {new})")
    assert tracker.processes() == []


def test_stop_leaves_the_shell_whose_session_a_run_daemon_is_in(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """``run`` (detach_process=False) under a session leader that stays, a shell's
    stand-in: the session is the shell's, and nothing of it but the daemon is hit."""
    sibling_file = tracker.tmp_path / "sibling"
    shell_code = (
        "import subprocess, sys, time\n"
        "job = subprocess.Popen(['sleep', '1000'])  # another job of the shell's\n"
        f"open({str(sibling_file)!r}, 'w').write(str(job.pid))\n"
        f"subprocess.run([sys.executable, {str(WORKERS)!r}, {tracker.pidfile!r}, 'fork', 'run'])\n"
        "time.sleep(1000)\n"
    )
    shell = processes.popen(
        [sys.executable, "-c", shell_code], env=tracker.env, start_new_session=True
    )
    workers = f"{tracker.pidfile}.workers"
    wait_for(lambda: os.path.exists(workers), 30, what="the daemon's workers")
    sibling = tracker.add(int(sibling_file.read_text()))
    main = tracker.add(int(Path(tracker.pidfile).read_text()))
    tracker.add(int(Path(workers).read_text()))
    assert session_of(main) == session_of(sibling) == shell.pid
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped app (pid {main}) in ")
    assert "session" not in result.stdout
    wait_gone(main)
    assert shell.poll() is None and pid_alive(shell.pid), "the shell lives"
    assert pid_alive(sibling), "and so does its other job"


@needs_root
def test_a_session_id_taken_after_the_daemons_session_emptied_is_never_signalled(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """The daemon exits, its session empties and is freed while the stop still waits
    for a child that kept the lock from a session of its own; a new process takes
    the old session's number as its pid and session (through ns_last_pid). The
    stop looks at the session again at its SIGKILL step: it must not take the
    newcomer for the daemon's."""
    code = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)\n"
        "time.sleep(1000)\n"
    )
    main = tracker.start(sys.executable, "-c", code)
    keeper = wait_for(lambda: [p for p in tracker.processes() if p != main], what="child")[0]
    session = session_of(main)
    assert session != main and not os.path.exists(f"/proc/{session}"), "its leader is gone"
    began = time.monotonic()
    stop = processes.popen(
        [*tracker.command(), "stop", "--pidfile", tracker.pidfile, "--timeout", "5"],
        env=tracker.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_reaped(main)
    newcomer = processes.adopt(spawn_as_pid(session, ["sleep", "1000"], start_new_session=True))
    assert session_of(newcomer.pid) == session
    assert time.monotonic() - began < 4, "placed before the stop's SIGKILL step"
    out, _ = stop.communicate(timeout=30)
    assert stop.returncode == 0
    assert out.startswith(f"stopped app (pid {main}) in ")
    assert f"and pid {keeper}, which still held its lock (sent SIGKILL after 5 s)" in out
    assert newcomer.poll() is None, "the process with the old session's number lives"
    assert not pid_alive(keeper)
    os.kill(newcomer.pid, signal.SIGKILL)
