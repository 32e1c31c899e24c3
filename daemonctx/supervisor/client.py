"""The control socket's client: ``Client``, one connection to a supervisor.

Every command the supervisor knows has a method (``status``, ``start``, ...),
``call`` runs one the application registered, and ``request`` any of them
raw. The connection is opened at the first request and kept for the next
ones; requests are numbered, and each answer must carry its request's id.

Errors: ``SupervisorNotRunning`` (exit code 3) when nothing listens on the
socket, ``CommandError`` for the other connection failures (4: permission
denied; 1: closed, no answer in time), ``protocol.RemoteError`` when the
supervisor answered with an error (its ``type`` is one of
``protocol.ERROR_TYPES``), and ``protocol.ProtocolError`` (type
``BAD_RESPONSE``) for an answer that is not one. After a connection failure,
a timeout or a bad answer the connection is closed (a late answer would be
taken for the next one's); the next request opens a new one.

Kept light, since ``daemonctx ctl`` pays its imports on every run: socket,
time, errno and the protocol and results modules, nothing else at import time.
"""

from __future__ import annotations

import errno
import os
import re  # loaded with .protocol already
import socket
import sys
import time

from ..errors import CommandError
from .protocol import (
    BAD_RESPONSE,
    NOT_PLAIN,
    ProtocolError,
    encode_names_request,
    encode_request,
    parse_response,
    success_result,
)
from .results import CommandInfo, OutputLine, ProgramInfo, RunInfo, Tail

TYPE_CHECKING = False  # typing costs ctl milliseconds at run time
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

__all__ = ["MAX_RESPONSE", "Client", "SupervisorNotRunning", "programs_of"]

MAX_RESPONSE = 64 * 1024 * 1024
"""The longest response line a client reads, in bytes: past it, the answer is refused."""

_NOT_LISTENING = frozenset({errno.ENOENT, errno.ECONNREFUSED})
#: The longest timeout taken as one (a year): socket.settimeout fails past time_t.
_LONGEST = 365 * 24 * 3600.0
#: How far past its deadline a read may wait rather than set a new timeout.
_SLACK = 0.001
_DENIED = frozenset({errno.EACCES, errno.EPERM})
_CLOSED = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED})


class SupervisorNotRunning(CommandError):
    """Nothing listens on the control socket: no file there, or a stale one.
    Exit code 3, LSB's "not running". ``holder`` is the pid of a supervisor that
    holds the socket's lock though nothing listens (starting, or its socket file
    was removed and nothing can reach it), if any."""

    def __init__(self, path: str, exit_code: int = 3, holder: int | None = None) -> None:
        message = f"supervisor is not running (nothing listens on {path})"
        if holder is not None:
            message = (
                f"nothing listens on {path}, though supervisor (pid {holder}) holds its lock: "
                f"it is starting, or its socket file was removed (then stop it: kill {holder})"
            )
        super().__init__(message, exit_code)
        self.path = path
        self.holder = holder

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.exit_code, self.holder))


def _unreachable(path: str) -> int | None:
    """A supervisor that holds the lock of the control socket at ``path`` though
    nothing listens there (its socket file was removed; or it is starting): its
    pid, or None (nobody holds it, or only a dead supervisor's guard)."""
    from .guard import lock_holder  # on this error only

    try:
        holder = lock_holder(path)
    except OSError:
        return None
    return holder[0] if holder is not None and not holder[1] else None


# What reading a result that is not as the protocol says raises: a key missing, a
# wrong type, a number no int holds (1e400 is read as infinity: OverflowError).
#: Not blank space (what bytes.strip() takes away): where a line after blank ones starts.
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")

_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """An int or a float (a ``numbers.Real``), not a bool nor a string "5"."""
    if isinstance(value, (int, float)):
        return not isinstance(value, bool)
    import numbers  # rarely: a Fraction, a numpy number

    return isinstance(value, numbers.Real)


