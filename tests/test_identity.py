"""Which process is the daemon? Attacks on the answer, as root, on real processes.

Each test plays one of the ways the answer used to be wrong: a pid reused by an
unrelated process (forced through /proc/sys/kernel/ns_last_pid), a child that
inherits the daemon's lock, a daemon running as nobody trying to rewrite its
root-owned pidfile, a pidfile or log path planted by nobody in a world-writable
directory, and a pidfile deleted under a running daemon.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    ENV,
    NOBODY,
    NOBODY_ENV,
    NS_LAST_PID,
    PROGRAMS,
    ROOT,
    ProcessTracker,
    Tracker,
    needs_root,
    pid_alive,
    python_for_nobody,
    readable,
    run_as_nobody,
    spawn_as_pid,
    wait_for,
    wait_gone,
    wait_reaped,
)

from daemonctx import ServiceState, status, stop
from daemonctx.control import ControlError
from daemonctx.identity import find
from daemonctx.pidfile import PIDLockFile, read_pidfile_status


def as_nobody(
    processes: ProcessTracker, argv: list[str], **popen: object
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as uid and gid 65534 with no other groups, tracked by ``processes``."""
    return processes.popen(
        argv, user=NOBODY, group=NOBODY, extra_groups=[], env=NOBODY_ENV, **popen
    )


