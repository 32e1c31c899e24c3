"""``daemonctx start|stop|restart|status|run|signal``: any program as a daemon with a pidfile.

``start`` checks everything it can in the foreground (the program exists, the
pidfile's directory, the user and group, nothing running already), then
detaches with a ``DaemonContext`` and execs the program in the daemon, so the
daemon *is* the program and keeps the pidfile's lock for its life (the lock's
fd is inherited across exec). It returns 0 once the exec has happened, or with
``--notify`` once the program has sent ``READY=1`` on a ``NOTIFY_SOCKET`` of
our own; anything that fails before that fails here, in the terminal. The
work is done by ``daemonctx.program`` and ``daemonctx.control``; this module
only parses and reports.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from .. import control
from ..commands import (
    add_stop_options,
    limit_argument,
    nice_argument,
    not_empty,
    octal_mask,
    report_stop,
    say,
    seconds,
    seconds_or_zero,
    signal_argument,
    stop_signal_and_steps,
    user_argument,
    warn,
)
from ..errors import CommandError
from ..program import (
    DEFAULT_UMASK,
    START_TIMEOUT,
    Launch,
    absolute_pidfile,
    check_start,
    run_program,
    start_program,
)

__all__ = ["COMMANDS", "add_commands"]

COMMANDS = ("start", "stop", "restart", "status", "run", "signal")
_DEFAULT_NAME = "the pidfile's name without extension"


# -- the parser ---------------------------------------------------------------


def _add_name_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--name",
        metavar="NAME",
        type=not_empty,
        help=f"name used in messages (default: {default})",
    )


def _add_context_options(parser: argparse.ArgumentParser) -> None:
    """Options of the daemon's context, for start, restart and run."""
    group = parser.add_argument_group("the program's context")
    group.add_argument(
        "--chdir",
        "-d",
        metavar="DIR",
        type=not_empty,
        default="/",
        help="working directory (default: /)",
    )
    group.add_argument(
        "--chroot",
        "-r",
        metavar="DIR",
        type=not_empty,
        help="change the root directory to DIR (root only); the program and --chdir are "
        "looked for inside it, the pidfile and output files are not",
    )
    group.add_argument(
        "--umask",
        "-k",
        metavar="MASK",
        type=octal_mask,
        default=DEFAULT_UMASK,
        help="file creation mask, octal (default: 022)",
    )
    group.add_argument(
        "--user",
        metavar="USER",
        type=user_argument,
        help="run as this user (name or uid): its uid, primary group and groups",
    )
    group.add_argument(
        "--group",
        "-g",
        metavar="GROUP",
        type=not_empty,
        help="run with this group (name or gid) instead",
    )
    group.add_argument(
        "--stdout", metavar="FILE", type=not_empty, help="append standard output to FILE"
    )
    group.add_argument(
        "--stderr", metavar="FILE", type=not_empty, help="append standard error to FILE"
    )
    group.add_argument(
        "--limit",
        metavar="NAME=VALUE",
        type=limit_argument,
        action="append",
        default=[],
        help="a resource limit, as systemd's Limit*= and ulimit name them: nofile=65536, "
        "core=infinity, nproc=512:1024 (soft:hard); may be repeated",
    )
    group.add_argument(
        "--nice",
        metavar="N",
        type=nice_argument,
        help="scheduling priority, from -20 (first) to 19 (last), as systemd's Nice=",
    )


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify",
        action="store_true",
        help="wait until the program sends READY=1 on $NOTIFY_SOCKET (sd_notify)",
    )
    parser.add_argument(
        "--ready-after",
        metavar="S",
        type=seconds_or_zero,
        default=0.0,
        help="the program must still run S seconds after it started (or sent READY=1), "
        "else the start fails (supervisord's startsecs; default: 0, no wait)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=seconds,
        default=START_TIMEOUT,
        help=f"seconds to wait for the program to be up; then stop it (default: {START_TIMEOUT:g})",
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
    parser.add_argument(
        "--pidfile",
        "-p",
        required=True,
        metavar="PATH",
        type=_pidfile_path,
        help="the daemon's pidfile",
    )
    return parser


def _pidfile_path(text: str) -> str:
    """A file's path: not empty ("" would be the current directory), no trailing /."""
    if not text or text.endswith("/"):
        raise argparse.ArgumentTypeError(f"expected the path of a file: {text!r}")
    return text


def add_commands(subparsers: Any) -> None:
    """Add start, stop, restart, status and run to ``subparsers``."""
    start = _subcommand(subparsers, "start", "start COMMAND as a daemon", cmd_start, True)
    start.epilog = (
        "'started NAME (pid N)' means: COMMAND was exec'd in the daemon, which holds the "
        "pidfile; with --notify, it also sent READY=1; with --ready-after S, it was still "
        "running S seconds later. Without either, a program that exits at once was still "
        "'started'."
    )
    _add_context_options(start)
    _add_start_options(start)
    _add_name_option(start, _DEFAULT_NAME)

    stop = _subcommand(
        subparsers, "stop", "stop the daemon and wait until it is gone", cmd_stop, False
    )
    add_stop_options(stop, "--timeout", retry_flag="--retry")
    _add_name_option(stop, _DEFAULT_NAME)
    # start-stop-daemon's, for init scripts: a daemon not running is no error here anyway
    stop.add_argument("--oknodo", action="store_true", help=argparse.SUPPRESS)

    restart = _subcommand(
        subparsers, "restart", "stop the daemon if it runs, then start COMMAND", cmd_restart, True
    )
    _add_context_options(restart)
    _add_start_options(restart)
    add_stop_options(restart, "--stop-timeout", retry_flag="--stop-retry")
    _add_name_option(restart, _DEFAULT_NAME)

    status = _subcommand(
        subparsers, "status", "tell whether the daemon runs (LSB exit codes)", cmd_status, False
    )
    _add_name_option(status, _DEFAULT_NAME)

    run = _subcommand(
        subparsers, "run", "run COMMAND in the foreground with the pidfile", cmd_run, True
    )
    _add_context_options(run)
    _add_name_option(run, _DEFAULT_NAME)

    kill = _subcommand(
        subparsers,
        "signal",
        "send a signal to the daemon (HUP to reload), without waiting",
        cmd_signal,
        False,
    )
    kill.usage = "daemonctx signal --pidfile PATH [options] SIGNAL"
    kill.add_argument(
        "signal",
        metavar="SIGNAL",
        type=signal_argument,
        help="by name (HUP, SIGHUP, RTMIN+2) or number",
    )
    _add_name_option(kill, _DEFAULT_NAME)


# -- the commands ---------------------------------------------------------------


def _launch(args: argparse.Namespace) -> Launch:
    return Launch.resolve(
        args.command,
        args.pidfile,
        name=args.name,
        chdir=args.chdir,
        umask=args.umask,
        user=args.user,
        group=args.group,
        limits=dict(args.limit),
        nice=args.nice,
        chroot=args.chroot,
    )


def _launch_warned(args: argparse.Namespace) -> Launch:
    """``_launch``, and a warning when the program will not reach its service
    manager's ``NOTIFY_SOCKET`` from inside ``--chroot`` (``--notify`` gives it
    one of ``start``'s own instead)."""
    launch = _launch(args)
    if not getattr(args, "notify", False):
        problem = launch.notify_socket_outside_root()
        if problem is not None:
            warn(problem)
    return launch


def _prepare(args: argparse.Namespace, inherit_streams: bool) -> Launch:
    """Every foreground check of start/run; the output files are opened last."""
    launch = _launch_warned(args)
    launch.check_limits()
    control.check_not_running(launch.pidfile, launch.name)
    launch.open_outputs(args.stdout, args.stderr, inherit_streams)
    return launch


def cmd_status(args: argparse.Namespace) -> int:
    name = args.name or control.default_name(args.pidfile)
    try:
        pidfile = absolute_pidfile(args.pidfile)
    except CommandError as exc:  # status's own line, and LSB's "unknown"
        found = control.ServiceStatus(args.pidfile, control.ServiceState.UNKNOWN, reason=str(exc))
    else:
        found = control.status(pidfile)
    try:
        say(found.message(name))
    except CommandError as exc:  # not shown: LSB's "status unknown", not 1 ("dead")
        exc.exit_code = 4
        raise
    return found.exit_code


def _stop(pidfile: str, name: str, args: argparse.Namespace, retry_flag: str) -> None:
    signum, retry = stop_signal_and_steps(args, retry_flag)
    result = control.stop(pidfile, timeout=args.stop_timeout, signal=signum, retry=retry)
    report_stop(result, name, args.stop_timeout)


def cmd_stop(args: argparse.Namespace) -> int:
    name = args.name or control.default_name(args.pidfile)
    _stop(absolute_pidfile(args.pidfile), name, args, "--retry")
    return 0


def cmd_signal(args: argparse.Namespace) -> int:
    from ..signals import signal_name

    name = args.name or control.default_name(args.pidfile)
    pid = control.send_signal(absolute_pidfile(args.pidfile), args.signal, name)
    say(f"sent {signal_name(args.signal)} to {name} (pid {pid})")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    start_program(
        _prepare(args, inherit_streams=False),
        notify=args.notify,
        timeout=args.timeout,
        ready_after=args.ready_after,
    )


def cmd_restart(args: argparse.Namespace) -> int:
    launch = _launch_warned(args)  # checked first: a typo must not stop the running daemon
    launch.open_outputs(args.stdout, args.stderr, inherit=False)
    check_start(launch)
    launch.check_limits()  # here too: one that cannot be set fails before the stop
    _stop(launch.pidfile, launch.name, args, "--stop-retry")
    control.check_not_running(launch.pidfile, launch.name)
    start_program(launch, notify=args.notify, timeout=args.timeout, ready_after=args.ready_after)


def cmd_run(args: argparse.Namespace) -> int:
    run_program(_prepare(args, inherit_streams=True))
