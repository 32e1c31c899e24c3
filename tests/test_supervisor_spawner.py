"""supervisor.spawner: the thread with a descriptor table of its own that forks
programs once the supervisor holds many descriptors. Checked through
/proc/<pid>/task/<tid>/fd (the thread's own table), what the programs see and
write, and real supervisors. Every process is killed by pid at the end."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PROGRAMS,
    ProcessTracker,
    Supervisors,
    pid_alive,
    proc_stat,
    run_in_child,
    wait_for,
    wait_gone,
)

from daemonctx.supervisor.config import Program
from daemonctx.supervisor.spawn import reap, spawn
from daemonctx.supervisor.spawner import Spawner, SpawnerGone

pytestmark = pytest.mark.timeout(60)


def task_fds(tid: int) -> list[int]:
    return sorted(int(fd) for fd in os.listdir(f"/proc/self/task/{tid}/fd"))


def read_to_end(fd: int, timeout: float = 5) -> bytes:
    """Everything until EOF: every write end closed, the spawner's copy included."""
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no EOF after {timeout} s (a write end is still open): {data!r}"
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


@pytest.fixture
def many_fds() -> Iterator[list[int]]:
    """600 descriptors of ours, as a supervisor with 200 programs holds."""
    fds: list[int] = []
    try:
        for _ in range(300):
            fds.extend(os.pipe2(os.O_CLOEXEC))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def test_the_spawner_holds_almost_nothing_and_a_program_gets_0_1_2_only(
    many_fds: list[int], processes: ProcessTracker
) -> None:
    """Its table: /dev/null on 0-2 (no copy of our log) and its socket. The program's
    stdout reaches EOF when it exits: the spawner closed its copy of the pipe."""
    ours = set(os.listdir("/proc/self/fd"))
    with Spawner() as spawner:
        assert len(set(os.listdir("/proc/self/fd")) - ours) == 1, "its socket's other end"
        thread = spawner.thread
        assert thread is not None and thread.native_id is not None
        tid = thread.native_id
        assert len(task_fds(tid)) == 4, task_fds(tid)
        assert len(task_fds(threading.get_native_id())) > 600  # ours is untouched
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/self/task/{tid}/fd/{fd}") == "/dev/null"

        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            program = Program("p", ["sh", "-c", "ls /proc/self/fd; echo done >&2"])
            one = spawn(
                program,
                name="p",
                environment=dict(os.environ),
                stdout=write_fd,
                stderr=write_fd,
                death_signal=False,
                spawner=spawner,
            )
            processes.add(one.pid)
            os.close(write_fd)
            write_fd = -1
            # 3 is ls's own listing of the directory
            assert read_to_end(read_fd).decode().split() == ["0", "1", "2", "3", "done"]
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        wait_for(lambda: reap(one) is not None, what="the program's exit")
        assert one.status is not None and one.status.code == 0
        one.close()
        assert len(task_fds(tid)) == 4, "the spawner kept a descriptor it was given"
    wait_for(lambda: not os.path.exists(f"/proc/self/task/{tid}"), what="the thread to end")
    assert set(os.listdir("/proc/self/fd")) == ours


def test_a_failed_start_in_the_spawner_is_raised_here_and_leaks_nothing(
    many_fds: list[int], tmp_path: Path
) -> None:
    with Spawner() as spawner:
        thread = spawner.thread
        assert thread is not None and thread.native_id is not None
        before = task_fds(thread.native_id)
        ours = len(os.listdir("/proc/self/fd"))
        for program, number in (
            (Program("p", [str(tmp_path / "missing")]), errno.ENOENT),
            (Program("p", ["true"], directory=str(tmp_path / "gone")), errno.EAGAIN),  # retried
        ):
            with pytest.raises(OSError) as caught:
                spawn(program, name="p", environment={}, death_signal=False, spawner=spawner)
            assert caught.value.errno == number
        assert task_fds(thread.native_id) == before
        assert len(os.listdir("/proc/self/fd")) == ours