def lines(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr


# -- 1. pid reuse ------------------------------------------------------------------


@needs_root
def test_stop_never_signals_a_process_that_reused_the_daemons_pid(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """The program exits, its child keeps the lock, /proc/locks still names the
    program's pid, and that pid now belongs to an unrelated process."""
    program = tracker.start("sh", "-c", "sleep 1000 & exit 0")
    wait_reaped(program)
    (child,) = tracker.processes()
    victim = spawn_as_pid(program, ["sleep", "1000"])
    processes.adopt(victim)
    assert int(Path(tracker.pidfile).read_text()) == program == victim.pid

    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert lines(result) == (
        1,
        f"app (pid {program}) exited; pid {child} still holds its lock\n",
        "",
    )
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped pid {child}, which still held its lock")
    assert victim.poll() is None and pid_alive(victim.pid), "the unrelated process lives"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)
    assert tracker.daemonctx("status", "--pidfile", tracker.pidfile).returncode == 3
    tracker.start("sleep", "1000")  # and a start works again


@needs_root
def test_read_pid_of_a_stale_pidfile_never_names_a_reused_pid(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    path = str(tmp_path / "app.pid")
    holder = processes.popen(
        [sys.executable, str(PROGRAMS / "pidfile_holder.py"), path, "--die", "--hold", "0"],
        stdout=subprocess.PIPE,
        env=ENV,
    )
    holder.communicate(timeout=30)
    assert int(Path(path).read_text()) == holder.pid
    wait_reaped(holder.pid)
    written = os.stat(path).st_mtime - 60  # a daemon that ran for a minute
    os.utime(path, (written, written))
    lock = PIDLockFile(path)
    # lockfile's meaning: the file exists; python-daemon-era runners rely on it
    assert lock.is_locked() and not read_pidfile_status(path).running
    assert lock.read_pid() == holder.pid, "names no process: harmless, and shows it is stale"
    victim = spawn_as_pid(holder.pid, ["sleep", "1000"])
    processes.adopt(victim)
    assert lock.read_pid() is None, "the pid is another process's now"
    assert stop(path).pid is None and victim.poll() is None
    assert not os.path.exists(path), "the stale pidfile was removed"


# -- 2. a child inherits the lock ----------------------------------------------------


def test_a_child_holding_the_lock_is_reported_and_stopped(tracker: Tracker) -> None:
    program = tracker.start("sh", "-c", "sleep 1000; :")
    child = wait_for(lambda: [p for p in tracker.processes() if p != program], what="child")[0]
    found = find(tracker.pidfile)
    assert (found.main_pid, found.holders) == (program, tuple(sorted((program, child))))
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"app is running (pid {program}")

    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped app (pid {program}) in ")
    assert result.stdout.endswith(f", and pid {child}, which still held its lock\n")
    assert tracker.processes() == [], "nothing of the daemon runs after stop exits 0"
    assert not os.path.exists(tracker.pidfile)
    assert tracker.daemonctx("status", "--pidfile", tracker.pidfile).returncode == 3
    tracker.start("sleep", "1000")


def test_the_daemon_gone_and_its_child_holding_the_lock(tracker: Tracker) -> None:
    program = tracker.start("sh", "-c", "sleep 1000; :")
    child = wait_for(lambda: [p for p in tracker.processes() if p != program], what="child")[0]
    os.kill(program, signal.SIGKILL)
    wait_gone(program)
    if os.geteuid() != 0:
        # Not root, status cannot look into other users' processes, so it trusts the
        # pidfile's pid while that pid is in /proc, as a zombie too: wait for init.
        wait_reaped(program)
    expected = f"app (pid {program}) exited; pid {child} still holds its lock"
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert lines(result) == (1, expected + "\n", "")
    found = status(tracker.pidfile)
    assert (found.state, found.pid, found.holders) == (ServiceState.DEAD, None, (child,))
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert lines(result) == (1, "", f"daemonctx: error: {expected}; stop it first\n")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and f"stopped pid {child}" in result.stdout
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


THREADED = "import threading, time; threading.Thread(target=time.sleep, args=(1000,)).start()"

# A daemon whose main thread ends (pthread_exit) while another runs on: the leader
# task is a zombie, its /proc/PID/fd empty, and the process holds every fd still.
MAIN_THREAD_EXITS = r"""
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
static const char *mark;
static void on_hup(int sig) { close(open(mark, O_CREAT | O_WRONLY, 0600)); }
static void *worker(void *arg) { for (;;) pause(); return 0; }
int main(int argc, char **argv) {
    pthread_t t;
    mark = argv[1];
    signal(SIGHUP, on_hup);
    pthread_create(&t, 0, worker, 0);
    pthread_exit(0);
}
"""


def test_a_pidfile_naming_a_thread_of_the_daemon_names_its_process(tracker: Tracker) -> None:
    """A thread's id is reachable in /proc as if it were a process: a pidfile that
    names one (edited by hand, or rewritten by the program) still leads to the
    daemon's process, for status, signal and stop, without a traceback."""
    program = tracker.start(sys.executable, "-c", f"{THREADED}; time.sleep(1000)")
    task = Path(f"/proc/{program}/task")
    threads = wait_for(lambda: [t.name for t in task.iterdir() if t.name != str(program)])
    Path(tracker.pidfile).write_text(f"{threads[0]}\n")
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"app is running (pid {program},")
    assert PIDLockFile(tracker.pidfile).read_pid() == program
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "CONT")
    assert lines(result) == (0, f"sent SIGCONT to app (pid {program})\n", "")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped app (pid {program}) in ")
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc for a pthread_exit program")
def test_a_daemon_whose_main_thread_exited_is_signalled_and_stopped(tracker: Tracker) -> None:
    source, binary = tracker.tmp_path / "mt.c", tracker.tmp_path / "mt"
    source.write_text(MAIN_THREAD_EXITS)
    subprocess.run(["gcc", "-pthread", "-o", str(binary), str(source)], check=True, timeout=60)
    mark = tracker.tmp_path / "hup"
    program = tracker.start(str(binary), str(mark))
    leader = Path(f"/proc/{program}/stat")
    wait_for(lambda: leader.read_text().rsplit(")", 1)[1].split()[0] == "Z", what="main to exit")
    try:  # the exited main thread's fds: none (another user than root may not look)
        assert os.listdir(f"/proc/{program}/fd") == []
    except PermissionError:
        pass
    assert len(os.listdir(f"/proc/{program}/task")) == 2
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"app is running (pid {program}, up ")
    assert result.stdout.endswith(f"): {binary} {mark}\n")
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "HUP")
    assert lines(result) == (0, f"sent SIGHUP to app (pid {program})\n", "")
    wait_for(mark.exists, what="the daemon's SIGHUP handler")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped app (pid {program}) in ")
    wait_gone(program)
    assert not os.path.exists(tracker.pidfile)


