"""Starting one program instance, and the few system calls the loop needs on it.

``spawn`` is a thin wrapper around ``subprocess.Popen``, which already does the
error pipe (an exec failure comes back as an ``OSError`` with its errno), fd
closing, ``setsid``, the working directory, the environment and the
credential change (``user``/``group``/``extra_groups``). A ``preexec_fn``
does what Popen cannot, only when it is needed, since it costs a full fork of
the supervisor (~2-3 ms; Popen's vfork path takes ~0.3 ms):

- ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` with ``death_signal`` (the supervisor
  passes it only when it has no guard, guard.py), so that a program dies with
  the supervisor. Popen changes credentials *before* it calls ``preexec_fn``
  (``_posixsubprocess.c``: chdir, umask, restore_signals, setsid, setgroups,
  setregid, setreuid, then preexec_fn; checked on CPython 3.9 to 3.13), so the
  death signal is set after the change that would clear it (prctl(2)). It then
  checks that the supervisor did not die before that: ``getppid()`` must still
  be the supervisor's pid, or the child exits at once.
- every ignored signal back to its default action (``restore_signals`` covers
  only SIGPIPE and SIGXFSZ, which Python ignores; an ignored signal stays
  ignored across exec), and an empty signal mask: only when this process
  ignores another signal or this thread blocks one. The supervisor avoids
  that with ``take_over_ignored_signals``.

The parent-death signal fires when the *thread* that forked the child exits,
not the process: call ``spawn`` from the supervisor's long-lived loop thread.

Tracking (docs/DESIGN "Tracking"): the leader is kept unreaped until its group
is killed. While it is unreaped its pid, which is also its process group's id,
cannot be reused, so ``signal_group`` may signal ``-pid``. ``exited`` tells that
the leader has exited without reaping it; ``reap`` reaps it. The loop must not
reap leaders behind our back (a subreaper's ``waitpid(-1)`` would): reap the
adopted orphans by pid, the leaders through ``reap``.
"""

from __future__ import annotations

import errno as errnos
import functools
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import pidfd as pidfds
from ..errors import DaemonError
from .config import Program
from .state import ExitStatus

if TYPE_CHECKING:
    from .spawner import Spawner

__all__ = [
    "SpawnError",
    "Spawned",
    "exited",
    "ignored_signals",
    "reap",
    "restore_signals",
    "set_child_subreaper",
    "signal_group",
    "spawn",
    "take_over_ignored_signals",
]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_USER_VARIABLES = ("HOME", "USER", "LOGNAME")
# restore_signals=True gives these back their default action already.
_RESTORED_BY_POPEN = frozenset({signal.SIGPIPE, signal.SIGXFSZ})
# The real-time signals the C library keeps for itself (32 and 33 with glibc, to 34
# with musl): glibc's posix_spawn leaves them ignored in its child, so every process
# a Python 3.13 subprocess starts has them ignored; no program sees them, and no
# signal() call may change them. Not "ignored" for us: taken for such, every start
# took the slow spawn.
_LIBC_SIGNALS = frozenset(range(32, getattr(signal, "SIGRTMIN", 32)))
_SKIPPED = _RESTORED_BY_POPEN | _LIBC_SIGNALS


class SpawnError(DaemonError, OSError):
    """The program could not be started. ``errno`` is the exec's (or the
    lookup's) error number, ``message`` one line naming the file and the reason,
    ``/srv/x: No such file or directory``, as ``StateMachine.spawn_failed`` takes them."""

    def __init__(self, errno: int, message: str, doing: str = "execute") -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.message = message
        #: What failed, for "cannot DOING MESSAGE": "execute" (the exec), "change to"
        #: (the directory), "start" (a step before the exec or after it: no fork...).
        self.doing = doing

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errno, self.message, self.doing))


