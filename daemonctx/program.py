"""Run a program you did not write as a daemon: what ``daemonctx start`` and
``run`` do, and what the supervisor builds on.

Everything that can be checked is resolved in the foreground (``Launch``):
the program is found, the pidfile's directory exists, the user and group
exist, nothing runs already, the output files open. Then a ``DaemonContext``
detaches and the daemon execs the program, which keeps the pidfile's lock
(its fd is inherited across exec) for its whole life. The launcher returns
once the exec has happened, or with a notify listener once the program has
sent ``READY=1``; a failure before that is raised in the launcher.
"""

from __future__ import annotations

import os
import posixpath
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn

from . import control
from .commands import Interrupted, say_started
from .context import DaemonContext
from .errors import CommandError, DaemonError, DaemonOptionError, DaemonReadyTimeout
from .executable import resolve_in_root, resolve_program, resolve_program_in_root
from .paths import UnsafePathError, jail_owner
from .pidfd import exited, open_pidfd, stop_session, terminate_all, wait_exit
from .pidfile import PIDLockFile
from .systemd import NotifyListener

if TYPE_CHECKING:
    from .limits import LimitError

__all__ = [
    "DEFAULT_UMASK",
    "START_TIMEOUT",
    "Launch",
    "LaunchContext",
    "ProgramContext",
    "absolute_pidfile",
    "check_start",
    "exec_program",
    "reset_signal_dispositions",
    "resolve_owner",
    "resolve_pidfile",
    "resolve_program",
    "run_program",
    "socket_activation_fds",
    "start_program",
]

START_TIMEOUT = 60.0  # seconds start waits for the exec (or READY=1): start-stop-daemon's
DEFAULT_UMASK = 0o022  # systemd's default UMask=
_ENVIRONMENT_OF_USER = ("HOME", "USER", "LOGNAME")


