"""Exceptions raised by daemonctx.

The names python-daemon users already catch (``DaemonError``,
``DaemonOSEnvironmentError``, ``DaemonProcessDetachError``) are kept, with the
same bases, so ``except`` clauses written for python-daemon keep working.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class DaemonError(Exception):
    """Base class of every error daemonctx raises."""


class DaemonOptionError(DaemonError, ValueError):
    """A ``DaemonContext`` option has a bad type or value.

    Raised in the foreground, before any fork. ``option`` and ``value`` name
    the culprit so that programs can report it without parsing the message.
    """

    def __init__(self, option: str, value: Any, reason: str, item: int | None = None) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        #: For a list option (``files_preserve``), which item ``value`` is, from 1.
        self.item = item
        if item is None:
            super().__init__(f"{option}={_shown(option, value)}: {reason}")
        else:
            super().__init__(f"{option} item {item} ({value!r}): {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (multiprocessing, pytest-forked)
        return (type(self), (self.option, self.value, self.reason, self.item))


def _shown(option: str, value: Any) -> str:
    """``value`` as the user wrote it: a umask in octal, a signal map's numbers by
    their names (``{SIGHUP: 'relaod'}``, not ``{1: 'relaod'}``)."""
    if option == "umask" and type(value) is int:
        return f"{value:#o}"
    if option == "signal_map" and type(value) is dict:
        import signal  # only on this error's path: the start-up path stays without enums

        def key(number: Any) -> str:
            try:
                return signal.Signals(number).name
            except (TypeError, ValueError):
                return repr(number)

        return "{" + ", ".join(f"{key(k)}: {v!r}" for k, v in value.items()) + "}"
    return repr(value)


class DaemonOSEnvironmentError(DaemonError, OSError):
    """An operating-system step of daemonization failed (chroot, setuid, ...)."""


class DaemonProcessDetachError(DaemonError, OSError):
    """Forking or starting a new session failed while detaching."""


class Terminated(SystemExit):
    """Raised by ``DaemonContext.terminate`` when a stop signal arrives.

    It is a ``SystemExit`` whose exit status is 0, because a requested stop is
    a clean stop (systemd counts anything else as a failure), while ``str()``
    still says which signal asked for it.
    """

    def __init__(self, signal_number: int) -> None:
        super().__init__(0)
        self.signal_number = signal_number

    def __str__(self) -> str:
        import signal  # here: importing errors must not load signal's enums (the guard)

        try:
            name = signal.Signals(self.signal_number).name
        except ValueError:
            name = str(self.signal_number)
        return f"Terminating on signal {name}"


class Interrupted(KeyboardInterrupt):
    """A signal that ends a waiting launcher (SIGTERM, SIGHUP, ...), raised where
    Ctrl-C raises ``KeyboardInterrupt``, so a start cut short is cleaned up the same
    way: the starting daemon is stopped. ``run_command`` exits 128 + ``signum``, as a
    process killed by it would."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class RemoteTraceback(Exception):
    """Carries the daemon's traceback text as the ``__cause__`` of a startup error,
    so an uncaught error prints both tracebacks (as ``concurrent.futures`` does)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\nTraceback in the daemon:\n{self.text.rstrip()}"


class DaemonStartupError(DaemonError):
    """The daemon failed, or died, before it reported ready.

    Raised in the launching process. ``remote_type`` and ``remote_message``
    are the daemon's exception type name and message (None when it died
    without a word), ``remote_errno`` its ``errno`` when it was an ``OSError``
    (a caller can tell ENOENT from EACCES), ``remote_traceback`` its traceback
    text, ``daemon_pid`` its pid when known.
    """

    def __init__(
        self,
        message: str,
        *,
        remote_type: str | None = None,
        remote_message: str | None = None,
        remote_traceback: str | None = None,
        daemon_pid: int | None = None,
        remote_errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.daemon_pid = daemon_pid
        self.remote_errno = remote_errno
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)


class DaemonReadyTimeout(DaemonStartupError):
    """The daemon did not report ready within ``ready_timeout`` seconds."""


class CommandError(DaemonError):
    """A command (``daemonctx start``, ``Service.stop``, ...) could not be carried out.

    ``exit_code`` is the LSB code the command exits with: 1 generic, 4 permission
    denied or an untrusted path. The message is one line naming what the user gave;
    ``details``, lines printed under it, each indented on its own (a program's last
    words of standard error, after the message saying it failed to start).
    """

    def __init__(self, message: str, exit_code: int = 1, *, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.exit_code), {"details": self.details})


ControlError = CommandError  # its name before 0.2, kept for code that catches it


def one_line(text: str, keep: str = "") -> str:
    """``text`` made safe to show on one line of a terminal: a newline, or any
    character a terminal acts on (an escape sequence, a backspace), in a path or
    text that came from elsewhere, is written as its escape (``\\n``, ``\\x1b``).
    A byte that was not UTF-8 (decoded with ``surrogateescape``, as a command line
    from /proc is) is written ``\\xff``, as systemctl writes it. The characters in
    ``keep`` (a tab, for ``ctl tail``) stay as they are."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escaped(c) for c in text)


def escaped_traceback(error: BaseException) -> str:
    """``error``'s traceback for a log: each line escaped (``one_line``) and
    indented, so that text in it that came from elsewhere (a client's request,
    a program's name) can neither act on a terminal nor pass for a log line."""
    import traceback

    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return "\n".join(f"  {one_line(line)}" for line in "".join(lines).splitlines())


def _escaped(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return repr(c)[1:-1]