@dataclass
class Spawned:
    """A started program instance: its ``pid`` (also its session and process
    group id), a ``pidfd`` naming it, the ``popen`` that started it, and when
    (``started``, monotonic seconds). ``status`` is set once ``reap`` has reaped it."""

    name: str
    pid: int
    pidfd: int
    popen: subprocess.Popen[bytes] = field(repr=False)
    started: float
    status: ExitStatus | None = None

    @property
    def reaped(self) -> bool:
        return self.status is not None

    def close(self) -> None:
        """Close the pidfd (once the loop no longer watches it). Idempotent."""
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


# -- libc ---------------------------------------------------------------------------------

_libc: Any = None


def load_libc() -> Any:
    """libc through ctypes, loaded once, in the parent (never in a forked child)."""
    global _libc
    if _libc is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.restype = ctypes.c_int
        libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.signal.restype = ctypes.c_void_p
        _libc = libc
    return _libc


def _prctl(option: int, value: int) -> int:
    import ctypes

    ulong = ctypes.c_ulong
    result: int = load_libc().prctl(option, ulong(value), ulong(0), ulong(0), ulong(0))
    return result


def set_child_subreaper() -> None:
    """Make this process a child subreaper: orphaned descendants (a daemon that
    forked away from its program) are reparented to us, not to init."""
    import ctypes

    if _prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(number)}")


