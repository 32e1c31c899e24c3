"""``Service``: a daemon program with ``start``, ``stop``, ``restart``, ``status``,
``run``, ``reload``, ``force-reload``, ``try-restart`` and ``signal`` commands (an LSB
init script's), built on ``DaemonContext`` and its start-up handoff.

Subclass it, override ``run()``, and call ``MyService(pidfile=...).main()``.
``start`` returns 0 once ``run()``'s context is open (or once ``run()`` calls
``self.notify_ready()``, with ``ready_on_open = False``); a failure before that
is printed in the terminal and the command exits 1.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from types import FunctionType
from typing import TYPE_CHECKING

from . import control
from .commands import (
    add_stop_options,
    kill_style,
    prepare_exit,
    report_stop,
    run_command,
    say,
    say_started,
    signal_argument,
)
from .context import DaemonContext
from .control import ServiceState
from .errors import CommandError, DaemonError, DaemonOptionError
from .options import OPTIONS, check_handler
from .options import check as check_option

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from types import TracebackType
    from typing import Any, NoReturn

    from .control import ServiceStatus, StopResult

__all__ = ["CONTEXT_OPTIONS", "Service"]

# DaemonContext options a Service takes as constructor arguments or class
# attributes (declared in options.OPTIONS). detach_process and pidfile are
# the Service's own business.
CONTEXT_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.service)
_STREAM_MODES = ("stdin", "stdout", "stderr")
_MISSING = object()


class _ServiceContext(DaemonContext):
    """A DaemonContext that tells its Service when the launcher sees the daemon ready."""

    def __init__(self, service: Service, **options: Any) -> None:
        self._service = service
        super().__init__(**options)

    def launcher_ready(self, daemon_pid: int) -> None:
        super().launcher_ready(daemon_pid)
        self._service.launcher_ready(daemon_pid)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """``run()`` failed before ready: the launcher prints one line, so the
        traceback goes to the daemon's stderr (the ``stderr`` file, if any), where
        an uncaught exception's would, before the daemon ends without cleanup."""
        if exc_value is not None and self.launcher_waiting:
            _write_traceback(self._service.display_name, exc_value)
        super().__exit__(exc_type, exc_value, traceback)


