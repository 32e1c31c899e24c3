"""The control socket's client (daemonctx.supervisor.client) and ``daemonctx ctl``,
against fake supervisors on real Unix sockets: a thread answering canned lines,
or a subprocess for ``shutdown``, which waits for the supervisor's exit."""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import ENV, ProcessTracker, Supervisors, pid_alive, wait_for

from daemonctx.cli import main
from daemonctx.errors import CommandError
from daemonctx.supervisor.client import Client, SupervisorNotRunning
from daemonctx.supervisor.protocol import (
    BAD_RESPONSE,
    NOT_FOUND,
    PERMISSION_DENIED,
    ProtocolError,
    RemoteError,
)
from daemonctx.supervisor.results import CommandInfo, ExitInfo, ProgramInfo

# What the fake server answers a request (a dict): a response (a dict, sent as a
# JSON line), raw bytes sent as they are, or None for no answer at all.
Answer = Callable[[dict[str, Any]], "dict[str, Any] | bytes | None"]


def program(name: str, state: str = "running", **fields: Any) -> dict[str, Any]:
    """A program's JSON as the server sends it."""
    running = state == "running"
    info = ProgramInfo(
        name=name,
        program=name.partition(":")[0],
        state=state,
        text=fields.pop("text", f"{state} (pid 12, up 5 s)" if running else state),
        pid=12 if running else None,
        uptime=5.0 if running else None,
        since=5.0,
        restarts=fields.pop("restarts", 0),
        attempt=1,
        last_exit=fields.pop("last_exit", None),
        next_start=None,
        status_text="",
        healthy=fields.pop("healthy", running),
    )
    return {**info.to_json(), **fields}


def ok(request: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"id": request["id"], "ok": True, "result": result}


def error(request: dict[str, Any], type: str, message: str) -> dict[str, Any]:
    return {"id": request["id"], "ok": False, "error": {"type": type, "message": message}}


class FakeServer:
    """A supervisor's control socket served by a thread: each request line is
    recorded in ``requests`` and answered by ``answer``, one connection at a time;
    with ``hang_up``, the connection is closed after the first answer."""

    def __init__(self, path: Path, answer: Answer) -> None:
        self.path = path
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.hang_up = False
        self.stopping = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.listener.settimeout(0.01)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(0.01)
                self._answer_lines(conn)

    def _answer_lines(self, conn: socket.socket) -> None:
        buffer = b""
        while not self.stopping.is_set():
            line, newline, rest = buffer.partition(b"\n")
            if not newline:
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                buffer += data
                continue
            buffer = rest
            request = json.loads(line)
            self.requests.append(request)
            reply = self.answer(request)
            if reply is not None:
                conn.sendall(
                    reply if isinstance(reply, bytes) else json.dumps(reply).encode() + b"\n"
                )
            if self.hang_up:
                return

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "ctl.sock"


