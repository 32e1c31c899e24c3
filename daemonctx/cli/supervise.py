"""``daemonctx supervise``: keep programs running, from a TOML file or one COMMAND.

``--config FILE`` supervises the file's programs; without it, ``--control SOCK
-- COMMAND [ARG...]`` supervises one program (zdaemon-style), named after
COMMAND's basename or ``--name``. Everything checkable is checked here, in the
foreground; then the supervisor becomes a daemon (``DaemonContext`` with the
start-up handoff) and this command returns 0 only once every program is ready,
or fails with the program's reason and nothing left running. ``--foreground``,
and the cases ``DaemonContext`` detects by itself (under systemd, as PID 1),
keep it in the foreground. The work is in ``daemonctx.supervisor``.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable

from ..commands import not_empty, octal_mask, seconds, seconds_or_zero, user_argument
from ..errors import CommandError, DaemonError
from ..paths import UnsafePathError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["add_commands", "cmd_supervise", "quick"]

# The options ``_config`` and ``cmd_supervise`` read with ``--config`` besides those
# ``quick`` parses: None (not given) in the arguments it builds.
# (None: not given; the one-program options' defaults are applied in _config, so
# that one given with --config is an error, not ignored.)
_NONE_BY_DEFAULT = (
    "control",
    "pidfile",
    "name",
    "restart",
    "user",
    "group",
    "chdir",
    "umask",
    "stdout",
    "stderr",
    "notify",
    "ready_after",
    "watchdog",
)


def quick(argv: Sequence[str]) -> Callable[[], int] | None:
    """``supervise --config FILE [--foreground] [--log FILE]`` parsed by hand,
    without argparse (with gettext, about 6 ms of the start, and memory the
    supervisor would keep for its whole life). Anything else, help and mistakes
    included, returns None: the full parser then takes it."""
    from types import SimpleNamespace

    values: dict[str, Any] = {"config": None, "log": None, "foreground": False}
    words = list(argv)
    while words:
        name, equals, value = words.pop(0).partition("=")
        if name == "--foreground" and not equals and not values["foreground"]:
            values["foreground"] = True
            continue
        key = {"--config": "config", "-f": "config", "--log": "log"}.get(name)
        if key is None or values[key] is not None or (equals and name == "-f"):
            return None  # argparse reads -f=X as "=X"
        if not equals:
            if not words or words[0].startswith("-"):
                return None
            value = words.pop(0)
        if not value:
            return None
        values[key] = value
    if values["config"] is None:
        return None
    args = SimpleNamespace(command=None, **dict.fromkeys(_NONE_BY_DEFAULT), **values)
    return lambda: cmd_supervise(args)  # type: ignore[arg-type]


def add_commands(subparsers: Any) -> None:
    """Add ``supervise`` to ``subparsers``."""
    summary = "keep programs running (a supervisor), from a TOML file or one COMMAND"
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "supervise",
        help=summary,
        description=summary,
        usage=(
            "daemonctx supervise --config FILE [--foreground] [--log FILE]\n"
            "       daemonctx supervise --control SOCK [options] -- COMMAND [ARG...]"
        ),
        epilog=(
            "It returns once every program is ready; then control it with "
            "'daemonctx ctl --control SOCK status|stop|start|restart|shutdown'."
        ),
    )
    parser.set_defaults(handler=cmd_supervise, takes_command=None)
    parser.add_argument(
        "--config", "-f", metavar="FILE", type=not_empty, help="the TOML file of programs"
    )
    parser.add_argument(
        "--foreground", action="store_true", help="stay in the foreground (do not daemonize)"
    )
    parser.add_argument(
        "--log",
        metavar="FILE",
        type=not_empty,
        help="append the supervisor's own log to FILE (default: stderr)",
    )
    one = parser.add_argument_group("one program, without a file (-- COMMAND [ARG...])")
    one.add_argument(
        "--control", "-c", metavar="SOCK", type=not_empty, help="the control socket's path"
    )
    one.add_argument(
        "--pidfile", "-p", metavar="PATH", type=not_empty, help="the supervisor's own pidfile"
    )
    one.add_argument(
        "--name", metavar="NAME", type=not_empty, help="the program's name (default: COMMAND's)"
    )
    one.add_argument(
        "--restart",
        metavar="POLICY",
        choices=("always", "on-failure", "never"),
        help="always, on-failure (default) or never",
    )
    one.add_argument(
        "--user", metavar="USER", type=user_argument, help="run the program as this user"
    )
    one.add_argument("--group", "-g", metavar="GROUP", type=not_empty, help="and with this group")
    one.add_argument(
        "--chdir", "-d", metavar="DIR", type=not_empty, help="its working directory (default: /)"
    )
    one.add_argument("--umask", "-k", metavar="MASK", type=octal_mask, help="default: 022")
    one.add_argument(
        "--stdout", metavar="FILE", type=not_empty, help="append its standard output to FILE"
    )
    one.add_argument(
        "--stderr", metavar="FILE", type=not_empty, help="append its standard error to FILE"
    )
    one.add_argument(
        "--notify",
        action="store_true",
        default=None,
        help="it is ready when it sends READY=1 (sd_notify)",
    )
    one.add_argument(
        "--ready-after",
        metavar="S",
        type=seconds_or_zero,
        help="it is ready once it has run S seconds (0: once started, the default)",
    )
    one.add_argument(
        "--watchdog",
        metavar="S",
        type=seconds,
        help="once ready, it sends WATCHDOG=1 at least every S seconds, or is restarted",
    )


def _config(args: argparse.Namespace) -> Any:
    """The configuration: the file, or one program from the command line."""
    from ..supervisor.config import ConfigError, Program, SupervisorConfig, load

    single = [
        flag
        for flag, value in (
            ("--control", args.control),
            ("--pidfile", args.pidfile),
            ("--name", args.name),
            ("--restart", args.restart),
            ("--user", args.user),
            ("--group", args.group),
            ("--chdir", args.chdir),
            ("--umask", args.umask),
            ("--stdout", args.stdout),
            ("--stderr", args.stderr),
            ("--notify", args.notify),
            ("--ready-after", args.ready_after),
            ("--watchdog", args.watchdog),
        )
        if value is not None
    ]
    if args.config is not None:
        if args.command is not None or single:
            what = "-- COMMAND" if args.command is not None else single[0]
            raise CommandError(f"--config {args.config}: cannot be used with {what}", exit_code=2)
        from ..supervisor.core import check_config_file

        return load(args.config, trust=check_config_file)  # included files before reading
    if args.control is None or not args.command:
        raise CommandError("give --config FILE, or --control SOCK -- COMMAND [ARG...]", exit_code=2)
    name = args.name or os.path.basename(args.command[0]) or "program"
    ready: str | float = "started"
    if args.notify and args.ready_after is not None:
        raise CommandError("--notify and --ready-after: give one of them", exit_code=2)
    if args.notify:
        ready = "notify"
    elif args.ready_after is not None:
        ready = args.ready_after
    try:
        program = Program(
            name,
            tuple(args.command),
            directory=_absolute("--chdir", args.chdir or "/"),
            user=args.user,
            group=args.group,
            umask=0o022 if args.umask is None else args.umask,
            restart=args.restart or "on-failure",
            ready=ready,
            watchdog=args.watchdog,
            stdout=_absolute("--stdout", args.stdout) if args.stdout else "inherit",
            stderr=_absolute("--stderr", args.stderr) if args.stderr else "inherit",
        )
    except ConfigError as exc:
        if args.name is None and exc.key is None:  # the command's name will not do
            raise CommandError(f"{exc}; give it one with --name NAME") from None
        raise
    return SupervisorConfig(
        control=_absolute("--control", args.control),
        programs=(program,),
        pidfile=_absolute("--pidfile", args.pidfile) if args.pidfile else None,
        log=_absolute("--log", args.log) if args.log else None,
    )


def _absolute(option: str, path: str) -> str:
    """``path`` made absolute as the kernel reads it: joined to the current directory,
    not folded as text (``os.path.abspath`` drops a trailing "/", and ``..`` after a
    symlink); the file's own checks then see what was typed, as from a file."""
    if os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError:
        raise CommandError(
            f"{option} {path}: relative to a current directory that was deleted;"
            " give an absolute path"
        ) from None


