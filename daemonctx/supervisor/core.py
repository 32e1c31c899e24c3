"""The supervisor: programs, their state machines, and the loop that drives them.

A thin shell around the pure parts: each program instance has a
``StateMachine`` (state.py); this module feeds it events (a pidfd readable, a
READY=1, a timer, a control request) and performs the actions it returns
(spawn.py's spawn and group signals). Everything happens in one thread, in
``EventLoop.run``.

Tracking, as docs/DESIGN.md says: a program's leader is watched through its
pidfd and stays unreaped until what is left of its process group has been
killed (during a stop, until the rest of the group has stopped too, or the
stop's ladder has killed it); the supervisor is a child subreaper, so
descendants that escape the group come back to it as children. They carry
``DAEMONCTX_PROGRAM`` in their environment (set at spawn), which attributes
them to their program: they get its stop signals and are killed when its
leader exits. SIGCHLD reaps those orphans by pid, after a ``WNOWAIT`` look,
so a leader is never reaped behind the state machine's back.
"""

from __future__ import annotations

import errno as errnos
import fcntl
import functools
import inspect
import itertools
import json
import logging
import os
import resource
import signal
import socket
import stat
import time
from collections import deque
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from dataclasses import replace as dataclass_replace
from typing import TYPE_CHECKING, Any, Callable, TypeVar, overload

