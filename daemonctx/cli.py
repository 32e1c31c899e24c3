"""The ``daemonctx`` command (also ``python -m daemonctx``): start, stop, restart,
status and run any program as a daemon, with a pidfile.

``start`` checks everything it can in the foreground (the program exists, the
pidfile's directory, the user and group, nothing running already), then
detaches with a ``DaemonContext`` and execs the program in the daemon, so the
daemon *is* the program and keeps the pidfile's lock for its life (the lock's
fd is inherited across exec). It returns 0 once the exec has happened, or with
``--notify`` once the program has sent ``READY=1`` on a ``NOTIFY_SOCKET`` of
our own; anything that fails before that fails here, in the terminal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import __version__, control
from .context import DaemonContext
from .errors import DaemonError, DaemonReadyTimeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable, NoReturn

    from .pidfile import PIDLockFile

START_TIMEOUT = 60.0  # seconds start waits for the exec (or READY=1): start-stop-daemon's
DEFAULT_UMASK = 0o022  # systemd's default UMask=
_PROGRAM_STOP_GRACE = 5.0  # seconds a program that missed READY=1 gets after SIGTERM
_ENVIRONMENT_OF_USER = ("HOME", "USER", "LOGNAME")

COMMANDS = ("start", "stop", "restart", "status", "run")


def _say(line: str) -> None:
    """Print a line for the user; a closed stdout must not fail a start that worked."""
    try:
        print(line, flush=True)
    except OSError:
        pass


# -- option values ------------------------------------------------------------


def _umask(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mask: {text!r}") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"must be from 000 to 777: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _signal_arg(text: str) -> int:
    try:
        return control.parse_signal(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the parser ---------------------------------------------------------------


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Split at the first "--": (daemonctx's arguments, the program's command or None)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    return argv[:index], argv[index + 1 :]


def _add_pidfile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pidfile", "-p", required=True, metavar="PATH", help="the daemon's pidfile"
    )


def _add_name_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--name", metavar="NAME", help=f"name used in messages (default: {default})"
    )


def _add_context_options(parser: argparse.ArgumentParser) -> None:
    """Options of the daemon's context, for start, restart and run."""
    group = parser.add_argument_group("the program's context")
    group.add_argument(
        "--chdir", "-d", metavar="DIR", default="/", help="working directory (default: /)"
    )
    group.add_argument(
        "--umask",
        "-k",
        metavar="MASK",
        type=_umask,
        default=DEFAULT_UMASK,
        help="file creation mask, octal (default: 022)",
    )
    group.add_argument(
        "--user",
        metavar="USER",
        help="run as this user (name or uid): its uid, primary group and groups",
    )
    group.add_argument(
        "--group", "-g", metavar="GROUP", help="run with this group (name or gid) instead"
    )
    group.add_argument("--stdout", metavar="FILE", help="append standard output to FILE")
    group.add_argument("--stderr", metavar="FILE", help="append standard error to FILE")


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify",
        action="store_true",
        help="wait until the program sends READY=1 on $NOTIFY_SOCKET (sd_notify)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=_seconds,
        default=START_TIMEOUT,
        help=f"seconds to wait for the program to be up; then stop it (default: {START_TIMEOUT:g})",
    )


def add_stop_options(
    parser: argparse.ArgumentParser,
    timeout_flag: str,
    timeout: float = control.STOP_TIMEOUT,
    signum: int = signal.SIGTERM,
) -> None:
    """The stop options (``dest`` stop_timeout and signal); Service uses them too."""
    parser.add_argument(
        timeout_flag,
        metavar="S",
        type=_seconds,
        default=timeout,
        dest="stop_timeout",
        help=f"seconds before SIGKILL (default: {timeout:g})",
    )
    parser.add_argument(
        "--signal",
        "-s",
        metavar="SIG",
        type=_signal_arg,
        default=signum,
        help=f"signal to stop with, by name (TERM, SIGTERM) or number "
        f"(default: {signal.Signals(signum).name[3:]})",
    )


