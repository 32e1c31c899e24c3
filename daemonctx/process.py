"""One small function per operating-system step of daemonization.

Each step wraps its system call and turns a failure into a
``DaemonOSEnvironmentError`` that says which step failed, so the error that
reaches the terminal reads "cannot change working directory to '/srv/x'"
rather than a bare ``[Errno 2]``.

The steps that run in the daemon run right after a fork, while the launcher
still shares every memory page: each page they write is copied first, so they
are kept to plain system calls on values prepared before the fork. Work that
needs Python objects (listing fds, resolving the signal map) is done in the
launcher.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found] # signal's C half, without enums
import errno
import fcntl
import os
import stat
import sys

from .errors import DaemonOSEnvironmentError, DaemonProcessDetachError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, Callable, Union

    Handler = Union[Callable[[int, Any], Any], int, signal.Handlers, None]

STANDARD_FDS = (0, 1, 2)
# Timeouts from this many seconds up (about 24 days: poll's limit in milliseconds
# is a C int), and infinity, mean "wait forever".
FOREVER = (2**31 - 1) / 1000
# Seconds a process gets to exit when we chose no timeout for it: a daemon whose
# start failed, after SIGTERM and again after SIGKILL, or finishing its exit.
GRACE = 5.0


def finite_timeout(seconds: float | None) -> float | None:
    """``seconds``, or None (wait forever) for None, infinity and waits too long to
    express (select and poll overflow); so no huge timeout fails after the fork."""
    if seconds is None or seconds >= FOREVER:
        return None
    return seconds


def _fail(step: str, exc: OSError) -> DaemonOSEnvironmentError:
    err = DaemonOSEnvironmentError(exc.errno, f"{step}: {exc.strerror or exc}")
    err.__cause__ = exc
    return err


def flush_standard_streams() -> None:
    """Flush Python's stdout/stderr so buffered output is written once, not per fork."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or broken stream: nothing to save
                pass


# -- where are we running? (decides detach_process=None) ---------------------
# A daemon started by init or a service manager, by a super-server (inetd,
# systemd socket activation with Accept=yes), or running as PID 1 in a
# container must not fork into the background: its supervisor tracks the
# process it started, and PID 1 leaving would stop the container.


def is_pid_one() -> bool:
    """This process is the init of its PID namespace (a container's main process)."""
    return os.getpid() == 1


def is_started_by_init() -> bool:
    """Our parent is PID 1: init, systemd, or a container's init started us."""
    return os.getppid() == 1


def is_socket(fd: int) -> bool:
    """``fd`` is an open socket (checked with fstat, without importing socket)."""
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def is_started_by_superserver() -> bool:
    """inetd-style start: the connection is handed to us as stdin."""
    return is_socket(0)


def _parent_is_a_service_manager() -> bool:
    """Our parent is a process named ``systemd``: the system manager, or a user's
    (``systemctl --user`` units), whose pid is not 1."""
    try:
        with open(f"/proc/{os.getppid()}/comm", "rb") as f:
            return f.read().strip() == b"systemd"
    except OSError:
        return False


def _stdio_is_the_journal() -> bool:
    """systemd connected our stdout or stderr to the journal, as it does for a
    service's own process: ``JOURNAL_STREAM`` names that very stream (children of
    a service inherit the variable, not the match), with ``INVOCATION_ID`` set."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if "INVOCATION_ID" not in os.environ or ":" not in stream:
        return False
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stream == f"{st.st_dev}:{st.st_ino}":
            return True
    return False


def is_started_by_service_manager() -> bool:
    """systemd (or another manager) started this very process: our parent is a
    ``systemd``, we were socket-activated (``LISTEN_PID`` is our pid), or our
    output goes straight to the journal. ``NOTIFY_SOCKET`` alone does not count:
    every child of a service inherits it."""
    return (
        os.environ.get("LISTEN_PID") == str(os.getpid())
        or _stdio_is_the_journal()
        or _parent_is_a_service_manager()
    )


def detach_required() -> bool:
    """True when forking into the background is right for this process."""
    return not (
        is_pid_one()
        or is_started_by_init()
        or is_started_by_superserver()
        or is_started_by_service_manager()
    )


# -- signals ------------------------------------------------------------------


def block_signals(numbers: Iterable[int]) -> set[int]:
    """Block ``numbers``; return the previous mask (plain ints) for ``set_signal_mask``."""
    return _signal.pthread_sigmask(_signal.SIG_BLOCK, numbers)  # type: ignore[no-any-return]


def set_signal_mask(numbers: Iterable[int]) -> None:
    """Set the mask to exactly ``numbers`` (to restore what ``block_signals`` returned)."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, numbers)


