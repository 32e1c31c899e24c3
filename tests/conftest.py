"""Shared helpers for every test module: one process tracker (``ProcessTracker``,
and its two kinds ``Daemons`` and ``Tracker``), the marks that skip a test this
machine or user cannot run, and ways to read a process's /proc state.

Every process a test starts is remembered by one of the tracker fixtures
(``processes``, ``daemons``, ``tracker``, ``open_tracker``) and killed, by pid,
when the test ends, whatever happened. No test module defines its own tracker or
imports helpers from another test module: what two modules share lives here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest

from daemonctx.supervisor.guard import GUARD_CODE

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
DAEMON = PROGRAMS / "daemon.py"
CLI_PROGRAM = PROGRAMS / "cli_program.py"
NOBODY = 65534
NOGROUP = 65534  # nogroup, nobody's group
TOKEN_VAR = "DAEMONCTX_TEST_TOKEN"
STARTED = re.compile(r"started (\S+) \(pid (\d+)\)\n")
NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
SSD = "/usr/sbin/start-stop-daemon"
# For subprocesses that import this checkout (whatever Python runs them).
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# A pid namespace of its own: what a container's PID 1 gets (see needs_pid_namespace).
UNSHARE_PID = ["unshare", "--pid", "--fork", "--mount-proc"]


def uid_without_passwd_entry() -> int:
    """A uid with no passwd entry whose number is a group's (27, ``sudo``, on
    Debian): what a program run as that uid must not get as its group unasked."""
    import grp
    import pwd

    for uid in range(1, NOBODY):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            try:
                grp.getgrgid(uid)
            except KeyError:
                continue
            return uid
    pytest.skip("no uid without a passwd entry whose number is a group's")


# -- marks: what a test needs from the machine and the user running it -----------------

# Switching users, chroot, mknod, writing root-owned files and directories, raising
# limits, planting another user's files, forcing pids through ns_last_pid: root only.
# Run as anyone else, such a test skips (README: "others skip without root").
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def needs_tools(*names: str) -> pytest.MarkDecorator:
    """Skip unless every one of the programs ``names`` is on PATH."""
    missing = [name for name in names if shutil.which(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (not on PATH)")


needs_ssd = pytest.mark.skipif(
    not os.access(SSD, os.X_OK), reason=f"needs Debian's start-stop-daemon ({SSD})"
)


def _pid_namespace_works() -> bool:
    """``unshare --pid --fork --mount-proc`` works here (root, and a kernel or
    container that allows new pid namespaces). Asked once, at collection."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run([*UNSHARE_PID, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


needs_pid_namespace = pytest.mark.skipif(
    not _pid_namespace_works(),
    reason="needs a new pid namespace: root and a working `unshare --pid --fork --mount-proc`",
)


# -- waiting and /proc ------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def cmdline_of(pid: int, timeout: float = 10.0) -> bytes:
    """``/proc/<pid>/cmdline``, once it has one: a program whose exec has passed the
    point where its close-on-exec descriptors close (where Popen, a launcher, and
    a supervisor's status take it as started) has no arguments in its new memory
    yet, for a moment (a while, under load)."""
    found: bytes = wait_for(
        lambda: Path(f"/proc/{pid}/cmdline").read_bytes(), timeout, f"pid {pid}'s command line"
    )
    return found


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait on a pidfd until ``pid`` has exited (works for non-children)."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, FileNotFoundError):
        return  # gone, or its pid a thread of another process now (ENOENT): gone too
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"pid {pid} still alive after {timeout} s"
    finally:
        os.close(fd)


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def proc_environ(pid: int) -> bytes:
    """/proc/<pid>/environ, once it reads non-empty: a process just past its exec
    shows an empty one for a moment (its new image's is set up after the
    close-on-exec that told Popen, or a launcher, that it ran)."""
    found: bytes = wait_for(lambda: Path(f"/proc/{pid}/environ").read_bytes(), what="its environ")
    return found


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: [0] is state, [1] ppid,
    [2] pgrp, [3] session, [4] tty_nr."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_fds(pid: int) -> dict[int, str]:
    """The open descriptors of ``pid`` and what they point to; one closed between
    the listing and its readlink (a process still starting opens and closes
    files) is left out: it is not open."""
    base = f"/proc/{pid}/fd"
    found = {}
    for fd in os.listdir(base):
        try:
            found[int(fd)] = os.readlink(f"{base}/{fd}")
        except FileNotFoundError:
            pass
    return found


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_reaped(pid: int) -> None:
    """Gone from /proc (not even a zombie): start-stop-daemon counts a zombie as alive."""
    wait_gone(pid)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what=f"pid {pid} reaped")


