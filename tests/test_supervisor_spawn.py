"""supervisor.spawn: starting a program instance, checked from outside through
/proc, pidfds and what the program writes. Real processes, each killed at the end.
The tests that take ``via`` run twice: forked from this thread, and from a
spawner thread with a descriptor table of its own (spawner.py)."""

from __future__ import annotations

import errno
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    ENV,
    NOBODY,
    ProcessTracker,
    Supervisors,
    needs_root,
    proc_stat,
    proc_status,
    run_in_child,
    uid_without_passwd_entry,
    wait_for,
    wait_gone,
)

from daemonctx import procfs
from daemonctx.supervisor.config import Program
from daemonctx.supervisor.spawn import (
    Spawned,
    SpawnError,
    exited,
    reap,
    set_child_subreaper,
    signal_group,
    spawn,
)
from daemonctx.supervisor.spawner import Spawner
from daemonctx.supervisor.state import ExitStatus

pytestmark = pytest.mark.timeout(30)


class Started(list):  # type: ignore[type-arg]
    """The instances a test started, and the spawner they were started through."""

    spawner: Spawner | None = None


@pytest.fixture(params=["loop", "spawner"])
def via(request: pytest.FixtureRequest) -> Iterator[Spawner | None]:
    """None (fork from this thread), or a started Spawner, closed at the end."""
    if request.param == "loop":
        yield None
        return
    with Spawner() as spawner:  # its task's end is waited for by conftest's threads_ended
        yield spawner


@pytest.fixture
def started(processes: ProcessTracker, via: Spawner | None) -> Iterator[list[Spawned]]:
    """Spawned instances: killed (by the tracker, through their Popen), reaped, pidfds closed."""
    spawned = Started()
    spawned.spawner = via
    try:
        yield spawned
    finally:
        for one in spawned:
            if not one.reaped:
                processes.adopt(one.popen)
        processes.kill_all()
        for one in spawned:
            one.close()


def start(started: list[Spawned], program: Program, **options: object) -> Spawned:
    options.setdefault("environment", dict(os.environ))
    options.setdefault("spawner", getattr(started, "spawner", None))
    one = spawn(program, name=program.name, **options)  # type: ignore[arg-type]
    started.append(one)
    return one


def read_lines(fd: int, count: int, timeout: float = 5) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no output after {timeout} s: {data!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"output ended: {data!r}"
        data += chunk
    return data.decode().splitlines()


def exec_done(pid: int, comm: str = "sleep") -> bool:
    return Path(f"/proc/{pid}/comm").read_text().strip() == comm


@pytest.fixture
def odd_signals() -> Iterator[None]:
    """The supervisor ignores SIGHUP and blocks SIGUSR1: its programs must not inherit that."""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGHUP, old)


@pytest.mark.usefixtures("odd_signals")
@pytest.mark.parametrize("death_signal", [True, False])
def test_environment_directory_session_fds_signals(
    started: list[Spawned], tmp_path: Path, death_signal: bool
) -> None:
    """Without a death signal too (the fast spawn, without preexec_fn), an ignored
    or blocked signal of ours is not passed on."""
    script = "echo $FOO $NOTIFY_SOCKET; pwd; exec sleep 1000"
    program = Program(
        "web", ["sh", "-c", script], directory=str(tmp_path), environment={"FOO": "bar"}
    )
    read_fd, write_fd = os.pipe()
    try:
        environment = {**os.environ, "NOTIFY_SOCKET": "/inherited", "FOO": "ours"}
        one = start(
            started,
            program,
            environment=environment,
            notify_socket="/run/n.sock",
            stdout=write_fd,
            death_signal=death_signal,
        )
        os.close(write_fd)
        write_fd = -1
        assert read_lines(read_fd, 2) == ["bar /run/n.sock", str(tmp_path)]
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    pid = one.pid
    wait_for(lambda: exec_done(pid), what="exec sleep")
    assert one.name == "web" and one.popen.pid == pid
    stat = proc_stat(pid)
    assert (int(stat[2]), int(stat[3])) == (pid, pid)  # its own process group and session
    # sh's close-on-exec fds go at the end of its exec, and sleep itself opens its
    # locale for a moment: wait until only 0-2 are left (a leaked fd never would go)
    listed = lambda: sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))  # noqa: E731
    wait_for(lambda: listed() == [0, 1, 2], what="only fds 0, 1 and 2")
    assert os.readlink(f"/proc/{pid}/fd/0") == os.readlink(f"/proc/{pid}/fd/2") == "/dev/null"
    status = proc_status(pid)
    assert int(status["SigBlk"], 16) == 0
    assert int(status["SigIgn"], 16) == 0  # SIGHUP, SIGPIPE, SIGXFSZ: default
    assert not exited(one) and reap(one) is None


