"""``daemonctx.Service`` end to end: tests/programs/service_app.py is a Service
subclass whose ``main()`` gives it start, stop, restart, status and run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PROGRAMS,
    ROOT,
    STARTED,
    Tracker,
    pid_alive,
    proc_stat,
    read_events,
    wait_for,
)

from daemonctx import DaemonContext, Service
from daemonctx.errors import DaemonOptionError
from daemonctx.pidfile import read_pidfile_status

APP = PROGRAMS / "service_app.py"


class App:
    """Runs service_app.py with its configuration in the environment."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        tmp = tracker.tmp_path
        self.pidfile = tracker.pidfile
        self.report = tmp / "report.jsonl"
        self.stdout = tmp / "stdout.log"
        self.env = {
            **tracker.env,
            "SERVICE_PIDFILE": self.pidfile,
            "SERVICE_REPORT": str(self.report),
            "SERVICE_STDOUT": str(self.stdout),
        }

    def __call__(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(APP), *argv],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self, **env: str) -> int:
        result = self("start", **env)
        assert result.returncode == 0, result.stderr
        match = STARTED.fullmatch(result.stdout)
        assert match and match.group(1) == "app", result.stdout
        return int(match.group(2))

    def events(self, pid: int) -> list[str]:
        return [e["event"] for e in read_events(self.report) if e["pid"] == pid]


@pytest.fixture
def app(tracker: Tracker) -> App:
    return App(tracker)


def test_start_status_reload_restart_stop(app: App) -> None:
    pid = app.start()
    assert read_pidfile_status(app.pidfile).pid == pid
    assert "ready" in app.events(pid) or wait_for(lambda: "ready" in app.events(pid))
    assert app.stdout.read_text() == f"serving from {pid}\n", "stdout= a path, opened for it"

    result = app("status")
    assert result.returncode == 0
    assert re.fullmatch(
        rf"app is running \(pid {pid}, up \d+\.\d s\): .*service_app\.py start\n", result.stdout
    )

    os.kill(pid, signal.SIGHUP)  # signal_map = {SIGHUP: "reload"}, a method of the Service
    wait_for(lambda: "reload" in app.events(pid), what="reload")

    result = app("restart")
    assert result.returncode == 0, result.stderr
    stopped, started = result.stdout.splitlines(keepends=True)
    assert re.fullmatch(rf"stopped app \(pid {pid}\) in \d+\.\d\d s\n", stopped)
    match = STARTED.fullmatch(started)
    assert match
    new = int(match.group(2))
    assert new != pid and not pid_alive(pid)
    assert app.events(pid) == ["run", "ready", "reload", "stopping"], "SIGTERM unwound run()"

    result = app("stop")
    assert result.returncode == 0
    assert re.fullmatch(rf"stopped app \(pid {new}\) in \d+\.\d\d s\n", result.stdout)
    assert not pid_alive(new)
    assert not os.path.exists(app.pidfile), "the context released (and removed) it"
    assert (app("status").returncode, app("stop").stdout) == (3, "app is not running\n")


def test_stdout_to_the_launchers_socket_as_under_systemd(app: App) -> None:
    """``stdout = "/dev/stdout"`` with a socket as ``app.py start``'s stdout (systemd's
    journal stream, which Linux will not open() again through /proc): the daemon gets
    a copy of it, and its line arrives at the other end."""
    journal, ours = socket.socketpair()
    with journal, ours:
        env = {**app.env, "SERVICE_STDOUT": "/dev/stdout"}
        result = subprocess.run(
            [sys.executable, str(APP), "start"],
            stdout=ours,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        pid = read_pidfile_status(app.pidfile).pid
        assert pid is not None
        app.tracker.add(pid)
        journal.settimeout(10)
        received = b""
        while received.count(b"\n") < 2:  # the daemon's line and the launcher's
            chunk = journal.recv(4096)
            assert chunk, received
            received += chunk
        assert sorted(received.decode().splitlines()) == [
            f"serving from {pid}",
            f"started app (pid {pid})",
        ]
    assert app("stop").returncode == 0


def test_start_returns_once_run_says_ready(app: App) -> None:
    before = time.monotonic()
    pid = app.start(SERVICE_READY_DELAY="0.3")
    assert time.monotonic() - before >= 0.3
    assert read_pidfile_status(app.pidfile).pid == pid


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVICE_FAIL": "cannot bind port 80"}, "RuntimeError: cannot bind port 80"),
        (
            {"SERVICE_RETURN": "1"},
            "RuntimeError: run() returned without calling self.notify_ready()",
        ),
    ],
    ids=["exception", "returned"],
)
def test_failure_before_ready_fails_the_start(app: App, env: dict[str, str], message: str) -> None:
    result = app("start", **env)
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == (
        "",
        f"service_app.py: error: app failed to start: {message}\n",
    )
    assert not os.path.exists(app.pidfile)
    assert app.tracker.processes() == []


