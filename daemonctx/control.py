"""Status and stop of a daemon, found through its pidfile.

A daemon is *running* when its pidfile's lock is held (see ``pidfile``), never
because the pid written in the file exists: that pid may have been reused by
an unrelated process. Stopping signals the process through a pidfd, so the
signal cannot reach a process that reused the pid, and waits for its exit on
that pidfd (no sleep loop): ``stop`` returns within a scheduler tick of the
exit.

``status`` answers with the LSB exit codes of an init script's ``status``
action: 0 running, 1 dead but the pidfile exists, 3 not running, 4 unknown.
"""

from __future__ import annotations

import enum
import errno
import itertools
import os
import signal as _signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import identity, procfs
from .errors import CommandError, ControlError, DaemonError, DaemonStartupError, one_line
from .pidfd import GRACE, signal_and_wait, wait_exit
from .pidfile import PIDLockFile, restore_pidfile
from .procfs import process_command, process_uptime
from .signals import parse_signal, signal_name

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, BinaryIO

    from .pidfile import PathArg

__all__ = [
    "AlreadyRunning",
    "CommandError",
    "ControlError",
    "ServiceState",
    "ServiceStatus",
    "StopResult",
    "check_not_running",
    "default_name",
    "format_duration",
    "open_output",
    "parse_signal",
    "process_command",
    "process_uptime",
    "remove_stale_pidfile",
    "send_signal",
    "startup_failure",
    "status",
    "stop",
    "terminate",
    "wait_exit",
]

STOP_TIMEOUT = 10.0  # seconds between the stop signal and SIGKILL
KILL_TIMEOUT = GRACE  # seconds to wait for the exit after SIGKILL before giving up
_TARGET_ATTEMPTS = 5  # re-reads of the pidfile when its holder changes under us


class AlreadyRunning(CommandError):
    """A start found the daemon already running; ``pid`` is its pid."""

    def __init__(self, name: str, pid: int | None, message: str | None = None) -> None:
        where = f" (pid {pid})" if pid else ""
        super().__init__(message or f"{name} is already running{where}")
        self.pid = pid


class ServiceState(enum.IntEnum):
    """The state of a daemon; each value is its LSB ``status`` exit code."""

    RUNNING = 0  # the process named in the pidfile holds its lock
    DEAD = 1  # the pidfile exists, but its process is gone (children may hold the lock)
    STOPPED = 3  # no pidfile, and no process holds the lock of a deleted one
    UNKNOWN = 4  # the pidfile cannot be read or trusted (permission, another user's)


@dataclass
class ServiceStatus:
    """What ``status()`` found: the state, and for a running daemon its pid,
    uptime (seconds) and command line. ``recorded_pid`` is the pid a stale
    pidfile names (for messages only); ``reason`` says why the state is unknown;
    ``holders`` are the processes proven to hold the lock (a child that outlived
    the daemon, for a DEAD state); ``deleted`` says the lock was found through a
    pidfile that had been deleted or replaced. ``stray_pid``: the pid the pidfile
    names when that live process holds no lock (an edited file, not a reused pid).
    """

    path: str
    state: ServiceState
    pid: int | None = None
    recorded_pid: int | None = None
    uptime: float | None = None
    command: tuple[str, ...] | None = None
    reason: str | None = None
    holders: tuple[int, ...] = ()
    deleted: bool = False
    stray_pid: int | None = None

    @property
    def running(self) -> bool:
        return self.state is ServiceState.RUNNING

    @property
    def exit_code(self) -> int:
        """The LSB exit code of ``status``: 0, 1, 3 or 4."""
        return int(self.state)

    def message(self, name: str) -> str:
        """One line for a human: "app is running (pid 1234, up 5 s): sleep 1000"."""
        if self.state is ServiceState.RUNNING:
            return self._running_message(name)
        if self.state is ServiceState.DEAD and self.holders:
            return _leftover_message(name, self.recorded_pid, self.holders, self.stray_pid)
        if self.state is ServiceState.DEAD:
            named = f" naming pid {self.recorded_pid}" if self.recorded_pid else ""
            return f"{name} is not running, but its pidfile {self.path} remains{named}"
        if self.state is ServiceState.STOPPED:
            return f"{name} is not running"
        return f"{name} status is unknown: {self.reason}"

    def _running_message(self, name: str) -> str:
        details = [f"pid {self.pid}"] if self.pid else []
        if self.uptime is not None:
            details.append(f"up {format_duration(self.uptime)}")
        line = f"{name} is running" + (f" ({', '.join(details)})" if details else "")
        if self.command:  # the daemon may set it (setproctitle): shown, never acted on
            line = f"{line}: {one_line(' '.join(self.command))}"
        if self.deleted:
            line += f"; its pidfile {self.path} was deleted or replaced"
        return line


