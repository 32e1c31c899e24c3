"""``daemonctx ctl``: control a running supervisor through its control socket.

``daemonctx ctl (--control SOCK | --config FILE) [--json] [--timeout S] COMMAND``,
COMMAND one of status, start, stop, restart, signal, ping, shutdown, commands
and call. The work is done by ``daemonctx.supervisor.client``, imported when a
command runs (not when another subcommand's parser is built); this module only
parses and reports.

Exit codes: ``status`` 0 when every program it shows is running, else 3 (4
when it cannot tell: no answer in time, a bad answer);
``start``/``restart`` 0 when every program ended running, else 1; ``stop`` 0
when every one is stopped, else 1; 3 when the supervisor is not running; for an
error the supervisor answered, 4 permission denied, 2 bad arguments or an
unknown command, 1 otherwise; 2 for a bad ``--config`` file or ``call`` JSON (4
for one this user may not read).
"""

from __future__ import annotations

from ..commands import not_empty, say, seconds, signal_argument, warn
from ..errors import CommandError, one_line

TYPE_CHECKING = False  # typing costs ctl milliseconds at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any, Callable

    from ..supervisor.client import Client
    from ..supervisor.results import ProgramInfo

__all__ = ["COMMANDS", "QUICK_TIMEOUT", "add_commands", "cmd_ctl"]

COMMANDS = (
    "status",
    "reload",
    "why",
    "tail",
    "reopen",
    "start",
    "stop",
    "restart",
    "signal",
    "ping",
    "shutdown",
    "commands",
    "call",
)

QUICK_TIMEOUT = 30.0
"""The default ``--timeout`` of status, ping and commands, which answer at once;
the others wait as long as the supervisor takes (a start waits for the programs)."""
_QUICK = frozenset({"status", "ping", "commands", "why", "reload"})

# The exit code of an error the supervisor answered, by its type (1 for the others).
_REMOTE_EXIT = {"permission-denied": 4, "bad-arguments": 2, "unknown-command": 2}

_ACTIVE = frozenset({"running", "starting"})


# -- the parser ---------------------------------------------------------------


