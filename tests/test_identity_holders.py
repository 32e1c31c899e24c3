"""Finding the processes that hold a pidfile's lock where /proc/locks falls short,
and not taking another user's lock for the daemon's. As root, on real processes.

- In a pid namespace (a container), once the process that took the lock has
  exited and been reaped, /proc/locks no longer lists the lock: its holders are
  found through every process's fdinfo all the same.
- A pidfile whose whole directory was removed is still found in /proc/<pid>/fd.
- Another user's process that locks a file of its own at the pidfile's path,
  then deletes it, is not the daemon: not reported, never signalled.
- In a pid namespace whose /proc is another's (``unshare --pid --fork`` without
  ``--mount-proc``), pids in /proc name other processes: nothing is told from
  them, nobody is signalled, and a stop never outlives its last step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    ENV,
    NOBODY,
    NOBODY_ENV,
    PROGRAMS,
    ROOT,
    UNSHARE_PID,
    Tracker,
    kill,
    needs_pid_namespace,
    needs_root,
    needs_tools,
    pid_alive,
    proc_status,
    python_for_nobody,
    wait_for,
)

from daemonctx import identity, procfs
from daemonctx.identity import Found

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


class Namespace:
    """A pid namespace with /proc of its own, whose PID 1 reaps every orphan at once
    (as tini or bash does in a container). Commands run in it through nsenter."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.unshare = tracker.popen(
            [*UNSHARE_PID, sys.executable, str(PROGRAMS / "reaper.py"), "sleep", "infinity"],
            env=ENV,  # no token: tracker.processes() are those run in it
        )
        found = wait_for(lambda: procfs.children(self.unshare.pid), what="the namespace's PID 1")
        self.init = tracker.add(found[0])  # killing it ends every process in the namespace
        wait_for(lambda: procfs.children(self.init), what="PID 1's command")
        self.prefix = ["nsenter", "-t", str(self.init), "-p", "-m", "--"]

    def daemonctx(self, *args: str) -> tuple[int, str, str]:
        result = self.tracker.daemonctx(*args, prefix=self.prefix)
        return result.returncode, result.stdout, result.stderr

    def host_pid(self, pid: int) -> int:
        """The pid outside of the namespace's process ``pid`` (one of the tracker's).
        Waited for: a process in the middle of an exec (``sh -c "...; exec sleep"``)
        shows an empty environ for a moment, and so no token."""
        found = wait_for(
            lambda: [p for p in self.tracker.processes() if self.inner(p) == pid],
            what=f"the namespace's pid {pid}",
        )
        assert len(found) == 1, (pid, found)
        return int(found[0])

    @staticmethod
    def inner(host_pid: int) -> int:
        return int(proc_status(host_pid)["NSpid"].split()[-1])

    def locks(self) -> str:
        """/proc/locks as the namespace sees it."""
        return Path(f"/proc/{self.init}/root/proc/locks").read_text()


@pytest.fixture
def namespace(tracker: Tracker) -> Namespace:
    return Namespace(tracker)


def unlisted(namespace: Namespace, key: tuple[int, int, int]) -> bool:
    """Whether the namespace's /proc/locks leaves out the lock on ``key``."""
    named = f"{key[0]:02x}:{key[1]:02x}:{key[2]}"
    return not any(named in line.split() for line in namespace.locks().splitlines())


def start_with_a_child(namespace: Namespace, pidfile: str) -> tuple[int, int]:
    """``daemonctx start`` in the namespace of a program whose child inherits the
    lock: (main, child), as host pids."""
    code, _out, err = namespace.daemonctx(
        "start", "--pidfile", pidfile, "--", "sh", "-c", "sleep 1000 & exec sleep 1001"
    )
    assert code == 0, err
    main = namespace.host_pid(int(Path(pidfile).read_text()))
    (child,) = wait_for(
        lambda: [p for p in namespace.tracker.processes() if command(p) == ("sleep", "1000")],
        what="the child",
    )
    return main, child