def _write_traceback(name: str, exc: BaseException) -> None:
    if isinstance(exc, SystemExit):  # sys.exit("msg"): no traceback, as Python prints none
        return
    import traceback

    try:
        sys.stderr.write(f"{name} failed to start (pid {os.getpid()}):\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
    except Exception:  # a closed or broken stderr: the launcher's line still says it
        pass


def _check_stop_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DaemonOptionError("stop_timeout", value, "must be a number of seconds > 0")
    return float(value)


def _check_pidfile(value: Any) -> str:
    """A path naming a file: "" or "." would make the working directory the pidfile,
    and bytes are no name to show."""
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise DaemonOptionError("pidfile", value, "must be a path (str or os.PathLike of str)")
    if not path:
        raise DaemonOptionError("pidfile", value, "must be a non-empty str path")
    if os.path.basename(path) in ("", ".", ".."):
        raise DaemonOptionError("pidfile", value, "must name a file, not a directory")
    return path


def _check_signal(option: str, value: Any) -> int:
    """A signal number, or a name ("TERM", "SIGTERM") as the command line takes it."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DaemonOptionError(option, value, "must be a signal number or name")
    try:
        return control.parse_signal(value)
    except ValueError as exc:
        raise DaemonOptionError(option, value, str(exc)) from None


class Service:
    """Base class of a daemon program; override ``run()``.

    Options are constructor arguments or class attributes (the constructor
    wins): ``pidfile`` (a path, required), ``name`` (for messages; default the
    pidfile's name without extension), ``stop_timeout``, ``stop_signal`` and
    ``reload_signal``, and the ``DaemonContext`` options in ``CONTEXT_OPTIONS``. ``stdin``,
    ``stdout`` and ``stderr`` may also be paths, opened (for appending) in the
    foreground. A string handler in ``signal_map`` names a method of the
    Service (or, failing that, of the context, such as ``"terminate"``); the
    ``reload`` command is for a Service whose ``signal_map`` handles
    ``reload_signal`` (SIGHUP): ``{signal.SIGHUP: "reload"}``.

    To be ready only once ``run()`` has done its set-up, set ``ready_on_open =
    False`` and call ``self.notify_ready()`` from ``run()``.
    """

    pidfile: str | os.PathLike[str] | None = None
    name: str | None = None
    ready_on_open: bool = True
    stop_timeout: float = control.STOP_TIMEOUT
    # A name ("TERM", "SIGHUP") is taken too, and made a number by the constructor.
    stop_signal: int | str = signal.SIGTERM
    reload_signal: int | str = signal.SIGHUP  # what the reload command sends

    def __init__(
        self,
        pidfile: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        stop_timeout: float | None = None,
        stop_signal: int | str | None = None,
        reload_signal: int | str | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(CONTEXT_OPTIONS))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unknown options: {', '.join(unknown)}")
        if pidfile is not None:
            self.pidfile = pidfile
        if self.pidfile is None:
            raise TypeError(f"{type(self).__name__} needs a pidfile (argument or class attribute)")
        # Absolute: the daemon changes directory before it takes the pidfile.
        self._pidfile = os.path.abspath(_check_pidfile(self.pidfile))
        if name is not None:
            self.name = name
        self.stop_timeout = _check_stop_timeout(
            self.stop_timeout if stop_timeout is None else stop_timeout
        )
        self.stop_signal = _check_signal(
            "stop_signal", self.stop_signal if stop_signal is None else stop_signal
        )
        self.reload_signal = _check_signal(
            "reload_signal", self.reload_signal if reload_signal is None else reload_signal
        )
        self._options = options
        for option in CONTEXT_OPTIONS:  # a bad value fails here, not at every command
            value = self._option(option)
            if value is not _MISSING and not (
                option in _STREAM_MODES and isinstance(value, (str, os.PathLike))
            ):
                check_option(option, value)
        self._check_handler_names()
        self._notified = False
        self.context: DaemonContext | None = None

    # -- to override ---------------------------------------------------------

    def run(self) -> None:
        """The daemon's work. Runs inside the open context; SIGTERM raises
        ``daemonctx.Terminated`` here (a ``SystemExit`` with status 0)."""
        raise NotImplementedError(f"{type(self).__name__}.run()")

    def launcher_ready(self, daemon_pid: int) -> None:
        """Runs in the launching process once the daemon is ready: says so."""
        say_started(self.display_name, daemon_pid)

    # -- from run() ----------------------------------------------------------

    def notify_ready(self) -> None:
        """Report that the daemon is up (with ``ready_on_open = False``): ``start``
        returns 0 now; under systemd, READY=1 is sent. Harmless when called again."""
        if self.context is None:
            raise RuntimeError("notify_ready() is for run(), inside the open context")
        self._notified = True
        self.context.notify_ready()

    # -- configuration -------------------------------------------------------

    @property
    def display_name(self) -> str:
        return self.name or control.default_name(self.pidfile_path)

    def _option(self, option: str) -> Any:
        if option in self._options:
            return self._options[option]
        return getattr(self, option, _MISSING)

    @property
    def pidfile_path(self) -> str:
        """The pidfile as seen from here (inside ``chroot_directory`` when there is one)."""
        root = self._option("chroot_directory")
        if root is _MISSING or root is None:
            return self._pidfile
        return os.path.join(os.fspath(root), self._pidfile.lstrip("/"))

    def _resolve(self, option: str, value: Any) -> Any:
        if option in _STREAM_MODES and isinstance(value, (str, os.PathLike)):
            if option != "stdin":  # created as root: the same rules as daemonctx --stdout
                umask = self._option("umask")
                return control.open_output(value, option, 0 if umask is _MISSING else umask)
            try:
                return open(value, "rb", buffering=0)  # the daemon's for its life
            except OSError as exc:
                raise CommandError(f"cannot open {option} {value}: {exc.strerror}") from exc
        if option == "signal_map" and value is not None:
            return {number: self._handler(handler) for number, handler in value.items()}
        return value

    def _check_handler_names(self) -> None:
        """A handler named by a string must be something the Service has, or a
        method of its context (``"terminate"``): a typo fails here, not at a start."""
        signal_map = self._option("signal_map")
        if signal_map is _MISSING or signal_map is None:
            return
        for number, handler in signal_map.items():  # checked: numbers, and names or callables
            if (
                isinstance(handler, str)
                and self._static_attribute(handler) is None
                and not callable(getattr(_ServiceContext, handler, None))
            ):
                kind = type(self).__name__
                raise DaemonOptionError(
                    "signal_map",
                    {int(number): handler},
                    f"{kind} has no method {handler!r}, nor has its DaemonContext",
                )
            if isinstance(handler, str) and isinstance(
                self._static_attribute(handler), (FunctionType, staticmethod, classmethod)
            ):  # its signature too: def reload(self) would kill the daemon at its reload
                check_handler(int(number), getattr(self, handler), handler)

    def _handler(self, handler: Any) -> Any:
        """A handler named by a string is a Service method if it has one."""
        if isinstance(handler, str) and callable(getattr(self, handler, None)):
            return getattr(self, handler)
        return handler

    def make_context(self, detach: bool) -> DaemonContext:
        """The ``DaemonContext`` for ``start`` (``detach=True``) or ``run``.

        Opens the stream files here, in the foreground. In the foreground
        (``run``), unset ``stdout``/``stderr`` keep ours, for journald and
        debugging.
        """
        from .pidfile import PIDLockFile

        options: dict[str, Any] = {}
        for option in CONTEXT_OPTIONS:
            value = self._option(option)
            if value is not _MISSING:
                options[option] = self._resolve(option, value)
        if not detach:
            options.setdefault("stdout", sys.stdout)
            options.setdefault("stderr", sys.stderr)
        return _ServiceContext(
            self, pidfile=PIDLockFile(self._pidfile), detach_process=detach, **options
        )

    # -- the commands --------------------------------------------------------

    def _serve(self, context: DaemonContext) -> None:
        """Open ``context`` (nothing may hold the pidfile) and call ``run()`` in it."""
        control.check_not_running(self.pidfile_path, self.display_name)
        try:
            context.open()  # the launcher leaves here: exit 0 once ready, or raise
        except DaemonError as exc:
            raise control.startup_failure(self.display_name, exc) from exc
        self.context = context
        with context:  # already open: an exception before ready is reported to the launcher
            self.run()
            if context.detach_process and not (context.ready_on_open or self._notified):
                raise RuntimeError("run() returned without calling self.notify_ready()")

    def start(self) -> None:
        """Start the daemon. The launching process exits 0 once it is ready, or
        this raises ``CommandError``; in the daemon, returns when ``run()`` does."""
        self._serve(self.make_context(detach=True))

    def run_in_foreground(self) -> None:
        """The ``run`` command: the same context without detaching, then ``run()``."""
        self._serve(self.make_context(detach=False))

    def status(self) -> ServiceStatus:
        return control.status(self.pidfile_path)

    def stop(self, timeout: float | None = None, signal: int | None = None) -> StopResult:
        """Stop the daemon and wait until it has exited (see ``control.stop``)."""
        return control.stop(
            self.pidfile_path,
            timeout=self.stop_timeout if timeout is None else timeout,
            signal=self._stop_number if signal is None else signal,
        )

    def restart(self, timeout: float | None = None, signal: int | None = None) -> None:
        """Stop the daemon if it runs (saying so), wait until it is gone, then start.

        The new context is made and checked first (every check of its ``open()``
        but "the pidfile is held"), so a bad option fails before the stop and the
        running daemon is left alone.
        """
        context = self.make_context(detach=True)
        try:
            context.check(pidfile_held_ok=True)
        except DaemonError as exc:
            raise control.startup_failure(self.display_name, exc) from exc
        self._report_stop(self.stop(timeout, signal), timeout)
        self._serve(context)

    def _report_stop(self, result: StopResult, timeout: float | None) -> None:
        report_stop(result, self.display_name, timeout or self.stop_timeout)

    @property
    def can_reload(self) -> bool:
        """Whether the daemon handles ``reload_signal``: ``signal_map`` maps it to
        a callable, or names one the Service has (``"reload"``, a method or an
        attribute); not one of ``Service``'s own commands (``"stop"``), nor the
        context's (``"terminate"``, unless the Service has its own)."""
        signal_map = self._option("signal_map")
        if not isinstance(signal_map, Mapping):
            return False
        handler = signal_map.get(self._reload_number)
        if isinstance(handler, str):  # found as _handler does, on the instance first
            found = self._static_attribute(handler)
            if found is None or found is Service.__dict__.get(handler):  # Service's own command
                return False
            return callable(getattr(found, "__func__", found))  # a staticmethod on 3.9 too
        return callable(handler)

    def _static_attribute(self, name: str) -> Any:
        """``name`` in the instance's or a class's ``__dict__``, without running a
        property or a descriptor (``can_reload`` is asked by the help)."""
        if name in vars(self):
            return vars(self)[name]
        for klass in type(self).__mro__:
            if name in klass.__dict__:
                return klass.__dict__[name]
        return None

    def send_signal(self, signum: int) -> int:
        """Send ``signum`` to the daemon, without waiting; return its pid. Only the
        process proven to hold the pidfile's lock gets it (``control.send_signal``):
        ``CommandError`` with LSB code 7 when the daemon is not running."""
        return control.send_signal(self.pidfile_path, signum, self.display_name)

    def reload_daemon(self) -> int:
        """The ``reload`` command (a Service's own ``reload`` is often its handler,
        as in ``{signal.SIGHUP: "reload"}``): send ``reload_signal`` to the daemon;
        return its pid. ``CommandError`` with LSB code 3 ("unimplemented") when
        ``can_reload`` is false: the signal would kill a daemon that does not
        handle it."""
        if not self.can_reload:
            from .signals import signal_name

            raise CommandError(
                f"{self.display_name} cannot reload: its signal_map has no handler for"
                f" {signal_name(self._reload_number)}",
                exit_code=control.UNIMPLEMENTED,
            )
        return self.send_signal(self._reload_number)

    @property
    def _stop_number(self) -> int:
        return _check_signal("stop_signal", self.stop_signal)  # a number since __init__

    @property
    def _reload_number(self) -> int:
        return _check_signal("reload_signal", self.reload_signal)

    # -- the command line ----------------------------------------------------

    def build_parser(self) -> argparse.ArgumentParser:
        """The command line: start, stop, restart, status, run, reload, force-reload,
        try-restart, signal."""
        import argparse

        from .signals import signal_name

        parser = argparse.ArgumentParser(description=type(self).__doc__)
        commands = parser.add_subparsers(dest="action", metavar="COMMAND", required=True)
        commands.add_parser("start", help=f"start {self.display_name} as a daemon")
        stop = commands.add_parser("stop", help="stop the daemon and wait until it is gone")
        add_stop_options(stop, "--timeout", self.stop_timeout, self._stop_number)
        restart = commands.add_parser("restart", help="stop the daemon if it runs, then start")
        add_stop_options(restart, "--timeout", self.stop_timeout, self._stop_number)
        commands.add_parser("status", help="tell whether the daemon runs (LSB exit codes)")
        commands.add_parser("run", help="run in the foreground, with the pidfile")
        reload_signal = signal_name(self._reload_number)
        reload_help = (
            f"send {reload_signal}: reload the configuration"
            if self.can_reload
            else f"refused: signal_map has no handler for {reload_signal}"
        )
        commands.add_parser("reload", help=reload_help)
        force = commands.add_parser(
            "force-reload",
            help="reload if the daemon handles it, else restart; only if it runs",
        )
        add_stop_options(force, "--timeout", self.stop_timeout, self._stop_number)
        try_restart = commands.add_parser("try-restart", help="restart only if it runs")
        add_stop_options(try_restart, "--timeout", self.stop_timeout, self._stop_number)
        kill = commands.add_parser("signal", help="send a signal to the daemon, without waiting")
        kill.add_argument(
            "signal",
            metavar="SIGNAL",
            type=signal_argument,
            help="by name (HUP, SIGHUP, RTMIN+2) or number",
        )
        return parser

    def dispatch(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv`` (default ``sys.argv[1:]``), run the command; return the exit status."""
        parser = self.build_parser()
        words = sys.argv[1:] if argv is None else argv
        args = parser.parse_args(kill_style(words) if "signal" in words else words)
        return run_command(parser.prog, lambda: self._command(args))

    def _command(self, args: argparse.Namespace) -> int:
        action = args.action
        if action == "status":
            found = self.status()
            try:
                say(found.message(self.display_name))
            except CommandError as exc:  # not shown: LSB's "status unknown", not 1 ("dead")
                exc.exit_code = 4
                raise
            return found.exit_code
        if action in ("force-reload", "try-restart"):
            # LSB: restart (or reload) only what runs; nothing to do is success
            found = self.status()
            if found.state is ServiceState.UNKNOWN:
                raise CommandError(found.message(self.display_name), exit_code=found.exit_code)
            if not (found.running or found.holders):
                say(f"{self.display_name} is not running")
                return 0
            action = "reload" if action == "force-reload" and self.can_reload else "restart"
        if action == "stop":
            self._report_stop(self.stop(args.stop_timeout, args.signal), args.stop_timeout)
        elif action == "restart":
            self.restart(args.stop_timeout, args.signal)
        elif action == "start":
            self.start()
        elif action == "reload":
            self._say_sent(self._reload_number, self.reload_daemon())
        elif action == "signal":
            self._say_sent(args.signal, self.send_signal(args.signal))
        else:
            self.run_in_foreground()
        return 0

    def _say_sent(self, signum: int, pid: int) -> None:
        from .signals import signal_name

        say(f"sent {signal_name(signum)} to {self.display_name} (pid {pid})")

    def main(self, argv: Sequence[str] | None = None) -> NoReturn:
        """Run the command in ``argv`` (default ``sys.argv[1:]``) and exit with its status."""
        try:
            status = self.dispatch(argv)
        finally:
            prepare_exit()
        sys.exit(status)
