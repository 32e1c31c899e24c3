"""What every command shares, the ``daemonctx`` command and ``Service.main()`` alike.

Argument types and the stop options, printing a line to a stdout that may be
closed, reporting a stop, turning ``CommandError`` and Ctrl-C into an exit
status, and leaving quickly. It imports argparse only when a parser is built,
and ``control`` only when a signal is parsed or a stop reported (``ctl``'s
start-up time is a goal).
"""

from __future__ import annotations

import os
import signal
import sys

from .errors import CommandError, DaemonOptionError, Interrupted, one_line

TYPE_CHECKING = False  # typing costs ctl milliseconds at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Collection, Sequence
    from typing import Any, Callable

    from .control import StopResult

__all__ = [
    "Interrupted",
    "add_stop_options",
    "kill_style",
    "limit_argument",
    "nice_argument",
    "not_empty",
    "octal_mask",
    "prepare_exit",
    "report_stop",
    "retry_argument",
    "run_command",
    "say",
    "say_started",
    "seconds",
    "seconds_or_zero",
    "signal_argument",
    "stop_signal_and_steps",
    "user_argument",
    "warn",
]


_prog = "daemonctx"  # for warnings: the program run_command runs


def say(line: str) -> bool:
    """Print a line for the user. False when its reader has gone (EPIPE: ``| head
    -1``), which ends a listing quietly, as tail(1); any other write error (a full
    disk, EIO) raises ``CommandError`` ("write error: No space left on device"):
    output a script saves must not be lost with exit 0."""
    try:
        print(line, flush=True)
    except UnicodeEncodeError:  # a path or command line that is not text (b"\xff"), and a
        # strict stdout (PYTHONIOENCODING=utf-8): its bytes as they are, as ls writes them
        try:
            sys.stdout.buffer.write(os.fsencode(line) + b"\n")
            sys.stdout.buffer.flush()
        except (UnicodeError, AttributeError):
            return False
        except OSError as exc:
            return _write_failed(exc)
    except OSError as exc:
        return _write_failed(exc)
    return True


def _write_failed(exc: OSError) -> bool:
    """After a failed write to stdout: False for EPIPE, else ``CommandError``. Either
    way fd 1 becomes /dev/null, so the flush at exit cannot fail again ("Exception
    ignored ...", exit 120)."""
    _discard_stdout()
    if isinstance(exc, BrokenPipeError):
        return False
    raise CommandError(f"write error: {exc.strerror or exc}") from None


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null once its reader has gone (``| head -1``): what stays
    in a block-buffered stdout (no PYTHONUNBUFFERED) would fail the flush at exit,
    "Exception ignored ... BrokenPipeError", exit 120. Python's own advice (signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def say_started(name: str, pid: int) -> None:
    """What a start prints once the daemon is up: "started app (pid 4242)". A write
    error is a warning only: the daemon runs, and a start that fails leaves nothing
    running."""
    try:
        say(f"started {name} (pid {pid})")
    except CommandError as exc:
        warn(f"{exc} (started {name}, pid {pid})")