def command(pid: int) -> tuple[str, ...]:
    return procfs.process_command(pid) or ()


# -- a pid namespace: the lock's taker reaped, its line gone from /proc/locks -----------


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_in_a_pid_namespace_a_host_daemons_lock_is_said_to_be_outside_it(
    tracker: Tracker, namespace: Namespace
) -> None:
    """Root in a container with its own /proc cannot see the host's daemon: stop and
    signal refuse, and say why (not a permission: the holder is outside)."""
    program = tracker.start("sleep", "1000")
    error = (
        f"daemonctx: error: {tracker.pidfile} is locked by a process outside this pid namespace\n"
    )
    assert namespace.daemonctx("stop", "--pidfile", tracker.pidfile) == (4, "", error)
    assert namespace.daemonctx("signal", "--pidfile", tracker.pidfile, "HUP") == (4, "", error)
    assert pid_alive(program)


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_in_a_pid_namespace_a_child_that_kept_the_lock_is_found_and_stopped(
    tracker: Tracker, namespace: Namespace
) -> None:
    main, child = start_with_a_child(namespace, tracker.pidfile)
    key = procfs.file_key(os.stat(tracker.pidfile))
    recorded = namespace.inner(main)
    kill(main)  # SIGKILL, then PID 1 reaps it
    assert unlisted(namespace, key), "the kernel cannot name a reaped taker in a namespace"

    inner = namespace.inner(child)
    leftover = f"app (pid {recorded}) exited; pid {inner} still holds its lock"
    assert namespace.daemonctx("status", "--pidfile", tracker.pidfile) == (1, leftover + "\n", "")
    assert namespace.daemonctx("start", "--pidfile", tracker.pidfile, "--", "sleep", "1") == (
        1,
        "",
        f"daemonctx: error: {leftover}; stop it first\n",
    )
    code, out, err = namespace.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert (code, err) == (0, "")
    assert out.startswith(f"stopped pid {inner}, which still held its lock (app itself had exited)")
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_a_daemon_started_in_a_pid_namespace_is_found_from_outside(
    tracker: Tracker, namespace: Namespace
) -> None:
    """Its pidfile names it by its pid in the container; the host sees it by another:
    status, signal and stop from the host know it by the pid the holder has there."""
    code, _out, err = namespace.daemonctx(
        "start", "--pidfile", tracker.pidfile, "--", "sleep", "1000"
    )
    assert code == 0, err
    inside = int(Path(tracker.pidfile).read_text())
    daemon = namespace.host_pid(inside)
    assert daemon != inside
    result = tracker.daemonctx("status", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"app is running (pid {daemon},")
    result = tracker.daemonctx("signal", "--pidfile", tracker.pidfile, "CONT")
    assert (result.returncode, result.stdout) == (0, f"sent SIGCONT to app (pid {daemon})\n")
    result = tracker.daemonctx("stop", "--pidfile", tracker.pidfile)
    assert result.returncode == 0 and result.stdout.startswith(f"stopped app (pid {daemon})")
    assert not pid_alive(daemon) and tracker.processes() == []