def test_inherited_notify_socket_removed(started: list[Spawned]) -> None:
    program = Program("p", ["sh", "-c", 'echo "[$NOTIFY_SOCKET]"; exec sleep 1000'])
    read_fd, write_fd = os.pipe()
    try:
        environment = {**os.environ, "NOTIFY_SOCKET": "/inherited"}
        start(started, program, environment=environment, stdout=write_fd)
        assert read_lines(read_fd, 1) == ["[]"]
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _failure(
    tmp_path: Path, name: str, content: bytes | None, mode: int, via: Spawner | None
) -> SpawnError:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    with pytest.raises(SpawnError) as caught:
        spawn(Program("p", [str(path)]), name="p", environment=dict(os.environ), spawner=via)
    return caught.value


@pytest.mark.parametrize(
    ("content", "mode", "number"),
    [
        (None, 0, errno.ENOENT),
        (b"#!/bin/sh\nexit 0\n", 0o644, errno.EACCES),
        (b"\x7fgarbage\x00\x01\x02 not a program\n", 0o755, errno.ENOEXEC),
    ],
    ids=["ENOENT", "EACCES", "ENOEXEC"],
)
def test_exec_failures(
    tmp_path: Path, content: bytes | None, mode: int, number: int, via: Spawner | None
) -> None:
    error = _failure(tmp_path, "x", content, mode, via)
    assert error.errno == number
    assert error.message == f"{tmp_path / 'x'}: {os.strerror(number)}"
    assert str(error) == error.message


def test_missing_directory(tmp_path: Path, via: Spawner | None) -> None:
    missing = tmp_path / "gone"
    program = Program("p", ["true"], directory=str(missing))
    with pytest.raises(SpawnError) as caught:
        spawn(program, name="p", environment=dict(os.environ), spawner=via)
    assert caught.value.errno == errno.EAGAIN  # retried with the backoff: it may come back
    assert caught.value.message == f"directory {missing}: No such file or directory"
    assert caught.value.doing == "change to"  # "cannot change to directory ...: ..."


def test_unknown_user() -> None:
    program = Program("p", ["true"], user="no-such-user-daemonctx")
    with pytest.raises(SpawnError) as caught:
        spawn(program, name="p", environment=dict(os.environ))
    assert caught.value.errno == errno.ENOENT
    assert caught.value.message == "true: no such user 'no-such-user-daemonctx'"


@needs_root
def test_user_nobody(started: list[Spawned]) -> None:
    import pwd

    entry = pwd.getpwnam("nobody")
    program = Program(
        "p", ["sh", "-c", "echo $USER $LOGNAME $HOME; exec sleep 1000"], user="nobody"
    )
    read_fd, write_fd = os.pipe()
    try:
        one = start(started, program, stdout=write_fd)
        assert read_lines(read_fd, 1) == [f"nobody nobody {entry.pw_dir}"]
    finally:
        os.close(read_fd)
        os.close(write_fd)
    wait_for(lambda: exec_done(one.pid), what="exec sleep")
    status = proc_status(one.pid)
    assert status["Uid"].split() == [str(entry.pw_uid)] * 4
    assert status["Gid"].split() == [str(entry.pw_gid)] * 4
    groups = {int(group) for group in status["Groups"].split()}
    assert groups == set(os.getgrouplist("nobody", entry.pw_gid))


@needs_root
def test_a_user_id_without_a_passwd_entry_runs_only_with_a_group(
    started: list[Spawned],
) -> None:
    """Its entry may go after the checks before the start: a root supervisor still
    does not give it the group of the same number (27, sudo), and starts nothing."""
    uid = uid_without_passwd_entry()
    with pytest.raises(SpawnError) as caught:
        start(started, Program("p", ["sleep", "1000"], user=str(uid)))
    assert caught.value.errno == errno.ENOENT  # failed, not retried: as "no such user"
    assert caught.value.message == (
        f"sleep: user '{uid}' has no passwd entry to take the group from: set group too"
    )
    assert started == []  # refused before the fork
    one = start(started, Program("p", ["sleep", "1000"], user=str(uid), group=str(NOBODY)))
    wait_for(lambda: exec_done(one.pid), what="exec sleep")
    status = proc_status(one.pid)
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split() == [str(NOBODY)] * 4
    assert status["Groups"] == ""


