"""``daemonctx start``'s launcher while it waits for the program: a start reported
failed leaves no process and no pidfile (the program's children that hold the
pidfile's lock, or are in its session, included), SIGTERM and SIGHUP are Ctrl-C,
the handoff works with fds past 1024, and ``--notify`` believes READY=1 only from
the program. A refused pidfile and a relative path in a deleted directory are one
line.

Processes carry the ``tracker`` token; the others a test starts are killed by the
``processes`` fixture. Waits are on a file, a pidfd or a pipe, each with a bound.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    NOBODY,
    STARTED,
    ProcessTracker,
    Tracker,
    needs_root,
    needs_tools,
    pid_alive,
    python_for_nobody,
    python_program,
    wait_for,
    wait_gone,
)

from daemonctx.pidfile import PIDLockFile
from daemonctx.program import ProgramContext

# -- a start reported failed stops what the program left ------------------------------


# A program that forks a child which closes every fd but a pipe to its parent (the
# pidfile's lock too: it holds no lock, it is only in the program's session), then,
# once the child has said so on the pipe, exits 3 ("exit") or sleeps ("stay").
_FORKS_A_CHILD = """
import os, sys, time
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.closerange(3, write_end)
    os.closerange(write_end + 1, 1024)
    os.write(write_end, b"closed")
    os.close(write_end)
    time.sleep(1000)
    os._exit(0)
os.close(write_end)
os.read(read_end, 6)
if sys.argv[1] == "exit":
    os._exit(3)
time.sleep(1000)
"""


def _forks_a_child(then: str) -> tuple[str, ...]:
    return (sys.executable, "-c", _FORKS_A_CHILD, then)


_NO_READY = r"did not send READY=1 within 0\.5 s; stopped it"
_EXITED = r"exited before it sent READY=1"
_TOO_SOON = r"exited within 0\.5 s of its start \(--ready-after 0\.5\)"


@pytest.mark.parametrize(
    ("options", "program", "error"),
    [
        (("--notify", "--timeout", "0.5"), ("sh", "-c", "sleep 1000 & sleep 1001"), _NO_READY),
        (("--notify",), ("sh", "-c", "sleep 1000 & exit 0"), _EXITED),
        (("--ready-after", "0.5"), ("sh", "-c", "sleep 1000 & exit 3"), _TOO_SOON),
        (("--notify", "--timeout", "0.5"), _forks_a_child("stay"), _NO_READY),
        (("--notify",), _forks_a_child("exit"), _EXITED),
        (("--ready-after", "0.5"), _forks_a_child("exit"), _TOO_SOON),
    ],
    ids=[
        "notify-timeout",
        "notify-exit",
        "ready-after",
        "session-notify-timeout",
        "session-notify-exit",
        "session-ready-after",
    ],
)
def test_a_failed_start_stops_what_the_program_left(
    tracker: Tracker, options: tuple[str, ...], program: tuple[str, ...], error: str
) -> None:
    """Children that hold the pidfile's lock, and children in the session start
    created that hold none (these were left running), are stopped with the program."""
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, *options, "--", *program)
    assert result.returncode == 1
    assert re.fullmatch(rf"daemonctx: error: app \(pid \d+\) {error}\n", result.stderr), (
        result.stderr
    )
    assert tracker.processes() == [], "the children were stopped"
    assert not os.path.exists(tracker.pidfile)


def _failed_context(pidfile: Path, daemon_pid: int, session: int) -> ProgramContext:
    """A start's context as its launcher holds it once the start has failed."""
    context = ProgramContext("app", None, 1.0, pidfile=PIDLockFile(str(pidfile)))
    context._daemon_pid = daemon_pid
    context._session = session
    return context


def _reaped_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return int(proc.stdout)


# A process that takes the pidfile's lock, writes its pid and, with FORK, hands the
# lock to a child in a session of its own and exits: "locked PID" names the holder.
_HOLDER = """
import fcntl, os, signal, sys
f = open(sys.argv[1], "w")
fcntl.flock(f, fcntl.LOCK_EX)
f.write(str(os.getpid())); f.flush()
if sys.argv[2] == "fork" and os.fork():
    os._exit(0)
if sys.argv[2] == "fork":
    os.setsid()
print("locked", os.getpid(), flush=True)
signal.pause()
"""


