"""Signal handling: the default map, user maps laid over it, and a clean SIGTERM."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys

import pytest
from conftest import (
    DAEMON,
    Daemons,
    ProcessTracker,
    pid_alive,
    proc_status,
    read_events,
    run_script,
    wait_for,
    wait_gone,
)

from daemonctx import DaemonContext, DaemonOptionError, Terminated


def _bits(mask: int) -> set[int]:
    """The signal numbers set in a /proc/<pid>/status mask."""
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def _mask(status: dict[str, str], key: str) -> set[int]:
    return _bits(int(status[key], 16))


def test_default_map_ignores_job_control_and_catches_sigterm(daemons: Daemons) -> None:
    event, _ = daemons.start({})
    status = proc_status(event["pid"])
    assert {signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU} <= _mask(status, "SigIgn")
    assert signal.SIGTERM in _mask(status, "SigCgt")


def test_sigterm_unwinds_and_closes_the_context(daemons: Daemons, tmp_path) -> None:
    pidfile = tmp_path / "app.pid"
    event, report = daemons.start({"options": {"pidfile": str(pidfile)}})
    pid = event["pid"]
    assert pidfile.exists()
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    events = [e["event"] for e in read_events(report)]
    assert events == ["open", "closing", "closed"], "finally blocks ran, then close()"
    assert read_events(report)[-1]["is_open"] is False
    assert not pidfile.exists(), "close() released the pidfile"


def test_sigterm_exit_status_is_zero(processes: ProcessTracker) -> None:
    """A requested stop is a clean stop: systemd must not count it as a failure."""
    config = '{"report": "/dev/null", "options": {"detach_process": false}}'
    proc = processes.popen([sys.executable, str(DAEMON), config], stderr=subprocess.PIPE)
    wait_for(lambda: signal.SIGTERM in _mask(proc_status(proc.pid), "SigCgt"), 10, "handler")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    assert proc.stderr.read() == b"", "a clean stop prints nothing"


# -- the first fork: terminal signals held until the child has a session of its own ---------

# Run in a fresh interpreter: wraps the call the first child makes to leave the
# launcher's session, so that just before setsid() the child notes its signal mask,
# sends itself the SIGHUP a terminal would send (`ssh -t host cmd` ending), and notes
# that it lived on with the signal pending. Nothing in daemonctx is changed.
FIRST_CHILD_PROBE = """
import json, os, signal
import daemonctx.process
from daemonctx import DaemonContext
from daemonctx.pidfile import PIDLockFile

signal.signal(signal.SIGHUP, signal.SIG_DFL)  # what a terminal's SIGHUP does: kill