def reset_signal_mask() -> None:
    """Unblock every signal: a mask inherited from the launcher would silently
    hold back SIGTERM and friends for the daemon's whole life (daemon(7) step 3)."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


#: Requests to stop: held back only once the pidfile is taken (``stops``): a stop
#: during a pidfile's lock wait must stop the daemon at once, as its default does.
_STOPS = frozenset({_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT})


def hold_signals(handlers: Mapping[int, Handler], stops: bool = False) -> set[int]:
    """Block the signals ``handlers`` will catch or ignore until the handlers are
    installed (``install_signal_handlers``): one sent before, whose default action
    is to kill (SIGHUP, SIGUSR1), waits for its handler instead. The requests to
    stop only with ``stops`` (once the pidfile is held: a stop during its lock
    wait stops at once). Returns the mask to restore should the start fail first."""
    held = [
        number
        for number, handler in handlers.items()
        if handler != _signal.SIG_DFL and (stops or number not in _STOPS)
    ]
    before: set[int] = _signal.pthread_sigmask(_signal.SIG_BLOCK, held)
    return before


def release_signals(before: set[int]) -> None:
    """Put back the mask ``hold_signals`` found (a start that failed before its
    handlers: a foreground process goes on, and its children inherit the mask)."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, before)


def install_signal_handlers(handlers: Mapping[int, Handler], before: set[int]) -> None:
    """Set each signal's disposition (``handlers`` as resolved by ``options``),
    then deliver what ``hold_signals`` held back (the mask ``before`` it), now to
    its handler."""
    for number, handler in handlers.items():
        _signal.signal(number, handler)
    release_signals(before)


# -- file descriptors ---------------------------------------------------------
# Closing costs follow the number of open fds, not RLIMIT_NOFILE: the launcher
# lists /proc/self/fd (or /dev/fd) before the fork, and the daemon closes the
# gaps between the fds it keeps with os.closerange, which uses close_range(2)
# where the kernel has it. Looping up to the limit, as python-daemon does,
# takes seconds when a container sets the limit to a billion.

# thread-self: the calling thread's table, which is the process's unless the thread
# unshared it (the supervisor's spawner thread); /proc/self/fd is the main thread's.
_FD_DIRS = ("/proc/thread-self/fd", "/proc/self/fd", "/dev/fd")


def open_fds() -> list[int] | None:
    """Return the open fds of this process (of the calling thread's own table, if it
    has one), sorted, or None if they cannot be listed."""
    for directory in _FD_DIRS:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        # The listing's own directory fd shows up too; closing it later is harmless.
        return sorted(int(name) for name in names if name.isdigit())
    return None


def _fallback_max_fd() -> int:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 65536:
        soft = 65536  # only reached with no /proc and no /dev/fd: bound the loop
    return soft


def fd_gaps(keep: Iterable[int]) -> list[tuple[int, int]]:
    """The ``os.closerange`` arguments that close every open fd not in ``keep``.

    Computed in the launcher just before the fork: the daemon inherits exactly
    these fds, and a single-threaded process opens none in between.
    """
    fds = open_fds()
    end = (fds[-1] + 1) if fds else 0
    if fds is None:
        end = _fallback_max_fd()
    gaps = []
    start = 0
    for fd in [*sorted(set(keep)), end]:
        if fd > start and start < end:
            gaps.append((start, min(fd, end)))
        start = max(start, fd + 1)
    return gaps


def close_fds(gaps: Iterable[tuple[int, int]]) -> None:
    """Close the ranges ``fd_gaps`` computed."""
    for low, high in gaps:
        os.closerange(low, high)


def prevent_core_dump() -> None:
    """Set RLIMIT_CORE to zero so a crash cannot write memory (secrets) to disk."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        raise DaemonOSEnvironmentError(f"cannot set RLIMIT_CORE to 0: {exc}") from exc


def change_root_directory(path: str) -> None:
    """chdir into ``path`` first, then chroot, so the cwd is never outside the new root."""
    try:
        os.chdir(path)
        os.chroot(path)
    except OSError as exc:
        raise _fail(f"cannot change root directory to {path!r}", exc) from exc


def change_working_directory(path: str) -> None:
    """Leave the launcher's cwd so the daemon does not pin a mount point."""
    try:
        os.chdir(path)
    except OSError as exc:
        raise _fail(f"cannot change working directory to {path!r}", exc) from exc