@dataclass
class StopResult:
    """What ``stop()`` did. ``pid`` is None when the daemon was not running.

    ``exited`` is False only when a process outlived SIGKILL's wait (stuck in
    the kernel). ``killed`` says SIGKILL was needed; ``seconds`` runs from the
    first signal to the last exit seen on a pidfd. ``pidfile_removed`` is True
    when a pidfile nobody held was removed; ``pidfile_error`` says why one stayed
    (``pidfile_warning()``: the line). ``others`` are the processes that
    still held the daemon's lock after it (its children), stopped too; when the
    daemon itself had exited, ``pid`` is None and only ``others`` were stopped.
    ``session`` are the other processes of the daemon's own session that descend
    from it (its workers, which need not hold the lock), stopped with it.
    """

    path: str
    pid: int | None
    signal: int = _signal.SIGTERM
    exited: bool = True
    killed: bool = False
    seconds: float = 0.0
    pidfile_removed: bool = False
    others: tuple[int, ...] = ()
    #: With a ``retry`` schedule: (signal, seconds after the first) of each later
    #: step that was needed (SIGKILL's is ``killed`` too).
    escalated: tuple[tuple[int, float], ...] = ()
    retried: bool = False  # stopped by a ``retry`` schedule
    left: tuple[int, ...] = ()  # still there when it gave up (``exited`` False)
    session: tuple[int, ...] = ()
    #: The live process the pidfile named when it did not hold the lock (an edited file).
    stray_pid: int | None = None
    #: Why the stale pidfile stayed ("Read-only file system"), and its errno.
    pidfile_error: str | None = None
    pidfile_errno: int | None = None

    @property
    def pidfile_denied(self) -> bool:
        """The stale pidfile stayed for want of permission (EACCES, EPERM)."""
        return self.pidfile_errno in (errno.EACCES, errno.EPERM)

    def pidfile_warning(self) -> str | None:
        """One line when the stale pidfile could not be removed: the path and why."""
        if self.pidfile_error is None:
            return None
        return f"cannot remove the stale pidfile {self.path}: {self.pidfile_error}"

    @property
    def was_running(self) -> bool:
        return self.pid is not None or bool(self.others)

    def message(self, name: str, timeout: float | None = None) -> str:
        """One line for a human: "stopped app (pid 1234) in 0.02 s"."""
        if not self.was_running:
            return f"{name} is not running"
        pids = _pid_list(((self.pid,) if self.pid else ()) + self.others + self.session)
        if not self.exited:
            pids = _pid_list(self.left) if self.left else pids
            last = self.escalated[-1][0] if self.escalated else self.signal
            if self.retried and last != _signal.SIGKILL:
                return f"{name} (pid {pids}) did not exit after {signal_name(last)}, the last step"
            return f"{name} (pid {pids}) did not exit, even after SIGKILL"
        held = f"pid {_pid_list(self.others)}, which still held its lock"
        if self.pid is None and self.stray_pid is not None:
            why = f"{name}'s pidfile named pid {self.stray_pid}, which did not hold its lock"
            line = f"stopped {held} ({why}) in {self.seconds:.2f} s"
        elif self.pid is None:
            line = f"stopped {held} ({name} itself had exited) in {self.seconds:.2f} s"
        else:
            line = f"stopped {name} (pid {self.pid}){self._session_part()} in {self.seconds:.2f} s"
            if self.others:
                line += f", and {held}"
        if self.escalated:
            steps = ", ".join(f"{signal_name(sig)} after {at:g} s" for sig, at in self.escalated)
            line += f" (sent {steps})"
        elif self.killed and self.signal != _signal.SIGKILL:
            after = f" after {timeout:g} s" if timeout is not None else ""
            line += f" (sent SIGKILL{after})"
        return line

    def _session_part(self) -> str:
        count = len(self.session)
        if not count:
            return ""
        return f" and {count} process{'es' if count > 1 else ''} of its session"


def _pid_list(pids: tuple[int, ...]) -> str:
    return ", ".join(str(pid) for pid in pids)