def test_a_daemon_that_closes_its_fds_before_ready_is_said_so_and_leaves_no_pidfile(
    app: App,
) -> None:
    """run() does ``os.closerange(3, ...)`` first, closing the start-up pipe: the
    start was "the daemon exited before it was ready ... it was killed", though it
    ran on, and left its pidfile (its lock's fd closed too). Now the start says what
    happened and how to avoid it; the daemon is stopped all the same (it can no
    longer say it is ready), and its pidfile removed."""
    result = app("start", SERVICE_CLOSE_FDS="1", SERVICE_READY_DELAY="60")
    assert result.returncode == 1
    said = re.fullmatch(
        r"service_app.py: error: app failed to start: the daemon \(pid (\d+)\) closed the"
        r" start-up pipe \(its fd \d+\) while still running, before it was ready: call"
        r" notify_ready\(\) before closing inherited fds, or keep that one open\n",
        result.stderr,
    )
    assert said, result.stderr
    pid = int(said.group(1))
    assert not pid_alive(pid)
    assert app.tracker.processes() == []
    assert not os.path.exists(app.pidfile)
    status = app("status")
    assert (status.returncode, status.stdout) == (3, "app is not running\n")


def test_the_traceback_of_a_failure_before_ready_is_in_the_stderr_file(app: App) -> None:
    """The terminal gets one line; the daemon's stderr file gets the traceback, the
    only place a programming error in start-up code shows its file and line."""
    log = app.tracker.tmp_path / "app.err"
    result = app("start", SERVICE_FAIL="cannot bind port 80", SERVICE_STDERR=str(log))
    assert (result.returncode, result.stderr) == (
        1,
        "service_app.py: error: app failed to start: RuntimeError: cannot bind port 80\n",
    )
    text = log.read_text()
    assert re.match(
        r"app failed to start \(pid \d+\):\nTraceback \(most recent call last\):\n", text
    )
    assert 'service_app.py", line' in text and ", in run\n" in text, text
    assert text.endswith("RuntimeError: cannot bind port 80\n"), text
    assert app.tracker.processes() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_signal_to_the_waiting_start_stops_the_daemon(app: App, signum: int) -> None:
    """``timeout 1 app.py start``: the start ends by the signal and leaves no daemon."""
    starting = app.tracker.popen(
        [sys.executable, str(APP), "start"],
        env={**app.env, "SERVICE_READY_DELAY": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL),
    )
    wait_for(lambda: "run" in [e["event"] for e in read_events(app.report)], what="run()")
    starting.send_signal(signum)
    stdout, stderr = starting.communicate(timeout=30)
    assert (starting.returncode, stdout) == (-signum, ""), stderr
    assert app.tracker.processes() == []
    assert not os.path.exists(app.pidfile)


def test_start_refuses_a_running_service(app: App) -> None:
    pid = app.start()
    result = app("start")
    assert result.returncode == 1
    assert result.stderr == f"service_app.py: error: app is already running (pid {pid})\n"
    assert app.tracker.processes() == [pid]