def test_a_pidfile_edited_to_name_a_live_stranger_says_which_holds_the_lock(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """A live process the pidfile names but that holds no lock did not "exit": every
    message says the pidfile names it, and which process holds the lock."""
    program = tracker.start("sleep", "1000")
    stranger = processes.popen(["sleep", "1000"])
    Path(tracker.pidfile).write_text(f"{stranger.pid}\n")
    told = f"app's pidfile names pid {stranger.pid}, which does not hold its lock; pid {program}"
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert lines(result) == (1, f"{told} holds it\n", "")
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert lines(result) == (1, "", f"daemonctx: error: {told} holds it; stop it first\n")
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "HUP")
    assert lines(result) == (1, "", f"daemonctx: error: {told} holds it; signalled none\n")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"stopped pid {program}, which still held its lock (app's pidfile named pid"
        f" {stranger.pid}, which did not hold its lock) in "
    )
    assert stranger.poll() is None and tracker.processes() == []


def test_stop_kills_a_child_that_ignores_the_stop_signal(tracker: Tracker) -> None:
    program = tracker.start("sh", "-c", "trap '' TERM; sh -c 'trap \"\" TERM; sleep 1000'; :")
    wait_for(lambda: len(tracker.processes()) == 3, what="both children")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, "--timeout", "0.3")
    assert result.returncode == 0, result.stderr
    assert f"stopped app (pid {program})" in result.stdout and "SIGKILL" in result.stdout
    assert tracker.processes() == []


# -- 3. the daemon cannot rewrite its pidfile ------------------------------------------


@needs_root
def test_a_daemon_running_as_nobody_cannot_write_its_pidfile(open_tracker: Tracker) -> None:
    tracker = open_tracker
    report = tracker.tmp_path / "report.json"
    program = readable(PROGRAMS / "pidfile_writer.py")
    pid = tracker.start(
        python_for_nobody(program),
        str(program),
        tracker.pidfile,
        options=("--user", "nobody", "--stdout", str(report)),
    )
    found = json.loads(wait_for(lambda: report.exists() and report.read_text(), what="report"))
    assert (found["pid"], found["uid"]) == (pid, NOBODY)
    assert found["fds"], "it holds the lock through a descriptor"
    assert all(result != "succeeded" for result in found["attempts"].values()), found
    assert Path(tracker.pidfile).read_text() == f"{pid}\n"
    assert status(tracker.pidfile).pid == pid