@dataclass
class Launch:
    """Everything resolved in the foreground before the program is started."""

    argv: list[str]
    name: str
    path: str
    pidfile: str
    chdir: str
    umask: int
    environment: dict[str, str]
    uid: int | None = None
    gid: int | None = None
    initgroups: bool = False
    user: str | None = None  # as typed, for messages
    group: str | None = None
    stdout: IO[Any] | None = field(default=None, repr=False)
    stderr: IO[Any] | None = field(default=None, repr=False)
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (soft, hard)
    nice: int | None = None
    chroot: str | None = None  # then ``path`` and ``chdir`` are as seen inside it

    @classmethod
    def resolve(
        cls,
        argv: list[str],
        pidfile: str,
        *,
        name: str | None = None,
        chdir: str = "/",
        umask: int = DEFAULT_UMASK,
        user: str | None = None,
        group: str | None = None,
        limits: dict[str, tuple[int, int]] | None = None,
        nice: int | None = None,
        chroot: str | None = None,
    ) -> Launch:
        """Check and resolve a program's start; raise ``CommandError`` naming what is wrong.

        ``name`` (for messages) defaults to the pidfile's name without extension, the
        name ``status`` and ``stop`` use too: "/run/app.pid" gives "app". With
        ``chroot``, the program and ``chdir`` are looked for inside it; the pidfile
        and the output files stay where they are, outside.
        """
        name = name or control.default_name(pidfile)
        environment = dict(os.environ)
        uid, gid, initgroups = resolve_owner(user, group, environment)
        root = None
        if chroot is None:
            path = resolve_program(argv[0])
            directory = _absolute("--chdir", chdir)
            if not os.path.isdir(directory):
                raise CommandError(f"--chdir {directory}: no such directory")
        else:
            root, directory = _resolve_root(chroot, chdir, jail_owner(uid, gid))
            search = environment.get("PATH", os.defpath)
            path = resolve_program_in_root(argv[0], root, directory, search)
        if uid is not None or gid is not None:
            _check_runnable(argv[0], path, root, uid, gid, initgroups, user, group)
        return cls(
            list(argv),
            name,
            path,
            resolve_pidfile(pidfile),
            directory,
            umask,
            environment,
            uid,
            gid,
            initgroups,
            user,
            group,
            limits=dict(limits or {}),
            nice=nice,
            chroot=root,
        )

    def open_outputs(self, stdout: str | None, stderr: str | None, inherit: bool) -> None:
        """Open the output files here, so a bad path fails in the foreground; with
        ``inherit`` (run), keep our own streams when none is given."""
        opened: dict[str, IO[Any]] = {}
        for stream, path in (("stdout", stdout), ("stderr", stderr)):
            if path is not None:
                self._refuse_pidfile_as_output(f"--{stream}", path)
        for stream, path in (("stdout", stdout), ("stderr", stderr)):
            value: IO[Any] | None
            if path is None:
                value = getattr(sys, stream) if inherit else None
            elif path in opened:
                value = opened[path]
            else:
                value = opened[path] = control.open_output(path, f"--{stream}", self.umask)
            setattr(self, stream, value)

    def _refuse_pidfile_as_output(self, option: str, path: str) -> None:
        """``CommandError`` when the output file ``path`` is the pidfile, or its
        hidden second name (``pidfile.guard_path``): the program's output would
        corrupt the pidfile (a ``--user`` program could rewrite it through its
        stdout), or go to a file ``release()`` unlinks. The same path once links
        are resolved, or the same file (device and inode: a hard link) where
        both exist."""
        from .pidfile import guard_path

        try:
            resolved = os.path.realpath(path)
        except OSError:  # a deleted current directory: opening it tells what is wrong
            return
        try:
            output: os.stat_result | None = os.stat(path)
        except OSError:
            output = None
        names = (
            (f"the pidfile (--pidfile {self.pidfile})", self.pidfile),
            (
                f"the pidfile's hidden second name (the guard of --pidfile {self.pidfile})",
                guard_path(self.pidfile),
            ),
        )
        for what, name in names:
            try:
                same = os.path.realpath(name) == resolved
                if not same and output is not None:
                    there = os.lstat(name)  # a pidfile is never a link (O_NOFOLLOW)
                    same = (there.st_dev, there.st_ino) == (output.st_dev, output.st_ino)
            except OSError:  # not there: no file to share
                continue
            if same:
                raise CommandError(f"{option} {path}: that is {what}; give another file")

    def check_limits(self) -> None:
        """``--limit`` and ``--nice``, checked in the foreground (``limits.check``):
        one the daemon could not set fails the start before anything runs (LSB 4
        when it takes a privilege we lack). The daemon sets them (``set_limits``)."""
        from .limits import check

        self._with_limits(check)

    def set_limits(self) -> None:
        """Set ``--limit`` and ``--nice`` on this process: the daemon, as it still
        has the launcher's privileges, just before it changes user. The launcher
        itself never runs under them (``--limit as=...`` would break it)."""
        from .limits import set_limits

        self._with_limits(set_limits)

    def notify_socket_outside_root(self) -> str | None:
        """With ``--chroot``, when the program's ``NOTIFY_SOCKET`` is a path the jail
        lacks (systemd's /run/systemd/notify): a warning line saying so and how to
        fix it; else None. The program sends there itself, after the exec: nothing
        of daemonctx is left to relay, and a socket connected before the chroot
        cannot be handed over in its place (``NOTIFY_SOCKET`` is an address)."""
        value = self.environment.get("NOTIFY_SOCKET")
        if self.chroot is None or not value or value.startswith("@"):  # @: no file
            return None
        import stat

        seen = resolve_in_root(self.chroot, value)
        try:
            if seen is not None and stat.S_ISSOCK(os.stat(seen).st_mode):
                return None
        except OSError:
            pass
        inside = posixpath.join(self.chroot, value.lstrip("/"))
        return (
            f"NOTIFY_SOCKET={value} is not in --chroot {self.chroot}: what the program"
            " sends the service manager (READY=1, STATUS=, WATCHDOG=1) is lost; bind it"
            f" into the jail (systemd: BindReadOnlyPaths={value}:{inside}) or use"
            f" systemd's RootDirectory={self.chroot} instead of --chroot"
        )

    def enter_root(self) -> None:
        """With ``--chroot``: chroot, then change to ``--chdir`` inside it. In the
        daemon, once it holds the pidfile (a path outside the jail), before it
        changes user (chroot needs root); what an error report needs from then on
        was loaded in the foreground (``_resolve_root``)."""
        if self.chroot is None:
            return
        from . import process

        process.change_root_directory(self.chroot)
        process.change_working_directory(self.chdir)

    def _with_limits(
        self, action: Callable[[dict[str, tuple[int, int]], int | None], None]
    ) -> None:
        """``action(limits, nice)`` when there are any, its ``LimitError`` told with
        the flag the user typed."""
        if not self.limits and self.nice is None:
            return
        from .limits import LimitError

        try:
            action(self.limits, self.nice)
        except LimitError as exc:
            raise self._limit_error(exc) from None

    def _limit_error(self, exc: LimitError) -> CommandError:
        """``exc`` told with the flag the user typed."""
        from .limits import PRIORITY

        if exc.name == PRIORITY:
            flag = f"--nice {self.nice}"
        else:
            soft, hard = self.limits[exc.name]
            flag = f"--limit {exc.name}={_limit_text(soft, hard)}"
        return CommandError(f"{flag}: {exc.reason}", exit_code=4 if exc.privilege else 1)

    def flag_error(self, exc: DaemonOptionError) -> CommandError:
        """A ``DaemonContext`` option's error, told with the flag the user typed:
        "--user nobody: cannot switch to it as uid 1000 (not root)"."""
        flags = {
            "uid": ("--user", self.user),
            "initgroups": ("--user", self.user),
            "gid": ("--group", self.group) if self.group is not None else ("--user", self.user),
            "working_directory": ("--chdir", self.chdir),
            "umask": ("--umask", f"{self.umask:03o}"),
            "pidfile": ("--pidfile", self.pidfile),
        }
        flag, typed = flags.get(exc.option, (None, None))
        if flag is None or typed is None:
            return CommandError(f"{self.name}: {exc}")
        # LSB 4, insufficient privilege: only root may switch users (check_owner);
        # a --chdir this user may not enter or reach
        denied = (exc.option in ("uid", "gid", "initgroups") and "root" in exc.reason) or (
            exc.option == "working_directory" and "(permission denied)" in exc.reason
        )
        return CommandError(f"{flag} {typed}: {exc.reason}", exit_code=4 if denied else 1)

    def context_options(self, lock: PIDLockFile) -> dict[str, Any]:
        """The ``DaemonContext`` options of this program's daemon."""
        return {
            # with --chroot, enter_root changes to --chdir once inside the jail
            "working_directory": self.chdir if self.chroot is None else "/",
            "umask": self.umask,
            "uid": self.uid,
            "gid": self.gid,
            "initgroups": self.initgroups,
            "pidfile": lock,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "ready_on_open": False,
            "prevent_core": "core" not in self.limits,  # --limit core=... is the user's
        }


