"""The supervisor's control socket and commands, on real processes and sockets.

Every supervisor here is a real ``daemonctx supervise`` (or an application built
with the Python API, tests/programs/ctl_app.py) started by the ``supervisors``
fixture, which kills every process carrying its token when the test ends. The
clients are ``daemonctx ctl``, ``Client``, or raw sockets speaking the protocol
line by line; clients of another user run in a forked child as ``nobody``.

What a user would check: the socket's mode and owner from the moment it exists,
who may do what, what the log records, that no client can block the supervisor,
the exit codes and one-line errors of ``ctl``, and that a refused request
changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import grp
import itertools
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import (
    NOBODY,
    NOGROUP,
    PROGRAMS,
    READABLE_ROOT,
    ROOT,
    Supervisors,
    needs_root,
    needs_tools,
    pid_alive,
    proc_fds,
    proc_stat,
    proc_status,
    python_for_nobody,
    python_program,
    run_as_nobody,
    run_in_child,
    uid_without_passwd_entry,
    wait_for,
    wait_gone,
    wait_reaped,
)

from daemonctx.supervisor import Client, Program, Supervisor
from daemonctx.supervisor.config import ConfigError
from daemonctx.supervisor.guard import GUARD_CODE
from daemonctx.supervisor.protocol import MAX_LINE, RemoteError, encode_request
from daemonctx.supervisor.results import ProgramInfo
from daemonctx.supervisor.server import MAX_CONNECTIONS_PER_USER, ControlServer, live_owner

CTL_APP = PROGRAMS / "ctl_app.py"
SLEEP = ["/bin/sleep", "1000"]
NOT_RUNNING = "supervisor is not running"


# -- helpers -----------------------------------------------------------------------------


def one_line(text: str) -> str:
    """``text`` (a command's stderr) is exactly one non-empty line: return it."""
    lines = text.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].strip(), f"expected one line, got {text!r}"
    return lines[0]


def config_at(
    supervisors: Supervisors, path: Path, programs: dict[str, dict[str, Any]], **keys: Any
) -> Path:
    """``supervisors.config(...)`` written to ``path`` instead of the default file."""
    saved = supervisors.config_path
    supervisors.config_path = path
    try:
        return supervisors.config(programs, **keys)
    finally:
        supervisors.config_path = saved


