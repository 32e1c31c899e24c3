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
    pid_alive,
    proc_status,
    read_events,
    run_script,
    wait_for,
    wait_gone,
)

from daemonctx import DaemonContext, DaemonOptionError, Terminated


def _mask(status: dict[str, str], key: str) -> set[int]:
    bits = int(status[key], 16)
    return {n for n in range(1, 65) if bits & (1 << (n - 1))}


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


def test_sigterm_exit_status_is_zero() -> None:
    """A requested stop is a clean stop: systemd must not count it as a failure."""
    config = '{"report": "/dev/null", "options": {"detach_process": false}}'
    proc = subprocess.Popen([sys.executable, str(DAEMON), config], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: signal.SIGTERM in _mask(proc_status(proc.pid), "SigCgt"), 10, "handler")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == b"", "a clean stop prints nothing"
    finally:
        proc.kill()
        proc.wait()


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
        ([signal.SIGHUP], "must be a dict"),
    ],
)
def test_bad_signal_maps_are_refused_at_once(signal_map: object, reason: str) -> None:
    with pytest.raises(DaemonOptionError, match=reason) as info:
        DaemonContext(signal_map=signal_map)  # type: ignore[arg-type]
    assert info.value.option == "signal_map"


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