def cmd_supervise(args: argparse.Namespace) -> int:
    from ..supervisor.config import UnreadableFileError, UnsafeFileError
    from ..supervisor.core import Supervisor, SupervisorStartError

    try:
        config = _config(args)
        log = _absolute("--log", args.log) if args.log is not None and args.config else None
        supervisor = Supervisor(config=config, log=log)  # --log wins over the file's
        supervisor.check()
        if config.pidfile is not None:
            from .. import control

            control.check_not_running(config.pidfile, "the supervisor")
        daemon = _daemon_context(config, args.foreground)
        status = supervisor.serve(daemon)
    except SupervisorStartError as exc:  # (a CommandError) its lines, as the launcher's
        raise _failure(exc) from exc
    except CommandError:
        raise
    except (UnsafePathError, UnsafeFileError, UnreadableFileError) as exc:  # LSB 4
        raise CommandError(str(exc), exit_code=4) from exc
    except DaemonError as exc:
        raise _failure(exc) from exc
    except OSError as exc:
        raise CommandError(f"supervise: {exc.strerror or exc}") from exc
    except Exception as exc:
        lost = _pidfile_error(exc)
        if lost is None:
            raise
        raise lost from exc
    return status


def _pidfile_error(exc: Exception) -> CommandError | None:
    """The ``[supervisor]`` pidfile's lockfile errors, raised in the foreground: another
    supervisor took its lock between our look at it and the daemon's start (two
    started at once). One line, as the other losers of that race get."""
    import lockfile  # type: ignore[import-untyped]  # loaded already, if it is one of its

    if isinstance(exc, lockfile.AlreadyLocked):
        return CommandError(f"{_RUNNING}: {exc}")
    if isinstance(exc, lockfile.Error):
        return CommandError(f"the supervisor's pidfile: {exc}")
    return None