def _leftover_message(
    name: str, pid: int | None, holders: tuple[int, ...], stray: int | None = None
) -> str:
    """ "app (pid 1234) exited; pid 1240 still holds its lock", or, when the pid the
    pidfile names is a live process that holds no lock (``stray``: an edited file),
    "app's pidfile names pid 1234, which does not hold its lock; pid 1240 holds it"."""
    verb = "holds" if len(holders) == 1 else "hold"
    if stray is not None and stray == pid:
        return (
            f"{name}'s pidfile names pid {pid}, which does not hold its lock;"
            f" pid {_pid_list(holders)} {verb} it"
        )
    where = f" (pid {pid})" if pid else ""
    return f"{name}{where} exited; pid {_pid_list(holders)} still {verb} its lock"


def _unseen_holder(found: identity.Found) -> CommandError:
    """The error for a lock held by no process we can prove: one we may not look at,
    or, when we may look at every process, one outside this pid namespace (whose
    /proc/locks names it by pid 0, or not at all)."""
    if not found.hidden and procfs.locks_hidden():
        named = [pid for pid, key in procfs.exclusive_flocks() or [] if key in found.keys]
        if not any(pid > 0 for pid in named):
            return CommandError(
                f"{found.path} is locked by a process outside this pid namespace",
                exit_code=4,
            )
    return CommandError(
        f"{found.path} is locked, but uid {os.geteuid()} may not see by which process",
        exit_code=4,
    )


def open_output(path: str | os.PathLike[str], what: str, umask: int) -> BinaryIO:
    """Open a daemon's output file for appending, as root may safely do it
    (``paths.open_log``): never through a symlink another user owns nor in a
    directory another user can replace files in; created 0640 less ``umask``.
    A refused path or a permission error is a ``ControlError`` with LSB code 4,
    other failures code 1."""
    from .paths import UnsafePathError, open_log

    try:
        fd = open_log(os.fspath(path), what, umask)
    except UnsafePathError as exc:
        raise CommandError(str(exc), exit_code=4) from exc
    except OSError as exc:  # EACCES: LSB 4, insufficient privilege
        denied = isinstance(exc, PermissionError)
        raise CommandError(exc.strerror or str(exc), exit_code=4 if denied else 1) from exc
    stream = open(fd, "ab", buffering=0)  # noqa: SIM115 - the daemon's for its life
    stream.name = os.fspath(path)  # as open(path) would name it
    return stream


#: Errors whose message says what failed: ours ("--limit nofile=...: cannot set it"),
#: and lockfile's as our pidfile raises them ("cannot write pid to ...").
_OWN_WORDS = ("daemonctx.", "lockfile.")


def startup_failure(name: str, exc: DaemonError) -> CommandError:
    """A one-line ``ControlError`` for a start that failed in the foreground or in
    the daemon: "app failed to start: PermissionError: [Errno 13] ..."."""
    if isinstance(exc, DaemonStartupError) and exc.remote_type == "lockfile.AlreadyLocked":
        # another start won the race for the pidfile, after our check in the foreground
        return AlreadyRunning(name, None, f"{name} is already running: {exc.remote_message}")
    if isinstance(exc, DaemonStartupError) and exc.remote_type:
        # EACCES, EPERM in the daemon (its pidfile's directory): LSB 4
        code = 4 if exc.remote_errno in (errno.EACCES, errno.EPERM) else 1
        message = (exc.remote_message or "").strip()
        words = message  # ours: "--limit ...: cannot set it"; an OSError's "[Errno 1] " cut
        if message.startswith("[Errno "):
            words = message.partition("] ")[2]
        if exc.remote_type.startswith(_OWN_WORDS) and words:
            return CommandError(f"{name} failed to start: {words}", exit_code=code)
        told = f": {message}" if message else ""
        return CommandError(f"{name} failed to start: {exc.remote_type}{told}", exit_code=code)
    return CommandError(f"{name} failed to start: {_one_line(exc)}")


# -- reading the pidfile ------------------------------------------------------


def _is_pidfile_error(exc: BaseException) -> bool:
    """lockfile's errors (raised by our pidfiles) and OS errors, without importing
    lockfile up front: it is already imported when one of its errors is raised."""
    if isinstance(exc, (OSError, ValueError)):
        return True
    import lockfile  # type: ignore[import-untyped]

    return isinstance(exc, lockfile.Error)