def run_command(prog: str, handler: Callable[[], int]) -> int:
    """Run ``handler`` and return its exit status: a ``CommandError`` is printed as
    ``PROG: error: MESSAGE`` (its details each on a line of its own, indented) and
    gives its exit code; Ctrl-C gives 130, and ``Interrupted`` 128 + its signal
    (143 for SIGTERM, 129 for SIGHUP)."""
    global _prog
    _prog = prog
    try:
        return handler()
    except CommandError as exc:
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        for line in exc.details:
            print(f"  {one_line(line)}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130


def report_stop(result: StopResult, name: str, timeout: float | None) -> None:
    """Say what a stop did; raise ``CommandError`` when a process would not exit,
    or (exit 4) when we may not remove its stale pidfile. A stale pidfile kept
    otherwise (a read-only file system) is a warning: the daemon is stopped."""
    if not result.exited:
        raise CommandError(result.message(name))
    say(result.message(name, timeout))
    kept = result.pidfile_warning()
    if kept is not None and result.pidfile_denied:
        raise CommandError(kept, exit_code=4)
    if kept is not None:
        warn(kept)


def warn(line: str) -> None:
    """Print ``PROG: warning: LINE`` on stderr (the program ``run_command`` runs)."""
    try:
        print(f"{_prog}: warning: {one_line(line)}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def prepare_exit() -> None:
    """Spare the interpreter's shutdown its final pass over every object.

    ``gc.freeze()`` moves them out of the collector's reach; a process that
    exits right after loses nothing, and ``stop`` returns ~3 ms sooner after
    the daemon's exit (benchmarks/bench_stop.py).
    """
    import gc

    gc.freeze()


# -- argument types -------------------------------------------------------------


def _argument_error(message: str) -> Exception:
    import argparse

    return argparse.ArgumentTypeError(message)


def octal_mask(text: str) -> int:
    """``--umask``: an octal file creation mask, checked as the ``umask`` option is:
    octal digits, in ASCII (``int`` would take Arabic-Indic digits, "0o77", "+77", "0_77")."""
    if not text or not set(text) <= set("01234567"):
        raise _argument_error(f"not an octal mask: {text!r}")
    value = int(text, 8)
    from . import options

    try:
        return int(options.check("umask", value))
    except DaemonOptionError as exc:
        raise _argument_error(f"{exc.reason}: {text!r}") from None


def not_empty(text: str) -> str:
    """A path or name option: "" is refused (it silently meant the current
    directory, no log, or the default name)."""
    if not text:
        raise _argument_error("must not be empty: ''")
    return text


def user_argument(text: str) -> str:
    """``--user``: a name or uid. No user's name holds ':' (passwd's separator), so
    ``nobody:nogroup`` is start-stop-daemon's ``--chuid USER:GROUP``: said so."""
    user, colon, group = not_empty(text).partition(":")
    if colon:
        instead = f"--user {user} --group {group}" if user and group else "--user and --group"
        raise _argument_error(f"no user name holds ':' (for USER:GROUP give {instead}): {text!r}")
    return text


def _number_of_seconds(text: str) -> float:
    """ASCII only: ``float`` takes Arabic-Indic or fullwidth digits too; and no "_"
    (``float`` reads "1_0" as 10, which ``--umask`` and the pid options refuse)."""
    try:
        if not text.isascii() or "_" in text:
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise _argument_error(f"not a number of seconds: {text!r}") from None


def seconds(text: str) -> float:
    """A timeout in seconds, more than 0; ``inf`` (or any wait past ~24 days) waits forever."""
    value = _number_of_seconds(text)
    if not value > 0:  # NaN too
        raise _argument_error(f"must be more than 0: {text!r}")
    return value


def seconds_or_zero(text: str) -> float:
    """A wait in seconds, 0 (no wait, the default it stands for) or more, and finite:
    ``--ready-after`` (``inf`` would be a start that never ends)."""
    value = _number_of_seconds(text)
    if not 0 <= value < float("inf"):  # NaN too
        raise _argument_error(f"must be 0 or more, and finite: {text!r}")
    return value


def retry_argument(text: str) -> str:
    """``--retry``: a schedule ``signals.parse_retry`` takes, kept as typed (a number
    alone is read with ``--signal``, which may come after it)."""
    from .signals import parse_retry

    try:
        parse_retry(text, signal.SIGTERM, 1.0)
    except ValueError as exc:
        raise _argument_error(str(exc)) from None
    return text


def stop_signal_and_steps(
    args: argparse.Namespace, retry_flag: str
) -> tuple[int, tuple[tuple[int, float], ...] | None]:
    """The stop's signal (``--signal``, else SIGTERM) and its ``retry_flag`` schedule's
    steps (None without one). ``CommandError`` (usage) when ``--signal`` names
    another signal than the schedule's first: a schedule names its own."""
    signum = signal.SIGTERM if args.signal is None else args.signal
    if args.retry is None:
        return signum, None
    from .control import KILL_TIMEOUT
    from .signals import parse_retry, signal_name

    steps = parse_retry(args.retry, signum, KILL_TIMEOUT)
    if args.signal is not None and args.signal != steps[0][0]:
        name = signal_name(args.signal).removeprefix("SIG")
        message = f"--signal {name}: {retry_flag} {args.retry} names its own signals"
        raise CommandError(message, exit_code=2)
    return steps[0][0], steps


def limit_argument(text: str) -> tuple[str, tuple[int, int]]:
    """``--limit NAME=VALUE``: (name, (soft, hard))."""
    from .limits import parse_limit

    try:
        return parse_limit(text)
    except ValueError as exc:
        raise _argument_error(str(exc)) from None


def nice_argument(text: str) -> int:
    """``--nice N``: a niceness from -20 to 19."""
    from .limits import parse_nice

    try:
        return parse_nice(text)
    except ValueError as exc:
        raise _argument_error(str(exc)) from None


def signal_argument(text: str) -> int:
    """A signal by name (TERM, SIGTERM) or number."""
    from .signals import parse_signal

    try:
        return parse_signal(text)
    except ValueError as exc:
        raise _argument_error(str(exc)) from None


def kill_style(words: Sequence[str], values: Collection[str] = ()) -> list[str]:
    """``words`` with the signal of a ``signal`` command typed as kill takes it
    (``-HUP``, ``-9``, ``-SIGRTMIN+1``) given without its dash, which argparse
    would take for an option. Only when the command (the first word that is no
    option nor the value of one of ``values``, the options that take one) is
    ``signal``, and only the first word after it that is neither an option's
    value nor comes after a positional one: ``ctl status signal --timeout -5``
    (a program named signal) and ``signal -p -HUP`` keep their words."""
    from .signals import parse_signal

    def takes_value(word: str) -> bool:  # argparse takes "--pid" for "--pidfile" too
        if word in values:
            return True
        return word.startswith("--") and len(word) > 2 and any(o.startswith(word) for o in values)

    words = list(words)
    end = words.index("--") if "--" in words else len(words)
    index, after_option = 0, False
    while index < end:  # the command
        word = words[index]
        if after_option or word.startswith("-"):
            after_option = not after_option and takes_value(word)
            index += 1
            continue
        break
    if index >= end or words[index] != "signal":
        return words
    after_option = False
    for at in range(index + 1, end):
        word = words[at]
        if after_option:  # an option's value, even "-HUP"
            after_option = False
        elif takes_value(word):
            after_option = True
        elif not word.startswith("-"):
            break  # the signal, typed without a dash: nothing to do
        elif len(word) > 1 and not word.startswith("--"):
            try:
                parse_signal(word[1:])
            except ValueError:
                # -BOGUS, -99: a signal mistyped (no option is in capitals), which
                # argparse names as one; -h, -x: an option, or one it names
                if not (word[1].isascii() and (word[1].isupper() or word[1].isdigit())):
                    continue
            words[at] = word[1:]
            break
    return words


def add_stop_options(
    parser: argparse.ArgumentParser,
    timeout_flag: str,
    timeout: float | None = None,
    signum: int = signal.SIGTERM,
    retry_flag: str | None = None,
) -> None:
    """The stop options (``dest`` stop_timeout and signal, and with ``retry_flag``,
    retry: start-stop-daemon's schedule, as typed); ``timeout`` defaults to
    ``control.STOP_TIMEOUT``."""
    if timeout is None:
        from .control import STOP_TIMEOUT

        timeout = STOP_TIMEOUT
    waits: Any = parser
    if retry_flag is not None:
        waits = parser.add_mutually_exclusive_group()
        waits.add_argument(
            retry_flag,
            metavar="SCHEDULE",
            type=retry_argument,
            dest="retry",
            help="start-stop-daemon's --retry: TERM/30/QUIT/5/KILL/5 (a signal, seconds to "
            "wait for the exit, the next signal...), or N for SIG/N/KILL/N",
        )
    waits.add_argument(
        timeout_flag,
        metavar="S",
        type=seconds,
        default=timeout,
        dest="stop_timeout",
        help=f"seconds before SIGKILL (default: {timeout:g})",
    )
    parser.add_argument(
        "--signal",
        "-s",
        metavar="SIG",
        type=signal_argument,
        default=None if retry_flag is not None else signum,  # then: stop_signal_and_steps
        help=f"signal to stop with, by name (TERM, SIGTERM) or number "
        f"(default: {signal.Signals(signum).name[3:]})",
    )
