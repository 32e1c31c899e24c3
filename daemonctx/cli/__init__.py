"""The ``daemonctx`` command (also ``python -m daemonctx``).

One module per family of subcommands: ``daemon`` (start, stop, restart,
status, run: a program as a daemon with a pidfile). This package is the top
layer: nothing else in daemonctx imports it.
"""

from __future__ import annotations

import sys

from .. import __version__
from ..commands import prepare_exit, run_command

TYPE_CHECKING = False  # typing costs ctl milliseconds at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any, Callable

__all__ = ["COMMANDS", "build_parser", "main", "split_command"]

# The daemon commands (cli/daemon.py's COMMANDS), here so that importing this
# package loads no subcommand's module: each is imported when its parser is built.
COMMANDS = ("start", "stop", "restart", "status", "run", "signal")


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Split at the first "--": (daemonctx's arguments, the program's command or None)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    return argv[:index], argv[index + 1 :]


def _columns() -> int:
    """The terminal's width, as ``shutil.get_terminal_size().columns`` says it:
    $COLUMNS, else the size of the terminal on stdout, else 80."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return 80
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80
    except (ValueError, OSError):  # not a terminal, or closed
        return 80


def build_parser(only_ctl: bool = False, only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand; with ``only_ctl``, of ``ctl``
    alone, which then imports none of the other commands' modules (its
    start-up time is a goal: a script may run ``ctl status`` every second).
    ``only="supervise"`` likewise builds the supervisor's alone (its start-up
    is part of how fast its programs are running), and ``only="daemon"`` the
    daemon commands alone."""
    import argparse

    class Formatter(argparse.HelpFormatter):
        """argparse's, told the terminal's width: its own way imports shutil,
        which imports bz2, lzma and zlib (0.6 MiB and milliseconds at every start
        of a command, the supervisor's included), since every add_argument makes one."""

        def __init__(
            self,
            prog: str,
            indent_increment: int = 2,
            max_help_position: int = 24,
            width: int | None = None,
        ) -> None:
            if width is None:
                width = _columns() - 2  # as argparse does with shutil's answer
            super().__init__(prog, indent_increment, max_help_position, width)

    class Parser(argparse.ArgumentParser):
        """Its subcommands' parsers are of its class: each gets the formatter."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", Formatter)
            super().__init__(*args, **kwargs)

    parser = Parser(
        prog="daemonctx",
        description="Run a program as a daemon with a pidfile, and control it.",
        epilog="Run 'daemonctx COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"daemonctx {__version__}")
    subparsers = parser.add_subparsers(dest="action", metavar="COMMAND", required=True)
    if only in (None, "daemon") and not only_ctl:
        from . import daemon

        daemon.add_commands(subparsers)
    if only in (None, "supervise") and not only_ctl:
        from . import supervise

        supervise.add_commands(subparsers)
    if only is None or only_ctl:
        from . import ctl

        ctl.add_commands(subparsers)
    return parser


#: Commands with nothing to finish once they have printed (no log, no thread): the
#: command itself leaves at once, without the interpreter's shutdown (~3.5 ms, paid
#: after the daemon's exit by every ``stop``: benchmarks/bench_stop.py).
_LEAVE_AT_ONCE = frozenset({"stop", "status", "signal"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``daemonctx`` command; returns its exit status.

    Without ``argv`` (the command itself, which exits next) it calls
    ``prepare_exit()`` on the way out, and ``stop``, ``status`` and ``signal``
    leave at once (``os._exit``) once their output is flushed.
    """
    try:
        status = _main(argv)
    finally:
        if argv is None:
            prepare_exit()
    if argv is None and sys.argv[1:2] and sys.argv[1] in _LEAVE_AT_ONCE:
        _leave(status)
    return status


def _leave(status: int) -> None:
    """``os._exit(status)`` once stdout and stderr are flushed; when one cannot be
    (a closed pipe), return: the usual exit says what it says about it."""
    import os

    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(status)


_CTL_VALUES = ("-c", "--control", "-f", "--config", "--timeout")


def _main(argv: Sequence[str] | None) -> int:
    head, command = split_command(sys.argv[1:] if argv is None else argv)
    if head[:1] == ["ctl"] and command is not None:  # ctl runs no COMMAND: "--" ends its options
        head, command = [*head, "--", *command], None
    if head[:1] == ["signal"] or (head[:1] == ["ctl"] and "signal" in head):
        from ..commands import kill_style

        # `signal -HUP`, as kill takes it; the options that take a value, each
        if head[0] == "signal":
            head = kill_style(head, ("-p", "--pidfile", "--name"))
        else:
            head = ["ctl", *kill_style(head[1:], _CTL_VALUES)]
    if head[:1] == ["ctl"] and command is None:
        from .ctl import quick

        run = quick(head[1:])
        if run is not None:
            return run_command("daemonctx", run)
    if head[:1] == ["supervise"] and command is None:
        from .supervise import quick as quick_supervise

        run = quick_supervise(head[1:])
        if run is not None:
            return run_command("daemonctx", run)
    first = head[0] if head else None
    only = "daemon" if first in COMMANDS else first if first == "supervise" else None
    parser = build_parser(only_ctl=first == "ctl", only=only)
    for word in head:  # argparse before 3.12 drops a "--" value, then fails with a traceback
        if word.startswith("--") and word.endswith("=--"):
            parser.error(f"{word}: '--' is not a value")
    args, extra = parser.parse_known_args(head)
    if extra:  # said with the usage of the (sub)command they were given to
        hint = _extra_hint(args, extra, command)
        _deepest(parser, head).error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if args.takes_command and not command:
        _deepest(parser, head).error("missing -- COMMAND [ARG...]")
    if args.takes_command is False and command is not None:
        parser.error(f"{args.action} takes no COMMAND")
    args.command = command
    handler: Callable[[argparse.Namespace], int] = args.handler
    return run_command("daemonctx", lambda: handler(args))


# start-stop-daemon's options that daemonctx has no twin of: what to write instead.
_SSD_HINTS = {
    "--exec": "the program is the COMMAND after '--'; stop and status find the daemon"
    " by its pidfile's lock, with no filter",
    "--oknodo": "stop of a daemon not running exits 0 anyway; start of a running one fails, exit 1",
    "--chuid": "--user USER [--group GROUP]",
    "--background": "start always detaches",
    "--make-pidfile": "start always makes the pidfile",
    "--nicelevel": "--nice N",
    "--output": "--stdout FILE --stderr FILE",
}


def _extra_hint(args: argparse.Namespace, extra: Sequence[str], command: object) -> str:
    """What the unrecognized ``extra`` words likely meant, in parentheses, or "":
    start-stop-daemon's options, or a COMMAND without the '--' before it."""
    for word in extra:
        name = word.partition("=")[0]
        if name in _SSD_HINTS:
            return f" (start-stop-daemon's {name}; here: {_SSD_HINTS[name]})"
    takes = getattr(args, "takes_command", False)
    optional = takes is None and getattr(args, "config", None) is None  # supervise
    if command is None and (takes or optional) and not extra[0].startswith("-"):
        import shlex

        return f" (a COMMAND goes after '--': -- {shlex.join(extra)})"
    return ""


def _deepest(parser: argparse.ArgumentParser, words: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the innermost subcommand named in ``words`` (``ctl`` then
    ``ping``): argparse says an unrecognized argument with the top level's usage."""
    import argparse  # loaded with the parser

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for index, word in enumerate(words):
                if word in action.choices:
                    return _deepest(action.choices[word], words[index + 1 :])
    return parser
