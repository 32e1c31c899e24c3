"""``daemonctx signal --pidfile PATH SIGNAL``: an init script's reload, as ``kill -HUP
"$(cat app.pid)"`` would do it but only to the process proven to hold the pidfile's
lock, pinned by a pidfd; LSB's 7 when the daemon is not running."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import Tracker, kill, needs_root, pid_alive, spawn_as_pid, wait_for, wait_gone

from daemonctx.commands import kill_style
from daemonctx.control import NOT_RUNNING, send_signal
from daemonctx.errors import CommandError

# Records each SIGHUP in argv[1] (one line each) and runs on.
_RELOADER = 'trap "echo hup >> $0" HUP; echo up > $0.up; while :; do sleep 1 & wait; done'


def _start_reloader(tracker: Tracker) -> tuple[int, Path]:
    log = tracker.tmp_path / "hups.log"
    pid = tracker.start("sh", "-c", _RELOADER, str(log))
    wait_for(Path(f"{log}.up").exists, what="the trap to be set")
    return pid, log


def test_hup_reaches_the_daemon_which_runs_on(tracker: Tracker) -> None:
    pid, log = _start_reloader(tracker)
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "HUP")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"sent SIGHUP to app (pid {pid})\n",
        "",
    )
    wait_for(lambda: log.exists() and log.read_text() == "hup\n", what="the HUP")
    assert pid_alive(pid)
    assert send_signal(tracker.pidfile, signal.SIGHUP) == pid  # the API, by number
    wait_for(lambda: log.read_text() == "hup\nhup\n", what="the second HUP")


@pytest.mark.parametrize("typed", ["-HUP", "-1", "-sighup"])
def test_the_signal_as_kill_takes_it(tracker: Tracker, typed: str) -> None:
    """`kill -HUP`'s habit: the dash is not taken for an option (argparse would)."""
    pid, log = _start_reloader(tracker)
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, typed)
    assert (result.returncode, result.stdout) == (0, f"sent SIGHUP to app (pid {pid})\n"), result
    wait_for(lambda: log.exists() and log.read_text() == "hup\n", what="the HUP")
    result = tracker.daemonctx("signal", typed, "-p", tracker.pidfile)  # before the options
    assert result.returncode == 0, result.stderr
    wait_for(lambda: log.read_text() == "hup\nhup\n", what="the second HUP")


DAEMON_VALUES = ("-p", "--pidfile", "--name")
CTL_VALUES = ("-c", "--control", "-f", "--config", "--timeout")


@pytest.mark.parametrize(
    ("words", "values", "expected"),
    [
        (["signal", "-p", "x", "-HUP"], DAEMON_VALUES, ["signal", "-p", "x", "HUP"]),
        (["signal", "-9", "-p", "x"], DAEMON_VALUES, ["signal", "9", "-p", "x"]),
        (["signal", "-p", "x", "-RTMIN+2"], DAEMON_VALUES, ["signal", "-p", "x", "RTMIN+2"]),
        (["-c", "s", "signal", "-usr1", "web"], CTL_VALUES, ["-c", "s", "signal", "usr1", "web"]),
        (
            ["-c", "signal", "signal", "-HUP", "w"],
            CTL_VALUES,
            ["-c", "signal", "signal", "HUP", "w"],
        ),
        (["signal", "-p", "x", "--name", "a", "-h"], DAEMON_VALUES, None),
        (["signal", "-BOGUS"], DAEMON_VALUES, ["signal", "BOGUS"]),  # named: unknown signal
        (["signal", "-p", "x", "-99"], DAEMON_VALUES, ["signal", "-p", "x", "99"]),
        (["signal", "-bogus"], DAEMON_VALUES, None),  # an option, for argparse to name
        (["signal", "--", "-9"], DAEMON_VALUES, None),
        (["stop", "-p", "x", "-9"], DAEMON_VALUES, None),
        (["signal", "-HUP", "-TERM"], DAEMON_VALUES, ["signal", "HUP", "-TERM"]),
        (["signal", "HUP", "-9"], DAEMON_VALUES, None),  # the signal came first
        (["signal", "-p", "-HUP", "HUP"], DAEMON_VALUES, None),  # a pidfile named -HUP
        (["signal", "-p", "s.pid", "--name", "-HUP", "USR2"], DAEMON_VALUES, None),
        (["-c", "s", "status", "signal", "--timeout", "-5"], CTL_VALUES, None),  # a program
        (["-c", "s", "tail", "signal", "-n", "-3"], CTL_VALUES, None),
        (["signal", "--pid", "d.pid", "-HUP"], DAEMON_VALUES, ["signal", "--pid", "d.pid", "HUP"]),
        (["--time", "5", "signal", "-9", "w"], CTL_VALUES, ["--time", "5", "signal", "9", "w"]),
        (["signal", "--na", "-HUP", "USR2"], DAEMON_VALUES, None),  # argparse's abbreviation
    ],
)
def test_kill_style_takes_the_dash_off_the_signal_only(
    words: list[str], values: tuple[str, ...], expected: list[str] | None
) -> None:
    """None: the words are left as they are."""
    assert kill_style(words, values) == (words if expected is None else expected)


def test_a_daemon_that_is_not_running_is_lsb_7(tracker: Tracker) -> None:
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "HUP")
    assert (result.returncode, result.stderr) == (7, "daemonctx: error: app is not running\n")
    pid = tracker.start("sleep", "1000")
    kill(pid)  # SIGKILL: the pidfile stays, stale
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "USR1")
    assert result.returncode == NOT_RUNNING == 7, result.stderr
    assert os.path.exists(tracker.pidfile), "signal removes nothing"


@needs_root
def test_a_process_that_reused_the_daemon_s_pid_is_never_signalled(tracker: Tracker) -> None:
    """The pidfile names a live process, but not ours: `kill $(cat app.pid)` would
    have killed it."""
    pid = tracker.start("sleep", "1000")
    kill(pid)
    impostor = tracker.adopt(spawn_as_pid(pid, ["sleep", "1000"]))
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "TERM")
    assert (result.returncode, result.stdout) == (7, ""), result.stderr
    assert impostor.poll() is None and pid_alive(impostor.pid)


def test_a_child_left_holding_the_lock_is_not_taken_for_the_daemon(tracker: Tracker) -> None:
    program = tracker.start("sh", "-c", "sleep 1000; :")
    child = wait_for(lambda: [p for p in tracker.processes() if p != program], what="child")[0]
    os.kill(program, signal.SIGKILL)
    wait_gone(program)
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "TERM")
    assert result.returncode == 1
    assert result.stderr.endswith(f"pid {child} still holds its lock; signalled none\n")
    assert pid_alive(child)


def test_an_untrusted_pidfile_is_refused(tracker: Tracker, tmp_path: Path) -> None:
    pidfile = tmp_path / "open.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    pidfile.chmod(0o666)
    with pytest.raises(CommandError) as caught:
        send_signal(str(pidfile), signal.SIGTERM)
    assert caught.value.exit_code == 4 and "writable by others" in str(caught.value)


def test_a_bad_signal_is_a_usage_error(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    for args in (["BOGUS"], [], ["HUP", "TERM"], ["-BOGUS"]):
        result = subprocess.run(
            [*tracker.command(), "signal", "--pidfile", tracker.pidfile, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=tracker.env,
        )
        assert result.returncode == 2 and result.stdout == "", (args, result)
        if args and "BOGUS" in args[0]:  # kill's -BOGUS too: the signal named, not "required"
            assert "unknown signal 'BOGUS'" in result.stderr, result.stderr
    assert pid_alive(pid)
