"""``stop --retry SCHEDULE`` and ``restart --stop-retry``: start-stop-daemon's
``--retry TERM/30/QUIT/5/KILL/5``, each signal sent to what is left when the wait
before it ran out, told in the result; on real programs that record the signals
they get."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import STARTED, Tracker, pid_alive, wait_for

from daemonctx.signals import parse_retry

TERM, QUIT, KILL, HUP = signal.SIGTERM, signal.SIGQUIT, signal.SIGKILL, signal.SIGHUP

# Records each signal it gets in argv[1]; exits 0 on the ones named in argv[2]
# (comma-separated), ignores the others (recorded).
_RECORDER = """
import signal, sys, time
log, leaves = sys.argv[1], set(sys.argv[2].split(","))
def got(signum, frame):
    name = signal.Signals(signum).name
    with open(log, "a") as f:
        f.write(name + "\\n")
    if name in leaves:
        sys.exit(0)
for name in ("SIGTERM", "SIGQUIT", "SIGHUP"):
    signal.signal(getattr(signal, name), got)
print("up", flush=True)
while True:
    time.sleep(60)
"""


def _start_recorder(tracker: Tracker, leaves: str) -> tuple[int, Path]:
    log = tracker.tmp_path / "signals.log"
    up = tracker.tmp_path / "up.log"
    result = tracker.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--stdout", str(up), "--ready-after", "0.05",
        "--", sys.executable, "-c", _RECORDER, str(log), leaves,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = STARTED.fullmatch(result.stdout)
    assert match, result.stdout
    return int(match.group(2)), log


def _stop(tracker: Tracker, *options: str) -> tuple[int, str, str]:
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile, *options)
    return result.returncode, result.stdout, result.stderr


# -- the schedule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("TERM/30/KILL/5", ((TERM, 30.0), (KILL, 5.0))),
        ("30", ((HUP, 30.0), (KILL, 30.0))),  # --signal HUP
        ("-QUIT/2/-9", ((QUIT, 2.0), (KILL, 7.5))),
        ("SIGTERM/0.5/QUIT/inf", ((TERM, 0.5), (QUIT, float("inf")))),
    ],
)
def test_a_schedule_reads_as_start_stop_daemon_reads_it(text: str, steps: object) -> None:
    assert parse_retry(text, HUP, 7.5) == steps


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TERM", "'TERM': expected seconds, or a schedule of signals and seconds"),
        ("TERM/30/KILL/5/", "'TERM/30/KILL/5/': expected seconds, or a schedule"),
        ("TERM/x/KILL", "'TERM/x/KILL': expected seconds after a signal, got 'x'"),
        ("TERM/30/5", "'TERM/30/5': expected a signal, got '5' (a number is -5)"),
        ("15/30", "'15/30': expected a signal, got '15' (a number is -15)"),
        ("TERM/0/KILL", "'TERM/0/KILL': a wait must be more than 0 seconds, got '0'"),
        ("BOGUS/3", "'BOGUS/3': unknown signal 'BOGUS'"),
        ("TERM/5/forever/KILL", "'forever' is not supported; wait forever with inf"),
        ("0", "'0': a wait must be more than 0 seconds, got '0'"),
    ],
)
def test_a_bad_schedule_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_retry(text, TERM, 5.0)
    assert message in str(caught.value)


# -- on real programs --------------------------------------------------------------------


def test_each_step_s_signal_goes_to_what_is_left(tracker: Tracker) -> None:
    """TERM is ignored (recorded), QUIT 0.3 s later ends it: KILL is not needed."""
    pid, log = _start_recorder(tracker, "SIGQUIT")
    code, stdout, stderr = _stop(tracker, "--retry", "TERM/0.3/QUIT/10/KILL/5")
    assert (code, stderr) == (0, "")
    assert stdout.startswith(f"stopped app (pid {pid}) in ")
    assert stdout.endswith(" (sent SIGQUIT after 0.3 s)\n")
    assert log.read_text() == "SIGTERM\nSIGQUIT\n"
    assert not pid_alive(pid) and not os.path.exists(tracker.pidfile)


def test_a_program_that_ignores_every_step_but_kill(tracker: Tracker) -> None:
    pid, log = _start_recorder(tracker, "")
    code, stdout, _ = _stop(tracker, "--retry=-15/0.2/-QUIT/0.2/KILL")
    assert code == 0
    assert stdout.endswith(" (sent SIGQUIT after 0.2 s, SIGKILL after 0.4 s)\n")
    assert log.read_text() == "SIGTERM\nSIGQUIT\n"
    assert not pid_alive(pid) and not os.path.exists(tracker.pidfile)


def test_a_schedule_without_kill_gives_up_and_leaves_the_program(tracker: Tracker) -> None:
    """As start-stop-daemon: the end of the schedule is a failure (exit 1 here, 2
    there); the program and its pidfile stay."""
    pid, log = _start_recorder(tracker, "")
    code, stdout, stderr = _stop(tracker, "--retry", "TERM/0.2/QUIT/0.2")
    assert (code, stdout) == (1, "")
    assert stderr.endswith(f": app (pid {pid}) did not exit after SIGQUIT, the last step\n")
    assert log.read_text() == "SIGTERM\nSIGQUIT\n"
    assert pid_alive(pid) and os.path.exists(tracker.pidfile)


def test_a_one_step_schedule_gives_up_after_its_signal(tracker: Tracker) -> None:
    pid, log = _start_recorder(tracker, "")
    code, _, stderr = _stop(tracker, "--retry", "TERM/0.2")
    assert code == 1
    assert stderr.endswith(f": app (pid {pid}) did not exit after SIGTERM, the last step\n")
    assert log.read_text() == "SIGTERM\n" and pid_alive(pid)


def test_giving_up_names_only_what_is_left(tracker: Tracker) -> None:
    """The daemon exits on QUIT; its child, which holds the lock too and gets each
    signal with it (a process of its session), ignores both."""
    script = '(trap "" TERM QUIT; exec sleep 1000) & trap "" TERM; exec sleep 1001'
    pid = tracker.start("sh", "-c", script)
    child = wait_for(lambda: [p for p in tracker.processes() if p != pid], what="child")[0]
    code, _, stderr = _stop(tracker, "--retry", "TERM/0.2/QUIT/0.2")
    assert code == 1
    assert stderr.endswith(f": app (pid {child}) did not exit after SIGQUIT, the last step\n")
    assert not pid_alive(pid) and pid_alive(child)


def test_seconds_alone_are_the_signal_then_kill(tracker: Tracker) -> None:
    pid, log = _start_recorder(tracker, "")
    code, stdout, _ = _stop(tracker, "--retry", "0.3", "--signal", "HUP")
    assert code == 0 and stdout.endswith(" (sent SIGKILL after 0.3 s)\n"), stdout
    assert log.read_text() == "SIGHUP\n"
    assert not pid_alive(pid)


def test_restart_names_its_own_flag_in_a_conflict(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "1000")
    result = tracker.daemonctx("restart", "--pidfile", tracker.pidfile, "--signal", "HUP",
                               "--stop-retry", "TERM/0.5", "--", "sleep", "1")  # fmt: skip
    assert result.returncode == 2 and pid_alive(pid)
    assert result.stderr.endswith("--signal HUP: --stop-retry TERM/0.5 names its own signals\n")


def test_restart_stops_by_its_schedule(tracker: Tracker) -> None:
    pid, log = _start_recorder(tracker, "SIGQUIT")
    retry = ("--stop-retry", "TERM/0.2/QUIT/10")
    result = tracker.daemonctx("restart", "--pidfile", tracker.pidfile, *retry, "--", "sleep", "1")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith(f"stopped app (pid {pid})") and "(sent SIGQUIT after 0.2 s)" in first
    assert STARTED.fullmatch(second + "\n")
    assert log.read_text() == "SIGTERM\nSIGQUIT\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--retry", "TERM/1", "--timeout", "3"), "argument --timeout: not allowed with"),
        (("--retry", "TERM/1", "--signal", "HUP"), "--signal HUP: --retry TERM/1 names its own"),
        (("--signal", "TERM", "--retry", "HUP/1"), "--signal TERM: --retry HUP/1 names its own"),
        (("--retry", "TERM/5/forever"), "'forever' is not supported"),
        (("--retry=-\u0661\u0665/1",), "unknown signal '\u0661\u0665'"),  # Arabic-Indic 15
        (("--signal", "\u0661\u0665"), "unknown signal '\u0661\u0665'"),
    ],
)
def test_a_bad_retry_is_a_usage_error_and_stops_nothing(
    tracker: Tracker, options: tuple[str, ...], message: str
) -> None:
    pid = tracker.start("sleep", "1000")
    code, stdout, stderr = _stop(tracker, *options)
    assert code == 2 and stdout == "" and message in stderr, stderr
    assert pid_alive(pid)
