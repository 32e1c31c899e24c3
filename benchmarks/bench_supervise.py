#!/usr/bin/env python3
"""Supervisor benchmark: daemonctx's supervisor beside supervisord, circus, zdaemon, s6, runit.

Every tool supervises the same tiny shell program: it announces each start by
creating a file, ``up.NAME.PID``, then ``exec``s ``sleep``. Starts are seen by
inotify on that directory, exits on a pidfd of the program's process: every
time comes from what the programs do, never from what a supervisor reports.
Rounds go round-robin over the tools, in a new random order each round, so
that noise on the machine hits every tool alike; each number is a median.

What is measured (docs/supervisor-benchmarks.md has the goals and a run):

- one program: crash -> running again (SIGKILL through a pidfd, until the new
  instance announces itself); ``status`` by each tool's command line and
  through its API; stopping one program and starting it again (the request
  through each tool's API or control pipe, until the process is gone or the
  new one has announced itself); wake-ups (context switches of every thread
  of the manager processes) and CPU time over an idle window; manager RSS;
- many programs (100): all running, from launching the manager; RSS; status of
  all by the command line; stop all, until every program's process is gone;
- daemonctx alone with many more (1,000): all running, ``ctl status``, RSS,
  idle wake-ups, crash -> running again, ``ctl stop all``;
- captured output: a program writing lines as fast as it can, to a file
  itself, and through each supervisor's capture into a file: MB/s, and the
  supervisor's CPU seconds per MB.

The Python anchors come from the ``bench`` extra, installed into a venv of the
benchmark's own; s6 and runit from Debian. A tool that is missing is skipped,
and the output says how to install it::

    python3 -m venv /var/tmp/daemonctx-bench-venv
    /var/tmp/daemonctx-bench-venv/bin/pip install -e '.[bench]'
    apt-get install -y s6 runit
    /var/tmp/daemonctx-bench-venv/bin/python benchmarks/bench_supervise.py

``--quick`` runs small counts (CI: it must not rot). Exit status 0: this is a
report, whatever the goals say; 1 with ``--check`` when a goal is missed; 2
when daemonctx's side could not be measured or a process was left behind;
130 when interrupted. Not part of the pytest suite. Linux only; run as root.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

BIN = Path(sys.executable).parent  # the venv's scripts: daemonctx, supervisord, circusd, zdaemon
VENV = "/var/tmp/daemonctx-bench-venv"
PIP_HINT = (
    f"python3 -m venv {VENV} && {VENV}/bin/pip install -e '.[bench]', then run this"
    f" benchmark with {VENV}/bin/python"
)
# Every process this run starts, directly or not, carries MARKER=<its temporary
# directory> in its environment (and SETUP=<its setup's directory>): that is how
# what a tool left behind is found, and killed, by pid.
MARKER = "DAEMONCTX_BENCH_RUN"
SETUP_MARKER = "DAEMONCTX_BENCH_SETUP"
# s6-supervise and runsv start ./run at most once a second: before a program is
# killed or started again, it has run at least this long, with every tool alike.
SPACING_NS = 1_100_000_000
TIMEOUT = 30.0
WRITER_LINE = "daemonctx bench: one line of output, about as long as a log line is."
ORDER = ("daemonctx", "s6", "runit", "supervisord", "circus", "zdaemon", "by hand", "direct")


class MeasureError(Exception):
    """One measurement failed (a timeout, a request refused); the run goes on."""


def now_ns() -> int:
    return time.perf_counter_ns()


def ms(delta_ns: int) -> float:
    return delta_ns / 1e6


STARTED = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


# -- inotify: the programs' announcements ---------------------------------------------

IN_CLOSE_WRITE = 0x00000008
IN_Q_OVERFLOW = 0x00004000
_libc = ctypes.CDLL(None, use_errno=True)


class Announcements:
    """The files the programs create in one directory, seen by inotify
    (IN_CLOSE_WRITE: a file created again, by a reused pid, is seen too):
    ``up.NAME.PID`` when an instance has started, ``done.NAME.PID`` when a
    writer has written everything."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.directory = directory
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        if _libc.inotify_add_watch(fd, os.fsencode(directory), IN_CLOSE_WRITE) < 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)
        self.up: dict[str, tuple[int, int]] = {}  # name -> (pid, seen at, ns)
        self.count: dict[str, int] = {}  # name -> instances announced
        self.done: dict[str, int] = {}  # name -> writers finished
        self.batch_ns = 0  # when the last batch of events was read

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def pump(self, timeout: float) -> None:
        if not self.poller.poll(max(0, int(timeout * 1000) + 1)):
            return
        self.batch_ns = now_ns()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                raw = data[offset + 16 : offset + 16 + length].split(b"\0", 1)[0]
                offset += 16 + length
                if mask & IN_Q_OVERFLOW:
                    raise MeasureError(f"inotify queue overflow on {self.directory}")
                kind, _, rest = raw.decode().partition(".")
                name, _, pid_text = rest.rpartition(".")
                if not pid_text.isdigit():
                    continue
                if kind == "up":
                    self.up[name] = (int(pid_text), self.batch_ns)
                    self.count[name] = self.count.get(name, 0) + 1
                elif kind == "done":
                    self.done[name] = self.done.get(name, 0) + 1

    def wait(self, condition: Callable[[], bool], timeout: float) -> int | None:
        """The time (ns) of the events that made ``condition`` true; None on timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.pump(left)
        return self.batch_ns

    def wait_up(self, name: str, after: int, timeout: float = TIMEOUT) -> int:
        at = self.wait(lambda: self.count.get(name, 0) > after, timeout)
        if at is None:
            raise MeasureError(f"{name} did not announce itself within {timeout:g} s")
        return at


# -- processes and /proc ----------------------------------------------------------------


def pidfd_of(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise MeasureError(f"pid {pid} is gone") from None


def wait_pidfds(pidfds: list[int], timeout: float) -> int | None:
    """Wait until every process behind ``pidfds`` has exited: the time (ns), or None."""
    poller = select.epoll()
    try:
        for fd in pidfds:
            poller.register(fd, select.EPOLLIN)
        left = len(pidfds)
        at = now_ns()
        deadline = time.monotonic() + timeout
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            events = poller.poll(remaining)
            at = now_ns()
            for fd, _mask in events:
                poller.unregister(fd)
                left -= 1
        return at
    finally:
        poller.close()


def wait_until(deadline_ns: int) -> None:
    delay = (deadline_ns - now_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def wakeups(pid: int) -> int:
    """Context switches, voluntary and not, of every thread of ``pid``."""
    total = 0
    for tid in tasks(pid):
        for line in read_text(f"/proc/{pid}/task/{tid}/status").splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid``: schedstat (ns), else utime + stime (ticks)."""
    total = 0
    for tid in tasks(pid):
        fields = read_text(f"/proc/{pid}/task/{tid}/schedstat").split()
        if fields:
            total += int(fields[0])
    if total:
        return total
    stat = read_text(f"/proc/{pid}/stat")
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 13:
        return 0
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLOCK_TICK