STOP_AFTER_THE_REAP = """
import json, os, sys
sys.path[:0] = [{root!r}, {tests!r}]
from conftest import wait_reaped
from daemonctx import control, identity

pidfile, main = sys.argv[1], int(sys.argv[2])
current_holders = identity._current_holders

def once_pid_1_reaped_the_daemon(*args):
    wait_reaped(main)  # PID 1 is quicker than this stop: the lock's line is gone
    return current_holders(*args)

identity._current_holders = once_pid_1_reaped_the_daemon
done = control.stop(pidfile, timeout=10)
print(json.dumps({{"pid": done.pid, "others": done.others, "exited": done.exited}}))
"""


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_in_a_pid_namespace_stop_outlasts_pid_1_reaping_the_daemon(
    tracker: Tracker, namespace: Namespace
) -> None:
    """The race of a stop in a container: the daemon exits on SIGTERM, PID 1 reaps
    it before stop looks for what still holds the lock. The child holding it is
    stopped too: after stop exits 0, no process holds the lock."""
    main, child = start_with_a_child(namespace, tracker.pidfile)
    code = STOP_AFTER_THE_REAP.format(root=str(ROOT), tests=str(ROOT / "tests"))
    inner, kept = namespace.inner(main), namespace.inner(child)
    result = subprocess.run(
        [*namespace.prefix, sys.executable, "-c", code, tracker.pidfile, str(inner)],
        capture_output=True,
        text=True,
        env=tracker.env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done == {"pid": inner, "others": [kept], "exited": True}
    assert tracker.processes() == [], "nothing holds the lock after stop returned"
    assert not os.path.exists(tracker.pidfile)


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_in_a_pid_namespace_a_deleted_pidfile_kept_by_a_child_is_found(
    tracker: Tracker, namespace: Namespace
) -> None:
    """Both names of the pidfile gone (its directory removed) and its taker reaped:
    nothing in /proc/locks, and no name to flock; the child is found by its fds."""
    run = tracker.tmp_path / "run"
    run.mkdir()
    pidfile = str(run / "app.pid")
    main, child = start_with_a_child(namespace, pidfile)
    recorded = namespace.inner(main)
    key = procfs.file_key(os.stat(pidfile))
    shutil.rmtree(run)
    kill(main)
    assert unlisted(namespace, key)

    inner = namespace.inner(child)
    leftover = f"app (pid {recorded}) exited; pid {inner} still holds its lock"
    assert namespace.daemonctx("status", "--pidfile", pidfile) == (1, leftover + "\n", "")
    code, out, err = namespace.daemonctx("stop", "--pidfile", pidfile)
    assert (code, err) == (0, "")
    assert out.startswith(f"stopped pid {inner}, which still held its lock")
    assert tracker.processes() == []


# -- the pidfile's directory removed ------------------------------------------------------


def test_a_daemon_whose_pidfile_directory_was_removed_is_running_and_stopped(
    tracker: Tracker,
) -> None:
    """A whole RuntimeDirectory= removed under a running daemon."""
    run = tracker.tmp_path / "run"
    run.mkdir()
    pidfile = str(run / "app.pid")
    pid = start_in(tracker, pidfile)
    shutil.rmtree(run)
    result = tracker.daemonctx("status", "--pidfile", pidfile)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"app is running (pid {pid}")
    assert result.stdout.endswith(f"; its pidfile {pidfile} was deleted or replaced\n")
    result = tracker.daemonctx("stop", "--pidfile", pidfile)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"stopped app (pid {pid}) in ")
    assert tracker.processes() == []
    assert tracker.daemonctx("status", "--pidfile", pidfile).returncode == 3


def start_in(tracker: Tracker, pidfile: str) -> int:
    result = tracker.daemonctx("start", "--pidfile", pidfile, "--", "sleep", "1000")
    assert result.returncode == 0, result.stderr
    return int(Path(pidfile).read_text())


# -- another user's lock on a deleted file of theirs at the path -----------------------

# nobody locks a file of its own at the path, deletes it, and keeps the lock on fd 7:
# in the process that took it (exec'd into sleep), or in a child once it has exited
NOBODYS_LOCK = """
import fcntl, os, subprocess, sys
path, how = sys.argv[1:]
fcntl.flock(os.dup2(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), 7), fcntl.LOCK_EX)
os.unlink(path)
print("locked", flush=True)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
if how == "its locker holds it":
    os.execvp("sleep", ["sleep", "1000"])
subprocess.Popen(["sleep", "1000"], pass_fds=[7])
"""
HOW = ["its locker holds it", "a child holds it"]