def _hold(processes: ProcessTracker, pidfile: Path, fork: bool) -> tuple[int, int]:
    """(holder, locker): a process holding ``pidfile``'s lock, in a session of its own,
    and the pid that took the lock (the holder itself, or its exited parent)."""
    proc = processes.popen(
        [sys.executable, "-c", _HOLDER, str(pidfile), "fork" if fork else "stay"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded: the holder prints at once, or exits (EOF)
    assert line.startswith("locked "), line
    holder = processes.add(int(line.split()[1]))
    return holder, proc.pid


def test_the_clean_up_leaves_alone_a_lock_another_start_took(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """Our program gone, another start's daemon took the pidfile: not ours to stop."""
    pidfile = tmp_path / "app.pid"
    holder, _locker = _hold(processes, pidfile, fork=False)
    _failed_context(pidfile, _reaped_pid(), os.getsid(0))._stop_program()
    assert pid_alive(holder)
    assert pidfile.read_text() == str(holder)


def test_the_clean_up_stops_a_holder_of_the_programs_session(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    pidfile = tmp_path / "app.pid"
    holder, _locker = _hold(processes, pidfile, fork=False)
    _failed_context(pidfile, _reaped_pid(), holder)._stop_program()  # its session: ours
    wait_gone(holder)
    assert not pidfile.exists()


def test_the_clean_up_stops_a_holder_of_the_lock_the_program_took(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """A child that made a session of its own still holds the lock the program took."""
    pidfile = tmp_path / "app.pid"
    holder, locker = _hold(processes, pidfile, fork=True)
    _failed_context(pidfile, locker, os.getsid(0))._stop_program()
    wait_gone(holder)
    assert not pidfile.exists()


# -- SIGTERM and SIGHUP to the waiting launcher ----------------------------------------


def _program_pid(marker: Path) -> int | None:
    try:
        line = marker.read_text()
    except FileNotFoundError:
        return None
    return int(json.loads(line)["pid"]) if line.endswith("\n") else None


def _as_from_a_terminal() -> None:
    """SIGINT and SIGQUIT at their defaults, as a terminal's shell leaves them: a test
    runner started in the background (CI's suites side by side) has them ignored,
    and a launcher keeps a signal it was started with ignored (``nohup``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _waiting_launcher(
    tracker: Tracker, options: tuple[str, ...]
) -> tuple[subprocess.Popen[str], int]:
    """``start`` of a program that never becomes ready, and the program's pid once it
    runs: the launcher waits on it (until its 60 s pass)."""
    marker = tracker.tmp_path / "up.jsonl"
    program = python_program("--never-ready", "--marker", str(marker))
    launcher = tracker.popen(
        [*tracker.command(), "start", "--pidfile", tracker.pidfile, *options, "--", *program],
        env=tracker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )
    return launcher, wait_for(lambda: _program_pid(marker), what="the program to run")


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1],
    ids=["TERM", "HUP", "QUIT", "USR1"],
)
@pytest.mark.parametrize(
    "options", [("--notify",), ("--ready-after", "60")], ids=["notify", "ready-after"]
)
def test_a_signal_to_the_waiting_launcher_stops_the_program(
    tracker: Tracker, signum: int, options: tuple[str, ...]
) -> None:
    launcher, pid = _waiting_launcher(tracker, options)
    launcher.send_signal(signum)
    stdout, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signum, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert not pid_alive(pid)
    assert tracker.processes() == []
    assert not os.path.exists(tracker.pidfile)


def test_a_launcher_started_under_nohup_waits_on(tracker: Tracker) -> None:
    """SIGHUP ignored when the launcher starts (``nohup``) stays ignored."""
    marker = tracker.tmp_path / "ready.jsonl"
    program = python_program("--ready-after", "1", "--marker", str(marker))
    argv = [*tracker.command(), "start", "--pidfile", tracker.pidfile, "--notify", "--", *program]
    nohup = "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    nohup += "os.execv(sys.argv[1], sys.argv[1:])"
    launcher = tracker.popen(
        [sys.executable, "-c", nohup, *argv],
        env=tracker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(lambda: _notify_socket(tracker), what="the program to run")  # the launcher waits
    launcher.send_signal(signal.SIGHUP)
    stdout, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == 0, stderr
    assert marker.exists() and STARTED.fullmatch(stdout), stdout


def test_a_second_signal_does_not_cut_the_clean_up_short(tracker: Tracker) -> None:
    """The program takes its time over SIGTERM: a second SIGTERM to the launcher
    meanwhile (an impatient ``timeout``, a service manager) must not leave it running."""
    up, termed = tracker.tmp_path / "up", tracker.tmp_path / "termed"
    script = 'trap "echo > $1" TERM; echo > $0; while :; do sleep 1 & wait; done'
    start = ["start", "--pidfile", tracker.pidfile, "--ready-after", "60"]
    launcher = tracker.popen(
        [*tracker.command(), *start, "--", "sh", "-c", script, str(up), str(termed)],
        env=tracker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(up.exists, what="the program to run")
    launcher.send_signal(signal.SIGTERM)
    wait_for(termed.exists, what="the launcher to stop the program")
    launcher.send_signal(signal.SIGTERM)  # while it waits for the program to exit
    _stdout, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signal.SIGTERM, stderr
    assert tracker.processes() == []
    assert not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM, signal.SIGHUP), (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)],
    ids=["TERM-HUP", "HUP-TERM-INT"],
)
def test_signals_that_come_together_stop_the_program_once(
    tracker: Tracker, signals: tuple[int, ...]
) -> None:
    """Different signals at once are pending together: Python runs the second's
    handler after the first's raised, inside the clean-up; it must not cut it short
    (the program ran on, the pidfile stayed, and start exited 143)."""
    launcher, pid = _waiting_launcher(tracker, ("--notify",))
    for signum in signals:
        launcher.send_signal(signum)
    _stdout, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode in {128 + signum for signum in signals}, stderr
    assert "Traceback" not in stderr and "race condition" not in stderr, stderr
    assert not pid_alive(pid) and tracker.processes() == []
    assert not os.path.exists(tracker.pidfile)


# A signal at an exact step of the start, made deterministic: the launcher runs with
# one of daemonctx's steps wrapped (the processes and the signals stay real).
_AT_A_STEP = """
import os, signal, sys, time
from daemonctx import handoff, process, program
from daemonctx.cli import main
step, signum, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's, not one inherited
if step == "after-fork":  # the launcher, the instant its first child exists
    fork = process.fork
    def signalled_fork(what):
        child = fork(what)
        if child and what == "first fork":
            os.kill(os.getpid(), signum)
        return child
    process.fork = signalled_fork
elif step == "before-exec":  # the daemon holds the pidfile, its exec still to come
    exec_program = program.exec_program
    def slow_exec(context, launch, lock):
        open(marker, "w").close()
        time.sleep(60)
        exec_program(context, launch, lock)
    program.exec_program = slow_exec
elif step == "cleaning-up":  # a failed start's clean-up, as it begins
    ignore, first = program._ignore_interruptions, []
    def interrupted_ignore():
        if not first:
            first.append(1)
            os.kill(os.getpid(), signum)  # lands before the signals are blocked
        ignore()
    program._ignore_interruptions = interrupted_ignore
else:  # "after-exec": the program runs, the launcher has not heard of its exec yet
    wait = handoff.Handoff.wait
    def late_wait(self, timeout=None):
        deadline = time.monotonic() + 20
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signum)
        return wait(self, timeout)
    handoff.Handoff.wait = late_wait
sys.exit(main(sys.argv[4:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("step", ["after-fork", "before-exec", "after-exec"])
def test_a_signal_at_any_step_of_the_start_leaves_nothing(
    tracker: Tracker, step: str, signum: int
) -> None:
    """A start reported failed leaves no process and no pidfile, wherever the signal
    lands: just after the first fork (the launcher died of SIGTERM there, or a
    Ctrl-C came out of open(), and the daemon started anyway), or while the daemon
    holds the pidfile, or once the program runs but before the launcher heard of
    its exec (the pidfile stayed, naming a dead pid)."""
    marker = tracker.tmp_path / "marker"
    program = ["sh", "-c", 'echo > "$0"; exec sleep 1000', str(marker)]
    start = ["start", "--notify", "--pidfile", tracker.pidfile, "--", *program]
    argv = [sys.executable, "-c", _AT_A_STEP, step, str(int(signum)), str(marker), *start]
    launcher = tracker.popen(
        argv, env=tracker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if step == "before-exec":  # the other steps signal the launcher from inside
        wait_for(marker.exists, what="the daemon to hold its pidfile")
        assert os.path.exists(tracker.pidfile)
        launcher.send_signal(signum)
    stdout, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signum, stderr
    assert stdout == "" and "Traceback" not in stderr, stderr
    assert tracker.processes() == []
    assert not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_as_a_failed_start_cleans_up_does_not_cut_it_short(
    tracker: Tracker, signum: int
) -> None:
    """The program dies within --ready-after; the signal lands as the clean-up
    begins, before it blocks the signals: the clean-up runs again, to its end (the
    child holding the lock, and the pidfile, were left), and the start fails with
    its own reason."""
    marker = tracker.tmp_path / "marker"
    program = ["sh", "-c", 'sleep 1000 & echo > "$0"; exec sleep 1001', str(marker)]
    start = ["start", "--ready-after", "30", "--pidfile", tracker.pidfile, "--", *program]
    argv = [sys.executable, "-c", _AT_A_STEP, "cleaning-up", str(int(signum)), "-", *start]
    launcher = tracker.popen(
        argv, env=tracker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(marker.exists, what="the program to run")
    os.kill(int(Path(tracker.pidfile).read_text()), signal.SIGKILL)
    stdout, stderr = launcher.communicate(timeout=30)
    assert (launcher.returncode, stdout) == (1, ""), stderr
    assert stderr.endswith("exited within 30 s of its start (--ready-after 30)\n"), stderr
    assert tracker.processes() == []
    assert not os.path.exists(tracker.pidfile)


# -- a launcher with fds past 1024 -----------------------------------------------------


@needs_root
@pytest.mark.parametrize("options", [(), ("--notify",)], ids=["exec", "notify"])
def test_a_launcher_with_fds_past_1024_starts(tracker: Tracker, options: tuple[str, ...]) -> None:
    """The handoff pipe gets the lowest free fd: past 1024 here, which select() refuses."""
    argv = [*tracker.command(), "start", "--pidfile", tracker.pidfile, *options, "--"]
    argv += python_program() if options else ["sleep", "1000"]
    code = f"""
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
null = os.open("/dev/null", os.O_RDONLY)
os.set_inheritable(null, True)  # fds 3 to 1099 stay open across the exec: none is free
for fd in range(3, 1100):
    if fd != null:
        os.dup2(null, fd)
os.execv(sys.executable, {argv!r})
"""
    result = subprocess.run(
        [sys.executable, "-c", code], env=tracker.env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    match = STARTED.fullmatch(result.stdout)
    assert match, result.stdout
    assert tracker.processes() == [int(match.group(2))]


# -- --notify believes the program only ------------------------------------------------


def _notify_socket(tracker: Tracker) -> str | None:
    """The NOTIFY_SOCKET the launcher gave the program (found by its environment)."""
    for pid in tracker.processes():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(b"NOTIFY_SOCKET=") and b"daemonctx" in entry:
                return entry.split(b"=", 1)[1].decode()
    return None


_SEND_READY = """
import socket, sys
address = sys.argv[1]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"READY=1", "\\0" + address[1:] if address.startswith("@") else address)
"""


@needs_root
@needs_tools("setpriv")
def test_notify_ignores_ready_from_another_user(tracker: Tracker) -> None:
    """The abstract address is in /proc/net/unix for all to read: nobody's READY=1
    does not count, the program's own (2 s later) does."""
    marker = tracker.tmp_path / "ready.jsonl"
    program = python_program("--ready-after", "2", "--marker", str(marker))
    launcher = tracker.popen(
        [*tracker.command(), "start", "--pidfile", tracker.pidfile, "--notify", "--", *program],
        env=tracker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = wait_for(lambda: _notify_socket(tracker), what="the program's NOTIFY_SOCKET")
    python = python_for_nobody()
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    subprocess.run([*setpriv, python, "-c", _SEND_READY, address], check=True, timeout=30)
    stdout, stderr = launcher.communicate(timeout=30)
    assert marker.exists(), "started only once the program itself sent READY=1"
    assert launcher.returncode == 0, stderr
    assert STARTED.fullmatch(stdout), stdout
    assert re.fullmatch(
        rf"daemonctx: warning: ignored READY=1 from pid \d+ \(uid {NOBODY}\): not the program\n",
        stderr,
    ), stderr


# Once ready, hands its manager an fd to keep (sd_pid_notify_with_fds, "FDSTORE=1"),
# a file only root may read, with a STATUS=, every 20 ms; says so in a file.
_STORES_A_SECRET_FD = """
import os, socket, sys, time
go, secret, said = sys.argv[1:]
while not os.path.exists(go):
    time.sleep(0.01)
address = os.environ["NOTIFY_SOCKET"]
address = "\\0" + address[1:] if address.startswith("@") else address
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"READY=1", address)
fd = os.open(secret, os.O_RDONLY)
while True:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendmsg([b"FDSTORE=1\\nSTATUS=the password is hunter2"],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little"))],
                          0, address)
        except OSError as exc:
            open(said, "w").write(exc.strerror)
    time.sleep(0.02)
"""

# nobody, who read the program's NOTIFY_SOCKET in /proc/net/unix while start
# waited, binds it (making its directory again) once start has exited.
_TAKES_THE_ADDRESS = """
import os, socket, sys
address = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    if address.startswith("@"):
        sock.bind("\\0" + address[1:])
    else:
        os.makedirs(os.path.dirname(address), exist_ok=True)
        sock.bind(address)
except OSError as exc:
    print("refused:", exc.strerror)
    sys.exit()
sock.settimeout(10)
data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(16))
fds = [int.from_bytes(d[:4], "little") for _, _, d in ancillary]
print("received:", data, "and", os.read(fds[0], 20) if fds else "no fd")
"""


@needs_root
@needs_tools("setpriv")
def test_another_user_cannot_take_the_notify_socket_once_start_has_exited(
    tracker: Tracker,
) -> None:
    """What the program sends after READY=1 (an fd it hands over with FDSTORE=1)
    must reach no one: its NOTIFY_SOCKET is a path in a directory of root's, gone
    with start, which nobody can make again. The abstract address it was could be
    bound by anyone once start had exited, and its fds received."""
    go, said = tracker.tmp_path / "go", tracker.tmp_path / "said"
    secret = tracker.tmp_path / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    program = (sys.executable, "-c", _STORES_A_SECRET_FD, str(go), str(secret), str(said))
    launcher = tracker.popen(
        [*tracker.command(), "start", "--pidfile", tracker.pidfile, "--notify", "--", *program],
        env=tracker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    address = wait_for(lambda: _notify_socket(tracker), what="the program's NOTIFY_SOCKET")
    listed = Path("/proc/net/unix").read_text()
    assert address in listed or "@" + address[1:] in listed, "public: anyone can read it"
    go.touch()
    stdout, stderr = launcher.communicate(timeout=30)
    started = STARTED.fullmatch(stdout)
    assert (launcher.returncode, stderr) == (0, "") and started, (stdout, stderr)
    pid = tracker.add(int(started.group(2)))
    python = python_for_nobody()
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    taker = subprocess.run([*setpriv, python, "-c", _TAKES_THE_ADDRESS, address],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert taker.stdout == "refused: Permission denied\n", taker
    assert not os.path.exists(os.path.dirname(address)), "removed when start exited"
    text = wait_for(  # written by the program: read once whole
        lambda: said.exists() and said.read_text(), what="the program's next send to fail"
    )
    assert text == "No such file or directory"
    assert tracker.processes() == [pid]


_SETSID_THEN_READY = """
import os, signal, socket
os.setsid()
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
signal.pause()
"""


def test_notify_believes_a_program_in_a_session_of_its_own(tracker: Tracker) -> None:
    pid = tracker.start(
        sys.executable, "-c", _SETSID_THEN_READY, options=("--notify", "--timeout", "10")
    )
    assert tracker.processes() == [pid]


@needs_tools("systemd-notify")
def test_notify_believes_systemd_notify(tracker: Tracker) -> None:
    """``systemd-notify --ready`` sends from a process of its own, gone soon after."""
    script = "systemd-notify --ready; exec sleep 1000"
    pid = tracker.start("sh", "-c", script, options=("--notify", "--timeout", "10"))
    wait_for(lambda: tracker.processes() == [pid], what="systemd-notify to exit")
    status = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert status.returncode == 0 and f"(pid {pid}," in status.stdout, status


def test_notify_believes_a_sender_of_the_program_s_user_reaped_before_it_is_read(
    tracker: Tracker,
) -> None:
    """The program's child sends READY=1 and is reaped before the launcher reads it
    (a busy launcher: stopped here). A process of the program's user counts, gone
    or not (its uid is the kernel's, whatever took its pid since). Linux 6.5's
    SO_PASSPIDFD made it "not the program", and the start failed at its timeout."""
    go, sent = tracker.tmp_path / "go", tracker.tmp_path / "sent"
    script = (
        f"while [ ! -e {go} ]; do sleep 0.01; done; "
        f'{sys.executable} -c "$0" "$NOTIFY_SOCKET"; : > {sent}; exec sleep 1000'
    )
    launcher = tracker.popen(
        [*tracker.command(), "start", "--pidfile", tracker.pidfile, "--notify",
         "--timeout", "30", "--", "sh", "-c", script, _SEND_READY],
        env=tracker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: _notify_socket(tracker), what="the program's NOTIFY_SOCKET")
    launcher.send_signal(signal.SIGSTOP)
    try:
        go.touch()
        wait_for(sent.exists, what="the sender to be reaped")  # sh waited for it
    finally:
        launcher.send_signal(signal.SIGCONT)
    stdout, stderr = launcher.communicate(timeout=30)
    assert (launcher.returncode, stderr) == (0, ""), stdout
    assert STARTED.fullmatch(stdout), stdout


def test_who_may_say_ready(tmp_path: Path, processes: ProcessTracker) -> None:
    """The program's session and tree, whoever sends; a process of the program's own
    user anywhere (a grandchild reparented out of the tree, a sender gone before it
    is looked at); another user's outside the tree, never."""
    stranger = processes.popen(["sleep", "1000"], start_new_session=True)
    gone = _reaped_pid()
    context = _failed_context(tmp_path / "app.pid", _reaped_pid(), os.getsid(0))
    context.uid = os.geteuid()
    assert context._from_the_program(os.getpid(), NOBODY)  # our session: the program's here
    assert context._from_the_program(stranger.pid, os.geteuid())  # the program's user
    assert context._from_the_program(gone, os.geteuid())
    if os.geteuid() == 0:
        assert not context._from_the_program(stranger.pid, NOBODY)
        assert not context._from_the_program(gone, NOBODY)
    else:
        assert not context._from_the_program(stranger.pid, 0)


# -- restart's refusal, a deleted current directory ------------------------------------


@needs_root
def test_restart_refuses_an_untrusted_pidfile_with_4(tracker: Tracker) -> None:
    pidfile = Path(tracker.pidfile)
    pidfile.write_text("1\n")
    os.chown(pidfile, NOBODY, NOBODY)
    for action in ("start", "restart"):
        result = tracker.daemonctx(action, "--pidfile", str(pidfile), "--", "sleep", "1000")
        assert result.returncode == 4, (action, result.stderr)
        assert result.stderr == (
            f"daemonctx: error: refusing pidfile {pidfile}: {pidfile} is owned by uid"
            f" {NOBODY}, not by root or uid 0\n"
        ), (action, result.stderr)
    assert tracker.processes() == []


@pytest.mark.parametrize(
    ("args", "typed"),
    [(("--pidfile", "rel.pid"), "--pidfile rel.pid"), (("--chdir", "rel"), "--chdir rel")],
    ids=["pidfile", "chdir"],
)
def test_a_relative_path_in_a_deleted_directory_is_one_line(
    tracker: Tracker, args: tuple[str, ...], typed: str
) -> None:
    gone = tracker.tmp_path / "gone"
    gone.mkdir()
    if "--pidfile" not in args:
        args = ("--pidfile", tracker.pidfile, *args)
    command = [*tracker.command(), "start", *args, "--", "sleep", "1000"]
    result = subprocess.run(
        ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', str(gone), *command],
        env=tracker.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"daemonctx: error: {typed}: relative to a current directory that was deleted;"
        " give an absolute path\n"
    )
    assert tracker.processes() == []