def _asks_itself(sock: socket.socket) -> bool:
    """The supervisor at the other end of ``sock`` is this process, and this code
    runs in its loop: a request would wait for itself, for ever."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)  # pid, uid, gid
    if int.from_bytes(creds[:4], sys.byteorder, signed=True) != os.getpid():
        return False
    from .loop import running_in_this_thread  # loaded already: it serves in this process

    return running_in_this_thread()


def _seconds(value: float) -> str:
    return f"{value:g} s"


class Client:
    """A connection to the supervisor listening on the Unix socket ``path``.

    ``timeout`` bounds each request, connecting included, in seconds (None:
    wait as long as the supervisor takes; ``start`` and ``stop`` answer once
    the programs are done). Use it as a context manager, or ``close()`` it.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = None) -> None:
        self.path = os.fspath(path)
        if timeout is not None and (not _is_number(timeout) or not timeout > 0):  # NaN too
            raise ValueError(f"timeout: a number of seconds more than 0, or None, not {timeout!r}")
        # A timeout no socket takes (1e10 s, inf: past time_t) is as good as none
        self.timeout = None if timeout is not None and not timeout < _LONGEST else timeout
        self._sock: socket.socket | None = None
        self._buffer: bytes | bytearray = b""
        self._next_id = 1

    # -- the connection -----------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        sock, self._sock = self._sock, None
        self._buffer = b""
        if sock is not None:
            sock.close()

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException as exc:
            sock.close()
            raise self._connect_error(exc) from None
        if _asks_itself(sock):
            sock.close()
            raise CommandError(
                f"cannot ask the supervisor on {self.path} from a command it runs:"
                " it answers only once the command returns"
            )
        self._sock = sock
        return sock

    def _connect_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, socket.timeout):
            return self._no_answer()
        if not isinstance(exc, OSError):
            return exc
        if exc.errno in _NOT_LISTENING:
            return SupervisorNotRunning(self.path, holder=_unreachable(self.path))
        if exc.errno in _DENIED:
            return CommandError(f"permission denied: cannot connect to {self.path}", exit_code=4)
        if exc.errno == errno.EAGAIN:  # a Unix socket's full backlog, without blocking
            return CommandError(f"the supervisor accepts no more connections on {self.path}")
        return CommandError(f"cannot connect to {self.path}: {exc.strerror or exc}")

    def _no_answer(self) -> CommandError:
        shown = "forever" if self.timeout is None else _seconds(self.timeout)
        return CommandError(f"no answer from the supervisor within {shown}")

    def _fail(self, error: BaseException) -> BaseException:
        """Close the connection (out of step now) and return ``error`` to raise."""
        self.close()
        return error

    # -- requests -------------------------------------------------------------------------

    def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Send ``command`` with ``args``, wait for its answer, and return its result.

        Raises ``protocol.RemoteError`` when the supervisor answered with an error.
        """
        return self._exchange(command, args)[0]

    def _exchange(
        self, command: str, args: dict[str, Any] | None, before: Any = None
    ) -> tuple[Any, socket.socket]:
        """``request``, returning the socket too; ``before(sock)`` runs once connected."""
        request_id = self._next_id
        if type(args) is dict and len(args) == 1 and type(args.get("names")) is list:
            line = encode_names_request(request_id, command, args["names"])
        else:
            line = encode_request(request_id, command, args)  # ValueError/TypeError: the caller's
        self._next_id += 1
        sock = self._sock or self._connect()
        if before is not None:
            before(sock)
        try:
            # One deadline for the send and the whole answer. Each settimeout is a
            # system call: only when the timeout changed, or the time left did.
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            if sock.gettimeout() != self.timeout:
                sock.settimeout(self.timeout)
            sock.sendall(line)
            response_line = self._read_line(sock, deadline)
        except socket.timeout:
            raise self._fail(self._no_answer()) from None
        except OSError as exc:
            if exc.errno in _CLOSED:
                raise self._fail(CommandError("the supervisor closed the connection")) from None
            raise self._fail(CommandError(f"control socket {self.path}: {exc}")) from None
        except BaseException:  # Ctrl-C, ...: the answer may still come, to the next request
            self.close()
            raise
        result = success_result(response_line, request_id)  # the usual answer, in one pass
        if result is not NOT_PLAIN:
            return result, sock
        try:
            response = parse_response(response_line)
        except ProtocolError as exc:
            error = ProtocolError(BAD_RESPONSE, f"bad answer from the supervisor: {exc.message}")
            raise self._fail(error) from None
        # An error the server could not tie to a request has no id; anything else must match.
        if response.id != request_id and not (response.id is None and not response.ok):
            error = ProtocolError(
                BAD_RESPONSE,
                f"bad answer from the supervisor: to request {response.id!r}, not {request_id}",
            )
            raise self._fail(error)
        return response.unwrap(), sock

    def _read_line(self, sock: socket.socket, deadline: float | None) -> bytes:
        """The next answer's line. An answer that comes in one recv (the usual one)
        stays bytes, never copied; a longer one grows a bytearray, and only what came
        since the last look is searched for its newline: linear in its size (the
        whole buffer searched after each recv: 64 MiB with no newline took 20 s),
        blank lines too (each cut off the rest: 16 MiB of them took 14 s)."""
        buffer = self._buffer
        if not buffer:  # the usual answer: one line, whole in one read
            buffer = self._buffer = self._receive(sock, deadline)
            if buffer[-1] == 10 and buffer.find(b"\n") == len(buffer) - 1 and not buffer.isspace():
                self._buffer = b""
                return buffer[:-1]
        start = 0  # where the next line begins: blank lines are stepped over, not cut off
        searched = 0  # no newline before this offset
        while True:
            newline = buffer.find(b"\n", searched)
            if newline >= 0:
                line = buffer[start:newline]
                start = searched = newline + 1
                if line.strip():
                    rest = buffer[start:]
                    self._buffer = rest if type(rest) is bytes else bytes(rest)
                    return line if type(line) is bytes else bytes(line)  # a bytearray's
                # a blank line: the whole run of blank space after it at once, in C
                found = _NOT_BLANK.search(buffer, start)
                start = searched = len(buffer) if found is None else found.start()
                continue
            if start:  # the blank lines read: dropped once, before more comes
                buffer = buffer[start:]
                start = 0
            searched = len(buffer)
            if searched > MAX_RESPONSE:
                raise self._fail(
                    ProtocolError(
                        BAD_RESPONSE, f"the supervisor's answer is over {MAX_RESPONSE} bytes"
                    )
                )
            data = self._receive(sock, deadline)
            if not buffer:
                buffer = data
            elif type(buffer) is bytes:
                buffer = bytearray(buffer) + data
            else:
                buffer += data
            self._buffer = buffer

    def _receive(self, sock: socket.socket, deadline: float | None) -> bytes:
        """What comes next on ``sock``, by ``deadline``; never empty."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            current = sock.gettimeout()
            if current is None or left < current - _SLACK:  # the send took a while
                sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            raise self._fail(CommandError("the supervisor closed the connection"))
        return data

    def _programs(self, command: str, args: dict[str, Any]) -> list[ProgramInfo]:
        try:
            return programs_of(command, self._exchange(command, args)[0])
        except ProtocolError as exc:
            raise self._fail(exc) from None

    # -- the commands -------------------------------------------------------------------

    def ping(self) -> str:
        """``"pong"``: the supervisor answers."""
        result = self.request("ping")
        if not isinstance(result, str):
            raise self._fail(_bad_result("ping", result))
        return result

    def status(self, *names: str) -> list[ProgramInfo]:
        """The programs ``names`` (a program with instances: each of them; none or
        ``"all"``: every program)."""
        return self._programs("status", {"names": list(names)})

    def start(self, *names: str) -> list[ProgramInfo]:
        """Start ``names`` (or ``"all"``); returns once each runs or a start failed."""
        return self._programs("start", {"names": list(names)})

    def stop(self, *names: str) -> list[ProgramInfo]:
        """Stop ``names`` (or ``"all"``); returns once no process is left."""
        return self._programs("stop", {"names": list(names)})

    def restart(self, *names: str) -> list[ProgramInfo]:
        """Stop then start ``names`` (or ``"all"``); returns once each runs or a start failed."""
        return self._programs("restart", {"names": list(names)})

    def signal(self, signal: int | str, *names: str) -> list[ProgramInfo]:
        """Send ``signal`` (a number, or a name such as ``"HUP"``) to ``names``."""
        return self._programs("signal", {"signal": signal, "names": list(names)})

    def reload(self, dry_run: bool = False) -> dict[str, Any]:
        """Re-read the supervisor's file and change only what changed (with
        ``dry_run``: only say what would change). The plan: ``added``,
        ``removed``, ``changed`` (each ``{"name", "fields", "restart"}``),
        ``supervisor`` (its keys that changed), ``applied``."""
        result = self.request("reload", {"dry_run": dry_run})
        if not isinstance(result, dict) or "changed" not in result:
            raise self._fail(_bad_result("reload", result))
        return result

    def why(self, *names: str) -> list[tuple[ProgramInfo, list[RunInfo]]]:
        """The last runs of each of ``names``, oldest first, with its status."""
        result = self.request("why", {"names": list(names)})
        try:
            return [
                (
                    ProgramInfo.from_json(item["status"]),
                    [RunInfo.from_json(run) for run in item["runs"]],
                )
                for item in result["programs"]
            ]
        except _MALFORMED:
            raise self._fail(_bad_result("why", result)) from None

    def tail(
        self, name: str, lines: int = 10, after: int | None = None, of: int | None = None
    ) -> Tail:
        """The last ``lines`` lines ``name`` wrote, stdout and stderr in the order
        the supervisor read them, and a cursor: ``lines, cursor = client.tail(...)``.
        With ``after`` (a cursor from an earlier call), the lines written since,
        waiting for one if there is none: ``tail -f`` is a loop of such calls, and
        the result's ``missed`` says whether some were lost meanwhile. With ``of``
        (an earlier result's ``instance``), from that instance only: once a reload
        removed it, the result's ``ended`` says so (a cursor of the old instance
        means nothing to one added anew under its name)."""
        args: dict[str, Any] = {"names": [name], "lines": lines}
        if after is not None:
            args["after"] = after
        if of is not None:
            args["of"] = of
        result = self.request("tail", args)
        try:
            found = [OutputLine.from_json(line) for line in result["lines"]]
            cursor = result["cursor"]
            instance = result.get("instance")  # an older supervisor gives none
            ended = result.get("ended")
            missed = result.get("missed", False)
            if not (
                _is_whole(cursor)
                and (instance is None or _is_whole(instance))
                and (ended is None or isinstance(ended, str))
                and isinstance(missed, bool)
            ):
                raise TypeError("a field of another type")
            return Tail(found, cursor, missed, instance, ended)
        except _MALFORMED:
            raise self._fail(_bad_result("tail", result)) from None

    def reopen(self, *names: str) -> list[ProgramInfo]:
        """Reopen the log files of ``names`` (none: every program's), after
        logrotate moved them."""
        return self._programs("reopen", {"names": list(names)})

    def commands(self) -> list[CommandInfo]:
        """The commands the supervisor knows: its own and the application's."""
        result = self.request("commands")
        try:
            return [CommandInfo.from_json(item) for item in result["commands"]]
        except _MALFORMED:
            raise self._fail(_bad_result("commands", result)) from None

    def call(self, command: str, /, **args: Any) -> Any:
        """Run ``command``, one the application registered, with keyword ``args``;
        its return value."""
        return self.request(command, args)

    def shutdown(self, wait: bool = True) -> int:
        """Ask the supervisor to stop every program and exit; return its pid.

        With ``wait``, return once that process has exited (within the
        client's timeout, else ``CommandError``). The process is found from the
        connection itself (SO_PEERCRED) and pinned with a pidfd before the
        request is sent, so a reused pid cannot be mistaken for it.
        """
        if not wait:
            return self._shutdown_pid(self.request("shutdown"))
        pinned: list[_Pinned] = []
        try:
            result, sock = self._exchange(
                "shutdown", None, before=lambda sock: pinned.append(_Pinned.peer(sock))
            )
            pid = self._shutdown_pid(result)
            process = pinned[0]
            if process.gone:  # the process that listen()ed is gone: it forked since
                pinned[0] = process = _Pinned.of(pid)
            if not process.wait(self.timeout, sock):
                shown = "forever" if self.timeout is None else _seconds(self.timeout)
                raise CommandError(f"supervisor (pid {pid}) has not exited within {shown}")
            return pid
        finally:
            for process in pinned:
                process.close()
            self.close()

    def _shutdown_pid(self, result: Any) -> int:
        pid = result.get("pid") if isinstance(result, dict) else None
        if type(pid) is not int or pid <= 0:
            raise self._fail(_bad_result("shutdown", result))
        return pid