def _check_runnable(
    command: str,
    path: str,
    root: str | None,
    uid: int | None,
    gid: int | None,
    initgroups: bool,
    user: str | None,
    group: str | None,
) -> None:
    """``CommandError`` when the program at ``path`` cannot be exec'd with the ids it
    will run as (``--user``'s uid and groups, ``--group``), though we could: the
    check runs as the invoking user, the exec as the program's. With ``--chroot``,
    the file itself (as the jail shows it), not the directories above it."""
    from .executable import check_runnable_as, resolve_in_root

    target_uid = os.geteuid() if uid is None else uid
    target_gid = os.getegid() if gid is None else gid
    groups: list[int] = [target_gid]
    if initgroups:
        import pwd

        try:
            groups = os.getgrouplist(pwd.getpwuid(target_uid).pw_name, target_gid)
        except (KeyError, OSError):
            return  # the daemon's initgroups says what is wrong
    seen = path if root is None else resolve_in_root(root, path)
    if seen is None:
        return
    who = " ".join(
        f"{flag} {typed}" for flag, typed in (("--user", user), ("--group", group)) if typed
    )
    check_runnable_as(command, seen, target_uid, groups, who, directories=root is None)


def _limit_text(soft: int, hard: int) -> str:
    """A limit as ``--limit`` takes it: 65536, infinity, 512:1024."""
    words = ["infinity" if value < 0 else str(value) for value in (soft, hard)]
    return words[0] if soft == hard else ":".join(words)


#: capabilities(7): what chroot(2) takes.
_CAP_SYS_CHROOT = 18