def rss_kib(pid: int) -> int:
    for line in read_text(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for tid in tasks(pid):
        found.extend(int(x) for x in read_text(f"/proc/{pid}/task/{tid}/children").split())
    return found


def fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "?"


def marked(name: str, value: str) -> list[int]:
    """Pids whose environment holds ``name=value``."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def kill_marked(name: str, value: str) -> list[int]:
    """SIGKILL, by pidfd, every process whose environment holds ``name=value``;
    again until none is left (a supervisor may start one more before it dies)."""
    killed: list[int] = []
    for _ in range(20):
        pids = marked(name, value)
        if not pids:
            break
        pidfds = []
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            if pid in marked_subset([pid], name, value):  # pinned: still ours?
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    killed.append(pid)
                except OSError:
                    pass
            pidfds.append(pidfd)
        wait_pidfds(pidfds, 2.0)
        for pidfd in pidfds:
            os.close(pidfd)
    return killed


def marked_subset(pids: list[int], name: str, value: str) -> list[int]:
    needle = f"{name}={value}".encode()
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            pass
    return found


class Spawner:
    """Short-lived commands (status commands, programs started by hand): started
    with posix_spawn, timed to their exit on a pidfd, and always reaped."""

    def __init__(self) -> None:
        self.live: set[int] = set()

    def spawn(
        self, argv: list[str], env: dict[str, str], output: str = "/dev/null", append: bool = False
    ) -> int:
        mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, output, mode, 0o640),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        ]
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
        self.live.add(pid)
        return pid

    def reap(self, pid: int, timeout: float = TIMEOUT) -> int:
        """Wait for ``pid`` to exit (SIGKILL after ``timeout``); its exit code."""
        pidfd = os.pidfd_open(pid)
        try:
            if wait_pidfds([pidfd], timeout) is None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        finally:
            os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self.live.discard(pid)
        return os.waitstatus_to_exitcode(status)

    def timed(
        self, argv: list[str], env: dict[str, str], output: str = "/dev/null"
    ) -> tuple[float, int]:
        """Run ``argv``: milliseconds from just before the spawn to its exit, exit code."""
        start = now_ns()
        pid = self.spawn(argv, env, output)
        pidfd = os.pidfd_open(pid)  # not reaped yet: still there
        try:
            end = wait_pidfds([pidfd], TIMEOUT)
        finally:
            os.close(pidfd)
        code = self.reap(pid, 1.0)
        if end is None:
            raise MeasureError(f"{shlex.join(argv)} did not exit within {TIMEOUT:g} s")
        return ms(end - start), code

    def kill_all(self) -> None:
        for pid in list(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            self.reap(pid, 2.0)


def timed_request(request: Callable[[], object], wait: Callable[[float], int | None]) -> float:
    """Milliseconds from ``request()``'s start, made in a thread (it may block
    until the job is done), to the event ``wait`` sees."""
    box: dict[str, Any] = {}

    def work() -> None:
        box["start"] = now_ns()
        try:
            box["result"] = request()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    end = wait(TIMEOUT)
    thread.join(TIMEOUT)
    if "error" in box:
        raise MeasureError(f"request failed: {box['error']!r}")
    if end is None:
        raise MeasureError(f"no effect within {TIMEOUT:g} s")
    return ms(end - box["start"])


# -- the tools ----------------------------------------------------------------------------

PROGRAM = """#!/bin/sh
: > {ann}/up.{name}.$$
{ready}exec sleep 2147483647
"""

WRITER = """#!/bin/sh
{redirect}: > {ann}/up.{name}.$$
yes '{line}' | head -c {size}
: > {ann}/done.{name}.$$
exec sleep 2147483647
"""


class Writer:
    """The captured-output program: its name, how much it writes, and where to."""

    def __init__(self, name: str, size: int, output: Path, to_stderr: bool = False) -> None:
        self.name = name
        self.size = size
        self.output = output
        self.to_stderr = to_stderr


class Tool:
    """One setup of one tool: its directory, its programs, its manager(s)."""

    name: ClassVar[str] = ""
    settings: ClassVar[str] = ""
    install: ClassVar[str] = PIP_HINT
    captures: ClassVar[bool] = False
    has_api: ClassVar[bool] = True
    launched_ms = 0.0  # launch -> every program announced, set by Bench.launch_all
    ready_line = ""  # what the program runs after its announcement, before its exec

    def __init__(
        self, bench: Bench, directory: Path, names: list[str], writer: Writer | None = None
    ) -> None:
        self.bench = bench
        self.dir = directory
        self.names = list(names)
        self.writer = writer
        directory.mkdir(parents=True)
        self.ann = Announcements(directory / "ann")
        self.env = dict(bench.env, **{SETUP_MARKER: str(directory)})
        self.procs: list[subprocess.Popen[bytes]] = []
        self.scripts: dict[str, Path] = {}
        for name in self.names:
            self.scripts[name] = self.script(directory / "bin" / name, name)
        if writer is not None:
            self.scripts[writer.name] = self.script(directory / "bin" / writer.name, writer.name)
        self.configure()

    # -- what each tool provides --

    @classmethod
    def missing(cls) -> str | None:
        """None when the tool can run here, else why not and how to install it."""
        raise NotImplementedError

    @classmethod
    def version(cls) -> str:
        raise NotImplementedError

    def configure(self) -> None:
        """Write the tool's configuration for ``self.names`` (and ``self.writer``)."""

    def launch(self) -> None:
        """Start the manager(s), without waiting."""
        raise NotImplementedError

    def managers(self) -> list[int]:
        """Every manager process: those whose RSS, wake-ups and CPU are counted."""
        return [proc.pid for proc in self.procs]

    def status_cli(self) -> list[str] | None:
        """The command that shows every program's status; None: none that does."""
        return None

    def api_status(self, name: str) -> object:
        raise NotImplementedError

    def request_stop(self, name: str) -> object:
        raise NotImplementedError

    def request_start(self, name: str) -> object:
        raise NotImplementedError

    def request_stop_all(self) -> object:
        raise NotImplementedError

    def rerun(self, name: str) -> None:
        """Run ``name`` once more (the capture phase's writer): stop it, then start it."""
        pidfd = pidfd_of(self.ann.up[name][0])
        try:
            self.request_stop(name)
            if wait_pidfds([pidfd], TIMEOUT) is None:
                raise MeasureError(f"{name} was not stopped within {TIMEOUT:g} s")
        finally:
            os.close(pidfd)
        self.request_start(name)

    def shutdown(self) -> None:
        """Ask the manager(s) to stop everything and exit (cleanup, not timed)."""
        for pid in self.managers():
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    # -- shared --

    def script(self, path: Path, name: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = self.writer if self.writer is not None and name == self.writer.name else None
        if writer is None:
            text = PROGRAM.format(
                ann=shlex.quote(str(self.ann.directory)), name=name, ready=self.ready_line
            )
        else:
            text = WRITER.format(
                ann=shlex.quote(str(self.ann.directory)),
                name=name,
                line=WRITER_LINE,
                size=writer.size,
                redirect="exec 1>&2\n" if writer.to_stderr else "",
            )
        path.write_text(text)
        path.chmod(0o755)
        return path

    def popen(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.dir / log_name, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.dir,
                start_new_session=True,  # no Ctrl-C from the terminal: we stop it
            )
        self.procs.append(proc)
        return proc

    def program_pids(self) -> list[int]:
        return [pid for pid, _seen in self.ann.up.values()]

    def close(self) -> list[int]:
        """Shut down, then kill by pid whatever of this setup is left; return those pids."""
        pinned = []
        for pid in {*self.managers(), *self.program_pids()}:
            try:
                pinned.append(os.pidfd_open(pid))
            except OSError:
                pass
        try:
            self.shutdown()
        except Exception as exc:  # the cleanup below does it anyway
            log(f"  {self.name}: shutdown: {exc!r}")
        wait_pidfds(pinned, 5.0)
        for pidfd in pinned:
            os.close(pidfd)
        left = kill_marked(SETUP_MARKER, str(self.dir))
        for proc in self.procs:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.ann.close()
        return left


def python_tool_missing(executables: list[str], module: str | None) -> str | None:
    for exe in executables:
        if not (BIN / exe).exists():
            return f"{exe} not found beside {sys.executable}"
    if module is not None:
        try:
            __import__(module)
        except ImportError as exc:
            return f"cannot import {module} ({exc})"
    return None


def package_version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def debian_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


class Daemonctx(Tool):
    name = "daemonctx"
    settings = (
        '`restart = "always"`, `stable_seconds = 1` (a run of 1 s is stable: the next crash'
        ' restarts at once), `start_limit = 0`, `stdout`/`stderr` `"null"`;'
        " `daemonctx supervise --foreground`; capture: `stdout = { path = FILE }`;"
        " stop/start requests: the request line written to an open control connection"
        " (as s6's are written to its control fifo), its answer read after the measure"
    )
    captures = True
    install = "pip install -e . (the checkout) into the Python that runs this benchmark"
    capture_mode = "stdout"  # or "stderr": set by the capture phase

    @classmethod
    def exe(cls) -> str:
        found = BIN / "daemonctx"
        return str(found) if found.exists() else (shutil.which("daemonctx") or "daemonctx")

    @classmethod
    def missing(cls) -> str | None:
        try:
            import daemonctx.supervisor.client  # noqa: F401
        except ImportError as exc:
            return f"cannot import daemonctx.supervisor.client ({exc})"
        return None if shutil.which(cls.exe()) else "no daemonctx command"

    @classmethod
    def version(cls) -> str:
        import daemonctx

        version = str(getattr(daemonctx, "__version__", "?"))
        checkout = Path(daemonctx.__file__).resolve().parent.parent
        try:
            commit = subprocess.run(
                ["git", "-C", str(checkout), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        except OSError:
            commit = ""
        return f"{version} ({commit})" if commit else version

    def configure(self) -> None:
        self.control = self.dir / "ctl" / "control.sock"
        self.control.parent.mkdir(mode=0o700)
        self.config = self.dir / "supervisor.toml"
        lines = [
            "[supervisor]",
            f"control = {toml_string(str(self.control))}",
            f"log = {toml_string(str(self.dir / 'supervisor.log'))}",
        ]
        for name in self.names:
            lines += [
                "",
                f"[program.{name}]",
                f"command = [{toml_string(str(self.scripts[name]))}]",
                'restart = "always"',
                "stable_seconds = 1",
                "start_limit = 0",
                'stdout = "null"',
                'stderr = "null"',
            ]
        writer = self.writer
        if writer is not None:
            out = toml_string(str(writer.output))
            lines += [
                "",
                f"[program.{writer.name}]",
                f"command = [{toml_string(str(self.scripts[writer.name]))}]",
                'restart = "never"',
                *(
                    ['stdout = "null"', f"stderr = {out}"]
                    if writer.to_stderr
                    else [f"stdout = {{ path = {out} }}", 'stderr = "null"']
                ),
            ]
        self.config.write_text("\n".join(lines) + "\n")
        self._client: Any = None
        self._raw: socket.socket | None = None
        self._raw_buffer = b""
        self._raw_id = 0
        self._unanswered = 0

    def launch(self) -> None:
        self.popen(
            [self.exe(), "supervise", "--config", str(self.config), "--foreground"], "supervise.out"
        )

    def client(self) -> Any:
        if self._client is None:
            from daemonctx.supervisor import Client

            self._client = Client(str(self.control), timeout=TIMEOUT)
        return self._client

    def ctl(self, *args: str) -> list[str]:
        return [self.exe(), "ctl", "--control", str(self.control), *args]

    def status_cli(self) -> list[str]:
        return self.ctl("status")

    def api_status(self, name: str) -> object:
        return self.client().status(name)

    def managers(self) -> list[int]:
        """The supervisor and its guard (the process that kills the programs
        if the supervisor dies): both are counted."""
        pids = super().managers()
        for pid in list(pids):
            for child in children(pid):
                try:
                    if b"daemonctx.supervisor.guard" in Path(f"/proc/{child}/cmdline").read_bytes():
                        pids.append(child)
                except OSError:
                    continue
        return pids

    def raw(self, command: str, args: dict[str, Any]) -> None:
        """Write ``command``'s request line on an open control connection, and
        return: its answer (it comes once the programs are stopped or running)
        is read before the next request. As s6's requests are written to its
        control fifo without s6-svc's exec; the Client's own cost is the
        round-trip row's."""
        from daemonctx.supervisor.protocol import encode_request

        if self._raw is None:
            self._raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._raw.settimeout(TIMEOUT)
            self._raw.connect(str(self.control))
        self.drain()
        self._raw_id += 1
        self._raw.sendall(encode_request(self._raw_id, command, args))
        self._unanswered += 1

    def drain(self) -> None:
        """Read the answers of the raw requests sent so far."""
        assert self._raw is not None or not self._unanswered
        while self._unanswered:
            assert self._raw is not None
            while b"\n" not in self._raw_buffer:
                data = self._raw.recv(65536)
                if not data:
                    raise MeasureError("the supervisor closed the control connection")
                self._raw_buffer += data
            line, _, self._raw_buffer = self._raw_buffer.partition(b"\n")
            if b'"error"' in line:
                raise MeasureError(f"the supervisor refused a request: {line[:200]!r}")
            self._unanswered -= 1

    def request_stop(self, name: str) -> object:
        return self.raw("stop", {"names": [name]})

    def request_start(self, name: str) -> object:
        return self.raw("start", {"names": [name]})

    def request_stop_all(self) -> object:
        return self.raw("stop", {"names": ["all"]})

    def shutdown(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._raw is not None:
            self.drain()
            self._raw.close()
            self._raw = None
        from daemonctx.supervisor import Client

        with Client(str(self.control), timeout=10) as client:
            client.shutdown(wait=True)


class Supervisord(Tool):
    name = "supervisord"
    settings = (
        "`startsecs=0`, `autorestart=true`, `stdout_logfile=NONE`, `stderr_logfile=NONE`,"
        " `nodaemon=true`; XML-RPC on a Unix socket; capture: `stdout_logfile=FILE`,"
        " `stdout_logfile_maxbytes=0` (no rotation)"
    )
    captures = True

    @classmethod
    def missing(cls) -> str | None:
        return python_tool_missing(["supervisord", "supervisorctl"], "supervisor.xmlrpc")

    @classmethod
    def version(cls) -> str:
        return package_version("supervisor")

    def configure(self) -> None:
        self.socket = self.dir / "supervisor.sock"
        self.config = self.dir / "supervisord.conf"
        text = f"""[unix_http_server]
file = {self.socket}

[supervisord]
nodaemon = true
logfile = {self.dir / "supervisord.log"}
pidfile = {self.dir / "supervisord.pid"}
childlogdir = {self.dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{self.socket}
"""
        for name in self.names:
            text += f"""
[program:{name}]
command = {self.scripts[name]}
startsecs = 0
autorestart = true
stdout_logfile = NONE
stderr_logfile = NONE
"""
        if self.writer is not None:
            text += f"""
[program:{self.writer.name}]
command = {self.scripts[self.writer.name]}
startsecs = 0
autorestart = false
stdout_logfile = {self.writer.output}
stdout_logfile_maxbytes = 0
stdout_logfile_backups = 0
stderr_logfile = NONE
"""
        self.config.write_text(text)
        self._proxy: Any = None

    def launch(self) -> None:
        self.popen([str(BIN / "supervisord"), "-c", str(self.config)], "supervisord.out")

    def proxy(self) -> Any:
        if self._proxy is None:
            import xmlrpc.client

            from supervisor.xmlrpc import SupervisorTransport

            transport = SupervisorTransport(None, None, f"unix://{self.socket}")
            self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return self._proxy

    def status_cli(self) -> list[str]:
        return [str(BIN / "supervisorctl"), "-c", str(self.config), "status"]

    def api_status(self, name: str) -> object:
        return self.proxy().supervisor.getProcessInfo(name)

    def request_stop(self, name: str) -> object:
        return self.proxy().supervisor.stopProcess(name)

    def request_start(self, name: str) -> object:
        return self.proxy().supervisor.startProcess(name)

    def request_stop_all(self) -> object:
        return self.proxy().supervisor.stopAllProcesses()

    def shutdown(self) -> None:
        self.proxy().supervisor.shutdown()


class Circus(Tool):
    name = "circus"
    settings = (
        "`check_delay = 0.1`, `warmup_delay = 0` (arbiter and watchers), one watcher per"
        " program with `numprocesses = 1`, `copy_env = true`; its ZeroMQ client; capture:"
        " `stdout_stream.class = FileStream`"
    )
    captures = True

    @classmethod
    def missing(cls) -> str | None:
        return python_tool_missing(["circusd", "circusctl"], "circus.client")

    @classmethod
    def version(cls) -> str:
        return package_version("circus")

    def configure(self) -> None:
        self.endpoint = f"ipc://{self.dir / 'circus.sock'}"
        self.config = self.dir / "circus.ini"
        text = f"""[circus]
endpoint = {self.endpoint}
pubsub_endpoint = ipc://{self.dir / "pubsub.sock"}
stats_endpoint = ipc://{self.dir / "stats.sock"}
check_delay = 0.1
warmup_delay = 0
statsd = false
"""
        for name in self.names:
            text += f"""
[watcher:{name}]
cmd = {self.scripts[name]}
numprocesses = 1
warmup_delay = 0
copy_env = true
"""
        if self.writer is not None:
            text += f"""
[watcher:{self.writer.name}]
cmd = {self.scripts[self.writer.name]}
numprocesses = 1
warmup_delay = 0
copy_env = true
stdout_stream.class = FileStream
stdout_stream.filename = {self.writer.output}
"""
        self.config.write_text(text)
        self._client: Any = None

    def launch(self) -> None:
        self.popen(
            [
                str(BIN / "circusd"),
                "--log-output",
                str(self.dir / "circusd.log"),
                str(self.config),
            ],
            "circusd.out",
        )

    def call(self, command: str, **properties: Any) -> Any:
        if self._client is None:
            from circus.client import CircusClient

            self._client = CircusClient(endpoint=self.endpoint, timeout=TIMEOUT)
        answer = self._client.call({"command": command, "properties": properties})
        if answer.get("status") == "error":
            raise MeasureError(f"circus {command}: {answer}")
        return answer

    def status_cli(self) -> list[str]:
        return [str(BIN / "circusctl"), "--endpoint", self.endpoint, "status"]

    def api_status(self, name: str) -> object:
        return self.call("status", name=name)

    def request_stop(self, name: str) -> object:
        return self.call("stop", name=name, waiting=True)

    def request_start(self, name: str) -> object:
        return self.call("start", name=name, waiting=True)

    def request_stop_all(self) -> object:
        return self.call("stop", waiting=True)

    def shutdown(self) -> None:
        try:
            self.call("quit", waiting=True)
        finally:
            if self._client is not None:
                self._client.stop()


class Zdaemon(Tool):
    name = "zdaemon"
    settings = (
        "one manager per program (zdaemon's design): `backoff-limit 1` (the smallest that"
        " restarts at once after a run of 1 s; 0 busy-loops), `forever true`, the default"
        " transcript (none: /dev/null); requests on its socket, as zdaemon's own client"
        " sends them; a stopped program's manager exits, so a start is `zdaemon start`"
        " (which starts a new manager), not waited for; capture: `transcript FILE`"
    )
    captures = True

    @classmethod
    def missing(cls) -> str | None:
        return python_tool_missing(["zdaemon"], "zdaemon.zdctl")

    @classmethod
    def version(cls) -> str:
        return package_version("zdaemon")

    def configure(self) -> None:
        (self.dir / "zd").mkdir()
        self.configs: dict[str, Path] = {}
        programs = [*self.names, *([self.writer.name] if self.writer else [])]
        for name in programs:
            transcript = ""
            if self.writer is not None and name == self.writer.name:
                transcript = f"  transcript {self.writer.output}\n"
            path = self.dir / "zd" / f"{name}.conf"
            path.write_text(
                "<runner>\n"
                f"  program {self.scripts[name]}\n"
                f"  socket-name {self.dir / 'zd' / name}.sock\n"
                "  backoff-limit 1\n"
                "  forever true\n"
                "  daemon true\n"
                f"{transcript}"
                "</runner>\n"
            )
            self.configs[name] = path
        self._managers: dict[str, int] = {}

    def launch(self) -> None:
        for name, config in self.configs.items():
            self.popen([str(BIN / "zdaemon"), "-C", str(config), "start"], f"zdctl-{name}.out")

    def send(self, name: str, command: str) -> str:
        """One command on the manager's socket, as zdctl's send_action does."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(str(self.dir / "zd" / f"{name}.sock"))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = sock.recv(1000)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode()

    def managers(self) -> list[int]:
        for name in self.configs:
            if name in self._managers:
                continue
            try:
                reply = self.send(name, "status")
            except OSError:
                continue
            for line in reply.splitlines():
                if line.startswith("manager="):
                    self._managers[name] = int(line.split("=", 1)[1])
        return list(self._managers.values())

    def status_cli(self) -> list[str] | None:
        if len(self.configs) != 1:
            return None  # one manager per program: one command per program
        (config,) = self.configs.values()
        return [str(BIN / "zdaemon"), "-C", str(config), "status"]

    def api_status(self, name: str) -> object:
        return self.send(name, "status")

    def request_stop(self, name: str) -> object:
        return self.send(name, "stop")

    def request_start(self, name: str) -> object:
        self._managers.pop(name, None)
        return self.popen(
            [str(BIN / "zdaemon"), "-C", str(self.configs[name]), "start"], "zdctl.out"
        )

    def rerun(self, name: str) -> None:
        self.send(name, "restart")  # the manager stays: stop and start would replace it

    def request_stop_all(self) -> object:
        return [self.send(name, "stop") for name in self.configs]

    def shutdown(self) -> None:
        for name in self.configs:  # the manager exits once its program is stopped
            try:
                self.send(name, "stop")
            except OSError:
                pass


class S6(Tool):
    name = "s6"
    settings = (
        "defaults but one: `notification-fd` 3, and the program, after its announcement,"
        " writes its readiness line there (`echo >&3`): s6-supervise restarts at once only"
        " a service that was ready for 1 s, else it waits 1 s; `s6-svscan` on a scan"
        " directory, one service directory per program, `./run` is the program; requests"
        " written to `supervise/control` (what `s6-svc -d`/`-u` writes, without its exec)"
    )
    install = "apt-get install -y s6"

    @classmethod
    def missing(cls) -> str | None:
        for exe in ("s6-svscan", "s6-supervise", "s6-svstat", "s6-svc"):
            if shutil.which(exe) is None:
                return f"no {exe}"
        return None

    @classmethod
    def version(cls) -> str:
        return debian_version("s6")

    has_api = False
    top = "s6-svscan"

    ready_line = "echo >&3\n"

    def script(self, path: Path, name: str) -> Path:
        service = self.dir / "scan" / name
        service.mkdir(parents=True)
        if self.ready_line:
            (service / "notification-fd").write_text("3\n")
        return super().script(service / "run", name)

    def launch(self) -> None:
        self.popen([shutil.which(self.top) or self.top, str(self.dir / "scan")], f"{self.top}.out")

    def managers(self) -> list[int]:
        return [pid for proc in self.procs for pid in (proc.pid, *children(proc.pid))]

    def service(self, name: str) -> str:
        return str(self.dir / "scan" / name)

    def status_cli(self) -> list[str]:
        services = [self.service(name) for name in self.names]
        if len(services) == 1:
            return [shutil.which("s6-svstat") or "s6-svstat", services[0]]
        # s6-svstat shows one service: one command per service, from one shell
        loop = 'for d in "$@"; do s6-svstat "$d"; done'
        return ["/bin/sh", "-c", loop, "sh", *services]

    def control(self, name: str, command: bytes) -> None:
        fd = os.open(f"{self.service(name)}/supervise/control", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, command)
        finally:
            os.close(fd)

    def request_stop(self, name: str) -> object:
        self.control(name, b"d")
        return None

    def request_start(self, name: str) -> object:
        self.control(name, b"u")
        return None

    def request_stop_all(self) -> object:
        for name in self.names:
            self.control(name, b"d")
        return None


class Runit(S6):
    name = "runit"
    settings = (
        "defaults; `runsvdir` on a service directory, one `runsv` per program, `./run` is the"
        " program; requests written to `supervise/control` (runsv(8)'s control pipe)"
    )
    install = "apt-get install -y runit"
    top = "runsvdir"
    ready_line = ""

    @classmethod
    def missing(cls) -> str | None:
        for exe in ("runsvdir", "runsv", "sv"):
            if shutil.which(exe) is None:
                return f"no {exe}"
        return None

    @classmethod
    def version(cls) -> str:
        return debian_version("runit")

    def status_cli(self) -> list[str]:
        return [shutil.which("sv") or "sv", "status", *(self.service(n) for n in self.names)]

    def shutdown(self) -> None:
        for name in self.names:
            try:
                self.control(name, b"dx")
            except OSError:
                pass
        for proc in self.procs:
            proc.send_signal(signal.SIGHUP)  # runsvdir: TERM to each runsv, then exit


TOOLS: dict[str, type[Tool]] = {
    tool.name: tool for tool in (Daemonctx, S6, Runit, Supervisord, Circus, Zdaemon)
}


# -- the run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, tools: list[type[Tool]]) -> None:
        self.args = args
        self.root = root
        self.tools = tools
        self.spawner = Spawner()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env[MARKER] = str(root)
        self.env = env
        self.results: dict[str, dict[str, list[float]]] = {}
        self.notes: list[str] = []
        self.daemonctx_errors: list[str] = []
        self.rng = random.Random(args.seed)
        self.setups = 0
        self.open: list[Tool] = []

    def record(self, metric: str, tool: str, value: float) -> None:
        self.results.setdefault(metric, {}).setdefault(tool, []).append(value)

    def error(self, tool: str, what: str, exc: BaseException) -> None:
        text = f"{tool}: {what}: {exc}"
        log(f"  error: {text}")
        if tool == "daemonctx":
            self.daemonctx_errors.append(text)
        self.notes.append(text)

    def setup(
        self, tool: type[Tool], label: str, names: list[str], writer: Writer | None = None
    ) -> Tool:
        self.setups += 1
        made = tool(self, self.root / f"{self.setups:03d}-{tool.name}-{label}", names, writer)
        self.open.append(made)
        return made

    def close(self, setup: Tool) -> None:
        left = setup.close()
        if setup in self.open:
            self.open.remove(setup)
        if left:
            log(f"  {setup.name}: killed {len(left)} leftover process(es) after its shutdown")

    def shuffled(self, items: list[Any]) -> list[Any]:
        order = list(items)
        self.rng.shuffle(order)
        return order

    def launch_all(self, setups: list[Tool], count: int, timeout: float) -> list[Tool]:
        """Launch each setup; time until ``count`` programs announced themselves;
        returns those that made it."""
        ready = []
        for setup in setups:
            start = now_ns()
            try:
                setup.launch()
                end = setup.ann.wait(lambda s=setup: len(s.ann.up) >= count, timeout)
                if end is None:
                    raise MeasureError(
                        f"{len(setup.ann.up)} of {count} programs up after {timeout:g} s"
                        f" (see {setup.dir})"
                    )
            except Exception as exc:
                self.error(setup.name, "launch", exc)
                self.close(setup)
                continue
            setup.launched_ms = ms(end - start)
            ready.append(setup)
        return ready

    # -- phase 1: one program each --

    def phase_one(self) -> None:
        args = self.args
        log(f"one program per tool: {args.rounds} rounds")
        setups = [self.setup(tool, "one", ["p0"]) for tool in self.tools]
        setups = self.launch_all(setups, 1, 60.0)
        time.sleep(args.settle)
        for setup in setups:
            self.record("rss_1_mib", setup.name, sum(map(rss_kib, setup.managers())) / 1024)
        self.idle(setups, "1")
        by_hand = self.root / "by-hand"
        hand_ann = Announcements(by_hand / "ann")
        hand_script = by_hand / "p0"
        hand_script.write_text(
            PROGRAM.format(ann=shlex.quote(str(hand_ann.directory)), name="p0", ready="")
        )
        hand_script.chmod(0o755)
        # one uncounted call of each command first: caches warm, outputs checked
        for setup in setups:
            self.check_status_cli(setup)
        try:
            for number in range(args.rounds):
                order = self.shuffled([*setups, None])
                for setup in order:
                    if setup is None:
                        self.by_hand(hand_ann, hand_script)
                    else:
                        self.measure(setup, "crash_ms", self.crash, setup, "p0")
                for setup in self.shuffled(setups):
                    cli = setup.status_cli()
                    if cli is not None:
                        self.measure(setup, "status_cli_ms", self.cli, setup, cli)
                for setup in self.shuffled(setups):
                    if setup.has_api:
                        for _ in range(args.status_calls):
                            self.measure(setup, "status_api_ms", self.api_status, setup, "p0")
                for setup in self.shuffled(setups):
                    try:
                        stop_ms, start_ms = self.stop_start(setup, "p0")
                    except Exception as exc:
                        self.error(setup.name, "stop/start", exc)
                        continue
                    self.record("stop_one_ms", setup.name, stop_ms)
                    self.record("start_one_ms", setup.name, start_ms)
                log(f"  round {number + 1}/{args.rounds}")
        finally:
            hand_ann.close()
            for setup in setups:
                self.close(setup)

    def measure(self, setup: Tool, metric: str, how: Callable[..., float], *args: Any) -> None:
        try:
            value = how(*args)
        except Exception as exc:
            self.error(setup.name, metric, exc)
            return
        self.record(metric, setup.name, value)

    def large_crashes(self, setup: Tool) -> None:
        """Crashes in the large supervisor, each paired with one in a supervisor of a
        single program launched beside it, in a random order each round: the goal
        compares the two, and a machine whose speed drifts between phases (it does)
        must not decide it."""
        single = self.setup(Daemonctx, "single", ["p0"])
        try:
            if not self.launch_all([single], 1, 30.0):
                return
            for name in self.shuffled(list(setup.ann.up))[: self.args.rounds]:
                pair = [(setup, name, "large_crash_ms"), (single, "p0", "large_crash_one_ms")]
                for tool, victim, metric in self.shuffled(pair):
                    self.measure(tool, metric, self.crash, tool, victim)
        finally:
            self.close(single)

    def crash(self, setup: Tool, name: str) -> float:
        ann = setup.ann
        pid, seen = ann.up[name]
        wait_until(seen + SPACING_NS)
        pidfd = pidfd_of(pid)
        try:
            before = ann.count[name]
            start = now_ns()
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return ms(ann.wait_up(name, before) - start)
        finally:
            os.close(pidfd)

    def by_hand(self, ann: Announcements, script: Path) -> None:
        """The floor under every restart: spawn the program, see its announcement."""
        before = ann.count.get("p0", 0)
        start = now_ns()
        pid = self.spawner.spawn([str(script)], self.env)
        try:
            self.record("crash_ms", "by hand", ms(ann.wait_up("p0", before) - start))
        except MeasureError as exc:
            self.error("by hand", "spawn", exc)
        finally:
            os.kill(pid, signal.SIGKILL)
            self.spawner.reap(pid)

    def cli(self, setup: Tool, argv: list[str]) -> float:
        elapsed, _code = self.spawner.timed(argv, setup.env)
        return elapsed

    def check_status_cli(self, setup: Tool) -> None:
        argv = setup.status_cli()
        if argv is None:
            return
        out = setup.dir / "status.out"
        try:
            _elapsed, code = self.spawner.timed(argv, setup.env, str(out))
        except MeasureError as exc:
            self.error(setup.name, "status command", exc)
            return
        text = out.read_text(errors="replace").strip()
        if code != 0 or not text:
            shown = text.splitlines()[-1] if text else "no output"
            self.notes.append(f"{setup.name}: `{shlex.join(argv[:3])} ...` exited {code}: {shown}")

    def api_status(self, setup: Tool, name: str) -> float:
        start = now_ns()
        setup.api_status(name)
        return ms(now_ns() - start)

    def stop_start(self, setup: Tool, name: str) -> tuple[float, float]:
        ann = setup.ann
        pid, seen = ann.up[name]
        wait_until(seen + SPACING_NS)
        pidfd = pidfd_of(pid)
        try:
            stop_ms = timed_request(
                lambda: setup.request_stop(name), lambda timeout: wait_pidfds([pidfd], timeout)
            )
        finally:
            os.close(pidfd)
        before = ann.count[name]
        start_ms = timed_request(
            lambda: setup.request_start(name),
            lambda timeout: ann.wait(lambda: ann.count[name] > before, timeout),
        )
        return stop_ms, start_ms

    def idle(self, setups: list[Tool], label: str) -> None:
        """Wake-ups and CPU of every manager process over the idle window, all at once."""
        seconds = self.args.idle
        pids = {setup: setup.managers() for setup in setups}
        before = {s: (sum(map(wakeups, p)), sum(map(cpu_ns, p))) for s, p in pids.items()}
        time.sleep(seconds)
        for setup, procs in pids.items():
            wake = sum(map(wakeups, procs)) - before[setup][0]
            cpu = sum(map(cpu_ns, procs)) - before[setup][1]
            self.record(f"idle_wakeups_{label}", setup.name, wake * 10 / seconds)
            self.record(f"idle_cpu_ms_{label}", setup.name, cpu / 1e6 * 10 / seconds)

    # -- phase 2: many programs --

    def phase_many(self) -> None:
        args = self.args
        count = args.programs
        names = [f"p{i}" for i in range(count)]
        log(f"{count} programs per tool: {args.rounds_many} rounds")
        for number in range(args.rounds_many):
            for tool in self.shuffled(self.tools):
                setup = self.setup(tool, f"many{number}", names)
                try:
                    self.many_round(setup, count)
                except Exception as exc:
                    self.error(setup.name, f"{count} programs", exc)
                finally:
                    self.close(setup)
            log(f"  round {number + 1}/{args.rounds_many}")

    def many_round(self, setup: Tool, count: int) -> None:
        timeout = 120.0 if setup.name == "zdaemon" else 60.0
        if not self.launch_all([setup], count, timeout):
            return
        self.record("start_all_ms", setup.name, setup.launched_ms)
        time.sleep(self.args.settle)
        self.record("rss_many_mib", setup.name, sum(map(rss_kib, setup.managers())) / 1024)
        cli = setup.status_cli()
        if cli is not None:
            self.check_status_cli(setup)
            for _ in range(self.args.status_runs):
                self.measure(setup, "status_all_ms", self.cli, setup, cli)
        pidfds = [pidfd_of(pid) for pid in setup.program_pids()]
        try:
            elapsed = timed_request(
                setup.request_stop_all, lambda timeout: wait_pidfds(pidfds, timeout)
            )
            self.record("stop_all_ms", setup.name, elapsed)
        finally:
            for pidfd in pidfds:
                os.close(pidfd)

    # -- phase 3: daemonctx with many more programs --

    def phase_large(self) -> None:
        args = self.args
        count = args.programs_large
        log(f"daemonctx with {count} programs")
        setup = self.setup(Daemonctx, "large", [f"p{i}" for i in range(count)])
        try:
            if not self.launch_all([setup], count, 120.0):
                return
            self.record("large_start_ms", "daemonctx", setup.launched_ms)
            time.sleep(args.settle)
            self.record("large_rss_mib", "daemonctx", sum(map(rss_kib, setup.managers())) / 1024)
            self.idle([setup], "large")
            cli = setup.status_cli()
            self.check_status_cli(setup)
            for _ in range(args.status_runs):
                self.measure(setup, "large_status_cli_ms", self.cli, setup, cli)
            for _ in range(args.status_calls):
                self.measure(setup, "large_status_api_ms", self.api_status, setup, "p0")
            self.large_crashes(setup)
            pidfds = [pidfd_of(pid) for pid in setup.program_pids()]
            try:
                start = now_ns()
                pid = self.spawner.spawn(setup.ctl("stop", "all"), setup.env)
                end = wait_pidfds(pidfds, 120.0)
                code = self.spawner.reap(pid)
                if end is None or code != 0:
                    raise MeasureError(f"ctl stop all: exit {code}, all gone: {end is not None}")
                self.record("large_stop_ms", "daemonctx", ms(end - start))
            finally:
                for pidfd in pidfds:
                    os.close(pidfd)
        except Exception as exc:
            self.error("daemonctx", f"{count} programs", exc)
        finally:
            self.close(setup)

    # -- phase 4: captured output --

    def phase_capture(self) -> None:
        args = self.args
        line = len(WRITER_LINE) + 1  # whole lines: no partial last line a capture may hold back
        size = args.capture_mb * 1_000_000 // line * line
        log(f"captured output: {args.capture_mb} MB per run, {args.capture_rounds} rounds")
        setups: list[Tool] = []
        for tool in self.tools:
            if not tool.captures:
                continue
            writer = Writer("w", size, self.root / f"capture-{tool.name}.log")
            setup = self.setup(tool, "capture", [], writer)
            if isinstance(setup, Daemonctx):
                setup = self.daemonctx_capture(setup, writer)
                if setup is None:
                    continue
            elif not self.launch_all([setup], 1, 60.0):
                continue
            setups.append(setup)
        direct = Writer("w", size, self.root / "capture-direct.log")
        direct_ann = Announcements(self.root / "direct" / "ann")
        direct_script = self.root / "direct" / "w"
        direct_script.write_text(
            WRITER.format(
                ann=shlex.quote(str(direct_ann.directory)),
                name="w",
                line=WRITER_LINE,
                size=size,
                redirect="",
            )
        )
        direct_script.chmod(0o755)
        try:
            for setup in setups:  # the boot-time run was the warm-up
                try:
                    self.wait_written(setup.ann, 0, setup.writer)
                except Exception as exc:
                    self.error(setup.name, "capture warm-up", exc)
            for number in range(args.capture_rounds):
                for setup in self.shuffled([*setups, None]):
                    if setup is None:
                        self.measure_direct(direct_ann, direct_script, direct)
                    else:
                        try:
                            self.capture_round(setup)
                        except Exception as exc:
                            self.error(setup.name, "capture", exc)
                log(f"  round {number + 1}/{args.capture_rounds}")
        finally:
            direct_ann.close()
            for setup in setups:
                self.close(setup)
            for path in self.root.glob("capture-*.log"):
                path.unlink()

    def daemonctx_capture(self, setup: Tool, writer: Writer) -> Tool | None:
        """daemonctx with ``stdout = { path = ... }``, captured through the supervisor;
        when that is refused, or the program's stdout is not a pipe to the
        supervisor yet, through stderr, which always passes through it."""
        try:
            setup.launch()
            if setup.ann.wait(lambda: "w" in setup.ann.up, 30.0) is None:
                raise MeasureError("the writer did not start within 30 s")
            target = fd_target(setup.ann.up["w"][0], 1)
            if target.startswith("pipe:"):
                Daemonctx.capture_mode = "stdout"
                return setup
            reason = f"the program's stdout is {target}, not a pipe to the supervisor"
        except Exception as exc:
            output = read_text(str(setup.dir / "supervise.out")).strip().splitlines()
            reason = f"{exc}: {output[-1] if output else 'no output'}"
        self.notes.append(
            f"daemonctx: `stdout = {{ path = ... }}` did not capture through the supervisor"
            f" ({reason}); measured through stderr, which passes through it"
        )
        self.close(setup)
        Daemonctx.capture_mode = "stderr"
        again = self.setup(
            Daemonctx, "capture-stderr", [], Writer(writer.name, writer.size, writer.output, True)
        )
        return again if self.launch_all([again], 1, 30.0) else None

    def wait_written(self, ann: Announcements, done_before: int, writer: Writer | None) -> int:
        """Wait for the writer's ``done`` file, then for its output file to hold
        everything (a supervisor may still be copying): that instant, in ns."""
        assert writer is not None
        if ann.wait(lambda: ann.done.get(writer.name, 0) > done_before, 300.0) is None:
            raise MeasureError("the writer did not finish within 300 s")
        deadline = time.monotonic() + 60.0
        while True:
            try:
                size = os.stat(writer.output).st_size
            except FileNotFoundError:
                size = 0
            if size >= writer.size:
                return now_ns()
            if time.monotonic() > deadline:
                raise MeasureError(f"the output file holds {size} of {writer.size} bytes")
            time.sleep(0.0005)

    def capture_round(self, setup: Tool) -> None:
        writer = setup.writer
        assert writer is not None
        os.truncate(writer.output, 0)
        ann = setup.ann
        before, done_before = ann.count["w"], ann.done.get("w", 0)
        setup.rerun("w")  # the last run's writer sleeps: stopped, then started
        started = ann.wait_up("w", before)
        managers = setup.managers()
        cpu_before = sum(map(cpu_ns, managers))  # from the writer's start: no stop nor spawn
        end = self.wait_written(ann, done_before, writer)
        cpu = sum(map(cpu_ns, managers)) - cpu_before
        megabytes = writer.size / 1e6
        self.record("capture_mbps", setup.name, megabytes / ((end - started) / 1e9))
        self.record("capture_cpu_s_per_mb", setup.name, cpu / 1e9 / megabytes)

    def measure_direct(self, ann: Announcements, script: Path, writer: Writer) -> None:
        try:
            os.truncate(writer.output, 0)
        except FileNotFoundError:
            pass
        before, done_before = ann.count.get("w", 0), ann.done.get("w", 0)
        pid = self.spawner.spawn([str(script)], self.env, str(writer.output), append=True)
        try:
            started = ann.wait_up("w", before)
            end = self.wait_written(ann, done_before, writer)
            self.record("capture_mbps", "direct", writer.size / 1e6 / ((end - started) / 1e9))
        except MeasureError as exc:
            self.error("direct", "capture", exc)
        finally:
            os.kill(pid, signal.SIGKILL)
            self.spawner.reap(pid)


# -- the report ----------------------------------------------------------------------------

METRICS: list[tuple[str, str, str, str | None]] = [
    # key, title, unit, the anchor the goal names (the ratio column)
    ("crash_ms", "crash -> running again, 1 program", "ms", "s6"),
    ("stop_one_ms", "stop one program: request -> its process gone", "ms", "s6"),
    ("start_one_ms", "start it again: request -> running", "ms", "s6"),
    ("status_cli_ms", "`status` by the command line, 1 program", "ms", "supervisord"),
    ("status_api_ms", "one status round trip through the API", "ms", "zdaemon"),
    ("idle_wakeups_1", "wake-ups per 10 s idle, 1 program", "", None),
    ("idle_cpu_ms_1", "CPU per 10 s idle, 1 program", "ms", None),
    ("rss_1_mib", "manager RSS, 1 program", "MiB", "supervisord"),
    ("start_all_ms", "{many} programs: all running, from the manager's launch", "ms", "s6"),
    ("status_all_ms", "{many} programs: status of all by the command line", "ms", "supervisord"),
    ("stop_all_ms", "{many} programs: stop all, request -> every process gone", "ms", "s6"),
    ("rss_many_mib", "manager RSS, {many} programs", "MiB", "supervisord"),
    ("large_start_ms", "daemonctx, {large} programs: all running", "ms", None),
    ("large_status_cli_ms", "daemonctx, {large} programs: `ctl status`", "ms", None),
    ("large_status_api_ms", "daemonctx, {large} programs: `Client.status('p0')`", "ms", None),
    ("large_rss_mib", "daemonctx, {large} programs: manager RSS", "MiB", None),
    ("idle_wakeups_large", "daemonctx, {large} programs: wake-ups per 10 s idle", "", None),
    ("idle_cpu_ms_large", "daemonctx, {large} programs: CPU per 10 s idle", "ms", None),
    ("large_crash_ms", "daemonctx, {large} programs: crash -> running again", "ms", None),
    (
        "large_crash_one_ms",
        "daemonctx, 1 program, its crashes paired with the {large}'s: crash -> running again",
        "ms",
        None,
    ),
    (
        "large_stop_ms",
        "daemonctx, {large} programs: `ctl stop all` -> every process gone",
        "ms",
        None,
    ),
    ("capture_mbps", "captured output, MB/s (higher is better)", "MB/s", "direct"),
    ("capture_cpu_s_per_mb", "captured output: the supervisor's CPU per MB", "CPU s/MB", None),
]


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def report_tables(bench: Bench) -> list[str]:
    args = bench.args
    out: list[str] = []
    for key, title, unit, anchor in METRICS:
        values = bench.results.get(key)
        if not values:
            continue
        title = title.format(many=args.programs, large=args.programs_large)
        out.append(f"### {title}" + (f" ({unit})" if unit else ""))
        out.append("")
        anchor_median = median(values.get(anchor)) if anchor else None
        header = "| tool | median | min | max | n |" + (f" x {anchor} |" if anchor else "")
        out.append(header)
        out.append("|---" * (header.count("|") - 1) + "|")
        for tool in sorted(values, key=lambda t: ORDER.index(t) if t in ORDER else 99):
            vals = values[tool]
            cells = [tool, fmt(median(vals)), fmt(min(vals)), fmt(max(vals)), str(len(vals))]
            row = "| " + " | ".join(cells) + " |"
            if anchor:
                mid = median(vals)
                ratio = mid / anchor_median if anchor_median and mid is not None else None
                row += f" {fmt(ratio)} |"
            out.append(row)
        out.append("")
    return out


def goals(bench: Bench) -> list[tuple[str, str, str]]:
    """Each goal of the issue: (goal, this run, MET / MISSED / not measured: why)."""
    args = bench.args
    results = bench.results

    def mid(metric: str, tool: str = "daemonctx") -> float | None:
        return median(results.get(metric, {}).get(tool))

    rows: list[tuple[str, str, str]] = []

    def ratio_goal(text: str, metric: str, anchor: str, limit: float, higher: bool = False) -> None:
        ours, theirs = mid(metric), mid(metric, anchor)
        if ours is None or theirs is None:
            missing = "daemonctx" if ours is None else anchor
            rows.append((text, "-", f"not measured ({missing})"))
            return
        ratio = ours / theirs if theirs else float("inf")
        met = ratio >= limit if higher else ratio <= limit
        shown = f"{fmt(ours)} vs {fmt(theirs)}: {ratio:.2f} x"
        rows.append((text, shown, "MET" if met else "MISSED"))

    def absolute_goal(text: str, metric: str, limit: float, unit: str, needed: bool) -> None:
        value = mid(metric)
        if not needed:
            shown = "-" if value is None else f"{fmt(value)} {unit}"
            rows.append((text, shown, f"not evaluated ({args.programs_large} programs)"))
        elif value is None:
            rows.append((text, "-", "not measured"))
        else:
            rows.append((text, f"{fmt(value)} {unit}", "MET" if value <= limit else "MISSED"))

    ratio_goal("crash -> running again ≤ 1.5 x s6", "crash_ms", "s6", 1.5)
    large = args.programs_large >= 1000
    # Against the single program measured in the same rounds (the large phase pairs
    # them); the one-program phase's median only when that pairing has no result.
    one, many = mid("large_crash_one_ms") or mid("crash_ms"), mid("large_crash_ms")
    text = (
        f"crash -> running again with {args.programs_large} programs no slower than with one"
        " (≤ 1.10 x: within this measure's noise; paired rounds)"
    )
    if one is None or many is None:
        rows.append((text, "-", "not measured"))
    else:
        verdict = "MET" if many / one <= 1.10 else "MISSED"
        if not large:
            verdict = f"not evaluated ({args.programs_large} programs)"
        rows.append((text, f"{fmt(many)} vs {fmt(one)} ms: {many / one:.2f} x", verdict))
    ratio_goal("stopping one program ≤ 1.5 x s6 (request -> gone)", "stop_one_ms", "s6", 1.5)
    ratio_goal("starting it ≤ 1.5 x s6 (request -> running)", "start_one_ms", "s6", 1.5)
    ratio_goal(
        "`daemonctx ctl status` ≤ 0.3 x `supervisorctl status`", "status_cli_ms", "supervisord", 0.3
    )
    ratio_goal(
        "one status round trip through `Client` ≤ zdaemon's", "status_api_ms", "zdaemon", 1.0
    )
    for label, count in (("1", 1), ("large", args.programs_large)):
        wake, cpu = mid(f"idle_wakeups_{label}"), mid(f"idle_cpu_ms_{label}")
        text = f"idle with {count} program{'s' if count > 1 else ''}: 0 wake-ups and 0 CPU"
        if wake is None or cpu is None:
            rows.append((text, "-", "not measured"))
        else:
            met = wake == 0 and cpu == 0
            shown = f"{fmt(wake)} wake-ups, {fmt(cpu)} ms CPU per 10 s"
            verdict = "MET" if met else "MISSED"
            if label == "large" and not large:
                verdict = f"not evaluated ({count} programs)"
            rows.append((text, shown, verdict))
    ratio_goal("manager RSS, 1 program ≤ 0.6 x supervisord's", "rss_1_mib", "supervisord", 0.6)
    many_ok = args.programs == 100
    for text, metric, anchor, limit in (
        ("manager RSS, 100 programs ≤ 0.6 x supervisord's", "rss_many_mib", "supervisord", 0.6),
        ("100 programs: all running ≤ 1.5 x s6", "start_all_ms", "s6", 1.5),
        (
            "100 programs: status of all ≤ 0.3 x supervisorctl's",
            "status_all_ms",
            "supervisord",
            0.3,
        ),
        ("100 programs: stop all ≤ 1.5 x s6", "stop_all_ms", "s6", 1.5),
    ):
        if many_ok:
            ratio_goal(text, metric, anchor, limit)
        else:
            rows.append((text, "-", f"not evaluated ({args.programs} programs)"))
    absolute_goal("1,000 programs: all running within 2 s", "large_start_ms", 2000, "ms", large)
    absolute_goal(
        "1,000 programs: `ctl status` within 100 ms", "large_status_cli_ms", 100, "ms", large
    )
    absolute_goal("1,000 programs: manager RSS within 64 MiB", "large_rss_mib", 64, "MiB", large)
    absolute_goal("1,000 programs: `ctl stop all` within 2 s", "large_stop_ms", 2000, "ms", large)
    ratio_goal(
        "captured output ≥ 0.8 x writing to the file itself", "capture_mbps", "direct", 0.8, True
    )
    return rows


def machine() -> dict[str, str]:
    cpu = "?"
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({sys.executable})",
    }


# -- main ------------------------------------------------------------------------------------


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds with one program (30)")
    parser.add_argument("--rounds-many", type=int, default=3, help="rounds of --programs (3)")
    parser.add_argument("--programs", type=int, default=100, help="the many programs (100)")
    parser.add_argument(
        "--programs-large", type=int, default=1000, help="daemonctx's large run (1000)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, seconds (10)")
    parser.add_argument("--settle", type=float, default=2.0, help="quiet before RSS/idle (2 s)")
    parser.add_argument("--status-calls", type=int, default=10, help="API calls a round (10)")
    parser.add_argument("--status-runs", type=int, default=3, help="status commands a round (3)")
    parser.add_argument("--capture-mb", type=int, default=64, help="MB per capture run (64)")
    parser.add_argument("--capture-rounds", type=int, default=5, help="capture rounds (5)")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"a subset of {','.join(TOOLS)} (all)"
    )
    parser.add_argument(
        "--phases", default="one,many,large,capture", help="a subset of one,many,large,capture"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts, for CI: 3 rounds, 20 programs, 100 for daemonctx, 1 s idle, 4 MB",
    )
    parser.add_argument("--seed", type=int, default=1016, help="the order of the rounds")
    parser.add_argument("--json", metavar="FILE", help="write every number to FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.rounds_many, args.programs, args.programs_large = 3, 1, 20, 100
        args.idle, args.settle, args.status_calls, args.status_runs = 1.0, 0.5, 3, 1
        args.capture_mb, args.capture_rounds = 4, 2
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.tools) - set(TOOLS)
    if unknown or "daemonctx" not in args.tools:
        parser.error(f"--tools: daemonctx and any of {', '.join(TOOLS)}; got {args.tools}")
    if set(args.phases) - {"one", "many", "large", "capture"}:
        parser.error(f"--phases: a subset of one,many,large,capture; got {args.phases}")
    if min(args.rounds, args.rounds_many, args.programs, args.programs_large) < 1:
        parser.error("counts must be at least 1")
    return args


def raise_nofile(needed: int) -> str | None:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; an error when that is too small."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"RLIMIT_NOFILE's hard limit is {hard}, and {needed} descriptors are needed"
            f" (the benchmark holds a pidfd per program; the supervisor a pidfd and a pipe"
            f" or two): raise it (ulimit -Hn, LimitNOFILE=) or lower --programs-large"
        )
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return None


def compile_bytecode() -> None:
    """Compile daemonctx's modules, as pip does at install: a checkout's bytecode
    may be stale, and with PYTHONDONTWRITEBYTECODE every start would compile
    them again (the PyPI anchors were compiled when installed). Forced: compileall
    trusts a .pyc whose recorded mtime matches to the second, the import system
    also checks the size, so a file edited within the second of its last
    compile would be compiled again at every start."""
    import compileall

    import daemonctx

    compileall.compile_dir(str(Path(daemonctx.__file__).parent), quiet=1, force=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.platform != "linux":
        print("bench_supervise.py: Linux only", file=sys.stderr)
        return 2
    problem = raise_nofile(4 * max(args.programs_large, args.programs) + 256)
    if problem:
        print(f"bench_supervise.py: {problem}", file=sys.stderr)
        return 2

    info = machine()
    tools: list[type[Tool]] = []
    skipped: list[str] = []
    versions: dict[str, str] = {}
    for name in args.tools:
        tool = TOOLS[name]
        why = tool.missing()
        if why is None:
            tools.append(tool)
            versions[name] = tool.version()
        else:
            skipped.append(f"{name}: skipped, {why}; to install: {tool.install}")
    if Daemonctx not in tools:
        print(f"bench_supervise.py: {skipped[0]}", file=sys.stderr)
        return 2
    compile_bytecode()

    print(f"# daemonctx supervisor benchmark, {info['date']}")
    print()
    print(f"- machine: {info['cpu']}; {info['kernel']}; Python {info['python']}")
    print(f"- tools: {', '.join(f'{n} {v}' for n, v in versions.items())}")
    for line in skipped:
        print(f"- {line}")
    print(f"- command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"- rounds: {args.rounds} with one program ({args.status_calls} API calls each),"
        f" {args.rounds_many} with {args.programs}, one with {args.programs_large} (daemonctx),"
        f" {args.capture_rounds} capture runs of {args.capture_mb} MB; idle window {args.idle:g} s"
    )
    print("- settings:")
    for tool in tools:
        print(f"  - {tool.name}: {tool.settings}")
    print()
    sys.stdout.flush()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    root = Path(tempfile.mkdtemp(prefix="daemonctx-bench-sv-"))
    root.chmod(0o755)
    bench = Bench(args, root, tools)
    interrupted = False
    leftovers: list[int] = []
    started = time.monotonic()
    try:
        if "one" in args.phases:
            bench.phase_one()
        if "many" in args.phases:
            bench.phase_many()
        if "large" in args.phases:
            bench.phase_large()
        if "capture" in args.phases:
            bench.phase_capture()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; reporting what was measured")
    finally:
        for setup in list(bench.open):
            try:
                bench.close(setup)
            except Exception as exc:
                log(f"  {setup.name}: close: {exc!r}")
        bench.spawner.kill_all()
        leftovers = kill_marked(MARKER, str(root))
        shutil.rmtree(root, ignore_errors=True)
    remaining = marked(MARKER, str(root))
    elapsed = time.monotonic() - started

    for line in report_tables(bench):
        print(line)
    if "capture" in args.phases:
        mode = Daemonctx.capture_mode
        print(f"daemonctx's capture was measured through its program's {mode}.")
        print()
    print("## Goals")
    print()
    print("| goal | this run | |")
    print("|---|---|---|")
    verdicts = goals(bench)
    for text, shown, verdict in verdicts:
        print(f"| {text} | {shown} | {verdict} |")
    print()
    if bench.notes:
        print("## Notes")
        print()
        for note in dict.fromkeys(bench.notes):
            print(f"- {note}")
        print()
    if remaining:
        print(f"left behind: {len(remaining)} process(es) could not be killed: {remaining}")
    else:
        killed = f" (killed {len(leftovers)} at the end)" if leftovers else ""
        print(f"no process of this run is left{killed}; its temporary directory is removed.")
    print(f"run time: {elapsed:.0f} s")

    if args.json:
        document = {
            "machine": info,
            "versions": versions,
            "skipped": skipped,
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "results": bench.results,
            "goals": [{"goal": g, "value": v, "verdict": d} for g, v, d in verdicts],
            "notes": bench.notes,
            "daemonctx_capture": Daemonctx.capture_mode,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    if interrupted:
        return 130
    if bench.daemonctx_errors or remaining:
        return 2
    if args.check and any(v == "MISSED" for _, _, v in verdicts):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