@needs_root
def test_group_only_drops_supplementary_groups(started: list[Spawned]) -> None:
    one = start(started, Program("p", ["sleep", "1000"], group=str(NOBODY)))
    wait_for(lambda: exec_done(one.pid), what="exec sleep")
    status = proc_status(one.pid)
    assert status["Uid"].split()[0] == str(os.getuid())
    assert status["Gid"].split() == [str(NOBODY)] * 4
    assert status["Groups"] == ""


# The intermediate supervisor: spawns sleep (as USER), prints its pid, waits to be killed.
INTERMEDIATE = """
import os, sys, time
from daemonctx.supervisor.config import Program
from daemonctx.supervisor.spawn import spawn
from daemonctx.supervisor.spawner import Spawner
user, death_signal = sys.argv[1] or None, sys.argv[2] == "death"
spawner = Spawner() if sys.argv[3] == "spawner" else None
if spawner is not None:
    spawner.start()  # the program's parent is then this thread: it must die with it
program = Program("p", ["sleep", "1000"], user=user)
one = spawn(
    program, name="p", environment=dict(os.environ), death_signal=death_signal, spawner=spawner
)
print(one.pid, flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize(
    ("user", "death"),
    [pytest.param("nobody", "death", marks=needs_root), ("", "death"), ("", "")],
)
@pytest.mark.parametrize("where", ["loop", "spawner"])
def test_dies_with_the_supervisor(
    processes: ProcessTracker, user: str, death: str, where: str
) -> None:
    """With death_signal (the default), the program dies with the thread that
    started it (the spawner's, with one); without (the supervisor's guard does
    that job), it runs on."""
    intermediate = processes.popen(
        [sys.executable, "-c", INTERMEDIATE, user, death, where], stdout=subprocess.PIPE, env=ENV
    )
    assert intermediate.stdout is not None
    line = intermediate.stdout.readline()
    child = processes.add(int(line))
    wait_for(lambda: exec_done(child), what="exec sleep")
    if user:
        assert proc_status(child)["Uid"].split()[0] == str(NOBODY)
    intermediate.kill()
    intermediate.wait(5)
    if death:
        wait_gone(child, 5)
        return
    pidfd = os.pidfd_open(child)
    try:  # a death signal would have been sent as the intermediate exited
        assert not select.select([pidfd], [], [], 1.0)[0], "the program died with its parent"
    finally:
        os.close(pidfd)


def test_signal_group_kills_the_group(started: list[Spawned], processes: ProcessTracker) -> None:
    one = start(started, Program("p", ["sh", "-c", "sleep 1000 & wait"]))
    children = Path(f"/proc/{one.pid}/task/{one.pid}/children")
    grandchild = int(wait_for(lambda: children.read_text().split(), what="sleep forked")[0])
    processes.add(grandchild)
    wait_for(lambda: exec_done(grandchild), what="exec sleep")
    assert int(proc_stat(grandchild)[2]) == one.pid
    assert not exited(one) and reap(one) is None
    signal_group(one, signal.SIGTERM)
    wait_gone(grandchild, 5)
    wait_for(lambda: exited(one), timeout=5, what="leader exited")
    assert os.path.exists(f"/proc/{one.pid}")  # exited, not reaped
    status = reap(one)
    assert status == ExitStatus(signal=signal.SIGTERM)
    assert reap(one) == status and one.popen.returncode == -signal.SIGTERM
    assert not os.path.exists(f"/proc/{one.pid}")
    with pytest.raises(RuntimeError, match="reaped"):
        signal_group(one, signal.SIGTERM)


def test_reap_exit_code(started: list[Spawned]) -> None:
    one = start(started, Program("p", ["sh", "-c", "exit 3"]))
    wait_for(lambda: exited(one), timeout=5, what="exit")
    assert reap(one) == ExitStatus(code=3)


def test_children_are_listed_in_the_order_they_became_ours() -> None:
    """An orphan adopted after a fork is listed after that child, though its pid
    is the lower: the supervisor kills a run's escaped descendants after the next
    run's spawn, and spares those adopted since (core._escaped relies on this)."""

    def adopt_after_a_fork() -> None:
        set_child_subreaper()
        hold_read, hold_write = os.pipe()  # the orphan and the later child: EOF ends them
        told_read, told_write = os.pipe()  # the orphan's pid, from the middle process
        go_read, go_write = os.pipe()  # tells the middle process to exit
        middle = os.fork()
        if middle == 0:
            orphan = os.fork()
            if orphan == 0:
                os.close(hold_write)
                os.read(hold_read, 1)
                os._exit(0)
            os.write(told_write, str(orphan).encode())
            os.read(go_read, 1)
            os._exit(0)
        orphan = int(os.read(told_read, 100))
        later = os.fork()
        if later == 0:
            os.close(hold_write)
            os.read(hold_read, 1)
            os._exit(0)
        try:
            os.write(go_write, b"x")
            os.waitpid(middle, 0)  # it has exited: its child is ours since
            assert int(proc_stat(orphan)[1]) == os.getpid()
            # (orphan < later but at a wrap of the pids: not by pid, then)
            assert procfs.children(os.getpid()) == [later, orphan]
        finally:
            for pid in (later, orphan):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)

    run_in_child(adopt_after_a_fork)