def _resolve_root(chroot: str, chdir: str, uid: int | None) -> tuple[str, str]:
    """``--chroot`` resolved (``paths.check_root``: absolute, no link, no "..";
    the daemon chroots to that path, so it enters the jail that was checked)
    and ``--chdir`` as a path inside it (joined, not normalized: the kernel
    resolves "link/.." as the check did). ``CommandError`` when either is no
    directory, or we may not chroot (LSB 4), or for a jail a user other than
    root, us or the daemon's ``uid`` could fill (LSB 4). What an error after
    the chroot needs is loaded here: no module file may be reachable there,
    and a small ``--limit nofile`` may leave no descriptor to open one."""
    from .limits import capable
    from .options import preload
    from .paths import UnsafePathError, check_root

    if not chroot:
        raise CommandError("--chroot '': an empty path (give the jail's directory)")
    _absolute("--chroot", chroot)  # a relative one in a deleted directory: said so
    try:
        root = check_root(chroot, "--chroot", uid)
    except UnsafePathError as exc:
        raise CommandError(str(exc), exit_code=4) from None
    except OSError as exc:  # missing, not a directory, a directory we may not read
        raise CommandError(exc.strerror or str(exc)) from None
    if not capable(_CAP_SYS_CHROOT):
        raise CommandError(
            f"--chroot {chroot}: changing the root directory needs root (CAP_SYS_CHROOT)",
            exit_code=4,
        )
    directory = posixpath.join("/", chdir)
    seen = resolve_in_root(root, directory)
    if seen is None or not os.path.isdir(seen):
        raise CommandError(f"--chdir {directory}: no such directory in --chroot {root}")
    preload(False, root, None)
    return root, directory


def _absolute(option: str, path: str) -> str:
    """``path`` made absolute; ``CommandError`` naming ``option`` when it is relative
    to a current directory that was deleted (``os.path.abspath`` cannot)."""
    try:
        return os.path.abspath(path)
    except OSError:
        raise CommandError(
            f"{option} {path}: relative to a current directory that was deleted;"
            " give an absolute path"
        ) from None


def absolute_pidfile(path: str) -> str:
    """``--pidfile`` made absolute; ``CommandError`` (exit 1) when it is relative to a
    current directory that was deleted, as for a start: stop, status, signal."""
    return _absolute("--pidfile", path)


def resolve_pidfile(path: str) -> str:
    """The pidfile as an absolute path (the daemon changes directory), in an existing directory."""
    path = _absolute("--pidfile", path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise CommandError(f"pidfile directory {directory} {what}")
    return path


def resolve_owner(
    user: str | None, group: str | None, environment: dict[str, str]
) -> tuple[int | None, int | None, bool]:
    """(uid, gid, initgroups) for --user/--group; None keeps ours.

    --user gives the user's uid, primary group and supplementary groups, and
    sets HOME, USER and LOGNAME in ``environment``; --group overrides the gid.
    """
    uid = gid = None
    if user is not None:
        import pwd

        try:
            entry = pwd.getpwuid(int(user)) if _ascii_digits(user) else pwd.getpwnam(user)
        except (KeyError, OverflowError, ValueError):  # a uid past uid_t overflows
            raise CommandError(f"--user {user}: no such user") from None
        uid, gid = entry.pw_uid, entry.pw_gid
        environment.update(zip(_ENVIRONMENT_OF_USER, (entry.pw_dir, entry.pw_name, entry.pw_name)))
    if group is not None:
        import grp

        try:
            found = grp.getgrgid(int(group)) if _ascii_digits(group) else grp.getgrnam(group)
            gid = found.gr_gid
        except (KeyError, OverflowError, ValueError):
            raise CommandError(f"--group {group}: no such group") from None
    return uid, gid, user is not None


def _ascii_digits(text: str) -> bool:
    """Whether ``text`` is an id: ASCII digits only. ``str.isdigit`` and ``int`` take
    Arabic-Indic and fullwidth digits too ("\\u0661\\u0660" for 10); a name made of
    them is looked up as the name it is."""
    return text.isascii() and text.isdigit()


# -- the daemon's side: exec --------------------------------------------------


def reset_signal_dispositions() -> None:
    """Give the program every signal's default action, as systemd does.

    Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored
    across exec; the signal mask was reset when the context opened.
    """
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):  # signals the C library reserves
            pass


def exec_program(context: DaemonContext, launch: Launch, lock: PIDLockFile) -> NoReturn:
    """Replace the daemon with the program, keeping the pidfile lock (call inside ``with``).

    A failed exec raises here, and the context reports it to the launcher.
    """
    context.notify_ready_on_exec()
    os.set_inheritable(lock.fileno(), True)
    reset_signal_dispositions()
    os.execve(launch.path, launch.argv, launch.environment)


#: The most fds LISTEN_FDS may pass (sd_listen_fds(3): from fd 3 up to INT_MAX).
_LISTEN_FDS_MAX = 2**31 - 1 - 3