def lock_as_nobody(tracker: Tracker, path: str, how: str, prefix: list[str]) -> None:
    python = python_for_nobody()
    holder = tracker.popen(
        [*prefix, *AS_NOBODY, python, "-c", NOBODYS_LOCK, path, how],
        stdout=subprocess.PIPE,
        env=tracker.env,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"locked\n"
    if how == "a child holds it":
        assert holder.wait(30) == 0, "its locker exited"


def nobodys_sleep(tracker: Tracker) -> int:
    (pid,) = wait_for(
        lambda: [
            p
            for p in tracker.processes()
            if command(p) == ("sleep", "1000") and proc_owner(p) == NOBODY
        ],
        what="nobody's holder",
    )
    return int(pid)


def proc_owner(pid: int) -> int:
    return int(proc_status(pid)["Uid"].split()[1])


@needs_root
@needs_tools("setpriv")
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "where",
    ["host", pytest.param("namespace", marks=[needs_pid_namespace, needs_tools("nsenter")])],
)
def test_another_users_deleted_file_at_the_path_is_not_the_daemon(
    tracker: Tracker, shared_dir: Path, request: pytest.FixtureRequest, how: str, where: str
) -> None:
    """In sticky /tmp anyone may lock a file of their own at the pidfile's path and
    delete it: root's status, start and stop must not take its holder for the daemon."""
    prefix: list[str] = []
    if where == "namespace":
        prefix = request.getfixturevalue("namespace").prefix
    path = str(shared_dir / "app.pid")
    lock_as_nobody(tracker, path, how, prefix)
    stranger = nobodys_sleep(tracker)
    assert any(link == f"{path} (deleted)" for link in fd_links(stranger))

    def daemonctx(*args: str) -> tuple[int, str, str]:
        result = tracker.daemonctx(*args, prefix=prefix)
        return result.returncode, result.stdout, result.stderr

    assert daemonctx("status", "--pidfile", path) == (3, "app is not running\n", "")
    assert daemonctx("stop", "--pidfile", path) == (0, "app is not running\n", "")
    assert pid_alive(stranger)
    code, out, err = daemonctx("start", "--pidfile", path, "--", "sleep", "1001")
    assert (code, err) == (0, ""), out
    pid = out.split("(pid ")[1].split(")")[0]
    code, out, err = daemonctx("stop", "--pidfile", path)
    assert (code, err) == (0, "") and out.startswith(f"stopped app (pid {pid}) in "), out
    assert pid_alive(stranger), "nobody's process was never signalled"
    assert not os.path.exists(path)


def fd_links(pid: int) -> list[str]:
    links = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
    return links