def test_set_child_subreaper() -> None:
    def adopt_orphan() -> None:
        set_child_subreaper()
        read_fd, write_fd = os.pipe()
        middle = os.fork()
        if middle == 0:
            orphan = os.fork()
            if orphan == 0:
                os._exit(7)
            os.write(write_fd, str(orphan).encode())
            os._exit(0)
        os.close(write_fd)
        orphan = int(os.read(read_fd, 100))
        os.waitpid(middle, 0)
        pid, status = os.waitpid(orphan, 0)  # ours now: only a subreaper may wait for it
        assert pid == orphan and os.waitstatus_to_exitcode(status) == 7

    run_in_child(adopt_orphan)


def test_the_c_library_s_own_signals_are_not_taken_for_ignored_ones() -> None:
    """glibc's posix_spawn (how Python 3.13's subprocess starts most processes)
    leaves signals 32 and 33, the C library's own, ignored in its child. They are
    not ignored signals to reset in each program: taken for such, every start of
    a supervisor started that way took the slow spawn (a full fork)."""
    code = (
        "from daemonctx.supervisor.spawn import ignored_signals\n"
        "mask = [l for l in open('/proc/self/status') if l.startswith('SigIgn:')][0]\n"
        "print(int(mask.split()[1], 16) >> 31 & 1, ignored_signals())\n"
    )
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", code],
            {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
            file_actions=[(os.POSIX_SPAWN_DUP2, write_end, 1)],
        )
    finally:
        os.close(write_end)
    try:
        with os.fdopen(read_end) as out:
            libc_ignored, ignored = out.read().split(" ", 1)
    finally:
        os.waitpid(pid, 0)
    if libc_ignored != "1":
        pytest.skip("this C library's posix_spawn leaves signal 32 as it was")
    # (a suite run as a background job ignores SIGINT and SIGQUIT too: those count)
    numbers = {int(n) for n in ignored.strip(" []\n").split(",") if n.strip()}
    assert not numbers & {32, 33}, ignored


def test_a_detached_supervisor_forks_its_slow_spawns_from_its_spawner_thread(
    supervisors: Supervisors,
) -> None:
    """Past SPAWNER_FROM descriptors programs are forked from the spawner thread,
    whose descriptor table is its own. A program with ``nice`` takes the slow
    spawn (a full fork, which runs Python's at-fork hooks): in a detached
    supervisor, the start-up pipe's hook closed that descriptor's number in the
    child, another file in the spawner's table, and the 128th program failed
    ("Bad file descriptor"). Every one of them starts."""
    count = 140  # about 3 descriptors a program: past SPAWNER_FROM (384)
    sleep = shutil.which("sleep") or "/bin/sleep"
    supervisors.config({f"p{i}": {"command": [sleep, "1000"], "nice": 1} for i in range(count)})
    result = supervisors.supervise(timeout=60)
    assert result.returncode == 0, result.stderr
    with supervisors.client() as client:
        infos = client.status()
        assert [info.state for info in infos] == ["running"] * count
        pid = infos[-1].pid
        assert Path(f"/proc/{pid}/stat").read_text().split()[18] == "1", "its nice"
        client.shutdown(wait=True)