def change_file_creation_mask(mask: int) -> None:
    """Set the umask the daemon's files are created with."""
    os.umask(mask)


def _setgroups(gid: int, user_name: str | None, groups: list[int] | None) -> None:
    if groups is not None:
        os.setgroups(groups)
    elif user_name is not None:
        os.initgroups(user_name, gid)
    else:
        os.setgroups([])


def _ids() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    if hasattr(os, "getresuid"):
        return os.getresuid(), os.getresgid()
    uid, euid, gid, egid = os.getuid(), os.geteuid(), os.getgid(), os.getegid()
    return (uid, euid, euid), (gid, egid, egid)  # no saved ids to see (macOS)


def change_process_owner(
    uid: int, gid: int, user_name: str | None, groups: list[int] | None = None
) -> None:
    """Drop to ``uid``/``gid``: supplementary groups, then gid, then uid.

    Groups go first because only root may set them; gid before uid for the
    same reason. Root's groups are cleared (or replaced by the user's groups
    when ``user_name`` is given, as ``initgroups`` does, or by ``groups`` when they
    were looked up already, before a chroot), because a daemon that
    keeps group 0 ("root") can still read root-group files. Real, effective
    and saved ids are all set, and afterwards we check that root cannot be
    regained.
    """
    if _ids() == ((uid, uid, uid), (gid, gid, gid)):
        return
    try:
        if os.geteuid() == 0:
            _setgroups(gid, user_name, groups)
        if hasattr(os, "setresuid"):
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        else:
            os.setgid(gid)
            os.setuid(uid)
    except OSError as exc:
        raise _fail(f"cannot change process owner to uid {uid}, gid {gid}", exc) from exc
    if uid != 0:
        _check_root_not_regainable(uid, gid)