def test_run_in_the_foreground(app: App) -> None:
    env = dict(app.env)
    del env["SERVICE_STDOUT"]  # unset: run keeps our stdout
    proc = app.tracker.popen(
        [sys.executable, str(APP), "run"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"serving from {proc.pid}\n"
    assert int(proc_stat(proc.pid)[1]) == os.getpid(), "not detached"
    wait_for(lambda: read_pidfile_status(app.pidfile).pid == proc.pid, what="pidfile")
    wait_for(lambda: "ready" in app.events(proc.pid), what="the ready event")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, "SIGTERM is a clean stop"
    assert app.events(proc.pid) == ["run", "ready", "stopping"]
    assert not os.path.exists(app.pidfile)


# -- in this process: options, no fork ---------------------------------------------


class Configured(Service):
    umask = 0o027
    working_directory = "/tmp"
    ready_on_open = False
    signal_map = {signal.SIGHUP: "reload", signal.SIGUSR1: "terminate"}  # noqa: RUF012

    def reload(self, signum: int, frame: Any) -> None:
        pass


def test_options_from_class_attributes_and_the_constructor(tmp_path: Path) -> None:
    service = Configured(tmp_path / "x.pid", umask=0o077, stderr=str(tmp_path / "err.log"))
    context = service.make_context(detach=True)
    assert isinstance(context, DaemonContext)
    assert (context.umask, context.working_directory, context.ready_on_open) == (
        0o077,
        "/tmp",
        False,
    )
    assert context.detach_process is True
    assert context.pidfile.path == str(tmp_path / "x.pid")
    assert context.stderr.name == str(tmp_path / "err.log") and context.stdout is None
    assert (tmp_path / "err.log").stat().st_mode & 0o777 == 0o600, "0640 less umask 077"
    assert context.signal_map[signal.SIGHUP] == service.reload, "a Service method by name"
    assert context.signal_map[signal.SIGUSR1] == "terminate", "else the context's"
    context.stderr.close()
    foreground = service.make_context(detach=False)
    assert foreground.detach_process is False
    assert foreground.stdout is sys.stdout, "run keeps our stdout when none is set"
    foreground.stderr.close()
    assert service.display_name == "x"


def test_constructor_checks() -> None:
    with pytest.raises(TypeError, match="needs a pidfile"):
        Service()
    with pytest.raises(TypeError, match="unknown options: colour"):
        Service("/run/x.pid", colour="blue")
    with pytest.raises(RuntimeError, match="inside the open context"):
        Service("/run/x.pid").notify_ready()


@pytest.mark.parametrize(
    ("pidfile", "reason"),
    [
        ("", "must be a non-empty str path"),
        (".", "must name a file, not a directory"),
        ("/run/app/", "must name a file, not a directory"),
        (b"/run/app.pid", "must be a path (str or os.PathLike of str)"),
        (5, "must be a path (str or os.PathLike of str)"),
    ],
)
def test_a_bad_pidfile_is_refused_when_the_service_is_made(pidfile: object, reason: str) -> None:
    """Not at every command later: "" made the working directory the pidfile, and
    bytes failed with a TypeError while the name was made."""
    with pytest.raises(DaemonOptionError) as info:
        Service(pidfile)  # type: ignore[arg-type]
    assert str(info.value) == f"pidfile={pidfile!r}: {reason}"

    class App(Service):
        pass

    App.pidfile = pidfile  # type: ignore[assignment]
    with pytest.raises(DaemonOptionError) as info:
        App()
    assert str(info.value) == f"pidfile={pidfile!r}: {reason}"


def test_main_exits_with_the_lsb_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        Service(tmp_path / "app.pid", name="web").main(["status"])
    assert info.value.code == 3
    assert capsys.readouterr().out == "web is not running\n"
    (tmp_path / "app.pid").write_text(json.dumps(99999999) + "\n")
    assert Service(tmp_path / "app.pid").dispatch(["status"]) == 1


def test_restart_checks_the_new_context_before_stopping(app: App) -> None:
    """A working_directory that does not exist fails in the new daemon: the restart
    must say so before it stops the running one, and leave it running."""
    pid = app.start()
    result = app("restart", SERVICE_CHDIR="/nonexistent")
    assert result.returncode == 1
    assert result.stdout == "", "nothing was stopped"
    assert result.stderr == (
        "service_app.py: error: app failed to start: "
        "working_directory='/nonexistent': no such directory\n"
    )
    assert pid_alive(pid) and read_pidfile_status(app.pidfile).pid == pid


# -- reload, force-reload, try-restart, signal: an LSB init script's ----------------------


def _sent(signame: str, pid: int) -> str:
    return f"sent {signame} to app (pid {pid})\n"


def test_reload_sends_sighup_to_the_daemon_which_runs_on(app: App) -> None:
    pid = app.start()
    result = app("reload")
    assert (result.returncode, result.stdout, result.stderr) == (0, _sent("SIGHUP", pid), "")
    wait_for(lambda: "reload" in app.events(pid), what="the handler to run")
    assert pid_alive(pid) and read_pidfile_status(app.pidfile).pid == pid
    result = app("force-reload")  # it handles the signal: the same as reload
    assert (result.returncode, result.stdout) == (0, _sent("SIGHUP", pid)), result.stderr
    wait_for(lambda: app.events(pid).count("reload") == 2, what="the second reload")
    result = app("signal", "HUP")
    assert (result.returncode, result.stdout) == (0, _sent("SIGHUP", pid)), result.stderr
    wait_for(lambda: app.events(pid).count("reload") == 3, what="the third reload")
    result = app("signal", "-HUP")  # as kill takes it
    assert (result.returncode, result.stdout) == (0, _sent("SIGHUP", pid)), result.stderr
    wait_for(lambda: app.events(pid).count("reload") == 4, what="the fourth reload")
    assert pid_alive(pid)


def test_a_reload_while_the_daemon_starts_waits_for_its_handler(app: App) -> None:
    """The daemon holds its pidfile (reload finds it) before its handlers are in
    place: SIGHUP's default action would kill it there. It is held back, then
    handled."""
    marker = str(app.tracker.tmp_path / "hold")
    starting = app.tracker.popen(
        [sys.executable, str(APP), "start"],
        env={**app.env, "SERVICE_HOLD": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: os.path.exists(marker + ".held"), what="the daemon to hold its pidfile")
    daemon = read_pidfile_status(app.pidfile).pid
    result = app("reload")
    assert (result.returncode, result.stdout) == (0, _sent("SIGHUP", daemon)), result.stderr
    open(marker + ".go", "w").close()
    stdout, stderr = starting.communicate(timeout=30)
    assert (starting.returncode, stdout) == (0, f"started app (pid {daemon})\n"), stderr
    # "ready" is written just after notify_ready(), which let the launcher return
    wait_for(lambda: {"reload", "ready"} <= set(app.events(daemon)), what="the held-back reload")
    assert pid_alive(daemon)


def test_reload_of_a_daemon_that_is_not_running_is_lsb_7(app: App) -> None:
    result = app("reload")
    assert (result.returncode, result.stderr) == (7, "service_app.py: error: app is not running\n")
    pid = app.start()
    os.kill(pid, signal.SIGKILL)  # the pidfile stays, naming a dead pid
    wait_for(lambda: not pid_alive(pid), what="the daemon to die")
    assert (app("reload").returncode, app("signal", "USR1").returncode) == (7, 7)


def test_a_daemon_without_a_handler_is_not_killed_by_reload(app: App) -> None:
    """SIGHUP's default action would kill it: reload refuses (LSB 3, "unimplemented"),
    before anything is sent; force-reload restarts it instead."""
    pid = app.start(SERVICE_NO_RELOAD="1")
    result = app("reload", SERVICE_NO_RELOAD="1")
    assert (result.returncode, result.stdout, result.stderr) == (
        3,
        "",
        "service_app.py: error: app cannot reload: its signal_map has no handler for SIGHUP\n",
    )
    assert pid_alive(pid) and app.events(pid) == ["run", "ready"]
    result = app("force-reload", SERVICE_NO_RELOAD="1")
    assert result.returncode == 0, result.stderr
    stopped, started = result.stdout.splitlines(keepends=True)
    assert stopped.startswith(f"stopped app (pid {pid}) in ")
    match = STARTED.fullmatch(started)
    assert match and int(match.group(2)) != pid and not pid_alive(pid)
    assert app.events(pid) == ["run", "ready", "stopping"], "stopped by SIGTERM, not SIGHUP"


@pytest.mark.parametrize(
    ("action", "env"),
    [("try-restart", {}), ("force-reload", {}), ("force-reload", {"SERVICE_NO_RELOAD": "1"})],
    ids=["try-restart", "force-reload", "force-reload-no-handler"],
)
def test_what_only_acts_on_a_running_daemon_starts_nothing(
    app: App, action: str, env: dict[str, str]
) -> None:
    """LSB: try-restart, and force-reload (systemd's reload-or-try-restart), of a
    service that is not running succeed and do nothing."""
    result = app(action, **env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "app is not running\n", "")
    assert not os.path.exists(app.pidfile) and not app.report.exists(), "nothing started"


def test_try_restart_restarts_only_a_running_daemon(app: App) -> None:
    pid = app.start()
    result = app("try-restart")
    assert result.returncode == 0, result.stderr
    stopped, started = result.stdout.splitlines(keepends=True)
    assert stopped.startswith(f"stopped app (pid {pid}) in ")
    match = STARTED.fullmatch(started)
    assert match and not pid_alive(pid)
    assert read_pidfile_status(app.pidfile).pid == int(match.group(2))


def test_a_bad_signal_is_a_usage_error(app: App) -> None:
    result = app("signal", "NOPE")
    assert result.returncode == 2 and "unknown signal" in result.stderr, result.stderr


def test_a_handler_name_that_names_nothing_is_refused_when_the_service_is_made(
    tmp_path: Path,
) -> None:
    """A typo in signal_map fails at once, naming the signal and the class, not
    at the first start (status and stop would have run)."""

    class Typo(Service):
        signal_map = {signal.SIGHUP: "relaod"}  # noqa: RUF012

        def reload(self, signum: int, frame: Any) -> None:
            pass

    with pytest.raises(DaemonOptionError) as caught:
        Typo(tmp_path / "x.pid")
    assert str(caught.value) == (
        "signal_map={SIGHUP: 'relaod'}: Typo has no method 'relaod', nor has its DaemonContext"
    )
    assert (caught.value.option, caught.value.value) == ("signal_map", {1: "relaod"})
    with pytest.raises(DaemonOptionError, match="Service has no method 'no_such_method'"):
        Service(tmp_path / "x.pid", signal_map={signal.SIGUSR1: "no_such_method"})
    fine = Typo(tmp_path / "x.pid", signal_map={signal.SIGHUP: "reload", 10: "terminate"})
    assert fine.can_reload


FORGOT_SIGNUM_FRAME = """
import signal, sys, time
from daemonctx import Service

class App(Service):
    signal_map = {signal.SIGHUP: "reload"}

    def run(self):
        while True:
            time.sleep(1)

    def reload(self):  # forgot (signum, frame)
        print("reloading")

App(sys.argv[1]).main(sys.argv[2:])
"""


def test_a_handler_that_cannot_take_signum_and_frame_is_refused_before_anything_starts(
    tracker: Tracker,
) -> None:
    """``def reload(self):`` passed every check: ``start`` started the daemon,
    ``reload`` said it sent SIGHUP, and the daemon died of a TypeError. The
    Service is refused when it is made, naming the handler; nothing starts."""
    script = tracker.tmp_path / "forgot.py"
    script.write_text(FORGOT_SIGNUM_FRAME)
    result = subprocess.run(
        [sys.executable, str(script), tracker.pidfile, "start"],
        env={**tracker.env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result
    assert result.stderr.splitlines()[-1] == (
        "daemonctx.errors.DaemonOptionError: signal_map={SIGHUP: 'reload'}:"
        " App.reload must accept (signum, frame), a signal handler's arguments"
    ), result.stderr
    assert not os.path.exists(tracker.pidfile)
    assert not tracker.processes()


def test_reload_signal_is_checked_and_can_reload_follows_signal_map(tmp_path: Path) -> None:
    with pytest.raises(DaemonOptionError, match="reload_signal=999: unknown signal number"):
        Service(tmp_path / "x.pid", reload_signal=999)
    assert Configured(tmp_path / "x.pid").can_reload, "SIGHUP -> a method of the Service"
    assert Configured(tmp_path / "x.pid", reload_signal="USR1").can_reload is False, "terminate"
    assert Service(tmp_path / "x.pid").can_reload is False, "no signal_map"
    ignored = Service(tmp_path / "x.pid", signal_map={signal.SIGHUP: None})
    assert ignored.can_reload is False
    usr2 = Service(tmp_path / "x.pid", reload_signal="SIGUSR2", signal_map={12: print})
    assert (usr2.reload_signal, usr2.can_reload) == (signal.SIGUSR2, True)
    stop = Service(tmp_path / "x.pid", signal_map={signal.SIGHUP: "stop"})
    assert stop.can_reload is False, "Service's own command, not a handler"

    class Own(Service):
        def terminate(self, signum: int, frame: Any) -> None:  # its own, a reload
            pass

    own = Own(tmp_path / "x.pid", signal_map={signal.SIGHUP: "terminate"})
    assert own.can_reload is True

    class Attribute(Service):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.on_hup = lambda signum, frame: None  # what _handler finds, on the instance
            super().__init__(*args, **kwargs)

    attribute = Attribute(tmp_path / "x.pid", signal_map={signal.SIGHUP: "on_hup"})
    assert attribute.can_reload is True

    class Tricky(Service):
        @property
        def broken(self) -> Any:
            raise RuntimeError("a property is not run to answer")

    for name in ("can_reload", "broken", "__class__", "pidfile_path"):
        tricky = Tricky(tmp_path / "x.pid", signal_map={signal.SIGHUP: name})
        assert tricky.can_reload is False, name