def socket_activation_fds() -> list[int]:
    """fds passed by socket activation ($LISTEN_FDS, when $LISTEN_PID is us), to keep open.

    Raises ``CommandError``, one line naming LISTEN_FDS, for a count that is not ASCII
    digits from 0 to INT_MAX - 3 (as sd_listen_fds(3) refuses it), or that passes an fd
    that is not open: the program would otherwise start without its sockets. Each fd is
    looked at in turn, up to the first that is not open: a count in the billions
    costs no more than the fds there are."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = os.environ.get("LISTEN_FDS", "")
    if not count:
        return []
    number = int(count) if _ascii_digits(count) and len(count) <= 10 else -1
    if not 0 <= number <= _LISTEN_FDS_MAX:
        shown = repr(count) if len(count) <= 40 else f"{count[:40]!r}... ({len(count)} characters)"
        reason = f"not a number of fds from 0 to {_LISTEN_FDS_MAX}"
        raise CommandError(f"LISTEN_FDS={shown}: {reason}")
    import fcntl

    last = 2 + number
    for fd in range(3, last + 1):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            passes = "fd 3" if number == 1 else f"fds 3 to {last}"
            raise CommandError(
                f"LISTEN_FDS={count} passes {passes}, but fd {fd} is not open"
            ) from None
    return list(range(3, last + 1))


# -- start --------------------------------------------------------------------


class LaunchContext(DaemonContext):
    """The context of ``start`` and ``run``: the program's ``--limit`` and ``--nice``
    are set in the daemon, with the launcher's privileges, just before it changes
    user (checked in the foreground first: ``Launch.check_limits``), and there it
    enters ``--chroot`` (``Launch.enter_root``), once it holds the pidfile."""

    def __init__(self, launch: Launch | None = None, **options: Any) -> None:
        self._launch = launch
        self._launcher = str(os.getpid())
        super().__init__(**options)

    def _before_owner_change(self) -> None:
        launch = self._launch
        if launch is not None:
            launch.set_limits()
            launch.enter_root()
            moved = self._moved_watchdog  # the program's copy of systemd's WATCHDOG_PID too
            if moved is not None and launch.environment.get("WATCHDOG_PID") == moved[0]:
                launch.environment["WATCHDOG_PID"] = moved[1]
            # Socket activation named the launcher, whose fds were kept
            # (socket_activation_fds): they are the program's, which has our pid.
            if launch.environment.get("LISTEN_PID") == self._launcher:
                launch.environment["LISTEN_PID"] = str(os.getpid())


class ProgramContext(LaunchContext):
    """The context ``start`` uses: in the launcher, once the program is exec'd,
    optionally waits for its READY=1, then says "started NAME (pid N)".

    With a listener, the service manager above us (if any) hears READY=1 only
    after the program said it: ``super().launcher_ready()`` comes after the wait.

    A start that fails once the program runs (no READY=1 in time, an exit before
    it or within ``ready_after``, Ctrl-C, SIGTERM or SIGHUP to the launcher) stops
    the program, every process of the session it runs in, and every process of
    its that holds the pidfile's lock, as ``stop`` does, and removes the pidfile:
    a start reported failed leaves nothing.
    """

    def __init__(
        self,
        name: str,
        listener: NotifyListener | None,
        timeout: float,
        ready_after: float = 0.0,
        *,
        launch: Launch | None = None,
        **options: Any,
    ) -> None:
        self._name = name
        self._listener = listener
        self._ready_after = ready_after
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._pidfile_path: str = options["pidfile"].path
        self._session: int | None = None  # the session the first child created
        self._daemon_pid: int | None = None
        super().__init__(launch, ready_timeout=timeout, **options)

    def _wait_in_launcher(self, handoff: Any, child: int, mask: set[int]) -> NoReturn:
        # The first child's pid is the id of the session the program runs in.
        self._session = child
        # Set while the signals are still blocked since the fork: the base class
        # lets them in inside its wait, so wherever one lands the start fails whole.
        with _signals_interrupt():
            super()._wait_in_launcher(handoff, child, mask)

    def launcher_ready(self, daemon_pid: int) -> None:
        self._daemon_pid = daemon_pid
        if self._listener is not None:
            self._await_program(daemon_pid, self._listener)
        if self._ready_after > 0:
            self._see_it_run(daemon_pid)
        super().launcher_ready(daemon_pid)
        say_started(self._name, daemon_pid)

    def _launch_failed(self) -> None:
        """A failed start, or the launcher interrupted, wherever it happened (the
        program exec'd or not, its pid learnt or not): stop what is left, every
        process of the session it runs in (a child that holds no lock, too) and
        every holder of the pidfile's lock, then remove the pidfile."""
        _ignore_interruptions()  # the clean-up runs to its end
        if self._session is not None:  # its leader, our first child, is not reaped yet
            stop_session(self._session)
        self._stop_program()

    def _see_it_run(self, pid: int) -> None:
        """supervisord's ``startsecs``: the program must still run ``ready_after``
        seconds after its exec (or its READY=1), or the start failed."""
        if self.daemon_pidfd is None:
            return
        if wait_exit(self.daemon_pidfd, self._ready_after):
            raise CommandError(
                f"{self._name} (pid {pid}) exited within {self._ready_after:g} s of its start"
                f" (--ready-after {self._ready_after:g})"
            )

    def _await_program(self, pid: int, listener: NotifyListener) -> None:
        # The pidfd the handoff opened when it learnt the pid (a pid may be reused)
        pidfd = None if self.daemon_pidfd is None else os.dup(self.daemon_pidfd)
        timeout = max(0.0, self._deadline - time.monotonic())
        listener.accept = self._from_the_program
        try:
            outcome = listener.wait_ready(pidfd, timeout)
        finally:
            listener.close()
            if pidfd is not None:
                os.close(pidfd)
        if outcome == "ready":
            return
        if outcome == "timeout":
            raise CommandError(
                f"{self._name} (pid {pid}) did not send READY=1 within {self._timeout:g} s;"
                " stopped it"
            )
        raise CommandError(f"{self._name} (pid {pid}) exited before it sent READY=1")

    def _from_the_program(self, pid: int, uid: int) -> bool:
        """Whether a notification sent by ``pid`` (as ``uid``, both from the kernel's
        SCM_CREDENTIALS) is the program's: systemd's ``NotifyAccess=all``, for the
        processes of the session the program runs in and its descendants. Without a
        cgroup to tell them by, a process of the program's own user counts too: a
        grandchild in a session of its own whose parent exited (reparented out of
        the tree), a ``systemd-notify`` already gone when we look; that user could
        make the program say anything anyway. Another user's never does."""
        from .procfs import parent_pid, session_id

        if uid == self.uid:
            return True
        session = session_id(pid) if pid > 0 else None
        if session is None:
            return uid == 0
        if session == self._session:
            return True
        for _ in range(_ANCESTRY):  # a descendant that made a session of its own
            if pid == self._daemon_pid:
                return True
            parent = parent_pid(pid)
            if parent is None or parent <= 1:
                return False
            pid = parent
        return False

    def _stop_program(self) -> None:
        """Stop the program and every process of its that holds the pidfile's lock
        (children that inherited it), as ``stop`` does, then remove the pidfile.

        Each holder is pinned by a pidfd, proven to hold the lock, and signalled only
        if it is ours: when the program took the lock (/proc/locks names its pid) every
        holder shares it; else (a pid namespace hides the locker once it is gone) only
        holders in the program's session count. The daemon of another start, which
        took the pidfile since, is left alone.
        """
        from . import identity, procfs

        main = self.daemon_pidfd
        for _ in range(_STOP_ROUNDS):
            try:
                found = identity.find(self._pidfile_path, every_holder=True)
            except Exception:  # unreadable now: the program, at least, is stopped
                found = None
            pinned: list[int] = []
            if found is not None and found.held:
                every = self._took_the_lock(found.keys)  # then every holder is ours
                for holder in found.holders:
                    if holder == self._daemon_pid:
                        continue
                    pidfd = open_pidfd(holder)
                    if pidfd is None:
                        continue
                    holds = any(procfs.holding_fds(holder, key) for key in found.keys)
                    ours = every or procfs.session_id(holder) == self._session
                    if holds and ours and not exited(pidfd):
                        pinned.append(pidfd)
                    else:
                        os.close(pidfd)
            if main is not None and not exited(main):
                pinned.append(os.dup(main))
            if not pinned:
                break
            try:
                if not terminate_all(pinned):
                    return  # one outlived SIGKILL: its lock, and so the pidfile, stay
            finally:
                for pidfd in pinned:
                    os.close(pidfd)
        control.remove_stale_pidfile(self._pidfile_path)

    def _took_the_lock(self, keys: tuple[tuple[int, int, int], ...]) -> bool:
        """Whether the lock on the pidfile (one of ``keys``) is the one the program took."""
        from .procfs import exclusive_flocks

        return any(pid == self._daemon_pid and key in keys for pid, key in exclusive_flocks() or [])


_ANCESTRY = 64  # parents looked at to tell a descendant of the program
_STOP_ROUNDS = 5  # looks for lock holders after a failed start (children forked meanwhile)


#: Signals that end a waiting launcher, Ctrl-C's too: the program is stopped first
#: (each is blocked across the fork: context's _LAUNCHER_SIGNALS).
_INTERRUPTING = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
_interrupted: list[int] = []  # the signal that ended the wait, once one did


def _raise_interrupted(signum: int, frame: Any) -> None:
    # Once: a second signal (TERM then HUP, both pending at once: Python runs the
    # second handler after the first raised) must not cut short the clean-up the
    # first one starts, wherever it lands.
    if _interrupted:
        return
    _interrupted.append(signum)
    _ignore_interruptions()
    raise Interrupted(signum)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM raise ``Interrupted``
    (a ``KeyboardInterrupt``), as SIGINT does: ``timeout``, a lost ssh session or a
    service manager's start timeout then stops the program as Ctrl-C would, and the
    launcher exits 128 + the signal. A signal the launcher was started with ignored
    (``nohup``) stays ignored."""
    previous = {
        number: signal.signal(number, _raise_interrupted)
        for number in _INTERRUPTING
        if signal.getsignal(number) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _ignore_interruptions() -> None:
    """A second Ctrl-C, SIGTERM or SIGHUP must not cut a failed start's clean-up short:
    blocked (held back until the launcher exits, which discards them), not ignored
    (a signal already on its way would print "ignored due to race condition")."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTING)


def start_program(
    launch: Launch,
    *,
    notify: bool = False,
    timeout: float = START_TIMEOUT,
    ready_after: float = 0.0,
) -> NoReturn:
    """Detach and exec; in the launcher this exits 0 once the program is up, or raises
    ``CommandError``. Up means exec'd; with ``notify``, it sent READY=1; with
    ``ready_after``, it was still running that many seconds later."""
    activated = socket_activation_fds()  # LISTEN_PID names us: kept, and the program's
    listener = _notify_listener(launch) if notify else None
    if listener is not None:
        launch.environment["NOTIFY_SOCKET"] = listener.address
        _drop_watchdog(launch.environment)
    try:  # whatever fails, the listener's directory is removed
        lock = PIDLockFile(launch.pidfile)
        context = ProgramContext(
            launch.name,
            listener,
            timeout,
            ready_after,
            launch=launch,
            detach_process=True,
            files_preserve=activated,
            **launch.context_options(lock),
        )
        with _one_line_failures(launch, f"{launch.name} failed to start"), context:
            exec_program(context, launch, lock)
    finally:
        if listener is not None:
            listener.close()


def _notify_listener(launch: Launch) -> NotifyListener:
    """``--notify``'s socket: a path in a directory of our own, made where no other
    user may make one (/run for root, else $XDG_RUNTIME_DIR; with ``--chroot``, the
    jail, which the program cannot leave), and removed when ``start`` exits, so that
    no other user can bind that name while the program lives and receive what it
    sends (with ``FDSTORE=1``, its open files). In the temporary directory (/tmp,
    sticky: anyone may make a directory there), the empty directory stays behind
    for that reason. Where none can be made (a read-only jail), an abstract address,
    said in one line: another user may take it once ``start`` has exited."""
    if launch.chroot is not None:
        places = [(launch.chroot, False)]
    else:
        places = list(_notify_bases(launch.uid))
    why = "no directory to make it in"
    for base, writable in places:
        if launch.chroot is None and len(os.fsencode(base)) > _NOTIFY_BASE_MAX:
            why = f"in {base}: too long a path for a unix socket"
            continue
        try:
            return NotifyListener(base, root=launch.chroot or "/", keep=writable)
        except OSError as exc:
            why = f"in {base}: {exc.strerror or exc}"
    sys.stderr.write(
        f"daemonctx: warning: --notify: cannot make its socket {why}; the program gets an"
        " abstract address, which another user can take once start has exited\n"
    )
    sys.stderr.flush()
    return NotifyListener()


#: The longest base for "/daemonctx-notify.<16 hex>/notify" in a unix socket's 108 bytes.
_NOTIFY_BASE_MAX = 107 - len("/daemonctx-notify.0123456789abcdef/notify")


def _notify_bases(uid: int | None) -> Iterator[tuple[str, bool]]:
    """Where ``--notify``'s directory may go, each with whether other users may
    write there (sticky): /run as root, else $XDG_RUNTIME_DIR (the program runs as
    us then), then the temporary directory. Each trusted as ``check_path`` trusts a
    pidfile's directory: no other user could rename what is made there."""
    import stat
    import tempfile

    from .paths import check_path

    euid = os.geteuid()
    candidates = ["/run"] if euid == 0 else []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if euid != 0 and runtime.startswith("/") and uid in (None, euid):
        candidates.append(runtime)
    candidates.append(tempfile.gettempdir())
    for candidate in candidates:
        try:
            base = check_path(candidate, "the notify socket's directory")
            st = os.stat(base)
        except (OSError, UnsafePathError):
            continue
        if stat.S_ISDIR(st.st_mode):
            foreign_group = st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid())
            yield base, bool(st.st_mode & stat.S_IWOTH or foreign_group)