@needs_root
@needs_tools("setpriv")
@pytest.mark.timeout(20)  # a stop that kept finding a holder it may not pin never ended
def test_stop_pins_and_signals_no_holder_of_another_users_file(
    tracker: Tracker, shared_dir: Path
) -> None:
    """``stop_daemon`` checks, on the pinned process, the very file it holds the lock
    through: the inode ``find`` saw trusted may have been freed since and its number
    given to another user's file. Here the Found names nobody's file outright."""
    path = str(shared_dir / "app.pid")
    lock_as_nobody(tracker, path, "its locker holds it", [])
    stranger = nobodys_sleep(tracker)
    key = procfs.file_key(os.stat(f"/proc/{stranger}/fd/7"))
    assert procfs.holding_fds(stranger, key) == [7]
    found = Found(path, held=True, deleted=True, holders=(stranger,), keys=(key,))
    done = identity.stop_daemon(found, [(signal.SIGTERM, 0.1), (signal.SIGKILL, 0.1)])
    assert done.signalled == [] and done.exited, "nothing of ours held it"
    assert pid_alive(stranger)


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_in_a_pid_namespace_the_pidfile_api_names_the_child_that_kept_the_lock(
    tracker: Tracker, namespace: Namespace
) -> None:
    """read_pidfile_status and read_pid, as the commands: the holder /proc/locks no
    longer lists is found (they said running, with no pid)."""
    main, child = start_with_a_child(namespace, tracker.pidfile)
    kill(main)
    assert unlisted(namespace, procfs.file_key(os.stat(tracker.pidfile)))
    code = (
        "import sys; from daemonctx.pidfile import PIDLockFile, read_pidfile_status\n"
        "status = read_pidfile_status(sys.argv[1])\n"
        "print(status.running, status.pid, PIDLockFile(sys.argv[1]).read_pid())\n"
    )
    result = subprocess.run(
        [*namespace.prefix, sys.executable, "-c", code, tracker.pidfile],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    inner = namespace.inner(child)
    assert (result.returncode, result.stdout) == (0, f"True {inner} {inner}\n"), result


# -- a pid namespace whose /proc is another's: no identity decision is made ------------

#: ``unshare --pid --fork`` without ``--mount-proc``: /proc stays the host's.
UNSHARE_PID_ONLY = ["unshare", "--pid", "--fork"]
FOREIGN = "/proc is another pid namespace's"
MOUNT_OWN = "mount this pid namespace's own (unshare --pid --fork --mount-proc, nsenter --mount)"


def foreign_seen_by(*prefix: str) -> str:
    """What ``procfs.foreign()`` says in a Python run behind ``prefix``."""
    code = "from daemonctx import procfs; print(procfs.foreign())"
    result = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_root
@needs_pid_namespace
@needs_tools("nsenter")
def test_proc_of_another_pid_namespace_is_told_from_ones_own(
    tracker: Tracker, namespace: Namespace
) -> None:
    """One readlink of /proc/self tells it: ours on the host and under
    ``--mount-proc``; the parent's under ``unshare --pid --fork`` alone (it shows
    this process by its host pid) and under ``nsenter --pid`` without ``--mount``;
    a child namespace's (``nsenter --mount`` without ``--pid``) does not show this
    process at all."""
    assert procfs.foreign() is None
    assert foreign_seen_by() == "None"
    assert foreign_seen_by(*UNSHARE_PID) == "None"
    alone = foreign_seen_by(*UNSHARE_PID_ONLY)
    assert alone.startswith(f"{FOREIGN}: it shows this process as pid "), alone
    assert alone.endswith(f", not 1; {MOUNT_OWN}"), alone
    assert foreign_seen_by("nsenter", "-t", str(namespace.init), "-p", "-m") == "None"
    entered = foreign_seen_by("nsenter", "-t", str(namespace.init), "-p")
    assert entered.startswith(f"{FOREIGN}: it shows this process as pid "), entered
    inside_out = foreign_seen_by("nsenter", "-t", str(namespace.init), "-m")
    assert inside_out == f"{FOREIGN}: it does not show this process; {MOUNT_OWN}"


def in_pid_namespace_only(tracker: Tracker, script: str, *args: str) -> dict[str, str]:
    """``bash -c SCRIPT ARGS`` as PID 1 of ``unshare --pid --fork`` without
    ``--mount-proc``, its ``KEY=VALUE`` lines (``$PY`` is this Python). Every process
    in it carries the tracker's token."""
    result = subprocess.run(
        [*UNSHARE_PID_ONLY, "bash", "-c", script, *args],
        capture_output=True,
        text=True,
        env={**tracker.env, "PY": sys.executable, "PYTHONPATH": str(ROOT)},
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    told = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    told["stderr"] = result.stderr
    return told


@needs_root
@needs_pid_namespace
@pytest.mark.timeout(60)
def test_in_a_pid_namespace_without_its_own_proc_stop_signals_no_stranger(
    tracker: Tracker, tmp_path: Path
) -> None:
    """``unshare --pid --fork`` without ``--mount-proc``: /proc shows the daemon by its
    host pid, which names another process in the namespace (placed there through
    ns_last_pid). ``stop`` refused with LSB 4 at once, saying why and what to do, and
    signalled nobody (it sent that stranger SIGTERM, then spun at 100% CPU past its
    --timeout); ``status`` and ``signal`` refuse the same way, ``start`` too (it could
    not stop what it started), and the daemon runs on."""
    daemon = tracker.start("sleep", "3003")
    other = str(tmp_path / "other.pid")
    script = f"""
        say() {{ code=$?; echo "$1=$code"; echo "$1_says=$2"; }}
        echo $(({daemon} - 1)) > /proc/sys/kernel/ns_last_pid
        sleep 4004 & stranger=$!
        echo "stranger=$stranger"
        before=$(date +%s%N)
        out=$(timeout -s KILL 20 "$PY" -m daemonctx stop --timeout 1 --pidfile "$0" 2>&1)
        say stop "$out"
        echo "stop_ms=$((($(date +%s%N) - before) / 1000000))"
        out=$("$PY" -m daemonctx status --pidfile {tracker.pidfile} 2>&1); say status "$out"
        out=$("$PY" -m daemonctx signal --pidfile {tracker.pidfile} HUP 2>&1); say signal "$out"
        out=$("$PY" -m daemonctx start --pidfile {other} -- sleep 5005 2>&1); say start "$out"
        kill -KILL $stranger; wait $stranger; echo "stranger_status=$?"
    """
    told = in_pid_namespace_only(tracker, script, tracker.pidfile)
    assert told["stranger"] == str(daemon), "the stranger did not get the daemon's host pid"
    assert told["stranger_status"] == "137", f"stop signalled the stranger: {told}"
    assert int(told["stop_ms"]) < 5000, told
    why = f"cannot tell which processes are {tracker.pidfile}'s daemon: {FOREIGN}: it shows"
    for command in ("stop", "signal"):
        assert told[command] == "4", (command, told)
        assert told[f"{command}_says"].startswith(f"daemonctx: error: {why}"), told
        assert told[f"{command}_says"].endswith(MOUNT_OWN), told
    assert told["status"] == "4", told
    assert told["status_says"].startswith(f"app status is unknown: {why}"), told
    assert told["start"] == "4", told
    assert told["start_says"].startswith(f"daemonctx: error: {why.replace('app.pid', 'other.pid')}")
    assert pid_alive(daemon)
    assert not os.path.exists(other)
    assert tracker.daemonctx("status", "--pidfile", tracker.pidfile).returncode == 0


@needs_root
@needs_pid_namespace
@pytest.mark.timeout(60)
def test_a_holder_stop_can_never_pin_ends_the_stop_at_its_last_step(tracker: Tracker) -> None:
    """``stop_daemon`` with a proven holder it can never pin: the daemon's host pid in
    a namespace without its own /proc, where that pid names nobody (``find``'s check
    of /proc switched off, the only way to get one). It looks again, less and less
    often, and gives up after its last step, naming the holder (it looped without a
    pause, past every deadline, at 100% CPU)."""
    daemon = tracker.start("sleep", "3003")
    code = (
        "import json, signal, sys, time\n"
        "from daemonctx import identity, procfs\n"
        "procfs.foreign = lambda: None\n"
        "found = identity.find(sys.argv[1])\n"
        "wall, cpu = time.monotonic(), time.process_time()\n"
        "done = identity.stop_daemon(found, [(signal.SIGTERM, 1.0), (signal.SIGKILL, 0.5)])\n"
        "wall, cpu = time.monotonic() - wall, time.process_time() - cpu\n"
        "print('main_pid=' + str(found.main_pid))\n"
        "print('done=' + json.dumps([done.signalled, done.exited, done.left, wall, cpu]))\n"
    )
    told = in_pid_namespace_only(tracker, f'"$PY" -c "$0" {tracker.pidfile}', code)
    assert told["main_pid"] == str(daemon)
    signalled, exited, left, wall, cpu = json.loads(told["done"])
    assert (signalled, exited, left) == ([], False, [daemon])
    assert 1.5 <= wall < 3.0, wall
    assert cpu < wall / 2, (cpu, wall)
    assert pid_alive(daemon)


@needs_root
@needs_pid_namespace
@pytest.mark.timeout(60)
def test_in_a_pid_namespace_without_its_own_proc_the_pidfile_api_reads_the_file(
    tracker: Tracker,
) -> None:
    """A ``PIDLockFile`` held in a namespace without its own /proc: ``read_pid``,
    ``read_pidfile_status`` and a second ``acquire``'s refusal take the pid from the
    file, as where there is no /proc (they named the holder's host pid, another
    process here), and the lock still keeps a second one out."""
    code = (
        "import os, sys\n"
        "from daemonctx.pidfile import PIDLockFile\n"
        "lock = PIDLockFile(sys.argv[1])\n"
        "lock.acquire()\n"
        "print(os.getpid(), flush=True)\n"
        "sys.stdin.read()\n"  # until the script ends
    )
    ask = (
        "import sys\n"
        "from daemonctx.pidfile import PIDLockFile, read_pidfile_status\n"
        "print('read_pid=%s' % PIDLockFile(sys.argv[1]).read_pid())\n"
        "print('status=%s' % read_pidfile_status(sys.argv[1]).pid)\n"
        "try:\n"
        "    PIDLockFile(sys.argv[1], timeout=0).acquire()\n"
        "except Exception as exc:\n"
        "    print('refused=%s' % exc)\n"
    )
    script = f"""
        coproc HOLDER {{ "$PY" -c "$0" {tracker.pidfile}; }}
        read -r -t 10 holder <&"${{HOLDER[0]}}"; echo "holder=$holder"
        "$PY" -c "$1" {tracker.pidfile}
    """
    told = in_pid_namespace_only(tracker, script, code, ask)
    holder = told["holder"]
    assert holder.isdigit(), told
    assert (told["read_pid"], told["status"]) == (holder, holder), told
    assert told["refused"].endswith(f"is locked by running process {holder}"), told


@needs_root
@needs_pid_namespace
@needs_tools("nsenter", "setpriv")
def test_as_another_user_a_pid_written_in_a_namespace_names_no_host_process(
    tracker: Tracker, namespace: Namespace, shared_dir: Path
) -> None:
    """A daemon started in a pid namespace writes its pid there, a small number. On
    the host, a user who may not look at root's processes had ``status`` fall back to
    "the process with that pid started before the file was written": a kernel
    thread (pid 4, up 19 h) was named as the daemon, and so did ``read_pid()``.
    /proc/locks names the lock's taker, another live process: the number names no
    one here. Running, with no pid (as root sees, with its host pid)."""
    path = str(shared_dir / "c.pid")
    code, _out, err = namespace.daemonctx("start", "--pidfile", path, "--", "sleep", "1000")
    assert code == 0, err
    recorded = int(Path(path).read_text())
    if not procfs.is_original(recorded, os.stat(path).st_mtime):
        pytest.skip(f"no host process with pid {recorded} older than the pidfile here")
    python = python_for_nobody()
    status = subprocess.run(
        [*AS_NOBODY, python, "-m", "daemonctx", "status", "--pidfile", path],
        env=NOBODY_ENV, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (status.returncode, status.stdout) == (0, "c is running\n"), status
    code = (
        "import sys; from daemonctx.pidfile import PIDLockFile\n"
        "print(PIDLockFile(sys.argv[1]).read_pid())"
    )
    read = subprocess.run(
        [*AS_NOBODY, python, "-c", code, path],
        env=NOBODY_ENV, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert read.stdout == "None\n", read
    host = namespace.host_pid(recorded)
    result = tracker.daemonctx("status", "--pidfile", path)  # root: its host pid
    assert result.stdout.startswith(f"c is running (pid {host}, "), result