def kill(pid: int) -> None:
    pidfd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
    wait_reaped(pid)


# -- the process tracker ---------------------------------------------------------------


def _start_ticks(pid: int) -> bytes | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _parent_of(pid: int) -> int | None:
    """The parent of ``pid`` (/proc/<pid>/stat), or None if gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class _LearntPids(set):  # type: ignore[type-arg]
    """Pids a test learnt, each with when its process started: at the end, a pid that
    names another process (reused: suites side by side rewind the pid counter through
    ns_last_pid) is not the test's to kill."""

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[int, bytes | None] = {}

    def add(self, pid: int) -> None:
        self.started.setdefault(pid, _start_ticks(pid))
        super().add(pid)

    def update(self, *others: Iterable[int]) -> None:
        for other in others:
            for pid in other:
                self.add(pid)

    def same(self, pid: int) -> bool:
        """Not learnt here, or still the process that had it when it was learnt."""
        if pid not in self.started:
            return True
        started = self.started[pid]
        return started is not None and started == _start_ticks(pid)


class ProcessTracker:
    """Every process a test starts, killed by pid when the test ends.

    A test hands each process over in one of three ways:

    - ``add(pid)``: a pid it learnt (from a report, a pidfile, stdout);
    - ``popen(args)``, or ``adopt(proc)`` for one started elsewhere: a child of
      ours, killed if still running, then reaped, and its pipes closed;
    - ``watch(finder)``: a function that names more pids when the test ends, such
      as the holder of a pidfile (``Daemons`` watches its reports, ``Tracker`` the
      processes carrying its token).

    ``kill_all`` SIGKILLs every live one through a pidfd, checking with ``owns``
    that the pid still names a process of the test, and goes round again (up to
    five times) for processes that appeared meanwhile. The children of each are
    learnt before it is killed: one in the middle of its exec (a supervisor's
    program just started) shows no environment, so no token, for a while under
    load, and once its parent is killed nobody else would name it.
    """

    def __init__(self) -> None:
        self.pids: set[int] = _LearntPids()
        self.procs: list[subprocess.Popen[Any]] = []
        self.finders: list[Callable[[], Iterable[int]]] = []

    def add(self, pid: int) -> int:
        self.pids.add(pid)
        return pid

    def popen(self, args: list[str], **popen: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen(args, **popen)``, killed and reaped at the end."""
        return self.adopt(subprocess.Popen(args, **popen))

    def adopt(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self.procs.append(proc)
        return proc

    def watch(self, finder: Callable[[], Iterable[int]]) -> None:
        self.finders.append(finder)

    def find(self) -> set[int]:
        """The pids to kill: those added and those the finders name now."""
        found = set(self.pids)
        for finder in self.finders:
            try:
                found.update(finder())
            except Exception:  # a half-written report or pidfile names nothing
                continue
        return found

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` (pinned by a pidfd) is still a process of this test: not
        one that took the pid of a process learnt, gone since (``_LearntPids``)."""
        return self.pids.same(pid) if isinstance(self.pids, _LearntPids) else True

    def kill_all(self) -> None:
        """Kill every process; an error killing one is raised only once every
        other has been killed and every child reaped."""
        errors: list[BaseException] = []
        for _ in range(5):
            pids = sorted(pid for pid in self.find() if pid != os.getpid() and pid_alive(pid))
            if not pids:
                break
            for pid in pids:
                try:
                    self._kill(pid)
                except Exception as exc:
                    errors.append(exc)
        for proc in self.procs:
            try:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)
            except Exception as exc:
                errors.append(exc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if errors:
            raise errors[0]

    def _kill(self, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except (ProcessLookupError, FileNotFoundError):
            # gone, or a thread now (ENOENT): a reused pid, no process of the test's
            return
        try:
            if self.owns(pid):  # asked after the pidfd pinned the process
                self._learn_children(pid)  # killed by the next round
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                select.select([pidfd], [], [], 5)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def _learn_children(self, parent: int) -> None:
        """``add`` each child of ``parent`` (a live process of the test, pinned):
        each is pinned too, and learnt only while ``parent`` is still its parent."""
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            return
        for task in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                try:
                    pidfd = os.pidfd_open(child)
                except OSError:
                    continue
                try:
                    if _parent_of(child) == parent:
                        self.add(child)
                finally:
                    os.close(pidfd)


@pytest.fixture(autouse=True)
def threads_ended() -> Iterator[None]:
    """After each test, wait until this process has no task but its Python threads:
    a thread a test joined (a Spawner's) may still be a task for a moment, and the
    fork of the next test (pytest-forked's, on 3.13) would warn "multi-threaded"."""
    yield
    wait_for(
        lambda: len(os.listdir("/proc/self/task")) <= threading.active_count(),
        5,
        what="a joined thread's task to end",
    )


@pytest.fixture
def processes() -> Iterator[ProcessTracker]:
    """Processes a test starts itself (Popen, pids, pidfile holders)."""
    manager = ProcessTracker()
    try:
        yield manager
    finally:
        manager.kill_all()


# -- daemons started through tests/programs/daemon.py ----------------------------------


class Daemons(ProcessTracker):
    """Starts tests/programs/daemon.py and remembers every pid it learns of: its
    report files (``report-N.jsonl`` in ``tmp_path``) name each process that wrote one."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.tmp_path = tmp_path
        self.count = 0
        self.watch(self._reported)

    def _reported(self) -> set[int]:
        return {
            event["pid"]
            for report in self.tmp_path.glob("report-*.jsonl")
            for event in read_events(report)
        }

    def launch(
        self, config: dict[str, Any], *, wait: bool = True, timeout: float = 20, **popen: Any
    ) -> tuple[subprocess.CompletedProcess[str], Path]:
        """Run the launcher to completion; return it and the report path."""
        self.count += 1
        report = self.tmp_path / f"report-{self.count}.jsonl"
        config = {"report": str(report), **config}
        popen.setdefault("capture_output", True)
        result = subprocess.run(
            [*popen.pop("prefix", []), sys.executable, str(DAEMON), json.dumps(config)],
            text=True,
            timeout=timeout,
            **popen,
        )
        self.track(report)
        return result, report

    def start(self, config: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        """Launch, require exit 0, and return the daemon's "open" event."""
        result, report = self.launch(config)
        assert result.returncode == 0, result.stderr
        event = self.event(report, "open")
        return event, report

    def event(self, report: Path, name: str, timeout: float = 10) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for event in read_events(report):
                if event["event"] == name:
                    self.pids.add(event["pid"])
                    return event
            return None

        found: dict[str, Any] = wait_for(find, timeout, f"event {name!r} in {report.name}")
        return found

    def track(self, report: Path) -> None:
        """Remember every pid in ``report`` (one with a name of its own, too)."""
        for event in read_events(report):
            self.pids.add(event["pid"])


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    tmp_path.chmod(0o755)  # reachable after dropping privileges
    manager = Daemons(tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()


# -- processes started through the daemonctx command ---------------------------------


class Tracker(ProcessTracker):
    """Runs ``daemonctx`` with a token in the environment and finds every
    process that inherited it (the launcher passes its environment on)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.tmp_path = tmp_path
        self.token = uuid.uuid4().hex
        self.env = {**os.environ, TOKEN_VAR: self.token}
        self.env.pop("NOTIFY_SOCKET", None)
        self.pidfile = str(tmp_path / "app.pid")
        self.watch(self.processes)

    def daemonctx(
        self, *args: str, timeout: float = 30, prefix: Sequence[str] = (), **popen: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m daemonctx ARGS`` to completion (behind ``prefix``: prlimit...)."""
        popen.setdefault("env", self.env)
        return subprocess.run(
            [*prefix, *self.command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            **popen,
        )

    @staticmethod
    def command() -> list[str]:
        """How the tests invoke the command: ``python -m daemonctx``."""
        return [sys.executable, "-m", "daemonctx"]

    def run_argv(self, *command: str) -> list[str]:
        """The argv of ``python -m daemonctx run --pidfile app.pid -- COMMAND``, for Popen."""
        return [*self.command(), "run", "--pidfile", self.pidfile, "--", *command]

    def start(self, *command: str, options: tuple[str, ...] = ()) -> int:
        """``daemonctx start --pidfile app.pid OPTIONS -- COMMAND``; require success; the pid."""
        result = self.daemonctx("start", "--pidfile", self.pidfile, *options, "--", *command)
        assert result.returncode == 0, result.stderr
        match = STARTED.fullmatch(result.stdout)
        assert match, result.stdout
        # killed by its pid too, not only found by the token in its environ: a
        # process in the middle of an exec (`sh -c "...; exec sleep 1000"`) shows
        # an empty environ for a moment, and one scan missed it
        return self.add(int(match.group(2)))

    def ssd_status(self, *extra: str) -> int:
        """``start-stop-daemon --status --pidfile app.pid``'s exit code."""
        args = [SSD, "--status", "--pidfile", self.pidfile, *extra]
        return subprocess.run(args, env=self.env, timeout=30).returncode

    def has_token(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"{TOKEN_VAR}={self.token}".encode() in environ.split(b"\0")

    def processes(self) -> list[int]:
        """Live processes (not zombies) started by this test."""
        pids = (int(name) for name in os.listdir("/proc") if name.isdigit())
        return sorted(pid for pid in pids if self.has_token(pid) and pid_alive(pid))

    def owns(self, pid: int) -> bool:
        """A pid the test added (still its process), or one still carrying the token."""
        return (pid in self.pids and super().owns(pid)) or self.has_token(pid)


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    tmp_path.chmod(0o755)  # reachable after dropping privileges
    manager = Tracker(tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A 0755 directory of ours under /tmp, which nobody can reach but not write
    (pytest's tmp_path is inside a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="daemonctx-test-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shared_dir(open_dir: Path) -> Path:
    """A directory like /tmp: anyone may create entries, only their owner remove them."""
    directory = open_dir / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


@pytest.fixture
def open_tracker(open_dir: Path) -> Iterator[Tracker]:
    """A tracker whose directory nobody can reach."""
    manager = Tracker(open_dir)
    try:
        yield manager
    finally:
        manager.kill_all()


def python_program(*args: str) -> tuple[str, ...]:
    """The argv of tests/programs/cli_program.py (an sd_notify program) with ``args``."""
    return (sys.executable, str(CLI_PROGRAM), *args)


# -- running code elsewhere: a forked child, a fresh interpreter, as nobody --------------


def run_in_child(func: Callable[[], None]) -> None:
    """Run ``func`` in a forked child and re-raise its failure here.

    For tests that drop privileges: pytest-forked's child can no longer write
    its result file once it is not root, so this child reports over a pipe.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns: a child going on would run the rest of pytest
        status = 1
        try:
            os.close(read_fd)
            try:
                func()
                status = 0
            except BaseException:
                import traceback

                os.write(write_fd, traceback.format_exc().encode()[-8000:])
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, message


def run_as_nobody(action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child as uid and gid 65534 with no other groups (root only)."""

    def drop_then_act() -> None:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        action()

    run_in_child(drop_then_act)


def run_script(
    code: str,
    timeout: float = 20,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout.

    With ``check`` (the default) it must exit 0. For in-process tests whose
    open() succeeds (it closes every fd the test runner holds, so it must run
    in a process of its own) and for launchers expected to fail.
    """
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def searchable_path() -> str:
    """$PATH without the directories this user may not search (root's PATH, kept by
    runuser, names /root/... which nobody cannot enter): execvp reports EACCES for
    those rather than ENOENT for a program that is nowhere."""
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and os.access(d, os.X_OK))


def spawn_as_pid(pid: int, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` so that it gets ``pid``: root chooses the next pid through
    /proc/sys/kernel/ns_last_pid (retried: other processes may fork meanwhile).
    An exclusive flock on that file keeps the suites CI runs side by side from
    aiming each other's forks (100 tries in a row missed)."""
    import fcntl

    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip(f"{NS_LAST_PID} is not writable here")
    # A dead process keeps its pid until its parent reaps it (a shell under load
    # may take a while): wait for that first, or every try below misses
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, what=f"pid {pid} to be free")
    with open(NS_LAST_PID, "w") as chooser:
        fcntl.flock(chooser, fcntl.LOCK_EX)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chooser.seek(0)
            chooser.write(str(pid - 1))
            chooser.flush()
            proc = subprocess.Popen(argv, **popen)
            if proc.pid == pid:
                return proc
            proc.kill()
            proc.wait()
    pytest.fail(f"could not start a process as pid {pid} within 10 s")


def _reachable_by_nobody(path: Path) -> bool:
    """Whether others may search ``path`` and every directory above it."""
    return all(os.stat(directory).st_mode & stat.S_IXOTH for directory in (path, *path.parents))


def _readable_copy() -> Path:
    """A world-readable copy of what programs run as nobody import or run, under /tmp:
    daemonctx, tests/programs, and the lockfile (and tomli) packages this Python uses."""
    copy = Path(tempfile.mkdtemp(prefix="daemonctx-nobody-", dir="/tmp"))
    sources = {"daemonctx": ROOT / "daemonctx", "tests/programs": PROGRAMS}
    for name in ("lockfile", "tomli"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            sources[name] = Path(spec.submodule_search_locations[0])
    for target, source in sources.items():
        shutil.copytree(source, copy / target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (copy, *copy.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


# What nobody runs and imports: this checkout, or the readable copy pytest_configure
# makes (before any test module imports these) when nobody cannot reach the checkout.
# Not at import: a script that imports conftest (test_identity_holders') made one too.
READABLE_ROOT = ROOT
NOBODY_ENV = ENV  # for subprocesses run as nobody that import daemonctx
_COPIED_BY = 0  # the process that made the copy


def pytest_configure(config: pytest.Config) -> None:
    """Make the readable copy when nobody cannot reach this checkout (a clone in a
    0700 directory, as CI's): once per session, in pytest's own process."""
    global READABLE_ROOT, NOBODY_ENV, _COPIED_BY
    if not _reachable_by_nobody(ROOT):
        READABLE_ROOT, _COPIED_BY = _readable_copy(), os.getpid()
        NOBODY_ENV = {**os.environ, "PYTHONPATH": str(READABLE_ROOT)}


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the readable copy, from the process that made it (not a forked test's)."""
    if os.getpid() == _COPIED_BY:
        shutil.rmtree(READABLE_ROOT, ignore_errors=True)


def readable(path: Path) -> Path:
    """``path``, a file of this checkout, where nobody can read it (in READABLE_ROOT)."""
    return READABLE_ROOT / path.relative_to(ROOT)


def python_for_nobody(program: Path | None = None) -> str:
    """An interpreter nobody may run that imports daemonctx with NOBODY_ENV (and
    reads ``program``, if given): ours, or the system's when ours is out of nobody's
    reach (a venv under /root, or in a clone in a 0700 directory); skip the test
    when there is none."""
    code = "import daemonctx"
    if program is not None:
        code = f"open({str(program)!r}).close(); {code}"
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            probe = subprocess.run(
                [candidate, "-c", code],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                capture_output=True,
                env=NOBODY_ENV,
                check=False,
                timeout=30,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no Python interpreter nobody may run {program or 'daemonctx'} with")


# -- a terminal: a pty whose first process leads its session ----------------------------


class Terminal:
    """A pseudo-terminal with ``argv`` running on it as the leader of its session,
    the terminal its controlling terminal: what a login or ``ssh -t`` gives a shell.
    The test reads and types through the master side; the process is killed by
    pid (``tracker``) and reaped when the ``with`` block ends."""

    def __init__(self, tracker: ProcessTracker, argv: list[str], env: dict[str, str]) -> None:
        import pty

        pid, self.master = pty.fork()
        if pid == 0:  # the child only execs: it must not run the rest of pytest
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid = tracker.add(pid)
        self.output = b""  # everything read from the terminal so far

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        pidfd = os.pidfd_open(self.pid)  # our child, not reaped yet: still this process
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 10)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)
        os.waitpid(self.pid, 0)
        os.close(self.master)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 20) -> re.Match[bytes]:
        """Read until the output from now on matches ``pattern``: its match."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern.encode()).search(self.output, start)
            if match:
                return match
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not shown on the terminal: {self.output[start:]!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # EIO: every process on the terminal closed it
                    data = b""
                assert data, f"{pattern!r} never shown on the terminal: {self.output[start:]!r}"
                self.output += data


# -- supervisors (daemonctx supervise) ----------------------------------------------------


def toml_value(value: Any) -> str:
    """``value`` as TOML: strings, numbers, booleans, lists, tables of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


class Supervisors(Tracker):
    """Writes supervisor configurations and runs ``daemonctx supervise`` on them.

    Every process carries the tracker's token (programs inherit the supervisor's
    environment), so the supervisor, its programs and their descendants are all
    killed by pid when the test ends. ``control`` is the socket of ``config()``.
    """

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.control = str(tmp_path / "control.sock")
        self.config_path = tmp_path / "supervisor.toml"
        self.log = tmp_path / "supervisor.log"
        self.foreground_pid = 0  # the last foreground() supervisor's pid

    def config(self, programs: dict[str, dict[str, Any]], **supervisor: Any) -> Path:
        """Write the TOML file: ``[supervisor]`` (control, log by default) and one
        ``[program.NAME]`` table per entry; return its path."""
        supervisor.setdefault("control", self.control)
        supervisor.setdefault("log", str(self.log))
        lines = ["[supervisor]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in supervisor.items()]
        for name, keys in programs.items():
            lines.append(f"\n[program.{json.dumps(name)}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    def supervise(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``daemonctx supervise --config FILE ARGS`` to completion (it daemonizes)."""
        return self.daemonctx(
            "supervise", "--config", str(self.config_path), *args, timeout=timeout
        )

    def foreground(
        self, *args: str, config: bool = True, booted: bool = True, prefix: Sequence[str] = ()
    ) -> subprocess.Popen[str]:
        """``daemonctx supervise [--config FILE] --foreground ARGS`` as a child
        (behind ``prefix``: prlimit...), returned once its socket answers and
        (``booted``) its programs are ready, or once it has exited."""
        head = ["--config", str(self.config_path)] if config else []
        proc = self.popen(
            [*prefix, *self.command(), "supervise", *head, "--foreground", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.foreground_pid = proc.pid
        self.wait_answering(proc, booted=booted)
        return proc

    def wait_answering(
        self, proc: subprocess.Popen[str] | None = None, timeout: float = 20, booted: bool = True
    ) -> None:
        """Wait until the supervisor answers and (``booted``) its boot is over
        (every program ready, or it is stopping), or until it has exited."""
        from daemonctx.supervisor import Client

        def answering() -> bool:
            if proc is not None and proc.poll() is not None:
                return True
            try:
                with Client(self.control, timeout=5) as client:
                    state = client.request("status")["supervisor"]["state"]
            except Exception:
                return False
            return not booted or state != "starting"

        wait_for(answering, timeout, what="the supervisor to answer")

    def client(self, timeout: float | None = 30) -> Any:
        from daemonctx.supervisor import Client

        return Client(self.control, timeout=timeout)

    def status(self, name: str) -> Any:
        """The ``ProgramInfo`` of ``name``."""
        with self.client() as client:
            (info,) = client.status(name)
        return info

    def wait_state(self, name: str, state: str, timeout: float = 20) -> Any:
        """Poll ``status`` until ``name`` is in ``state``; its ``ProgramInfo``."""

        def reached() -> Any:
            info = self.status(name)
            return info if info.state == state else None

        return wait_for(reached, timeout, what=f"{name} to be {state}")

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``daemonctx ctl --control SOCK ARGS``."""
        return self.daemonctx("ctl", "--control", self.control, *args, timeout=timeout)

    def ctl_popen(self, *args: str, **popen: Any) -> subprocess.Popen[str]:
        """``daemonctx ctl --control SOCK ARGS`` as a child (killed at the end), its
        output piped as text unless ``popen`` says otherwise: a request under way."""
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
        command = [*self.command(), "ctl", "--control", self.control, *args]
        return self.popen(command, env=self.env, **options)


def is_guard(pid: int | str) -> bool:
    """Whether process ``pid`` runs a guard's code (not only names its module: a
    supervisor run with a changed STALL_LIMIT does, and so does a child it forks,
    before that child's exec)."""
    return GUARD_CODE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()


def guard_of(supervisor: int) -> int:
    """The supervisor's guard, once it runs: its child running daemonctx.supervisor.guard."""

    def find() -> int | None:
        for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
            try:
                if is_guard(pid):
                    return int(pid)
            except OSError:
                continue
        return None

    found: int = wait_for(find, what="the guard")
    return found


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[Supervisors]:
    tmp_path.chmod(0o755)  # reachable by programs that run as another user
    manager = Supervisors(tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()


def fill_up(directory: Path) -> None:
    """Write a file in ``directory`` until its file system is full (a tmpfs of
    ``mounted_tmpfs``)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)


@contextlib.contextmanager
def mounted_tmpfs(
    directory: Path, size: str, before_unmount: Callable[[], None] = lambda: None
) -> Iterator[Path]:
    """``directory`` made a tmpfs of ``size`` (``"64k"``) for the block: a disk that
    fills up (root only; the test skips when the mount fails). ``before_unmount``
    runs first at the end (kill what holds files open there)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount)")
    directory.mkdir(exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    try:
        yield directory
    finally:
        before_unmount()
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


PIDS_V1 = Path("/sys/fs/cgroup/pids")


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A cgroup v1 pids group of this test, for a limit on the tasks a process may
    make (EAGAIN from fork and thread starts): removed at the end, once empty."""
    if not (PIDS_V1 / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v1 pids hierarchy")
    group = PIDS_V1 / f"daemonctx-test-{os.getpid()}-{time.monotonic_ns()}"
    group.mkdir()
    try:
        yield group
    finally:
        (group / "pids.max").write_text("max")
        left = empty_cgroup(group)
        group.rmdir()
    # a failure of the test that left them, not a group left behind for the next ones
    assert not left, f"left running in the test's pids cgroup (killed now): {'; '.join(left)}"


def empty_cgroup(group: Path, timeout: float = 10.0) -> list[str]:
    """Wait until ``group`` has no process; kill through a pidfd whatever is still
    there after ``timeout`` (a leak of the test's), and wait until it is gone.
    Return a line for each process that was left: pid, state and command line."""
    procs = group / "cgroup.procs"
    try:
        wait_for(lambda: not procs.read_text().split(), timeout, what="an empty cgroup")
        return []
    except AssertionError:
        pass
    left = []
    for pid in map(int, procs.read_text().split()):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if str(pid) not in procs.read_text().split():  # pinned, then still the group's
                continue
            state = _state(pid)
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
            left.append(f"pid {pid} ({state}) {command.decode(errors='replace')}")
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            continue
        finally:
            os.close(pidfd)
    wait_for(lambda: not procs.read_text().split(), timeout, what="the killed ones to be gone")
    return left


def _state(pid: int) -> str:
    """The state letter of ``pid`` (R, S, T, Z...), from /proc/<pid>/stat; '?' if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"
