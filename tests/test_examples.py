"""The recipes in docs/recipes/ are the files in examples/: run each one for real,
as a user would, and check what the user would check.

Every process a test starts is killed by pid when the test ends (conftest's
``processes`` tracker, which also kills whoever holds a pidfile it watches),
whatever happened; waits are on events (a pidfd, a socket, a pipe),
never on a fixed sleep.
"""

from __future__ import annotations

import configparser
import os
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ROOT,
    UNSHARE_PID,
    ProcessTracker,
    needs_pid_namespace,
    needs_root,
    needs_tools,
    pid_alive,
    proc_fds,
    proc_stat,
    proc_status,
    wait_for,
    wait_gone,
)

from daemonctx.pidfile import read_pidfile_status

EXAMPLES = ROOT / "examples"
SYSTEMD = EXAMPLES / "systemd"

pytestmark = pytest.mark.timeout(30)


def watch_pidfile(processes: ProcessTracker, pidfile: Path) -> None:
    """Kill whoever holds ``pidfile`` when the test ends."""

    def holder() -> list[int]:
        found = read_pidfile_status(pidfile)
        return [found.pid] if found.running and found.pid else []

    processes.watch(holder)


def run_example(name: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run an example to completion, as a user would from a shell."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=20,
        **kwargs,
    )