@pytest.mark.forked
def test_a_signal_the_kernel_gives_the_spawners_thread_still_wakes_the_loop() -> None:
    """A process-directed signal may be delivered to any thread that does not block
    it: the spawner's writes it to the wake-up fd at the same number, which it keeps
    (without, the supervisor misses it: the tgkill test below)."""
    reader, writer = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    signal.set_wakeup_fd(writer)
    with Spawner(keep=(writer,)) as spawner:
        thread = spawner.thread
        assert thread is not None and thread.ident is not None
        signal.pthread_kill(thread.ident, signal.SIGUSR1)
        assert select.select([reader], [], [], 5)[0], "no wake-up"
    assert os.read(reader, 10) == bytes([signal.SIGUSR1])


NO_UNSHARE = PROGRAMS / "no_unshare.py"

REFUSED = """
import os, threading
from daemonctx.supervisor.spawner import Spawner, SpawnerGone
fds, threads = sorted(os.listdir("/proc/self/fd")), threading.active_count()
spawner = Spawner()
try:
    spawner.start()
except OSError as exc:
    print(exc)
assert threading.active_count() == threads, "a thread is left"
assert sorted(os.listdir("/proc/self/fd")) == fds, "a descriptor is left"
try:
    spawner.run(lambda out, err: None, None, None)
except SpawnerGone as exc:
    print(exc)
"""