def _find(path: str, every_holder: bool = False) -> identity.Found:
    """``identity.find``; its failures become ``ControlError`` (exit code 4,
    "insufficient privilege", for a permission error or an untrusted pidfile, and
    "unknown" for a /proc of another pid namespace; else 1)."""
    try:
        return identity.find(path, every_holder=every_holder)
    except Exception as exc:
        if not _is_pidfile_error(exc):
            raise
        denied = isinstance(exc, PermissionError) or isinstance(exc.__cause__, PermissionError)
        unknown = denied or isinstance(exc, identity.ForeignProc)
        raise CommandError(_one_line(exc), exit_code=4 if unknown else 1) from exc


def _lockless_writer(found: identity.Found) -> int | None:
    """The pid a pidfile nobody locks names, when that process runs and started
    before the file was written (``Found.stray_pid`` of an unheld file): most
    likely the daemon that wrote it, with a tool that takes no lock
    (start-stop-daemon --make-pidfile, the ``lockfile`` package, a daemon's own
    pidfile). Not proven: never signalled; nor is its file stale, to be removed
    (a pid reused after a crash started after the write)."""
    return None if found.held else found.stray_pid


def _lockless_reason(found: identity.Found) -> str:
    return (
        f"{found.path} names pid {found.recorded_pid}, which runs but holds no lock on it:"
        " not proven to be the daemon (started by a tool that takes no lock?)"
    )


def _one_line(exc: BaseException) -> str:
    """``exc`` for the user: an ``OSError`` made of a whole message (``paths``'s)
    without Python's ``[Errno 2]`` in front; the others as they say."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror and text.startswith("[Errno"):
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return text


def default_name(pidfile: PathArg) -> str:
    """The name used in messages when none is given: the pidfile's name without
    its extension ("/run/app.pid" gives "app")."""
    base = os.path.basename(os.fspath(pidfile).rstrip("/")) or "daemon"
    stem, _ext = os.path.splitext(base)
    return stem or base


#: How long a start waits for a pidfile's holder to write its pid before it
#: reports the holder as left behind by a daemon that exited.
START_SETTLING = 0.5


def check_not_running(pidfile: PathArg, name: str) -> None:
    """Raise ``AlreadyRunning`` (naming the pid) when a process holds the pidfile's lock,
    or the lock of a pidfile deleted while its daemon runs; ``ControlError`` when the
    pidfile cannot be read or trusted."""
    found = _find(os.fspath(pidfile))
    deadline = None
    while found.held and found.main_pid is None and found.holders:
        # A start under way holds the lock a moment before its pid is in the file
        # (which shows nothing, or the last run's pid, meanwhile): look again,
        # briefly, before calling the holder what a dead daemon left.
        import time

        now = time.monotonic()
        deadline = deadline or now + START_SETTLING
        if now >= deadline:
            break
        time.sleep(0.005)
        found = _find(os.fspath(pidfile))
    if _lockless_writer(found) is not None:  # a second copy beside it, perhaps
        reason = _lockless_reason(found)
        raise AlreadyRunning(name, None, f"{reason}: not started beside it; stop it first")
    if not found.held:
        return
    if found.main_pid is None and found.holders:
        leftover = _leftover_message(name, found.recorded_pid, found.holders, found.stray_pid)
        raise AlreadyRunning(name, found.holders[0], f"{leftover}; stop it first")
    message: str | None = None
    if found.deleted:
        where = f" (pid {found.main_pid})" if found.main_pid else ""
        restored = "; the file has been put back" if restore_pidfile(found.path) else ""
        message = (
            f"{name} is already running{where}, though its pidfile {found.path} "
            f"was deleted or replaced{restored}"
        )
    raise AlreadyRunning(name, found.main_pid, message)


def remove_stale_pidfile(pidfile: PathArg) -> bool:
    """Remove the pidfile if it exists and nobody holds its lock; True if removed.

    A pidfile whose lock is held (a daemon started meanwhile) is left alone.
    """
    return _remove_stale_pidfile(os.fspath(pidfile))[0]


def _remove_stale_pidfile(path: str) -> tuple[bool, OSError | None]:
    """``remove_stale_pidfile``, and the error that kept a stale pidfile (a
    read-only file system, a directory we may not write): None when it is held."""
    if not os.path.lexists(path):
        return False, None
    try:
        PIDLockFile(path).break_lock()
    except Exception as exc:
        if not _is_pidfile_error(exc):
            raise
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        # held by a live process, or not ours to remove: no error of ours
        return False, cause if isinstance(cause, OSError) and cause.errno else None
    return not os.path.lexists(path), None


def format_duration(seconds: float) -> str:
    """A short human duration: "0.4 s", "42 s", "5 min 3 s", "2 h 7 min", "3 d 4 h"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