def add_commands(subparsers: Any) -> None:
    """Add ``ctl`` and its commands to ``subparsers``."""
    from argparse import SUPPRESS  # imported already: the parser is being built

    summary = "control a running supervisor through its control socket"
    ctl: argparse.ArgumentParser = subparsers.add_parser(
        "ctl",
        help=summary,
        description=summary + ".",
        usage="daemonctx ctl (--control SOCK | --config FILE) [--json] [--timeout S] "
        "COMMAND [ARG...]",
        epilog="Exit codes: status NAME...: 0 every one running, 3 not, 4 a NAME is no "
        "program; status: 0 every "
        "program as it should be (running, stopped on purpose, or a one-shot done), 3 not; "
        "start, restart: 0 every program running (a one-shot: done), 1 not; stop: 0 every "
        "program stopped; 3 the supervisor is not running; 4 permission denied; 2 bad "
        "arguments.",
    )
    ctl.set_defaults(handler=cmd_ctl, takes_command=False)
    where = ctl.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--control", "-c", metavar="SOCK", type=not_empty, help="the supervisor's control socket"
    )
    where.add_argument(
        "--config",
        "-f",
        metavar="FILE",
        type=not_empty,
        help="the supervisor's TOML file (its control socket)",
    )
    json_help = "print the supervisor's answer as JSON"
    timeout_help = (
        f"seconds to wait for the answer (default: {QUICK_TIMEOUT:g} for status, ping "
        "and commands; as long as it takes for the others)"
    )
    ctl.add_argument("--json", action="store_true", help=json_help)
    ctl.add_argument("--timeout", metavar="S", type=seconds, default=None, help=timeout_help)
    commands = ctl.add_subparsers(
        dest="ctl_command", metavar="COMMAND", required=True, prog="daemonctx ctl [options]"
    )

    def command(
        name: str, summary: str, run: Callable[[Client, argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=summary, description=summary
        )
        parser.set_defaults(ctl_run=run)
        # Also after the command (`ctl status --json`); absent there, they leave
        # what came before it alone (SUPPRESS: no default of their own).
        parser.add_argument("--json", action="store_true", default=SUPPRESS, help=json_help)
        parser.add_argument(
            "--timeout", metavar="S", type=seconds, default=SUPPRESS, help=timeout_help
        )
        return parser

    status = command("status", "show programs (all of them without NAME)", _status)
    status.add_argument("names", nargs="*", metavar="NAME")
    for name, summary in (
        ("start", "start programs and wait until they run (or a start failed)"),
        ("stop", "stop programs and wait until no process is left"),
        ("restart", "stop then start programs, and wait until they run (or a start failed)"),
    ):
        parser = command(name, summary, _change)
        parser.add_argument("names", nargs="+", metavar="NAME", help="a program, or all")
    signal = command("signal", "send a signal to programs", _signal)
    signal.add_argument("signal", metavar="SIG", type=signal_argument, help="HUP, SIGHUP or 1")
    signal.add_argument("names", nargs="+", metavar="NAME", help="a program, or all")
    reload = command("reload", "re-read the file: change only what changed", _reload)
    reload.add_argument(
        "--dry-run", action="store_true", help="only print what would change, change nothing"
    )
    why = command("why", "the last runs of programs: how each ended and what followed", _why)
    why.add_argument("names", nargs="+", metavar="NAME", help="a program, or all")
    tail = command("tail", "the last lines a program wrote (stdout and stderr)", _tail)
    tail.add_argument("name", metavar="NAME")
    tail.add_argument(
        "-n", "--lines", type=_count, default=10, metavar="N", help="how many (default: 10)"
    )
    tail.add_argument("-f", "--follow", action="store_true", help="then print new lines")
    reopen = command("reopen", "reopen log files (after logrotate moved them)", _reopen)
    reopen.add_argument("names", nargs="*", metavar="NAME")
    command("ping", "check that the supervisor answers", _ping)
    command("shutdown", "stop every program and the supervisor, and wait until it exits", _shutdown)
    command("commands", "list the commands the supervisor knows", _commands)
    call = command("call", "run a command the application registered", _call)
    call.add_argument("command_name", metavar="COMMAND")
    call.add_argument(
        "arguments", metavar="JSON", nargs="?", help='its arguments, a JSON object: {"n": 2}'
    )


def _count(text: str) -> int:
    """``tail -n``: a number of lines, 0 or more, in ASCII digits (``int`` takes
    Arabic-Indic digits, " 5", "+5" and "1_0" too)."""
    from argparse import ArgumentTypeError

    if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        raise ArgumentTypeError(f"must be 0 or more: {text!r}")
    if not (text.isascii() and text.isdigit()):
        raise ArgumentTypeError(f"not a number of lines: {text[:40]!r}")
    from ..supervisor.protocol import MAX_TAIL_LINES

    if len(text) > 6 or int(text) > MAX_TAIL_LINES:
        raise ArgumentTypeError(f"must be {MAX_TAIL_LINES} or less: {text[:40]!r}")
    return int(text)


# -- without argparse ------------------------------------------------------------

_QUICK_FORMS = {"status": True, "ping": False}  # command: whether it takes NAMEs


def quick(argv: Sequence[str]) -> Callable[[], int] | None:
    """``ctl status|ping`` parsed by hand, without argparse (whose import, with the
    help formatter's, is a tenth of the command's time): a script may poll
    ``ctl status`` every second. Anything else, help and mistakes included,
    returns None: the full parser then takes it, with its messages."""
    from types import SimpleNamespace

    values: dict[str, Any] = {"control": None, "config": None, "json": False, "timeout": None}
    words = list(argv)
    while words and words[0].startswith("-"):
        word = words.pop(0)
        name, equals, value = word.partition("=")
        if name == "--json" and not equals:
            values["json"] = True
            continue
        key = {"--control": "control", "-c": "control", "--config": "config", "-f": "config"}
        key["--timeout"] = "timeout"
        if name not in key:
            return None
        if not equals:
            if not words:
                return None
            value = words.pop(0)
        if not value:  # "": the full parser refuses it
            return None
        values[key[name]] = value
    if not words or words[0] not in _QUICK_FORMS:
        return None
    command, names = words[0], words[1:]
    if "--json" in names:  # after the command too: `ctl status --json`
        values["json"] = True
        names = [name for name in names if name != "--json"]
    if (values["control"] is None) == (values["config"] is None):
        return None
    if any(name.startswith("-") for name in names) or (names and not _QUICK_FORMS[command]):
        return None
    if values["timeout"] is not None:
        try:  # as commands.seconds reads it: the full parser says why it does not
            if not values["timeout"].isascii() or "_" in values["timeout"]:
                return None
            values["timeout"] = float(values["timeout"])
        except ValueError:
            return None
        if not values["timeout"] > 0:
            return None
    run = _status if command == "status" else _ping
    args = SimpleNamespace(ctl_command=command, ctl_run=run, names=names, **values)
    return lambda: cmd_ctl(args)  # type: ignore[arg-type]


# -- the commands ---------------------------------------------------------------


def cmd_ctl(args: argparse.Namespace) -> int:
    from ..supervisor.client import Client
    from ..supervisor.protocol import ProtocolError, RemoteError, RequestError

    timeout = args.timeout
    if timeout is None and args.ctl_command in _QUICK:
        timeout = QUICK_TIMEOUT
    run: Callable[[Client, argparse.Namespace], int] = args.ctl_run
    _check_names(args)
    # status: what would be a generic failure (no answer in time, a bad answer) is
    # LSB's "status unknown", 4
    unknown = 4 if args.ctl_command == "status" else 1
    client = Client(_control_path(args), timeout=timeout)
    try:
        if args.config is not None:
            client = _reach(client, args.config)
        return run(client, args)
    except RemoteError as exc:
        raise CommandError(exc.message, _REMOTE_EXIT.get(exc.type, unknown)) from None
    except ProtocolError as exc:
        raise CommandError(exc.message, unknown) from None
    except RequestError as exc:  # too long to send, or not JSON: nothing was sent
        raise CommandError(str(exc), exit_code=2) from None
    except CommandError as exc:
        if exc.exit_code == 1 and unknown != 1:
            exc.exit_code = unknown
        raise
    finally:
        client.close()


def _reach(client: Client, config: str) -> Client:
    """``client`` connected to the socket ``config`` names or, when nothing listens
    there, a client of the supervisor of that file on its own socket (``control``
    edited since: a supervisor takes a new one only at a restart), said on stderr.
    The search reads /proc: on this failure path only."""
    from ..supervisor.client import SupervisorNotRunning

    try:
        client._connect()
        return client
    except SupervisorNotRunning as exc:
        if exc.holder is not None:  # a supervisor holds this socket's lock: not another's
            raise
        not_running = exc
    from ..supervisor.locate import supervisors_of

    found = supervisors_of(config)
    if not found:
        raise not_running
    new = client.path
    pids = ", ".join(str(supervisor.pid) for supervisor in found)
    if len(found) == 1 and found[0].control is not None:
        old = found[0].control
        warn(
            f"{config} names control {new}, not in effect until a restart:"
            f" supervisor (pid {pids}) of that file listens on {old}"
        )
        return type(client)(old, timeout=client.timeout)
    if len(found) == 1:
        where = "its control socket cannot be told from here: give it with --control"
    else:
        sockets = ", ".join(str(supervisor.control) for supervisor in found)
        where = f"they listen on {sockets}: give one with --control"
    runs = (
        "supervisors (pid {}) of that file run"
        if len(found) > 1
        else "supervisor (pid {}) of that file runs"
    )
    raise CommandError(
        f"nothing listens on {new}, the control {config} names, but {runs.format(pids)}"
        f" (control edited since? a new one takes effect at a restart); {where}"
    ) from None


def _check_names(args: argparse.Namespace) -> None:
    """Refuse a NAME that is not UTF-8 (``$'\\xff'``), shown as typed: no program
    has such a name, and the supervisor would show it as Python keeps it."""
    names = list(getattr(args, "names", None) or ())
    if getattr(args, "name", None) is not None:
        names.append(args.name)
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            import os

            typed = repr(os.fsencode(name))[1:]
            raise CommandError(f"not a program name: {typed} (not UTF-8)", exit_code=2) from None


def _control_path(args: argparse.Namespace) -> str:
    if args.control is not None:
        return str(args.control)
    from ..supervisor.config import ConfigError, UnreadableFileError, load_control

    try:
        return load_control(args.config)
    except ConfigError as exc:  # LSB 4 for a file we may not read
        code = 4 if isinstance(exc, UnreadableFileError) else 2
        raise CommandError(str(exc), exit_code=code) from None


def _print_json(value: Any) -> None:
    import json

    say(json.dumps(value))


def _status(client: Client, args: argparse.Namespace) -> int:
    from ..supervisor.protocol import RemoteError  # loaded already, with the client

    try:
        programs = _show(client, args, "status", {"names": args.names})
    except RemoteError as exc:  # LSB's "status unknown", as systemctl's for no such unit
        if exc.type == "not-found":
            raise CommandError(exc.message, exit_code=4) from None
        raise
    if args.names and args.names != ["all"]:  # LSB: is it running?
        return 0 if all(program.running for program in programs) else 3
    # A health check: every program as it should be (running, or not on purpose)
    return 0 if all(program.healthy for program in programs) else 3


def _change(client: Client, args: argparse.Namespace) -> int:
    programs = _show(client, args, args.ctl_command, {"names": args.names})
    if args.ctl_command == "stop":
        return 0 if all(program.stopped for program in programs) else 1
    # started: running, or a one-shot that has done its job (exited with success)
    done = (
        program.running or (program.healthy and program.state == "exited") for program in programs
    )
    return 0 if all(done) else 1


def _signal(client: Client, args: argparse.Namespace) -> int:
    _show(client, args, "signal", {"signal": args.signal, "names": args.names})
    return 0


def _show(
    client: Client, args: argparse.Namespace, command: str, arguments: dict[str, Any]
) -> list[ProgramInfo]:
    from ..supervisor.client import programs_of

    result = client.request(command, arguments)
    programs = programs_of(command, result)
    if args.json:
        _print_json(result)
    elif not programs:
        say("no programs")
    else:
        # The answer's text is shown, never acted on: whatever listens on the
        # socket (another user's process) may have sent escapes, or a newline.
        names = [one_line(program.name) for program in programs]
        width = max(len(name) for name in names)
        for name, program in zip(names, programs):
            say(f"{name:<{width}}  {one_line(describe(program))}")
    return programs


def describe(program: ProgramInfo) -> str:
    """What ``status`` prints after a program's name: its ``text``, and while it
    runs its restarts and how its last run ended."""
    text = program.text
    if program.dropped:
        text += f" [{program.dropped:,} bytes of output dropped]".replace(",", " ")
    if program.state not in _ACTIVE:
        return text
    if program.restarts > 0:
        text += f", {program.restarts} restart{'' if program.restarts == 1 else 's'}"
    last = program.last_exit
    if last is not None and last.text and last.text not in program.text:
        from ..supervisor.results import format_ago

        text += f"; last: {last.text} {format_ago(last.ago)}"
    return text


def _reload(client: Client, args: argparse.Namespace) -> int:
    plan = client.reload(dry_run=args.dry_run)
    if args.json:
        _print_json(plan)
        return 0
    try:
        lines = _plan_lines(plan)
    except (KeyError, TypeError, AttributeError):  # not a plan: one line, no traceback
        from ..supervisor.client import _bad_result

        raise _bad_result("reload", plan) from None
    for line in lines or ["nothing changed"]:
        say(one_line(f"would {line}" if args.dry_run and lines else line))
    return 0


def _plan_lines(plan: dict[str, Any]) -> list[str]:
    lines = [f"add {name}" for name in plan.get("added", [])]
    lines += [f"remove {name}" for name in plan.get("removed", [])]
    for change in plan.get("changed", []):
        how = "restart" if change.get("restart") else "live, no restart"
        lines.append(f"change {change['name']}: {', '.join(change['fields'])} ({how})")
    lines += [f"change [supervisor] {key} (live)" for key in plan.get("supervisor", [])]
    lines += [f"change [group.{name}] (live)" for name in plan.get("groups", [])]
    return lines


def _clock(when: float | None) -> str:
    import time

    if when is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"


def _why(client: Client, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(client.request("why", {"names": args.names}))
        return 0
    # a program's stderr and texts: no escape sequence acts
    for program, runs in client.why(*args.names):
        say(one_line(f"{program.name}: {describe(program)}"))
        if not runs:
            say("  no runs yet")
        for run in runs:
            if run.error is not None:
                say(one_line(f"  {_clock(run.started)}  {run.error}; then {run.decision}"))
                continue
            ready = f", ready {_clock(run.ready)}" if run.ready is not None else ", never ready"
            head = f"  {_clock(run.started)}  pid {run.pid}{ready}"
            if run.ended is None:
                say(f"{head}, running")
                continue
            ended = run.exit.text if run.exit is not None else "ended"
            say(one_line(f"{head}, {ended} at {_clock(run.ended)}"))
            if run.stopped_by:
                steps = f" ({', '.join(run.steps)})" if run.steps else ""
                say(one_line(f"    stopped by {run.stopped_by}{steps}"))
            if run.decision:
                say(one_line(f"    then: {run.decision}"))
            for line in run.stderr:
                say(one_line(f"    stderr: {line}"))
    return 0


def _tail(client: Client, args: argparse.Namespace) -> int:
    import json
    import sys

    # On a terminal, a program's escape sequences are shown, not acted on (as
    # journalctl does); into a pipe or a file its lines go as they are, as tail(1)'s.
    keep = "\t" if sys.stdout.isatty() else None

    def shown(text: str) -> str:
        return text if keep is None else one_line(text, keep)

    tail = client.tail(args.name, args.lines)
    lines, cursor = tail
    if args.follow and client.timeout is not None:
        from ..supervisor.protocol import TAIL_WAIT

        client.timeout += TAIL_WAIT  # a follow waits that long for a line, then answers
    if args.follow:
        _end_with_the_reader(sys.stdout)
    while True:
        for line in lines:
            if not say(json.dumps(line.to_json()) if args.json else shown(line.text)):
                return 0  # nobody reads any more (`ctl tail -f web | head`): done, as tail(1)
        if not args.follow:
            return 0
        try:
            tail = client.tail(args.name, 0, after=cursor, of=tail.instance)
            lines, cursor = tail
            if tail.ended:  # its instance was removed: a new one's cursors are not its
                ended = one_line(tail.ended)  # the answer's: whoever listens there chose it
                print(f"daemonctx: {ended}: no more output to follow", file=sys.stderr)
                return 0
            if tail.missed:  # said on stderr: the lines on stdout stay the program's
                print(f"daemonctx: some lines of {args.name} were lost: they came faster"
                      " than this follows them (the supervisor keeps output_buffer bytes"
                      " of output)", file=sys.stderr, flush=True)  # fmt: skip
        except CommandError as exc:
            if "closed the connection" not in str(exc):
                raise
            if _stale_socket(client.path):  # an orderly end removes it: it was killed
                raise CommandError(
                    f"{exc}, and its socket file {client.path} remains (killed?):"
                    " no more output to follow"
                ) from None
            # The supervisor shut down: no more output will come.
            print(f"daemonctx: {exc}: no more output to follow", file=sys.stderr)
            return 0


def _end_with_the_reader(stdout: Any) -> None:
    """``tail -f`` into a pipe: exit 0 as soon as the pipe's reader has exited
    (``| grep -m1 ready``), as GNU tail does, not at the next line, which may
    never come. The follow waits in a long poll of the socket, so a thread
    blocks in poll() on the pipe and ends the process when it reports POLLERR.
    ``_thread``, not ``threading``: it is loaded already (ctl's start-up time)."""
    import _thread
    import os
    import select
    import signal
    import stat

    try:
        fd = stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):  # a terminal or a file: no reader to lose
            return
    except (OSError, ValueError, AttributeError):  # no real stdout (replaced, closed)
        return

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR and POLLHUP come unasked
        poller.poll()  # until the reader has gone
        os._exit(0)  # "done", as when a line finds the pipe closed; stdout's lines are flushed

    # Started with every signal blocked: Ctrl-C must reach the main thread, whose wait it ends.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        _thread.start_new_thread(watch, ())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


def _reopen(client: Client, args: argparse.Namespace) -> int:
    _show(client, args, "reopen", {"names": args.names})
    return 0


def _ping(client: Client, args: argparse.Namespace) -> int:
    answer = client.ping()
    if args.json:
        _print_json(answer)
    else:
        say(one_line(answer))
    return 0


def _shutdown(client: Client, args: argparse.Namespace) -> int:
    pid = client.shutdown(wait=True)
    if _stale_socket(client.path):  # an orderly end removes it: it was killed meanwhile
        raise CommandError(
            f"supervisor (pid {pid}) is gone, but did not finish its shutdown (killed?):"
            f" its socket file {client.path} remains; its guard killed its programs"
        )
    if args.json:
        _print_json({"pid": pid})
    else:
        say(f"supervisor (pid {pid}) stopped every program and exited")
    return 0


def _stale_socket(path: str) -> bool:
    """A socket file at ``path`` that nothing listens on, or only a dying process
    (SIGKILLed: the kernel closes its descriptors one by one, and a connection
    made meanwhile is reset when its listener's turn comes)."""
    import os
    import socket

    if not os.path.lexists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        sock.settimeout(0.5)  # a supervisor says nothing first: silence is a live one
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except OSError:
            return False  # another supervisor listens there by now


def _commands(client: Client, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(client.request("commands"))
        return 0
    found = client.commands()
    heads = [one_line(f"{info.name}{info.signature}") for info in found]
    width = max((len(head) for head in heads), default=0)
    for head, info in zip(heads, found):
        say(f"{head:<{width}}  {one_line(info.doc)}" if info.doc else head)
    return 0


def _call(client: Client, args: argparse.Namespace) -> int:
    from ..supervisor.protocol import COMMAND_NAME

    name = args.command_name
    if not COMMAND_NAME.fullmatch(name):
        raise CommandError(f"call: not a command name: {name!r}", exit_code=2)
    result = client.request(name, _call_arguments(args.arguments))
    if isinstance(result, str) and not args.json:
        import sys

        # Its text, lines and all; on a terminal its escape sequences are shown, not
        # acted on (as tail's), since whatever answers on the socket chose them.
        say(one_line(result, "\n\t") if sys.stdout.isatty() else result)
    else:
        _print_json(result)
    return 0


def _call_arguments(text: str | None) -> dict[str, Any]:
    """``call``'s JSON argument: an object (``{}`` without one)."""
    if text is None:
        return {}
    import json

    def refuse(typed: str) -> float:
        raise ValueError(f"{typed} is no JSON number")

    def finite(typed: str) -> float:
        value = float(typed)
        if value - value != 0.0:  # 1e999 is read as infinity, which JSON cannot write
            raise ValueError(f"number out of range: {typed[:24]}")
        return value

    def integer(typed: str) -> int:
        try:
            return int(typed)
        except ValueError:  # past Python's limit on digits
            raise ValueError(f"number too long: {typed[:20]}... ({len(typed)} digits)") from None

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) != len(pairs):  # the protocol refuses them (JSON leaves them open)
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise CommandError(
                        f"call: {key!r} is given twice in {shown!r}: give it once", exit_code=2
                    )
                seen.add(key)
        return value

    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        value = json.loads(
            text,
            parse_constant=refuse,
            parse_float=finite,
            parse_int=integer,
            object_pairs_hook=unique,
        )
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise CommandError(f"call: not JSON: {shown!r} ({reason})", exit_code=2) from None
    except RecursionError:
        reason = "nested too deep"
        raise CommandError(f"call: not JSON: {shown!r} ({reason})", exit_code=2) from None
    if not isinstance(value, dict):
        raise CommandError(f"call: the arguments must be a JSON object: {text!r}", exit_code=2)
    return value