def launch(supervisors: Supervisors, config: Path) -> subprocess.Popen[str]:
    """``supervise --config CONFIG --foreground`` as a child, not waited for."""
    return supervisors.popen(
        [*supervisors.command(), "supervise", "--config", str(config), "--foreground"],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_python(supervisors: Supervisors, *argv: str) -> subprocess.Popen[str]:
    """``python ARGV``, an application serving ``supervisors.control`` through the
    Python API, returned once it answers."""
    proc = supervisors.popen(
        [sys.executable, *argv],
        env={**supervisors.env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    supervisors.wait_answering(proc)
    assert proc.poll() is None, proc.communicate()
    return proc


def start_app(supervisors: Supervisors, **options: Any) -> subprocess.Popen[str]:
    """tests/programs/ctl_app.py (the Python API) on ``supervisors.control``,
    returned once it answers."""
    options = {"control": supervisors.control, "log": str(supervisors.log), **options}
    return start_python(supervisors, str(CTL_APP), json.dumps(options))


def web_pid(supervisors: Supervisors) -> int:
    info = supervisors.status("web")
    assert info.state == "running" and info.pid is not None, info
    return int(info.pid)


def log_text(supervisors: Supervisors) -> str:
    return supervisors.log.read_text() if supervisors.log.exists() else ""


def exited(pidfd: int) -> bool:
    """The process pinned by ``pidfd`` has exited already (no waiting)."""
    return bool(select.select([pidfd], [], [], 0)[0])


class LineClient:
    """A raw client: protocol lines written and read on a Unix socket, with a bound."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, id: int, command: str, args: dict[str, Any] | None = None) -> None:
        self.send(encode_request(id, command, args))

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            assert data, f"connection closed; unanswered: {self.buffer!r}"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def nothing_pending(self) -> bool:
        """No answer waiting and the connection still open (a closed one is readable)."""
        return not self.buffer and not select.select([self.sock], [], [], 0)[0]


def error_type(answer: dict[str, Any]) -> str | None:
    return None if answer["ok"] else str(answer["error"]["type"])


# inotify, through libc: which events the socket's directory saw, and when.
IN_ATTRIB = 0x004
IN_MOVED_TO = 0x080
IN_CREATE = 0x100


class DirectoryWatch:
    """An inotify watch on a directory for entries created, moved in, or whose
    attributes (mode, owner) change."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_CREATE | IN_MOVED_TO | IN_ATTRIB
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        self.fd = fd

    def events(self, timeout: float) -> list[tuple[int, str]]:
        """The events that arrive within ``timeout`` seconds (at least one, or none)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        found = []
        offset = 0
        while offset < len(data):
            _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
            found.append((mask, name))
            offset += 16 + length
        return found

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def new_group() -> Iterator[Callable[[], tuple[str, int]]]:
    """Create groups (``groupadd``) for the test; each removed at the end."""
    created: list[str] = []

    def make() -> tuple[str, int]:
        name = f"dctl{uuid.uuid4().hex[:12]}"
        subprocess.run(["groupadd", name], check=True, capture_output=True, timeout=30)
        created.append(name)
        return name, grp.getgrnam(name).gr_gid

    try:
        yield make
    finally:
        for name in created:
            subprocess.run(["groupdel", name], capture_output=True, timeout=30)


def as_nobody_with_groups(groups: list[int], action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child as uid/gid 65534 with supplementary ``groups``."""

    def drop_then_act() -> None:
        os.setgroups(groups)
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        action()

    run_in_child(drop_then_act)


def open_control(supervisors: Supervisors, directory: Path) -> None:
    """Put the control socket in ``directory`` (one nobody can reach)."""
    supervisors.control = str(directory / "control.sock")


# -- 1. the socket's mode, from its first moment -------------------------------------------------


GROUP_PARAM_MARKS = [needs_root, needs_tools("groupadd", "groupdel")]


@pytest.mark.parametrize(
    "group_key",
    [
        None,
        pytest.param("control_group", marks=GROUP_PARAM_MARKS),
        pytest.param("observer_group", marks=GROUP_PARAM_MARKS),
    ],
)
def test_socket_mode_is_final_from_the_moment_it_exists(
    supervisors: Supervisors,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    group_key: str | None,
) -> None:
    """0600 and ours without a group; 0660 and the group's with one. An inotify
    watch on the directory stats the socket as soon as it is created, and sees
    every later change of its mode or owner (IN_ATTRIB): a chmod or chown after
    bind, or a socket renamed into place (IN_MOVED_TO), would show here."""
    keys: dict[str, Any] = {}
    gid = os.getgid()
    if group_key is not None:
        name, gid = request.getfixturevalue("new_group")()
        keys[group_key] = name
    config = supervisors.config({"web": {"command": SLEEP}}, **keys)
    path = Path(supervisors.control)
    watch = DirectoryWatch(tmp_path)
    try:
        proc = launch(supervisors, config)
        first: os.stat_result | None = None
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while first is None and time.monotonic() < deadline and proc.poll() is None:
            for mask, entry in watch.events(0.5):
                if entry == path.name:
                    if first is None:
                        first = os.stat(path)  # at once: the first moment we can look
                    seen.append(mask)
        assert first is not None, f"no socket created; supervisor: {proc.poll()}"
        supervisors.wait_answering(proc)
        assert proc.poll() is None
        seen += [mask for mask, entry in watch.events(0) if entry == path.name]  # queued by now
    finally:
        watch.close()
    assert stat.S_ISSOCK(first.st_mode)
    mode = 0o600 if group_key is None else 0o660
    assert stat.S_IMODE(first.st_mode) == mode, oct(first.st_mode)
    assert (first.st_uid, first.st_gid) == (os.geteuid(), gid)
    assert seen == [IN_CREATE], f"events on the socket: {[hex(mask) for mask in seen]}"
    now = os.stat(path)
    assert (stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid) == (mode, os.geteuid(), gid)


# -- 2. a socket directory others may write to --------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_socket_directory_writable_by_others_is_refused(
    supervisors: Supervisors, tmp_path: Path, mode: int
) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(mode)
    supervisors.control = str(directory / "control.sock")
    supervisors.config({"web": {"command": SLEEP}})
    result = supervisors.supervise(timeout=20)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert str(directory) in line and "writable" in line, line
    assert supervisors.processes() == []  # neither a supervisor nor its program
    assert list(directory.iterdir()) == []  # no socket, no lock file
    assert "web" not in log_text(supervisors)


# -- 3. two supervisors, one socket ---------------------------------------------------------------


def test_a_second_supervisor_fails_at_once_naming_the_first(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    first = supervisors.foreground()
    pid = web_pid(supervisors)
    inode = os.stat(supervisors.control).st_ino
    other = config_at(
        supervisors,
        tmp_path / "other.toml",
        {"other": {"command": ["/bin/sleep", "1001"]}},
        log=str(tmp_path / "other.log"),
    )
    for form in ((), ("--foreground",)):
        result = supervisors.daemonctx("supervise", "--config", str(other), *form, timeout=15)
        assert result.returncode != 0, form
        line = one_line(result.stderr)
        assert f"(pid {first.pid})" in line and supervisors.control in line, line
    # The first one still owns the socket, answers, and its program was not touched.
    assert first.poll() is None
    assert live_owner(supervisors.control) == first.pid
    assert os.stat(supervisors.control).st_ino == inode
    assert web_pid(supervisors) == pid
    assert supervisors.status("web").restarts == 0
    # Whole command lines: a substring such as "1001" also matches pytest's
    # numbered temporary directory (pytest-1001) in the supervisor's own.
    commands = [Path(f"/proc/{p}/cmdline").read_bytes() for p in supervisors.processes()]
    assert b"/bin/sleep\x001001\x00" not in commands, commands
    other_log = tmp_path / "other.log"
    assert "other" not in (other_log.read_text() if other_log.exists() else "")


def test_ctl_names_a_supervisor_whose_socket_directory_was_removed(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The socket's whole directory removed (systemd removes a RuntimeDirectory=
    when a start fails, another supervisor running there): ``ctl`` names the
    supervisor that holds the removed lock. It said "supervisor is not running"
    (exit 3): the lock was looked for on the directory's file system, and there
    was no directory to ask."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    supervisors.control = str(run / "c.sock")
    supervisors.config({"web": {"command": SLEEP}})
    first = supervisors.foreground()
    shutil.rmtree(run)
    status = supervisors.ctl("status")
    assert status.returncode == 3, status
    line = one_line(status.stderr)
    assert f"though supervisor (pid {first.pid}) holds its lock" in line, line
    first.terminate()
    assert first.wait(10) == 0


@pytest.mark.parametrize("removed", ["both", "lock", "socket"])
def test_a_supervisor_whose_socket_files_were_removed_is_not_run_twice(
    supervisors: Supervisors, removed: str
) -> None:
    """Files removed under a running supervisor (``rm -r`` of the socket's
    directory: both; a tmp cleaner: the idle lock file; the socket). A second
    ``supervise`` on that socket fails naming the first, rather than take its
    socket, kill its programs as a dead supervisor's leftovers and run them twice;
    ``ctl`` reaches it while its socket is there, and names it when not."""
    supervisors.config({"web": {"command": SLEEP}})
    first = supervisors.foreground()
    pid = web_pid(supervisors)
    inode = os.stat(supervisors.control).st_ino
    if removed != "lock":
        os.unlink(supervisors.control)
    if removed != "socket":
        os.unlink(supervisors.control + ".lock")
    status = supervisors.ctl("status")
    if removed == "lock":
        assert status.returncode == 0, status
    else:
        assert status.returncode == 3, status  # nothing listens
        line = one_line(status.stderr)
        assert f"though supervisor (pid {first.pid}) holds its lock" in line, line
        assert "its socket file was removed (then stop it" in line, line
    # Without its socket, the lock is waited for (a supervisor may be starting):
    # that case's message is checked without a socket (below), not 10 s here.
    for form in ((), ("--foreground",)) if removed != "socket" else ():
        result = supervisors.supervise(*form, timeout=15)
        assert result.returncode != 0, form
        line = one_line(result.stderr)
        assert f"another supervisor (pid {first.pid})" in line and supervisors.control in line
        if removed == "both":
            assert "socket file was removed" in line, line
    assert first.poll() is None and pid_alive(pid)
    if removed == "lock":
        assert os.stat(supervisors.control).st_ino == inode, "the socket was replaced"
        assert supervisors.ctl("status").returncode == 0
    else:
        assert not os.path.exists(supervisors.control)
    supervising = [
        p
        for p in supervisors.processes()
        if b"supervise" in Path(f"/proc/{p}/cmdline").read_bytes() and p != first.pid
    ]
    assert supervising == [], "a second supervisor runs"
    # Stopped as the message says, the next one starts.
    first.terminate()
    assert first.wait(10) == 0
    wait_gone(pid)
    supervisors.foreground()
    assert web_pid(supervisors) != pid


_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holding_lock(lock: str, comment: str = "") -> Iterator[subprocess.Popen[str]]:
    """A process holding an exclusive flock on ``lock`` (``comment`` ends its
    command line), killed at the end."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK + comment, lock],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def listen_error(path: str) -> str:
    """The one line ``ControlServer.listen()`` on ``path`` fails with."""
    from daemonctx.supervisor.loop import EventLoop
    from daemonctx.supervisor.server import ControlSocketError

    loop = EventLoop()
    try:
        with pytest.raises(ControlSocketError) as caught:
            ControlServer(loop, path, lambda connection, request: None).listen()
    finally:
        loop.close()
    assert not os.path.exists(path), "no socket is left"
    return str(caught.value)


@pytest.mark.parametrize("holder_is", ["supervisor", "guard"])
def test_listen_refuses_a_socket_whose_removed_lock_is_still_held(
    tmp_path: Path, holder_is: str
) -> None:
    """The same, between ``check_free`` and ``listen`` (the lock file removed
    meanwhile, and a new one made): the lock still held on the removed file is
    found. A dead supervisor's guard (its command line names it) holds it while
    it stops what that supervisor left: it is named as such."""
    path = str(tmp_path / "control.sock")
    comment = f"# {GUARD_CODE}" if holder_is == "guard" else ""
    with holding_lock(path + ".lock", comment) as holder:
        os.unlink(path + ".lock")
        message = listen_error(path)
    if holder_is == "guard":
        assert f"the guard (pid {holder.pid}) of a supervisor that died" in message
    else:
        assert f"another supervisor (pid {holder.pid}) runs there" in message


def test_listen_names_a_holder_that_never_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor's lock held while nothing listens on its socket (removed)
    past ``LOCK_WAIT``: the error names the holder."""
    from daemonctx.supervisor import server as server_module

    monkeypatch.setattr(server_module, "LOCK_WAIT", 0.2)
    path = str(tmp_path / "control.sock")
    with holding_lock(path + ".lock") as holder:
        message = listen_error(path)
    expected = f"another supervisor (pid {holder.pid}) runs there, but its socket file was "
    assert expected in message, message


@needs_root
def test_a_fifo_at_the_lock_file_is_refused_at_once(supervisors: Supervisors) -> None:
    """A FIFO planted at the socket's lock file (root could make one there) is
    refused in one line; opening it for the check must not wait for a writer."""
    supervisors.config({"web": {"command": SLEEP}})
    os.mkfifo(supervisors.control + ".lock")
    try:
        result = supervisors.supervise(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("supervise hangs on a FIFO at the lock file")
    assert result.returncode == 1, result
    message = one_line(result.stderr)
    assert message.endswith(f"{supervisors.control}.lock is not a regular file"), message
    assert not os.path.exists(supervisors.control)
    assert not supervisors.processes()


def test_check_free_and_listen_refuse_a_lock_file_that_is_not_a_regular_file(
    tmp_path: Path,
) -> None:
    """``check_free`` (before anything starts) and ``listen`` (in case one is
    put there in between) take the lock only on a regular file."""
    from daemonctx.supervisor.server import ControlSocketError, check_free

    path = str(tmp_path / "control.sock")
    os.mkfifo(path + ".lock")
    with pytest.raises(ControlSocketError) as caught:
        check_free(path)
    assert str(caught.value) == f"control socket {path}: {path}.lock is not a regular file"
    assert listen_error(path) == str(caught.value)


def test_two_supervisors_started_at_once_exactly_one_wins(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    configs = [
        config_at(
            supervisors,
            tmp_path / f"{name}.toml",
            {name: {"command": ["/bin/sleep", str(1001 + index)]}},
            log=str(tmp_path / f"{name}.log"),
        )
        for index, name in enumerate(("one", "two"))
    ]
    for _ in range(3):
        for name in ("one", "two"):
            (tmp_path / f"{name}.log").unlink(missing_ok=True)
        procs = [launch(supervisors, config) for config in configs]  # back to back
        wait_for(
            lambda procs=procs: any(proc.poll() is not None for proc in procs),
            timeout=20,
            what="one of the two supervisors to give up",
        )
        losers = [index for index, proc in enumerate(procs) if proc.poll() is not None]
        assert len(losers) == 1, [proc.poll() for proc in procs]
        (lost,) = losers
        loser, winner = procs[lost], procs[1 - lost]
        _, err = loser.communicate(timeout=10)
        assert loser.returncode != 0
        assert "another supervisor" in one_line(err), err
        supervisors.wait_answering(winner)
        assert winner.poll() is None
        assert live_owner(supervisors.control) == winner.pid
        with supervisors.client() as client:
            assert [info.name for info in client.status()] == [("one", "two")[1 - lost]]
        lost_log = tmp_path / f"{('one', 'two')[lost]}.log"
        assert "starting" not in (lost_log.read_text() if lost_log.exists() else "")
        with supervisors.client() as client:
            client.shutdown(wait=True)
        assert winner.wait(10) == 0


# -- 4. a stale socket --------------------------------------------------------------------------


def test_the_stale_socket_of_a_killed_supervisor_is_replaced(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    first = supervisors.foreground()
    old = web_pid(supervisors)
    first.kill()
    first.wait(10)
    wait_gone(old)  # its program dies with it
    assert stat.S_ISSOCK(os.stat(supervisors.control).st_mode)  # left behind
    result = supervisors.ctl("status")
    assert result.returncode == 3
    assert NOT_RUNNING in one_line(result.stderr)
    second = supervisors.foreground()
    assert second.poll() is None
    assert live_owner(supervisors.control) == second.pid
    new = web_pid(supervisors)
    assert new != old and pid_alive(new)
    assert supervisors.ctl("status").returncode == 0


# -- 5. another uid -----------------------------------------------------------------------------


@needs_root
def test_another_uid_is_refused_even_when_the_socket_lets_it_connect(
    supervisors: Supervisors, open_dir: Path
) -> None:
    """A permission mistake (the socket made 0666 by hand) does not let another
    user in: SO_PEERCRED still refuses every request of uid 65534."""
    open_control(supervisors, open_dir)
    supervisors.config({"web": {"command": SLEEP}})
    proc = supervisors.foreground()
    pid = web_pid(supervisors)
    os.chmod(supervisors.control, 0o666)
    requests = [
        ("ping", {}),
        ("status", {}),
        ("commands", {}),
        ("stop", {"names": ["web"]}),
        ("signal", {"signal": "KILL", "names": ["web"]}),
        ("shutdown", {}),
    ]

    def try_everything() -> None:
        for number, (command, args) in enumerate(requests, 1):
            with LineClient(supervisors.control) as client:
                client.request(number, command, args)
                answer = client.read()
                # Then it hangs up: nothing more is read from that caller.
                assert client.sock.recv(1) == b"", "the connection stays open"
            assert answer["id"] == number, answer
            assert error_type(answer) == "permission-denied", answer
            assert "uid 65534" in answer["error"]["message"], answer

    run_as_nobody(try_everything)
    assert proc.poll() is None
    assert web_pid(supervisors) == pid
    assert supervisors.status("web").restarts == 0
    log = log_text(supervisors)
    assert "uid 65534" not in log and "stopping" not in log, log


# -- 6. observers and the control group -----------------------------------------------------------


@needs_root
@needs_tools("groupadd", "groupdel")
def test_the_observer_group_may_only_read(
    supervisors: Supervisors, open_dir: Path, new_group: Callable[[], tuple[str, int]]
) -> None:
    observers, gid = new_group()
    open_control(supervisors, open_dir)
    app = start_app(supervisors, observer_group=observers)
    pid = web_pid(supervisors)
    st = os.stat(supervisors.control)
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, gid)

    def observe() -> None:
        with LineClient(supervisors.control) as client:

            def ask(command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
                client.request(1, command, args)
                return client.read()

            assert ask("ping")["result"] == "pong"
            (web,) = ask("status")["result"]["programs"]
            assert (web["name"], web["state"], web["pid"]) == ("web", "running", pid)
            names = {command["name"] for command in ask("commands")["result"]["commands"]}
            assert {"flush_cache", "version", "flushed"} <= names
            assert ask("version")["result"] == "shop 1.2"  # registered read-only
            for command, args in [
                ("stop", {"names": ["web"]}),
                ("start", {"names": ["web"]}),
                ("restart", {"names": ["web"]}),
                ("signal", {"signal": "KILL", "names": ["web"]}),
                ("shutdown", {}),
                ("flush_cache", {"region": "eu"}),  # registered, not read-only
            ]:
                answer = ask(command, args)
                assert error_type(answer) == "permission-denied", (command, answer)
            assert ask("flushed")["result"] == []  # the refused flush did nothing

    as_nobody_with_groups([gid], observe)

    def connect() -> None:  # without the group, the socket's mode keeps nobody out
        with pytest.raises(PermissionError):
            LineClient(supervisors.control)

    run_as_nobody(connect)
    assert app.poll() is None
    assert web_pid(supervisors) == pid
    assert supervisors.status("web").restarts == 0
    log = log_text(supervisors)
    refused = r"uid 65534 \(pid \d+\): (stop|start|restart|signal|shutdown|flush_cache)"
    assert not re.search(refused, log), log  # refused before anything ran, even the log line
    assert "stopping" not in log


def test_the_connections_kept_for_admins_are_kept_whoever_holds_the_rest() -> None:
    """Users who are not admins, each within their own share, still leave
    ADMIN_RESERVE connections to the admins; an admin is never counted."""
    from types import SimpleNamespace

    from daemonctx.supervisor.server import ADMIN, ADMIN_RESERVE, MAX_CONNECTIONS, OBSERVER

    server = ControlServer(None, "/nonexistent/control.sock", lambda c, r: None)  # type: ignore[arg-type]
    users = (MAX_CONNECTIONS - ADMIN_RESERVE) // MAX_CONNECTIONS_PER_USER
    for number in range(users * MAX_CONNECTIONS_PER_USER):
        peer = SimpleNamespace(uid=2000 + number // MAX_CONNECTIONS_PER_USER, role=OBSERVER)
        server.connections[number] = SimpleNamespace(peer=peer)  # type: ignore[assignment]
    assert not server._room_for(2000), "its own share is full"
    assert not server._room_for(9999), "a newcomer would eat into the admins' reserve"
    server.connections.pop(0)
    assert server._room_for(9999) and server._room_for(2000)
    for number in range(10_000, 10_000 + MAX_CONNECTIONS):  # admins do not count
        server.connections[number] = SimpleNamespace(peer=SimpleNamespace(uid=0, role=ADMIN))  # type: ignore[assignment]
    assert server._room_for(9999)


class ForkedAs:
    """``body()`` in a forked child running as ``uid`` with ``groups`` (the child of a
    real other user's client); ``report`` is readable once it failed (its traceback)
    or ended. ``finish()`` waits for it and fails the test with that traceback. The
    child is killed by pid on the way out, whatever happened."""

    def __init__(self, uid: int, groups: list[int], body: Callable[[], None]) -> None:
        self.report, report_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                os.setgroups(groups)
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                body()
                status = 0
            except BaseException:
                import traceback

                os.write(report_write, traceback.format_exc().encode()[-4000:])
            finally:
                os._exit(status)
        os.close(report_write)

    def __enter__(self) -> ForkedAs:
        return self

    def finish(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        assert os.waitstatus_to_exitcode(status) == 0, os.read(self.report, 4000).decode()

    def __exit__(self, *exc: object) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.report)


def while_nobody_holds(gid: int, hold: Callable[[], object], meanwhile: Callable[[], None]) -> None:
    """``hold()`` in a child running as nobody with group ``gid``, then
    ``meanwhile()`` here, root's, while the child still holds what ``hold``
    returned (its connections); the child fails the test if ``hold`` fails, and
    is killed by pid."""
    holding_read, holding_write = os.pipe()
    done_read, done_write = os.pipe()

    def body() -> None:
        kept = hold()
        os.write(holding_write, b"h")
        os.read(done_read, 1)  # hold them until root has been served
        del kept

    try:
        with ForkedAs(NOBODY, [gid], body) as child:
            ready = select.select([holding_read, child.report], [], [], 60)[0]
            assert holding_read in ready, os.read(child.report, 4000).decode()
            meanwhile()
            os.write(done_write, b"d")
            child.finish()
    finally:
        for fd in (holding_read, holding_write, done_read, done_write):
            os.close(fd)


@needs_root
@needs_tools("groupadd", "groupdel")
def test_an_observer_cannot_take_every_connection_from_the_admins(
    supervisors: Supervisors, open_dir: Path, new_group: Callable[[], tuple[str, int]]
) -> None:
    """A user who is not an admin holds at most MAX_CONNECTIONS_PER_USER connections
    (a connection past them is closed at once), and ADMIN_RESERVE of all are kept
    for admins: an observer that opens connections in a loop cannot shut root out."""
    observers, gid = new_group()
    open_control(supervisors, open_dir)
    app = start_app(supervisors, observer_group=observers)

    def hog() -> list[LineClient]:  # nobody, an observer: all the connections it may, one more
        held = []
        for number in range(MAX_CONNECTIONS_PER_USER):
            client = LineClient(supervisors.control)
            held.append(client)
            client.request(number, "ping")
            assert client.read()["result"] == "pong", number
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
            extra.settimeout(10)
            extra.connect(supervisors.control)  # in the backlog, then closed
            try:  # closed before the request is written (EPIPE), or after (EOF)
                extra.sendall(encode_request(1, "ping"))
                assert extra.recv(100) == b"", "one past its share is answered"
            except (BrokenPipeError, ConnectionResetError):
                pass
        return held  # kept open while root is served

    def root_is_served() -> None:  # root, while nobody holds its share
        with LineClient(supervisors.control) as root:
            root.request(1, "ping")
            assert root.read()["result"] == "pong"

    while_nobody_holds(gid, hog, root_is_served)
    assert app.poll() is None


@needs_root
@needs_tools("groupadd", "groupdel")
def test_a_control_group_member_may_stop(
    supervisors: Supervisors, open_dir: Path, new_group: Callable[[], tuple[str, int]]
) -> None:
    admins, gid = new_group()
    open_control(supervisors, open_dir)
    supervisors.config({"web": {"command": SLEEP}}, control_group=admins)
    supervisors.foreground()
    pid = web_pid(supervisors)

    def stop() -> None:
        with supervisors.client() as client:
            (info,) = client.stop("web")
        assert info.state == "stopped", info

    as_nobody_with_groups([gid], stop)
    wait_gone(pid, timeout=0.5)  # gone when stop answered
    assert supervisors.status("web").state == "stopped"
    assert re.search(r"uid 65534 \(pid \d+\): stop \{'names': \['web'\]\}", log_text(supervisors))


@needs_root
@needs_tools("groupadd", "groupdel")
@pytest.mark.parametrize("becomes", ["nothing", "observer"])
def test_a_reload_that_takes_a_group_s_rights_takes_them_from_open_connections(
    supervisors: Supervisors,
    open_dir: Path,
    new_group: Callable[[], tuple[str, int]],
    becomes: str,
) -> None:
    """A reload judges every open connection again, from the credentials the
    kernel gave at connect: a control_group member connected before the reload
    that removed the group is disconnected (nothing is left it may run), and
    one whose group became the observer group may only read from then on."""
    admins, gid = new_group()
    open_control(supervisors, open_dir)
    supervisors.config({"web": {"command": SLEEP}}, control_group=admins)
    supervisors.foreground()
    pid = web_pid(supervisors)
    connected_read, connected_write = os.pipe()
    go_read, go_write = os.pipe()

    def member() -> None:  # uid 1234, of the control group, connected before the reload
        with LineClient(supervisors.control) as client:
            client.request(1, "ping")
            assert client.read()["result"] == "pong"
            os.write(connected_write, b"c")
            os.read(go_read, 1)  # the reload is done
            if becomes == "nothing":
                assert client.sock.recv(1) == b"", "still connected"
            else:
                client.request(2, "stop", {"names": ["web"]})
                answer = client.read()
                assert error_type(answer) == "permission-denied", answer
                assert "uid 1234 may not run 'stop'" in answer["error"]["message"]
                client.request(3, "status")
                assert client.read()["result"]["programs"][0]["state"] == "running"

    try:
        with ForkedAs(1234, [gid], member) as child:
            ready = select.select([connected_read, child.report], [], [], 30)[0]
            assert connected_read in ready, os.read(child.report, 4000).decode()
            keys = {} if becomes == "nothing" else {"observer_group": admins}
            supervisors.config({"web": {"command": SLEEP}}, **keys)
            result = supervisors.ctl("reload")
            assert result.returncode == 0, result.stderr
            os.write(go_write, b"g")
            child.finish()
    finally:
        for fd in (connected_read, connected_write, go_read, go_write):
            os.close(fd)
    assert web_pid(supervisors) == pid
    assert not re.search(r"uid 1234 \(pid \d+\): stop", log_text(supervisors))


# -- 7. the log of changes ------------------------------------------------------------------------


def test_every_mutating_request_is_logged_with_uid_pid_and_command(
    supervisors: Supervisors,
) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    ran = {}
    for args in (
        ("status",),
        ("stop", "web"),
        ("start", "web"),
        ("signal", "HUP", "web"),
        ("shutdown",),
    ):
        proc = supervisors.ctl_popen(*args)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (args, out, err)
        ran[args[0]] = proc.pid
    log = log_text(supervisors)
    assert f"uid {os.getuid()} (pid {ran['stop']}): stop {{'names': ['web']}}" in log, log
    assert f"uid {os.getuid()} (pid {ran['start']}): start {{'names': ['web']}}" in log, log
    assert (
        f"uid {os.getuid()} (pid {ran['signal']}): signal {{'signal': 1, 'names': ['web']}}" in log
    ), log
    assert f"uid {os.getuid()} (pid {ran['shutdown']}): shutdown\n" in log, log  # no args
    assert f"(pid {ran['status']})" not in log  # read-only: not logged
    # Each request's line comes before what it did, though the supervisor writes
    # them all once the work is done (a stop's signal does not wait for the log).
    assert log.index(f"(pid {ran['stop']}): stop") < log.index("web: stopping")


def test_a_requests_line_is_stamped_when_the_request_came(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's audit line is written after its work's lines are held back, and
    comes first in the log: its time is the request's, not later than theirs."""
    from daemonctx.supervisor import core

    # A clock a quarter of a second on at each reading (logging reads time_ns
    # from Python 3.13): the request comes, its work logs, the block ends.
    ticks = itertools.count(4001)
    monkeypatch.setattr(core.time, "time_ns", lambda: next(ticks) * 250_000_000)
    monkeypatch.setattr(core.time, "time", lambda: core.time.time_ns() / 1e9)
    caplog.set_level(logging.INFO, logger=core.log.name)
    with core._LogAfterwards((core._AUDIT, 0, 42, "stop", " {'names': ['web']}")):
        core.log.info("web: stopping")
    first, work = (r for r in caplog.records if r.name == core.log.name)
    assert first.getMessage() == "uid 0 (pid 42): stop {'names': ['web']}"
    assert work.getMessage() == "web: stopping"
    assert (first.created, int(first.msecs)) == (1000.25, 250)
    assert work.created == 1000.5
    formatter = logging.Formatter("%(asctime)s %(message)s")
    assert formatter.format(first).split(",")[1].startswith("250 uid 0")


# -- 8. malformed requests ---------------------------------------------------------------------


def test_a_mebibyte_of_garbage_gets_one_too_large_and_the_connection_goes_on(
    supervisors: Supervisors,
) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    garbage = os.urandom(1024 * 1024).replace(b"\n", b"\0")
    with LineClient(supervisors.control) as client:
        client.send(garbage[: len(garbage) // 2])
        with supervisors.client(timeout=5) as other:  # meanwhile, others are served
            (info,) = other.status("web")
            assert info.state == "running"
        client.send(garbage[len(garbage) // 2 :] + b"\n")
        client.request(1, "ping")
        client.request(2, "ping")
        first = client.read()
        assert error_type(first) == "too-large" and first["id"] is None, first
        assert str(MAX_LINE) in first["error"]["message"]
        assert client.read() == {"id": 1, "ok": True, "result": "pong"}  # one error only
        assert client.read() == {"id": 2, "ok": True, "result": "pong"}
        assert client.nothing_pending()


def test_malformed_requests_are_answered_one_per_line_and_the_connection_stays(
    supervisors: Supervisors,
) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    lines = [
        b"{not json\n",
        b"[1, 2]\n",  # not an object
        b'{"id": 3, "command": "ping", "colour": "red"}\n',  # an unknown field
        b'{"id": 4}\n',  # no command
        b"\xff\xfe\n",  # not UTF-8
        b"\n",  # blank: no answer
        b'{"id": 6, "command": "frobnicate"}\n',
        b'{"id": 7, "command": "ping"}\n',
    ]
    with LineClient(supervisors.control) as client:
        client.send(b"".join(lines))
        answers = [client.read() for _ in range(7)]
        assert [(a["id"], error_type(a)) for a in answers] == [
            (None, "bad-request"),
            (None, "bad-request"),
            (3, "bad-request"),
            (4, "bad-request"),
            (None, "bad-request"),
            (6, "unknown-command"),
            (7, None),
        ], answers
        assert "colour" in answers[2]["error"]["message"]
        assert all("\n" not in a["error"]["message"] for a in answers[:6])
        client.request(8, "status")
        assert client.read()["result"]["programs"][0]["state"] == "running"
        assert client.nothing_pending()


@needs_root
def test_a_request_nested_just_short_of_the_limit_is_answered_and_nothing_stops(
    supervisors: Supervisors, open_dir: Path
) -> None:
    """A value nested about 979 deep (what the decoder takes, from the supervisor's
    stack) in any field of a request, from a caller with no rights at all (a
    request is read before its caller's rights are checked): once, its error
    message's json.dumps ran out of stack and the supervisor exited, its
    programs stopped. Now each is answered, and everything goes on."""
    open_control(supervisors, open_dir)
    supervisors.config({"web": {"command": SLEEP}})
    proc = supervisors.foreground()
    pid = web_pid(supervisors)
    os.chmod(supervisors.control, 0o666)

    def sweep() -> None:
        limit = sys.getrecursionlimit()
        for field in (b'"id": %s', b'"version": %s', b'"command": %s', b'"args": %s'):
            for depth in range(limit - 5, limit - 125, -1):
                value = b"[" * depth + b"]" * depth
                line = b'{"command": "ping", ' + field % value + b"}\n"
                with LineClient(supervisors.control) as client:
                    client.send(line.replace(b'"command": "ping", "command"', b'"command"'))
                    answer = client.read()
                assert error_type(answer) in ("bad-request", "permission-denied"), answer

    run_as_nobody(sweep)
    assert proc.poll() is None, "the supervisor exited"
    assert web_pid(supervisors) == pid
    with supervisors.client(timeout=5) as client:
        assert client.ping() == "pong"


# -- 9. clients that do not play along -----------------------------------------------------------


def test_silent_and_flooding_clients_do_not_block_others(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    with LineClient(supervisors.control) as silent:  # connects, never writes
        for _ in range(3):
            with supervisors.client(timeout=5) as other:
                assert other.ping() == "pong"
                assert other.status("web")[0].state == "running"
        assert silent.nothing_pending()  # still connected (the idle timeout is 60 s)

        # A client that sends requests and never reads the answers.
        flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        flood.connect(supervisors.control)
        flood.setblocking(False)
        chunk = b"".join(encode_request(n, "status") for n in range(1000))
        pending = memoryview(chunk)
        served_meanwhile = 0
        dropped = False
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                try:
                    sent = flood.send(pending)
                except BlockingIOError:  # the supervisor is not taking more: is it stuck?
                    with supervisors.client(timeout=5) as other:
                        assert other.status("web")[0].state == "running"
                    served_meanwhile += 1
                    select.select([], [flood], [], 0.5)
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    dropped = True
                    break
                pending = pending[sent:] or memoryview(chunk)
        finally:
            flood.close()
        assert dropped, "the supervisor kept a client that never reads its answers"
        assert served_meanwhile > 0
        with supervisors.client(timeout=5) as other:
            assert other.status("web")[0].state == "running"


def test_an_idle_connection_is_closed_after_the_idle_timeout(supervisors: Supervisors) -> None:
    start_app(supervisors, idle_timeout=0.5)
    with LineClient(supervisors.control) as silent, LineClient(supervisors.control) as done:
        connected = time.monotonic()
        done.request(1, "ping")
        assert done.read()["result"] == "pong"  # answered, then idle
        assert silent.sock.recv(1) == b""  # closed by the supervisor (10 s bound)
        waited = time.monotonic() - connected
        assert done.sock.recv(1) == b""
    assert 0.4 <= waited < 10, waited
    with supervisors.client(timeout=5) as other:
        assert other.ping() == "pong"


def test_timers_still_fire_after_many_connections_came_and_went(
    supervisors: Supervisors,
) -> None:
    """Each connection's close cancels its idle timer; once most of the loop's
    timers are cancelled it compacts them. Every timer must fire on time after
    that: here a stop ladder's SIGKILL (once, the loop lost them all until some
    descriptor woke it, and this stop never returned)."""
    stubborn = ["/bin/sh", "-c", "trap '' TERM; exec sleep 1000"]
    supervisors.config({"stubborn": {"command": stubborn, "stop_timeout": 1}})
    proc = supervisors.foreground()
    pid = supervisors.status("stubborn").pid
    assert pid is not None
    descriptors = len(proc_fds(proc.pid))
    clients: list[LineClient] = []
    try:
        for _ in range(200):  # one at a time: the listen backlog is finite
            clients.append(LineClient(supervisors.control))
            clients[-1].request(1, "ping")
            assert clients[-1].read()["result"] == "pong"  # accepted, with its idle timer
    finally:
        for client in clients:
            client.sock.close()
    wait_for(lambda: len(proc_fds(proc.pid)) <= descriptors, what="the connections to close")
    began = time.monotonic()
    stop = supervisors.ctl_popen("stop", "stubborn")
    try:
        _out, err = stop.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("ctl stop did not return: the SIGKILL timer never fired")
    assert stop.returncode == 0, err
    assert time.monotonic() - began < 5
    assert not pid_alive(pid)
    assert supervisors.status("stubborn").state == "stopped"


SPEAK_ON_USR1 = (
    "import signal, sys\n"
    "signal.signal(signal.SIGUSR1, lambda *_: print('line', flush=True))\n"
    "while True:\n"
    "    signal.pause()\n"
)


def test_pipelined_tail_long_polls_are_read_only_as_fast_as_they_are_answered(
    supervisors: Supervisors,
) -> None:
    """A client that pipelines `tail` long-polls (each waits up to 30 s) is not
    read from while MAX_PENDING_REQUESTS of its requests wait: its writes block
    in the kernel, the supervisor's memory stays put and others are served; it
    gets every answer, in order, once output comes."""
    supervisors.config({"talk": {"command": [sys.executable, "-c", SPEAK_ON_USR1]}})
    proc = supervisors.foreground()
    talker = supervisors.status("talk").pid
    assert talker is not None
    with supervisors.client() as client:
        _lines, cursor = client.tail("talk", 0)

    def rss() -> int:
        return int(proc_status(proc.pid)["VmRSS"].split()[0]) * 1024

    def requests(first: int) -> bytes:
        return b"".join(
            b'{"id":"%08d","command":"tail","args":{"names":["talk"],"after":%d}}\n'
            % (number, cursor)
            for number in range(first, first + 1000)
        )

    size = len(requests(0)) // 1000
    before = rss()
    flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        flood.connect(supervisors.control)
        flood.setblocking(False)
        sent = 0
        pending = memoryview(requests(0))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                count = flood.send(pending)
            except BlockingIOError:
                select.select([], [flood], [], 0.1)
                continue
            sent += count
            pending = pending[count:] or memoryview(requests(sent // size))
        grown = rss() - before
        assert grown < 20 * 1024 * 1024, f"the supervisor grew by {grown} bytes"
        assert sent < 10_000 * size, f"{sent // size} requests read while 30 s polls wait"
        with supervisors.client(timeout=5) as other:
            asked = time.monotonic()
            assert other.ping() == "pong"
            assert time.monotonic() - asked < 1

        os.kill(talker, signal.SIGUSR1)  # a line: every poll is answered
        flood.settimeout(20)
        flood.sendall(pending[: (size - sent % size) % size])  # the last request whole
        total = (sent + size - 1) // size
        flood.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := flood.recv(1 << 20):
            data += chunk
    finally:
        flood.close()
    answers = [json.loads(line) for line in data.splitlines()]
    assert [answer["id"] for answer in answers] == [f"{n:08d}" for n in range(total)]
    assert all(answer["ok"] and answer["result"]["lines"] for answer in answers)


def test_a_connection_is_read_only_while_fewer_than_max_pending_requests_wait(
    tmp_path: Path,
) -> None:
    """In process, with a handler that answers only when told: of requests
    pipelined in one write, MAX_PENDING_REQUESTS are served; the rest wait,
    unframed, until answers go out; every answer comes, in order."""
    from daemonctx.supervisor.loop import EventLoop
    from daemonctx.supervisor.protocol import encode_result
    from daemonctx.supervisor.server import MAX_PENDING_REQUESTS

    loop = EventLoop()
    served: list[tuple[Any, Callable[[bytes], None]]] = []

    def handler(connection: Any, request: Any) -> None:
        served.append((request.id, connection.answer_later()))

    server = ControlServer(loop, str(tmp_path / "control.sock"), handler)
    server.listen()
    total = 5 * MAX_PENDING_REQUESTS + 3
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(server.path)
        client.sendall(b"".join(encode_request(n, "status") for n in range(total)))
        client.shutdown(socket.SHUT_WR)
        answered = 0
        while answered < total:
            batch = min(answered + MAX_PENDING_REQUESTS, total)
            run_loop_until(loop, lambda: len(served) >= batch, 5)  # noqa: B023 (called at once)
            assert len(served) == batch  # read no further until answers go out
            for request_id, respond in served[answered:]:
                respond(encode_result(request_id, "done"))
            answered = batch
        run_loop_until(loop, lambda: not server.connections, 5)  # closed once answered
        assert not server.connections
        client.settimeout(5)
        data = bytearray()
        while chunk := client.recv(65536):
            data += chunk
    finally:
        client.close()
        server.close_all()
        loop.close()
    assert [json.loads(line)["id"] for line in data.splitlines()] == list(range(total))


def run_loop_until(loop: Any, done: Callable[[], bool], timeout: float = 10) -> None:
    """Run ``loop`` until ``done()`` (checked at each turn), ``timeout`` s at most."""
    deadline = loop.time() + timeout

    def check() -> None:
        if done() or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_at(loop.time() + 0.001, check)

    check()
    loop.run()


def test_a_bug_met_serving_one_connection_ends_it_not_the_supervisor(tmp_path: Path) -> None:
    """In process: a handler that raises (a bug no request should find) costs
    its connection, closed with the answers it had and an ``internal`` error;
    the loop goes on, and serves the others."""
    from daemonctx.supervisor.loop import EventLoop
    from daemonctx.supervisor.protocol import encode_result

    loop = EventLoop()

    def handler(connection: Any, request: Any) -> None:
        if request.command == "boom":
            raise RuntimeError("a bug")
        connection.answer(encode_result(request.id, "pong"))

    server = ControlServer(loop, str(tmp_path / "control.sock"), handler)
    server.listen()
    victim = LineClient(server.path)
    other = LineClient(server.path)
    try:
        victim.send(encode_request(1, "ping") + encode_request(2, "boom"))
        run_loop_until(loop, lambda: len(server.connections) == 1)  # the loop did not raise
        assert victim.read() == {"id": 1, "ok": True, "result": "pong"}
        farewell = victim.read()
        assert error_type(farewell) == "internal" and "RuntimeError: a bug" in str(farewell)
        assert victim.sock.recv(1) == b"", "closed"
        other.request(3, "ping")
        run_loop_until(loop, lambda: bool(select.select([other.sock], [], [], 0)[0]))
        assert other.read() == {"id": 3, "ok": True, "result": "pong"}
    finally:
        victim.sock.close()
        other.sock.close()
        server.close_all()
        loop.close()


@needs_root
def test_closed_connections_hold_no_answers(open_dir: Path) -> None:
    """In process, the server on a real socket, its clients an observer (nobody):
    connections that pipeline requests and read no answer are dropped past the
    cap; what they held goes with them at once, though a thousand live timers
    (tail long-polls) keep the loop's heap from being compacted. (The idle timer
    a close cancels kept each one's 4 MiB of answers until its deadline: RSS went
    from 15 MB to 912 MB.)"""
    import gc

    from daemonctx.supervisor.loop import EventLoop
    from daemonctx.supervisor.protocol import encode_result
    from daemonctx.supervisor.server import MAX_PENDING_OUTPUT, Connection

    loop = EventLoop()
    answer = "x" * (256 * 1024)

    def handler(connection: Any, request: Any) -> None:
        connection.answer(encode_result(request.id, answer))

    server = ControlServer(loop, str(open_dir / "control.sock"), handler, observer_group="65534")
    server.listen()
    for _ in range(1000):
        loop.call_at(loop.time() + 3600, lambda: None)
    done_read, done_write = os.pipe()
    rounds = 12

    def flood() -> None:  # nobody: connections that read nothing, one after the other
        requests = b"".join(encode_request(n, "status") for n in range(200))
        for _ in range(rounds):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(20)
                sock.connect(server.path)
                try:
                    while True:
                        sock.sendall(requests)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # dropped: the next one
        os.write(done_write, b"d")

    loop.add_reader(done_read, loop.stop)
    child = ForkedAs(NOBODY, [], flood)
    try:
        loop.run()
        child.finish()
        kept = [o for o in gc.get_objects() if isinstance(o, Connection) and o.closed]
        held = sum(len(c.output) + sum(len(a or b"") for a in c.slots) for c in kept)
        assert held < MAX_PENDING_OUTPUT, f"{len(kept)} closed connections hold {held} bytes"
        assert server.others_output == 0 and not server.connections
        del kept
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, Connection)], "closed, kept"
    finally:
        child.__exit__()
        os.close(done_read)
        os.close(done_write)
        server.close_all()
        loop.close()


@needs_root
def test_answers_waiting_behind_a_long_poll_count_in_the_shared_cap(open_dir: Path) -> None:
    """In process, its clients an observer (nobody): on each connection a request
    the handler answers later (a ``tail`` long-poll) and 15 more answered at
    once, which wait behind it. Those count in MAX_OTHERS_PENDING_OUTPUT as much
    as answers queued to go: past it, connections are dropped (20 of them held
    75 MiB, never counted)."""
    from daemonctx.supervisor.loop import EventLoop
    from daemonctx.supervisor.protocol import encode_result
    from daemonctx.supervisor.server import MAX_OTHERS_PENDING_OUTPUT, MAX_PENDING_REQUESTS

    loop = EventLoop()
    answer = "x" * (256 * 1024)
    later: list[Callable[[bytes], None]] = []

    def handler(connection: Any, request: Any) -> None:
        if request.command == "tail":
            later.append(connection.answer_later())  # answered when the test ends
        else:
            connection.answer(encode_result(request.id, answer))

    server = ControlServer(loop, str(open_dir / "control.sock"), handler, observer_group="65534")
    server.listen()
    holding_read, holding_write = os.pipe()
    done_read, done_write = os.pipe()
    count = 20

    def hold() -> None:  # nobody: a long-poll first, then requests answered at once
        requests = encode_request(0, "tail") + b"".join(
            encode_request(n, "status") for n in range(1, MAX_PENDING_REQUESTS)
        )
        kept = []
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(server.path)
            sock.sendall(requests)
            kept.append(sock)
        os.write(holding_write, b"h")
        os.read(done_read, 1)

    def settled() -> bool:
        return len(later) == count and all(
            len(c.slots) == MAX_PENDING_REQUESTS for c in server.connections.values()
        )

    child = ForkedAs(NOBODY, [], hold)
    try:
        select.select([holding_read], [], [], 20)
        run_loop_until(loop, settled)
        assert settled()
        held = sum(
            len(c.output) + sum(len(a or b"") for a in c.slots) for c in server.connections.values()
        )
        assert held <= MAX_OTHERS_PENDING_OUTPUT + len(answer) + 100, held
        assert server.others_output == held
        assert len(server.connections) < count, "past the cap, some are dropped"
        os.write(done_write, b"d")
        child.finish()
    finally:
        child.__exit__()
        for fd in (holding_read, holding_write, done_read, done_write):
            os.close(fd)
        server.close_all()
        loop.close()


def test_a_client_reading_a_large_answer_gets_all_of_it(supervisors: Supervisors) -> None:
    """An answer larger than MAX_PENDING_OUTPUT goes out whole to a client that
    reads it: the cap is for clients that do not read, checked before another
    answer is queued."""
    line = "0123456789" * 10
    spew = f"yes {line} | head -n 100000; echo done; exec sleep 1000"
    supervisors.config(
        {
            "spew": {
                "command": ["/bin/sh", "-c", spew],
                "stdout": "null",
                "output_buffer": 20_000_000,
            }
        }
    )
    supervisors.foreground()

    def done() -> bool:
        with supervisors.client() as client:
            lines, _cursor = client.tail("spew", 1)
        return [item.text for item in lines] == ["done"]

    wait_for(done, what="all the output")
    result = supervisors.ctl("tail", "spew", "-n", "50000")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    # The newest lines within MAX_TAIL_BYTES (4 MiB of output): an answer past
    # MAX_PENDING_OUTPUT (4 MiB) once in JSON, about 150 bytes a line.
    assert 40_000 < len(out) < 50_000 and len(out) * 150 > 4 * 1024 * 1024
    assert out[-1].endswith("done") and all(item.endswith(line) for item in out[:-1])


PREFILLED_TALKER = """
import signal, sys
signal.signal(signal.SIGUSR1, lambda *_: print("line", flush=True))
sys.stdout.write(("x" * 99 + "\\n") * 20000 + "ready\\n")
sys.stdout.flush()
while True:
    signal.pause()
"""

QUICK_IDLE_APP = """
import sys
from daemonctx.supervisor import Program, Supervisor
control, talker = sys.argv[1:]
program = Program("talk", [sys.executable, talker], output_buffer=4_000_000)
sys.exit(Supervisor(control, [program], idle_timeout=0.5).serve())
"""


CAPPED_APP = """
import sys
from daemonctx.supervisor import Program, Supervisor, server
server.MAX_OTHERS_PENDING_OUTPUT = 2_000_000  # 64 MiB in earnest: a test's worth here
control, talker, observers = sys.argv[1:]
program = Program("talk", [sys.executable, talker], output_buffer=4_000_000)
sys.exit(Supervisor(control, [program], observer_group=observers).serve())
"""


@needs_root
@needs_tools("groupadd", "groupdel")
def test_observers_that_read_none_of_their_answers_are_dropped_past_a_shared_cap(
    supervisors: Supervisors,
    open_dir: Path,
    tmp_path: Path,
    new_group: Callable[[], tuple[str, int]],
) -> None:
    """Each connection may leave MAX_PENDING_OUTPUT unread, but 448 connections of
    observers could then make the supervisor hold 448 times that: across them,
    past MAX_OTHERS_PENDING_OUTPUT, one is dropped when another answer is ready
    for it, its first included. An admin's are not counted: root is served
    meanwhile."""
    observers, gid = new_group()
    open_control(supervisors, open_dir)
    talker, app = tmp_path / "talker.py", tmp_path / "app.py"
    talker.write_text(PREFILLED_TALKER)
    app.write_text(CAPPED_APP)
    proc = start_python(supervisors, str(app), supervisors.control, str(talker), observers)

    def ready() -> bool:
        with supervisors.client() as client:
            lines, _cursor = client.tail("talk", 1)
        return [line.text for line in lines] == ["ready"]

    wait_for(ready, what="the talker's lines")

    def hoard() -> list[LineClient]:  # nobody, an observer: ~0.75 MB unread on each of 6
        clients = [LineClient(supervisors.control) for _ in range(6)]
        for client in clients:  # a first answer each: never over MAX_PENDING_OUTPUT alone
            client.request(1, "tail", {"names": ["talk"], "lines": 5000})
        poll = select.poll()
        for client in clients:
            poll.register(client.sock, select.POLLRDHUP)
        assert poll.poll(10_000), "no connection was dropped"
        return clients  # the others stay open

    def root_is_served() -> None:  # a large answer, read whole
        with supervisors.client(timeout=10) as root:
            lines, _cursor = root.tail("talk", 5000)
        assert len(lines) == 5000

    while_nobody_holds(gid, hoard, root_is_served)
    assert proc.poll() is None


def test_a_client_that_reads_none_of_its_answers_is_closed_after_the_idle_timeout(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Answers left unread, even fewer than MAX_PENDING_OUTPUT bytes of them, are
    held only for the idle timeout: a client that reads none of them for as long
    is dropped. Here they come after a long-poll that outlived the idle timer
    (a connection with a request under way is not idle)."""
    talker, app = tmp_path / "talker.py", tmp_path / "app.py"
    talker.write_text(PREFILLED_TALKER)
    app.write_text(QUICK_IDLE_APP)
    start_python(supervisors, str(app), supervisors.control, str(talker))

    def ready() -> int | None:
        with supervisors.client() as client:
            lines, cursor = client.tail("talk", 1)
        return cursor if [line.text for line in lines] == ["ready"] else None

    cursor = wait_for(ready, what="the talker's first lines")
    pid = supervisors.status("talk").pid
    assert pid is not None

    def hung_up(client: LineClient) -> bool:
        poll = select.poll()
        poll.register(client.sock, select.POLLRDHUP)
        return bool(poll.poll(10_000))

    with LineClient(supervisors.control) as stalled:
        stalled.request(1, "tail", {"names": ["talk"], "after": cursor})  # waits for a line
        stalled.request(2, "tail", {"names": ["talk"], "lines": 20000})  # 3 MB, queued behind
        with LineClient(supervisors.control) as witness:  # its idle timer fires after stalled's
            assert hung_up(witness), "an idle connection is kept"
        os.kill(pid, signal.SIGUSR1)  # answers the long-poll: both answers go out
        began = time.monotonic()
        assert hung_up(stalled), "the supervisor kept a client that reads nothing"
        assert time.monotonic() - began > 0.3
        data = bytearray()
        while chunk := stalled.sock.recv(1 << 20):
            data += chunk
    assert 100_000 < len(data) < 3_000_000  # what the socket held
    with supervisors.client(timeout=5) as other:
        assert other.ping() == "pong"


def test_an_internal_error_is_logged_escaped(supervisors: Supervisors, tmp_path: Path) -> None:
    """A bug in a built-in command (made here: ``reopen`` raises with text a client
    could choose) is answered ``internal`` and logged with its traceback, each
    line escaped and indented: no escape sequence reaches the log, and no line
    of it passes for one of the supervisor's. It was logged as raised."""
    app = tmp_path / "buggy.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import sys
            from daemonctx.supervisor import Program, Supervisor, core
            def buggy(self, request, respond):
                raise RuntimeError("\\x1b]0;PWNED\\x07\\n2026-01-01 00:00:00,000 daemonctx: forged")
            core.Supervisor._command_reopen = buggy
            web = Program("web", ["sleep", "1000"])
            sup = Supervisor(control={supervisors.control!r}, log={str(supervisors.log)!r},
                             programs=[web])
            sys.exit(sup.serve())
            """
        )
    )
    start_python(supervisors, str(app))
    result = supervisors.ctl("reopen")
    assert result.returncode == 1 and "RuntimeError" in result.stderr, result
    # the request's log lines are written once it is answered: wait for them
    wait_for(lambda: "RuntimeError" in log_text(supervisors), what="the internal error logged")
    log = log_text(supervisors)
    assert "internal error in reopen:\n  Traceback (most recent call last):\n" in log, log
    raised = "\n  RuntimeError: \\x1b]0;PWNED\\x07\n  2026-01-01 00:00:00,000 daemonctx: forged\n"
    assert raised in log, log
    assert "\x1b" not in log and "\x07" not in log, log
    assert "\n2026-01-01" not in log, log


# -- 10. registered commands ----------------------------------------------------------------------


def test_commands_shows_signatures_as_written(supervisors: Supervisors) -> None:
    start_app(supervisors)  # ctl_app.py starts with `from __future__ import annotations`
    result = supervisors.ctl("commands")
    assert result.returncode == 0, result.stderr
    heads = [line.split("  ")[0] for line in result.stdout.splitlines()]
    assert "flush_cache(region: str) -> int" in heads, heads
    assert "version() -> str" in heads, heads


def test_registered_commands_are_listed_and_called(supervisors: Supervisors) -> None:
    start_app(supervisors)
    result = supervisors.ctl("commands")
    assert result.returncode == 0, result.stderr
    lines = {line.split("(")[0]: line for line in result.stdout.splitlines()}
    assert {"ping", "status", "stop", "shutdown", "flush_cache", "version", "flushed"} <= set(lines)
    assert "flushed_regions" not in lines  # name= chose "flushed"
    assert lines["flush_cache"].endswith("  Drop a region's cache; the number of entries dropped.")
    assert re.match(r"flush_cache\(region: '?str'?\) -> '?int'?  ", lines["flush_cache"])

    result = supervisors.ctl("call", "flush_cache", '{"region": "eu"}')
    assert (result.returncode, result.stdout) == (0, "3\n"), result.stderr
    result = supervisors.ctl("call", "version")
    assert (result.returncode, result.stdout) == (0, "shop 1.2\n"), result.stderr

    for arguments, reason in (
        ('{"regoin": "eu"}', "unexpected argument 'regoin' (did you mean 'region'?)"),
        ("{}", "missing a required argument: 'region'"),
        ('{"region": "eu", "zone": 1}', "unexpected argument 'zone'"),
    ):
        result = supervisors.ctl("call", "flush_cache", arguments)
        assert result.returncode == 2, (arguments, result)
        assert one_line(result.stderr) == f"daemonctx: error: flush_cache: {reason}", result
    result = supervisors.ctl("call", "flush_cache", '{"region": "mars"}')
    assert result.returncode == 1
    assert "ValueError: no region 'mars'" in one_line(result.stderr)
    result = supervisors.ctl("call", "flush_cache", '{"region":')
    assert result.returncode == 2 and "not JSON" in one_line(result.stderr)
    result = supervisors.ctl("call", "no-such-command")
    assert result.returncode == 2 and "unknown command" in one_line(result.stderr)

    result = supervisors.ctl("call", "flushed")  # only the call that succeeded did anything
    assert (result.returncode, json.loads(result.stdout)) == (0, ["eu"])


def test_only_registered_commands_that_change_something_are_logged(
    supervisors: Supervisors,
) -> None:
    """The supervisor's log has every request that changes something: a call of a
    command registered read-only (a monitor may poll it every second) is not one."""
    start_app(supervisors)
    ran = {}
    for args in (("call", "version"), ("call", "flush_cache", '{"region": "us"}')):
        proc = supervisors.ctl_popen(*args)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (args, out, err)
        ran[args[1]] = proc.pid
    line = f"uid {os.getuid()} (pid {ran['flush_cache']}): flush_cache {{'region': 'us'}}"
    log = wait_for(lambda: line in (text := log_text(supervisors)) and text, what="its line")
    assert f"(pid {ran['version']})" not in log, log


def test_a_signal_the_application_ignores_later_is_default_in_its_programs(
    supervisors: Supervisors,
) -> None:
    """Application code (a registered command) ignores SIGUSR2 once the supervisor
    runs: a program started after that still gets SIGUSR2's default action. The
    supervisor reads what it ignores once per loop iteration (one read for a boot
    wave), so the restart's spawn sees the change."""
    proc = start_app(supervisors)
    usr2 = 1 << (signal.SIGUSR2 - 1)
    before = web_pid(supervisors)
    assert not int(proc_status(before)["SigIgn"], 16) & usr2
    result = supervisors.ctl("call", "ignore", '{"name": "SIGUSR2"}')
    assert result.returncode == 0, result.stderr
    assert int(proc_status(proc.pid)["SigIgn"], 16) & usr2  # the supervisor ignores it now
    assert supervisors.ctl("restart", "web").returncode == 0
    after = web_pid(supervisors)
    assert after != before
    assert not int(proc_status(after)["SigIgn"], 16) & usr2


def test_a_builtin_name_cannot_be_registered(tmp_path: Path) -> None:
    sup = Supervisor(control=str(tmp_path / "c.sock"), programs=[Program("web", SLEEP)])

    def status() -> str:
        return "mine"

    for register in (
        lambda: sup.command(status),
        lambda: sup.command(name="stop")(lambda: None),
        lambda: sup.command(name="shutdown", read_only=True)(lambda: None),
    ):
        with pytest.raises(ValueError, match="exists already"):
            register()
    sup.command(name="mine")(status)
    with pytest.raises(ValueError, match="exists already"):
        sup.command(name="mine")(status)


def test_what_is_no_command_is_refused_when_registered(tmp_path: Path) -> None:
    """Not a bare AttributeError ('int' object has no attribute '__name__'), now
    or at the first call: a TypeError, or a ValueError saying to give name=."""
    sup = Supervisor(control=str(tmp_path / "c.sock"), programs=[Program("web", SLEEP)])

    def region(name: str) -> str:
        return name

    with pytest.raises(TypeError, match=r"^a command is a function, not 42$"):
        sup.command(42)
    with pytest.raises(TypeError, match=r"^a command is a function, not 'flush'$"):
        sup.command("flush")
    with pytest.raises(ValueError, match=r"has no __name__: give the command's name=$"):
        sup.command(functools.partial(region, "eu"))
    with pytest.raises(ValueError, match=r"^invalid command name 7"):
        sup.command(name=7)(region)  # type: ignore[arg-type]
    sup.command(name="eu")(functools.partial(region, "eu"))
    assert sup._commands["eu"].function() == "eu"


def test_a_command_that_raises_systemexit_or_keyboardinterrupt_fails_alone(
    supervisors: Supervisors,
) -> None:
    """argparse in a command exits (SystemExit), a command may raise
    KeyboardInterrupt or GeneratorExit: each is that command's failure, answered
    ``failed`` in one line and logged, and the supervisor and its programs go on.
    (Each was the supervisor's end: it SIGKILLed every program and exited.) A
    SIGTERM stops it in order after that, as always."""
    proc = start_app(supervisors)
    web = web_pid(supervisors)
    for args, expected in [
        (("call", "parse", '{"argv": ["--n", "x"]}'), "parse: SystemExit: 2"),
        (("call", "raises", '{"name": "KeyboardInterrupt"}'), "raises: KeyboardInterrupt"),
        (("call", "raises", '{"name": "GeneratorExit"}'), "raises: GeneratorExit"),
        (("call", "raises", '{"name": "SystemExit"}'), "raises: SystemExit"),
    ]:
        result = supervisors.ctl(*args)
        assert (result.returncode, one_line(result.stderr)) == (
            1,
            f"daemonctx: error: {expected}",
        ), args
    with supervisors.client() as client, pytest.raises(RemoteError) as info:
        client.call("parse", argv=["--bad"])
    assert (info.value.type, info.value.message) == ("failed", "parse: SystemExit: 2")
    assert proc.poll() is None
    assert web_pid(supervisors) == web
    result = supervisors.ctl("call", "parse", '{"argv": ["--n", "1"]}')
    assert (result.returncode, result.stdout) == (0, "Namespace(n=1)\n"), result.stderr
    log = wait_for(
        lambda: "command raises failed: SystemExit" in (text := log_text(supervisors)) and text,
        what="the failures logged",
    )
    assert "command parse failed: SystemExit: 2" in log
    assert "command raises failed: KeyboardInterrupt" in log
    assert "Traceback" not in log
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert f"web: stopping (pid {web}, SIGTERM" in log_text(supervisors)


def test_a_real_ctrl_c_during_a_command_fails_it_and_stops_the_supervisor_in_order(
    supervisors: Supervisors,
) -> None:
    """Code in a command that gave SIGINT Python's default handler gets a real
    SIGINT as KeyboardInterrupt: the command fails, and the supervisor, whose
    wake-up fd got the signal too, stops every program in order and exits 0."""
    proc = start_app(supervisors)
    web = web_pid(supervisors)
    result = supervisors.ctl("call", "ctrl_c")
    assert (result.returncode, one_line(result.stderr)) == (
        1,
        "daemonctx: error: ctrl_c: KeyboardInterrupt",
    )
    assert proc.wait(timeout=30) == 0, proc.communicate()
    wait_gone(web)
    assert f"web: stopping (pid {web}, SIGTERM" in log_text(supervisors)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_signal_interrupts_a_slow_command_and_stops_the_supervisor_in_order(
    supervisors: Supervisors, tmp_path: Path, signum: int
) -> None:
    """A command runs in the supervisor's only thread: a SIGTERM or SIGINT that
    comes during a 60 s one raises in it at once (the signal only woke the loop
    once the command returned, and one that never returned made the supervisor
    unkillable but by SIGKILL). Its caller gets ``failed``, and the supervisor
    stops every program in order and exits 0."""
    proc = start_app(supervisors)
    web = web_pid(supervisors)
    started = tmp_path / "started"
    call = supervisors.ctl_popen(
        "call", "slow", json.dumps({"seconds": 60, "started": str(started)})
    )
    wait_for(started.exists, what="the command to run")
    began = time.monotonic()
    os.kill(proc.pid, signum)
    assert proc.wait(timeout=20) == 0, proc.communicate()
    assert time.monotonic() - began < 10
    out, err = call.communicate(timeout=10)
    assert (call.returncode, one_line(err)) == (
        1,
        "daemonctx: error: slow: interrupted: the supervisor is shutting down",
    ), out
    wait_gone(web)
    log = log_text(supervisors)
    assert "command slow failed: interrupted: the supervisor is shutting down" in log, log
    assert f"web: stopping (pid {web}, SIGTERM" in log, log
    assert "Traceback" not in log, log


def test_a_signal_that_stops_nothing_leaves_a_command_running(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Only a stop signal interrupts a command: SIGHUP (reopen the logs) during
    one is handled after it, which returns its result."""
    proc = start_app(supervisors)
    started = tmp_path / "started"
    call = supervisors.ctl_popen(
        "call", "slow", json.dumps({"seconds": 1, "started": str(started)})
    )
    wait_for(started.exists, what="the command to run")
    os.kill(proc.pid, signal.SIGHUP)
    out, err = call.communicate(timeout=20)
    assert (call.returncode, out) == (0, "done\n"), err
    wait_for(lambda: "SIGHUP: log files reopened" in log_text(supervisors), what="the SIGHUP")
    assert proc.poll() is None


def test_a_command_that_asks_its_own_supervisor_through_client_fails_at_once(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Client, from a command, to the supervisor that runs it: the loop that would
    answer is busy with the command, so the request would wait for ever (timeout
    None) and the supervisor with it. It fails at once, saying why. A thread of
    the application's own may still ask."""
    proc = start_app(supervisors)
    result = supervisors.ctl("--timeout", "10", "call", "ask_self")
    assert (result.returncode, one_line(result.stderr)) == (
        1,
        f"daemonctx: error: ask_self: CommandError: cannot ask the supervisor on"
        f" {supervisors.control} from a command it runs: it answers only once the"
        " command returns",
    )
    answer = tmp_path / "answer"
    result = supervisors.ctl("call", "ask_later", json.dumps({"path": str(answer)}))
    assert result.returncode == 0, result.stderr
    wait_for(answer.exists, what="the thread's answer")
    assert answer.read_text() == "running"
    assert proc.poll() is None


def test_an_async_function_is_refused_as_a_command(tmp_path: Path) -> None:
    """Called, it would make a coroutine that nothing awaits: every call failed
    (``result is not JSON``), with a RuntimeWarning in the supervisor's output."""
    sup = Supervisor(control=str(tmp_path / "c.sock"), programs=[Program("web", SLEEP)])

    async def refresh(region: str) -> int:
        return 1

    message = (
        "command 'refresh' is an async function: the supervisor calls commands"
        " in its loop, which awaits nothing (make it a plain def)"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        sup.command(refresh)
    with pytest.raises(TypeError, match=r"^command 'again' is an async function"):
        sup.command(name="again")(functools.partial(refresh, "eu"))
    assert not sup._commands


def test_a_registered_command_s_arguments_are_logged_escaped(supervisors: Supervisors) -> None:
    """The audit line quotes a call's arguments (the client's text) with what a
    terminal acts on, and a newline, as escapes: no forged line, no escape sequence."""
    start_app(supervisors)
    result = supervisors.ctl("call", "flush_cache", json.dumps({"region": "e\x1b[2J\nfake"}))
    assert result.returncode == 1  # no such region
    line = "flush_cache {'region': 'e\\x1b[2J\\nfake'}"
    log = wait_for(lambda: line in (text := log_text(supervisors)) and text, what="its line")
    assert "\x1b" not in log and "\nfake" not in log, log


def test_a_result_that_contains_itself_or_nests_too_deep_fails_not_internal(
    supervisors: Supervisors,
) -> None:
    """As a set or NaN: ``failed``, saying the result is not JSON, not an
    ``internal`` RecursionError with a traceback in the log at every call."""
    start_app(supervisors)
    reason = "result is not JSON: it contains itself, or is nested too deep"
    for name in ("tree", "deep"):
        result = supervisors.ctl("call", name)
        assert (result.returncode, one_line(result.stderr)) == (
            1,
            f"daemonctx: error: {name}: {reason}",
        )
        with supervisors.client() as client, pytest.raises(RemoteError) as info:
            client.call(name)
        assert (info.value.type, info.value.message) == ("failed", f"{name}: {reason}")
    assert supervisors.ctl("ping").returncode == 0
    log = log_text(supervisors)
    assert "Traceback" not in log and "internal" not in log, log


def test_the_ways_the_docs_give_to_learn_how_an_application_s_job_ended(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The supervisor's loop reaps every child of its process that exits (it
    cannot tell the application's from an orphan it was given): a job the
    command waits for keeps its status, and one in the background can write it
    through a shell that waits for it, which the loop then reaps."""
    start_app(supervisors)
    result = supervisors.ctl("call", "job", '{"code": 3}')
    assert (result.returncode, result.stdout) == (0, "3\n"), result.stderr
    status = tmp_path / "job.status"
    result = supervisors.ctl("call", "job", json.dumps({"code": 4, "status": str(status)}))
    assert result.returncode == 0, result.stderr
    shell = int(result.stdout)
    wait_for(lambda: status.exists() and status.read_text() == "4\n", what="the job's status")
    wait_reaped(shell)  # by the loop: no zombie left


def test_tail_refuses_a_cursor_past_the_last_one_at_once(supervisors: Supervisors) -> None:
    """A cursor no line can be past (2**70: not one this supervisor gave) is
    refused at once, not waited on for its 30 s."""
    start_app(supervisors)
    with supervisors.client(timeout=5) as client:
        _lines, cursor = client.tail("web")
        for after in (2**70, cursor + 1):
            with pytest.raises(RemoteError) as info:
                client.tail("web", after=after)
            assert (info.value.type, info.value.message) == (
                "bad-arguments",
                f"after: {after} is past web's last cursor ({cursor})",
            )


# -- 11. ctl against a real supervisor -------------------------------------------------------------


def test_ctl_status_exit_codes(supervisors: Supervisors) -> None:
    supervisors.config(
        {
            "web": {"command": SLEEP, "restart": "always", "restart_delay": 30.0},
            "db": {"command": ["/bin/sleep", "1001"]},
        }
    )
    supervisors.foreground()
    result = supervisors.ctl("status")
    assert result.returncode == 0, result
    pid = web_pid(supervisors)
    assert re.search(rf"^web  running \(pid {pid}, ", result.stdout, re.M), result.stdout
    assert re.search(r"^db   running \(pid \d+, ", result.stdout, re.M), result.stdout

    assert supervisors.ctl("stop", "web").returncode == 0
    result = supervisors.ctl("status")
    assert result.returncode == 0  # a health check: web is stopped on purpose
    assert re.search(r"^web  stopped", result.stdout, re.M), result.stdout
    assert supervisors.ctl("status", "all").returncode == 0
    assert supervisors.ctl("status", "db").returncode == 0  # only the named ones count
    assert supervisors.ctl("status", "web").returncode == 3  # LSB: it is not running

    assert supervisors.ctl("start", "web").returncode == 0
    first = web_pid(supervisors)
    os.kill(first, signal.SIGKILL)  # the first crash restarts at once ...
    second = wait_for(
        lambda: (
            (info := supervisors.status("web")).state == "running"
            and info.pid not in (None, first)
            and info.pid
        ),
        what="web restarted",
    )
    os.kill(second, signal.SIGKILL)  # ... the second waits restart_delay: backoff
    supervisors.wait_state("web", "backoff")
    result = supervisors.ctl("status")
    assert result.returncode == 3
    assert re.search(r"^web  backoff", result.stdout, re.M), result.stdout
    assert supervisors.ctl("status", "web").returncode == 3


def test_ctl_status_when_nothing_listens(supervisors: Supervisors, tmp_path: Path) -> None:
    result = supervisors.ctl("status")  # no file at all
    assert result.returncode == 3
    assert NOT_RUNNING in one_line(result.stderr)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(supervisors.control)  # a socket file nobody listens on
    result = supervisors.ctl("status")
    assert result.returncode == 3
    assert NOT_RUNNING in one_line(result.stderr)


def test_ctl_json_prints_parseable_program_infos(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}, "db": {"command": ["/bin/sleep", "1001"]}})
    supervisors.foreground()
    result = supervisors.ctl("--json", "status")
    assert result.returncode == 0, result
    programs = json.loads(result.stdout)["programs"]
    fields = set(ProgramInfo.FIELDS)  # type: ignore[attr-defined]
    assert [set(program) for program in programs] == [fields, fields]
    assert [(p["name"], p["state"]) for p in programs] == [("web", "running"), ("db", "running")]
    assert all(pid_alive(program["pid"]) for program in programs)
    result = supervisors.ctl("--json", "stop", "db")
    assert result.returncode == 0
    (db,) = json.loads(result.stdout)["programs"]
    assert (db["name"], db["state"], db["pid"]) == ("db", "stopped", None)
    result = supervisors.ctl("start", "db", "--json")  # after the command too
    assert result.returncode == 0, result
    (db,) = json.loads(result.stdout)["programs"]
    assert (db["name"], db["state"]) == ("db", "running")


def test_ctl_says_in_one_line_what_it_cannot_send(supervisors: Supervisors) -> None:
    """Arguments ctl cannot put in a request are refused before anything is sent,
    in one line naming what was typed, exit 2: call JSON JSON cannot write
    (1e999, NaN, 5000 digits), a key given twice (the protocol refuses that; ctl
    sent the last one), JSON nested too deep, a request over the protocol's limit, a NAME that
    is not UTF-8, a negative ``tail -n`` or one not in ASCII digits, a ``--timeout``
    not in ASCII digits (status and ping too, parsed without argparse), a signal
    number of 5000 digits. (They
    were tracebacks, or Python's own messages, or nothing at all.)"""
    start_app(supervisors)
    long_names = [f"n{index:099d}" for index in range(700)]
    digits = "9" * 5000
    for args, expected in [
        (("call", "flush_cache", '{"region": 1e999}'), "number out of range: 1e999"),
        (("call", "flush_cache", '{"region": -1e999}'), "number out of range: -1e999"),
        (("call", "flush_cache", '{"region": NaN}'), "NaN"),
        (("call", "flush_cache", '{"region": ' + digits + "}"), "(5000 digits)"),
        (("call", "flush_cache", json.dumps({"region": "x" * 70_000})), f"({MAX_LINE} bytes)"),
        (
            ("call", "flush_cache", '{"region": "mars", "region": "eu"}'),
            """call: 'region' is given twice in '{"region": "mars", "region": "eu"}': give""",
        ),
        (("call", "flush_cache", '{"region": ' + "[" * 100_000), "(nested too deep)"),
        (("status", *long_names), f"({MAX_LINE} bytes)"),
        (("status", os.fsdecode(b"w\xffb")), "not a program name: 'w\\xffb' (not UTF-8)"),
        (("tail", "web", "-n", "-5"), "must be 0 or more: '-5'"),
        (("tail", "web", "-n", "\u0661\u0660"), "not a number of lines: '\u0661\u0660'"),
        (("tail", "web", "-n", "1_0"), "not a number of lines: '1_0'"),
        (("tail", "web", "-n", " 5"), "not a number of lines: ' 5'"),
        (("tail", "web", "-n", "1000000"), "must be 100000 or less: '1000000'"),
        (("--timeout", "\u0661", "status"), "not a number of seconds: '\u0661'"),
        (("--timeout=\uff11", "ping"), "not a number of seconds: '\uff11'"),
        (("--timeout", "1_0", "status"), "not a number of seconds: '1_0'"),
        (("ping", "--timeout", "1_0"), "not a number of seconds: '1_0'"),
        (("signal", digits, "web"), "unknown signal number 999999999999... (5000 digits)"),
    ]:
        result = supervisors.ctl(*args)
        assert result.returncode == 2, (args[:2], result)
        line = one_line(result.stderr.splitlines()[-1])  # argparse: its usage first
        assert expected in line, (args[:2], line)
        assert "Traceback" not in result.stderr and "sys.set_int_max" not in line
        assert len(line) < 300, line
    assert supervisors.ctl("call", "flushed").stdout.strip() == "[]"
    result = supervisors.ctl("status", "--", "-web")  # "--" ends ctl's options
    assert result.returncode == 4, result
    assert (
        one_line(result.stderr) == "daemonctx: error: no program named '-web' (did you mean 'web'?)"
    )
    with LineClient(supervisors.control) as client:  # the supervisor names what was sent
        client.send(
            b'{"id": 1, "command": "signal", "args": {"signal": "%s", "names": ["web"]}}\n'
            % digits.encode()
        )
        client.send(b'{"id": 1e999, "command": "ping"}\n')
        signal_error, id_error = client.read(), client.read()
    assert signal_error["error"]["message"] == "unknown signal number 999999999999... (5000 digits)"
    assert id_error["error"] == {"type": "bad-request", "message": "number out of range: 1e999"}


def test_ctl_config_with_a_half_written_program_still_reaches_the_supervisor(
    supervisors: Supervisors,
) -> None:
    """ctl --config needs the file's control socket only: a TOML mistake in a
    program's table (one being written) does not keep it from the supervisor,
    and ctl reload then says what is wrong. A mistake in [supervisor] itself is
    still the file's error, exit 2."""
    config = supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    pid = web_pid(supervisors)
    text = config.read_text()
    config.write_text(text + "\n[program.x\n")

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return supervisors.daemonctx("ctl", "--config", str(config), *args)

    result = ctl("status")
    assert result.returncode == 0, result
    assert result.stdout.startswith("web  running")
    result = ctl("reload")
    assert result.returncode == 1, result
    assert "nothing changed" in result.stderr and "Expected ']'" in result.stderr, result
    assert web_pid(supervisors) == pid
    config.write_text(text.replace("control = ", "control = [", 1))
    result = ctl("status")
    assert result.returncode == 2, result
    assert "Unclosed array" in one_line(result.stderr)


@pytest.mark.parametrize("typed", ["absolute", "relative"])
def test_ctl_config_reaches_the_supervisor_after_its_control_was_edited(
    supervisors: Supervisors, typed: str
) -> None:
    """``control`` edited in the file, then systemd's ``ExecReload=ctl --config FILE
    reload``: nothing listens on the new path, but the supervisor of that file runs
    on its old socket, found through /proc (started as ``supervise --config FILE``,
    it holds that socket's lock and listens there). ctl says so on stderr and the
    supervisor's own refusal follows (exit 1); status and shutdown reach it too.
    FILE given relative, as typed in a shell in its directory (PWD), is found too."""
    config = supervisors.config({"web": {"command": SLEEP}})
    where = {"cwd": supervisors.tmp_path, "env": {**supervisors.env, "PWD": str(config.parent)}}
    named = str(config) if typed == "absolute" else config.name
    result = supervisors.daemonctx("supervise", "--config", named, **where)
    assert result.returncode == 0, result
    supervisor = live_owner(supervisors.control)
    assert supervisor is not None
    old, new = supervisors.control, str(supervisors.tmp_path / "new.sock")
    config.write_text(config.read_text().replace(old, new))
    note = (
        f"daemonctx: warning: {config} names control {new}, not in effect until a restart:"
        f" supervisor (pid {supervisor}) of that file listens on {old}"
    )

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return supervisors.daemonctx("ctl", "--config", str(config), *args)

    result = ctl("reload")
    assert result.returncode == 1, result
    refusal = (
        f"daemonctx: error: nothing changed: {config}: [supervisor] control:"
        " cannot change without restarting the supervisor"
    )
    assert result.stderr.splitlines() == [note, refusal]
    result = ctl("status")
    assert (result.returncode, result.stderr.splitlines()) == (0, [note]), result
    assert result.stdout.startswith("web  running")
    result = ctl("shutdown")
    assert result.returncode == 0, result
    assert result.stdout == f"supervisor (pid {supervisor}) stopped every program and exited\n"
    wait_gone(supervisor)
    result = ctl("status")  # now it is not running: said as before, exit 3
    assert result.returncode == 3, result
    assert one_line(result.stderr) == f"daemonctx: error: {NOT_RUNNING} (nothing listens on {new})"


@needs_root
def test_ctl_config_never_asks_another_users_process_that_claims_the_file(
    supervisors: Supervisors, open_dir: Path
) -> None:
    """Another user's process started as ``supervise --config FILE``, listening on a
    socket whose lock it holds, is not taken for the file's supervisor: root's ctl
    says "not running" (exit 3) and never connects to it."""
    config = supervisors.config({"web": {"command": SLEEP}})
    home = open_dir / "impostor"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    code = textwrap.dedent(f"""
        import fcntl, os, select, socket, sys
        listener = socket.socket(socket.AF_UNIX)
        listener.bind({str(home / "c.sock")!r})
        listener.listen()
        lock = os.open({str(home / "c.sock.lock")!r}, os.O_CREAT | os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)
        print("listening", flush=True)
        sys.stdin.readline()
        print("asked" if select.select([listener], [], [], 0)[0] else "never asked", flush=True)
    """)
    (home / "impostor.py").write_text(code)
    python = python_for_nobody(home / "impostor.py")
    impostor = supervisors.popen(
        [python, str(home / "impostor.py"), "supervise", "--config", str(config)],
        env=supervisors.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        user=NOBODY, group=NOBODY, extra_groups=[], cwd=str(home),
    )  # fmt: skip
    assert impostor.stdout is not None and impostor.stdout.readline() == "listening\n"
    result = supervisors.daemonctx("ctl", "--config", str(config), "status")
    assert result.returncode == 3, result
    expected = f"daemonctx: error: {NOT_RUNNING} (nothing listens on {supervisors.control})"
    assert one_line(result.stderr) == expected
    out, _ = impostor.communicate("go\n", timeout=10)
    assert out == "never asked\n"


@needs_root
def test_ctl_config_of_a_user_who_cannot_tell_the_old_socket_says_it_runs(
    supervisors: Supervisors, open_dir: Path
) -> None:
    """A user who may read the file but not root's supervisor's /proc (its fds, its
    locks) cannot be shown its old socket: ctl says the supervisor of that file runs
    and how to reach it, not "not running"; status exits 4 (unknown), not 3."""
    config = config_at(
        supervisors, open_dir / "shop.toml", {"web": {"command": SLEEP}},
        control=str(open_dir / "control.sock"),
    )  # fmt: skip
    config.chmod(0o644)
    result = supervisors.daemonctx("supervise", "--config", str(config))
    assert result.returncode == 0, result
    supervisor = live_owner(str(open_dir / "control.sock"))
    new = str(open_dir / "new.sock")
    config.write_text(config.read_text().replace(str(open_dir / "control.sock"), new))
    python = python_for_nobody()
    expected = (
        f"daemonctx: error: nothing listens on {new}, the control {config} names, but"
        f" supervisor (pid {supervisor}) of that file runs (control edited since? a new one"
        " takes effect at a restart); its control socket cannot be told from here:"
        " give it with --control"
    )
    for command, code in (("status", 4), ("reload", 1)):
        result = subprocess.run(
            [python, "-m", "daemonctx", "ctl", "--config", str(config), command],
            env={**supervisors.env, "PYTHONPATH": str(READABLE_ROOT)},
            user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert (result.returncode, result.stderr) == (code, expected + "\n"), result


def test_ctl_stop_start_restart_return_when_done(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}, "db": {"command": ["/bin/sleep", "1001"]}})
    supervisors.foreground()
    with supervisors.client() as client:
        old = {info.name: info.pid for info in client.status()}
    pidfds = {name: os.pidfd_open(pid) for name, pid in old.items() if pid is not None}
    try:
        result = supervisors.ctl("stop", "all")
        assert result.returncode == 0, result
        assert all(exited(fd) for fd in pidfds.values())  # gone when stop returned
        assert re.findall(r"^(\w+) +(\w+)", result.stdout, re.M) == [
            ("web", "stopped"),
            ("db", "stopped"),
        ]
    finally:
        for fd in pidfds.values():
            os.close(fd)

    result = supervisors.ctl("start", "all")
    assert result.returncode == 0, result
    with supervisors.client() as client:
        started = {info.name: (info.state, info.pid) for info in client.status()}
    assert all(state == "running" and pid_alive(pid) for state, pid in started.values()), started
    assert not set(old.values()) & {pid for _, pid in started.values()}

    web = started["web"][1]
    assert web is not None
    pidfd = os.pidfd_open(web)
    try:
        result = supervisors.ctl("restart", "web")
        assert result.returncode == 0, result
        assert exited(pidfd)
    finally:
        os.close(pidfd)
    assert re.fullmatch(r"web  running \(pid \d+[,)][^\n]*\n", result.stdout), result.stdout
    new = web_pid(supervisors)
    assert new != web and pid_alive(new)
    assert supervisors.status("db").pid == started["db"][1]  # untouched


def test_ctl_signal_reaches_the_program_and_refuses_a_stopped_one(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    signals = tmp_path / "signals"
    supervisors.config(
        {
            # writes the signal's name to the file and exits; READY=1 once its handlers are set
            "hup": {"command": list(python_program("--signals", str(signals))), "ready": "notify"},
            "web": {"command": SLEEP},
        }
    )
    supervisors.foreground()
    hup = supervisors.status("hup").pid
    assert supervisors.ctl("stop", "web").returncode == 0

    result = supervisors.ctl("signal", "USR1", "hup", "web")
    assert result.returncode != 0
    assert "not running: web" in one_line(result.stderr)
    result = supervisors.ctl("signal", "HUP", "web")
    assert result.returncode != 0
    assert "not running: web" in one_line(result.stderr)
    info = supervisors.status("hup")
    assert (info.state, info.pid) == ("running", hup)  # nothing was signalled

    result = supervisors.ctl("signal", "-HUP", "hup")  # as kill takes it, too
    assert result.returncode == 0, result
    wait_for(signals.exists, what="the program to record the signal")
    wait_for(lambda: signals.read_text() == "SIGHUP", what="SIGHUP recorded")


def test_ctl_shutdown_returns_once_the_supervisor_is_gone(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}, "db": {"command": ["/bin/sleep", "1001"]}})
    proc = supervisors.foreground()
    with supervisors.client() as client:
        pids = [proc.pid, *(info.pid for info in client.status())]
    pidfds = [os.pidfd_open(pid) for pid in pids if pid is not None]
    try:
        result = supervisors.ctl("shutdown")
        assert result.returncode == 0, result
        assert [exited(fd) for fd in pidfds] == [True, True, True]
    finally:
        for fd in pidfds:
            os.close(fd)
    assert result.stdout == f"supervisor (pid {proc.pid}) stopped every program and exited\n"
    assert proc.wait(5) == 0
    assert not os.path.exists(supervisors.control)
    assert supervisors.processes() == []


# -- 12. bad input changes nothing ----------------------------------------------------------------


def test_an_unknown_program_is_not_found_and_changes_nothing(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    pid = web_pid(supervisors)
    for args in (("stop", "nosuch"), ("stop", "web", "nosuch"), ("restart", "web", "nosuch")):
        result = supervisors.ctl(*args)
        assert result.returncode == 1, (args, result)
        assert "no program named 'nosuch'" in one_line(result.stderr)
    with supervisors.client() as client, pytest.raises(RemoteError) as caught:
        client.stop("web", "nosuch")
    assert caught.value.type == "not-found"
    assert web_pid(supervisors) == pid
    assert supervisors.status("web").restarts == 0
    assert "stopping" not in log_text(supervisors)
    # status: LSB's 4, "unknown", as systemctl status for no such unit; a near miss named
    for args in (("status", "nosuch"), ("status", "web", "nosuch")):
        result = supervisors.ctl(*args)
        assert result.returncode == 4, (args, result)
        assert one_line(result.stderr).endswith("no program named 'nosuch'"), result
    result = supervisors.ctl("stop", "wbe")
    assert one_line(result.stderr).endswith("no program named 'wbe' (did you mean 'web'?)")


def test_a_bad_signal_name_changes_nothing(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    pid = web_pid(supervisors)
    result = supervisors.ctl("signal", "BOGUS", "web")
    assert result.returncode == 2
    assert "BOGUS" in result.stderr
    with supervisors.client() as client, pytest.raises(RemoteError) as caught:
        client.signal("BOGUS", "web")
    assert caught.value.type == "bad-arguments"
    assert "BOGUS" in caught.value.message
    assert web_pid(supervisors) == pid


def test_ctl_with_a_missing_config_file(supervisors: Supervisors, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = supervisors.daemonctx("ctl", "--config", str(missing), "status")
    assert result.returncode == 2
    assert str(missing) in one_line(result.stderr)


@pytest.mark.parametrize(
    ("table", "key"), [("supervisor", "contorl_group"), ("program.web", "restrat")]
)
def test_an_unknown_key_is_refused_before_anything_starts(
    supervisors: Supervisors, table: str, key: str
) -> None:
    if table == "supervisor":
        supervisors.config({"web": {"command": SLEEP}}, **{key: "adm"})
    else:
        supervisors.config({"web": {"command": SLEEP, key: "always"}})
    result = supervisors.supervise(timeout=20)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert f"{supervisors.config_path}: [{table}] {key}: unknown key" in line, line
    assert supervisors.processes() == []
    assert not os.path.exists(supervisors.control)


def test_a_control_socket_in_a_missing_directory(supervisors: Supervisors, tmp_path: Path) -> None:
    directory = tmp_path / "nonexistent-dir"
    result = supervisors.daemonctx(
        "supervise", "--control", str(directory / "x.sock"), "--", "/bin/sleep", "1000"
    )
    assert result.returncode != 0
    assert str(directory) in one_line(result.stderr)
    assert supervisors.processes() == []
    assert not directory.exists()


@pytest.mark.parametrize("option", ["--log", "--stdout", "--stderr"])
def test_a_relative_path_with_a_trailing_slash_is_read_as_typed(
    supervisors: Supervisors, tmp_path: Path, option: str
) -> None:
    """``supervise --control SOCK --log newdir/ -- COMMAND``, relative: the path
    means a directory, as the same value in a file does. The start fails naming
    it, and creates no file ``newdir`` (``os.path.abspath`` dropped the slash, so
    the supervisor made a log file of that name)."""
    result = supervisors.daemonctx(
        "supervise", "--control", supervisors.control, option, "newdir/", "--", *SLEEP,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result
    line = one_line(result.stderr)
    assert f"{tmp_path}/newdir/: Is a directory" in line, line
    assert not (tmp_path / "newdir").exists()
    assert supervisors.processes() == []


@pytest.mark.parametrize("form", [(), ("--foreground",)], ids=["detached", "foreground"])
def test_a_log_in_a_missing_directory_is_refused_before_anything_starts(
    supervisors: Supervisors, tmp_path: Path, form: tuple[str, ...]
) -> None:
    """The supervisor's own log is checked in the foreground: one line naming it
    and the missing directory (not ``[Errno 2] ...`` from the daemon), nothing
    started, no socket."""
    log = tmp_path / "missing" / "shop.log"
    supervisors.config({"web": {"command": SLEEP}}, log=str(log))
    result = supervisors.supervise(*form)
    assert result.returncode == 1, result
    line = one_line(result.stderr)
    assert f"supervisor log {log}: no such directory {log.parent}" in line, line
    assert "Errno" not in line, line
    assert not os.path.exists(supervisors.control) and supervisors.processes() == []


# -- 13. one program, no file ----------------------------------------------------------------------


def test_the_single_program_form(supervisors: Supervisors, tmp_path: Path) -> None:
    pidfile = tmp_path / "supervisor.pid"
    result = supervisors.daemonctx(
        "supervise",
        "--control",
        supervisors.control,
        "--pidfile",
        str(pidfile),
        "--restart",
        "always",
        "--",
        *SLEEP,
    )
    assert result.returncode == 0, result.stderr
    result = supervisors.ctl("status")
    assert result.returncode == 0, result
    match = re.fullmatch(r"sleep  running \(pid (\d+), .*\)\n", result.stdout)
    assert match, result.stdout
    program = int(match.group(1))
    supervisor = int(pidfile.read_text())
    assert int(proc_stat(program)[1]) == supervisor  # the program's parent
    assert live_owner(supervisors.control) == supervisor
    (guard,) = set(supervisors.processes()) - {supervisor, program}
    assert int(proc_stat(guard)[1]) == supervisor  # its guard (guard.py)

    result = supervisors.ctl("shutdown")
    assert result.returncode == 0, result
    assert f"(pid {supervisor})" in result.stdout
    assert not pid_alive(supervisor) and not pid_alive(program) and not pid_alive(guard)
    assert not pidfile.exists()
    assert not os.path.exists(supervisors.control)
    assert supervisors.processes() == []


@pytest.mark.parametrize("command", ["my app", "all", "-x"])
def test_the_single_program_form_says_how_to_name_a_program(
    supervisors: Supervisors, tmp_path: Path, command: str
) -> None:
    """The single-program form names the program after its command: when that
    name will not do, the error says to choose one; nothing starts."""
    program = tmp_path / command
    program.write_text("#!/bin/sh\nexec sleep 1000\n")
    program.chmod(0o755)
    result = supervisors.daemonctx(
        "supervise", "--control", supervisors.control, "--", str(program)
    )
    assert result.returncode == 1, result
    line = one_line(result.stderr)
    assert line.startswith(f"daemonctx: error: program '{command}': invalid name"), line
    assert line.endswith("; give it one with --name NAME"), line
    assert not os.path.exists(supervisors.control) and supervisors.processes() == []
    named = ("--name", "app", "--foreground")
    ok = supervisors.popen(
        [
            *supervisors.command(),
            "supervise",
            "--control",
            supervisors.control,
            *named,
            "--",
            str(program),
        ],
        env=supervisors.env,
    )
    supervisors.wait_answering(ok)
    assert supervisors.status("app").state == "running"


def test_one_program_with_watchdog_is_restarted_when_it_sends_no_watchdog_1(
    supervisors: Supervisors,
) -> None:
    """zdaemon-style, without a file: --watchdog S, and sleep never sends WATCHDOG=1."""
    result = supervisors.daemonctx(
        "supervise", "--control", supervisors.control, "--watchdog", "0.3", "--", *SLEEP
    )
    assert result.returncode == 0, result
    wait_for(lambda: supervisors.status("sleep").restarts >= 1, 10, what="a restart")
    why = supervisors.ctl("why", "sleep").stdout
    assert "stopped by no WATCHDOG=1 within 0.3 s (SIGTERM)" in why, why


def test_one_program_with_ready_after_0_is_ready_once_started(supervisors: Supervisors) -> None:
    """``--ready-after 0`` is what ``start --ready-after 0`` and supervisord's
    ``startsecs = 0`` mean: no wait (it was refused: "must be more than 0")."""
    result = supervisors.daemonctx(
        "supervise", "--control", supervisors.control, "--ready-after", "0", "--", *SLEEP
    )
    assert result.returncode == 0, result
    info = supervisors.status("sleep")  # supervise returned: it was ready
    assert (info.state, info.healthy) == ("running", True) and pid_alive(info.pid)
    refused = supervisors.daemonctx(
        "supervise", "--control", supervisors.control, "--ready-after", "-1", "--", *SLEEP
    )
    assert refused.returncode == 2
    assert refused.stderr.endswith("argument --ready-after: must be 0 or more, and finite: '-1'\n")


# -- the configuration file is trusted only if no other user could have written it ---------


@needs_root
def test_a_configuration_file_others_can_write_is_refused(supervisors: Supervisors) -> None:
    """As root, the file says what runs as root: one another user could change is
    refused at start (exit 4, nothing started) and at reload (nothing changed)."""
    path = supervisors.config({"web": {"command": SLEEP}})
    path.chmod(0o666)
    result = supervisors.supervise()
    assert result.returncode == 4, result
    assert one_line(result.stderr) == (
        f"daemonctx: error: refusing configuration file {path}: "
        "the file is writable by others (mode 0666)"
    )
    assert supervisors.processes() == []
    path.chmod(0o644)
    supervisors.foreground()
    web = supervisors.status("web").pid
    path.write_text(path.read_text().replace("1000", "1001"))
    os.chown(path, NOBODY, NOBODY)  # another user's file now
    result = supervisors.ctl("reload")
    assert result.returncode == 1
    assert f"refusing configuration file {path}: the file is owned by uid {NOBODY}" in (
        result.stderr
    )
    assert supervisors.status("web").pid == web


def _include_conf_d(supervisors: Supervisors, programs: dict[str, dict[str, Any]]) -> Path:
    """The supervisor's file with ``include = ["conf.d/*.toml"]``, one ``conf.d``
    file per program (``NAME.toml``); the directory."""
    path = supervisors.config({}, include=["conf.d/*.toml"])
    conf_d = path.parent / "conf.d"
    conf_d.mkdir(exist_ok=True)
    for name, keys in programs.items():
        lines = [f"[program.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in keys.items())]
        (conf_d / f"{name}.toml").write_text("\n".join(lines) + "\n")
    return conf_d


def test_programs_of_included_files_run_and_a_reload_follows_the_directory(
    supervisors: Supervisors,
) -> None:
    """conf.d, as supervisord's [include] and Debian's /etc/supervisor/conf.d: a file
    dropped in is a program added at the next reload, a file removed one removed;
    ctl --config still finds the socket when an included file is broken."""
    conf_d = _include_conf_d(supervisors, {"web": {"command": SLEEP}})
    proc = supervisors.foreground()
    assert proc.poll() is None, proc.communicate()
    web = supervisors.status("web").pid
    (conf_d / "db.toml").write_text(f'[program.db]\ncommand = ["{SLEEP[0]}", "1001"]\n')
    reload = supervisors.ctl("reload")
    assert reload.returncode == 0 and reload.stdout.splitlines() == ["add db"], reload
    db = supervisors.wait_state("db", "running").pid
    (conf_d / "web.toml").unlink()
    assert supervisors.ctl("reload").stdout.splitlines() == ["remove web"]
    wait_gone(web, 5)

    (conf_d / "db.toml").write_text("[program.db]\ncommand = \n")  # broken
    config = ["--config", str(supervisors.config_path)]
    status = supervisors.daemonctx("ctl", *config, "status")
    assert status.returncode == 0 and status.stdout.startswith("db "), status
    bad = supervisors.daemonctx("ctl", *config, "reload")
    assert bad.returncode == 1 and f"{conf_d}/db.toml: line 2" in bad.stderr, bad
    assert supervisors.status("db").pid == db


def test_an_included_file_missing_its_executable_is_named_before_anything_starts(
    supervisors: Supervisors,
) -> None:
    conf_d = _include_conf_d(supervisors, {"web": {"command": ["/nonexistent/web"]}})
    result = supervisors.supervise()
    assert result.returncode != 0
    assert one_line(result.stderr) == (
        f"daemonctx: error: {conf_d}/web.toml: [program.web] command:"
        " /nonexistent/web: no such file"
    )
    assert supervisors.processes() == []


@needs_root
def test_an_included_file_another_user_could_write_is_refused(supervisors: Supervisors) -> None:
    """Each included file says what runs as root, as the main one: trusted alike,
    at start and at reload. A conf.d another user can write into is refused too."""
    conf_d = _include_conf_d(supervisors, {"web": {"command": SLEEP}})
    os.chown(conf_d / "web.toml", NOBODY, NOBODY)
    result = supervisors.supervise()
    assert result.returncode == 4, result
    assert one_line(result.stderr) == (
        f"daemonctx: error: refusing configuration file {conf_d}/web.toml: "
        f"the file is owned by uid {NOBODY}"
    )
    assert supervisors.processes() == []

    os.chown(conf_d / "web.toml", 0, 0)
    supervisors.foreground()
    web = supervisors.status("web").pid
    conf_d.chmod(0o777)  # anyone may drop a file in: a program that runs as root
    (conf_d / "evil.toml").write_text(f'[program.evil]\ncommand = ["{SLEEP[0]}", "666"]\n')
    os.mkfifo(conf_d / "hang.toml")  # read before the check, it would block the supervisor
    result = supervisors.ctl("reload", timeout=10)
    assert result.returncode == 1
    assert f"refusing configuration directory {conf_d}:" in result.stderr, result
    assert "writable by others" in result.stderr, result
    assert supervisors.status("web").pid == web
    with supervisors.client() as client:
        assert [info.name for info in client.status()] == ["web"]


@needs_root
def test_an_empty_conf_d_that_another_user_may_fill_is_refused(supervisors: Supervisors) -> None:
    """Nothing in it yet, nothing to refuse by its files: the directory itself is
    checked, at the start, as it is at each reload."""
    conf_d = _include_conf_d(supervisors, {})
    supervisors.config({"web": {"command": SLEEP}}, include=["conf.d/*.toml"])
    os.chown(conf_d, NOBODY, NOBODY)
    result = supervisors.supervise()
    assert result.returncode == 4, result
    assert one_line(result.stderr) == (
        f"daemonctx: error: refusing configuration directory {conf_d}: {conf_d} is owned by uid"
        f" {NOBODY}"
    )
    assert supervisors.processes() == [] and not os.path.exists(supervisors.control)


# -- whom a program runs as, and the files it writes: refused before anything starts -------


@needs_root
def test_a_user_id_without_a_passwd_entry_needs_a_group(supervisors: Supervisors) -> None:
    """Such a user has no primary group, and the group of the same number (27 is
    sudo) is not its own: refused before anything starts, from the file and from
    `supervise --user N -- CMD`, and by a reload, as `daemonctx start --user N` and
    `DaemonContext(uid=N)` refuse it. With `group` it runs, in that group only.
    It used to run in the group of the same number."""
    uid = uid_without_passwd_entry()
    path = supervisors.config({"web": {"command": SLEEP, "user": str(uid)}})
    why = f"user: '{uid}' has no passwd entry to take the group from: set group too"
    result = supervisors.supervise()
    assert result.returncode == 1, result
    assert one_line(result.stderr) == f"daemonctx: error: {path}: [program.web] {why}"
    assert supervisors.processes() == [] and not os.path.exists(supervisors.control)

    control = ["--control", supervisors.control]
    result = supervisors.daemonctx("supervise", *control, "--user", str(uid), "--", *SLEEP)
    assert result.returncode == 1, result
    assert one_line(result.stderr) == f"daemonctx: error: program 'sleep': {why}"
    assert supervisors.processes() == [] and not os.path.exists(supervisors.control)

    supervisors.config({"web": {"command": SLEEP, "user": str(uid), "group": str(NOGROUP)}})
    supervisors.foreground()
    pid = supervisors.status("web").pid
    assert pid is not None
    wait_for(lambda: proc_status(pid)["Uid"].split() == [str(uid)] * 4, what="the user switch")
    assert proc_status(pid)["Gid"].split() == [str(NOGROUP)] * 4
    assert proc_status(pid)["Groups"] == ""
    supervisors.config({"web": {"command": SLEEP, "user": str(uid)}})  # group dropped
    for reload in (["reload", "--dry-run"], ["reload"]):
        result = supervisors.ctl(*reload)
        assert result.returncode == 1, result
        expected = f"daemonctx: error: nothing changed: {path}: [program.web] {why}"
        assert one_line(result.stderr) == expected
    assert supervisors.status("web").pid == pid
    assert proc_status(pid)["Gid"].split() == [str(NOGROUP)] * 4


@needs_root
@pytest.mark.parametrize("how", ["their directory", "planted in a sticky one"])
def test_a_log_file_path_another_user_controls_is_refused_before_anything_starts(
    supervisors: Supervisors, tmp_path: Path, how: str
) -> None:
    """Found in the foreground check, as an unsafe configuration file is: exit 4,
    one line, nothing started (it used to be found at the program's start, with
    the supervisor up, exit 1); a reload that sends output there changes nothing."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    log = theirs / "web.log"
    if how == "their directory":
        os.chown(theirs, NOBODY, NOGROUP)
        reason = f"{theirs} is owned by uid {NOBODY}"
    else:
        theirs.chmod(0o1777)
        log.touch()
        os.chown(log, NOBODY, NOGROUP)
        reason = f"{log} is owned by uid {NOBODY}, in {theirs} writable by others"
    db = {"command": [SLEEP[0], "1001"]}
    path = supervisors.config({"db": db, "web": {"command": SLEEP, "stderr": str(log)}})
    why = f"[program.web] stderr: refusing {log}: {reason}"
    result = supervisors.supervise()
    assert result.returncode == 4, result
    assert one_line(result.stderr) == f"daemonctx: error: {path}: {why}"
    assert supervisors.processes() == [] and not os.path.exists(supervisors.control)

    supervisors.config({"db": db, "web": {"command": SLEEP}})
    supervisors.foreground()
    pids = [supervisors.status(name).pid for name in ("db", "web")]
    supervisors.config({"db": db, "web": {"command": SLEEP, "stderr": str(log)}})
    for reload in (["reload", "--dry-run"], ["reload"]):
        result = supervisors.ctl(*reload)
        assert result.returncode == 1, result
        assert one_line(result.stderr) == f"daemonctx: error: nothing changed: {path}: {why}"
    assert [supervisors.status(name).pid for name in ("db", "web")] == pids
    assert how != "their directory" or not log.exists()


@needs_root
def test_a_log_directory_an_earlier_program_makes_is_judged_when_it_is_opened(
    supervisors: Supervisors, shared_dir: Path
) -> None:
    """What does not exist yet cannot be judged before anything starts: a one-shot
    running as nobody makes the directory in a sticky one, and the program after
    it is refused at its start (said once), which fails `supervise`."""
    theirs = shared_dir / "theirs"
    log = theirs / "web.log"
    mkdir = {"command": ["/bin/mkdir", str(theirs)], "user": "nobody", "ready": "exited"}
    web = {"command": SLEEP, "stdout": str(log), "after": ["mkdir"]}
    supervisors.config({"mkdir": mkdir, "web": web})
    result = supervisors.supervise()
    assert result.returncode == 1, result
    assert one_line(result.stderr) == (
        f"daemonctx: error: web failed to start: cannot open web's stdout {log}:"
        f" {theirs} is owned by uid {NOBODY}, in {shared_dir} writable by others"
    )
    assert os.stat(theirs).st_uid == NOBODY and not log.exists()
    wait_for(lambda: supervisors.processes() == [], what="every process gone")


def test_the_python_api_takes_groups_checked_as_the_file_s() -> None:
    web = Program("web", ["/bin/sleep", "1000"])
    sup = Supervisor(control="/run/shop/c.sock", programs=[web], groups={"shop": ["web"]})
    assert sup.config.groups == {"shop": ("web",)}
    with pytest.raises(ConfigError, match=r"^group\.shop: programs: unknown program 'db'$"):
        Supervisor(control="/run/shop/c.sock", programs=[web], groups={"shop": ["db"]})


def test_a_built_in_command_refuses_an_argument_it_does_not_take(supervisors: Supervisors) -> None:
    """A typo is refused, not ignored: reload's dryrun would otherwise be a real
    reload, status's name a status of every program, shutdown a shutdown."""
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    pid = web_pid(supervisors)
    with LineClient(supervisors.control) as client:
        for command, args, reason in (
            ("reload", {"dryrun": True}, "unexpected argument 'dryrun' (did you mean 'dry_run'?)"),
            ("status", {"name": ["web"]}, "unexpected argument 'name' (did you mean 'names'?)"),
            ("shutdown", {"please_not": 1}, "unexpected argument 'please_not'"),
            ("stop", {"names": ["web"], "force": True}, "unexpected argument 'force'"),
        ):
            client.request(1, command, args)
            answer = client.read()
            assert error_type(answer) == "bad-arguments", answer
            assert answer["error"]["message"] == f"{command}: {reason}"
    assert "reload:" not in log_text(supervisors)
    assert web_pid(supervisors) == pid and supervisors.ctl("ping").returncode == 0


def test_a_timeout_longer_than_a_socket_takes_means_wait(supervisors: Supervisors) -> None:
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    for timeout in ("1e10", "inf", "1e308"):
        result = supervisors.ctl("--timeout", timeout, "status")
        assert (result.returncode, result.stderr) == (0, ""), result
    with Client(supervisors.control, timeout=float("inf")) as client:
        assert client.timeout is None and client.ping() == "pong"


def test_a_reload_that_cannot_set_the_socket_s_group_changes_nothing(
    supervisors: Supervisors,
) -> None:
    """The socket's group is set first: when that fails (its file moved here), the
    reload is refused whole, not half-applied (programs changed, the socket not)."""
    supervisors.config({"web": {"command": SLEEP}})
    supervisors.foreground()
    pid = web_pid(supervisors)
    supervisors.config({"web": {"command": [*SLEEP, "1"]}}, control_group="root")
    moved = supervisors.control + ".moved"
    os.rename(supervisors.control, moved)
    try:
        with Client(moved, timeout=10) as client, pytest.raises(RemoteError) as caught:
            client.reload()
        assert caught.value.type == "failed"
        assert str(caught.value) == (
            "nothing changed: cannot give the control socket its group: No such file or directory"
        )
    finally:
        os.rename(moved, supervisors.control)
    assert web_pid(supervisors) == pid
    assert "reload:" not in log_text(supervisors)


@needs_root
@needs_tools("groupadd", "groupdel")
def test_a_group_change_that_fails_midway_leaves_the_socket_as_it_was(
    open_dir: Path, new_group: Callable[[], tuple[str, int]]
) -> None:
    """A supervisor run by nobody, its socket 0660 for a group of nobody's; a reload
    names a group nobody is not in: the socket is narrowed to 0600, then the chown
    fails. It is given back its group and mode (its members kept their access), and
    the connections' rights are the old ones: the reload said "nothing changed"."""
    from daemonctx.supervisor.loop import EventLoop

    (members, member_gid), (others, _) = new_group(), new_group()
    home = open_dir / "nobody"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    path = str(home / "control.sock")

    def supervisor() -> None:
        loop = EventLoop()
        server = ControlServer(loop, path, lambda c, r: None, control_group=members)
        server.listen()
        before = os.stat(path)
        assert (before.st_gid, stat.S_IMODE(before.st_mode)) == (member_gid, 0o660)
        with pytest.raises(PermissionError):
            server.set_groups(others, None)
        after = os.stat(path)
        assert (after.st_gid, stat.S_IMODE(after.st_mode)) == (member_gid, 0o660)
        assert server.control_gid == member_gid

    with ForkedAs(NOBODY, [member_gid], supervisor) as child:
        child.finish()


@needs_root
def test_a_supervisor_run_as_a_user_on_another_user_s_pipe_starts_inherit_programs(
    supervisors: Supervisors, open_dir: Path
) -> None:
    """A container run as a user: the supervisor's stdout is a pipe the runtime
    (root) made, which the supervisor may not open again. A program whose stdout is
    "inherit" (the default) failed to start ("cannot use fd 1 ... Permission
    denied"); it writes the shared pipe now, and its lines come out there."""
    home = open_dir / "sup"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    probe = home / "probe.py"
    probe.write_text("")
    python = python_for_nobody(probe)
    read_end, write_end = os.pipe()  # root's: mode 0600
    try:
        proc = supervisors.popen(
            [python, "-m", "daemonctx", "supervise", "--control", str(home / "c.sock"),
             "--foreground", "--", "/bin/sh", "-c", "echo hello from web; exec sleep 1000"],
            env={**supervisors.env, "PYTHONPATH": str(READABLE_ROOT)},
            stdout=write_end, stderr=subprocess.PIPE,
            user=NOBODY, group=NOBODY, extra_groups=[], cwd=str(home),
        )  # fmt: skip
        os.close(write_end)
        write_end = -1
        out = b""
        deadline = time.monotonic() + 20
        while b"hello from web\n" not in out and time.monotonic() < deadline:
            if select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                out += chunk
        assert b"hello from web\n" in out, (out, proc.poll() is not None and proc.communicate())
        assert proc.poll() is None
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)