def mask(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    raise LookupError(field)

def note(**fields):
    with open({record!r}, "a") as f:
        f.write(json.dumps(fields) + "\\n")

start_new_session = daemonctx.process.start_new_session

def probe():
    note(pid=os.getpid(), sid=os.getsid(0), blocked=mask("SigBlk"))
    os.kill(os.getpid(), signal.SIGHUP)
    note(pid=os.getpid(), pending=mask("ShdPnd"))
    start_new_session()

daemonctx.process.start_new_session = probe
with DaemonContext(pidfile=PIDLockFile({pidfile!r})):
    signal.pause()
"""


def test_first_child_holds_terminal_signals_until_it_has_its_own_session(
    tmp_path, processes: ProcessTracker
) -> None:
    """DaemonContext blocks SIGHUP, SIGINT, SIGQUIT and SIGTSTP across the first fork:
    until setsid() the child is in the terminal's foreground group, and one of them
    would kill (or stop) it there. A SIGHUP sent in that window waits, and the daemon
    comes up. (The ssh -t test cannot fail on a machine where no SIGHUP comes.)"""
    record, pidfile = tmp_path / "first-child.jsonl", tmp_path / "app.pid"
    processes.watch(lambda: [int(pidfile.read_text())])
    result = run_script(
        FIRST_CHILD_PROBE.format(record=str(record), pidfile=str(pidfile)), check=False
    )
    notes = read_events(record)
    assert notes, f"the first child never called start_new_session(): {result.stderr}"
    before = notes[0]
    assert before["sid"] == os.getsid(0), "seen before setsid(), in the launcher's session"
    terminal = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP}
    blocked = _bits(before["blocked"])
    assert terminal <= blocked, f"not blocked: {sorted(map(int, terminal - blocked))}"
    assert len(notes) == 2, f"the SIGHUP killed the first child: {result.stderr}"
    assert signal.SIGHUP in _bits(notes[1]["pending"]), "the SIGHUP is held, pending"
    assert result.returncode == 0, result.stderr
    daemon = int(pidfile.read_text())
    assert daemon != before["pid"] and pid_alive(daemon), "the daemon came up and lives"
    assert int(proc_status(daemon)["SigBlk"], 16) == 0, "and nothing stays blocked in it"


def test_user_map_is_laid_over_the_defaults(daemons: Daemons) -> None:
    """Adding SIGHUP must not lose SIGTERM handling (python-daemon's map replaces)."""
    event, report = daemons.start({"hup_report": True})
    pid = event["pid"]
    os.kill(pid, signal.SIGHUP)
    assert daemons.event(report, "signal")["signum"] == signal.SIGHUP
    assert pid_alive(pid)
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    assert daemons.event(report, "closed")


def test_none_ignores_a_signal(daemons: Daemons) -> None:
    event, report = daemons.start(
        {
            "options": {"signal_map": {str(int(signal.SIGUSR1)): None}},
            "report_signals": [int(signal.SIGUSR2)],
        }
    )
    pid = event["pid"]
    assert signal.SIGUSR1 in _mask(proc_status(pid), "SigIgn")
    os.kill(pid, signal.SIGUSR1)  # its default action would kill the daemon
    os.kill(pid, signal.SIGUSR2)  # delivered after SIGUSR1 (lower numbers go first)
    assert daemons.event(report, "signal")["signum"] == signal.SIGUSR2
    assert pid_alive(pid)


def test_a_method_name_as_handler_terminates(daemons: Daemons) -> None:
    event, report = daemons.start({"options": {"signal_map": {"12": "terminate"}}})
    os.kill(event["pid"], signal.SIGUSR2)
    wait_gone(event["pid"])
    assert daemons.event(report, "closed")


def test_terminated_is_a_clean_system_exit() -> None:
    exc = Terminated(signal.SIGTERM)
    assert isinstance(exc, SystemExit)
    assert exc.code == 0
    assert str(exc) == "Terminating on signal SIGTERM"
    assert pickle.loads(pickle.dumps(exc)).signal_number == signal.SIGTERM
    with pytest.raises(Terminated):
        DaemonContext().terminate(signal.SIGTERM, None)


@pytest.mark.parametrize(
    ("signal_map", "reason"),
    [
        ({999: None}, "unknown signal"),
        ({"SIGHUP": None}, "signal numbers"),
        ({signal.SIGKILL: None}, "SIGKILL cannot be caught"),
        ({signal.SIGSTOP: "terminate"}, "SIGSTOP cannot be caught"),
        ({signal.SIGHUP: 3.5}, "a handler must be"),
        ({signal.SIGHUP: True}, "a handler must be"),  # not taken as 1 (SIG_IGN)
        ([signal.SIGHUP], "must be a dict"),
    ],
)
def test_bad_signal_maps_are_refused_at_once(signal_map: object, reason: str) -> None:
    with pytest.raises(DaemonOptionError, match=reason) as info:
        DaemonContext(signal_map=signal_map)  # type: ignore[arg-type]
    assert info.value.option == "signal_map"


def test_a_map_given_or_assigned_is_laid_over_the_defaults() -> None:
    """python-daemon code assigns ``context.signal_map = {...}`` (PEP 3143's example);
    either way, adding SIGHUP keeps SIGTERM's clean stop and the ignored tty signals."""

    def reload(signum: int, frame: object) -> None: ...

    given = DaemonContext(signal_map={signal.SIGHUP: reload})
    assigned = DaemonContext()
    assigned.signal_map = {signal.SIGHUP: reload}
    for context in (given, assigned):
        assert context.signal_map == {
            signal.SIGTSTP: None,
            signal.SIGTTIN: None,
            signal.SIGTTOU: None,
            signal.SIGTERM: "terminate",
            signal.SIGHUP: reload,
        }
    replaced = DaemonContext()
    replaced.signal_map = {signal.SIGTERM: signal.SIG_DFL}
    assert replaced.signal_map[signal.SIGTERM] == signal.SIG_DFL, "a default can be changed"


def test_unknown_method_name_is_refused_before_forking() -> None:
    context = DaemonContext(signal_map={signal.SIGHUP: "reload"}, detach_process=False)
    with pytest.raises(DaemonOptionError, match="no method 'reload'"):
        context.open()
    assert not context.is_open


def test_handler_values_are_installed_as_given() -> None:
    """signal.SIG_DFL / SIG_IGN (enums), None, a callable and a method name, as
    ``signal.getsignal`` sees them in the daemon (not detached: a fresh process)."""
    result = run_script(
        "import signal, sys\n"
        "from daemonctx import DaemonContext\n"
        "def on_hup(signum, frame): pass\n"
        "ctx = DaemonContext(detach_process=False, stdout=sys.stdout, signal_map={\n"
        "    signal.SIGTSTP: signal.SIG_DFL, signal.SIGUSR1: signal.SIG_IGN,\n"
        "    signal.SIGUSR2: None, signal.SIGHUP: on_hup, signal.SIGINT: 'terminate'})\n"
        "with ctx:\n"
        "    got = {s: signal.getsignal(s) for s in (signal.SIGTSTP, signal.SIGUSR1,\n"
        "           signal.SIGUSR2, signal.SIGHUP, signal.SIGINT, signal.SIGTERM)}\n"
        "    print(got[signal.SIGTSTP] is signal.SIG_DFL, got[signal.SIGUSR1] is signal.SIG_IGN,\n"
        "          got[signal.SIGUSR2] is signal.SIG_IGN, got[signal.SIGHUP] is on_hup,\n"
        "          got[signal.SIGINT] == ctx.terminate, got[signal.SIGTERM] == ctx.terminate)\n"
    )
    assert result.stdout.split() == ["True"] * 6, result.stdout + result.stderr


# -- held back between the pidfile and the handlers ---------------------------------------

_HOLD_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""

_WAIT_FOR_LOCK = """
import signal, sys
from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile
path, marker = sys.argv[1], sys.argv[2]
with DaemonContext(pidfile=TimeoutPIDLockFile(path, 30), signal_map={signal.SIGHUP: print}):
    pass
"""


def _lock_held(processes: ProcessTracker, path: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _HOLD_LOCK, path]
    holder = processes.popen(argv, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_stop_during_a_pidfile_wait_is_not_held_back(processes: ProcessTracker, tmp_path) -> None:
    """The daemon waits up to 30 s for a lock another process holds, its SIGHUP held
    back (for its handler): SIGTERM still stops it at once."""
    path = str(tmp_path / "app.pid")
    _lock_held(processes, path)
    marker = f"waiter-{os.getpid()}-{id(tmp_path)}"
    launcher = processes.popen(
        [sys.executable, "-c", _WAIT_FOR_LOCK, path, marker], stderr=subprocess.DEVNULL
    )

    def marked() -> list[int]:
        """The launcher's children and grandchildren: its argv carries the marker."""
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != launcher.pid:
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        if marker.encode() in f.read().split(b"\0"):
                            found.append(int(name))
                except OSError:
                    continue
        return found

    processes.watch(marked)  # killed at the end, whatever happens here

    def waiting_daemon() -> int | None:
        for pid in marked():
            try:
                status = proc_status(pid)
            except (OSError, KeyError):
                continue
            blocked = _mask(status, "SigBlk")
            # Past hold_signals, at the lock: SIGHUP held, SIGTERM not. (The first
            # child, gone soon, still has the launcher's mask: both blocked.)
            if signal.SIGHUP in blocked and signal.SIGTERM not in blocked:
                return pid
        return None

    daemon = wait_for(waiting_daemon, what="the daemon at its lock, SIGHUP held, SIGTERM not")
    processes.pids.add(daemon)
    os.kill(daemon, signal.SIGTERM)
    wait_gone(daemon, timeout=5)  # raises after 5 s: held back, it waited out its 30 s
    assert not pid_alive(daemon)
    assert launcher.wait(timeout=10) != 0, "a start the daemon never finished failed"


_FAIL_TO_LOCK = """
import signal, sys
from lockfile import LockTimeout
from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile
context = DaemonContext(detach_process=False, pidfile=TimeoutPIDLockFile(sys.argv[1], 0.2),
                        signal_map={signal.SIGHUP: print}, stdout=sys.stdout, stderr=sys.stderr)
try:
    context.open()
except LockTimeout:
    print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), flush=True)
"""


def test_a_start_that_fails_before_its_handlers_leaves_no_signal_blocked(
    processes: ProcessTracker, tmp_path
) -> None:
    """In the foreground (detach_process=False) the process goes on after a failed
    open(): SIGHUP, held back for its handler, must not stay blocked, in it and in
    every child it starts."""
    path = str(tmp_path / "app.pid")
    _lock_held(processes, path)
    result = subprocess.run(
        [sys.executable, "-c", _FAIL_TO_LOCK, path], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


_SLOW_AFTER_LOCK = """
import os, sys, time
from daemonctx import DaemonContext, process
from daemonctx.pidfile import PIDLockFile
path, marker = sys.argv[1], sys.argv[2]
change = process.change_process_owner

def slow_change(*args):  # the pidfile is held; the handlers are still to come
    open(marker + ".held", "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
        time.sleep(0.005)
    change(*args)

process.change_process_owner = slow_change
with DaemonContext(detach_process=False, pidfile=PIDLockFile(path), stdout=sys.stdout):
    print("opened", flush=True)
"""


def test_a_stop_once_the_pidfile_is_held_goes_to_its_handler(tmp_path) -> None:
    """SIGTERM while the daemon holds its pidfile, before its handlers: held back,
    then "terminate" unwinds and the pidfile is removed (by its default action it
    died there, leaving the pidfile naming a dead pid)."""
    path, marker = str(tmp_path / "app.pid"), str(tmp_path / "step")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_AFTER_LOCK, path, marker],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: os.path.exists(marker + ".held"), what="the pidfile to be held")
        proc.send_signal(signal.SIGTERM)
        open(marker + ".go", "w").close()
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert (proc.returncode, stdout) == (0, ""), stderr
    assert not os.path.exists(path), "the context closed, and removed its pidfile"