@pytest.fixture
def serve(sock: Path) -> Iterator[Callable[[Answer], FakeServer]]:
    servers: list[FakeServer] = []

    def start(answer: Answer) -> FakeServer:
        servers.append(FakeServer(sock, answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def by_command(**results: Any) -> Answer:
    """An answer function: each command's canned result (a function of the request,
    or a value); an unknown command gets unknown-command."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["command"] not in results:
            return error(request, "unknown-command", f"no command {request['command']!r}")
        result = results[request["command"]]
        return ok(request, result(request) if callable(result) else result)

    return answer


# -- the client ---------------------------------------------------------------------------


def test_ping_reuses_one_connection_with_numbered_requests(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    server = serve(by_command(ping="pong"))
    with Client(sock, timeout=5) as client:
        assert client.ping() == "pong"
        assert client.ping() == "pong"
    assert [r["id"] for r in server.requests] == [1, 2]
    assert server.requests[0] == {"id": 1, "command": "ping", "args": {}, "version": 1}
    assert server.connections == 1


def test_what_a_client_raises_and_returns_is_importable_from_daemonctx_supervisor() -> None:
    """The errors and results docs/supervisor.md names without a module come from
    ``daemonctx.supervisor``, as Client does; a bad request is caught by that name."""
    code = """
import daemonctx.errors
import daemonctx.supervisor as package
from daemonctx.supervisor import (
    Client, CommandError, OutputLine, ProtocolError, RequestError, RunInfo, Tail, protocol,
    results
)
assert [getattr(package, name) for name in package.__all__]
assert "CommandError" in package.__all__ and CommandError is daemonctx.errors.CommandError
assert (ProtocolError, RequestError) == (protocol.ProtocolError, protocol.RequestError)
assert (RunInfo, OutputLine, Tail) == (results.RunInfo, results.OutputLine, results.Tail)
try:
    Client("/nonexistent/control.sock").call("flush", region=float("nan"))
except RequestError as exc:
    print("RequestError:", exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("RequestError: "), result.stdout


def test_status_is_parsed_into_program_infos(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    last = ExitInfo(code=1, signal=None, core=False, text="exited 1", ago=30.0)
    programs = [program("web:0", last_exit=last, restarts=2), program("worker", "backoff")]
    server = serve(by_command(status={"programs": programs}))
    with Client(sock, timeout=5) as client:
        found = client.status("web")
    assert server.requests[0]["args"] == {"names": ["web"]}
    assert [(p.name, p.program, p.state, p.running) for p in found] == [
        ("web:0", "web", "running", True),
        ("worker", "worker", "backoff", False),
    ]
    assert found[0].last_exit == last
    assert found[0].restarts == 2


def test_commands_signal_and_call(sock: Path, serve: Callable[[Answer], FakeServer]) -> None:
    info = CommandInfo("flush", "(region: str) -> int", "Flush a region.", False, False)
    server = serve(
        by_command(
            commands={"commands": [info.to_json()]},
            signal={"programs": [program("web")]},
            flush=lambda request: {"flushed": request["args"]["region"]},
        )
    )
    with Client(sock, timeout=5) as client:
        assert client.commands() == [info]
        assert [p.name for p in client.signal("HUP", "web")] == ["web"]
        assert client.call("flush", region="eu") == {"flushed": "eu"}
    assert server.requests[1]["args"] == {"signal": "HUP", "names": ["web"]}
    assert server.requests[2]["args"] == {"region": "eu"}


def test_a_remote_error_keeps_its_type(sock: Path, serve: Callable[[Answer], FakeServer]) -> None:
    serve(lambda request: error(request, NOT_FOUND, "no program named 'db'"))
    with Client(sock, timeout=5) as client, pytest.raises(RemoteError) as info:
        client.status("db")
    assert (info.value.type, str(info.value)) == (NOT_FOUND, "no program named 'db'")


def test_not_running_when_there_is_no_socket(sock: Path) -> None:
    with pytest.raises(SupervisorNotRunning) as info:
        Client(sock, timeout=5).ping()
    assert isinstance(info.value, CommandError)
    assert info.value.exit_code == 3
    assert str(info.value) == f"supervisor is not running (nothing listens on {sock})"


def test_not_running_when_the_socket_is_stale(sock: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))  # bound, never listening, then closed: the file stays
    stale.close()
    assert sock.is_socket()
    with pytest.raises(SupervisorNotRunning) as info:
        Client(sock, timeout=5).status()
    assert info.value.exit_code == 3


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (lambda r: {"id": r["id"] + 1, "ok": True, "result": "pong"}, "to request 2, not 1"),
        (lambda r: b"<html>\n", "not JSON"),
        (lambda r: b'{"id": 1, "ok": "yes"}\n', "ok must be true or false"),
        (lambda r: ok(r, 42), "bad answer from the supervisor to ping: 42"),
    ],
    ids=["id mismatch", "garbage", "not a response", "wrong result"],
)
def test_a_bad_answer_is_a_clear_error(
    sock: Path, serve: Callable[[Answer], FakeServer], reply: Answer, expected: str
) -> None:
    server = serve(reply)
    client = Client(sock, timeout=5)
    with pytest.raises(ProtocolError) as info:
        client.ping()
    assert info.value.type == BAD_RESPONSE
    assert expected in str(info.value)
    assert str(info.value).startswith("bad answer from the supervisor")
    server.answer = by_command(ping="pong")  # the connection was closed: a new one is in step
    assert client.ping() == "pong"
    client.close()
    assert server.connections == 2


def test_the_connection_closed_before_an_answer(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    server = serve(lambda request: b'{"id": 1, "ok": tr')  # half a line, then it hangs up
    server.hang_up = True
    with pytest.raises(CommandError, match=r"^the supervisor closed the connection$") as info:
        Client(sock, timeout=5).ping()
    assert info.value.exit_code == 1


def test_no_answer_within_the_timeout(sock: Path, serve: Callable[[Answer], FakeServer]) -> None:
    serve(lambda request: None)
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"^no answer from the supervisor within 0\.2 s$"):
        Client(sock, timeout=0.2).status()
    assert time.monotonic() - started < 2


def test_the_timeout_bounds_the_whole_answer(sock: Path) -> None:
    """A first byte of the answer at 0.8 s, then nothing: with a 1 s timeout the
    client gives up at 1 s, its second read bounded by the time left (not at 1.8 s,
    a whole timeout again)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(1)
    stop = threading.Event()

    def stall() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.makefile("rb").readline()
            if not stop.wait(0.8):
                conn.sendall(b"{")
                stop.wait(5)

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(CommandError, match=r"^no answer from the supervisor within 1 s$"):
            Client(sock, timeout=1.0).ping()
        took = time.monotonic() - started
        assert 0.9 < took < 1.5, took
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_timeout_changed_to_none_waits_for_a_slow_answer(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    """``timeout`` is a plain attribute: set to None after a bounded request, the
    next request waits as long as the supervisor takes (the socket's deadline from
    the first one does not linger)."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["id"] == 2:
            time.sleep(0.6)  # a slow supervisor, past the first request's 0.5 s bound
        return ok(request, "pong")

    serve(answer)
    with Client(sock, timeout=0.5) as client:
        assert client.ping() == "pong"
        client.timeout = None
        assert client.ping() == "pong"


# -- shutdown: the supervisor is a real process ------------------------------------------------

# Listens on argv[1], says "listening", answers one shutdown with its pid, closes the
# connection, and exits a moment later (stopping its programs).
FAKE_SUPERVISOR = """
import json, os, socket, sys, time
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(1)
if sys.argv[2] == "fork" and os.fork():  # a launcher whose daemon serves
    os._exit(0)
print(os.getpid(), flush=True)
conn, _ = listener.accept()
request = json.loads(conn.makefile().readline())
answer = {"id": request["id"], "ok": True, "result": {"pid": os.getpid()}}
conn.sendall(json.dumps(answer).encode() + b"\\n")
conn.close()
time.sleep(0.2)
"""


@pytest.mark.parametrize("how", ["listener", "fork"])
def test_shutdown_waits_until_the_supervisor_is_gone(
    sock: Path, processes: ProcessTracker, how: str
) -> None:
    """The process is found through SO_PEERCRED; when the listener has gone (it
    forked after listen()), through the pid in the answer."""
    proc = processes.popen(
        [sys.executable, "-c", FAKE_SUPERVISOR, str(sock), how],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout is not None
    pid = processes.add(int(proc.stdout.readline()))
    if how == "fork":
        assert proc.wait(5) == 0 and pid != proc.pid
    with Client(sock, timeout=5) as client:
        assert client.shutdown() == pid
    assert not pid_alive(pid)


def test_shutdown_without_waiting(sock: Path, serve: Callable[[Answer], FakeServer]) -> None:
    serve(by_command(shutdown={"pid": 4242}))
    with Client(sock, timeout=5) as client:
        assert client.shutdown(wait=False) == 4242


# -- daemonctx ctl ----------------------------------------------------------------------------


def ctl(sock: Path, *args: str) -> int:
    return main(["ctl", "--control", str(sock), *args])


def test_ctl_status_lines(
    sock: Path, serve: Callable[[Answer], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    last = ExitInfo(code=None, signal=9, core=False, text="killed by SIGKILL", ago=125.0)
    programs = [
        program("web:0", restarts=2, last_exit=last),
        program("web:1", restarts=1),
        program("worker", text="running (pid 14, up 1 s, last: killed by SIGKILL)", last_exit=last),
    ]
    serve(by_command(status={"programs": programs}))
    assert ctl(sock, "status") == 0
    assert capsys.readouterr().out.splitlines() == [
        "web:0   running (pid 12, up 5 s), 2 restarts; last: killed by SIGKILL 2 min 5 s ago",
        "web:1   running (pid 12, up 5 s), 1 restart",
        "worker  running (pid 14, up 1 s, last: killed by SIGKILL)",
    ]


def test_ctl_status_of_all_is_0_when_each_is_as_it_should_be(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    """Without names, a health check: a program stopped on purpose, or a one-shot
    done, is as it should be; one in backoff is not. supervisord's status said 3
    for both (its issue #1223)."""
    done = program("migrate", "exited", healthy=True)
    manual = program("backup", "stopped", healthy=True)
    serve(by_command(status={"programs": [program("web"), done, manual]}))
    assert ctl(sock, "status") == 0
    assert ctl(sock, "status", "all") == 0
    assert ctl(sock, "status", "migrate") == 3  # named: LSB's "is it running?"


def test_ctl_status_of_all_is_3_with_one_in_backoff(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    serve(by_command(status={"programs": [program("web"), program("db", "backoff")]}))
    assert ctl(sock, "status") == 3


def test_ctl_status_is_3_unless_every_program_runs(
    sock: Path, serve: Callable[[Answer], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    programs = [program("web"), program("db", "backoff", text="backoff (restart in 2 s)")]
    server = serve(by_command(status={"programs": programs}))
    assert ctl(sock, "status", "web", "db") == 3
    assert (
        capsys.readouterr().out == "web  running (pid 12, up 5 s)\ndb   backoff (restart in 2 s)\n"
    )
    assert server.requests[0]["args"] == {"names": ["web", "db"]}


@pytest.mark.parametrize(
    "words",
    [
        ["--json", "status"],
        ["status", "--json"],  # after the command, as users type it
        ["status", "web", "--json"],
        ["--timeout", "5", "status", "--json", "web"],
        ["status", "--timeout", "5", "--json"],  # not the hand parser's: argparse's
    ],
)
def test_ctl_json_prints_the_raw_result(
    sock: Path,
    serve: Callable[[Answer], FakeServer],
    capsys: pytest.CaptureFixture[str],
    words: list[str],
) -> None:
    result = {"programs": [program("web", extra="kept")]}
    server = serve(by_command(status=result))
    assert main(["ctl", "--control", str(sock), *words]) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert server.requests[0]["args"] == {"names": ["web"] if "web" in words else []}


@pytest.mark.parametrize(
    ("command", "state", "code"),
    [
        ("start", "running", 0),
        ("start", "failed", 1),
        ("stop", "stopped", 0),
        ("stop", "running", 1),
    ],
)
def test_ctl_start_and_stop_exit_codes(
    sock: Path,
    serve: Callable[[Answer], FakeServer],
    capsys: pytest.CaptureFixture[str],
    command: str,
    state: str,
    code: int,
) -> None:
    serve(by_command(**{command: {"programs": [program("web", state)]}}))
    assert ctl(sock, command, "all") == code
    assert capsys.readouterr().out.startswith(f"web  {state}")


@pytest.mark.parametrize(
    ("type", "code"),
    [(PERMISSION_DENIED, 4), ("bad-arguments", 2), ("unknown-command", 2), ("failed", 1)],
)
def test_ctl_remote_errors(
    sock: Path,
    serve: Callable[[Answer], FakeServer],
    capsys: pytest.CaptureFixture[str],
    type: str,
    code: int,
) -> None:
    serve(lambda request: error(request, type, "no way"))
    assert ctl(sock, "signal", "HUP", "web") == code
    assert capsys.readouterr() == ("", "daemonctx: error: no way\n")


@pytest.mark.parametrize("command", [["status"], ["ping"], ["stop", "web"]])
def test_ctl_when_the_supervisor_is_not_running(
    sock: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert ctl(sock, *command) == 3
    message = f"daemonctx: error: supervisor is not running (nothing listens on {sock})\n"
    assert capsys.readouterr() == ("", message)


def test_ctl_ping_commands_and_call(
    sock: Path, serve: Callable[[Answer], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    commands = [
        CommandInfo("status", "(names: list[str] = [])", "Show programs.", True, True).to_json(),
        CommandInfo("flush", "(region: str) -> int", "", False, False).to_json(),
    ]
    server = serve(
        by_command(
            ping="pong",
            commands={"commands": commands},
            flush=lambda request: request["args"],
            hello="hi there",
        )
    )
    assert ctl(sock, "ping") == 0
    assert ctl(sock, "commands") == 0
    assert ctl(sock, "call", "flush", '{"region": "eu", "n": 2}') == 0
    assert ctl(sock, "call", "hello") == 0
    assert capsys.readouterr().out.splitlines() == [
        "pong",
        "status(names: list[str] = [])  Show programs.",
        "flush(region: str) -> int",
        '{"region": "eu", "n": 2}',
        "hi there",
    ]
    assert server.requests[3]["args"] == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [("{region: eu}", "call: not JSON: '{region: eu}' ("), ("[1]", "must be a JSON object: '[1]'")],
)
def test_ctl_call_with_bad_json(
    sock: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    assert ctl(sock, "call", "flush", text) == 2
    err = capsys.readouterr().err
    assert err.startswith("daemonctx: error: ") and message in err
    assert err.count("\n") == 1


# What another user's process behind the socket may send: a title, a cleared
# screen, a carriage return and a newline that forge a line of their own.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\rfake  running\nforged"
SHOWN = "\\x1b]0;PWNED\\x07\\x1b[2J\\rfake  running\\nforged"


def run_ctl(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``daemonctx ctl`` as the operator runs it: what it prints, and its exit code."""
    argv = [sys.executable, "-m", "daemonctx", "ctl", "--control", str(sock), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=60)


def test_ctl_shows_what_the_answer_says_escaped(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    """Whatever answers on the socket (a process of the user who runs the
    supervisor), ctl's lines are its own: an escape sequence, a carriage return or
    a newline in a name, a text, a pong or a command's doc is shown escaped."""
    hostile_command = CommandInfo("x", "()", "d" + HOSTILE, False, False)
    serve(
        by_command(
            status={"programs": [program("web" + HOSTILE, text="running" + HOSTILE)]},
            ping="pong" + HOSTILE,
            commands={"commands": [hostile_command.to_json()]},
            reload={"added": ["web" + HOSTILE], "changed": []},
        )
    )
    status = run_ctl(sock, "status")
    assert (status.returncode, status.stderr) == (0, "")
    width = len("web" + SHOWN)
    assert status.stdout == f"{'web' + SHOWN:<{width}}  running{SHOWN}\n"
    assert run_ctl(sock, "ping").stdout == f"pong{SHOWN}\n"
    assert run_ctl(sock, "commands").stdout == f"x()  d{SHOWN}\n"
    assert run_ctl(sock, "reload").stdout == f"add web{SHOWN}\n"


# JSON's 1e400 is read as infinity, which no count is (int() raised OverflowError).
HUGE = json.dumps({"programs": [program("web", restarts=12345)]}).replace("12345", "1e400")


def test_ctl_tail_follow_shows_the_end_it_is_told_escaped(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    """The answer that ends a follow names why (``ended``): whatever listens on the
    socket chose that text, shown escaped on stderr, as every other answer is."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"lines": [], "cursor": 1, "missed": False, "instance": 7}
        if "after" in request["args"]:
            result["ended"] = "web" + HOSTILE
        return ok(request, result)

    serve(answer)
    shown = run_ctl(sock, "tail", "-f", "web")
    assert (shown.returncode, shown.stdout) == (0, ""), shown
    assert "\x1b" not in shown.stderr and shown.stderr.count("\n") == 1, shown.stderr
    assert shown.stderr.startswith("daemonctx: web\\x1b]0;"), shown.stderr


@pytest.mark.parametrize("names", [[], ["web"]], ids=["health check", "is web running"])
def test_ctl_status_that_gets_no_answer_in_time_is_unknown_4(
    sock: Path, serve: Callable[[Answer], FakeServer], names: list[str]
) -> None:
    """A supervisor that does not answer (stopped, hung): ``ctl --timeout 0.5
    status`` exits 4, LSB's "status unknown", in one line; it exited 1, the code
    of a failed action. ``ctl ping`` stays 1."""
    serve(lambda request: None)
    shown = run_ctl(sock, "--timeout", "0.5", "status", *names)
    assert (shown.returncode, shown.stdout) == (4, ""), shown
    assert shown.stderr == "daemonctx: error: no answer from the supervisor within 0.5 s\n"
    assert run_ctl(sock, "--timeout", "0.5", "ping").returncode == 1


@pytest.mark.parametrize(
    ("command", "result"),
    [("status", HUGE), ("reload", '{"changed": [1]}')],
    ids=["a number too big", "a plan that is none"],
)
def test_ctl_says_a_bad_answer_in_one_line(
    sock: Path, serve: Callable[[Answer], FakeServer], command: str, result: str
) -> None:
    """An answer ctl cannot read is a one-line error, exit 1 (for status, LSB's
    "unknown": 4), never a traceback; and ``Client.status()`` raises
    ProtocolError, not OverflowError."""
    line = '{"id": %d, "ok": true, "result": %s}\n'
    serve(lambda request: (line % (request["id"], result)).encode())
    shown = run_ctl(sock, command)
    assert shown.returncode == (4 if command == "status" else 1)
    assert shown.stdout == ""
    assert shown.stderr.startswith(
        f"daemonctx: error: bad answer from the supervisor to {command}: "
    )
    assert shown.stderr.count("\n") == 1, shown.stderr
    if command == "status":
        with Client(sock, timeout=5) as client, pytest.raises(ProtocolError) as info:
            client.status()
        assert info.value.type == BAD_RESPONSE


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"last_exit": {"code": 1, "signal": None, "core": False, "text": "exited 1", "ago": 3.5}},
        {"state": "stopped", "pid": None, "uptime": None, "healthy": False},
        {"since": 5},  # an int where a float is written: read as one
        {"next_start": 2.5, "output_error": "No space left on device", "dropped": 7},
        {"newer": "a field of a newer supervisor"},
    ],
    ids=["running", "last exit", "stopped", "int since", "backoff", "newer"],
)
def test_a_program_is_read_from_its_answer_field_for_field(fields: dict[str, Any]) -> None:
    """The supervisor's own answer is checked in one expression, anything else field
    by field: both give the same record, which shares nothing with the answer."""
    data = {**program("web"), **fields}
    info = ProgramInfo.from_json(data)
    last = data["last_exit"]
    fields = {name: data[name] for name in ProgramInfo.FIELDS}  # type: ignore[attr-defined]
    fields["since"] = float(data["since"])
    fields["last_exit"] = None if last is None else ExitInfo(**last)
    assert info == ProgramInfo(**fields)
    assert type(info.since) is float
    data["name"] = "changed"
    assert info.name == "web"
    with pytest.raises(AttributeError):
        info.name = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": 5, "state": [], "text": None},
        {"pid": "12"},
        {"healthy": "yes"},
        {"restarts": True},
        {"since": "5"},
        {"last_exit": {"code": "1", "text": "exited 1"}},
        {"last_exit": ["exited 1"]},
        {"output_error": 7},
    ],
    ids=["the tester's", "pid", "healthy", "restarts", "since", "exit code", "exit", "error"],
)
def test_ctl_status_of_an_answer_of_the_wrong_types_is_unknown_4(
    sock: Path, serve: Callable[[Answer], FakeServer], fields: dict[str, Any]
) -> None:
    """Whatever listens on the socket answers a program whose fields are of
    other types: ``{"name": 5, "state": [], "text": null}`` printed ``5  None``,
    exit 3 (a program not running), where an answer ctl cannot read is 4,
    "unknown"."""
    serve(by_command(status={"programs": [{**program("web"), **fields}], "supervisor": "x"}))
    shown = run_ctl(sock, "status")
    assert (shown.returncode, shown.stdout) == (4, ""), shown
    assert shown.stderr.startswith("daemonctx: error: bad answer from the supervisor to status: ")
    assert shown.stderr.count("\n") == 1, shown.stderr


@pytest.mark.parametrize(
    ("command", "call", "result"),
    [
        ("why", lambda c: c.why("web"), {"programs": [{"status": program("web"), "runs": [{}]}]}),
        (
            "why",
            lambda c: c.why("web"),
            {"programs": [{"status": program("web"), "runs": [{"started": 1.0, "steps": "TERM"}]}]},
        ),
        (
            "why",
            lambda c: c.why("web"),
            {"programs": [{"status": program("web"), "runs": [{"started": 1.0, "error": 5}]}]},
        ),
        ("commands", lambda c: c.commands(), {"commands": [{"name": "x", "read_only": "no"}]}),
        (
            "tail",
            lambda c: c.tail("web"),
            {"lines": [{"stream": 1, "time": 0, "text": ""}], "cursor": 5},
        ),
        ("tail", lambda c: c.tail("web"), {"lines": [], "cursor": "5"}),
        ("tail", lambda c: c.tail("web"), {"lines": [], "cursor": 5, "missed": "no"}),
        ("tail", lambda c: c.tail("web"), {"lines": [], "cursor": 5, "ended": 1}),
    ],
    ids=["no start", "steps", "error", "read_only", "stream", "cursor", "missed", "ended"],
)
def test_every_result_of_the_wrong_types_is_a_bad_answer(
    sock: Path,
    serve: Callable[[Answer], FakeServer],
    command: str,
    call: Callable[[Client], Any],
    result: dict[str, Any],
) -> None:
    """Each result the client reads checks the types of its fields, as status's
    programs do: a bad answer, not a string made of a number or a list."""
    serve(by_command(**{command: result}))
    with Client(sock, timeout=5) as client, pytest.raises(ProtocolError) as info:
        call(client)
    assert info.value.type == BAD_RESPONSE
    assert str(info.value).startswith(f"bad answer from the supervisor to {command}: ")


@pytest.mark.skipif(
    not hasattr(sys, "get_int_max_str_digits"), reason="no limit on an int's digits here"
)
def test_a_number_too_long_in_an_answer_is_said_so_not_python_s_advice(
    sock: Path, serve: Callable[[Answer], FakeServer]
) -> None:
    """An int past Python's limit on digits in an answer: the operator read "not
    JSON: Exceeds the limit (4300 digits) ... use sys.set_int_max_str_digits() to
    increase the limit", advice for a programmer. Now the answer's fault, said."""
    digits = "9" * 5000
    serve(
        lambda request: b'{"id": %d, "ok": true, "result": %s}\n' % (request["id"], digits.encode())
    )
    shown = run_ctl(sock, "status")
    assert (shown.returncode, shown.stdout) == (4, ""), shown
    assert shown.stderr == (
        "daemonctx: error: bad answer from the supervisor: number too long:"
        " 99999999999999999999... (5000 digits)\n"
    )


@contextlib.contextmanager
def _flooding_peer(sock: Path, send: Callable[[socket.socket], None]) -> Iterator[None]:
    """A peer on ``sock`` that takes one request line, then ``send``s to its
    client until done or the client has closed; stopped and joined at the end."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(1)

    def flood() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.makefile("rb").readline()
            try:
                send(conn)
            except OSError:  # the client gave up and closed
                pass

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(30)
        listener.close()


def test_blank_lines_are_read_in_linear_time(sock: Path) -> None:
    """A peer that sends 16 MiB of blank lines (skipped: no answer) then closes:
    the client steps over them in a fraction of a second of CPU; it cut the rest
    of the buffer off after each one, 14 s for these."""
    blank_lines = b"\n" * (16 << 20)
    with _flooding_peer(sock, lambda conn: conn.sendall(blank_lines)), Client(sock, 120) as client:
        cpu = time.thread_time()  # this thread's alone
        with pytest.raises(CommandError, match="closed the connection"):
            client.ping()
        cpu = time.thread_time() - cpu
    assert cpu < 2.0, f"{cpu:.1f} s of CPU to step over 16 MiB of blank lines"


def test_a_long_answer_is_read_in_linear_time(sock: Path) -> None:
    """An answer is read in time linear in its size: a peer that sends 64 MiB
    with no newline costs the client a fraction of a second of CPU, not the 20 s
    of searching the whole buffer again after each read."""
    stop = threading.Event()

    def send(conn: socket.socket) -> None:
        chunk = b"x" * 65536
        while not stop.is_set():
            conn.sendall(chunk)

    with _flooding_peer(sock, send):
        try:
            with Client(sock, timeout=120) as client:
                cpu = time.thread_time()  # this thread's alone: the sender's and others' aside
                with pytest.raises(ProtocolError, match=r"answer is over 67108864 bytes"):
                    client.ping()
                cpu = time.thread_time() - cpu
        finally:
            stop.set()
    assert cpu < 2.0, f"{cpu:.1f} s of CPU to read 64 MiB"


def unread(conn: socket.socket) -> int:
    """How many bytes sent on ``conn`` its peer has not read yet (SIOCOUTQ)."""
    queued = fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", queued)[0])


def test_answers_split_across_reads_and_sharing_one_are_each_read_whole(
    sock: Path,
) -> None:
    """The line reader keeps what follows a newline for the next answer, and joins
    an answer that comes in pieces, however they are cut."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(1)
    big = "y" * 200_000
    answers = b"".join(
        json.dumps({"id": n, "ok": True, "result": f"pong{n}" if n != 2 else big}).encode() + b"\n"
        for n in (1, 2, 3)
    )

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            reader = conn.makefile("rb")
            reader.readline()
            cut = answers.index(b"pong1") + 2  # the first answer in two pieces
            conn.sendall(answers[:cut])
            wait_for(lambda: unread(conn) == 0, what="the client to read the first piece")
            conn.sendall(answers[cut:])  # the rest: the second's start, all of the third
            reader.readline()
            reader.readline()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with Client(sock, timeout=10) as client:
            assert [client.ping(), client.ping(), client.ping()] == ["pong1", big, "pong3"]
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.parametrize(
    "command",
    [
        'ping", "args": {}, "version": 1}\n{"id": 99, "command": "stop',
        'ping", "command": "stop',
    ],
    ids=["newline", "quote"],
)
def test_a_command_name_that_would_write_another_request_is_refused_before_sending(
    supervisors: Supervisors, command: str
) -> None:
    """``Client.call(name, names=[...])`` with a name from elsewhere: one holding a
    quote or a newline is refused as any bad name is, not written into the line,
    where it asked for a ``ping`` and sent a ``stop`` of web behind it."""
    supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
    supervisors.foreground()
    pid = supervisors.status("web").pid
    with supervisors.client(timeout=10) as client:
        with pytest.raises(ValueError, match="a command name matches"):
            client.call(command, names=["web"])
        with pytest.raises(ValueError, match="a command name matches"):
            client.request(command, {"names": ["web"]})
        assert client.ping() == "pong"  # the connection is in step
        (info,) = client.status("web")
    assert info.state == "running" and info.pid == pid, info


def test_ctl_finds_the_socket_in_the_config_file(
    tmp_path: Path,
    sock: Path,
    serve: Callable[[Answer], FakeServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve(by_command(ping="pong"))
    config = tmp_path / "shop.toml"
    config.write_text(f'[supervisor]\ncontrol = "{sock}"\n[program.web]\ncommand = ["/srv/web"]\n')
    assert main(["ctl", "--config", str(config), "ping"]) == 0
    assert capsys.readouterr().out == "pong\n"
    assert main(["ctl", "--config", str(tmp_path / "none.toml"), "ping"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"daemonctx: error: {tmp_path / 'none.toml'}") and err.count("\n") == 1


def _main_loads(argv: list[str], heavy: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run ``daemonctx.cli.main(argv)`` in a fresh interpreter; its stdout is the
    exit code and which of ``heavy`` were loaded."""
    code = (
        "import sys\n"
        "from daemonctx.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(code, [name for name in {heavy!r} if name in sys.modules])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=30
    )


def test_ctl_status_loads_no_parser_no_dataclasses_no_typing() -> None:
    """``ctl status`` is polled by scripts: its import path is part of the product
    (the supervisor benchmark's goal: a third of supervisorctl's time). It parses
    its arguments by hand and loads neither argparse, dataclasses, typing nor the
    other commands' modules; the full parser still answers anything else."""
    heavy = ("argparse", "dataclasses", "typing", "inspect", "daemonctx.control")
    heavy += ("daemonctx.context", "daemonctx.cli.daemon", "daemonctx.supervisor.core")
    result = _main_loads(["ctl", "--control", "/nonexistent/control.sock", "status"], heavy)
    assert result.stdout == "3 []\n", result
    assert "supervisor is not running" in result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "daemonctx", "ctl", "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
    )
    assert help_text.returncode == 0 and "COMMAND" in help_text.stdout
    # exit 4 is also `status NAME` of an unknown NAME (docs/supervisor.md), not only
    # "permission denied" (help's only word for it)
    assert "3 not, 4 a NAME is no program;" in " ".join(help_text.stdout.split())


@pytest.mark.parametrize(
    ("argv", "taken"),
    [
        (["--config", "/s.toml", "--foreground"], True),
        (["-f", "/s.toml"], True),
        (["--config=/s.toml", "--log", "/s.log", "--foreground"], True),
        (["--log=/s.log", "--config", "/s.toml"], True),
        (["--help"], False),
        (["--config"], False),  # argparse says what is missing
        (["--config", "--foreground"], False),
        (["--config="], False),
        (["--config", "/a.toml", "--config", "/b.toml"], False),
        (["--config", "/s.toml", "--foreground", "--foreground"], False),
        (["--conf", "/s.toml"], False),  # argparse's abbreviations stay argparse's
        (["-f/s.toml"], False),
        (["-f=/s.toml"], False),
        (["--config", "/s.toml", "--control", "/c.sock"], False),
        (["--foreground"], False),
        (["--config", "/s.toml", "extra"], False),
    ],
)
def test_supervise_parses_the_plain_forms_by_hand_and_leaves_the_rest(
    argv: list[str], taken: bool
) -> None:
    """``supervise --config FILE [--foreground] [--log FILE]`` starts without
    argparse; any other form, help and mistakes included, goes to the full
    parser and its messages."""
    from daemonctx.cli.supervise import quick

    assert (quick(argv) is not None) == taken


def test_supervise_mistakes_get_the_full_parsers_messages() -> None:
    for argv, message in (
        (["--config"], "--config/-f: expected one argument"),
        (["--config", "/s.toml", "--control", "/c.sock"], "cannot be used with --control"),
        # the one program's options, silently ignored with --config before
        (["--config", "/s.toml", "--restart", "always"], "cannot be used with --restart"),
        (["--config", "/s.toml", "--notify"], "cannot be used with --notify"),
        (["--config", "/s.toml", "--umask", "027"], "cannot be used with --umask"),
        (["--config", "/s.toml", "--chdir", "/srv"], "cannot be used with --chdir"),
        (["--config", "/s.toml", "--watchdog", "5"], "cannot be used with --watchdog"),
        (["-c", "/c.sock", "--notify", "--ready-after", "1", "--", "x"],
         "--notify and --ready-after: give one of them"),
    ):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "daemonctx", "supervise", *argv],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=30,
        )
        assert result.returncode == 2 and message in result.stderr, (argv, result)


def test_supervise_loads_none_of_the_daemon_commands() -> None:
    """The supervisor's start-up is part of "all running after launch" (a goal):
    ``supervise`` builds its own parser alone and loads neither the daemon
    commands' module nor what only they use (``control``, ``identity``)."""
    heavy = ("daemonctx.cli.daemon", "daemonctx.cli.ctl", "daemonctx.control", "daemonctx.identity")
    result = _main_loads(["supervise", "--config", "/nonexistent/shop.toml"], heavy)
    assert result.stdout.endswith(" []\n") and not result.stdout.startswith("0 "), result
    assert "/nonexistent/shop.toml" in result.stderr


@pytest.mark.parametrize(
    "timeout", [-1, 0, -0.5, float("nan"), float("-inf"), "5", b"5", True, [5]]
)
def test_a_timeout_that_is_no_wait_is_refused_at_once(tmp_path: Path, timeout: float) -> None:
    """Not socket's bare "Timeout value out of range" at the first request (-1),
    nor, for NaN, no timeout at all, nor a TypeError for "5" (the docs say
    ValueError): a ValueError naming the timeout, at once."""
    with pytest.raises(ValueError, match=r"^timeout: a number of seconds more than 0, or None"):
        Client(tmp_path / "control.sock", timeout=timeout)