def _check_root_not_regainable(uid: int, gid: int) -> None:
    if _ids() != ((uid, uid, uid), (gid, gid, gid)):
        raise DaemonOSEnvironmentError(f"privilege drop incomplete: (uids, gids) = {_ids()}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise DaemonOSEnvironmentError(f"privilege drop failed: uid {uid} could regain root")


def changes_user(uid: int) -> bool:
    """Whether switching to ``uid`` changes our user: any of our real, effective
    and saved uids is another."""
    return any(held != uid for held in _ids()[0])


def _controlling_terminal_number() -> int | None:
    """Our controlling terminal's device number (``tty_nr`` in /proc/self/stat), 0
    for none; None when /proc cannot tell."""
    try:
        with open("/proc/self/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[4])  # state ppid pgrp session tty_nr
    except (OSError, ValueError, IndexError):
        return None


def open_controlling_terminal() -> int | None:
    """An fd on our controlling terminal, for ``give_up_controlling_terminal``, or None
    when we have none. Opened before any chroot: a jail has no /dev/tty. Without a
    usable /dev/tty, fd 0, 1 or 2 when /proc names it as that terminal; None when
    no such fd is (the program cannot reach the terminal either), an error when
    /proc cannot tell whether a terminal on one of them is ours."""
    import termios  # noqa: F401 # for give_up_controlling_terminal, maybe in a chroot

    flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC  # no carrier wait
    try:
        fd = os.open("/dev/tty", flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no controlling terminal
            return None
        failure = exc
    else:
        if os.isatty(fd):
            return fd
        os.close(fd)  # another file mounted there
        failure = OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
    number = _controlling_terminal_number()
    if number == 0:
        return None
    unknown = False  # a terminal on fd 0-2 that /proc cannot tell from ours
    for fd in STANDARD_FDS:
        try:
            if os.isatty(fd):
                if number is None:
                    unknown = True
                elif os.fstat(fd).st_rdev == number:
                    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError:
            continue
    if unknown:
        raise _fail("cannot open the controlling terminal /dev/tty to give it up", failure)
    # No fd on it, and /dev/tty (the one node that opens it for any user) unusable
    # here: the program cannot reach the terminal either; nothing to give up.
    return None


#: Signals the kernel sends the terminal's foreground group when its session
#: leader gives the terminal up (TIOCNOTTY): ignored meanwhile, not to die of it.
_GIVE_UP_SIGNALS = (_signal.SIGHUP, _signal.SIGCONT)


def give_up_controlling_terminal(fd: int) -> None:
    """Stop having the terminal ``fd`` is open on as controlling terminal
    (TIOCNOTTY), as a process that changes user must: else, as that user, it could
    open /dev/tty, and type into the invoking user's shell (TIOCSTI, which the
    kernel allows a user only on its own controlling terminal). Not a session
    leader: only this process loses it, and stays in the terminal's foreground
    group (Ctrl-C still reaches it). A session leader: the whole session loses it,
    and the kernel sends SIGHUP and SIGCONT to the foreground group, ignored here
    (setting SIG_IGN again drops one held pending by a blocked mask)."""
    import termios

    leader = os.getsid(0) == os.getpid()
    before = (
        [_signal.signal(number, _signal.SIG_IGN) for number in _GIVE_UP_SIGNALS] if leader else []
    )
    try:
        fcntl.ioctl(fd, termios.TIOCNOTTY)
    except OSError as exc:
        raise _fail("cannot give up the controlling terminal", exc) from exc
    finally:
        for number, handler in zip(_GIVE_UP_SIGNALS, before):
            _signal.signal(number, _signal.SIG_IGN)
            _signal.signal(number, _signal.SIG_DFL if handler is None else handler)


def fork(step: str) -> int:
    """``os.fork`` with a clear error; returns the child's pid in the parent, 0 in the child."""
    try:
        return os.fork()
    except OSError as exc:
        err = DaemonProcessDetachError(exc.errno, f"{step}: {exc.strerror}")
        raise err from exc


def start_new_session() -> None:
    """Become the leader of a new session with no controlling terminal."""
    try:
        os.setsid()
    except OSError as exc:
        err = DaemonProcessDetachError(exc.errno, f"setsid failed: {exc.strerror}")
        raise err from exc


def dup_above_standard(fd: int) -> int:
    """Return ``fd`` if it is 3 or more, else a close-on-exec copy at 3 or more.

    When the launcher was started with 0, 1 or 2 closed, the files we open
    land on those numbers and would be overwritten by stream redirection.
    """
    if fd > 2:
        return fd
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def open_devnull() -> int:
    """Open /dev/null for reading and writing (before chroot: it may not exist inside)."""
    try:
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise _fail(f"cannot open {os.devnull}", exc) from exc


def redirect_standard_streams(sources: Sequence[int]) -> None:
    """Make fds 0, 1 and 2 copies of ``sources`` (three fds, in that order).

    Sources below 3 are first copied out of the way so one redirection cannot
    clobber the source of the next. The new 0, 1, 2 are inheritable, as
    standard streams should be. Python's ``sys.stdin``/``stdout``/``stderr``
    are rebound when they were ``None`` (Python does that when it starts with
    the fd closed), so ``print`` works in the daemon.
    """
    safe = [dup_above_standard(fd) for fd in sources]
    for target, fd in enumerate(safe):
        os.dup2(fd, target)
    for original, fd in zip(sources, safe):
        if fd != original:
            os.close(fd)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as the process
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def follow_line_buffering(stdout: object, stderr: object) -> None:
    """Make ``sys.stdout``/``sys.stderr`` line-buffered when the file given for
    their fd is (``open(path, "a", buffering=1)``): ``print()`` writes through
    them, not through that file, and Python chose their buffering at start-up
    (block-buffered when not a terminal), so its lines would wait in a buffer."""
    for fd, given, stream in ((1, stdout, sys.stdout), (2, stderr, sys.stderr)):
        if given is stream or getattr(given, "line_buffering", False) is not True:
            continue
        try:
            if stream.fileno() == fd and not stream.line_buffering:
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):  # replaced by an object of the
            pass  # program's, or closed: its buffering is the program's business


def warn_if_threads_alive() -> None:
    """Warn when other threads exist: only the forking thread survives a fork,
    and any lock another thread held stays locked forever in the daemon."""
    threading = sys.modules.get("threading")
    if threading is None:
        return
    count = threading.active_count()
    if count > 1:
        import warnings

        warnings.warn(
            f"daemonizing with {count - 1} other thread(s) alive: they do not survive the "
            "fork, and locks they hold stay locked in the daemon; start threads after open()",
            RuntimeWarning,
            stacklevel=4,
        )