def programs_of(command: str, result: Any) -> list[ProgramInfo]:
    """The programs in ``result``, the raw result of ``command`` (status, start,
    stop, restart or signal); ``ProtocolError`` when it is not such a result."""
    try:
        return [ProgramInfo.from_json(item) for item in result["programs"]]
    except _MALFORMED:
        raise _bad_result(command, result) from None


def _bad_result(command: str, result: Any) -> ProtocolError:
    shown = repr(result)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ProtocolError(BAD_RESPONSE, f"bad answer from the supervisor to {command}: {shown}")


class _Pinned:
    """A process to wait for: a pidfd on it, or (no pidfds here) its pid to poll;
    ``pid`` None when it cannot be seen from here (another pid namespace), and
    ``gone`` when it had exited already."""

    def __init__(self, pid: int | None, pidfd: int | None = None, gone: bool = False) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.gone = gone

    @classmethod
    def peer(cls, sock: socket.socket) -> _Pinned:
        """The process that listen()ed on the other end of ``sock``."""
        import struct

        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        return cls.of(pid) if pid > 0 else cls(None)

    @classmethod
    def of(cls, pid: int) -> _Pinned:
        try:
            return cls(pid, os.pidfd_open(pid))
        except ProcessLookupError:
            return cls(pid, gone=True)
        except (AttributeError, OSError):  # no pidfd_open (Python, kernel, seccomp): poll
            return cls(pid)

    def wait(self, timeout: float | None, sock: socket.socket) -> bool:
        """Wait until the process has exited; False after ``timeout`` seconds."""
        if self.gone:
            return True
        if self.pidfd is not None:
            from ..pidfd import wait_exit

            return wait_exit(self.pidfd, timeout)
        if self.pid is None:  # unknown: its end closes the connection
            return _wait_closed(sock, timeout)
        return _poll_gone(self.pid, timeout)

    def close(self) -> None:
        pidfd, self.pidfd = self.pidfd, None
        if pidfd is not None:
            os.close(pidfd)


def _wait_closed(sock: socket.socket, timeout: float | None) -> bool:
    """Read ``sock`` until its end of file; False after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sock.settimeout(left)
            if not sock.recv(65536):
                return True
    except socket.timeout:
        return False
    except OSError:  # reset: closed too
        return True


def _poll_gone(pid: int, timeout: float | None) -> bool:
    """Poll /proc until ``pid`` is gone or a zombie; False after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                if file.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