def _drop_watchdog(environment: dict[str, str]) -> None:
    """``--notify``: the service manager's WATCHDOG_USEC and WATCHDOG_PID go with its
    NOTIFY_SOCKET, which the program does not get: it would ping our socket, gone
    after the start, and believe its watchdog fed. One line says so when that
    watchdog was ours (systemd's ``WatchdogSec=`` on a ``Type=forking`` unit)."""
    from .systemd import watchdog_seconds

    if watchdog_seconds() is not None:
        sys.stderr.write(
            "daemonctx: warning: --notify gives the program start's own NOTIFY_SOCKET,"
            f" so not the service manager's watchdog (WATCHDOG_USEC={os.environ['WATCHDOG_USEC']});"
            " for WatchdogSec=, use daemonctx run with Type=notify\n"
        )
        sys.stderr.flush()
    environment.pop("WATCHDOG_USEC", None)
    environment.pop("WATCHDOG_PID", None)


def check_start(launch: Launch) -> None:
    """Every check a start runs before it forks, but "the pidfile is held": for a
    restart, so that a bad option fails before the running daemon is stopped."""
    context = DaemonContext(
        detach_process=True, **launch.context_options(PIDLockFile(launch.pidfile))
    )
    try:
        context.check(pidfile_held_ok=True)
    except DaemonOptionError as exc:
        raise launch.flag_error(exc) from exc
    except UnsafePathError as exc:  # the refusal start gives, LSB 4 (insufficient privilege)
        raise CommandError(str(exc), exit_code=4) from exc
    except DaemonError as exc:
        raise control.startup_failure(launch.name, exc) from exc