def read_until(fd: int, marker: bytes, timeout: float = 10) -> bytes:
    """Read from a pipe or socket until ``marker`` has arrived; fail on EOF or timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {marker!r}; got {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"end of file before {marker!r}; got {data!r}"
            data += chunk
    return data


def running_pid(pidfile: Path) -> int:
    """The pid of the live process that holds ``pidfile``, which must name it."""
    found = read_pidfile_status(pidfile)
    assert found.running, f"{pidfile}: nobody holds it"
    assert found.pid is not None
    assert pidfile.read_text() == f"{found.pid}\n", "the pidfile names the lock holder"
    return found.pid


def stop(pid: int) -> None:
    """What `kill PID` does, then wait on a pidfd until the process is gone; if it
    is not, say where each of its threads waits (for the next one to read CI)."""
    os.kill(pid, signal.SIGTERM)
    try:
        wait_gone(pid)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its threads: {thread_waits(pid)}") from None


def thread_waits(pid: int) -> list[str]:
    """Each thread of ``pid``: its name, state and kernel wait channel."""
    found = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        try:
            comm = (task / "comm").read_text().strip()
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            found.append(f"{task.name} {comm} {state} {(task / 'wchan').read_text()}")
        except OSError:
            pass
    return found


# -- 1. a TCP echo server -------------------------------------------------------------------


def start_echo_server(
    tmp_path: Path, processes: ProcessTracker
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """``echo_server.py --port 0`` (its daemon killed at the end): the command's
    result, the pidfile and the file the port is written to."""
    pidfile, port_file = tmp_path / "echo.pid", tmp_path / "port"
    watch_pidfile(processes, pidfile)
    result = run_example(
        "echo_server.py", "--port", "0", "--port-file", str(port_file), "--pidfile", str(pidfile)
    )
    return result, pidfile, port_file


def test_echo_server_answers_as_soon_as_the_command_returns(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    result, pidfile, port_file = start_echo_server(tmp_path, processes)
    assert result.returncode == 0, result.stderr
    # Ready meant listening: no retry loop is needed to connect.
    pid = running_pid(pidfile)
    port = int(port_file.read_text())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"hello\nworld\n")
        assert read_until(client.fileno(), b"world\n") == b"hello\nworld\n"
    assert port_file.stat().st_mode & 0o777 == 0o644, "umask=0o022"
    stop(pid)
    assert not pidfile.exists()


def test_echo_server_exits_at_once_with_a_client_still_connected(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """Its client threads are joined at exit (daemon threads can hang the
    interpreter's shutdown): closing the server shuts the open connections down,
    so a connected client does not hold the exit up, and learns of it (EOF)."""
    result, pidfile, port_file = start_echo_server(tmp_path, processes)
    assert result.returncode == 0, result.stderr
    pid = running_pid(pidfile)
    with socket.create_connection(("127.0.0.1", int(port_file.read_text())), timeout=10) as client:
        client.sendall(b"still here\n")
        assert read_until(client.fileno(), b"\n") == b"still here\n"
        stop(pid)  # within wait_gone's 10 s, the client still connected
        assert client.recv(100) == b""
    assert not pidfile.exists()


def test_echo_server_port_in_use_fails_in_the_terminal(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    pidfile = tmp_path / "echo.pid"
    watch_pidfile(processes, pidfile)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_example("echo_server.py", "--port", str(port), "--pidfile", str(pidfile))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("daemonctx.errors.DaemonStartupError: the daemon (pid ")
    assert last.endswith("failed to start: OSError: [Errno 98] Address already in use")
    daemon_pid = int(last.split("(pid ")[1].split(")")[0])
    assert not pid_alive(daemon_pid), "no daemon is left behind"
    assert not pidfile.exists()


# -- 2. logging to a file, reopened on SIGHUP -----------------------------------------------


def heartbeats(path: Path) -> list[int]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [int(line.rsplit(" ", 1)[1]) for line in lines if " heartbeat " in line]


def test_logging_daemon_reopens_its_log_on_sighup(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    log, rotated, pidfile = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "app.pid"
    watch_pidfile(processes, pidfile)
    result = run_example(
        "logging_daemon.py", "--log", str(log), "--pidfile", str(pidfile), "--interval", "0.02"
    )
    assert result.returncode == 0, result.stderr
    pid = running_pid(pidfile)
    wait_for(lambda: heartbeats(log), what="a heartbeat in the log")
    assert f"[{pid}] started" in log.read_text(), "the daemon writes to the preserved log"

    # What logrotate does: rename the file, then run `kill -HUP` as its postrotate script.
    log.rename(rotated)
    os.kill(pid, signal.SIGHUP)
    new = wait_for(lambda: heartbeats(log), what="a heartbeat in a new file at the path")
    old = heartbeats(rotated)
    assert old[-1] < new[0], "lines went on in the renamed file until SIGHUP, then moved"
    wait_for(lambda: len(heartbeats(log)) >= len(new) + 2, what="more heartbeats")
    assert heartbeats(rotated) == old, "nothing is written to the renamed file any more"
    assert log.stat().st_mode & 0o777 == 0o640, "the daemon's umask=0o027"

    stop(pid)  # SIGTERM still stops it: SIGHUP was added to the default map
    assert log.read_text().splitlines()[-1].endswith(f"[{pid}] stopping")
    assert not pidfile.exists()


# -- 3. systemd: Type=notify and Type=forking -----------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD / name)
    return parser


def test_unit_files_start_the_shipped_programs() -> None:
    notify = unit("app-notify.service")["Service"]
    assert notify["Type"] == "notify"
    assert notify["ExecStart"].split()[1].endswith("/notify_daemon.py")
    forking = unit("app-forking.service")["Service"]
    assert forking["Type"] == "forking"
    exec_start = forking["ExecStart"].split()
    assert exec_start[1].endswith("/forking_daemon.py")
    assert exec_start[2:] == ["--pidfile", forking["PIDFile"]], "PIDFile= is the daemon's pidfile"


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket that learns each sender's pid."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(10)

    def receive(self) -> tuple[list[str], int]:
        """One message: its KEY=VALUE lines and the sender's pid."""
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        sender = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iii", payload[:12])[0]
        return data.decode().split("\n"), sender

    def close(self) -> None:
        self.sock.close()


def test_notify_service_reports_ready_and_stopping(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    manager = NotifySocket(tmp_path / "notify")
    try:
        proc = processes.popen(
            [sys.executable, str(SYSTEMD / "notify_daemon.py")],
            env={**os.environ, "NOTIFY_SOCKET": manager.path},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        lines, sender = manager.receive()
        assert lines == ["READY=1"]
        assert sender == proc.pid, "sent by the main process (systemd's NotifyAccess=main)"
        assert proc.poll() is None, "it did not fork: the process systemd started is the daemon"
        assert read_until(proc.stdout.fileno(), b"loading\n") == b"loading\n", "stdout: journal"
        assert manager.receive() == (["STATUS=serving"], proc.pid)

        proc.send_signal(signal.SIGTERM)  # systemctl stop
        assert proc.wait(10) == 0, "a requested stop is not a failure"
        assert manager.receive() == (["STOPPING=1"], proc.pid)
    finally:
        manager.close()


def test_forking_service_launcher_exits_once_pidfile_names_the_daemon(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    pidfile = tmp_path / "app-forking.pid"
    watch_pidfile(processes, pidfile)
    script = str(SYSTEMD / "forking_daemon.py")
    for _ in range(3):  # start, check, stop: each round is what systemd does
        launcher = processes.popen(
            [sys.executable, script, "--pidfile", str(pidfile)], stderr=subprocess.PIPE
        )
        _, errors = launcher.communicate(timeout=20)
        assert launcher.returncode == 0, errors
        # systemd reads PIDFile= right after the launcher exits: it must name the daemon now.
        pid = running_pid(pidfile)
        assert pid != launcher.pid
        state = proc_stat(pid)
        assert state[3] != str(pid), "not a session leader: it can never get a terminal"
        assert state[4] == "0", "no controlling terminal"
        assert script in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        stop(pid)
        assert not pidfile.exists()


def test_forking_service_second_start_fails_and_keeps_the_pidfile(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    pidfile = tmp_path / "app-forking.pid"
    watch_pidfile(processes, pidfile)
    args = ["systemd/forking_daemon.py", "--pidfile", str(pidfile)]
    assert run_example(*args).returncode == 0
    pid = running_pid(pidfile)
    second = run_example(*args)
    assert second.returncode == 69, "EX_UNAVAILABLE: already running"
    assert f"{pidfile} is locked by running process {pid}" in second.stderr
    assert running_pid(pidfile) == pid, "the running daemon's pidfile is untouched"
    stop(pid)


# -- 4. PID 1 in a container ----------------------------------------------------------------


ORPHAN = "sleep 60 </dev/null >/dev/null 2>&1 &"


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_container_init_runs_as_pid_1_reaps_orphans_and_stops_on_sigterm(
    processes: ProcessTracker,
) -> None:
    container = processes.popen(
        [*UNSHARE_PID, sys.executable, str(EXAMPLES / "container_init.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert container.stdout is not None
    init = wait_for(lambda: children(container.pid), what="the container's init")[0]
    processes.add(init)  # SIGKILL to a namespace's init kills the whole namespace
    output = read_until(container.stdout.fileno(), b"\n")
    assert output == b"running as pid 1\n", "the context did not fork: it is still PID 1"
    assert proc_status(init)["NSpid"].split() == [str(init), "1"]

    # An orphan in the container: sh starts sleep in the background and exits, so
    # the kernel gives sleep to PID 1. Once it exits, PID 1 must reap it.
    subprocess.run(
        ["nsenter", "-t", str(init), "-p", "-m", "--", "sh", "-c", ORPHAN],
        check=True,
        timeout=10,
    )
    orphan = wait_for(lambda: children(init), what="the orphan, re-parented to PID 1")[0]
    os.kill(orphan, signal.SIGKILL)
    wait_for(lambda: not children(init), what="PID 1 to reap the orphan (no zombie left)")

    os.kill(init, signal.SIGTERM)  # docker stop
    assert container.wait(10) == 0, "PID 1 has a SIGTERM handler and exits 0"
    assert read_until(container.stdout.fileno(), b"stopping\n").endswith(b"stopping\n")


# -- 5. dropping to an unprivileged user ----------------------------------------------------


@needs_root  # switches to nobody, and starts with supplementary groups
def test_unprivileged_daemon_keeps_its_pidfile_in_a_root_owned_directory(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    tmp_path.chmod(0o755)  # like /run: others may look, only root may write
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    pidfile = run / "app.pid"
    watch_pidfile(processes, pidfile)
    args = ["unprivileged.py", "--user", "65534", "--group", "65534", "--pidfile", str(pidfile)]
    # Started by root with supplementary groups, which the daemon must not keep.
    result = run_example(*args, extra_groups=[0, 4])
    assert result.returncode == 0, result.stderr
    pid = running_pid(pidfile)
    assert pidfile.stat().st_uid == 0, "written while still root"
    status = proc_status(pid)
    assert status["Uid"].split() == ["65534"] * 4, "real, effective, saved and fs uid"
    assert status["Gid"].split() == ["65534"] * 4
    assert status["Groups"] == "", "root's supplementary groups are gone"

    stop(pid)
    # Not root any more, it could neither unlink the pidfile nor write it (its lock fd
    # is read-only): the file stays, unlocked, naming the pid that is gone, and the
    # next start takes it over.
    assert pidfile.read_text() == f"{pid}\n"
    assert not read_pidfile_status(pidfile).running
    again = run_example(*args)
    assert again.returncode == 0, again.stderr
    assert running_pid(pidfile) != pid


# -- 6. started by inetd --------------------------------------------------------------------


def test_inetd_service_answers_on_stdin_without_detaching(processes: ProcessTracker) -> None:
    client, server_end = socket.socketpair()
    with client:
        with server_end:  # inetd's accepted connection, as the program's stdin and stdout
            proc = processes.popen(
                [sys.executable, str(EXAMPLES / "inetd_echo.py")],
                stdin=server_end,
                stdout=server_end,
                stderr=subprocess.PIPE,
            )
        client.sendall(b"hello\n")
        assert read_until(client.fileno(), b"hello\n") == b"hello\n"
        assert proc.poll() is None, "the process inetd started is the one that answers"
        fds = proc_fds(proc.pid)
        assert fds[0].startswith("socket:") and fds[1] == fds[0], "the connection is kept"
        assert fds[2] == "/dev/null", "error output does not go to the client"
        client.sendall(b"again\n")
        assert read_until(client.fileno(), b"again\n") == b"again\n"
        client.shutdown(socket.SHUT_WR)  # the client is done
        assert proc.wait(10) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""


# -- 7. the README's ticker -----------------------------------------------------------------


def readme_try_it() -> str:
    """The README's "Try it" command, after its venv and install steps."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"\n## Try it\n.*?```sh\n(.*?)\n```", text, re.S)
    assert found, "the README has no Try it command"
    command = found.group(1).split(" && ", 2)[2]
    assert command.startswith(".venv/bin/python examples/ticker.py start"), command
    return command


def test_the_readme_ticker_command_shows_the_log_through_a_pipe(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """Run as CI or ``ssh host cmd`` runs it: stdout a pipe, no PYTHONUNBUFFERED.
    The log already holds the daemon's lines when ``cat`` reads it."""
    log = tmp_path / "daemonctx-ticker.log"
    watch_pidfile(processes, tmp_path / "daemonctx-ticker.pid")
    command = readme_try_it().replace(".venv/bin/python", shlex.quote(sys.executable))
    command = command.replace("/tmp/daemonctx-ticker.log", shlex.quote(str(log)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        ["sh", "-c", command],
        cwd=ROOT,
        env={**env, "TICKER_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("starting ticker: ")
    pid = re.fullmatch(r"ticker (\d+) started", lines[1])
    assert pid, lines
    assert lines[2].startswith("tick ") and lines[2].endswith(f" from pid {pid.group(1)}")
    assert lines[-2] == f"ticker is running (pid {pid.group(1)})"
    assert re.fullmatch(rf"stopped ticker \(pid {pid.group(1)}\) in \d+\.\d+ s", lines[-1])
    assert log.read_text().splitlines()[-1] == f"ticker {pid.group(1)} stopping"


def test_the_ticker_s_stop_says_when_the_daemon_did_not_stop(
    tmp_path: Path, processes: ProcessTracker, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A daemon that cannot exit (frozen with SIGSTOP here): stop says so, exit 1."""
    import importlib.util

    pidfile = tmp_path / "daemonctx-ticker.pid"
    watch_pidfile(processes, pidfile)
    monkeypatch.setenv("TICKER_DIR", str(tmp_path))
    started = run_example("ticker.py", "start")
    assert started.returncode == 0, started.stderr
    pid = running_pid(pidfile)
    os.kill(pid, signal.SIGSTOP)
    spec = importlib.util.spec_from_file_location("ticker", EXAMPLES / "ticker.py")
    assert spec is not None and spec.loader is not None
    ticker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ticker)
    ticker.STOP_TIMEOUT = 0.2  # the command waits 10 s
    assert ticker.stop() == 1
    assert capsys.readouterr() == (
        "",
        f"ticker (pid {pid}) did not stop within 0.2 s of SIGTERM; it still runs\n",
    )
    assert pid_alive(pid) and read_pidfile_status(pidfile).running