from .. import procfs, systemd
from ..errors import (
    CommandError,
    DaemonError,
    DaemonOSEnvironmentError,
    escaped_traceback,
    one_line,
)
from ..executable import missing_interpreter
from ..paths import UnsafePathError, check_owned_file, check_path, probe_log, resolved_name
from ..pidfd import exited as pidfd_exited
from ..pidfd import open_pidfd, wait_any
from . import protocol
from .config import (
    SUPERVISOR_KEYS,
    ConfigError,
    LogFile,
    Program,
    SupervisorConfig,
    check_system,
    did_you_mean,
    load,
    start_order,
)
from .guard import LOCK_VARIABLE, PROGRAM_VARIABLE, SUPERVISOR_VARIABLE, Guard, lock_mark, sweep
from .loop import EventLoop, Interrupted, Timer
from .output import Capture, Line, Ring, Target
from .protocol import Request
from .results import CommandInfo, ExitInfo, RunInfo, format_seconds
from .server import (
    MAX_CONNECTIONS,
    Connection,
    ControlServer,
    Peer,
    check_control_path,
    check_free,
)
from .spawn import (
    Spawned,
    SpawnError,
    exited,
    ignored_signals,
    reap,
    restore_signals,
    set_child_subreaper,
    signal_group,
    spawn,
    take_over_ignored_signals,
)
from .spawner import Spawner, SpawnerGone
from .state import (
    ArmTimer,
    CancelTimer,
    ExitStatus,
    Report,
    SignalGroup,
    Spawn,
    State,
    StateMachine,
    signal_name,
    start_timeout,
    succeeded,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ..context import DaemonContext
    from .state import Action

__all__ = ["PROGRAM_VARIABLE", "SUPERVISOR_VARIABLE", "Supervisor", "SupervisorStartError"]

#: The log line of each request that may change something.
_AUDIT = "uid %d (pid %d): %s%s"
#: The supervisor's phase as ``status`` shows it (any other phase: stopping).
_SHOWN_PHASES = {"boot": "starting", "running": "running"}
TAIL_WAIT = protocol.TAIL_WAIT  # a follow's wait for a line
_SERIALS = itertools.count(1)  # Instance.serial: never reused in a supervisor's life
#: A program's pipe's size, and the bytes read from it at a time.
PIPE_SIZE = 262144
READ_SIZE = 65536 + 1  # capture's fast path: at most MAX_LINE + 1 bytes
#: From this many watched descriptors on, programs are forked from a spawner thread
#: with a small table of its own (spawner.py): with fewer, the copy and the close of
#: the table in each child cost less than the hand-over to the thread (measured:
#: 0.13 to 0.25 µs a descriptor, cold, against 60 to 130 µs).
SPAWNER_FROM = 384
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python 3.10+ names it

#: How many of its last stderr lines a failure message and a run in `why` show.
TAIL_LINES = 5

_BUILTINS = (
    "ping",
    "status",
    "start",
    "stop",
    "restart",
    "signal",
    "shutdown",
    "commands",
    "reload",
    "why",
    "tail",
    "reopen",
)
_DONE_STARTING = frozenset(
    {State.RUNNING, State.BACKOFF, State.FAILED, State.EXITED, State.STOPPED}
)
# At boot, still on the way: STOPPING is a start that timed out, being stopped
# (its reason is known once it is gone).
_BOOTING = frozenset({State.STARTING, State.RUNNING, State.STOPPING})
_ENDED = frozenset({State.STOPPED, State.EXITED, State.FAILED})  # nothing runs or will
_NO_PROCESS = frozenset({State.STOPPED, State.EXITED, State.FAILED, State.BACKOFF})
# Kept running by the supervisor: a reload restarts these when their command changes.
_RUNNING_ON = frozenset({State.STARTING, State.RUNNING, State.BACKOFF})
_ON_ITS_WAY = frozenset({State.STARTING, State.BACKOFF, State.STOPPING})  # to end soon

log = logging.getLogger("daemonctx.supervisor")

F = TypeVar("F", bound=Callable[..., Any])


class SupervisorStartError(CommandError):
    """``serve`` could not bring every program up; nothing was left running.

    The message's first line says which program and why; each line after it,
    indented, is one of that program's last lines of standard error (every line
    made safe to print: ``one_line``). ``daemonctx supervise`` prints them so."""


@dataclass
class _Command:
    function: Callable[..., Any]
    signature: inspect.Signature
    read_only: bool
    doc: str


class Instance:
    """One running copy of a program: its state machine and its process."""

    def __init__(self, program: Program, name: str, now: float) -> None:
        self.program = program
        self.name = name
        self.machine = StateMachine(program, now=now)
        self.spawned: Spawned | None = None  # the leader, until reaped
        self.main: _Main | None = None  # MAINPID=, or the pid in ``pidfile``
        self.session = 0  # the leader's pid: its session id, for notifications
        self.pidfile_wait: Timer | None = None  # a forking program's daemon is due
        # its pidfile as it was before the run's spawn (path, mark): a file the
        # run has not written yet names the last run's daemon, or a reused pid
        self.pidfile_before: tuple[str, tuple[int, ...] | None] | None = None
        self.timer: Timer | None = None
        self.ring = Ring(program.output_buffer)  # its recent output: tail, why, failures
        self.serial = next(_SERIALS)  # which instance a follower follows (tail's "of")
        self.tail_waits: list[Callable[[], None]] = []  # followers waiting for a line
        self.capture: Capture | None = None  # opened at the first spawn, kept across runs
        self.pipes: dict[int, Callable[[], bool]] = {}  # its pipes' read ends, and their readers
        # a reload's old pipe layout (stderr to or from "stdout"): the run under way
        # writes to its files until these pipes of its end; the next run opens its own
        self.retired: list[tuple[Capture, set[int]]] = []
        self.runs: deque[_Run] = deque(maxlen=program.history)
        self.stop_by: str | None = None  # who asked for the stop under way
        self.removing = False  # a reload removed it: forgotten once stopped
        self.spawns = 0  # runs started: a stop is over once its run is, a start came or not
        # a reload's new instance: never runs beside these old ones (web for web:0)
        self.replaces: list[Instance] = []
        self.start_pending = False  # to start once they are gone (a reload, a ctl start)
        self.start_waits = ""  # what a reload's start waits for (db ready), for status
        # not to start at boot (autostart = false), or stopped on request: not waited for
        self.held = not program.autostart
        self.held_by = ""  # who stopped it, when on request: a boot that fails names them
        # started by the boot, or by a reload: a boot that walks its waves again
        # (after a reload) does not start it twice (a one-shot done, run again)
        self.launched = False
        self.was_ready = False  # ready once: its boot is over, whatever it does next
        self.orphans = False  # a run ended: its escaped descendants are still to kill
        self.hook: _Hook | None = None  # its on_failure command, while it runs
        # failed again meanwhile: run it once more at its end, told the state then
        self.hook_again: tuple[str, str] | None = None  # (state, reason)
        self.failures_seen = 0  # the machine's failures its on_failure was run for
        # pid -> pidfd: what got a stop signal with a leader that exited first, and
        # still runs; waited for (the leader unreaped: its group id stays its own)
        self.survivors: dict[int, int] = {}
        # what the last signal sent to its processes reached: (signal, the groups,
        # the processes signalled one by one); a survivor found since that it
        # missed gets it then (_await_survivors)
        self.reached: tuple[int, set[int], set[int]] | None = None

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def healthy(self) -> bool:
        """As it should be: running, stopped on purpose, or done (ctl status's 0)."""
        state, last = self.machine.state, self.machine.last_exit
        return (
            state is State.RUNNING
            or state is State.STOPPED
            or (state is State.EXITED and last is not None and succeeded(last, self.program))
        )

    def new_files(self, program: Program) -> bool:
        """Whether a reload to ``program`` opens new output files at once: its
        capture is open (it ran) and a file changes, with the same pipe layout."""
        old = self.program
        if self.capture is None or (old.stdout, old.stderr) == (program.stdout, program.stderr):
            return False
        if _merged(old) != _merged(program):  # a new pipe layout: at the restart
            return False
        return not (_kept(old.stdout, program.stdout) and _kept(old.stderr, program.stderr))

    def reconfigure(
        self, program: Program, targets: tuple[Target | None, Target | None] | None = None
    ) -> list[Action]:
        """A reload changed its program: the new settings apply from the next event
        (a run, a stop under way keep theirs: ``StateMachine.reconfigure``);
        new output limits at once, new output files at the next line. Those files
        are ``targets``, opened (``open_targets``) before the reload changed
        anything, when ``new_files`` says so: a file that cannot be opened changes
        nothing. Raises nothing. Returns what is left to do of a backoff the new
        ``restart`` ended (its timer to cancel), said here already: for the caller
        to perform, then to make the checks that follow an event."""
        new_files = self.new_files(program)
        old, self.program = self.program, program
        left: list[Action] = []
        for action in self.machine.reconfigure(program, EventLoop.time()):
            if isinstance(action, Report):  # said as the loop would, with the cause
                decision = f"not restarted: a reload set restart = {program.restart!r}"
                log.info("%s: %s (%s)", self.name, action.text, decision)
                if self.runs and self.runs[-1].ended is not None:
                    self.runs[-1].decision = decision
            else:
                left.append(action)
        self._reconfigure_outputs(old, program, new_files, targets)
        return left

    def _reconfigure_outputs(
        self,
        old: Program,
        program: Program,
        new_files: bool,
        targets: tuple[Target | None, Target | None] | None,
    ) -> None:
        """``reconfigure``'s part for the output: limits, history, files."""
        if self.runs.maxlen != program.history:
            self.runs = deque(self.runs, maxlen=program.history)
        self.ring.size = program.output_buffer
        capture = self.capture
        if capture is None or (old.stdout, old.stderr) == (program.stdout, program.stderr):
            return
        if _merged(old) != _merged(program):  # a new pipe layout: at the restart
            self._retire_outputs()
            return
        if new_files:
            assert targets is not None, "new files are opened before a reload changes anything"
            self._close_outputs()  # the new files were opened before the old ones are let go
            capture.set_targets(*targets)
            self.capture = capture
        _apply_tables(capture, program)  # a file shared with others: its (new) table

    def open_targets(self, program: Program | None = None) -> tuple[Target | None, Target | None]:
        """``program``'s (its own by default) output targets, opened. Raises
        ``UnsafePathError`` or ``OSError`` (see ``Target.open``), nothing left open."""
        if program is None:
            program = self.program
        # guarded: a supervisor run as a user whose stdout is another user's pipe (a
        # container's) cannot open it again: "inherit" then writes the shared fd
        # shared: a file other instances or programs write is theirs too (one rotation)
        stdout = Target.open(program.stdout, f"{self.name}'s stdout", 1, guarded=True, shared=True)
        if _merged(program):
            return stdout, None
        if _same_file(program.stdout, program.stderr) and stdout is not None:
            return stdout, stdout  # one file, one target: rotated once
        try:
            what = f"{self.name}'s stderr"
            return stdout, Target.open(program.stderr, what, 2, guarded=True, shared=True)
        except BaseException:
            _release((stdout, None), self.name)
            raise

    def check_targets(self, program: Program) -> None:
        """What ``open_targets`` would refuse of ``program``'s files, creating and
        writing none (a dry run): each path, from "/" down, and an existing file
        opened and closed again (``paths.probe_log``). Raises as it does."""
        for spec, what in ((program.stdout, "stdout"), (program.stderr, "stderr")):
            if isinstance(spec, LogFile) or spec.startswith("/"):
                probe_log(spec if isinstance(spec, str) else spec.path, f"{self.name}'s {what}")

    def open_outputs(self) -> Capture:
        """Its capture, with its targets opened at the first spawn."""
        if self.capture is None:
            self.retired = [entry for entry in self.retired if entry[1]]  # ``last_lines``'
            stdout, stderr = self.open_targets()
            self.capture = Capture(stdout, stderr, self.ring, merged=_merged(self.program))
            _apply_tables(self.capture, self.program)  # a shared file's, if a reload changed it
        return self.capture

    def reopen_outputs(self, seen: set[int] | None = None) -> list[str]:
        """Reopen its files (logrotate moved them); the errors, one line each.
        ``seen``: the ids of the targets reopened already (shared with others),
        left alone, and those reopened here added."""
        errors = []
        capture = self.capture
        if seen is None:
            seen = set()
        if capture is not None:
            for target in (capture.stdout, capture.stderr):
                if target is None or id(target) in seen:
                    continue
                seen.add(id(target))
                try:
                    target.reopen()
                except OSError as exc:  # "cannot reopen web's stdout /x/web.log: no such ..."
                    kept = " (the file open before stays in use)" if target.path else ""
                    errors.append(f"cannot reopen {_open_error(exc)}{kept}")
        return errors

    @property
    def dropped(self) -> int:
        """Output bytes its targets could not take (a full disk, a slow reader)."""
        return 0 if self.capture is None else self.capture.dropped

    @property
    def output_error(self) -> str | None:
        """Why one of its log files could not be rotated, until one rotation works."""
        capture = self.capture
        if capture is not None:
            for target in (capture.stdout, capture.stderr):
                if target is not None and target.rotate_error is not None:
                    return target.rotate_error.strerror
        return None

    def _close_outputs(self) -> None:
        capture, self.capture = self.capture, None
        if capture is not None:
            _close_capture(capture, self.name)

    def _retire_outputs(self) -> None:
        """A reload changed the pipe layout: the next run opens new outputs, and the
        run under way writes to the old files until its pipes end (``pipe_ended``),
        its last words included (a stop's "shutting down", a traceback)."""
        capture, self.capture = self.capture, None
        if capture is None:
            return
        held = {fd for _capture, fds in self.retired for fd in fds}
        fds = set(self.pipes) - held  # the pipes of the run under way, if any
        self.retired.append((capture, fds))
        if not fds:
            _close_capture(capture, self.name)

    def pipe_ended(self, fd: int) -> None:
        """Pipe ``fd`` reached its end (read, closed): a retired capture's files
        are closed with its last pipe."""
        for capture, fds in self.retired:
            if fd in fds:
                fds.discard(fd)
                if not fds:
                    _close_capture(capture, self.name)
                return

    def close(self) -> None:
        """Release what it holds once it is forgotten (its output files)."""
        self._close_outputs()
        for capture, fds in self.retired:
            if fds:
                _close_capture(capture, self.name)
        self.retired.clear()
        for pidfd in self.survivors.values():
            os.close(pidfd)
        self.survivors.clear()

    @property
    def alive(self) -> bool:
        """Whether a process of this run is still tracked (leader or main)."""
        return (
            self.spawned is not None
            or (self.main is not None and self.main.adopted)
            or self.pidfile_wait is not None
        )

    def info_json(self, now: float, waited: str | None = None) -> dict[str, Any]:
        """Its status as ``ProgramInfo.to_json`` writes it (``info_text``, read)."""
        result: dict[str, Any] = json.loads(self.info_text(now, waited))
        return result

    def info_text(self, now: float, waited: str | None = None) -> str:
        """Its status as JSON text, as ``ProgramInfo.to_json`` would be written, made
        straight from its state machine: a status request makes one per program, and
        the records and the JSON encoder between them were most of its work.
        ``tests/test_supervisor_run.py`` keeps the two forms one. ``waited``, during
        the boot: what it waits for (a program of a wave to come says so)."""
        machine = self.machine
        pid = machine.shown_pid
        started = machine.started_at
        last, last_at = machine.last_exit, machine.last_exit_at
        next_start = machine.next_start
        state = machine.state
        text = machine.describe(now)
        if self.start_pending and self.replaces:
            text += f", starts once {', '.join(old.name for old in self.replaces)} stopped"
        elif self.start_pending and self.start_waits:
            text += f", starts once {self.start_waits}"
        # a wave still to come: not stopped on purpose, and not as it should be yet
        waiting = (
            waited is not None and state is State.STOPPED and not self.launched and not self.held
        )
        if waiting and waited:
            text += f", waiting for {waited} to be ready"
        output_error = self.output_error
        if output_error is not None:
            text += f" [{output_error}]"
        if last is None or last_at is None:
            exit_text = "null"
        else:
            exit_text = (
                f'{{"code": {_json_int(last.code)}, "signal": {_json_int(last.signal)}, '
                f'"core": {"true" if last.core else "false"}, "text": {_string(last.describe())}, '
                f'"ago": {_json_float(now - last_at)}}}'
            )
        # Strings through json's own escaping (ASCII out), numbers as json writes them.
        return (
            f'{{"name": {_string(self.name)}, "program": {_string(self.program.name)}, '
            f'"state": "{state._value_}", "text": {_string(text)}, "pid": {_json_int(pid)}, '
            '"uptime": '
            f"{'null' if machine.pid is None or started is None else _json_float(now - started)}, "
            f'"since": {_json_float(now - machine.since)}, "restarts": {machine.restarts:d}, '
            f'"attempt": {machine.attempt:d}, "last_exit": {exit_text}, "next_start": '
            f"{'null' if next_start is None else _json_float(next_start - now)}, "
            f'"status_text": {_string(machine.status_text)}, "dropped": {self.dropped:d}, '
            f'"healthy": {"true" if self.healthy and not waiting else "false"}, '
            f'"output_error": {"null" if output_error is None else _string(output_error)}}}'
        )

    def last_lines(self, since: int | None = None) -> list[str]:
        """The last lines of its standard error (of its output, when merged); with
        ``since``, only those written after that mark (a run's own)."""
        capture = self.capture or (self.retired[-1][0] if self.retired else None)
        if capture is None:
            return []
        self.drain()
        lines = capture.stderr_tail(TAIL_LINES, since)
        return [line for line in lines if line.strip()]

    def drain(self) -> None:
        """Read what its pipes hold now: a process that exited wrote its last
        words before its exit was seen, but they may not have been read yet."""
        for readable in list(self.pipes.values()):
            while readable():
                pass

    def end_lines(self) -> None:
        """Its run ended: what its pipes hold is read, and a last line still waiting
        for its newline goes out now, as at EOF. A process the run left (killed, or
        not yet) may hold the pipe open a while: the line is this run's last words,
        not the next run's first (``ctl why``)."""
        capture = self.capture or (self.retired[-1][0] if self.retired else None)
        if capture is None:
            return
        self.drain()
        for stream in ("stdout", "stderr"):
            capture.close_stream(stream)


class _Run:
    """One run of an instance, recorded for ``ctl why`` (wall-clock times)."""

    def __init__(self, pid: int | None, error: str | None = None) -> None:
        self.started = time.time()
        self.pid = pid
        self.error = error
        self.ready: float | None = None
        self.ended: float | None = None
        self.exit: ExitStatus | None = None
        self.stopped_by: str | None = None
        self.steps: list[str] = []
        self.signalled: float | None = None
        self.decision: str | None = None
        self.stderr: tuple[str, ...] = ()
        self.stderr_mark = 0  # the capture's stderr line count when it started

    def info(self) -> RunInfo:
        exit_ = self.exit
        ended = self.ended if self.ended is not None else time.time()
        return RunInfo(
            started=self.started,
            pid=self.pid,
            ready=self.ready,
            ended=self.ended,
            exit=None
            if exit_ is None
            else ExitInfo(
                exit_.code, exit_.signal, exit_.core, exit_.describe(), time.time() - ended
            ),
            stopped_by=self.stopped_by,
            steps=tuple(self.steps),
            decision=self.decision,
            stderr=self.stderr,
            error=self.error,
        )


class _Hook:
    """A program's ``on_failure`` command while it runs: its process, the read end
    of its output pipe, the timer that kills it, the lines of it logged so far."""

    __slots__ = ("lines", "output", "spawned", "timer")

    def __init__(self, spawned: Spawned, output: int) -> None:
        self.spawned = spawned
        self.output = output
        self.timer: Timer | None = None
        self.lines = 0


#: At most this many lines of an on_failure command's output go to the log.
HOOK_LINES = 20


class _Main:
    """A program's main process when it is not the leader: named by ``MAINPID=``
    or by the program's ``pidfile``, pinned by a pidfd. Once the leader has
    exited it is ``adopted``: our child (we are a subreaper), watched, and its
    exit ends the program's run."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.adopted = False

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class _Waiter:
    """A control request waiting for programs to reach a state."""

    def __init__(
        self,
        instances: list[Instance],
        done: Callable[[Instance], bool],
        finish: Callable[[], None],
    ) -> None:
        self.instances = instances
        self.done = done
        self.finish = finish

    def check(self) -> bool:
        if all(self.done(instance) for instance in self.instances):
            self.finish()
            return True
        return False


class _ReloadStop:
    """A stop a reload asks for: once those of later waves (``rank``, in the file
    the instance was started by) are gone, as at the shutdown. ``restart``: it
    starts again (a _ReloadStart), else it was removed."""

    __slots__ = ("asked", "instance", "rank", "restart", "spawns")

    def __init__(self, instance: Instance, rank: int, restart: bool) -> None:
        self.instance = instance
        self.rank = rank
        self.restart = restart
        self.asked = False
        self.spawns = instance.spawns  # a run begun since (a ctl restart): over too

    @property
    def over(self) -> bool:
        instance = self.instance
        if not self.asked:
            return False
        gone = not instance.alive and instance.state in _NO_PROCESS
        return gone or instance.spawns != self.spawns


class _ReloadStart:
    """A start a reload asks for (``start_pending``): once the reload's stops are
    over and those of earlier waves (``rank``) are ready, as at the boot; kept
    until it is ready itself (it holds up those of later waves)."""

    __slots__ = ("failures", "instance", "rank", "started")

    def __init__(self, instance: Instance, rank: int) -> None:
        self.instance = instance
        self.rank = rank
        self.started = False
        self.failures = 0  # its failures when started: one more, it holds up no longer

    @property
    def settled(self) -> bool:
        """Started, and ready, or no longer on its way, or failed a start."""
        instance = self.instance
        return self.started and (
            not _on_its_way(instance) or instance.machine.failures != self.failures
        )


class Supervisor:
    """Keep ``programs`` running and answer the control socket at ``control``.

    Build it from Python (``Supervisor(control=..., programs=[Program(...)])``)
    or from a TOML file (``Supervisor.from_config(path)``); register commands
    with ``@sup.command``; then ``serve()``.
    """

    def __init__(
        self,
        control: str | os.PathLike[str] | None = None,
        programs: Sequence[Program] = (),
        *,
        pidfile: str | os.PathLike[str] | None = None,
        log: str | os.PathLike[str] | None = None,
        control_group: str | int | None = None,
        observer_group: str | int | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        config: SupervisorConfig | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        log = None if log is None else os.fspath(log)
        # log= beside config=: it wins over the file's, at each reload too
        self._log_override = log if config is not None else None
        if config is None:
            if control is None:
                raise ConfigError(None, "supervisor", "control", "required")
            config = SupervisorConfig(
                control=os.fspath(control),
                programs=tuple(programs),
                pidfile=pidfile,
                log=log,
                control_group=control_group,
                observer_group=observer_group,
                groups={name: tuple(members) for name, members in (groups or {}).items()},
            )
        elif log is not None:  # supervise --config FILE --log LOG
            config = dataclass_replace(config, log=log)
        self.config = config
        # What a reload reads, wherever the supervisor runs by then (a daemon's
        # directory is /): the file as found from the directory we start in.
        self._config_file = None if config.path is None else os.path.abspath(config.path)
        self._commands: dict[str, _Command] = {}
        self._idle_timeout = idle_timeout
        self.instances: dict[str, Instance] = {}
        self._by_program: dict[str, list[Instance]] = {}
        self._leaders: dict[int, Instance] = {}
        self._sessions: dict[int, Instance] = {}
        self._mains: dict[int, Instance] = {}
        self._hooks: dict[int, Instance] = {}  # on_failure commands running, by pid
        self._finish_pending = False  # every program is stopped: exit once _hooks is empty
        self._waiters: list[_Waiter] = []
        self._loop: EventLoop | None = None
        self._server: ControlServer | None = None
        self._notify: socket.socket | None = None
        self._notify_pidfds = False  # the kernel names each sender by a pidfd too (SCM_PIDFD)
        self._guard: Guard | None = None
        self._guard_started = 0.0
        self._guard_delay = 0.0  # before another guard, after one that died at once
        self._ignored_said_at = float("-inf")  # when an ignored notification was last logged
        self._ignored_unsaid = 0  # and how many were not, since
        self._guard_retry: Timer | None = None
        self._guard_spare: Guard | None = None  # not running: started (again) by _guard_retry
        self._spawner: Spawner | None = None
        self._spawner_refused = False
        # (loop iteration, our children in the kernel's order, the unknown ones by
        # program: (their index in that list, pid))
        self._escaped_cache: (
            tuple[int, list[int], dict[str | None, list[tuple[int, int]]]] | None
        ) = None
        self._pid_one = False
        self._ignored: dict[int, Any] = {}
        # (loop iteration, the signals we ignore then): one read for a boot wave
        self._ignored_cache: tuple[int, list[int]] | None = None
        self._notify_address: str | None = None
        self._pid = 0  # the supervisor's, once it serves
        self._handlers: dict[str, Callable[[Request, Callable[[bytes], None]], None]] = {}
        self._phase = "new"  # new, boot, running, shutdown, done
        self._waves: list[list[Instance]] = []
        self._wave = 0
        self._boot_error: str | None = None
        self._in_wave = False
        self.exit_status = 0
        self._daemon: DaemonContext | None = None
        self._shutdown_waiters: list[Callable[[], None]] = []
        self._summary = ""
        self._summary_note = ""  # why a boot ended, before the counts in STATUS=
        self._summary_timer: Timer | None = None
        self._environment: dict[str, str] = {}
        self._peer: Peer | None = None  # who sent the request being handled (_caller)
        self._shutdown_by = "shutdown"
        self._boot_stopped: str | None = None  # who stopped the boot before it was over
        self._log_handler: _LogHandler | None = None  # where this supervisor logs
        # A reload's stops and starts, in ``after`` order (_reload_progress)
        self._reload_stops: list[_ReloadStop] = []
        self._reload_starts: list[_ReloadStart] = []
        self._reload_moving = False  # applied or walked now: not walked again meanwhile

    @classmethod
    def from_config(cls, path: str | os.PathLike[str]) -> Supervisor:
        """A supervisor for the TOML file at ``path`` (``ConfigError`` when it is bad)."""
        return cls(config=load(path, trust=check_config_file))

    # -- registered commands ----------------------------------------------------------

    @overload
    def command(self, function: F, /) -> F: ...

    @overload
    def command(
        self, function: None = None, /, *, name: str | None = None, read_only: bool = False
    ) -> Callable[[F], F]: ...

    def command(
        self, function: F | None = None, /, *, name: str | None = None, read_only: bool = False
    ) -> F | Callable[[F], F]:
        """Register ``function`` as a control command: ``ctl call NAME '{"arg": 1}'``
        calls it with those keyword arguments, in the supervisor's loop (keep it
        quick), and answers with its return value (JSON). ``read_only`` lets
        observers call it."""

        def register(function: F) -> F:
            if not callable(function):
                raise TypeError(f"a command is a function, not {function!r}")
            command = name if name is not None else getattr(function, "__name__", None)
            if command is None:  # a functools.partial, an object with __call__
                raise ValueError(f"{function!r} has no __name__: give the command's name=")
            if not isinstance(command, str) or not protocol.COMMAND_NAME.fullmatch(command):
                raise ValueError(f"invalid command name {command!r}: use [a-z][a-z0-9_-]*")
            if command in _BUILTINS or command in self._commands:
                raise ValueError(f"a command named {command!r} exists already")
            if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
                # called, it would only make a coroutine: every call would fail
                reason = (
                    f"command {command!r} is an async function: the supervisor calls"
                    " commands in its loop, which awaits nothing (make it a plain def)"
                )
                raise TypeError(reason)
            try:
                signature = inspect.signature(function)
            except (TypeError, ValueError) as exc:  # a builtin without one
                reason = f"command {command!r}: no signature to call it by: {exc}"
                raise ValueError(reason) from None
            doc = (inspect.getdoc(function) or "").strip().split("\n", 1)[0]
            self._commands[command] = _Command(function, signature, read_only, doc)
            return function

        if function is not None:
            return register(function)
        return register

    # -- foreground checks --------------------------------------------------------------

    def check(self) -> None:
        """Everything checkable before anything starts: our own /proc, users and groups, each
        command's executable, the descriptor limit (raised as needed), the path of
        its log, the control socket's directory, and that no other supervisor owns
        the socket. Raises a one-line ``DaemonError`` (an ``OSError`` for the log's
        path). Programs' log files are opened at their start (an earlier program
        may make their directory): their paths are only checked here as far as
        they exist, and refused when another user controls them."""
        wrong = procfs.unusable()
        if wrong is not None:
            raise CommandError(f"cannot supervise: {wrong}")
        config = self.config
        for file in (config.path, *config.included):
            if file is not None:
                check_config_file(file)
        check_system(config)
        _check_executables(config)
        fit_descriptor_limit(config)
        if config.log is not None:
            check_path(config.log, "supervisor log")
        check_control_path(config.control)
        check_free(config.control)

    # -- serving ----------------------------------------------------------------------------

    def serve(self, daemon: DaemonContext | None = None) -> int:
        """Start every program (in ``after`` order) and supervise them until
        ``shutdown``; return the exit status (0, or a failed critical program's).

        With ``daemon`` (a ``DaemonContext``), become that daemon first: the
        launching process returns from ``open()`` only once every program is
        ready (its ``ready_on_open`` is set to False), or raises the reason one
        could not start. Raises ``SupervisorStartError`` when a program cannot
        start, or when a launcher waits and a shutdown comes before every program
        is ready; then nothing is left running.
        """
        self.check()
        pidfile = self.config.pidfile
        if daemon is None:
            if pidfile is None:
                return self._serve()
            from ..pidfile import TimeoutPIDLockFile

            with TimeoutPIDLockFile(pidfile, 0):
                return self._serve()
        daemon.ready_on_open = False
        if daemon.pidfile is None and pidfile is not None:
            from ..pidfile import TimeoutPIDLockFile

            daemon.pidfile = TimeoutPIDLockFile(pidfile, 0)
        self._daemon = daemon
        with daemon:
            return self._serve()

    def _serve(self) -> int:
        self._pid = os.getpid()  # a status shows it: one system call less a request
        loop = self._loop = EventLoop()
        try:
            self._setup(loop)
            try:
                self._boot()
                loop.run()
            except Exception as exc:  # a bug: in the log before the end (stderr may be /dev/null)
                log.error(
                    "internal error: the supervisor stops, its programs with it:\n%s",
                    escaped_traceback(exc),
                )
                raise
        finally:
            self._teardown()
        if self._boot_error is not None:
            raise SupervisorStartError(self._boot_error)
        daemon = self._daemon
        if self._boot_stopped is not None and daemon is not None and daemon.launcher_waiting:
            # The launcher's start failed: say why, not "exited before it was ready".
            # In the foreground (no launcher) a requested stop is a clean exit.
            raise SupervisorStartError(
                f"the supervisor was stopped before every program was ready: {self._boot_stopped}"
            )
        return self.exit_status

    def _setup(self, loop: EventLoop) -> None:
        self._ignored = take_over_ignored_signals()  # `supervise &` ignores SIGQUIT
        self._setup_logging()
        set_child_subreaper()
        now = loop.time()
        environment = dict(os.environ)
        for key in _MANAGERS_VARIABLES:  # the supervisor's own service manager's
            environment.pop(key, None)
        self._environment = environment
        for program in self.config.programs:
            instances = [Instance(program, name, now) for name in program.instance_names()]
            self._by_program[program.name] = instances
            for instance in instances:
                self.instances[instance.name] = instance
        if any(_notifies(program) for program in self.config.programs):
            self._open_notify_socket(loop)
        self._keep_systemd_watchdog(loop)
        handlers: dict[int, Callable[[int], None]]
        handlers = dict.fromkeys(_IGNORED_SIGNALS, self._on_unexpected)
        handlers[signal.SIGQUIT] = self._on_terminate
        handlers[signal.SIGUSR2] = self._on_hangup  # supervisord's "reopen the logs"
        # Only those at their default action: an application's own handler (serve())
        # stays, as does one started ignored (`supervise &`: SIGQUIT, taken over above).
        handlers = {n: h for n, h in handlers.items() if signal.getsignal(n) is signal.SIG_DFL}
        handlers.update(
            {
                signal.SIGTERM: self._on_terminate,
                signal.SIGINT: self._on_terminate,
                signal.SIGHUP: self._on_hangup,
                signal.SIGCHLD: self._on_child,
            }
        )
        # A stop signal also interrupts a registered command: none holds a stop up.
        stops = tuple(n for n, h in handlers.items() if h == self._on_terminate)
        loop.watch_signals(handlers, interrupting=stops)
        server = self._server = ControlServer(
            loop,
            self.config.control,
            self._handle,
            control_group=self.config.control_group,
            observer_group=self.config.observer_group,
            read_only=self._read_only,
            **({} if self._idle_timeout is None else {"idle_timeout": self._idle_timeout}),
        )
        server.listen()
        log.info("supervisor (pid %d) listening on %s", os.getpid(), self.config.control)
        lock = os.fstat(server.lock_fd)  # every program's, beside SUPERVISOR_VARIABLE
        self._environment[LOCK_VARIABLE] = lock_mark(lock.st_dev, lock.st_ino)
        users = self._users()
        for pid, name in sweep(self.config.control, users):
            shown = one_line(f"{name}")  # from its environment: the process may write it
            log.info("killed pid %d (%s), left running by a previous supervisor", pid, shown)
        self._start_guard(loop, server.lock_fd, users)

    def _users(self) -> set[int]:
        """Who our programs run as: the users whose marked processes are swept.
        Only theirs, so that another user cannot have one of theirs killed."""
        users = {os.geteuid()}
        for program in self.config.programs:
            uid = _user_id(program.user)
            if uid is not None:
                users.add(uid)
        return users

    def _start_guard(self, loop: EventLoop, lock_fd: int, users: set[int]) -> None:
        """The guard (guard.py) kills the programs if we die. Without one, each
        program gets a parent-death signal instead (a slower spawn). As PID 1 of
        a pid namespace (a container) neither: our death kills the namespace."""
        if os.getpid() == 1:
            self._pid_one = True
            return
        self._guard_spare = Guard(loop, self.config.control, lock_fd, users, self._guard_died)
        self._start_guard_again()

    def _guard_died(self) -> None:
        """The guard is gone (someone killed it): start another at once; one that
        died within a second of its start, after a delay that doubles (1 s to a
        minute), so that a guard killed in a loop costs no busy loop. The programs
        stay held: the next guard gets every one of them; those started before it
        get a parent-death signal."""
        loop, guard = self._loop, self._guard
        assert loop is not None and guard is not None
        pid = guard.pid
        guard.close()
        self._guard, self._guard_spare = None, guard
        if loop.time() - self._guard_started < 1.0:
            self._guard_delay = min(max(self._guard_delay * 2, 1.0), 60.0)
            delay = format_seconds(self._guard_delay)
            log.info("the guard (pid %s) died at once; starting another in %s", pid, delay)
            deadline = loop.time() + self._guard_delay
            self._guard_retry = loop.call_at(deadline, self._start_guard_again)
            return
        self._guard_delay = 0.0
        log.info("the guard (pid %s) died; starting another", pid)
        self._start_guard_again()

    def _start_guard_again(self) -> None:
        """Start the guard (``_guard_spare``), holding every program that runs.
        One that cannot be started (no process left under a limit: EAGAIN) is
        tried again after a delay that doubles (1 s to a minute); meanwhile the
        programs started get a parent-death signal. Only a guard that can never
        start (no interpreter) is given up."""
        loop, guard = self._loop, self._guard_spare
        assert loop is not None
        self._guard_retry = None
        if guard is None or self._guard is not None or self._phase == "done":
            return
        guard.forget()
        for instance in self.instances.values():
            spawned, main = instance.spawned, instance.main
            if spawned is not None and not spawned.reaped and spawned.pidfd >= 0:
                guard.hold(spawned.pid, spawned.pidfd)
            if main is not None and main.pidfd >= 0:
                guard.hold(main.pid, main.pidfd, group=_group_killable(main.pid))
        guard.users = sorted(set(guard.users) | self._users())
        try:
            guard.start()
        except OSError as exc:
            if exc.errno == errnos.ENOEXEC:  # no interpreter: never
                self._guard_spare = None
                log.info("cannot start the guard (%s): programs get a parent-death signal", exc)
                return
            self._guard_delay = min(max(self._guard_delay * 2, 1.0), 60.0)
            delay = format_seconds(self._guard_delay)
            log.info(
                "cannot start the guard (%s): programs get a parent-death signal;"
                " trying again in %s",
                exc,
                delay,
            )
            deadline = loop.time() + self._guard_delay
            self._guard_retry = loop.call_at(deadline, self._start_guard_again)
            return
        self._guard, self._guard_spare = guard, None
        self._guard_started = loop.time()

    def _setup_logging(self) -> None:
        """Log where ``log`` says, through a handler of this supervisor's own, which
        its end removes: another ``Supervisor`` in the process logs where it is told."""
        self._log_handler = _open_log(self.config.log)
        log.addHandler(self._log_handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    def _open_new_log(self, new: SupervisorConfig) -> _LogHandler | None:
        """A reload's ``log``, opened as at the start (None when it did not change);
        refused, one line, before anything changed when it cannot be."""
        if _same_setting("log", self.config.log, new.log):
            return None
        self._check_log_kept(new)
        try:
            return _open_log(new.log)
        except OSError as exc:
            raise _Refused(protocol.FAILED, f"nothing changed: {exc}") from None

    def _check_new_log(self, new: SupervisorConfig) -> None:
        """What ``_open_new_log`` checks, opening and creating nothing (a dry run):
        the new log's path, from "/" down; refused as the reload would be."""
        if _same_setting("log", self.config.log, new.log):
            return
        self._check_log_kept(new)
        if new.log is None:
            return
        try:
            probe_log(new.log, "supervisor log")
        except OSError as exc:
            raise _Refused(protocol.FAILED, f"nothing changed: {exc.strerror or exc}") from None

    def _check_log_kept(self, new: SupervisorConfig) -> None:
        """A reload that removes ``log`` while standard error goes nowhere (a
        daemon's is /dev/null) would lose every later line of the log, unsaid:
        refused, one line. ``log = "/dev/null"`` says it is meant."""
        if new.log is not None or self.config.log is None:
            return
        where = _standard_error()
        if where in ("standard error (/dev/null)", "standard error (closed)"):
            raise _Refused(
                protocol.FAILED,
                f"nothing changed: {new.path}: [supervisor] log: without it the log goes to"
                f' {where}: keep a log file, or set log = "/dev/null" to keep none',
            )

    def _use_log(self, handler: _LogHandler | None) -> None:
        """Log through ``handler`` from now on (None: no change); the old log's last
        line says where the log goes (standard error: what it is)."""
        if handler is None:
            return
        old, self._log_handler = self._log_handler, handler
        log.addHandler(handler)
        if old is not None:
            log.removeHandler(old)
            args = (handler.path or _standard_error(),)
            message = "reload: the supervisor's log goes to %s from now on"
            old.handle(
                log.makeRecord(log.name, logging.INFO, "(unknown file)", 0, message, args, None)
            )
            old.close()

    def _open_notify_socket(self, loop: EventLoop) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        # Linux >= 6.5: a sender gone since is told from the process that took its pid
        self._notify_pidfds = systemd.pass_pidfds(sock)
        name = f"daemonctx/{os.getpid()}/{os.urandom(8).hex()}/notify"
        sock.bind("\0" + name)
        sock.setblocking(False)
        self._notify = sock
        self._notify_address = "@" + name
        loop.add_reader(sock.fileno(), self._on_notify)

    def _teardown(self) -> None:
        guard, self._guard = self._guard, None
        for instance in self.instances.values():
            spawned = instance.spawned
            if spawned is not None and not spawned.reaped:  # only after an internal error
                try:
                    signal_group(spawned, signal.SIGKILL)
                except (RuntimeError, OSError):
                    pass
                spawned.popen.wait()
                spawned.close()
            main = instance.main
            if main is not None and main.pidfd >= 0:  # only after an internal error
                try:
                    signal.pidfd_send_signal(main.pidfd, signal.SIGKILL)
                except OSError:
                    pass
                self._forget_main(instance)
            instance.close()
        spawner, self._spawner = self._spawner, None
        if spawner is not None:
            spawner.close()
        self._kill_leftovers(guard.pid if guard is not None else None)
        if guard is not None:
            guard.stop()
        if self._server is not None:
            self._server.close_all()
        if self._notify is not None:
            self._notify.close()
        if self._loop is not None:
            self._loop.close()
        restore_signals(self._ignored)
        self._ignored = {}
        if self._phase != "done":
            self._phase = "done"
        for waiter in self._shutdown_waiters:
            waiter()
        handler, self._log_handler = self._log_handler, None
        if handler is not None:  # the last: the end's lines are logged
            log.removeHandler(handler)
            handler.close()

    # -- boot and shutdown --------------------------------------------------------------------

    def _boot(self) -> None:
        self._phase = "boot"
        self._waves = [self._wave_instances(wave) for wave in start_order(self.config.programs)]
        self._wave = 0
        self._launch_wave()
        self._boot_progress()  # on through every wave ready at once

    def _wave_instances(self, wave: list[str]) -> list[Instance]:
        return [instance for name in wave for instance in self._by_program[name]]

    def _launch_wave(self) -> None:
        """Start the current wave's programs (those not held), and only that."""
        wave = self._waves[self._wave]
        instances = [i for i in wave if _to_launch(i)]
        # what the wave waits for, started now or before: after a reload walks the
        # new waves, the launcher's line has their new count
        names = ", ".join(i.name for i in wave if not i.held and not i.was_ready)
        if self._daemon is not None and names:  # what a launcher waiting says after 3 s
            if len(names) > 200:
                names = names[:200].rsplit(", ", 1)[0] + ", ..."
            where = f"wave {self._wave + 1} of {len(self._waves)}: " if len(self._waves) > 1 else ""
            self._daemon.notify_step(f"see its programs ready ({where}{names})")
        self._in_wave = True
        try:
            with _LogAfterwards():  # every program started, then their log lines
                for instance in instances:
                    instance.launched = True
                    self._event(instance, instance.machine.start)
        finally:
            self._in_wave = False

    def _boot_progress(self) -> None:
        """Fail the boot at a failed start of the current wave; once the wave is
        ready, start the next, and so on (a loop: a chain of a thousand programs,
        each ``after`` the next, or held, is a thousand waves, not as many nested
        calls), until a wave must be waited for or every program is ready."""
        while self._phase == "boot":
            # An instance that was ready once has started: what it does next (exit 0
            # with restart = "never", a crash and its restart) is no failed start,
            # whether the rest of its wave is ready by then or not.
            wave = [i for i in self._waves[self._wave] if not i.held and not i.was_ready]
            for instance in wave:
                if instance.start_pending:  # a reload's, once the old ones are gone
                    continue
                state = instance.state
                if instance.machine.restarts > 0 or state not in _BOOTING:
                    reason = one_line(instance.machine.reason or state.value)
                    message = f"{instance.name} failed to start: {reason}"
                    lines = instance.last_lines()
                    if lines:  # the program's words: nothing a terminal would act on
                        message += "".join(
                            f"\n  {instance.name}: {one_line(line)}" for line in lines
                        )
                    self._boot_error = message
                    self._summary_note = message.splitlines()[0][:200]
                    log.info("%s", message)
                    self._begin_shutdown(1, f"shutdown: {instance.name} failed to start")
                    return
            if wave:
                return  # waited for: its events call this again
            self._wave += 1
            if self._wave >= len(self._waves):
                if not self._critical_failed_at_boot():
                    self._phase = "running"
                    self._ready()
                    if os.getpid() == 1:  # one-shots done at boot: nothing may be left
                        self._check_all_done()
                return
            if self._after_stopped_at_boot():
                return
            self._launch_wave()

    def _after_stopped_at_boot(self) -> bool:
        """A program of the wave to start comes ``after`` one stopped on request
        before it was ready (a migration stopped mid-run): it is not started, and
        the boot fails as at a failed start of that one (systemd's Requires=)."""
        for instance in self._waves[self._wave]:
            if not _to_launch(instance):
                continue
            for name in instance.program.after:
                for before in self._by_program.get(name, ()):
                    if before.held and not before.was_ready:
                        by = f" by {before.held_by}" if before.held_by else ""
                        self._boot_error = (
                            f"{before.name} was stopped{by} before it was ready: "
                            f"{instance.name}, after it, not started"
                        )
                        self._summary_note = self._boot_error[:200]
                        log.info("%s", self._boot_error)
                        self._begin_shutdown(1, f"shutdown: {before.name} stopped during the boot")
                        return True
        return False

    def _booting(self, instance: Instance) -> bool:
        """Whether ``instance`` is one the boot waits for now (``_boot_progress``'s
        own test), so that a failed start of it fails the boot. Not one of a wave
        to come nor an autostart = false one that ``ctl start`` started meanwhile:
        left without their retry, those stayed "starting", with no process."""
        if self._phase != "boot" or instance.held or instance.was_ready:
            return False
        return self._wave < len(self._waves) and instance in self._waves[self._wave]

    def _critical_failed_at_boot(self) -> bool:
        """A critical program that started, then failed for good before the boot was
        over, fails the boot (``supervise`` says so, rather than succeed and stop)."""
        for instance in self.instances.values():
            status = _critical_failure(instance)
            if status is not None:
                reason = one_line(instance.machine.describe(self._now()))
                self._boot_error = f"{instance.name} is critical and failed for good: {reason}"
                log.info("%s", self._boot_error)
                self._begin_shutdown(status, f"shutdown: {instance.name} is critical and failed")
                return True
        return False

    def _ready(self) -> None:
        log.info("every program is ready")
        if self._daemon is not None:
            self._daemon.notify_ready()
        else:
            _notify_systemd("READY=1")
        self._schedule_summary()

    def _begin_shutdown(self, status: int = 0, by: str = "shutdown") -> None:
        if self._phase in ("shutdown", "done"):
            return
        self._shutdown_by = by
        self.exit_status = status
        if self._phase == "boot" and self._boot_error is None:
            self._boot_stopped = by
            self._say_what_the_boot_waited_for()
        self._phase = "shutdown"
        for instance in self.instances.values():  # nothing starts again, whatever ends
            instance.machine.ending = True
        if self._daemon is not None:  # its close() then does not send it again
            self._daemon.notify_stopping()
        else:
            _notify_systemd("STOPPING=1")
        for waiter in self._waiters:
            waiter.finish()
        self._waiters.clear()
        removed = [instance for instance in self.instances.values() if instance.removing]
        waves = reversed(start_order(self.config.programs))
        self._waves = [removed, *(self._wave_instances(wave) for wave in waves)]
        self._wave = 0
        self._stop_wave()

    def _say_what_the_boot_waited_for(self) -> None:
        """A boot stopped before it was over (systemd's start timeout: SIGTERM):
        which programs it still waited for, in the log and in STATUS=."""
        if self._wave >= len(self._waves):
            return
        waiting = [
            f"{i.name} ({i.state.value})"
            for i in self._waves[self._wave]
            if not i.held and not i.was_ready
        ]
        if waiting:
            log.info("the start was still waiting for %s", ", ".join(waiting))
            self._summary_note = f"stopped while waiting for {', '.join(waiting)}"[:200]

    def _stop_wave(self) -> None:
        while self._wave < len(self._waves):
            instances = self._waves[self._wave]
            self._in_wave = True
            try:
                for instance in instances:
                    self._stop(instance, self._shutdown_by)
                    if not instance.alive and instance.state is State.STOPPING:
                        # a start held back (at boot, or racing the shutdown): none to wait for
                        self._event(instance, instance.machine.spawn_failed, 0, "not started")
            finally:
                self._in_wave = False
            if any(instance.alive for instance in instances):
                return  # _shutdown_progress continues once they are gone
            self._wave += 1
        self._finish()

    def _shutdown_progress(self) -> None:
        if self._wave >= len(self._waves):
            return
        instances = self._waves[self._wave]
        if not any(instance.alive for instance in instances):
            self._wave += 1
            self._stop_wave()

    def _finish(self) -> None:
        if self._phase == "done":
            return
        if self._hooks:  # an alert about the last failure (a critical program's) runs
            if not self._finish_pending:
                log.info("waiting for %d on_failure command(s) to end", len(self._hooks))
            self._finish_pending = True
            return
        self._phase = "done"
        log.info("every program is stopped; exiting with status %d", self.exit_status)
        assert self._loop is not None
        if self._summary_timer is not None:
            self._loop.cancel(self._summary_timer)
        if "NOTIFY_SOCKET" in os.environ:  # the state it leaves (none "stopping"), now:
            self._send_summary()  # a summary scheduled from here on would never run
        self._loop.stop()

    # -- events in, actions out ------------------------------------------------------------

    def _event(self, instance: Instance, event: Callable[..., list[Action]], *args: Any) -> None:
        assert self._loop is not None
        instance.machine.booting = self._booting(instance)  # a failed start then fails the boot
        actions = event(self._loop.time(), *args)
        self._perform(instance, actions)
        self._changed(instance)

    def _perform(self, instance: Instance, actions: list[Action]) -> None:
        loop = self._loop
        assert loop is not None
        spawn = False
        for action in actions:  # signals first: the log can wait, a stop should not
            if isinstance(action, SignalGroup):
                self._stop_signal(instance, action.signal)
                self._record_step(instance, action.signal)
        for action in actions:
            if isinstance(action, Spawn):
                spawn = True  # after the reports: "starting" is logged before "running"
            elif isinstance(action, ArmTimer):
                loop.cancel(instance.timer)
                instance.timer = loop.call_at(
                    action.deadline, lambda: self._event(instance, instance.machine.timer)
                )
            elif isinstance(action, CancelTimer):
                loop.cancel(instance.timer)
                instance.timer = None
            elif isinstance(action, Report):
                log.info("%s: %s", instance.name, action.text)
                if action.state is State.RUNNING:
                    instance.was_ready = True
                    if instance.runs:
                        run = instance.runs[-1]
                        if run.ready is None and run.ended is None:
                            run.ready = time.time()
                elif action.state is State.EXITED and _one_shot_done(instance):
                    instance.was_ready = True  # ready at its exit: its boot is over
                    if instance.runs and instance.runs[-1].ready is None:
                        instance.runs[-1].ready = instance.runs[-1].ended
        failed: tuple[str, str] | None = None  # a new failure: what the supervisor did
        machine = instance.machine
        if machine.failures != instance.failures_seen:
            instance.failures_seen = machine.failures
            if instance.program.on_failure is not None:
                failed = (machine.state.value, machine.reason or "")
        if spawn and not (instance.machine.restarts > 0 and self._booting(instance)):
            # (a failed start at boot gets no second try: _boot_progress reports it)
            self._spawn(instance)  # its own _perform kills the orphans, after it
        if instance.orphans:
            instance.orphans = False
            spawned = instance.spawned
            self._kill_orphans(instance, None if spawned is None else spawned.pid)
        if failed is not None:  # after the restart's spawn: the program first
            self._run_hook(instance, *failed)

    # -- on_failure --------------------------------------------------------------------------

    def _run_hook(self, instance: Instance, state: str, reason: str) -> None:
        """Start ``instance``'s on_failure command: as the program's user, in its
        directory, with its environment and DAEMONCTX_FAILED (the instance),
        DAEMONCTX_STATE (what the supervisor did: starting, backoff, failed,
        exited), DAEMONCTX_REASON, and DAEMONCTX_EXIT_CODE or DAEMONCTX_EXIT_SIGNAL
        when it exited. One at a time per instance; its output goes to the log."""
        loop = self._loop
        assert loop is not None
        program, machine = instance.program, instance.machine
        assert program.on_failure is not None
        if instance.hook is not None:  # once more at its end, told the state then
            if instance.hook_again is None:
                pid = instance.hook.spawned.pid
                log.info(
                    "%s: on_failure still runs (pid %d): again when it ends", instance.name, pid
                )
            instance.hook_again = (state, reason)
            return
        environment = dict(self._environment)
        environment.pop(PROGRAM_VARIABLE, None)  # not a process of the program
        environment[SUPERVISOR_VARIABLE] = self.config.control  # swept with the rest
        environment.update(
            DAEMONCTX_FAILED=instance.name,
            DAEMONCTX_STATE=state,
            DAEMONCTX_REASON=reason,
        )
        status = machine.failure_status
        if status is not None and status.code is not None:
            environment["DAEMONCTX_EXIT_CODE"] = str(status.code)
        elif status is not None and status.signal is not None:
            environment["DAEMONCTX_EXIT_SIGNAL"] = signal_name(status.signal)
        hook_program = dataclass_replace(program, command=tuple(program.on_failure))
        try:  # out of descriptors (EMFILE), the alert is skipped: the supervisor goes on
            read, write = os.pipe2(os.O_CLOEXEC)
        except OSError as exc:
            log.info("%s: on_failure cannot start: %s", instance.name, exc.strerror or exc)
            return
        try:
            spawned = spawn(
                hook_program,
                name=f"{instance.name} on_failure",
                environment=environment,
                stdout=write,
                stderr=write,
                death_signal=self._guard is None and not self._pid_one,
                ignored=self._ignored_now(loop),
            )
        except (SpawnError, OSError) as exc:
            os.close(read)
            log.info("%s: on_failure cannot start: %s", instance.name, exc)
            return
        finally:
            os.close(write)
        hook = instance.hook = _Hook(spawned, read)
        self._hooks[spawned.pid] = instance
        log.info("%s: on_failure started (pid %d)", instance.name, spawned.pid)
        loop.add_reader(read, lambda: self._hook_output(instance, hook))
        loop.add_reader(spawned.pidfd, lambda: self._hook_exited(instance, hook))
        deadline = loop.time() + program.on_failure_timeout
        hook.timer = loop.call_at(deadline, lambda: self._hook_timeout(instance, hook))

    def _hook_output(self, instance: Instance, hook: _Hook, *, last: bool = False) -> None:
        """Log the hook's lines (the first HOOK_LINES of them); close at EOF, or
        (``last``: the hook has exited) once what it wrote is read, though a
        process it left in the background may hold the pipe open."""
        if hook.output < 0:
            return
        if last:
            os.set_blocking(hook.output, False)
        while True:
            try:
                data = os.read(hook.output, 65536)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data:
                self._log_hook_lines(instance, hook, data)
            # At EOF; or past what is logged: the rest is not read (a hook that
            # floods its output gets EPIPE, and costs the supervisor nothing).
            if (not data and (data is not None or last)) or hook.lines > HOOK_LINES:
                assert self._loop is not None
                self._loop.remove_reader(hook.output)
                os.close(hook.output)
                hook.output = -1
                return
            if not last:
                return

    def _log_hook_lines(self, instance: Instance, hook: _Hook, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            hook.lines += 1
            if hook.lines <= HOOK_LINES:
                # The command's output (often the program's own, quoted): shown,
                # never acted on by a terminal nor read as a line of its own.
                log.info("%s: on_failure: %s", instance.name, one_line(line.rstrip()[:500]))
            elif hook.lines == HOOK_LINES + 1:
                log.info("%s: on_failure: (more lines not logged)", instance.name)

    def _hook_timeout(self, instance: Instance, hook: _Hook) -> None:
        hook.timer = None
        seconds = format_seconds(instance.program.on_failure_timeout)
        pid = hook.spawned.pid
        log.info("%s: on_failure (pid %d) still runs after %s: killed", instance.name, pid, seconds)
        try:
            signal_group(hook.spawned, signal.SIGKILL)  # unreaped: its group id is its own
        except (RuntimeError, OSError):
            pass

    def _hook_exited(self, instance: Instance, hook: _Hook) -> None:
        """Reap the hook (its pidfd said it exited, or SIGCHLD did) and log how."""
        loop = self._loop
        assert loop is not None
        spawned = hook.spawned
        if spawned.pid not in self._hooks:
            return
        status = reap(spawned)
        if status is None:
            return
        del self._hooks[spawned.pid]
        loop.remove_reader(spawned.pidfd)
        spawned.close()
        loop.cancel(hook.timer)
        self._hook_output(instance, hook, last=True)  # its lines before its end
        if instance.hook is hook:
            instance.hook = None
        log.info("%s: on_failure (pid %d) %s", instance.name, spawned.pid, status.describe())
        again, instance.hook_again = instance.hook_again, None
        if again is not None and instance.program.on_failure is not None:
            self._run_hook(instance, *again)  # the failures since, as one: the last one's
        if self._finish_pending and not self._hooks:
            self._finish()

    def _changed(self, instance: Instance) -> None:
        if instance.removing:
            self._forget_if_removed(instance)
        if self._waiters:
            self._waiters = [waiter for waiter in self._waiters if not waiter.check()]
        phase = self._phase
        if self._reload_stops or self._reload_starts:
            self._reload_progress()
        if self._in_wave:
            pass
        elif phase == "boot":
            self._boot_progress()
        elif phase == "shutdown":
            self._shutdown_progress()
        elif phase == "running":
            self._check_critical(instance)
            if os.getpid() == 1:
                self._check_all_done()
        self._schedule_summary()

    def _check_critical(self, instance: Instance) -> None:
        status = _critical_failure(instance)
        if status is not None:
            log.info("%s is critical and failed for good: stopping everything", instance.name)
            self._begin_shutdown(status, f"shutdown: {instance.name} is critical and failed")

    def _check_all_done(self) -> None:
        """As PID 1 (a container), end once every program started at boot
        (autostart) has ended for good and nothing runs: with 1 if a program ended
        unhealthy (failed, or exited with a failure), else 0. Without an autostart
        program, never: a container of jobs that ``ctl start`` runs on demand."""
        instances = self.instances.values()
        if not any(instance.program.autostart for instance in instances):
            return
        if any(instance.state not in _ENDED for instance in instances):
            return
        unhealthy = [i for i in instances if not i.healthy]
        if unhealthy:
            ended = ", ".join(f"{i.name} ({_how_it_ended(i.machine)})" for i in unhealthy)
            log.info("every program has ended; unhealthy: %s", ended[:500])
        self._begin_shutdown(1 if unhealthy else 0)

    # -- spawning and signalling ---------------------------------------------------------------

    def _spawn(self, instance: Instance) -> None:
        loop = self._loop
        assert loop is not None
        program = instance.program
        environment = dict(self._environment)
        environment[PROGRAM_VARIABLE] = instance.name
        environment[SUPERVISOR_VARIABLE] = self.config.control
        if program.watchdog is not None:  # as systemd: sd_watchdog_enabled() reads it
            environment["WATCHDOG_USEC"] = str(round(program.watchdog * 1_000_000))
        spawner = self._spawner_now(loop)
        if spawner is not None and instance.orphans:
            # Now: the new leader will be a child of the spawner's thread, and only
            # the orphans adopted (by this thread) before it exists are the old run's.
            instance.orphans = False
            self._kill_orphans(instance, None)
        if program.pidfile is not None:  # what the run's wait must not take for its own
            instance.pidfile_before = (program.pidfile, _read_pid_marked(program.pidfile)[1])
        opened: list[int] = []
        doing = "open"  # its output files first
        try:
            capture = instance.open_outputs()
            doing = "make the output pipes of"  # EMFILE: no exec was tried
            notify = None
            if _notifies(program):
                if self._notify is None:  # a reload added the first program to need it
                    self._open_notify_socket(loop)
                notify = self._notify_address
            out_read, out_write = os.pipe2(os.O_CLOEXEC)
            opened.append(out_write)
            _widen(out_read)
            self._read_pipe(instance, capture, out_read, "stdout")
            err_write = out_write
            if not capture.merged:
                err_read, err_write = os.pipe2(os.O_CLOEXEC)
                opened.append(err_write)
                _widen(err_read)
                self._read_pipe(instance, capture, err_read, "stderr")
            doing = "execute"
            start = functools.partial(
                spawn,
                program,
                name=instance.name,
                environment=environment,
                notify_socket=notify,
                stdout=out_write,
                stderr=err_write,
                death_signal=self._guard is None and not self._pid_one,
                ignored=self._ignored_now(loop),
            )
            try:
                spawned = start(spawner=spawner)
            except SpawnerGone as exc:  # its thread ended (a bug): on without it, from now
                self._no_spawner(exc)
                spawned = start()
        except (SpawnError, OSError) as exc:
            number = exc.errno or errnos.EIO
            if doing == "open":  # "web's stdout /x/web.log: no such directory /x"
                message = _open_error(exc)
            elif isinstance(exc, SpawnError):
                message, doing = str(exc), exc.doing
            else:
                message = f"{program.command[0]}: {exc.strerror or exc}"
            run = _Run(None, f"cannot {doing} {message}")
            instance.runs.append(run)
            failed = instance.machine.spawn_failed(loop.time(), number, message, doing=doing)
            self._perform(instance, failed)
            run.ended = run.started
            run.decision = _decision(instance)
            return
        finally:
            for fd in opened:
                os.close(fd)
        instance.spawned = spawned
        instance.spawns += 1
        if self._guard is not None:
            self._guard.hold(spawned.pid, spawned.pidfd)
        run = _Run(spawned.pid)
        run.stderr_mark = capture.ring.mark
        instance.runs.append(run)
        self._leaders[spawned.pid] = instance
        self._sessions.pop(instance.session, None)
        instance.session = spawned.pid
        self._sessions[spawned.pid] = instance
        loop.add_reader(spawned.pidfd, lambda: self._leader_exited(instance, spawned))
        self._perform(instance, instance.machine.spawned(loop.time(), spawned.pid))

    def _ignored_now(self, loop: EventLoop) -> list[int]:
        """The signals we ignore (each spawn resets them in its child), read once
        per loop iteration: a boot wave starts every program in one, and only a
        callback of ours could change them in between."""
        cache = self._ignored_cache
        if cache is None or cache[0] != loop.iteration:
            cache = self._ignored_cache = (loop.iteration, ignored_signals())
        return cache[1]

    def _spawner_now(self, loop: EventLoop) -> Spawner | None:
        """The spawner thread, started once we hold SPAWNER_FROM descriptors; None
        below that, or where a thread cannot have a table of its own."""
        if self._spawner is None and not self._spawner_refused and loop.watched >= SPAWNER_FROM:
            wakeup = loop.wakeup_fd
            try:
                spawner = Spawner(keep=() if wakeup is None else (wakeup,))
                spawner.start()
            except OSError as exc:  # refused, or out of descriptors
                self._no_spawner(exc)
            else:
                self._spawner = spawner
        return self._spawner

    def _no_spawner(self, reason: OSError) -> None:
        """Fork from the loop's thread for good, and say why once."""
        self._spawner, self._spawner_refused = None, True
        log.info("programs are forked from the loop's thread: %s", reason.strerror or reason)

    def _read_pipe(self, instance: Instance, capture: Capture, fd: int, stream: str) -> None:
        """Feed what the program writes on ``fd`` to its capture, until EOF."""
        loop = self._loop
        assert loop is not None
        os.set_blocking(fd, False)
        read, feed = os.read, capture.feed
        pipes = instance.pipes

        closed = False

        def readable() -> bool:
            """One read; True when it gave bytes. After EOF, never again: a
            drain may close the pipe while the loop still has its event."""
            nonlocal closed
            if closed:
                return False
            try:
                data = read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                data = b""
            if data:
                feed(stream, data)
                return True
            closed = True
            loop.remove_reader(fd)
            os.close(fd)
            pipes.pop(fd, None)
            capture.close_stream(stream)
            instance.pipe_ended(fd)
            return False

        pipes[fd] = readable
        loop.add_reader(fd, readable)

    def _signal(self, instance: Instance, signum: int, *, escaped: bool = True) -> None:
        """Send ``signum`` once to every process of ``instance``: its leader's group,
        its main process's group (or the main process alone) and, with ``escaped``,
        the children that escaped both. A process already in a group signalled is
        not signalled again (see ``signal_group``)."""
        groups: set[int] = set()
        done: set[int] = set()  # signalled one by one already
        instance.reached = (signum, groups, done)
        spawned = instance.spawned
        if spawned is not None and not spawned.reaped:
            try:
                signal_group(spawned, signum)
                groups.add(spawned.pid)
            except (RuntimeError, OSError):
                pass
        main = instance.main
        if main is not None and main.pidfd >= 0:
            try:
                group = os.getpgid(main.pid)
                if main.adopted and group == main.pid and group not in groups:
                    os.killpg(main.pid, signum)  # our unreaped child: its group id is its own
                    groups.add(group)
                elif group not in groups:
                    # Not our child, or not a group leader: the pidfd is the process
                    # itself (a pid reused since can only make us skip it); and the
                    # rest of its group under it, as a leader's group gets it.
                    signal.pidfd_send_signal(main.pidfd, signum)
                    # those who had it: one reparented to us by now (the main one
                    # died of it at once) is not signalled again as escaped
                    done.update((main.pid, *_signal_under(main.pid, group, signum)))
            except OSError:
                pass
        elif spawned is None and instance.pidfile_wait is None:
            return  # (awaiting the pidfile: the run's processes are the escaped ones)
        if not escaped:
            return
        for pid in self._escaped(instance):
            if pid in done:
                continue
            try:
                if os.getpgid(pid) not in groups:  # our child, unreaped: its pid is its own
                    os.kill(pid, signum)
                    done.add(pid)
            except OSError:
                pass

    def _stop_signal(self, instance: Instance, signum: int) -> None:
        """A stop's step: ``signum``, then SIGCONT to the same processes (not after
        SIGKILL or SIGCONT), as systemd does: a stopped program (``ctl signal
        STOP``, a debugger) would otherwise run no handler before the SIGKILL."""
        self._signal(instance, signum)
        if signum != signal.SIGKILL and signum != signal.SIGCONT:
            reached = instance.reached  # what the stop signal reached, for survivors
            self._signal(instance, signal.SIGCONT)
            instance.reached = reached

    def _escaped(self, instance: Instance, before: int | None = None) -> list[int]:
        """Our children that escaped ``instance``'s process group (adopted orphans);
        with ``before``, only those that became our children before that one did.

        Our children are listed once per loop iteration (stopping 1,000 programs
        would read the list 1,000 times), and again after an orphan was reaped:
        a pid listed here is never one that was reaped since. The kernel lists a
        process's children in the order they became its children (forked, or
        adopted: both append to the list)."""
        loop = self._loop
        iteration = loop.iteration if loop is not None else -1
        cache = self._escaped_cache
        if cache is None or cache[0] != iteration:
            known = self._leaders.keys() | self._mains.keys()
            if self._hooks:  # (a third union would copy the set for nothing)
                known |= self._hooks.keys()
            if self._guard is not None and self._guard.pid is not None:
                known.add(self._guard.pid)
            me = os.getpid()  # orphans are adopted by the first live thread: ours
            children = procfs.children(me, task=me)
            found: dict[str | None, list[tuple[int, int]]] = {}
            for index, pid in enumerate(children):
                if pid not in known:
                    name = procfs.environment_value(pid, PROGRAM_VARIABLE)
                    found.setdefault(name, []).append((index, pid))
            self._escaped_cache = cache = (iteration, children, found)
        _iteration, children, found = cache
        escaped = found.get(instance.name, [])
        if before is not None and escaped:
            try:
                end = children.index(before)
            except ValueError:  # listed before it was born: all of them are older
                end = len(children)
            return [pid for index, pid in escaped if index < end]
        return [pid for _index, pid in escaped]

    def _kill_orphans(self, instance: Instance, before: int | None) -> None:
        """SIGKILL the escaped descendants of the run that just ended: those adopted
        before ``before`` (the new leader, when this thread forked it) became our
        child. Called after a restart's spawn (listing a thousand children takes a
        millisecond, cold: not on the way to the next run), so only the children
        adopted before the new leader was born: anything adopted since may be the
        new run's. With the spawner, before it (our own children are few then)."""
        killed = []
        for pid in self._escaped(instance, before):
            command = procfs.process_command(pid)  # for the log: before it is a zombie
            try:
                os.kill(pid, signal.SIGKILL)  # our child, unreaped: its pid is its own
            except OSError:
                continue
            # Its argv[0], which it chooses: escaped, so no newline forges a log line.
            name = one_line(os.path.basename(command[0])) if command else "?"
            killed.append(f"{pid} ({name})")
        if killed:
            self._log_left_behind(instance, killed)

    def _log_left_behind(self, instance: Instance, killed: list[str]) -> None:
        """Name what a run left running and we killed: a program that forks into
        the background loses its daemon so, and its user should hear why."""
        last = instance.machine.last_exit
        hint = ""
        if (
            last is not None
            and last.success
            and instance.program.pidfile is None
            and instance.program.ready != "exited"  # a one-shot's exit is no surprise
        ):
            hint = (
                "; a program that forks into the background needs its pidfile"
                " (pidfile = PATH), or an option to stay in the foreground"
            )
        many = "processes" if len(killed) > 1 else "process"
        log.info(
            "%s: killed %d %s its run left running: pid %s%s",
            instance.name,
            len(killed),
            many,
            ", pid ".join(killed),
            hint,
        )

    def _leader_exited(self, instance: Instance, spawned: Spawned) -> None:
        """The leader's pidfd is readable: kill what is left of its group and its
        escaped descendants, reap it, and tell its machine. Unless the run goes
        on in a main process (MAINPID=, or a forking program's pidfile)."""
        loop = self._loop
        assert loop is not None
        if instance.spawned is not spawned or spawned.reaped:
            return
        if not exited(spawned):
            return
        main = self._main_after_leader(instance)
        forking = (
            main is None
            and instance.program.pidfile is not None
            and instance.state is not State.STOPPING
            and _peek_success(spawned.pid)
        )
        if main is None and not forking:  # the run ends with its leader: kill what is left
            resume = functools.partial(self._leader_exited, instance, spawned)
            if self._await_survivors(instance, spawned.pid, spawned.pidfd, resume):
                return  # they got the stop signal too: the rest of the ladder is theirs
            # its group now, while the group's id is the unreaped leader's; the
            # escaped once a restart is under way (_perform)
            self._signal(instance, signal.SIGKILL, escaped=False)
        status = reap(spawned)
        if status is None:  # not a zombie yet: the pidfd woke early
            return
        if self._guard is not None:
            self._guard.release(spawned.pid)
        loop.remove_reader(spawned.pidfd)
        spawned.close()
        self._leaders.pop(spawned.pid, None)
        instance.spawned = None
        if main is not None:
            self._adopt(instance, main, status)
        elif forking:
            instance.machine.awaited = "waiting for its pidfile"  # the leader's pid is free
            self._await_pidfile(instance, status, loop.time(), 0.005)
        else:
            self._forget_main(instance)
            instance.orphans = True
            self._ended(instance, status)

    def _await_survivors(
        self, instance: Instance, group: int, pidfd: int, resume: Callable[[], None]
    ) -> bool:
        """During a stop, the process whose pid is ``group`` (the leader, or an
        adopted main process leading its group) exited first: watch what else got
        the stop signal and still runs (``_survivors``) as long as the stop's ladder
        lets it (its next step signals them too), then ``resume()``; one adopted
        since that the signal missed gets it now (``_signal_survivor``). The exited
        process stays unreaped, so its group id cannot be another group's
        meanwhile; its ``pidfd`` is not watched until then. True while any runs."""
        if instance.state is not State.STOPPING:
            return False
        loop = self._loop
        assert loop is not None
        for pid in self._survivors(instance, group):
            if pid in instance.survivors:
                continue
            survivor = open_pidfd(pid)
            if survivor is None:
                continue
            # One that is not our child may have been reaped since it was listed, and
            # its pid reused. Pinned now: it is still of the group (nobody else can
            # join it: its id is the unreaped one's) while the pidfd says it runs.
            if procfs.parent_pid(pid) != os.getpid() and (
                procfs.live_group(pid) != group or pidfd_exited(survivor)
            ):
                os.close(survivor)
                continue
            instance.survivors[pid] = survivor
            loop.add_reader(
                survivor, functools.partial(self._survivor_exited, instance, pid, resume)
            )
            self._signal_survivor(instance, pid, survivor)
        if not instance.survivors:
            return False
        loop.remove_reader(pidfd)  # readable until reaped: looked at again after them
        return True

    def _signal_survivor(self, instance: Instance, pid: int, pidfd: int) -> None:
        """A survivor found now gets the stop's current signal, unless that signal
        reached it: one that left the group while its parent ran (setsid, setpgid)
        and was adopted when the stop signal killed that parent. Found after the
        ladder's SIGKILL, it gets SIGKILL: no step is left to signal it."""
        machine = instance.machine
        signum = signal.SIGKILL if machine.killed else machine.step_signal
        if signum is None or not procfs.is_alive(pid):
            return  # (one dying already is only waited for: see _survivors)
        reached = instance.reached
        if signum != signal.SIGKILL and reached is not None and reached[0] == signum:
            _signum, groups, done = reached
            if pid in done or procfs.live_group(pid) in groups:
                return
        command = procfs.process_command(pid) if signum != signal.SIGKILL else None
        try:
            signal.pidfd_send_signal(pidfd, signum)
            if signum != signal.SIGKILL and signum != signal.SIGCONT:
                signal.pidfd_send_signal(pidfd, signal.SIGCONT)  # as _stop_signal
        except OSError:
            return
        if signum != signal.SIGKILL:  # (SIGKILL: the report of the stop says it)
            assert self._loop is not None
            machine.sent_late(self._loop.time())
            what = one_line(os.path.basename(command[0])) if command else "?"  # its choice
            log.info(
                "%s: pid %d (%s) left the program's process group: %s sent to it too",
                instance.name,
                pid,
                what,
                signal_name(signum),
            )

    def _survivors(self, instance: Instance, group: int) -> list[int]:
        """The processes that got a stop signal with the process whose pid is
        ``group`` and still run: the rest of that process group and the escaped
        processes attributed to the program. The group's members are in the
        subtrees of the children we adopted (the exited one's orphans are ours
        now) that carry the program's name, or none.

        A child of ours that is dying (SIGKILLed by an earlier look, or exiting:
        a zombie not reaped yet) counts too, when it is the program's or no
        longer shows whose it is (its environ goes with its memory, before it
        is a zombie): its own children are reparented to us when it exits,
        maybe after our children were listed, and no later event would look for
        them (the daemon of a ``setsid`` keeper outlived the stop so). Waited for
        (a moment: it is exiting), it is reaped, and the look is made again."""
        self._escaped(instance)  # our children, listed once per loop iteration
        assert self._escaped_cache is not None
        found = self._escaped_cache[2]
        attributed = {pid for _index, pid in found.get(instance.name, [])}
        unnamed = {pid for _index, pid in found.get(None, [])}
        pending = [*attributed, *unnamed]
        seen: set[int] = set()
        survivors = []
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            member_of = procfs.live_group(pid)
            if member_of is None or (pid in unnamed and not procfs.is_alive(pid)):
                if pid in attributed or pid in unnamed:
                    survivors.append(pid)  # ours, dying: what it leaves is looked for
                continue
            if member_of == group or pid in attributed:
                survivors.append(pid)
            pending.extend(procfs.children(pid))
        return survivors

    def _survivor_exited(self, instance: Instance, pid: int, resume: Callable[[], None]) -> None:
        loop = self._loop
        assert loop is not None
        pidfd = instance.survivors.pop(pid, None)
        if pidfd is not None:
            loop.remove_reader(pidfd)
            try:  # reaped before the stop is reported over, if it is our child;
                # through its pidfd: nothing else can be reaped, whatever was reaped
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                pass
            os.close(pidfd)
        if instance.survivors:
            return
        # The last one: look again (one may have started another), else the run ends.
        self._escaped_cache = None
        resume()
        self._on_child(signal.SIGCHLD)  # what exited meanwhile: the waiting one came first

    def _record_step(self, instance: Instance, signum: int) -> None:
        """A stop signal sent: recorded in the run (the stop ladder's steps)."""
        if not instance.runs or instance.state is not State.STOPPING:
            return
        run = instance.runs[-1]
        now = time.time()
        step = signal_name(signum)
        if run.signalled is not None:
            step += f" after {format_seconds(now - run.signalled)}"
        else:
            run.signalled = now
        run.steps.append(step)

    def _ended(self, instance: Instance, status: ExitStatus) -> None:
        """The run ended with ``status``: tell the machine, record the run."""
        machine = instance.machine
        stopping = machine.state is State.STOPPING
        cause = asked = instance.stop_by if stopping else None
        if stopping and cause is None:  # the supervisor's own: a start timeout, a watchdog
            cause = machine.stop_cause
        instance.stop_by = None
        run = instance.runs[-1] if instance.runs else None
        if run is not None and run.ended is None:
            run.ended = time.time()
            run.exit = status
            run.stopped_by = cause
            instance.end_lines()
            run.stderr = tuple(instance.last_lines(since=run.stderr_mark))
        else:
            run = None
        self._event(instance, machine.exited, status)  # may spawn the next run
        if run is not None:
            run.decision = _decision(instance, asked=asked is not None)

    def _adopt(self, instance: Instance, main: _Main, leader: ExitStatus) -> None:
        """The main process goes on without its leader: its exit ends the run."""
        loop = self._loop
        assert loop is not None
        instance.main = main
        main.adopted = True
        instance.machine.pid = main.pid
        instance.machine.awaited = None
        self._mains[main.pid] = instance
        loop.add_reader(main.pidfd, lambda: self._main_exited(instance, main))
        log.info("%s: leader %s; main process %d", instance.name, leader.describe(), main.pid)
        if pidfd_exited(main.pidfd):
            self._main_exited(instance, main)
        elif instance.state is State.STOPPING:  # a stop came while we waited for it
            step = instance.machine.step_signal  # the stop's own step, not stop_signal
            self._stop_signal(instance, step if step is not None else instance.program.stop_signal)

    def _await_pidfile(
        self, instance: Instance, leader: ExitStatus, since: float, delay: float, said: str = ""
    ) -> None:
        """A forking program's leader exited 0: its daemon writes the pidfile now
        or soon (systemd waits too). Look again, more and more rarely, until
        ``start_timeout``; then the run has ended with the leader's status. A
        file refused (``said``: its reason, logged once) is looked at again too."""
        loop = self._loop
        assert loop is not None
        path = instance.program.pidfile
        assert path is not None
        main, reason = self._read_main_pidfile(instance, path)
        if main is not None and procfs.parent_pid(main.pid) == os.getpid():
            instance.pidfile_wait = None
            self._adopt(instance, main, leader)
            return
        if main is not None:
            if self._guard is not None:  # _pin_main had it held: before its pidfd closes
                self._guard.release(main.pid)
            main.close()
        if reason and reason not in _NOT_YET and not reason.endswith(_NOT_ITS) and reason != said:
            log.info("%s: pidfile %s refused: %s", instance.name, path, reason)
            said = reason
        now = loop.time()
        limit = start_timeout(instance.machine.run_policy)  # the run's own, not a reload's
        stopping = instance.state is State.STOPPING
        if stopping and now - since < limit and self._escaped(instance):
            # The stop's signal reached the run's processes: they have the stop's
            # ladder (its SIGKILL at stop_timeout) to exit, not the next look
            instance.pidfile_wait = loop.call_at(
                now + _STOPPING_LOOK,
                lambda: self._await_pidfile(instance, leader, since, delay, said),
            )
            return
        if now - since >= limit or stopping:
            instance.pidfile_wait = None
            why = f": {reason}" if reason else ""
            log.info("%s: no live process of its own in %s%s", instance.name, path, why)
            instance.orphans = True  # the run is over: what it left is killed
            self._ended(instance, leader)
            return
        instance.pidfile_wait = loop.call_at(
            min(now + delay, since + limit),
            lambda: self._await_pidfile(instance, leader, since, min(delay * 2, 0.5), said),
        )

    def _main_after_leader(self, instance: Instance) -> _Main | None:
        """The main process MAINPID= named, if it outlives the leader as our child."""
        main = instance.main
        if main is None or pidfd_exited(main.pidfd) or procfs.parent_pid(main.pid) != os.getpid():
            return None
        return main

    def _read_main_pidfile(self, instance: Instance, path: str) -> tuple[_Main | None, str]:
        """The main process the pidfile names, or why none: no file, a file
        refused, no pid in it, a pid that names no process of the program (said
        at the end of the wait only: the daemon's parent may not have exited yet,
        and once it has, the daemon is our child). The file as it was before the
        run's spawn is not the run's: its pid is the last run's daemon, which may
        have been reused by anyone since."""
        pid, mark = _read_pid_marked(path)
        if isinstance(pid, str):
            return None, pid
        if instance.pidfile_before == (path, mark):
            return None, _NOT_WRITTEN
        main = self._pin_main(instance, pid, say=False, unmarked=True)
        return main, "" if main is not None else f"pid {pid} is {_NOT_ITS}"

    def _pin_main(
        self, instance: Instance, pid: int, say: bool = True, unmarked: bool = False
    ) -> _Main | None:
        """A pidfd on ``pid`` if it is a process of this program: in its session,
        or our child carrying its name (checked after the pidfd pinned it); with
        ``unmarked`` (a pidfile written during this run), also our child that
        carries no mark at all (``_unmarked_orphan``). One that is not is logged
        (with ``say``)."""
        guard = self._guard.pid if self._guard is not None else None
        if pid <= 1 or pid == os.getpid() or pid == guard or pid in self._hooks:
            return None
        pidfd = open_pidfd(pid)
        if pidfd is None:
            return None
        ours = procfs.session_id(pid) == instance.session or (
            procfs.parent_pid(pid) == os.getpid()
            and procfs.environment_value(pid, PROGRAM_VARIABLE) == instance.name
        )
        if not ours and unmarked:
            ours = self._unmarked_orphan(instance, pid) and not pidfd_exited(pidfd)
        if not ours:
            os.close(pidfd)
            if say:
                log.info("%s: ignored main pid %d: %s", instance.name, pid, _NOT_ITS)
            return None
        if self._guard is not None:
            self._guard.hold(pid, pidfd, group=_group_killable(pid))
        return _Main(pid, pidfd)

    def _unmarked_orphan(self, instance: Instance, pid: int) -> bool:
        """Whether ``pid``, which a pidfile this run wrote names, may be taken for the
        program's daemon though it carries no ``DAEMONCTX_PROGRAM``: a daemon that
        sets its process title (nginx, postgres, setproctitle) overwrites what
        /proc/PID/environ reads. It must be our child (an orphan of our programs'
        trees, the subreaper's), unknown (no leader, main, guard or hook), in no
        other program's session, with no mark of another program, and run as this
        program's user: a pidfile can name only what its writer could signal."""
        if procfs.parent_pid(pid) != os.getpid() or pid in self._leaders or pid in self._mains:
            return False
        if procfs.environment_value(pid, PROGRAM_VARIABLE) is not None:
            return False  # marked: another program's (its own was looked for)
        session = procfs.session_id(pid)
        if any(other.session == session for other in self.instances.values()):
            return False
        uid = _user_id(instance.program.user)
        try:
            owner = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            return False
        return owner == (os.geteuid() if uid is None else uid)

    def _main_exited(self, instance: Instance, main: _Main) -> None:
        """The adopted main process exited: kill what is left, reap it, tell the machine."""
        loop = self._loop
        assert loop is not None
        if instance.main is not main or main.pidfd < 0 or not pidfd_exited(main.pidfd):
            return
        group = _group_of(main.pid) if main.adopted else None  # our child, kept unreaped
        if group is not None:
            # The rest of its group (its own, or one whose leader is gone while
            # members of it live: its id is theirs), and the escaped processes.
            resume = functools.partial(self._main_exited, instance, main)
            if self._await_survivors(instance, group, main.pidfd, resume):
                return  # they got the stop signal too: the rest of the ladder is theirs
        self._signal(instance, signal.SIGKILL, escaped=False)  # the escaped: in _perform
        try:
            self._escaped_cache = None  # it may be listed there
            pid, wait_status = os.waitpid(main.pid, os.WNOHANG)
        except ChildProcessError:
            pid, wait_status = main.pid, 0
        if pid == 0:
            return
        status = ExitStatus.from_wait_status(wait_status)
        self._forget_main(instance)
        instance.orphans = True
        self._ended(instance, status)

    def _watch_early_main(self, instance: Instance, main: _Main) -> None:
        """A main process named while the leader runs, which stays in charge: if it
        exits first, the leader is the program's process again (``status``)."""
        loop = self._loop
        assert loop is not None

        def gone() -> None:
            if instance.main is not main or main.adopted or not pidfd_exited(main.pidfd):
                return
            self._forget_main(instance)
            spawned = instance.spawned
            if spawned is not None and not spawned.reaped:
                instance.machine.pid = spawned.pid

        loop.add_reader(main.pidfd, gone)  # _adopt replaces it once the leader is gone

    def _forget_main(self, instance: Instance) -> None:
        main = instance.main
        if main is None:
            return
        instance.main = None
        if self._loop is not None and main.pidfd >= 0:
            self._loop.remove_reader(main.pidfd)
        self._mains.pop(main.pid, None)
        if self._guard is not None:
            self._guard.release(main.pid)
        main.close()

    def _on_child(self, signum: int) -> None:
        """SIGCHLD: reap adopted orphans; hand a leader's exit to its handler."""
        while True:
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid == 0:
                return
            pid = found.si_pid
            hooked = self._hooks.get(pid)
            if hooked is not None and hooked.hook is not None:
                self._hook_exited(hooked, hooked.hook)  # reaps it
                if pid in self._hooks:  # its pidfd has yet to say it exited
                    self._reap_behind()
                    return
                continue
            owner = self._mains.get(pid)
            if owner is not None and owner.main is not None:
                self._main_exited(owner, owner.main)
                if pid in self._mains:  # kept: its group is waited for
                    self._reap_behind()
                    return
                continue
            instance = self._leaders.get(pid)
            if instance is not None and instance.spawned is not None:
                self._leader_exited(instance, instance.spawned)
                if pid in self._leaders:  # kept (its group is waited for), or its pidfd
                    self._reap_behind()  # has yet to say it exited
                    return
                continue
            self._escaped_cache = None  # it may be listed there
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _kill_leftovers(self, guard: int | None) -> None:
        """At the end, every program stopped: kill and reap our other children that
        carry our mark (``SUPERVISOR_VARIABLE``, as every program's and on_failure
        command's process does), but the guard. What an on_failure command left in a
        session of its own was adopted by us (a subreaper), and must not outlive an
        orderly exit; an application's own children (``serve()`` from Python) are
        not ours to kill. Our unreaped children: their pids are their own."""
        pidfds = []
        mark = self.config.control
        for pid in procfs.children(os.getpid()):
            if pid == guard:
                continue
            pidfd = open_pidfd(pid)
            if pidfd is None:
                continue
            if procfs.environment_value(pid, SUPERVISOR_VARIABLE) != mark:
                os.close(pidfd)  # not marked: the application's, or from before us
                continue
            pidfds.append((pid, pidfd))
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                continue
            log.info("killed pid %d, left running at the end", pid)
        deadline = time.monotonic() + 5.0  # SIGKILLed: gone at once, unless stuck in the kernel
        waiting = [pidfd for _pid, pidfd in pidfds]
        while waiting and time.monotonic() < deadline:
            wait_any(waiting, deadline - time.monotonic())
            waiting = [pidfd for pidfd in waiting if not pidfd_exited(pidfd)]
        for _pid, pidfd in pidfds:
            try:
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                pass
            os.close(pidfd)

    def _reap_behind(self) -> None:
        """The first exited child ``waitid(P_ALL)`` lists is one we keep unreaped,
        and it would come first again: reap the other exited children by pid
        (orphans, the guard), not those a handler of ours reaps (leaders, main
        processes, processes a stop waits for). A child's pid stays its own
        until we reap it."""
        kept = self._leaders.keys() | self._mains.keys()
        if self._hooks:
            kept |= self._hooks.keys()
        for instance in self.instances.values():
            kept |= instance.survivors.keys()
        for pid in procfs.children(os.getpid()):
            if pid in kept:
                continue
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    self._escaped_cache = None  # it may be listed there
            except ChildProcessError:
                pass

    # -- notifications ---------------------------------------------------------------------

    def _on_notify(self) -> None:
        sock = self._notify
        assert sock is not None
        pidfds = self._notify_pidfds
        # With pidfds, room for the most descriptors a sender may pass (they come
        # before the pidfd; each is closed); else for the credentials only (the
        # kernel then closes what a sender passed).
        size = systemd.notify_space(pidfds)
        for _ in range(64):
            try:
                data, ancillary, _flags, _address = sock.recvmsg(
                    4096, size, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sender, _uid, pidfd = systemd.sender_of(ancillary)
            try:
                instance = self._sender_instance(sender)
                # The pid is the sender's only while the sender has not been reaped:
                # after that it may be another process's, here one of a program's.
                if pidfds and (pidfd < 0 or not systemd.unreaped(pidfd)):
                    self._ignored_notification(sender, "its sender has exited")
                    continue
            finally:
                if pidfd >= 0:
                    os.close(pidfd)
            if instance is None:
                self._ignored_notification(sender)
                continue
            self._notified(instance, data)

    def _ignored_notification(
        self, sender: int | None, why: str = "not a supervised program"
    ) -> None:
        """Log a notification from no program, at most one line a second: anyone may
        send to the socket (its address is in /proc/net/unix), and flood the log."""
        now = time.monotonic()
        if now - self._ignored_said_at < 1.0:
            self._ignored_unsaid += 1
            return
        more = self._ignored_unsaid
        also = f" (and {more} more since the last one said)" if more else ""
        log.info("ignored a notification from pid %s: %s%s", sender, why, also)
        self._ignored_said_at, self._ignored_unsaid = now, 0

    def _sender_instance(self, pid: int | None) -> Instance | None:
        if pid is None or pid <= 0:
            return None
        instance = self._sessions.get(pid) or self._mains.get(pid)
        if instance is not None:
            return instance
        session = procfs.session_id(pid)
        return None if session is None else self._sessions.get(session)

    def _notified(self, instance: Instance, data: bytes) -> None:
        ready = False
        for line in data.split(b"\n"):
            key, _, value = line.partition(b"=")
            if key == b"READY" and value == b"1":
                ready = True
            elif key == b"WATCHDOG" and value == b"1":
                instance.machine.keepalive(self._now())
            elif key == b"WATCHDOG" and value == b"trigger":
                self._event(instance, instance.machine.hung, "it sent WATCHDOG=trigger")
            elif key == b"MAINPID" and instance.main is None and instance.spawned is not None:
                try:
                    pid = int(value)
                except ValueError:
                    continue
                if pid != instance.spawned.pid:
                    instance.main = self._pin_main(instance, pid)
                    if instance.main is not None:
                        instance.machine.pid = pid
                        self._watch_early_main(instance, instance.main)
            elif key == b"STATUS":
                instance.machine.status_text = one_line(value.decode("utf-8", "replace")[:200])
        if ready:
            self._event(instance, instance.machine.ready)
        else:
            self._changed(instance)

    def _keep_systemd_watchdog(self, loop: EventLoop) -> None:
        """Under systemd with ``WatchdogSec=``: WATCHDOG=1 from the event loop at half
        the interval (as sd_watchdog_enabled(3) advises), so a stuck loop is caught.
        An unusable WATCHDOG_USEC is ignored, as sd_watchdog_enabled ignores it: said."""
        seconds = systemd.watchdog_seconds()
        if seconds is None:
            problem = systemd.watchdog_problem()
            if problem is not None:
                log.info("%s (no WATCHDOG=1 is sent)", one_line(problem))
            return

        def ping() -> None:
            _notify_systemd("WATCHDOG=1")
            loop.call_at(loop.time() + seconds / 2, ping)

        ping()

    def _schedule_summary(self) -> None:
        if (
            "NOTIFY_SOCKET" not in os.environ
            or self._summary_timer is not None
            or self._phase == "done"  # _finish sent the last one; the loop has ended
        ):
            return
        loop = self._loop
        assert loop is not None
        self._summary_timer = loop.call_at(loop.time(), self._send_summary)

    def _send_summary(self) -> None:
        """STATUS=: how many programs are in each state (after why a boot ended)."""
        self._summary_timer = None
        counts: dict[str, int] = {}
        for instance in self.instances.values():
            counts[instance.state.value] = counts.get(instance.state.value, 0) + 1
        summary = ", ".join(f"{count} {state}" for state, count in counts.items())
        if self._summary_note:  # a failed or stopped boot: said first, kept
            summary = f"{self._summary_note}; {summary}"
        if summary != self._summary:
            self._summary = summary
            _notify_systemd(f"STATUS={summary}")

    # -- signals to the supervisor --------------------------------------------------------------

    def _on_terminate(self, signum: int) -> None:
        log.info("%s: shutting down", signal_name(signum))
        self._begin_shutdown(self.exit_status, f"shutdown ({signal_name(signum)})")

    def _on_hangup(self, signum: int) -> None:
        """SIGHUP or SIGUSR2: reopen the programs' log files (logrotate's postrotate)."""
        self._reopen(list(self.instances.values()), signal_name(signum))

    def _reopen(self, instances: list[Instance], by: str) -> list[str]:
        """Reopen the log files of ``instances`` for ``by`` (a signal, ``ctl reopen``);
        the log says what happened, once: each file that could not be reopened, or
        that they were. The errors, one line each."""
        seen: set[int] = set()  # a file several instances write is reopened once
        errors = [error for instance in instances for error in instance.reopen_outputs(seen)]
        for error in errors:
            log.info("%s: %s", by, error)
        if not errors:
            log.info("%s: log files reopened", by)
        return errors

    def _on_unexpected(self, signum: int) -> None:
        """A signal whose default action would kill us (and, through the guard,
        every program) without a word: said, and ignored."""
        from ..signals import signal_name as name  # names SIGRTMIN+3 too

        log.info(
            "%s received: ignored (SIGHUP or SIGUSR2 reopen the log files;"
            " `ctl reload` reloads the configuration)",
            name(signum),
        )

    def _command_reopen(self, request: Request, respond: Callable[[bytes], None]) -> None:
        instances = self._names(request, False)
        errors = self._reopen(instances, "reopen")
        if errors:
            raise _Refused(protocol.FAILED, "; ".join(errors))
        respond(protocol.encode_text_result(request.id, self._infos(instances)))

    def _command_tail(self, request: Request, respond: Callable[[bytes], None]) -> None:
        after = request.args.get("after")
        of = request.args.get("of")  # the instance a follower follows: its "instance"
        if of is not None and (isinstance(of, bool) or not isinstance(of, int)):
            raise _Refused(protocol.BAD_ARGUMENTS, "of: expected an instance (an integer)")
        followed = [i for i in self.instances.values() if i.serial == of] if of is not None else []
        if of is not None and not followed:  # removed by a reload (and perhaps added anew)
            names = request.args.get("names")
            name = names[0] if isinstance(names, list) and names else "the program"
            ended = f"{one_line(str(name))} was removed (ctl reload)"
            cursor = after if isinstance(after, int) and not isinstance(after, bool) else 0
            result = {"lines": [], "cursor": cursor, "missed": False, "instance": of}
            respond(protocol.encode_result(request.id, {**result, "ended": ended}))
            return
        instances = followed or self._names(request, True)
        if len(instances) != 1:  # a program of instances, a group, all: name the choices
            names = [i.name for i in instances]
            shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if names[10:] else "")
            choices = f": {shown}" if names else ""
            raise _Refused(protocol.BAD_ARGUMENTS, f"tail: name one program instance{choices}")
        (instance,) = instances
        count = request.args.get("lines", 10)
        most = protocol.MAX_TAIL_LINES
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= most:
            raise _Refused(protocol.BAD_ARGUMENTS, f"lines: expected an integer from 0 to {most}")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
            raise _Refused(protocol.BAD_ARGUMENTS, "after: expected a cursor (an integer)")
        ring = instance.ring
        if after is not None and after > ring.mark:  # not one of its cursors: refused,
            # not waited on (until it wrote that many chunks, or TAIL_WAIT)
            shown = str(after)
            if len(shown) > 24:
                shown = f"{shown[:12]}... ({len(shown)} digits)"
            reason = f"after: {shown} is past {instance.name}'s last cursor ({ring.mark})"
            raise _Refused(protocol.BAD_ARGUMENTS, reason)

        if not ring.size:
            reason = f"{instance.name} keeps none of its output (its output_buffer is 0)"
            raise _Refused(protocol.FAILED, reason)

        def answer() -> None:
            # A follower's answer goes on from its cursor (at most about ``most`` lines);
            # the newest ``most`` would skip what lies between, unsaid.
            if after is None:
                lines, cursor = ring.last(count, most_bytes=protocol.MAX_TAIL_BYTES), ring.mark
            else:
                lines, cursor = ring.after(after, most, protocol.MAX_TAIL_BYTES)
            result = {
                "lines": [
                    {
                        "stream": line.stream,
                        "time": line.when,
                        "text": line.text.decode("utf-8", "replace"),
                    }
                    for line in lines
                ],
                "cursor": cursor,
                # lines written since ``after`` that the ring no longer holds
                "missed": after is not None and ring.lost > after,
                "instance": instance.serial,
            }
            respond(protocol.encode_result(request.id, result))

        if after is None or ring.mark > after:
            answer()
            return
        self._wait_for_output(instance, answer)

    def _wait_for_output(self, instance: Instance, answer: Callable[[], None]) -> None:
        """Answer once a line comes (at the end of the event that brought it, so a
        whole chunk goes in one answer), or after TAIL_WAIT seconds with none, or
        at once when a reload removes the instance (its ring gets no more lines)."""
        ring = instance.ring
        loop = self._loop
        assert loop is not None
        done = False
        due: Timer | None = None

        def finish() -> None:
            nonlocal done
            if done:
                return
            done = True
            unfollow()
            loop.cancel(timer)
            if finish in instance.tail_waits:
                instance.tail_waits.remove(finish)
            answer()

        def line_came(line: Line) -> None:
            nonlocal due
            if due is None:  # one wake-up per follower for a whole chunk, not one a line
                due = loop.call_at(loop.time(), finish)
            unfollow()

        unfollow = ring.follow(line_came)
        timer = loop.call_at(loop.time() + TAIL_WAIT, finish)
        instance.tail_waits.append(finish)

    # -- the control socket --------------------------------------------------------------------

    def _read_only(self, command: str) -> bool:
        if command in protocol.READ_ONLY_COMMANDS:
            return True
        registered = self._commands.get(command)
        return registered is not None and registered.read_only

    def _handle(self, connection: Connection, request: Request) -> None:
        command = request.command
        # status and ping answer before they return: their place is taken then
        respond = connection.answer if command in _AT_ONCE else connection.answer_later()
        peer = self._peer = connection.peer
        # What the request logs waits until it has done its work, the request's
        # own line first: a stop's signal should not wait for the log file
        # (docs/supervisor-benchmarks.md).
        # A read-only command (a built-in one, or one registered as such) has
        # neither an audit line nor work to put first.
        if self._read_only(command):
            self._dispatch_command(request, respond)
            return
        with _LogAfterwards((_AUDIT, peer.uid, peer.pid, command, _shown_args(request.args))):
            self._dispatch_command(request, respond)

    def _dispatch_command(self, request: Request, respond: Callable[[bytes], None]) -> None:
        command = request.command
        try:
            handler = self._handlers.get(command)
            if handler is None:  # looked up once: built-in names only, a few
                handler = getattr(self, f"_command_{command}", None)
                if handler is not None:
                    self._handlers[command] = handler
            if handler is not None:
                known = _BUILTIN_ARGUMENTS.get(command, ())
                for name in request.args:  # a typo's dryrun must not be a real reload
                    if name not in known:
                        hint = did_you_mean(name, known)
                        reason = f"{command}: unexpected argument {name!r}{hint}"
                        raise _Refused(protocol.BAD_ARGUMENTS, reason)
                handler(request, respond)
            elif command in self._commands:
                self._call(self._commands[command], request, respond)
            else:
                raise _Refused(protocol.UNKNOWN_COMMAND, f"unknown command {command!r}")
        except _Refused as exc:
            respond(protocol.encode_error(request.id, exc.type, exc.message))
        except Exception as exc:  # a bug: answer, log, keep serving
            log.error("internal error in %s:\n%s", one_line(command), escaped_traceback(exc))
            respond(
                protocol.encode_error(request.id, protocol.INTERNAL, f"{type(exc).__name__}: {exc}")
            )

    def _names(self, request: Request, required: bool) -> list[Instance]:
        names = request.args.get("names", [])
        if type(names) is list and len(names) == 1 and type(names[0]) is str:
            instance = self.instances.get(names[0])  # the usual: one instance, by its name
            if instance is not None and not instance.removing and names[0] != "all":
                return [instance]
        if not isinstance(names, list) or not all(map(_is_str, names)):
            raise _Refused(protocol.BAD_ARGUMENTS, "names: expected a list of strings")
        if not names:
            if required:
                raise _Refused(protocol.BAD_ARGUMENTS, "name at least one program, or all")
            return list(self.instances.values())
        found: dict[str, Instance] = {}
        groups = self.config.groups
        # a program a reload removed, still stopping, is only to be looked at
        looking = request.command in protocol.READ_ONLY_COMMANDS
        for name in names:
            if name == "all":
                found.update((n, i) for n, i in self.instances.items() if looking or not i.removing)
            elif name in self.instances and (looking or not self.instances[name].removing):
                found[name] = self.instances[name]
            elif name in self._by_program:
                found.update((i.name, i) for i in self._by_program[name])
            elif name.endswith(":*") and name[:-2] in self._by_program:  # supervisorctl's
                found.update((i.name, i) for i in self._by_program[name[:-2]])
            elif name in groups or (name.endswith(":*") and name[:-2] in groups):
                for program in groups[name[:-2] if name.endswith(":*") else name]:
                    found.update((i.name, i) for i in self._by_program.get(program, []))
            elif any(  # "no program named 'w' (did you mean 'w'?)" made no sense
                i.removing and (name == i.name or name.removesuffix(":*") == i.program.name)
                for i in self.instances.values()
            ):
                message = f"program {name!r} was removed by a reload and is stopping"
                raise _Refused(protocol.NOT_FOUND, message)
            else:
                what = "program or group" if groups else "program"
                shown = [n for n, i in self.instances.items() if looking or not i.removing]
                hint = did_you_mean(name, [*self._by_program, *shown, *groups])
                raise _Refused(protocol.NOT_FOUND, f"no {what} named {name!r}{hint}")
        return list(found.values())

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    @property
    def _caller(self) -> str:
        """Who sent the request being handled, for the run history and the log
        (made when needed: most requests never ask)."""
        peer = self._peer
        if peer is None:
            return ""
        return f"uid {peer.uid} (pid {peer.pid}) through the control socket"

    def _infos(self, instances: Iterable[Instance], more: str = "") -> str:
        """``{"programs": [ProgramInfo, ...]}`` as JSON text, ``more`` (``, "key":
        value``) after the list."""
        assert self._loop is not None
        now = self._loop.time()
        waited = self._boot_waits_for() if self._phase == "boot" else None
        infos = ", ".join([instance.info_text(now, waited) for instance in instances])
        return f'{{"programs": [{infos}]{more}}}'

    def _boot_waits_for(self) -> str:
        """What the boot waits for, in a waiting program's status: the programs of
        the wave under way not ready yet (waves are strict: the next starts once
        the whole wave is ready, not once a program's own ``after`` is)."""
        if self._wave >= len(self._waves):
            return ""
        names = [i.name for i in self._waves[self._wave] if not i.was_ready and not i.held]
        return _names_text(names) if names else ""

    def _not_shutting_down(self) -> None:
        if self._phase in ("shutdown", "done"):
            raise _Refused(protocol.FAILED, "the supervisor is shutting down")

    def _wait(
        self,
        instances: list[Instance],
        done: Callable[[Instance], bool],
        respond: Callable[[], None],
    ) -> None:
        waiter = _Waiter(instances, done, respond)
        if not waiter.check():
            self._waiters.append(waiter)

    def _command_ping(self, request: Request, respond: Callable[[bytes], None]) -> None:
        respond(protocol.encode_result(request.id, "pong"))

    def _command_status(self, request: Request, respond: Callable[[bytes], None]) -> None:
        phase = _SHOWN_PHASES.get(self._phase, "stopping")
        more = f', "supervisor": {{"pid": {self._pid:d}, "state": "{phase}"}}'
        respond(
            protocol.encode_text_result(request.id, self._infos(self._names(request, False), more))
        )

    def _command_commands(self, request: Request, respond: Callable[[bytes], None]) -> None:
        infos = [
            CommandInfo(
                name,
                f"({', '.join(_BUILTIN_SIGNATURES[name])})",
                doc,
                name in protocol.READ_ONLY_COMMANDS,
                True,
            )
            for name, doc in _BUILTIN_DOCS.items()
        ]
        infos += [
            CommandInfo(
                name, _signature_text(command.signature), command.doc, command.read_only, False
            )
            for name, command in self._commands.items()
        ]
        respond(protocol.encode_result(request.id, {"commands": [i.to_json() for i in infos]}))

    def _reply_when(
        self,
        request: Request,
        respond: Callable[[bytes], None],
        instances: list[Instance],
        done: Callable[[Instance], bool],
    ) -> None:
        self._wait(
            instances,
            done,
            lambda: respond(protocol.encode_text_result(request.id, self._infos(instances))),
        )

    def _command_start(self, request: Request, respond: Callable[[bytes], None]) -> None:
        self._not_shutting_down()
        instances = self._names(request, True)
        for instance in instances:
            instance.held = not instance.program.autostart  # a boot waits for it again
            instance.held_by = ""
            if instance.replaces:  # never beside a reload's old instances: once they are gone
                instance.start_pending = True
            elif instance.start_pending:  # a reload's start to come: in its order, then
                pass
            elif instance.state is not State.RUNNING and instance.state is not State.STARTING:
                self._event(instance, instance.machine.start)
        self._reply_when_started(request, respond, instances)

    def _command_stop(self, request: Request, respond: Callable[[bytes], None]) -> None:
        self._not_shutting_down()
        instances = self._names(request, True)
        # A program asked whole (web, not web:1): a reload's old instances of it too,
        # still stopping ("no process of theirs left": web while web:0, web:1 wait)
        asked = set(map(id, instances))
        whole = {
            name
            for name in {instance.program.name for instance in instances}
            if all(id(i) in asked for i in self._by_program.get(name, ()))
        }
        instances += [i for i in self.instances.values() if i.removing and i.program.name in whole]
        for instance in instances:
            self._stop(instance, self._caller)
        runs = {id(instance): instance.spawns for instance in instances}
        # Done once no process is left, or a start (ctl start meanwhile) began another run
        self._reply_when(
            request,
            respond,
            instances,
            lambda i: (not i.alive and i.state in _NO_PROCESS) or i.spawns != runs[id(i)],
        )

    def _command_restart(self, request: Request, respond: Callable[[bytes], None]) -> None:
        self._not_shutting_down()
        instances = self._names(request, True)
        for instance in instances:
            # Not held: a boot goes on waiting for it (its stop must not let the
            # boot pass it by, as a program stopped before its turn)
            instance.held = not instance.program.autostart
            instance.held_by = ""
            self._stop(instance, f"{self._caller} (restart)", hold=False)
            if instance.replaces:  # never beside a reload's old instances
                instance.start_pending = True
            else:
                self._event(instance, instance.machine.start)
        self._reply_when_started(request, respond, instances)

    def _reply_when_started(
        self, request: Request, respond: Callable[[bytes], None], instances: list[Instance]
    ) -> None:
        """Answer once each instance runs, has given up, or has failed a start
        since the request: the first failure of a streak is retried at once,
        and waiting for that retry too made ``ctl start`` of a program that
        hangs take twice ``start_timeout`` (systemctl answers at the first)."""
        failures = {id(instance): instance.machine.failures for instance in instances}
        self._reply_when(
            request,
            respond,
            instances,
            lambda i: (
                (i.state in _DONE_STARTING or i.machine.failures != failures[id(i)])
                and not i.start_pending
            ),
        )

    def _stop(self, instance: Instance, by: str, hold: bool = True) -> None:
        """Ask ``instance`` to stop, remembering who asked (for ``why``). At boot,
        a program stopped on request (``hold``) no longer holds the boot up."""
        if hold:
            instance.held = True
            instance.held_by = by
        instance.start_pending = False  # a reload's start still to come: not any more
        if instance.state in (State.STARTING, State.RUNNING):
            instance.stop_by = by
        self._event(instance, instance.machine.stop)

    def _command_signal(self, request: Request, respond: Callable[[bytes], None]) -> None:
        from ..signals import parse_signal

        raw = request.args.get("signal")
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            raise _Refused(protocol.BAD_ARGUMENTS, "signal: expected a signal name or number")
        try:
            signum = parse_signal(raw)
        except ValueError as exc:
            raise _Refused(protocol.BAD_ARGUMENTS, str(exc)) from None
        instances = self._names(request, True)
        idle = [i.name for i in instances if not i.alive]
        if idle:
            raise _Refused(protocol.FAILED, f"not running: {', '.join(idle)}")
        # a forking program's daemon not known yet: the run's processes are those
        # that came back to us; with none, the signal would reach nobody
        unknown = [
            i.name
            for i in instances
            if i.spawned is None and i.main is None and not self._escaped(i)
        ]
        if unknown:
            names = ", ".join(unknown)
            raise _Refused(
                protocol.FAILED, f"{names}: no process to signal yet, waiting for its pidfile"
            )
        for instance in instances:
            self._signal(instance, signum)
        respond(protocol.encode_text_result(request.id, self._infos(instances)))

    def _command_why(self, request: Request, respond: Callable[[bytes], None]) -> None:
        instances = self._names(request, True)
        now = self._now()
        programs = [
            {
                "name": instance.name,
                "status": instance.info_json(now),
                "runs": [run.info().to_json() for run in instance.runs],
            }
            for instance in instances
        ]
        respond(protocol.encode_result(request.id, {"programs": programs}))

    def _command_reload(self, request: Request, respond: Callable[[bytes], None]) -> None:
        try:
            self._reload(request, respond)
        except _Refused as exc:  # said to the client, and in the log (the journal)
            if request.args.get("dry_run") is not True:
                log.info("reload refused: %s", exc.message)
            raise

    def _reload(self, request: Request, respond: Callable[[bytes], None]) -> None:
        self._not_shutting_down()
        dry_run = request.args.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise _Refused(protocol.BAD_ARGUMENTS, "dry_run: expected true or false")
        path = self._config_file
        if path is None:
            raise _Refused(
                protocol.FAILED, "started without a configuration file: nothing to re-read"
            )
        try:
            check_config_file(path)
            new = load(path, trust=check_config_file)
            if self._log_override is not None:
                new = dataclass_replace(new, log=self._log_override)
            check_system(new)
            _check_executables(new)
            fit_descriptor_limit(new, raise_soft=not dry_run)
        except DaemonError as exc:
            raise _Refused(protocol.FAILED, f"nothing changed: {exc}") from None
        except OSError as exc:  # its directory moved or removed since the start
            reason = exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
            raise _Refused(protocol.FAILED, f"nothing changed: {reason}") from None
        plan = reload_plan(self.config, new)
        old = self.config
        if (new.control, new.pidfile) != (old.control, old.pidfile):  # spelled anew only
            # programs carry the control path as their mark (SUPERVISOR_VARIABLE): kept
            new = dataclass_replace(new, control=old.control, pidfile=old.pidfile)
        plan["applied"] = not dry_run
        targets = self._open_new_files(new, dry_run)
        if dry_run:
            self._check_new_log(new)
        else:
            self._apply(new, plan, targets)
        respond(protocol.encode_result(request.id, plan))

    def _open_new_files(
        self, new: SupervisorConfig, dry_run: bool
    ) -> dict[int, tuple[Target | None, Target | None]]:
        """The output files a reload to ``new`` opens at once (``Instance.new_files``),
        by ``id`` of their instance: opened now, before anything changes (a dry run
        checks their paths only). At the first that cannot be, the reload is refused
        whole (as ``supervise`` would be, one line), and those opened are closed."""
        opened: dict[int, tuple[Target | None, Target | None]] = {}
        try:
            for program in new.programs:
                for name in program.instance_names():
                    instance = self.instances.get(name)
                    if instance is None or instance.program.name != program.name:
                        continue
                    if not instance.new_files(program):
                        continue
                    if dry_run:
                        instance.check_targets(program)
                    else:
                        opened[id(instance)] = instance.open_targets(program)
        except OSError as exc:
            self._close_targets(opened)
            message = f"nothing changed: cannot open {_open_error(exc)}"
            raise _Refused(protocol.FAILED, message) from None
        except BaseException:
            self._close_targets(opened)
            raise
        return opened

    def _close_targets(self, targets: dict[int, tuple[Target | None, Target | None]]) -> None:
        """Let go of what ``_open_new_files`` opened (by ``id`` of their instance)."""
        names = {id(instance): instance.name for instance in self.instances.values()}
        for key, pair in targets.items():
            _release(pair, names.get(key, ""))

    def _apply(
        self,
        new: SupervisorConfig,
        plan: dict[str, Any],
        targets: dict[int, tuple[Target | None, Target | None]],
    ) -> None:
        """Make ``new`` the configuration: only what changed is touched. ``targets``:
        the new output files, opened already (``_open_new_files``). Everything that
        can fail comes before the first change."""
        assert self._loop is not None
        now = self._loop.time()
        try:
            new_log = self._open_new_log(new)  # may refuse: before any change
        except BaseException:
            self._close_targets(targets)
            raise
        # a reload during the boot: the boot goes on in the new file's order
        waves = start_order(new.programs) if self._phase == "boot" else None
        if self._server is not None:
            try:
                self._server.set_groups(new.control_group, new.observer_group)
            except (OSError, KeyError, ValueError, OverflowError) as exc:
                self._close_targets(targets)
                if new_log is not None:
                    new_log.close()
                reason = getattr(exc, "strerror", None) or exc
                message = f"nothing changed: cannot give the control socket its group: {reason}"
                raise _Refused(protocol.FAILED, message) from None
        self._use_log(new_log)
        log.info("reload: %s", _plan_summary(plan))
        old, self.config = self.config, new
        # Until the boot walks the new waves (below), no event of the changes may
        # move it on through the old ones; nor the reload's stops and starts begin
        # before every change is made.
        self._in_wave = waves is not None
        self._reload_moving = True
        try:
            ended = self._change(old, new, plan, targets, now, waves is not None)
        finally:
            self._in_wave = False
            self._reload_moving = False
        if waves is not None and self._phase == "boot":
            self._waves = [self._wave_instances(wave) for wave in waves]
            self._wave = 0
            self._launch_wave()  # what a wave already passed holds that is new
            self._boot_progress()
        self._reload_progress()
        for instance, actions in ended:
            if actions:  # a backoff the new restart ended: its timer, then the checks
                self._perform(instance, actions)  # (a critical program failed: stop all)
                self._changed(instance)

    def _change(
        self,
        old: SupervisorConfig,
        new: SupervisorConfig,
        plan: dict[str, Any],
        targets: dict[int, tuple[Target | None, Target | None]],
        now: float,
        booting: bool,
    ) -> list[tuple[Instance, list[Action]]]:
        """``_apply``'s changes, from ``old`` to ``new``. Its stops and starts are
        queued, for ``_reload_progress`` to make in ``after`` order; ``booting``:
        new instances the boot is to start are left to it (after the programs in
        their ``after``). Returns each kept instance with what its reconfigure
        left to do (``Instance.reconfigure``)."""
        ended: list[tuple[Instance, list[Action]]] = []
        if self._guard is not None:  # removed programs may still be stopping: theirs too
            self._guard.set_users(self._users() | set(self._guard.users))
        restarts = {change["name"] for change in plan["changed"] if change["restart"]}
        stop_ranks, start_ranks = _ranks(old), _ranks(new)
        starts: list[Instance] = []
        for name in plan["removed"]:
            for instance in self._by_program.pop(name, []):
                self._remove(instance, stop_ranks.get(name, 0))
        for program in new.programs:
            old_ones = self._by_program.get(program.name, [])
            if program.name in plan["added"] or old_ones:
                kept = {instance.name: instance for instance in old_ones}
                # New instances start with autostart, or beside running ones (started
                # by hand), as the new instances of web:0 started by ctl start web;
                # not those of a program stopped on purpose (ctl stop): it stays so
                running_on = any(instance.state in _RUNNING_ON for instance in old_ones)
                held = [instance for instance in old_ones if instance.held]
                stopped = bool(old_ones) and len(held) == len(old_ones)
                start_new = running_on or (program.autostart and not stopped)
                instances: list[Instance] = []
                fresh_ones: list[Instance] = []
                new_ones: list[Instance] = []
                for instance_name in program.instance_names():
                    leaving = self.instances.get(instance_name)
                    if instance_name not in kept and leaving is not None and leaving.removing:
                        leaving.removing = False
                        leaving.held = not program.autostart  # its removal held it
                        ended.append(
                            (leaving, leaving.reconfigure(program, targets.get(id(leaving))))
                        )
                        instances.append(leaving)
                        stop = self._queued_stop(leaving)
                        if stop is not None and not stop.asked:
                            # not asked to stop yet: stopped, and started again if so
                            if start_new:
                                stop.restart = leaving.start_pending = True
                                self._queue_start(leaving, start_ranks[program.name])
                            continue
                        # removed by a reload before, still stopping: it comes back, one
                        # instance, and starts again once stopped (never two processes)
                        new_ones.append(leaving)
                        if start_new:
                            fresh_ones.append(leaving)
                        continue
                    if instance_name not in kept:
                        fresh = Instance(program, instance_name, now)
                        if stopped and not start_new:  # as the others: stopped on purpose
                            fresh.held, fresh.held_by = True, held[0].held_by
                        self.instances[instance_name] = fresh
                        new_ones.append(fresh)
                        if start_new:
                            fresh_ones.append(fresh)
                        instances.append(fresh)
                        continue
                    found = kept.pop(instance_name)
                    running = found.state in _RUNNING_ON
                    ended.append((found, found.reconfigure(program, targets.get(id(found)))))
                    if booting and not (found.held and found.held_by):
                        # autostart changed during the boot: it starts it, or not,
                        # unless an operator stopped it (the boot then fails, saying so)
                        found.held = not program.autostart
                    if program.name in restarts and running:
                        # Not held: a boot goes on waiting for it (as ctl restart)
                        self._queue_stop(found, stop_ranks.get(program.name, 0), True)
                        found.start_pending = True
                        self._queue_start(found, start_ranks[program.name])
                    instances.append(found)
                for leftover in kept.values():
                    self._remove(leftover, stop_ranks.get(program.name, 0))
                # web becoming web:0 and web:1 (or back): the new ones start once the
                # old ones are gone, never beside them (a port, a pidfile they share)
                behind = [i for i in kept.values() if self.instances.get(i.name) is i]
                behind += [  # an earlier reload's, still stopping (2 -> 1, then 3)
                    i
                    for i in self.instances.values()
                    if i.removing and i.program.name == program.name and i not in behind
                ]
                for fresh in new_ones:
                    fresh.replaces = list(behind)
                    fresh.start_pending = bool(behind) and fresh in fresh_ones
                if behind and fresh_ones:
                    log.info(
                        "%s: %s start once %s stopped",
                        program.name,
                        ", ".join(fresh.name for fresh in fresh_ones),
                        ", ".join(gone.name for gone in behind),
                    )
                if booting:  # new ones start in their wave; one held or started before, now
                    if not behind:
                        starts.extend(f for f in fresh_ones if f.held or f.launched)
                else:
                    for fresh in fresh_ones:
                        fresh.start_pending = True
                        self._queue_start(fresh, start_ranks[program.name])
                self._by_program[program.name] = instances
        ordered = {i.name: i for p in new.programs for i in self._by_program[p.name]}
        ordered.update((name, i) for name, i in self.instances.items() if name not in ordered)
        self.instances = ordered  # in the file's order (removed ones last, until gone)
        for instance in starts:
            instance.launched = True
            self._event(instance, instance.machine.start)
        return ended

    def _remove(self, instance: Instance, rank: int) -> None:
        """A reload removed ``instance``: stop it (in ``after`` order: ``rank``, its
        wave in the file it ran by), forget it once it is gone."""
        instance.removing = True
        self._queue_stop(instance, rank, False)

    def _queue_stop(self, instance: Instance, rank: int, restart: bool) -> None:
        stop = self._queued_stop(instance)
        if stop is not None:
            self._reload_stops.remove(stop)
        self._reload_stops.append(_ReloadStop(instance, rank, restart))

    def _queued_stop(self, instance: Instance) -> _ReloadStop | None:
        return next((stop for stop in self._reload_stops if stop.instance is instance), None)

    def _queue_start(self, instance: Instance, rank: int) -> None:
        self._reload_starts = [s for s in self._reload_starts if s.instance is not instance]
        self._reload_starts.append(_ReloadStart(instance, rank))

    def _reload_progress(self) -> None:
        """Make the reloads' stops, then their starts, in ``after`` order, as the
        shutdown and the boot do: a program is stopped, and gone, before those it
        started after; the starts come once every stop is over (a renamed program
        never runs beside the old one: a port, a pidfile), each once the starts
        of the waves before it are ready, and those in its own ``after`` too (one
        on its way is waited for: starting, in backoff, a start to come). A start
        whose ``after`` holds one that is not ready, nor on its way (stopped,
        failed), is not made: the log says so. Called at each change."""
        if self._reload_moving:
            return
        if self._phase not in ("boot", "running"):
            self._reload_stops.clear()  # the shutdown stops everything, in its order
            self._reload_starts.clear()
            return
        self._reload_moving = True
        try:
            while self._reload_stop_step() or self._reload_start_step():
                pass
        finally:
            self._reload_moving = False

    def _reload_stop_step(self) -> bool:
        """Ask the stops of the last wave still to stop: whether one was asked.
        ``False`` too while they are under way."""
        self._reload_stops = [stop for stop in self._reload_stops if not stop.over]
        stops = self._reload_stops
        if not stops:
            return False
        top = max(stop.rank for stop in stops)
        due = [stop for stop in stops if stop.rank == top and not stop.asked]
        for stop in due:
            stop.asked = True
            instance = stop.instance
            if not stop.restart:
                self._stop(instance, "reload (removed)")
                self._forget_if_removed(instance)
            elif instance.start_pending:  # else an operator's stop or restart came first
                self._stop(instance, "reload", hold=False)
                instance.start_pending = True
        return bool(due)

    def _reload_start_step(self) -> bool:
        """Make the starts that may be made now: whether one was (or given up)."""
        if self._reload_stops:
            waiting = _names_text([stop.instance.name for stop in self._reload_stops])
            for start in self._reload_starts:
                start.instance.start_waits = f"{waiting} stopped"
            return False
        starts = []
        for start in self._reload_starts:
            instance = start.instance
            if self.instances.get(instance.name) is not instance or instance.removing:
                continue  # removed since
            if start.settled:
                continue  # ready (or not): those of later waves need not wait for it
            if start.started or instance.start_pending:
                starts.append(start)  # (not pending: a stop came, or a ctl start)
        self._reload_starts = starts
        # on its way: started, or held up (by the old instances, by its after)
        coming = [
            s for s in starts if s.started or s.instance.replaces or self._after_coming(s.instance)
        ]
        held_up = {id(s) for s in coming}
        first = min((s.rank for s in coming), default=None)
        due = [s for s in starts if id(s) not in held_up and (first is None or s.rank <= first)]
        if first is not None:  # waves are strict, as at the boot
            waiting = _names_text([s.instance.name for s in coming if s.rank == first])
            for start in starts:
                if start.rank > first and id(start) not in held_up:
                    start.instance.start_waits = f"{waiting} ready"
        if not due:
            return False
        with _LogAfterwards():  # every program started, then their log lines
            for start in due:
                instance = start.instance
                instance.start_pending = False
                instance.start_waits = ""
                start.started = True
                start.failures = instance.machine.failures
                missing = [
                    before
                    for name in instance.program.after
                    for before in self._by_program.get(name, ())
                    if not _is_ready(before)
                ]
                if missing:
                    before = missing[0]
                    instance.held, instance.held_by = True, "reload"
                    log.info(
                        "reload: %s not started: %s, in its after, is %s",
                        instance.name,
                        before.name,
                        before.state.value,
                    )
                    continue
                instance.launched = True
                self._event(instance, instance.machine.start)
        return True

    def _after_coming(self, instance: Instance) -> bool:
        """Whether a program in ``instance``'s ``after`` is on its way to ready
        (its start then waits), saying which in ``start_waits``."""
        coming = [
            before.name
            for name in instance.program.after
            for before in self._by_program.get(name, ())
            if _on_its_way(before)
        ]
        if coming:
            instance.start_waits = f"{_names_text(coming)} ready"
        return bool(coming)

    def _forget_if_removed(self, instance: Instance) -> None:
        if instance.removing and not instance.alive and instance.state in _NO_PROCESS:
            if self.instances.get(instance.name) is instance:
                del self.instances[instance.name]
            for wake in list(instance.tail_waits):  # its followers: no more lines come
                wake()
            instance.close()
            self._start_replacements(instance)

    def _start_replacements(self, gone: Instance) -> None:
        """``gone`` was an old instance that new ones may not run beside
        (``replaces``): start those it was the last one of that are to start (a
        reload's, or a ``ctl start`` meanwhile), unless asked to stop since. One
        still stopping itself (a removed instance that came back) starts once it
        is stopped."""
        queued = {id(start.instance) for start in self._reload_starts}  # in after order
        for instance in list(self.instances.values()):
            if gone not in instance.replaces:
                continue
            instance.replaces = [old for old in instance.replaces if old is not gone]
            if instance.replaces or not instance.start_pending or instance.removing:
                continue
            if id(instance) in queued:
                continue
            instance.start_pending = False
            waiting = instance.state in (State.STOPPED, State.STOPPING)
            if waiting and self._phase in ("boot", "running"):
                instance.launched = True
                self._event(instance, instance.machine.start)

    def _command_shutdown(self, request: Request, respond: Callable[[bytes], None]) -> None:
        respond(protocol.encode_result(request.id, {"pid": os.getpid()}))
        self._begin_shutdown(self.exit_status, f"shutdown by {self._caller}")

    def _call(self, command: _Command, request: Request, respond: Callable[[bytes], None]) -> None:
        parameters = command.signature.parameters
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            named = [n for n, p in parameters.items() if p.kind is not p.POSITIONAL_ONLY]
            for name in request.args:  # a misspelt one first: not "missing 'region'"
                if name not in named:
                    hint = did_you_mean(name, named)
                    reason = f"{request.command}: unexpected argument {name!r}{hint}"
                    raise _Refused(protocol.BAD_ARGUMENTS, reason)
        try:
            bound = command.signature.bind(**request.args)
        except TypeError as exc:
            raise _Refused(protocol.BAD_ARGUMENTS, f"{request.command}: {exc}") from None
        # BaseException: SystemExit (argparse in the command) and KeyboardInterrupt
        # are the command's failure, not the supervisor's end. A real Ctrl-C or
        # SIGTERM interrupts the command, and ends the supervisor in order: the
        # signal reached the loop's wake-up fd too.
        assert self._loop is not None
        try:
            result = self._loop.interruptible(command.function, *bound.args, **bound.kwargs)
        except Interrupted:
            reason = "interrupted: the supervisor is shutting down"
            raise self._command_failed(command, request, reason) from None
        except BaseException as exc:
            raise self._command_failed(command, request, _exception_line(exc)) from None
        try:
            line = protocol.encode_result(request.id, result)
        except (TypeError, ValueError) as exc:
            reason = f"result is not JSON: {exc}"
            raise self._command_failed(command, request, reason) from None
        except BaseException as exc:  # a mapping's own items() raised, say
            raise self._command_failed(command, request, _exception_line(exc)) from None
        respond(line)

    def _command_failed(self, command: _Command, request: Request, reason: str) -> _Refused:
        """The ``failed`` answer for a registered command, logged for one that
        changes something (a read-only one is not logged: an observer may poll it)."""
        if not command.read_only:
            log.info("command %s failed: %s", request.command, one_line(reason))
        return _Refused(protocol.FAILED, f"{request.command}: {reason}")


_BUILTIN_DOCS = {
    "ping": "check that the supervisor answers",
    "status": "the state of the named programs (all by default)",
    "start": "start programs and wait until they are ready",
    "stop": "stop programs and wait until they are gone",
    "restart": "stop, then start programs",
    "signal": "send a signal to programs' process groups",
    "shutdown": "stop every program, then exit",
    "commands": "list the commands",
    "reload": "re-read the configuration file; change only what changed",
    "why": "the last runs of programs: how each ended, who stopped it, what followed",
    "tail": "the last lines programs wrote (and, with follow, the next ones)",
    "reopen": "reopen programs' log files (after logrotate moved them)",
}
#: Signals that would end the supervisor at their default action, sent by hand
#: or by a tool (nginx's and Apache's log reopen is SIGUSR1), rather than for a
#: fault of its own (SIGSEGV, SIGXFSZ...): logged and ignored. The programs still
#: get them at their default action (handled, not ignored: an exec resets them).
_STKFLT: int | None = getattr(signal, "SIGSTKFLT", None)  # Linux; in signal since 3.11
_IGNORED_SIGNALS: tuple[int, ...] = (
    signal.SIGUSR1,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    *(() if _STKFLT is None else (_STKFLT,)),
    *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
)

_BUILTIN_SIGNATURES: dict[str, tuple[str, ...]] = {
    "ping": (),
    "status": ("names: list[str] = []",),
    "start": ("names: list[str]",),
    "stop": ("names: list[str]",),
    "restart": ("names: list[str]",),
    "signal": ("signal: str | int", "names: list[str]"),
    "shutdown": (),
    "commands": (),
    "reload": ("dry_run: bool = False",),
    "why": ("names: list[str]",),
    "tail": (
        "names: list[str]",
        "lines: int = 10",
        "after: int | None = None",
        "of: int | None = None",
    ),
    "reopen": ("names: list[str] = []",),
}
# The argument names of each built-in command: others are refused, as for registered ones.
#: How often a stop looks whether the processes of a run awaiting its pidfile are gone.
_STOPPING_LOOK = 0.01

#: Built-in commands answered before their handler returns, always.
_AT_ONCE = frozenset({"status", "ping"})

_BUILTIN_ARGUMENTS = {
    name: frozenset(part.split(":")[0] for part in signature)
    for name, signature in _BUILTIN_SIGNATURES.items()
}


def _exception_line(exc: BaseException) -> str:
    """``SystemExit: 2``: an exception's type and the first line of its message."""
    try:
        text = str(exc).strip()
    except Exception:  # a broken __str__ of the application's
        text = ""
    name = type(exc).__name__
    return f"{name}: {text.splitlines()[0]}" if text else name


class _Refused(Exception):
    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


class _LogHandler(logging.Handler):
    """The supervisor's own log, written as programs' output is (``output.Target``),
    never blocking: the file at ``path``, opened as theirs are (safely, as root) and
    again when logrotate moved or removed it; without a path, a non-blocking copy of
    standard error (a terminal, a pipe, journald's socket: never its shared flags;
    a pipe not ours to open again is written only when ``poll`` says it can take
    more, such a terminal by a thread: ``output._Writer``).
    A record that cannot be written now (a full disk, a reader that does not read) is
    dropped and counted, and the count written after the next record that can be.
    (Not logging.handlers' WatchedFileHandler: it reopens by name, following
    symlinks, and its module imports pickle and queue, 1.3 MiB of memory.)"""

    def __init__(self, path: str | None) -> None:
        super().__init__()
        self.path = path
        self._dropped = 0  # records not written since the last one that was
        target = None
        if path is not None:
            target = Target.open(path, "supervisor log", guarded=True)
        else:
            try:
                target = Target.open("inherit", "the supervisor's standard error", 2, guarded=True)
            except OSError:  # fd 2 closed: nowhere to write
                pass
        self._target = target or Target(-1, "the supervisor's standard error")
        self._target.says_drops = False  # its own drops are counted in its records
        self.setFormatter(logging.Formatter("%(asctime)s daemonctx: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        target = self._target
        if target.moved():
            try:
                target.reopen()
            except OSError:
                pass  # (an unsafe path now, a full disk): on in the file we have
        if not self._write(text):
            if not self._dropped and self.path is not None:
                error = target.error
                reason = error.strerror if error is not None else "cannot write"
                _say_on_stderr(
                    f"daemonctx: cannot write the supervisor log {self.path}: {reason};"
                    " records are dropped (and counted) until it can\n"
                )
            self._dropped += 1
            return
        dropped = self._dropped
        if dropped and self._write(f"({dropped} log records before the one above were dropped)\n"):
            self._dropped = 0

    def _write(self, text: str) -> bool:
        """Write ``text`` (whole lines) now or never; True when none of it was dropped."""
        return not self._target.write(text.encode("utf-8", "backslashreplace"))

    def handleError(self, record: logging.LogRecord) -> None:
        """A record that cannot be formatted: counted as dropped, not a traceback on a
        standard error that may block."""
        self._dropped += 1

    def close(self) -> None:
        self.acquire()
        try:
            self._target.close()
        finally:
            self.release()
        super().close()


def _open_log(path: str | None) -> _LogHandler:
    """A handler for the supervisor's log at ``path`` (None: standard error); raises
    an ``OSError`` whose ``str`` is one line naming the path."""
    try:
        return _LogHandler(path)
    except OSError as exc:  # paths' message, whole: no "[Errno 21]" before it
        if isinstance(exc, DaemonError) or not exc.strerror:
            raise
        raise DaemonOSEnvironmentError(exc.strerror) from exc


def _standard_error() -> str:
    """Our standard error, as a user reads it: "standard error (/dev/pts/3)",
    "(/dev/null)", "(a pipe)", "(a socket)", "(closed)"."""
    try:
        os.fstat(2)
        name = os.readlink("/proc/self/fd/2")
    except OSError as exc:
        return "standard error (closed)" if exc.errno == errnos.EBADF else "standard error"
    kind = name.partition(":")[0]  # pipe:[1234], socket:[1234]
    if name.startswith("/"):
        return f"standard error ({name})"
    return f"standard error (a {kind})" if kind in ("pipe", "socket") else "standard error"


def _say_on_stderr(text: str) -> None:
    """Write ``text`` (a line) on standard error if it can be now: never waiting."""
    try:
        target = Target.open("inherit", "standard error", 2, guarded=True)
    except OSError:
        return
    if target is not None:
        target.says_drops = False  # nowhere else to say it
        target.write(text.encode(errors="backslashreplace"))
        target.close()


class _LogAfterwards:
    """Hold back what the supervisor logs in the block, and write it at its end,
    after ``first`` (``log.info``'s arguments): the work first, then the log
    file (a stop's signal, a boot's programs). A class, not a generator: it
    wraps every request that changes something, and costs less so."""

    __slots__ = ("at", "first", "held")

    def __init__(self, first: tuple[Any, ...] | None = None) -> None:
        self.first = first
        self.held: list[logging.LogRecord] = []
        self.at = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        self.held.append(record)
        return False  # not now

    def __enter__(self) -> None:
        self.at = time.time()  # ``first`` happened now, before what it logs
        log.addFilter(self)

    def __exit__(self, *exc_info: object) -> None:
        log.removeFilter(self)
        first = self.first
        if first is not None and log.isEnabledFor(logging.INFO):
            record = log.makeRecord(
                log.name, logging.INFO, "(unknown file)", 0, first[0], first[1:], None
            )
            # Stamped when the block began: written first, it is also the earliest.
            record.relativeCreated -= (record.created - self.at) * 1000
            record.created = self.at
            record.msecs = (self.at - int(self.at)) * 1000
            log.handle(record)
        for record in self.held:
            log.handle(record)


def _signal_under(top: int, group: int, signum: int) -> set[int]:
    """Send ``signum`` once to each descendant of ``top`` in process group ``group``:
    a group whose leader is gone, or not ours, cannot be signalled by its id.
    Each is pinned by a pidfd and looked at again (a pid reused since listing is
    in another group) before the signal goes through that pidfd. Returns the pids
    signalled."""
    pending = procfs.children(top)
    seen: set[int] = set()
    signalled: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pending.extend(procfs.children(pid))
        if procfs.live_group(pid) != group:
            continue
        pidfd = open_pidfd(pid)
        if pidfd is None:
            continue
        try:
            if procfs.live_group(pid) == group and not pidfd_exited(pidfd):
                signal.pidfd_send_signal(pidfd, signum)
                signalled.add(pid)
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return signalled


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _how_it_ended(machine: StateMachine) -> str:
    """``failed``, or the last exit: ``exited 3``, ``killed by SIGSEGV``."""
    last = machine.last_exit
    return "failed" if machine.state is State.FAILED or last is None else last.describe()


def _critical_failure(instance: Instance) -> int | None:
    """The supervisor's exit status when ``instance`` is critical and has failed for
    good (``failed``, or ``exited`` with a failure), else None."""
    if not instance.program.critical:
        return None
    machine = instance.machine
    last = machine.last_exit
    failure = last is not None and not succeeded(last, instance.program)
    if not (machine.state is State.FAILED or (machine.state is State.EXITED and failure)):
        return None
    return (_exit_code(last) or 1) if last is not None and failure else 1


def _group_killable(pid: int) -> bool:
    """Whether the guard may kill the process group of ``pid``, a main process
    (its workers: a daemon leads its group seldom, but the group is the
    program's): not in our session, where the group could be ours."""
    session = procfs.session_id(pid)
    return session is not None and session != os.getsid(0)


def _group_of(pid: int) -> int | None:
    """The process group of ``pid`` (a zombie's too); None once it is gone."""
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _annotation_text(annotation: Any) -> str:
    """An annotation as written: ``str``, ``list[int]``; string annotations (from
    ``from __future__ import annotations``) without their quotes."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__qualname__
    return inspect.formatannotation(annotation)


def _signature_text(signature: inspect.Signature) -> str:
    """``(region: str, limit: int = 10) -> int``, whatever the annotations' form."""
    empty = inspect.Parameter.empty
    replaced = signature.replace(
        parameters=[
            p.replace(annotation=_Written(_annotation_text(p.annotation)))
            if p.annotation is not empty
            else p
            for p in signature.parameters.values()
        ],
        return_annotation=empty
        if signature.return_annotation is empty
        else _Written(_annotation_text(signature.return_annotation)),
    )
    return str(replaced)


class _Written:
    """An annotation that ``inspect`` prints as it is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


#: Changing one of these restarts the program (its process must be started anew).
RESTART_FIELDS = (
    "command",
    "environment",
    "environment_file",
    "user",
    "group",
    "directory",
    "umask",
    "pidfile",
    "nice",
    "limits",
)


def _open_error(exc: OSError) -> str:
    """Why an output file could not be opened, after "cannot open ": the stream,
    the path and the reason ("web's stdout /x/web.log: no such directory /x")."""
    message = exc.strerror or str(exc)
    if message.startswith("cannot open "):  # paths' own words: said once
        return message[len("cannot open ") :]
    if isinstance(exc, UnsafePathError):  # "refusing web's stdout PATH: why"
        return message.removeprefix("refusing ")
    return message


def _ranks(config: SupervisorConfig) -> dict[str, int]:
    """Each program's wave in ``config``'s start order."""
    return {name: rank for rank, wave in enumerate(start_order(config.programs)) for name in wave}


def _on_its_way(instance: Instance) -> bool:
    """Whether ``instance`` is to be ready soon, or not, without anyone's help:
    starting, in backoff, stopping (a stop ends), or a start still to come."""
    return instance.start_pending or instance.state in _ON_ITS_WAY


def _is_ready(instance: Instance) -> bool:
    """Ready now: running, or a one-shot done."""
    return instance.state is State.RUNNING or (
        instance.state is State.EXITED and _one_shot_done(instance)
    )


_string = protocol.json_string  # C: a JSON string, ASCII only


def _json_int(value: int | None) -> str:
    return "null" if value is None else f"{value:d}"


def _json_float(value: float) -> str:
    """A finite float as json writes it (``float.__repr__``)."""
    value = float(value)
    if value - value != 0.0:  # inf or nan: not JSON; a clock never gives one
        raise ValueError(f"not a finite number: {value!r}")
    return float.__repr__(value)


def _names_text(names: list[str]) -> str:
    """``db``, ``db and cache``, ``a, b, c and 4 more``: for a status line."""
    if len(names) > 3:
        names = [*names[:3], f"{len(names) - 3} more"]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _to_launch(instance: Instance) -> bool:
    """Whether its wave's launch starts ``instance``: not stopped on request before
    its turn (held), not started already (a boot walking its waves again after a
    reload), not a reload's new instance waiting for the old ones to be gone."""
    return not instance.held and not instance.launched and not instance.start_pending


def _close_capture(capture: Capture, name: str) -> None:
    """Close the targets of instance ``name``'s ``capture``."""
    _release((capture.stdout, capture.stderr), name)


def _release(pair: tuple[Target | None, Target | None], name: str) -> None:
    """Let go of instance ``name``'s targets (``Instance.open_targets``): one shared
    by both streams once; one shared with others is closed by the last of them."""
    stdout, stderr = pair
    if stdout is not None:
        stdout.close(f"{name}'s stdout")
    if stderr is not None and stderr is not stdout:
        stderr.close(f"{name}'s stderr")


def _apply_tables(capture: Capture, program: Program) -> None:
    """Give ``capture``'s files ``program``'s tables (``max_bytes``, ``backups``,
    ``timestamps``): the same for every writer of a file (the configuration says so)."""
    for target, spec in ((capture.stdout, program.stdout), (capture.stderr, program.stderr)):
        if isinstance(spec, str) and spec.startswith("/"):
            spec = LogFile(spec)  # a path: a table without limits
        if target is not None and isinstance(spec, LogFile):
            if target.path is not None and spec.path != target.path:
                spec = dataclass_replace(spec, path=target.path)  # spelled anew
            if spec != target.spec:
                target.update(spec)


def _merged(program: Program) -> bool:
    return program.stderr == "stdout"


def _kept(old: str | LogFile, new: str | LogFile) -> bool:
    """Whether a reload keeps an output where it was (limits may change)."""
    return old == new or _same_file(old, new)


def _same_file(first: str | LogFile, second: str | LogFile) -> bool:
    """Whether two output settings name the same file."""

    def path(spec: str | LogFile) -> str | None:
        if isinstance(spec, LogFile):
            return spec.path
        return spec if spec.startswith("/") else None

    one, other = path(first), path(second)
    return one is not None and other is not None and _path_name(one) == _path_name(other)


#: The keys (a program's, [supervisor]'s) whose values name a file, a user, a group:
#: a reload compares what they name, not how it is spelled.
_PATH_KEYS = frozenset(("directory", "pidfile", "control", "log"))
_GROUP_KEYS = frozenset(("group", "control_group", "observer_group"))


def _path_name(path: str) -> str:
    """The file ``path`` names now, as the pidfile checks compare them
    (``paths.resolved_name``: ``/tmp/`` is ``/tmp``, ``/x/./y`` and ``/x//y`` are
    ``/x/y``, a symbolic link on the way is followed); one with ``..`` stays as
    it is: text folds ``/a/link/..`` to ``/a``, the kernel does not."""
    return path if ".." in path.split("/") else resolved_name(path)


def _setting(key: str, value: Any) -> Any:
    """``value`` of ``key`` in one spelling, to compare: paths as ``_path_name``;
    an output path as the log table without limits it is; a user as its passwd
    entry (what a start takes from it: uid, group, HOME, USER); a group as its id.
    Raises ``KeyError`` for a user or group with no entry."""
    if value is None:
        return None
    if key in ("stdout", "stderr"):
        if isinstance(value, str):
            if not value.startswith("/"):
                return value  # inherit, null, stdout
            value = LogFile(value)
        return (_path_name(value.path), value.max_bytes, value.backups, value.timestamps)
    if key == "environment_file":
        return tuple(map(_path_name, value))
    if key in _PATH_KEYS:
        return _path_name(value)
    if key == "user":
        import pwd

        entry = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
        return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir
    if key in _GROUP_KEYS:
        import grp

        return int(value) if value.isdigit() else grp.getgrnam(value).gr_gid
    return value


def _same_setting(key: str, old: Any, new: Any) -> bool:
    """Whether ``old`` and ``new``, values of ``key``, are one setting however
    spelled (``_setting``): a reload changes only what changed. Looked up only
    when the two differ; a user or group that cannot be looked up is a change."""
    if old == new:
        return True
    try:
        return bool(_setting(key, old) == _setting(key, new))
    except (KeyError, OverflowError, ValueError, OSError):
        return False


def reload_plan(old: SupervisorConfig, new: SupervisorConfig) -> dict[str, Any]:
    """What a reload from ``old`` to ``new`` does: programs added, removed, and
    changed (the fields, and whether they need a restart). Raises
    ``_Refused`` for a change only a new supervisor can make."""
    for key in ("control", "pidfile"):
        if not _same_setting(key, getattr(old, key), getattr(new, key)):
            raise _Refused(
                protocol.FAILED,
                f"nothing changed: {new.path}: [supervisor] {key}: cannot change"
                " without restarting the supervisor",
            )
    before = {program.name: program for program in old.programs}
    after = {program.name: program for program in new.programs}
    changed = []
    for name, program in after.items():
        previous = before.get(name)
        if previous is None:
            continue
        names = [
            item.name
            for item in dataclass_fields(Program)
            if item.name != "name"
            and not _same_setting(
                item.name, getattr(previous, item.name), getattr(program, item.name)
            )
        ]
        if names:
            restart = (
                any(field in RESTART_FIELDS for field in names)
                or _merged(previous) != _merged(program)
                # From one instance to more, or back: web becomes web:0, web:1, ...
                # (or the reverse): new instances, the old ones stopped.
                or (previous.instances == 1) != (program.instances == 1)
            )
            changed.append({"name": name, "fields": names, "restart": restart})
    supervisor = [
        key
        for key in SUPERVISOR_KEYS
        if not _same_setting(key, getattr(old, key), getattr(new, key))
    ]
    groups = sorted(
        name
        for name in old.groups.keys() | new.groups.keys()
        if old.groups.get(name) != new.groups.get(name)
    )
    return {
        "added": [name for name in after if name not in before],
        "removed": [name for name in before if name not in after],
        "changed": changed,
        "supervisor": supervisor,
        "groups": groups,
    }


def _plan_summary(plan: dict[str, Any]) -> str:
    parts = [f"add {name}" for name in plan["added"]]
    parts += [f"remove {name}" for name in plan["removed"]]
    for change in plan["changed"]:
        how = "restart" if change["restart"] else "live"
        parts.append(f"change {change['name']} ({', '.join(change['fields'])}: {how})")
    parts += [f"change [supervisor] {key}" for key in plan["supervisor"]]
    parts += [f"change [group.{name}]" for name in plan["groups"]]
    return "; ".join(parts) or "nothing changed"


def _decision(instance: Instance, asked: bool = False) -> str:
    """What the supervisor did after a run, for ``why``."""
    machine = instance.machine
    state = machine.state
    if state in (State.STARTING, State.RUNNING):
        return "started again, as asked" if asked else "restarted at once"
    if state in (State.BACKOFF, State.FAILED):
        return machine.describe(machine.since)
    if state is State.EXITED and _one_shot_done(instance):
        return "done: a one-shot is ready at its exit"
    if state is State.EXITED:
        restart = instance.program.restart
        last = machine.last_exit
        if restart == "on-failure" and last is not None:  # success_codes lists it
            return f"not restarted (restart = 'on-failure': {last.describe()} is a success)"
        return f"not restarted (restart = {restart!r})"
    return str(state.value)


def _shown_args(args: dict[str, Any]) -> str:
    """The request's args for its audit line: a space and their repr, or nothing.
    The client's text, escaped: repr writes what ``one_line`` would escape (a
    newline, an escape sequence: what ``str.isprintable`` refuses) as escapes."""
    text = f" {args!r}" if args else ""
    return text if len(text) <= 201 else text[:198] + "..."


def _user_id(user: str | None) -> int | None:
    if user is None:
        return None
    if user.isdigit():
        return int(user)
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _widen(fd: int) -> None:
    """A bigger pipe (PIPE_SIZE, where allowed): a program writing fast is woken
    less often, and each read takes more at once."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # over /proc/sys/fs/pipe-max-size for a user: the default then
        pass


def _peek_success(pid: int) -> bool:
    """Whether our exited child ``pid`` exited 0, without reaping it."""
    try:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return found is not None and found.si_code == os.CLD_EXITED and found.si_status == 0


def _exit_code(status: ExitStatus) -> int:
    """The shell's convention: the exit code, or 128 + the signal."""
    return status.code if status.code is not None else 128 + (status.signal or 0)


#: Why a pidfile's pid is refused: said at the end of the wait only, as
#: ``_NOT_YET``'s reasons (the daemon may become ours when its parent exits).
_NOT_ITS = "not one of its processes"
#: Why ``_read_pid`` finds no pid while the daemon may still be writing its file
#: (said only at the end of the wait; any other reason is said at once).
_NOT_WRITTEN = "not written by this run (the file from before its start)"
_NOT_YET = frozenset({os.strerror(errnos.ENOENT), "no pid in it", _NOT_WRITTEN})


def _read_pid(path: str) -> int | str:
    """The pid in a forking program's pidfile, or why there is none (see
    ``_read_pid_marked``)."""
    return _read_pid_marked(path)[0]


def _read_pid_marked(path: str) -> tuple[int | str, tuple[int, ...] | None]:
    """The pid in a forking program's pidfile, or why there is none. The
    program writes it (as its user, perhaps): a FIFO or a device put there would
    block us or act when opened, a symbolic link could make us read another
    file. So the last name is not followed, and the file is opened for reading
    only once known to be a regular one (through an ``O_PATH`` descriptor: the
    same file). At most 64 bytes are read; a reason never quotes them. The pid
    is a hint, checked by ``_pin_main`` (systemd's rule for a pidfile not
    root's), so a file of any owner is read.

    With a pid, its mark too: the file's identity (device, inode, size, times
    of change) and the pid, which a new file or a rewrite changes (a rewrite
    within a clock tick of the last, with a pid as long, changes the pid)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return exc.strerror or "cannot be opened", None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISLNK(mode):
            return "a symbolic link (not followed)", None
        if not stat.S_ISREG(mode):
            kind = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
            return f"not a regular file but {kind.get(stat.S_IFMT(mode), 'a device')}", None
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        reader = os.open(f"/proc/self/fd/{fd}", flags)
        try:
            data = os.read(reader, 64)
            st = os.fstat(reader)
        finally:
            os.close(reader)
    except OSError as exc:
        return exc.strerror or "cannot be read", None
    finally:
        os.close(fd)
    words = data.split(maxsplit=1)
    if not words or not words[0].isdigit() or len(words[0]) > 10 or int(words[0]) > 2**31 - 1:
        return "no pid in it", None
    pid = int(words[0])
    return pid, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, pid)


# What the supervisor's service manager set for the supervisor, not its programs.
_MANAGERS_VARIABLES = (
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
)


def _one_shot_done(instance: Instance) -> bool:
    """A ``ready = "exited"`` program whose last run ended with a success code."""
    machine = instance.machine
    last = machine.last_exit
    return (
        instance.program.ready == "exited"
        and last is not None
        and machine.ready_at is not None
        and succeeded(last, instance.program)
    )


def _notifies(program: Program) -> bool:
    """Whether ``program`` gets NOTIFY_SOCKET: for READY=1, or for WATCHDOG=1."""
    return program.ready == "notify" or program.watchdog is not None


def _notify_systemd(line: str) -> None:
    try:
        systemd.notify(line)
    except DaemonError as exc:
        log.info("%s", exc)


# The supervisor's own descriptors, its programs' aside: its standard streams, epoll,
# the control and notify sockets, the signal wake-up pair, its log, the guard's
# socket, and a spawn's own (two pipes, Popen's error pipe, /dev/null).
_OWN_DESCRIPTORS = 32


def descriptors_needed(config: SupervisorConfig) -> int:
    """About how many descriptors the supervisor holds at once for ``config``, its
    clients aside: for each instance a pipe for stdout and one for stderr (one when
    merged), a pidfd for its leader (and one for a main process), a descriptor for
    each output that is not "null" (a file, or a copy of the supervisor's own), and
    its ``on_failure``'s pipe and pidfd while that runs (all may fail at once)."""
    needed = _OWN_DESCRIPTORS
    for program in config.programs:
        merged = _merged(program)
        each = 2 if program.pidfile is not None or program.ready == "notify" else 1
        each += 1 if merged else 2
        each += program.stdout != "null"
        each += not merged and program.stderr != "null"
        each += 2 if program.on_failure is not None else 0
        needed += each * program.instances
    return needed


def fit_descriptor_limit(config: SupervisorConfig, *, raise_soft: bool = True) -> None:
    """Raise RLIMIT_NOFILE's soft limit as far as ``config`` needs, and room for
    ``MAX_CONNECTIONS`` clients, up to the hard limit; never higher (the programs
    inherit it: a program that closes every possible descriptor, or uses select(),
    is better off with a low one). Raises ``SupervisorStartError`` when even the
    hard limit is too low."""
    needed = descriptors_needed(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    if hard != infinity and hard < needed:
        count = sum(program.instances for program in config.programs)
        programs = f"{count} programs need" if count != 1 else "1 program needs"
        raise SupervisorStartError(
            f"{programs} about {needed} file descriptors,"
            f" more than RLIMIT_NOFILE's hard limit of {hard}: raise it (ulimit -Hn; LimitNOFILE="
            f" in a systemd unit) or run fewer programs"
        )
    wanted = needed + MAX_CONNECTIONS
    if raise_soft and soft != infinity and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
        except (ValueError, OSError):
            pass


def check_config_file(path: str) -> None:
    """The file says what runs, as whom: refuse one that another user owns or
    could change (the file, a directory on its path, a symlink), as
    start-stop-daemon refuses such a pidfile. Raises ``UnsafePathError``."""
    what = "configuration directory" if os.path.isdir(path) else "configuration file"
    resolved = check_path(path, what)
    try:
        st = os.stat(resolved)
    except OSError:
        return  # load() names the file and the reason
    check_owned_file(st, path, what)


def _executable(path: str) -> bool:
    """What ``shutil.which`` accepts (whose module imports bz2 and lzma)."""
    return os.access(path, os.X_OK) and not os.path.isdir(path)


def _check_executables(config: SupervisorConfig) -> None:
    """Each program's command (and on_failure's) must name an executable file (PATH
    searched, as Popen does) that has what it needs to run. A file is read once,
    however many programs run it (a thousand instances of one script)."""
    looked: dict[tuple[str, str, bool], str | None] = {}
    for program in config.programs:
        _check_command(config, program, program.command[0], "command", looked)
        if program.on_failure is not None:
            _check_command(config, program, program.on_failure[0], "on_failure", looked)


def _check_command(
    config: SupervisorConfig,
    program: Program,
    command: str,
    key: str,
    looked: dict[tuple[str, str, bool], str | None],
) -> None:
    file = config.file_of(program.name)
    where = f"program.{program.name}" if file else None
    path = program.environment.get("PATH", os.environ.get("PATH", os.defpath))
    # environment wins over the environment files; without PATH there, theirs may set it
    unknown_path = bool(program.environment_file) and "PATH" not in program.environment
    if "/" in command:
        found = command if os.path.isabs(command) else os.path.join(program.directory, command)
        if not os.path.exists(found):
            raise ConfigError(file, where, key, f"{command}: no such file", program.name)
        if os.path.isdir(found) or not os.access(found, os.X_OK):
            raise ConfigError(file, where, key, f"{command}: not executable", program.name)
    else:
        folders = (os.path.join(folder or ".", command) for folder in path.split(":"))
        first = next((candidate for candidate in folders if _executable(candidate)), None)
        if first is None and unknown_path:
            return  # the environment files, read at each start, may give another PATH
        if first is None:
            raise ConfigError(file, where, key, f"{command}: not found in PATH", program.name)
        found = first
    # A #! line naming an interpreter that is not there ("#!/bin/sh\r"): Popen's
    # "No such file or directory" at every start would name the script, not it.
    # #!/usr/bin/env NAME: NAME is looked up in the program's PATH (not judged when
    # its environment files may set another). And a file exec refuses as no program
    # (an empty file, an ELF program for another machine): ENOEXEC at every start.
    asked = (found, path, not unknown_path)
    if asked not in looked:
        looked[asked] = missing_interpreter(found, search=path, follow_env=asked[2], formats=True)
    missing = looked[asked]
    if missing is not None:
        raise ConfigError(file, where, key, f"{command}: {missing}", program.name)
