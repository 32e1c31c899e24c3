"""A daemon's workers: stopped with it, as the processes of its own session.

A worker (``os.fork``, a ``multiprocessing.Process``) loses the lock when the
daemon exits cleanly (``flock(LOCK_UN)`` on the shared open file description), so
``stop`` finds it through the daemon's session: only a session that is the
daemon's own, never a shell's, and never a session that took its id afterwards.
"""

from __future__ import annotations

import os
import re
import shlex
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


def running(pidfile: Path, command: bytes) -> int:
    """The pid in ``pidfile`` once that process runs ``command`` (``run`` has exec'd it)."""

    def look() -> int | None:
        try:
            pid = int(pidfile.read_text())
            return pid if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(command) else None
        except (OSError, ValueError):
            return None

    found: int = wait_for(look, 30, what=f"the daemon of {pidfile.name}")
    return found


def test_stop_leaves_the_other_jobs_of_a_script_that_exited(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """An init or entrypoint script (no job control) starts two daemons and a job in
    the background and exits: all three are in its session and process group, whose
    leader is gone, as after a double fork. Stopping one stops it alone."""
    a, b, job_file = (tracker.tmp_path / name for name in ("a.pid", "b.pid", "job"))
    run = shlex.join(tracker.command())
    script = (
        f"{run} run --pidfile {a} -- sleep 1001 &\n"
        f"{run} run --pidfile {b} -- sleep 1002 &\n"
        f"sleep 1003 & echo $! > {job_file}\n"
    )
    shell = processes.popen(["sh", "-c", script], env=tracker.env, start_new_session=True)
    assert shell.wait(30) == 0
    job = tracker.add(int(wait_for(job_file.read_text, what="the job's pid")))
    first, second = tracker.add(running(a, b"sleep")), tracker.add(running(b, b"sleep"))
    assert session_of(first) == session_of(second) == session_of(job) == shell.pid
    result = tracker.daemonctx("stop", "--pidfile", str(a))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped a (pid {first}) in "), result.stdout
    wait_gone(first)
    assert pid_alive(second), "the other daemon, which holds its own pidfile's lock, lives"
    assert pid_alive(job), "and so does the script's other job"
    assert tracker.daemonctx("status", "--pidfile", str(b)).returncode == 0


def test_stop_leaves_a_helper_daemon_started_before_the_exec(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """An entrypoint starts a helper daemon in the background, then execs the main
    one: the main daemon leads the session and the helper is its child. The helper
    holds a pidfile lock of its own: neither it nor its workers are the main's."""
    main_file, helper_file = tracker.tmp_path / "main.pid", tracker.tmp_path / "helper.pid"
    daemon = f"{shlex.quote(sys.executable)} {shlex.quote(str(WORKERS))}"
    script = (
        f"{daemon} {helper_file} mp-spawn run &\n"
        f"while [ ! -e {helper_file}.workers ]; do sleep 0.01; done\n"
        f"exec {daemon} {main_file} mp-spawn run\n"
    )
    shell = processes.popen(["sh", "-c", script], env=tracker.env, start_new_session=True)
    wait_for(lambda: os.path.exists(f"{main_file}.workers"), 30, what="the main's workers")
    main = tracker.add(int(main_file.read_text()))
    helper = tracker.add(int(helper_file.read_text()))
    helpers = [tracker.add(int(pid)) for pid in Path(f"{helper_file}.workers").read_text().split()]
    children = [tracker.add(int(pid)) for pid in Path(f"{main_file}.workers").read_text().split()]
    workers = [pid for pid in children if pid != helper]  # the helper is its child too
    assert main == shell.pid == session_of(helper) and processes_parent(helper) == main
    result = tracker.daemonctx("stop", "--pidfile", str(main_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped main (pid {main}) and 2 processes of its session")
    for pid in [main, *workers]:
        wait_gone(pid)
    assert [pid for pid in [helper, *helpers] if pid_alive(pid)] == [helper, *helpers]
    assert tracker.daemonctx("status", "--pidfile", str(helper_file)).returncode == 0


def processes_parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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
    if time.monotonic() - began >= 4:  # placing a pid takes a wrap of the pids: slow
        pytest.skip("the newcomer was not placed before the stop's SIGKILL step (load)")
    out, _ = stop.communicate(timeout=30)
    assert stop.returncode == 0
    assert out.startswith(f"stopped app (pid {main}) in ")
    assert f"and pid {keeper}, which still held its lock (sent SIGKILL after 5 s)" in out
    assert newcomer.poll() is None, "the process with the old session's number lives"
    assert not pid_alive(keeper)
    os.kill(newcomer.pid, signal.SIGKILL)