# -- status -------------------------------------------------------------------


def status(pidfile: PathArg) -> ServiceStatus:
    """The state of the daemon behind ``pidfile``, with LSB ``exit_code``.

    Running means the process the pidfile names holds its lock (proven through
    /proc, see ``identity``); then ``pid``, ``uptime`` and ``command`` describe
    it. When it has exited and children still hold the lock, the state is DEAD
    and ``holders`` names them. A pidfile whose pid was reused by another
    process is DEAD too. A pidfile another user controls is UNKNOWN (4).
    """
    path = os.fspath(pidfile)
    try:
        found = _find(path)
    except CommandError as exc:
        return ServiceStatus(path, ServiceState.UNKNOWN, reason=str(exc))
    path = found.path
    if found.held and (found.main_pid is not None or not found.holders):
        pid = found.main_pid
        return ServiceStatus(
            path,
            ServiceState.RUNNING,
            pid=pid,
            recorded_pid=found.recorded_pid,
            uptime=procfs.process_uptime(pid) if pid else None,
            command=procfs.process_command(pid) if pid else None,
            holders=found.holders,
            deleted=found.deleted,
        )
    lockless = _lockless_writer(found)
    if lockless is not None:
        return ServiceStatus(
            path, ServiceState.UNKNOWN, recorded_pid=lockless, reason=_lockless_reason(found)
        )
    if found.held or found.exists:
        return ServiceStatus(
            path,
            ServiceState.DEAD,
            recorded_pid=found.recorded_pid,
            holders=found.holders,
            deleted=found.deleted,
            stray_pid=found.stray_pid,
        )
    return ServiceStatus(path, ServiceState.STOPPED)


# -- signal -------------------------------------------------------------------

#: LSB's exit status of an init script action (reload) on a program that is not running.
NOT_RUNNING = 7
#: LSB's "unimplemented feature": a reload the daemon has no handler for.
UNIMPLEMENTED = 3


def send_signal(pidfile: PathArg, signum: int, name: str | None = None) -> int:
    """Send ``signum`` to the daemon behind ``pidfile`` and return its pid, without
    waiting: ``kill -HUP "$(cat app.pid)"`` (an init script's reload), but only to
    the process proven to hold the pidfile's lock, through a pidfd (a pid reused
    since never gets it). Raises ``ControlError``: not running (LSB 7, the pidfile
    stale or gone), only the daemon's children hold the lock (1), we may not look
    or may not signal (4). ``name`` is for messages (default: ``default_name``)."""
    name = name or default_name(pidfile)
    found = _find(os.fspath(pidfile))
    hidden = _unseen_holder(found)
    not_running = CommandError(f"{name} is not running", exit_code=NOT_RUNNING)
    if _lockless_writer(found) is not None:
        raise CommandError(f"{_lockless_reason(found)}: signalled none", exit_code=1)
    if not found.held:
        raise not_running
    if found.main_pid is None:
        if not found.holders:
            raise hidden
        leftover = _leftover_message(name, found.recorded_pid, found.holders, found.stray_pid)
        raise CommandError(f"{leftover}; signalled none", exit_code=1)
    try:
        sent = identity.signal_main(found, signum)
    except PermissionError as exc:
        raise CommandError(f"cannot send a signal: {exc.strerror}", exit_code=4) from exc
    if not sent:  # gone since we looked; or, as another user, not provable
        raise hidden if found.hidden else not_running
    return found.main_pid


# -- stop ---------------------------------------------------------------------


def terminate(
    pidfd: int,
    signum: int = _signal.SIGTERM,
    timeout: float = STOP_TIMEOUT,
    kill_timeout: float = KILL_TIMEOUT,
) -> tuple[bool, bool]:
    """``process.signal_and_wait`` with control's defaults. Returns (exited, killed).

    Raises ``ControlError`` (LSB code 4) when we may not signal the process.
    """
    try:
        return signal_and_wait(pidfd, signum, timeout, kill_timeout)
    except PermissionError as exc:
        raise CommandError(f"cannot send a signal: {exc.strerror}", exit_code=4) from exc