def _subcommand(
    subparsers: Any,
    name: str,
    summary: str,
    handler: Callable[[argparse.Namespace], int],
    takes_command: bool,
) -> argparse.ArgumentParser:
    usage = f"daemonctx {name} --pidfile PATH [options]"
    if takes_command:
        usage += " -- COMMAND [ARG...]"
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=summary, usage=usage
    )
    parser.set_defaults(handler=handler, takes_command=takes_command)
    _add_pidfile_option(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="daemonctx",
        description="Run a program as a daemon with a pidfile, and control it.",
        epilog="Run 'daemonctx COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"daemonctx {__version__}")
    subparsers = parser.add_subparsers(dest="action", metavar="COMMAND", required=True)

    start = _subcommand(subparsers, "start", "start COMMAND as a daemon", cmd_start, True)
    _add_context_options(start)
    _add_start_options(start)
    _add_name_option(start, "the basename of COMMAND")

    stop = _subcommand(
        subparsers, "stop", "stop the daemon and wait until it is gone", cmd_stop, False
    )
    add_stop_options(stop, "--timeout")
    _add_name_option(stop, "the pidfile's name without extension")

    restart = _subcommand(
        subparsers, "restart", "stop the daemon if it runs, then start COMMAND", cmd_restart, True
    )
    _add_context_options(restart)
    _add_start_options(restart)
    add_stop_options(restart, "--stop-timeout")
    _add_name_option(restart, "the basename of COMMAND")

    status = _subcommand(
        subparsers, "status", "tell whether the daemon runs (LSB exit codes)", cmd_status, False
    )
    _add_name_option(status, "the pidfile's name without extension")

    run = _subcommand(
        subparsers, "run", "run COMMAND in the foreground with the pidfile", cmd_run, True
    )
    _add_context_options(run)
    _add_name_option(run, "the basename of COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``daemonctx`` command; returns its exit status.

    Without ``argv`` (the command itself, which exits next) it calls
    ``prepare_exit()`` on the way out.
    """
    try:
        return _main(argv)
    finally:
        if argv is None:
            prepare_exit()


def prepare_exit() -> None:
    """Spare the interpreter's shutdown its final pass over every object.

    ``gc.freeze()`` moves them out of the collector's reach; a process that
    exits right after loses nothing, and ``stop`` returns ~3 ms sooner after
    the daemon's exit (benchmarks/bench_stop.py).
    """
    import gc

    gc.freeze()


def _main(argv: Sequence[str] | None) -> int:
    head, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(head)
    if args.takes_command and not command:
        parser.error(f"{args.action}: missing -- COMMAND [ARG...]")
    if not args.takes_command and command is not None:
        parser.error(f"{args.action} takes no COMMAND")
    args.command = command
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except control.ControlError as exc:
        print(f"daemonctx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


# -- status and stop ----------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    found = control.status(args.pidfile)
    _say(found.message(args.name or control.default_name(args.pidfile)))
    return found.exit_code


def _stop(pidfile: str, name: str, timeout: float, signum: int) -> None:
    """Stop and say so; raise ``ControlError`` when the process would not exit."""
    result = control.stop(pidfile, timeout=timeout, signal=signum)
    if not result.exited:
        raise control.ControlError(result.message(name))
    _say(result.message(name, timeout))


def cmd_stop(args: argparse.Namespace) -> int:
    name = args.name or control.default_name(args.pidfile)
    _stop(args.pidfile, name, args.stop_timeout, args.signal)
    return 0


# -- start, restart, run: what is checked in the foreground -------------------


class Launch:
    """Everything resolved in the foreground before the program is started."""

    __slots__ = (
        "argv",
        "chdir",
        "environment",
        "gid",
        "initgroups",
        "name",
        "path",
        "pidfile",
        "stderr",
        "stdout",
        "uid",
        "umask",
    )

    def __init__(self, args: argparse.Namespace) -> None:
        self.argv: list[str] = list(args.command)
        self.name: str = args.name or os.path.basename(self.argv[0]) or self.argv[0]
        self.path = resolve_program(self.argv[0], self.name)
        self.pidfile = resolve_pidfile(args.pidfile)
        self.chdir = os.path.abspath(args.chdir)
        if not os.path.isdir(self.chdir):
            raise control.ControlError(f"--chdir {self.chdir}: no such directory")
        self.umask: int = args.umask
        self.environment = dict(os.environ)
        self.uid, self.gid, self.initgroups = resolve_owner(args.user, args.group, self.environment)
        self.stdout: Any = None
        self.stderr: Any = None

    def open_outputs(self, args: argparse.Namespace, inherit: bool) -> None:
        """Open --stdout/--stderr here, so a bad path fails in the foreground;
        with ``inherit`` (run), keep our own streams when none is given."""
        opened: dict[str, Any] = {}
        for stream in ("stdout", "stderr"):
            path = getattr(args, stream)
            if path is None:
                value = getattr(sys, stream) if inherit else None
            elif path in opened:
                value = opened[path]
            else:
                value = opened[path] = open_output(path, stream, self.umask)
            setattr(self, stream, value)


def resolve_program(command: str, name: str) -> str:
    """The absolute path to exec, found in PATH as the shell would."""
    import shutil

    found = shutil.which(command)
    if found is None:
        prefix = "" if name == os.path.basename(command) else f"{name}: "
        raise control.ControlError(f"{prefix}command not found: {command}")
    return os.path.abspath(found)


def resolve_pidfile(path: str) -> str:
    """The pidfile as an absolute path (the daemon changes directory), in an existing directory."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise control.ControlError(f"pidfile directory {directory} does not exist")
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
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise control.ControlError(f"unknown user {user!r}") from None
        uid, gid = entry.pw_uid, entry.pw_gid
        environment.update(zip(_ENVIRONMENT_OF_USER, (entry.pw_dir, entry.pw_name, entry.pw_name)))
    if group is not None:
        import grp

        try:
            gid = (grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)).gr_gid
        except KeyError:
            raise control.ControlError(f"unknown group {group!r}") from None
    return uid, gid, user is not None


def open_output(path: str, option: str, umask: int = DEFAULT_UMASK) -> Any:
    """Open --stdout/--stderr ``path`` for appending (``control.open_output``)."""
    return control.open_output(path, f"--{option}", umask)


def _prepare(args: argparse.Namespace, inherit_streams: bool) -> Launch:
    """Every foreground check of start/run; the output files are opened last."""
    launch = Launch(args)
    control.check_not_running(launch.pidfile, launch.name)
    launch.open_outputs(args, inherit_streams)
    return launch


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


def socket_activation_fds() -> list[int]:
    """fds passed by socket activation ($LISTEN_FDS, when $LISTEN_PID is us), to keep open."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = os.environ.get("LISTEN_FDS", "")
    return list(range(3, 3 + int(count))) if count.isdigit() else []


def _context_options(launch: Launch, lock: PIDLockFile) -> dict[str, Any]:
    return {
        "working_directory": launch.chdir,
        "umask": launch.umask,
        "uid": launch.uid,
        "gid": launch.gid,
        "initgroups": launch.initgroups,
        "pidfile": lock,
        "stdout": launch.stdout,
        "stderr": launch.stderr,
        "ready_on_open": False,
    }


# -- start --------------------------------------------------------------------


class NotifyListener:
    """A datagram socket of our own for sd_notify, passed as ``NOTIFY_SOCKET``.

    It has an abstract address (no file to clean up, no permissions to fix
    after a privilege drop) made unguessable with random bytes.
    """

    def __init__(self) -> None:
        import socket

        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        name = f"daemonctx/{os.getpid()}/{os.urandom(8).hex()}"
        self._socket.bind("\0" + name)
        self.address = "@" + name

    def close(self) -> None:
        self._socket.close()

    def _ready_received(self) -> bool:
        """Read every waiting datagram; True if one said READY=1."""
        import socket

        ready = False
        while True:
            try:
                data = self._socket.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return ready
            ready = ready or b"READY=1" in data.split(b"\n")

    def wait_ready(self, pidfd: int | None, timeout: float) -> str:
        """Wait for READY=1 while watching the program's pidfd: "ready", "exited" or "timeout"."""
        import select
        import time

        deadline = time.monotonic() + timeout
        watched = [self._socket.fileno()] + ([] if pidfd is None else [pidfd])
        while True:
            if self._ready_received():
                return "ready"
            if pidfd is None:
                return "exited"
            remaining = deadline - time.monotonic()
            readable = (
                select.select(watched, [], [], max(0.0, remaining))[0] if remaining > 0 else []
            )
            if not readable:
                return "ready" if self._ready_received() else "timeout"
            if pidfd in readable:
                return "ready" if self._ready_received() else "exited"


class ProgramContext(DaemonContext):
    """The context ``start`` uses: in the launcher, once the program is exec'd,
    optionally waits for its READY=1, then says "started NAME (pid N)".

    With ``--notify`` the service manager above us (if any) hears READY=1 only
    after the program said it: ``super().launcher_ready()`` comes after the wait.
    """

    def __init__(
        self, name: str, listener: NotifyListener | None, timeout: float, **options: Any
    ) -> None:
        import time

        self._name = name
        self._listener = listener
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        super().__init__(ready_timeout=timeout, **options)

    def launcher_ready(self, daemon_pid: int) -> None:
        if self._listener is not None:
            self._await_program(daemon_pid, self._listener)
        super().launcher_ready(daemon_pid)
        _say(f"started {self._name} (pid {daemon_pid})")

    def _await_program(self, pid: int, listener: NotifyListener) -> None:
        import time

        # The pidfd the handoff opened when it learnt the pid (a pid may be reused)
        pidfd = None if self.daemon_pidfd is None else os.dup(self.daemon_pidfd)
        timeout = max(0.0, self._deadline - time.monotonic())
        try:
            outcome = listener.wait_ready(pidfd, timeout)
            if outcome == "timeout" and pidfd is not None:
                control.terminate(pidfd, timeout=_PROGRAM_STOP_GRACE)
        except KeyboardInterrupt:
            if pidfd is not None:
                control.terminate(pidfd, timeout=_PROGRAM_STOP_GRACE)
            control.remove_stale_pidfile(self.pidfile.path)
            raise
        finally:
            listener.close()
            if pidfd is not None:
                os.close(pidfd)
        if outcome == "ready":
            return
        control.remove_stale_pidfile(self.pidfile.path)
        if outcome == "timeout":
            raise control.ControlError(
                f"{self._name} (pid {pid}) did not send READY=1 within {self._timeout:g} s;"
                " stopped it"
            )
        raise control.ControlError(f"{self._name} (pid {pid}) exited before it sent READY=1")


def _start(args: argparse.Namespace, launch: Launch) -> NoReturn:
    """Detach and exec; in the launcher this exits 0 once the program is up, or raises."""
    from .pidfile import PIDLockFile

    listener = NotifyListener() if args.notify else None
    if listener is not None:
        launch.environment["NOTIFY_SOCKET"] = listener.address
    lock = PIDLockFile(launch.pidfile)
    context = ProgramContext(
        launch.name,
        listener,
        args.timeout,
        detach_process=True,
        **_context_options(launch, lock),
    )
    try:
        with context:
            exec_program(context, launch, lock)
    except control.ControlError:
        raise
    except DaemonError as exc:
        if isinstance(exc, DaemonReadyTimeout) and exc.daemon_pid:
            control.remove_stale_pidfile(launch.pidfile)
        raise control.startup_failure(launch.name, exc) from exc
    finally:
        if listener is not None:
            listener.close()


def cmd_start(args: argparse.Namespace) -> int:
    return _start(args, _prepare(args, inherit_streams=False))


def cmd_restart(args: argparse.Namespace) -> int:
    launch = Launch(args)  # checked first: a typo must not stop the running daemon
    launch.open_outputs(args, inherit=False)
    _stop(launch.pidfile, launch.name, args.stop_timeout, args.signal)
    control.check_not_running(launch.pidfile, launch.name)
    return _start(args, launch)


# -- run ----------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """The same context without detaching: take the pidfile, then exec in place."""
    from .pidfile import PIDLockFile

    launch = _prepare(args, inherit_streams=True)
    lock = PIDLockFile(launch.pidfile)
    context = DaemonContext(
        detach_process=False,
        files_preserve=socket_activation_fds(),
        **_context_options(launch, lock),
    )
    try:
        with context:
            exec_program(context, launch, lock)
    except DaemonError as exc:
        raise control.startup_failure(launch.name, exc) from exc
    except OSError as exc:
        raise control.ControlError(f"cannot run {launch.path}: {exc.strerror}") from exc