#: What a supervisor started beside another one on the same pidfile is told.
_RUNNING = "the supervisor is already running"  # as control.check_not_running says


def _daemon_context(config: Any, foreground: bool) -> Any:
    """The supervisor's ``DaemonContext``: umask 022 (its programs inherit it
    unless they set theirs), its pidfile, no detach with ``--foreground``."""
    from .. import process
    from ..context import DaemonContext

    detach = False if foreground else process.detach_required()
    pidfile = None
    if config.pidfile is not None:
        from ..pidfile import TimeoutPIDLockFile

        pidfile = TimeoutPIDLockFile(config.pidfile, 0)
    return DaemonContext(
        umask=0o022,
        pidfile=pidfile,
        detach_process=detach,
        # In the foreground (a terminal, systemd's journal, a container's log) the
        # streams stay; a daemon's go to /dev/null (its log: --log or [supervisor] log).
        stdout=None if detach else sys.stdout,
        stderr=None if detach else sys.stderr,
        ready_on_open=False,
        # Not the default map's ignored job-control signals: an ignored signal
        # passes to every program, and forces the slow spawn (spawn.py).
        signal_map=dict.fromkeys((signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU), signal.SIG_DFL),
    )


def _failure(exc: DaemonError) -> CommandError:
    """The daemon's error as the user should read it: its own message, without
    the exception's type when it is ours. A failed boot's (``SupervisorStartError``,
    here or in the daemon) first line is the message, the program's last lines
    of standard error after it are its details: each printed on its own line."""
    from ..errors import DaemonStartupError
    from ..supervisor.core import SupervisorStartError

    message = str(exc)
    boot = isinstance(exc, SupervisorStartError)
    if type(exc) is DaemonStartupError and not exc.remote_type:  # it died without a word
        pid = f" (pid {exc.daemon_pid})" if exc.daemon_pid else ""
        return CommandError(f"the supervisor{pid} died before every program was ready (killed?)")
    if isinstance(exc, DaemonStartupError) and exc.remote_message:
        message = exc.remote_message
        if exc.remote_type == "lockfile.AlreadyLocked":  # the pidfile's race, lost there
            return CommandError(f"{_RUNNING}: {message}")
        kind = SupervisorStartError
        boot = exc.remote_type == f"{kind.__module__}.{kind.__qualname__}"
    if not boot:
        return CommandError(message)
    head, *lines = message.split("\n")
    return CommandError(head, details=tuple(line.removeprefix("  ") for line in lines))