def run_program(launch: Launch) -> NoReturn:
    """The same context without detaching: take the pidfile, then exec in place."""
    lock = PIDLockFile(launch.pidfile)
    context = LaunchContext(
        launch,
        detach_process=False,
        files_preserve=socket_activation_fds(),
        **launch.context_options(lock),
    )
    with _one_line_failures(launch, f"cannot run {launch.path}"), context:
        exec_program(context, launch, lock)


@contextmanager
def _one_line_failures(launch: Launch, what_failed: str) -> Iterator[None]:
    """Turn what a start or run can raise into one ``CommandError`` line: option
    errors told with the user's flags, the daemon's error, an ``OSError`` in the
    foreground (``what_failed: strerror``), and a lost race for the pidfile."""
    try:
        yield
    except CommandError:
        raise
    except DaemonOptionError as exc:
        raise launch.flag_error(exc) from exc
    except DaemonError as exc:
        if isinstance(exc, DaemonReadyTimeout) and exc.daemon_pid:
            control.remove_stale_pidfile(launch.pidfile)
        raise control.startup_failure(launch.name, exc) from exc
    except OSError as exc:  # in the foreground: nothing was started
        raise CommandError(f"{what_failed}: {exc.strerror or exc}") from exc
    except Exception as exc:
        refused = _lock_error(launch, exc)
        if refused is None:
            raise
        raise refused from exc


def _lock_error(launch: Launch, exc: Exception) -> CommandError | None:
    """The pidfile's lockfile errors, raised in the foreground (another start won the
    race between our two looks at the pidfile): one line, not a traceback."""
    import lockfile  # type: ignore[import-untyped]  # loaded already, if it is one of its

    if not isinstance(exc, lockfile.Error):
        return None
    if isinstance(exc, lockfile.AlreadyLocked):
        return CommandError(f"{launch.name} is already running: {exc}")
    denied = isinstance(exc.__cause__, PermissionError)  # its directory: LSB 4
    return CommandError(f"{launch.name}: {exc}", exit_code=4 if denied else 1)