def _seconds_argument(name: str, value: Any) -> float:
    """A wait in seconds, more than 0 (``inf`` waits forever), as ``--timeout`` takes it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: a number of seconds more than 0, not {value!r}")
    if not value > 0:  # NaN too
        raise ValueError(f"{name}: a number of seconds more than 0, not {value!r}")
    return float(value)


def _signal_argument(value: Any) -> int:
    """A signal number, or a name as ``--signal`` takes it ("TERM", "SIGHUP")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"signal: a signal number or name, not {value!r}")
    try:
        return parse_signal(value)
    except ValueError as exc:
        raise ValueError(f"signal: {exc}") from None


def stop(
    pidfile: PathArg,
    timeout: float = STOP_TIMEOUT,
    signal: int | str = _signal.SIGTERM,
    *,
    kill_timeout: float = KILL_TIMEOUT,
    retry: Sequence[tuple[int, float]] | None = None,
) -> StopResult:
    """Stop the daemon behind ``pidfile`` and wait until nothing of it runs.

    Sends ``signal`` to the process the pidfile names and to the other processes
    of its session that descend from it when the session is the daemon's own (its
    workers; not another daemon's, see ``identity.stop_daemon``), waits for
    their exit, then sends it to every process that still holds the pidfile's lock
    (children that inherited it); after ``timeout`` seconds in all, SIGKILL to what
    remains. ``retry`` replaces the three: start-stop-daemon's schedule, ((signal,
    seconds), ...) as ``signals.parse_retry`` reads ``TERM/30/QUIT/5/KILL/5``.
    Only processes proven to hold the lock or to be such workers are signalled,
    each through a pidfd (see ``identity.stop_daemon``). Then removes the pidfile
    if nobody holds its lock (an exec'd program cannot remove it itself). A daemon
    that is not running is not an error (LSB): the result has ``pid=None``, and a
    stale pidfile is removed.
    Raises ``ControlError`` when the pidfile is unusable or untrusted, or the
    processes may not be signalled (exit code 4); ``TypeError`` or ``ValueError``,
    whether the daemon runs or not, for a bad ``timeout``, ``kill_timeout`` or
    ``signal`` (a number or a name, ``"TERM"``).
    """
    timeout = _seconds_argument("timeout", timeout)
    kill_timeout = _seconds_argument("kill_timeout", kill_timeout)
    signal = _signal_argument(signal)
    path = os.fspath(pidfile)
    steps = tuple(retry) if retry else ((signal, timeout), (_signal.SIGKILL, kill_timeout))
    signal = steps[0][0]
    found = _find(path, every_holder=True)
    if _lockless_writer(found) is not None:
        raise CommandError(f"{_lockless_reason(found)}: not stopped, the pidfile left", exit_code=1)
    if not found.held:
        removed, kept = _remove_stale_pidfile(path)
        return StopResult(path, None, signal=signal, pidfile_removed=removed, **_kept_pidfile(kept))
    if not found.holders:  # held, but by no process we may look at: we cannot prove one
        raise _unseen_holder(found)
    try:
        done = identity.stop_daemon(found, steps)
    except PermissionError as exc:
        raise CommandError(f"cannot send a signal: {exc.strerror}", exit_code=4) from exc
    except OSError as exc:  # no descriptor left to look at /proc with, say
        raise CommandError(f"cannot stop {found.path}'s daemon: {_one_line(exc)}") from exc
    main = found.main_pid if found.main_pid in done.signalled else None
    others = tuple(pid for pid in done.signalled if pid != main)
    removed, kept = _remove_stale_pidfile(found.path) if done.exited else (False, None)
    at = list(itertools.accumulate(wait for _signum, wait in steps))  # when each next step begins
    return StopResult(
        path,
        main,
        signal=signal,
        exited=done.exited,
        killed=_signal.SIGKILL in done.sent,
        seconds=done.seconds,
        pidfile_removed=removed,
        others=others,
        escalated=tuple(zip(done.sent, at)) if retry else (),
        retried=bool(retry),
        left=tuple(done.left),
        session=tuple(done.session),
        stray_pid=found.stray_pid if main is None else None,
        **_kept_pidfile(kept),
    )


def _kept_pidfile(error: OSError | None) -> dict[str, Any]:
    """StopResult's fields for the error that kept a stale pidfile."""
    if error is None:
        return {}
    return {"pidfile_error": error.strerror or str(error), "pidfile_errno": error.errno}