def ignored_signals() -> list[int]:
    """The signals this process ignores, but those Popen restores itself. Read
    from /proc/self/status (tens of µs): a caller that starts many programs at
    once reads it once and gives it to each ``spawn``."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"SigIgn:"):
                    mask = int(line.split()[1], 16)
                    break
            else:
                return []
    except OSError:
        return []
    ignored = []
    for number in range(1, mask.bit_length() + 1):
        if mask >> (number - 1) & 1 and number not in _SKIPPED:
            ignored.append(number)
    return ignored


# Caught is not ignored for these: a background process that writes to its
# terminal with a handler set gets SIGTTOU again at each try. They stay ignored.
_KEEP_IGNORED = frozenset({signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD})


def _do_nothing(signum: int, frame: object) -> None:
    """Ignore a signal by handling it: an exec resets a handled signal to its default."""


def take_over_ignored_signals() -> dict[int, Any]:
    """Handle the signals this process ignores with a handler that does nothing,
    so that programs start with their default action through Popen's fast path
    (an ignored signal stays ignored across exec, and resetting it in the child
    needs the slow one). Returns what to give back to ``restore_signals``. Only
    the main thread may do this: elsewhere it does nothing (spawn then resets
    them in each child)."""
    taken: dict[int, Any] = {}
    for number in ignored_signals():
        if number in _KEEP_IGNORED:
            continue
        try:
            taken[number] = signal.signal(number, _do_nothing)
        except ValueError:  # not the main thread: none can be taken
            break
        except OSError:  # not one signal() may change: the others still
            continue
    return taken


def restore_signals(taken: dict[int, Any]) -> None:
    """Give back the actions ``take_over_ignored_signals`` replaced."""
    for number, action in taken.items():
        try:
            signal.signal(number, action)
        except (ValueError, OSError):
            pass


@dataclass(frozen=True)
class _Credentials:
    """What the child becomes, when ``_child_setup`` changes its credentials
    itself (after its limits and priority, which need root's privileges): Popen
    would change them before its ``preexec_fn`` runs."""

    uid: int | None
    gid: int | None
    groups: list[int] | None


def _child_setup(
    supervisor: int,
    ignored: list[int],
    death_signal: bool,
    limits: Sequence[tuple[int, int, int]] = (),
    nice: int | None = None,
    credentials: _Credentials | None = None,
) -> Callable[[], None]:
    """The ``preexec_fn``: run in the child before exec; after its credential
    change, or with ``credentials`` making it itself once ``limits`` ((resource,
    soft, hard) each) and ``nice`` are set. Everything it calls is looked up
    here, in the parent."""
    import ctypes

    libc = load_libc()
    prctl = libc.prctl
    set_signal = libc.signal
    ulong = ctypes.c_ulong
    death_args = (PR_SET_PDEATHSIG, ulong(signal.SIGKILL), ulong(0), ulong(0), ulong(0))
    getppid, exit_now = os.getppid, os._exit
    sigmask, setmask = signal.pthread_sigmask, signal.SIG_SETMASK
    empty: tuple[int, ...] = ()
    setpriority, process = os.setpriority, os.PRIO_PROCESS
    setgroups, setregid, setreuid = os.setgroups, os.setregid, os.setreuid
    if limits:
        from resource import setrlimit

    def setup() -> None:
        # Raised here, Popen reports "Exception occurred in preexec_fn" (spawn says more)
        for resource_number, soft, hard in limits:
            setrlimit(resource_number, (soft, hard))
        if nice is not None:
            setpriority(process, 0, nice)
        if credentials is not None:  # Popen's order: groups, gid, uid
            if credentials.groups is not None:
                setgroups(credentials.groups)
            if credentials.gid is not None:
                setregid(credentials.gid, credentials.gid)
            if credentials.uid is not None:
                setreuid(credentials.uid, credentials.uid)
        for number in ignored:
            set_signal(number, None)  # SIG_DFL
        sigmask(setmask, empty)
        if not death_signal:
            return
        if prctl(*death_args) != 0:
            exit_now(127)
        if getppid() != supervisor:  # the supervisor died before the prctl
            exit_now(1)

    return setup


# -- spawning -----------------------------------------------------------------------------


def _resolve_user(
    program: Program, argv0: str, environment: dict[str, str]
) -> tuple[int | None, int | None, list[int] | None]:
    """(uid, gid, supplementary groups) to pass to Popen; None keeps ours.

    ``user`` gives its uid, primary group (unless ``group`` is set) and groups
    (``getgrouplist``), and sets HOME, USER and LOGNAME. A numeric uid with no
    passwd entry runs with gid ``group`` and no other groups; without ``group``, a
    root supervisor refuses it (``check_system`` did, unless the entry went since):
    the group of the same number is not the user's. One that is not root, which
    may only run programs as itself, takes the same number as gid.
    Without ``user``, a root supervisor that switches group drops its own groups.
    """
    import grp
    import pwd

    uid = gid = None
    groups: list[int] | None = None
    name = None
    if program.user is not None:
        user = program.user
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, OverflowError, ValueError):
            if not user.isdigit():
                raise SpawnError(errnos.ENOENT, f"{argv0}: no such user {user!r}") from None
            if program.group is None and os.geteuid() == 0:
                reason = f"user {user!r} has no passwd entry to take the group from: set group too"
                raise SpawnError(errnos.ENOENT, f"{argv0}: {reason}") from None
            uid = gid = int(user)
        else:
            uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
            environment.update(zip(_USER_VARIABLES, (entry.pw_dir, name, name)))
    if program.group is not None:
        group = program.group
        try:
            gid = (grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)).gr_gid
        except (KeyError, OverflowError, ValueError):
            if not group.isdigit():
                raise SpawnError(errnos.ENOENT, f"{argv0}: no such group {group!r}") from None
            gid = int(group)
    if os.geteuid() != 0:
        # Not root: it may run programs only as itself (check_system), and the
        # kernel refuses its setgroups(), even of its own groups: its own ids are
        # no change to make (supervisord's drop_privileges does the same).
        same = uid in (None, os.geteuid()) and gid in (None, os.getegid())
        return (None, None, None) if same else (uid, gid, None)
    if name is not None and gid is not None:
        groups = os.getgrouplist(name, gid)
    elif uid is not None or gid is not None:
        groups = []
    return uid, gid, groups


def _environment_file(path: str) -> dict[str, str]:
    """The variables in the file at ``path``; ``SpawnError`` when it cannot be used."""
    from ..paths import UnsafePathError
    from .envfile import EnvironmentFileError, read

    try:
        return read(path)
    except UnsafePathError as exc:
        raise SpawnError(
            exc.errno or errnos.EPERM, f"{path}: {exc.reason}", "trust environment file"
        ) from None
    except EnvironmentFileError as exc:
        raise SpawnError(exc.errno, str(exc), "read environment file") from None
    except OSError as exc:
        number = exc.errno or errnos.EIO
        reason = exc.strerror or os.strerror(number)
        if number == errnos.ENOENT:  # not "the program is not there": retried, it may come
            number = errnos.EAGAIN
        raise SpawnError(number, f"{path}: {reason}", "read environment file") from None


def spawn(
    program: Program,
    *,
    name: str,
    environment: Mapping[str, str],
    notify_socket: str | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    death_signal: bool = True,
    spawner: Spawner | None = None,
    ignored: list[int] | None = None,
) -> Spawned:
    """Start ``program`` (the instance ``name``): in a session and process group
    of its own, in ``program.directory``, with ``environment`` (the supervisor's)
    plus the variables of ``program.environment_file`` (read now), then
    ``program.environment`` (and ``NOTIFY_SOCKET`` when ``notify_socket`` is
    given, none otherwise), as ``program.user``/``group``, stdin from /dev/null,
    stdout and stderr to the given fds (else /dev/null), no other fd, default
    signal actions, an empty signal mask, and with ``death_signal`` SIGKILL when
    the supervisor (this thread) dies. With ``spawner``, the program is forked
    from the spawner's thread (spawner.py: its descriptor table is small); the
    environment, user and group are looked up here all the same. ``ignored``:
    what ``ignored_signals()`` returned, when the caller read it (None: read here).

    Raises ``SpawnError`` when it cannot be started (the exec's errno, or ENOENT
    for a user or group that is no more).
    """
    argv = list(program.command)
    env = {key: value for key, value in environment.items() if key != "NOTIFY_SOCKET"}
    uid, gid, groups = _resolve_user(program, argv[0], env)
    for path in program.environment_file:  # read at each start, as systemd does
        env.update(_environment_file(path))
    env.update(program.environment)
    env.pop("NOTIFY_SOCKET", None)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
    start = functools.partial(_popen, program, argv, env, uid, gid, groups, death_signal, ignored)
    popen = start(stdout, stderr) if spawner is None else spawner.run(start, stdout, stderr)
    started = time.monotonic()
    try:
        pidfd = os.pidfd_open(popen.pid)  # ours and unreaped: the pid is still its own
    except OSError as exc:
        popen.kill()
        popen.wait()
        number = exc.errno or errnos.EIO
        reason = f"{argv[0]}: pidfd_open: {os.strerror(number)}"  # after a successful exec
        raise SpawnError(number, reason, "start") from None
    return Spawned(name=name, pid=popen.pid, pidfd=pidfd, popen=popen, started=started)


def _popen(
    program: Program,
    argv: list[str],
    env: dict[str, str],
    uid: int | None,
    gid: int | None,
    groups: list[int] | None,
    death_signal: bool,
    ignored: list[int] | None,
    stdout: int | None,
    stderr: int | None,
) -> subprocess.Popen[bytes]:
    """The Popen of ``spawn``, in the thread that forks: the signal mask the child
    would inherit, and the parent-death signal, are this thread's."""
    if ignored is None:
        ignored = ignored_signals()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    setup: Callable[[], None] | None = None
    if program.limits or program.nice is not None:
        # The slow path (a full fork): limits and priority set as root, then the
        # credential change, by the child itself
        credentials = _Credentials(uid, gid, groups)
        uid = gid = groups = None
        setup = _child_setup(
            os.getpid(), ignored, death_signal, _limits(program), program.nice, credentials
        )
    elif death_signal or ignored or blocked:
        setup = _child_setup(os.getpid(), ignored, death_signal)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout is None else stdout,
            stderr=subprocess.DEVNULL if stderr is None else stderr,
            close_fds=True,
            cwd=program.directory,
            umask=program.umask,
            env=env,
            start_new_session=True,
            restore_signals=True,
            user=uid,
            group=gid,
            extra_groups=groups,
            preexec_fn=setup,
        )
    except OSError as exc:
        number = exc.errno or errnos.EIO
        filename = exc.filename
        reason = exc.strerror or os.strerror(number)
        if filename is not None and filename == program.directory and filename != argv[0]:
            # the child's chdir failed (CPython names the directory: its "noexec" mark)
            if number in (errnos.ENOENT, errnos.ENOTDIR):  # retried: a deploy may swap it
                number = errnos.EAGAIN
            raise SpawnError(number, f"directory {filename}: {reason}", "change to") from None
        if filename is not None and os.fsdecode(filename) == argv[0]:
            # the exec failed: the only child error CPython reports with the program's name
            raise SpawnError(number, f"{argv[0]}: {reason}") from None
        # No exec was tried: Popen's own steps (/dev/null, its pipe, the fork) or a
        # step of the child before the exec ("noexec", no name, on 3.12+) failed.
        if filename is not None:
            step = f" (open {os.fsdecode(filename)})"
        elif number in (errnos.EAGAIN, errnos.ENOMEM):  # nothing else in Popen gives these
            step = " (fork)"
        else:
            step = ""
        raise SpawnError(number, f"{argv[0]}{step}: {reason}", "start") from None
    except subprocess.SubprocessError as exc:  # preexec_fn raised
        if program.limits or program.nice is not None:  # checked at the start; changed since?
            reason = "its limits, nice or user could not be set"
            raise SpawnError(errnos.EPERM, f"{argv[0]}: {reason}", "start") from None
        raise SpawnError(errnos.EIO, f"{argv[0]}: {exc}") from None


def _limits(program: Program) -> list[tuple[int, int, int]]:
    """``program.limits`` as setrlimit's (resource, soft, hard)."""
    import resource

    infinity = resource.RLIM_INFINITY
    found = []
    for name, (soft, hard) in program.limits.items():
        number = getattr(resource, f"RLIMIT_{name.upper()}")
        found.append((number, infinity if soft < 0 else soft, infinity if hard < 0 else hard))
    return found


# -- after the start ----------------------------------------------------------------------


def exited(spawned: Spawned) -> bool:
    """Whether the leader has exited (a zombie counts), without reaping it."""
    return spawned.reaped or pidfds.exited(spawned.pidfd)


def reap(spawned: Spawned) -> ExitStatus | None:
    """Reap the leader if it has exited and return how it ended; None while it
    runs. Never blocks. Once reaped, returns the same status again. Kill its
    group (``signal_group``) first: after this its pid may be reused."""
    if spawned.status is not None:
        return spawned.status
    if not pidfds.exited(spawned.pidfd):
        return None
    popen = spawned.popen
    if popen.returncode is not None:  # reaped through the Popen elsewhere
        spawned.status = ExitStatus.from_returncode(popen.returncode)
        return spawned.status
    pid, status = os.waitpid(spawned.pid, os.WNOHANG)
    if pid == 0:
        return None
    # tell the Popen, or it would waitpid (a reused pid, by then) when collected
    popen.returncode = os.waitstatus_to_exitcode(status)
    spawned.status = ExitStatus.from_wait_status(status)
    return spawned.status


def signal_group(spawned: Spawned, signum: int) -> None:
    """Send ``signum`` once to each process of the program's process group
    (``-pid``), and to its leader through the pidfd if it has left the group.

    Safe only while the leader is unreaped: until then its pid, the group's id,
    cannot name another process or group. Raises ``RuntimeError`` once it is reaped.
    A group with no process left (the leader moved out of it) is not an error.
    Never twice to the leader: a program that has handled one SIGHUP would
    reload again, and to many a second SIGTERM means "stop now".
    """
    if spawned.reaped or spawned.popen.returncode is not None:
        raise RuntimeError(f"{spawned.name} (pid {spawned.pid}) was reaped: its group id is stale")
    try:
        os.killpg(spawned.pid, signum)
    except ProcessLookupError:
        pass
    try:
        # After the group's signal: a leader that was in its group then has it.
        if os.getpgid(spawned.pid) != spawned.pid:
            signal.pidfd_send_signal(spawned.pidfd, signum)
    except ProcessLookupError:
        pass