@needs_root
def test_a_context_dropping_to_nobody_cannot_write_its_pidfile(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    tmp_path.chmod(0o755)
    pidfile, report = tmp_path / "app.pid", tmp_path / "report.json"
    launcher = subprocess.run(
        [
            sys.executable,
            str(PROGRAMS / "pidfile_writer.py"),
            "--context",
            str(pidfile),
            str(report),
        ],
        env=ENV,
        timeout=30,
    )
    assert launcher.returncode == 0
    found = json.loads(wait_for(lambda: report.exists() and report.read_text(), what="report"))
    processes.add(found["pid"])
    assert found["uid"] == NOBODY and found["fds"]
    assert all(result != "succeeded" for result in found["attempts"].values()), found
    assert pidfile.read_text() == f"{found['pid']}\n"


# -- 4. root trusts no pidfile another user controls -----------------------------------


@needs_root
def test_root_refuses_a_pidfile_nobody_planted_and_locked(
    tracker: Tracker, shared_dir: Path, processes: ProcessTracker
) -> None:
    path = str(shared_dir / "app.pid")
    program = readable(PROGRAMS / "pidfile_holder.py")
    holder = as_nobody(
        processes,
        [python_for_nobody(program), str(program), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    wait_for(lambda: b"locked" in holder.stdout.readline(), what="nobody's lock")  # type: ignore[union-attr]
    assert os.stat(path).st_uid == NOBODY
    refusal = f"refusing pidfile {path}: {path} is owned by uid {NOBODY}, not by root or uid 0"

    result = tracker.daemonctx("status", "--pidfile", path)
    assert lines(result) == (4, f"app status is unknown: {refusal}\n", "")
    result = tracker.daemonctx("stop", "--pidfile", path)
    assert lines(result) == (4, "", f"daemonctx: error: {refusal}\n")
    result = tracker.daemonctx("start", "--pidfile", path, "--", "sleep", "1000")
    assert lines(result) == (4, "", f"daemonctx: error: {refusal}\n")
    assert holder.poll() is None and tracker.processes() == []


@needs_root
@pytest.mark.parametrize("how", ["world-writable file", "group-writable file", "nobody's dir"])
def test_root_refuses_a_pidfile_others_can_rewrite(tracker: Tracker, how: str) -> None:
    directory = tracker.tmp_path / "run"
    directory.mkdir()
    path = directory / "app.pid"
    if how == "nobody's dir":
        os.chown(directory, NOBODY, NOBODY)
        reason = f"{directory} is owned by uid {NOBODY}"
    else:
        path.write_text("1\n")
        if how == "world-writable file":
            path.chmod(0o646)
            reason = f"{path} is writable by others (mode 0646)"
        else:
            os.chown(path, 0, NOBODY)
            path.chmod(0o664)
            reason = f"{path} is writable by group {NOBODY} (mode 0664)"
    result = tracker.daemonctx("start", "--pidfile", str(path), "--", "sleep", "1000")
    assert result.returncode == 4 and reason in result.stderr, result.stderr
    assert tracker.processes() == []
    assert tracker.daemonctx("status", "--pidfile", str(path)).returncode == 4


@needs_root
def test_a_context_refuses_a_planted_pidfile_in_the_foreground(shared_dir: Path) -> None:
    path = shared_dir / "app.pid"
    subprocess.run(["touch", str(path)], user=NOBODY, group=NOBODY, check=True)
    code = f"""
from daemonctx import DaemonContext
from daemonctx.paths import UnsafePathError
from daemonctx.pidfile import PIDLockFile
try:
    DaemonContext(pidfile=PIDLockFile({str(path)!r})).open()
except UnsafePathError as exc:
    print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert result.stdout == (
        f"refusing pidfile {path}: {path} is owned by uid {NOBODY}, not by root or uid 0\n"
    )


# -- 5. a pidfile deleted under a running daemon ------------------------------------


@pytest.mark.parametrize("how", ["rm", "replaced"])
def test_a_deleted_pidfile_does_not_let_a_second_daemon_start(tracker: Tracker, how: str) -> None:
    pid = tracker.start("sleep", "1000")
    if how == "rm":
        os.unlink(tracker.pidfile)
    else:
        Path(tracker.pidfile + ".new").write_text("garbage\n")
        os.rename(tracker.pidfile + ".new", tracker.pidfile)
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"app is running (pid {pid}")
    assert result.stdout.endswith(f"; its pidfile {tracker.pidfile} was deleted or replaced\n")
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    message = f"app is already running (pid {pid}), though its pidfile {tracker.pidfile}"
    assert lines(result) == (
        1,
        "",
        f"daemonctx: error: {message} was deleted or replaced; the file has been put back\n",
    )
    assert tracker.processes() == [pid]
    assert Path(tracker.pidfile).read_text() == f"{pid}\n", "the start put the pidfile back"
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.endswith("sleep 1000\n")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"stopped app (pid {pid})")
    assert tracker.processes() == []
    tracker.start("sleep", "1000")


@pytest.mark.parametrize("content", ["", "another tool's state\n"])
@pytest.mark.parametrize("pidfile", ["none", "stale"])
def test_another_programs_lock_at_the_guards_name_is_no_daemon(
    tracker: Tracker, processes: ProcessTracker, content: str, pidfile: str
) -> None:
    """``flock /run/.app.pid.lock CMD``: another program locks a file of its own at
    the pidfile's hidden second name. Its lock is not the daemon's: status says not
    running, stop and signal touch nothing, a start runs beside it and leaves its
    file as it was."""
    guard = Path(tracker.pidfile).parent / ".app.pid.lock"
    guard.write_text(content)
    if pidfile == "stale":  # nobody holds it; its pid is gone (or a later process's)
        gone = subprocess.Popen(["true"])
        gone.wait(10)
        Path(tracker.pidfile).write_text(f"{gone.pid}\n")
    inode = guard.stat().st_ino
    locked = Path(tracker.tmp_path) / "locked"
    other = processes.popen(  # --no-fork: the process killed at the end holds the lock
        ["flock", "--no-fork", str(guard), "sh", "-c", f": > {locked}; exec sleep 1000"],
        env=ENV,
    )
    wait_for(locked.exists, what="flock took its lock")
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == (3 if pidfile == "none" else 1), result.stdout  # LSB: dead
    assert result.stdout.startswith("app is not running")
    assert tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "HUP").returncode == 7
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stdout) == (0, "app is not running\n")
    assert other.poll() is None, "the other program's process lives"
    pid = tracker.start("sleep", "1000")
    assert (guard.stat().st_ino, guard.read_text()) == (inode, content), "its file untouched"
    assert tracker.daemonctx("stop", "--pidfile", tracker.pidfile).returncode == 0
    assert not pid_alive(pid) and other.poll() is None
    assert (guard.stat().st_ino, guard.read_text()) == (inode, content)


def test_the_forking_recipe_stays_one_daemon_when_its_pidfile_is_deleted(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """examples/systemd/forking_daemon.py, as systemd runs it: after a failed start
    systemd unlinks PIDFile=, and Restart=on-failure starts it again."""
    pidfile = tmp_path / "app-forking.pid"
    argv = [
        sys.executable,
        str(ROOT / "examples/systemd/forking_daemon.py"),
        "--pidfile",
        str(pidfile),
    ]
    first = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    daemon = processes.add(int(pidfile.read_text()))
    processes.watch(lambda: [int(pidfile.read_text())] if pidfile.exists() else [])
    second = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=30)
    assert (second.returncode, second.stderr) == (
        69,
        f"forking_daemon: already running: {pidfile} is locked by running process {daemon}\n",
    )
    for _ in range(2):  # what systemd does after that failed start, then a retry
        pidfile.unlink()
        again = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=30)
        assert (again.returncode, again.stderr) == (
            69,
            f"forking_daemon: already running: {pidfile} was deleted or replaced, "
            f"but process {daemon} still holds its lock; the file has been put back\n",
        )
        assert int(pidfile.read_text()) == daemon, "the pidfile names the daemon again"
        assert read_pidfile_status(pidfile).pid == daemon


def test_a_daemon_that_starts_between_the_two_looks_is_running_not_deleted(
    tmp_path: Path, processes: ProcessTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``find`` looks at the pidfile, then follows its guard link (the name that
    outlives a deleted pidfile). A daemon that creates and locks both in between
    holds the pidfile: running, not "deleted or replaced" (which a second
    simultaneous `daemonctx start` reported). The pause between the two looks
    is made here: a real holder starts right after the first one."""
    import daemonctx.identity as module

    path = str(tmp_path / "app.pid")
    first_look = module._look
    holders: list[int] = []

    def then_a_holder_starts(seen: str, every_holder: bool) -> module.Found | None:
        found = first_look(seen, every_holder)
        if not holders:
            holder = processes.popen(
                [sys.executable, str(PROGRAMS / "pidfile_holder.py"), path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=ENV,
            )
            assert holder.stdout is not None
            assert holder.stdout.readline().split()[0] == b"ready"
            assert holder.stdout.readline().split()[0] == b"locked"
            holders.append(holder.pid)
        return found

    monkeypatch.setattr(module, "_look", then_a_holder_starts)
    state = status(path)
    (holder,) = holders
    assert (state.state, state.pid, state.deleted) == (ServiceState.RUNNING, holder, False)


# -- 6. log files -------------------------------------------------------------------


@needs_root
def test_a_log_symlink_planted_by_nobody_is_refused(tracker: Tracker, shared_dir: Path) -> None:
    target = tracker.tmp_path / "precious"
    target.write_text("root's data\n")
    log = shared_dir / "out.log"
    subprocess.run(["ln", "-s", str(target), str(log)], user=NOBODY, group=NOBODY, check=True)
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--stdout", str(log), "--", "sleep", "1000"
    )
    assert result.returncode == 4
    assert result.stderr.startswith(f"daemonctx: error: refusing --stdout {log}: ")
    assert result.stderr.count("\n") == 1
    assert target.read_text() == "root's data\n"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
def test_a_log_in_a_directory_others_can_write_is_refused(tracker: Tracker) -> None:
    open_dir = tracker.tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--stderr", str(open_dir / "e.log"), "--", "true"
    )
    assert result.returncode == 4 and "writable by others" in result.stderr
    assert not (open_dir / "e.log").exists() and tracker.processes() == []


@pytest.mark.parametrize(("umask", "mode"), [(None, 0o640), ("077", 0o600), ("0", 0o640)])
def test_logs_are_created_0640_less_the_umask(
    tracker: Tracker, umask: str | None, mode: int
) -> None:
    log = tracker.tmp_path / "out.log"
    options = ("--stdout", str(log), *(("--umask", umask) if umask else ()))
    tracker.start("sh", "-c", "echo hello; exec sleep 1000", options=options)
    wait_for(lambda: log.read_text() == "hello\n", what="output")
    assert log.stat().st_mode & 0o777 == mode


# -- python-daemon-era code -----------------------------------------------------------


def runner(action: str, pidfile: Path, log: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(PROGRAMS / "service_runner.py"), action, str(pidfile), str(log)]
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=30)


def test_a_python_daemon_style_runner_stops_after_its_daemon_was_killed(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    pidfile, log = tmp_path / "runner.pid", tmp_path / "runner.log"
    assert runner("start", pidfile, log).returncode == 0
    daemon = processes.add(int(pidfile.read_text()))
    assert runner("stop", pidfile, log).returncode == 0
    wait_gone(daemon)
    assert not pidfile.exists()
    assert runner("start", pidfile, log).returncode == 0
    daemon = processes.add(int(pidfile.read_text()))
    # Once a process has the dead daemon's pid, read_pid() says None (never a
    # stranger's), and this runner's staleness check cannot tell: the suites CI
    # runs beside this one aim forks at chosen pids, under this lock (as
    # conftest.spawn_as_pid): none does until the runner has looked.
    with open(NS_LAST_PID) as chooser:
        fcntl.flock(chooser, fcntl.LOCK_EX)
        os.kill(daemon, signal.SIGKILL)
        wait_reaped(daemon)  # as init does
        assert pidfile.exists(), "a SIGKILLed daemon leaves its pidfile"
        stopped = runner("stop", pidfile, log)
    assert (stopped.returncode, stopped.stderr) == (0, "")
    assert not pidfile.exists(), "stop cleared the stale pidfile"
    assert runner("start", pidfile, log).returncode == 0
    processes.add(int(pidfile.read_text()))


# -- who may look ----------------------------------------------------------------------


@needs_root
def test_nobody_sees_roots_daemon_running_but_may_not_stop_it(open_tracker: Tracker) -> None:
    tracker = open_tracker
    pid = tracker.start("sleep", "1000")

    def look() -> None:
        found = status(tracker.pidfile)
        assert (found.state, found.pid) == (ServiceState.RUNNING, pid), found
        with pytest.raises(ControlError) as refused:
            stop(tracker.pidfile)
        assert refused.value.exit_code == 4
        assert str(refused.value) == (
            f"{tracker.pidfile} is locked, but uid {NOBODY} may not see by which process"
        )

    run_as_nobody(look)
    assert tracker.processes() == [pid]


# -- the launcher stopping a daemon that missed ready_timeout --------------------------


@needs_root
def test_a_failed_start_never_signals_a_process_that_reused_the_daemons_pid(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """The daemon dies before ready while its child keeps the start-up pipe open; its
    pid is reused before the launcher (stopped meanwhile) sees the death; then the
    launcher stops what the start left: the child, not the process with that pid."""
    pids, go = tmp_path / "pids", tmp_path / "go"
    code = f"""
import os, time
from daemonctx import DaemonContext
launcher = os.getpid()
with DaemonContext(ready_on_open=False):
    child = os.fork()
    if child == 0:
        time.sleep(1000)   # keeps the start-up pipe open
    with open({str(pids)!r}, "w") as f:
        f.write(f"{{launcher}} {{os.getpid()}} {{child}}")
    deadline = time.monotonic() + 20
    while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
        time.sleep(0.005)
    os._exit(0)
"""
    reaper = processes.popen(
        [sys.executable, str(PROGRAMS / "reaper.py"), sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    text = wait_for(lambda: pids.exists() and pids.read_text(), what="pids")
    launcher, daemon, child = map(int, text.split())
    processes.add(child)
    # Pinned: its pid may be reused once it is gone (other suites rewind the pids).
    child_fd = os.pidfd_open(child)
    os.kill(launcher, signal.SIGSTOP)
    try:
        go.touch()
        wait_reaped(daemon)
        victim = processes.adopt(spawn_as_pid(daemon, ["sleep", "1000"]))
    finally:
        os.kill(launcher, signal.SIGCONT)
    _, stderr = reaper.communicate(timeout=30)
    assert reaper.returncode == 1
    assert f"the daemon exited before it was ready (pid {daemon})" in stderr
    assert victim.poll() is None, "the process that reused the pid lives"
    try:
        assert select.select([child_fd], [], [], 0)[0], "the child that kept the pipe was stopped"
    finally:
        os.close(child_fd)


def test_restart_stops_the_child_that_kept_the_lock(tracker: Tracker) -> None:
    program = tracker.start("sh", "-c", "sleep 1000; :")
    child = wait_for(lambda: [p for p in tracker.processes() if p != program], what="child")[0]
    os.kill(program, signal.SIGKILL)
    wait_gone(program)
    result = tracker.daemonctx("restart", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith(f"stopped pid {child}, which still held its lock")
    new = int(second.split("pid ")[1].rstrip(")"))
    assert tracker.processes() == [new] and int(Path(tracker.pidfile).read_text()) == new


@needs_root
def test_nobodys_helper_that_exits_leaves_a_lock_root_will_not_touch(
    tracker: Tracker, shared_dir: Path, processes: ProcessTracker
) -> None:
    """A local user plants a pidfile, locks it from a short-lived helper whose child
    keeps the lock, and waits for the helper's pid to be reused by root's process."""
    path = shared_dir / "app.pid"
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'%d\\n' % os.getpid())\n"
        "if os.fork() == 0:\n"
        "    os.dup2(os.open('/dev/null', os.O_WRONLY), 1)\n"
        "    os.setsid(); time.sleep(1000)\n"
        "print(os.getpid(), flush=True)\n"
    )
    python = python_for_nobody()
    helper = as_nobody(processes, [python, "-c", code], stdout=subprocess.PIPE)
    out, _ = helper.communicate(timeout=30)
    helper_pid = int(out)
    keeper = find_lock_holders_of(path)  # the helper's child, which kept the lock
    processes.pids.update(keeper)
    assert keeper and helper_pid not in keeper
    wait_reaped(helper_pid)
    victim = spawn_as_pid(helper_pid, ["sleep", "1000"])
    processes.adopt(victim)
    result = tracker.daemonctx("stop", "--pidfile", str(path))
    assert result.returncode == 4 and "refusing pidfile" in result.stderr
    assert victim.poll() is None


def find_lock_holders_of(path: Path) -> list[int]:
    from daemonctx import procfs

    return procfs.find_lock_holders(procfs.file_key(os.stat(path))).pids


@needs_root
def test_a_service_refuses_an_output_path_nobody_planted(shared_dir: Path, tmp_path: Path) -> None:
    from daemonctx import Service

    target = tmp_path / "precious"
    target.write_text("root's data\n")
    log = shared_dir / "service.log"
    subprocess.run(["ln", "-s", str(target), str(log)], user=NOBODY, group=NOBODY, check=True)
    service = Service(tmp_path / "svc.pid", stderr=str(log))
    with pytest.raises(ControlError) as refused:
        service.make_context(detach=True)
    assert refused.value.exit_code == 4
    assert str(refused.value).startswith(f"refusing stderr {log}: ")
    assert target.read_text() == "root's data\n"


def test_the_pidfile_has_two_names_and_leaves_none(tracker: Tracker) -> None:
    """The hidden second name comes and goes with the pidfile, also when a start
    takes over the stale pidfile of a SIGKILLed daemon (both names on one file)."""
    directory = Path(tracker.pidfile).parent
    names = lambda: sorted(p.name for p in directory.iterdir() if "app" in p.name)  # noqa: E731
    pid = tracker.start("sleep", "1000")
    assert names() == [".app.pid.lock", "app.pid"]
    assert os.stat(tracker.pidfile).st_ino == os.stat(directory / ".app.pid.lock").st_ino
    os.kill(pid, signal.SIGKILL)
    wait_reaped(pid)
    again = tracker.start("sleep", "1000")
    assert names() == [".app.pid.lock", "app.pid"]
    assert Path(tracker.pidfile).read_text() == f"{again}\n"
    assert tracker.daemonctx("stop", "--pidfile", tracker.pidfile).returncode == 0
    assert names() == []


def test_a_live_daemon_whose_pidfile_holds_no_lock_is_neither_stopped_nor_said_dead(
    tracker: Tracker, processes: ProcessTracker
) -> None:
    """A daemon started by a tool that takes no lock (``start-stop-daemon --start
    --background --make-pidfile``, mid-migration): its pidfile names it, and it
    started before the file was written. Not proven ours: ``stop`` and ``signal``
    touch nothing and exit 1, saying why, and the file stays (``stop`` said "not
    running", exit 0, and removed the live daemon's pidfile); ``start`` starts no
    second copy; ``status`` is unknown (4), not "dead" (1). A pid reused after the
    write is still a stale file's."""
    daemon = processes.popen(["sleep", "1000"])
    Path(tracker.pidfile).write_text(f"{daemon.pid}\n")
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 4, result
    assert f"names pid {daemon.pid}, which runs but holds no lock on it" in result.stdout
    for command in (["stop"], ["signal", "HUP"]):
        result = tracker.daemonctx(*command[:1], "--pidfile", tracker.pidfile, *command[1:])
        assert result.returncode == 1, result
        assert "which runs but holds no lock on it" in result.stderr, result
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", "sleep", "1000")
    assert result.returncode == 1, result  # not a second copy beside it
    assert "holds no lock on it: not proven to be the daemon" in result.stderr, result
    assert "not started beside it; stop it first" in result.stderr, result
    assert Path(tracker.pidfile).read_text() == f"{daemon.pid}\n"
    assert daemon.poll() is None, "never signalled (SIGHUP or SIGTERM would end it)"
    os.utime(tracker.pidfile, (1, 1))  # written before the process started: another's pid
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert (result.returncode, result.stdout) == (0, "app is not running\n"), result
    assert not os.path.exists(tracker.pidfile) and daemon.poll() is None