def test_where_unshare_is_refused_start_raises_and_leaves_no_thread() -> None:
    """Under a seccomp filter that refuses unshare (Docker's default profile may):
    ``start`` raises, no thread or descriptor is left, and ``run`` says it is closed.
    The supervisor then forks from its own thread (the test below)."""
    result = subprocess.run(
        [sys.executable, str(NO_UNSHARE), sys.executable, "-c", REFUSED],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode == 77:
        pytest.skip("no seccomp filter for this architecture in no_unshare.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[Errno 1] unshare(CLONE_FILES): Operation not permitted",
        "[Errno 9] the spawner is closed",
    ]


def test_a_spawner_whose_thread_ended_says_so_and_is_closed(processes: ProcessTracker) -> None:
    """The thread ends after a job (its socket closed under it): the job's result
    stands, since what it started runs; the next call raises SpawnerGone."""
    spawner = Spawner()
    spawner.start()
    thread = spawner.thread
    assert thread is not None
    theirs = spawner._theirs  # the thread's end, at this number in its table

    def start_then_break(out: int | None, err: int | None) -> subprocess.Popen[bytes]:
        popen = subprocess.Popen(["/bin/sleep", "1000"])
        os.close(theirs)
        return popen

    popen = spawner.run(start_then_break, None, None)
    processes.adopt(popen)
    assert popen.poll() is None
    assert spawner.thread is None
    wait_for(lambda: not thread.is_alive(), what="the thread to end")
    with pytest.raises(SpawnerGone, match="closed"):
        spawner.run(lambda out, err: None, None, None)


# -- in a supervisor -------------------------------------------------------------------

API_SUPERVISOR = """
import os, sys
from daemonctx.supervisor import core, spawner
core.SPAWNER_FROM = int(sys.argv[2])
if sys.argv[3] == "gone":  # before its first start, the thread's end of the socket closes
    run = spawner.Spawner.run
    def run_gone(self, job, stdout, stderr):
        run(self, lambda out, err: os.close(self._theirs), None, None)
        return run(self, job, stdout, stderr)
    spawner.Spawner.run = run_gone
sys.exit(core.Supervisor.from_config(sys.argv[1]).serve())
"""


def api_supervisor(supervisors: Supervisors, spawner_from: int, how: str) -> int:
    """A supervisor through the Python API, with SPAWNER_FROM set (``how``: "refuse"
    runs it under no_unshare.py); its pid once it answers."""
    config = str(supervisors.config_path)
    prefix = [sys.executable, str(NO_UNSHARE)] if how == "refuse" else []
    proc = supervisors.popen(
        [*prefix, sys.executable, "-c", API_SUPERVISOR, config, str(spawner_from), how],
        env=supervisors.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    supervisors.foreground_pid = proc.pid
    supervisors.wait_answering(proc)
    return proc.pid


def tasks(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def task_children(pid: int, tid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]


@pytest.mark.parametrize("how", ["spawner", "refuse", "gone"])
def test_a_supervisor_forks_from_its_spawner_or_from_its_loop_where_refused(
    supervisors: Supervisors, how: str
) -> None:
    """With its spawner; where unshare is refused (a real seccomp filter); when the
    spawner's thread ends at the first start (a bug): that start and the next come
    from the loop."""
    supervisors.config({"web": {"command": ["/bin/sleep", "1000"], "restart": "always"}})
    supervisor = api_supervisor(supervisors, 0, how)
    first = supervisors.wait_state("web", "running").pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: (info := supervisors.status("web")).running and info.pid != first and info.pid,
        what="the restart",
    )
    second = supervisors.status("web").pid
    assert second is not None
    others = [tid for tid in tasks(supervisor) if tid != supervisor]
    if how == "spawner":
        (spawner,) = others
        assert second in task_children(supervisor, spawner)
        # 0-2 on /dev/null, its socket, the signal wake-up fd
        assert len(os.listdir(f"/proc/{supervisor}/task/{spawner}/fd")) == 5
    else:
        wait_for(lambda: tasks(supervisor) == [supervisor], what="no other thread")
        assert second in task_children(supervisor, supervisor)
        log = supervisors.log.read_text()
        reason = "unshare(CLONE_FILES)" if how == "refuse" else "the spawner is closed"
        assert f"programs are forked from the loop's thread: {reason}" in log
    wait_for(lambda: sorted(os.listdir(f"/proc/{second}/fd")) == ["0", "1", "2"], what="0-2")
    stopped = supervisors.ctl("stop", "web")
    assert stopped.returncode == 0, stopped
    wait_gone(second, 5)


def forks(path: Path, run: int) -> dict[str, int] | None:
    """What sup_double_fork.py wrote in its run ``run`` (from 0): role -> pid, once
    its three processes have."""
    found = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    mine = found[3 * run : 3 * run + 3]
    return {role: int(pid) for role, pid in mine} if len(mine) == 3 else None


def test_with_the_spawner_a_crashed_runs_orphan_dies_and_the_next_runs_lives(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Orphans are adopted by the loop's thread, the new leaders are children of the
    spawner's: the escaped daemon of the run that crashed is found and killed, the
    one of the run that replaced it is left alone."""
    path = tmp_path / "forks.txt"
    program = [sys.executable, str(PROGRAMS / "sup_double_fork.py"), str(path)]
    supervisors.config({"forker": {"command": program, "restart": "always"}})
    supervisor = api_supervisor(supervisors, 0, "spawner")
    first = wait_for(lambda: forks(path, 0), what="the first run")
    grandchild = first["grandchild"]
    wait_for(lambda: int(proc_stat(grandchild)[1]) == supervisor, what="its adoption")
    assert grandchild in task_children(supervisor, supervisor), "adopted by the loop's thread"

    os.kill(first["leader"], signal.SIGKILL)
    wait_gone(grandchild, 5)
    second = wait_for(lambda: forks(path, 1), what="the second run")
    assert supervisors.wait_state("forker", "running").pid == second["leader"]
    (spawner,) = [tid for tid in tasks(supervisor) if tid != supervisor]
    assert second["leader"] in task_children(supervisor, spawner)
    wait_for(lambda: int(proc_stat(second["grandchild"])[1]) == supervisor, what="its adoption")
    assert pid_alive(second["grandchild"])


def test_a_signal_sent_to_the_spawners_thread_reaches_the_supervisor(
    supervisors: Supervisors,
) -> None:
    """tgkill() to the spawner's thread: SIGTERM must still stop the supervisor."""
    import ctypes

    supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
    supervisor = api_supervisor(supervisors, 0, "spawner")
    program = supervisors.wait_state("web", "running").pid
    (spawner,) = [tid for tid in tasks(supervisor) if tid != supervisor]
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(supervisor, spawner, signal.SIGTERM) == 0, ctypes.get_errno()
    wait_gone(program, 10)
    wait_gone(supervisor, 10)
    assert "SIGTERM: shutting down" in supervisors.log.read_text()


def test_daemonctx_supervise_with_150_programs_forks_them_from_its_spawner(
    supervisors: Supervisors,
) -> None:
    """150 programs hold some 450 descriptors, past SPAWNER_FROM: the supervisor
    starts its spawner on the way, and a restart comes from it."""
    programs = {
        f"p{index:03}": {"command": ["/bin/sleep", "1000"], "stdout": "null", "stderr": "null"}
        for index in range(150)
    }
    programs["p149"]["restart"] = "always"
    supervisors.config(programs)
    supervisor = supervisors.foreground().pid
    (spawner,) = [tid for tid in tasks(supervisor) if tid != supervisor]
    assert len(os.listdir(f"/proc/{supervisor}/task/{spawner}/fd")) == 5
    assert len(os.listdir(f"/proc/{supervisor}/fd")) > 384
    first = supervisors.status("p149").pid
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (info := supervisors.status("p149")).running and info.pid != first and info.pid,
        what="the restart",
    )
    assert second in task_children(supervisor, spawner)
    wait_for(lambda: sorted(os.listdir(f"/proc/{second}/fd")) == ["0", "1", "2"], what="0-2")


@pytest.mark.parametrize("kind", ["flock", "lockf"])
def test_the_spawner_closing_its_copies_drops_no_lock_of_ours(tmp_path: Path, kind: str) -> None:
    """An application's POSIX lock (SQLite takes them) is dropped when its process
    closes any descriptor of the file: not when the spawner closes its copy, whose
    table is another owner. Nor an flock (the control socket's, a pidfile's)."""
    import fcntl

    path = tmp_path / "locked"
    call = "flock" if kind == "flock" else "lockf"
    probe = (
        f"import fcntl\nf = open({str(path)!r}, 'w')\n"
        f"try:\n    fcntl.{call}(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError:\n    print('held')"
    )

    def held() -> bool:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        return out.stdout.strip() == "held"

    with open(path, "w") as f:
        if kind == "flock":
            fcntl.flock(f, fcntl.LOCK_EX)
        else:
            fcntl.lockf(f, fcntl.LOCK_EX)
        assert held()
        with Spawner() as spawner:
            thread = spawner.thread
            assert thread is not None and thread.native_id is not None
            assert f.fileno() not in task_fds(thread.native_id)  # its copy is closed
            assert held()
        assert held()


def test_a_spawner_whose_thread_cannot_start_raises_oserror_and_leaves_nothing_open(
    pids_cgroup: Path,
) -> None:
    """A pids cgroup at its limit: ``Thread.start`` raised RuntimeError ("can't start
    new thread"), which the supervisor took for an internal error (its start left
    "starting" for good), and the socket pair stayed open. Now ``start`` raises
    OSError (EAGAIN), the supervisor's cue to fork from the loop's thread."""

    def in_the_group() -> None:
        (pids_cgroup / "cgroup.procs").write_text(str(os.getpid()))
        (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text())
        before = sorted(os.listdir("/proc/self/fd"))
        spawner = Spawner()
        with pytest.raises(OSError) as raised:
            spawner.start()
        assert raised.value.errno == errno.EAGAIN, raised.value
        assert "cannot start the spawner thread" in str(raised.value)
        assert sorted(os.listdir("/proc/self/fd")) == before
        spawner.close()

    run_in_child(in_the_group)
