"""The start-up pipe between the launching process and the daemon.

The launcher forks, then blocks reading this pipe, and leaves only when the
daemon says it is ready (systemd daemon(7), steps 14-15). A failure in the
daemon comes back as an error record and is raised in the launcher, in the
terminal that started it; a daemon that dies without a word is seen as
end-of-file. The pattern is CPython's ``subprocess`` error pipe.

Records are ``b"<KIND> <pid> <length>\\n"`` followed by ``length`` bytes of
payload: ``PID`` (the daemon exists; its start time), ``READY``, ``EXEC`` (end-of-file after
it means a successful exec, which closed the pipe), ``LEFT`` (its context
closed before ready) and ``ERROR`` whose payload is a small JSON object.
Nothing is unpickled; sizes are bounded.
"""

from __future__ import annotations

import os
import sys
import time

from .errors import DaemonReadyTimeout, DaemonStartupError
from .process import GRACE, dup_above_standard, finite_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

MAX_PAYLOAD = 64 * 1024  # what the launcher accepts at most
NAG_AFTER = 3.0  # seconds of silence from the daemon before the launcher says what it waits for
_READY_STEP = "report ready"  # what it waits for when the daemon names no step (or an empty one)
# Two processes write records (the first child sends PID): each record must be
# one atomic write, at most PIPE_BUF bytes (4096 on Linux, 512 by POSIX).
_ATOMIC_WRITE = 4096 if sys.platform.startswith("linux") else 512


# The daemon's Handoff while it has not reported ready (one a process: a daemon
# opens one context), and the pid of that daemon. See Handoff.keep_from_children.
_KEPT: Handoff | None = None
_KEPT_BY = 0
_KEPT_FILE = (0, 0)  # the pipe's (st_dev, st_ino)
_FORK_HOOK = False


def _drop_in_child() -> None:
    """After ``os.fork`` in a process the daemon forked: let go of its end of the
    pipe. The pipe is the daemon's; a child holding it would keep the launcher from
    seeing the end-of-file that a successful exec means (``notify_ready_on_exec``).
    Only when that number still names the pipe: a thread with a descriptor table of
    its own (the supervisor's spawner) forks a child whose number is another file."""
    handoff = _KEPT
    if handoff is None or handoff.write_fd is None or os.getpid() == _KEPT_BY:
        return
    fd = handoff.write_fd
    handoff.write_fd = None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == _KEPT_FILE:
            os.close(fd)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class Handoff:
    """Both ends of the start-up pipe; each process closes the end it does not use."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()  # close-on-exec on both ends
        self.read_fd = self._lift(read_fd)
        self.write_fd: int | None = self._lift(write_fd)
        self.daemon_fd = self.write_fd  # its number in the daemon, for the launcher to name
        self.daemon_pid: int | None = None  # learnt by the launcher from the first record
        # A pidfd opened the moment the pid is learnt: it names the daemon even if
        # the pid is reused later (when the daemon dies and a child keeps the pipe).
        self.daemon_pidfd: int | None = None
        self.daemon_gone = False  # already when its pid was learnt: no pidfd to open

    @staticmethod
    def _lift(fd: int) -> int:
        high = dup_above_standard(fd)
        if high != fd:
            os.close(fd)
        return high

    # -- daemon side ---------------------------------------------------------

    def in_daemon(self) -> None:
        """Called in the child after fork: the launcher's end is not ours."""
        os.close(self.read_fd)

    def keep_from_children(self) -> None:
        """Called in the daemon, once forked: a process it forks later with
        ``os.fork`` (a worker, ``multiprocessing``) closes its copy of the daemon's
        end at once. A program it runs has none already (close-on-exec)."""
        global _KEPT, _KEPT_BY, _KEPT_FILE, _FORK_HOOK
        if self.write_fd is None:
            return
        st = os.fstat(self.write_fd)
        _KEPT, _KEPT_BY, _KEPT_FILE = self, os.getpid(), (st.st_dev, st.st_ino)
        if not _FORK_HOOK:
            os.register_at_fork(after_in_child=_drop_in_child)
            _FORK_HOOK = True

    def _send(self, kind: str, payload: bytes = b"", pid: int | None = None) -> None:
        if self.write_fd is None:
            return
        header = f"{kind} {pid or os.getpid()} {len(payload)}\n".encode()
        try:
            _write_all(self.write_fd, header + payload)
        except OSError:  # the launcher is gone (killed): nobody left to tell
            pass

    def send_pid(self, pid: int) -> None:
        """Sent by the first child, which learns the daemon's pid from fork(), so
        the daemon itself loses no time; the launcher needs it to stop the daemon
        after a timeout or Ctrl-C. With the daemon's start time, read while it
        cannot be reaped (it is our child): the launcher may read the record once
        the daemon is dead and its pid another process's, and tells them apart."""
        started = _start_ticks(pid)
        self._send("PID", b"" if started is None else str(started).encode(), pid=pid)

    def send_exec(self) -> None:
        """The next successful exec means ready: the launcher then takes the
        pipe closing (it is close-on-exec) as the ready signal."""
        self._send("EXEC")

    def send_step(self, what: bytes) -> None:
        """Say what the daemon does next, for the launcher to tell the user if it
        takes long ("take its pidfile /run/app.pid"): prepared before the fork.
        Empty: that step is done, the launcher waits for ready again."""
        self._send("STEP", what[:512])

    def send_ready(self) -> None:
        """Tell the launcher we are up, and let go of the pipe."""
        self._send("READY")
        self.close()

    def send_left(self) -> None:
        """The daemon's context closes before it was ready (its ``with`` block
        ended): say so and let go of the pipe, for the launcher to tell this from
        a pipe the daemon's own code closed (``os.closerange``)."""
        self._send("LEFT")
        self.close()

    def send_error(self, exc: BaseException) -> None:
        """Report ``exc`` (type, message, traceback text) and let go of the pipe."""
        import json
        import traceback

        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        try:
            message = str(exc)
        except Exception:  # a broken __str__: its type and traceback still go
            message = "<exception str() failed>"  # what traceback prints for it
        try:
            last = "".join(traceback.format_exception_only(kind, exc))
            every_frame = traceback.format_tb(exc.__traceback__)
        except Exception:  # a module out of reach (chroot, privileges): type and message
            last, every_frame = f"{name}: {message}\n", []
        if len(last) > 512:
            last = last[:512] + "...\n"
        frames = every_frame
        name = _middle_cut(name, 200)  # a class made with type("E" * 5000, ...)
        record: dict[str, object] = {"type": name, "message": "", "traceback": ""}
        cause = exc if isinstance(exc, OSError) else exc.__cause__  # (a pidfile's LockFailed)
        if isinstance(cause, OSError) and isinstance(cause.errno, int):
            record["errno"] = cause.errno  # the launcher can tell ENOENT from EACCES
        limit = _ATOMIC_WRITE - 64  # room for the header
        most = 2048  # characters of the message: cut in its middle, its end says why
        while True:
            # Drop the outermost frames until the record fits: the innermost
            # frames and the error line are what explain a failure. Then the
            # message gets shorter, never cut in its JSON.
            record["message"] = _middle_cut(message, most)
            elided = "  ...\n" if len(frames) < len(every_frame) else ""
            text = "".join(frames)
            record["traceback"] = f"Traceback (most recent call last):\n{elided}{text}{last}"
            payload = json.dumps(record).encode()
            if len(payload) <= limit or (not frames and most <= 64):
                break
            if frames:
                frames = frames[1:]
            else:
                most //= 2
                last = _middle_cut(last, most)
        self._send("ERROR", payload[:limit])
        self.close()

    def fail_and_exit(self, exc: BaseException, status: int = 1) -> NoReturn:
        """Report ``exc`` and end this process at once, running no user cleanup:
        the user's code still has to run, once, in the launcher. Ends the process
        even if the report itself fails."""
        try:
            self.send_error(exc)
        finally:
            os._exit(status)

    def close(self) -> None:
        global _KEPT
        if _KEPT is self:
            _KEPT = None
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    # -- launcher side -------------------------------------------------------

    def in_launcher(self) -> None:
        """Called in the parent after fork, so EOF means every daemon side is gone."""
        self.close()

    def wait(self, timeout: float | None = None) -> int:
        """Block until the daemon is ready and return its pid, or raise.

        Raises ``DaemonStartupError`` on an error record or EOF, and
        ``DaemonReadyTimeout`` when ``timeout`` seconds pass first. When the daemon
        says nothing for ``NAG_AFTER`` seconds, one line on stderr says what it is
        doing (a pidfile of another library that waits for a stale lock, say).
        """
        wait = finite_timeout(timeout)
        deadline = None if wait is None else time.monotonic() + wait
        nag_at: float | None = time.monotonic() + NAG_AFTER
        reader = _RecordReader(self.read_fd)
        pid: int | None = None
        step = _READY_STEP
        exec_is_ready = False
        left = False  # the daemon's context closed: the pipe's end is no surprise
        try:
            while True:
                nagging = nag_at is not None and (deadline is None or nag_at < deadline)
                try:
                    record = reader.next(
                        nag_at if nagging else deadline, self.daemon_pidfd, self.daemon_gone
                    )
                except TimeoutError:
                    if not nagging:
                        raise
                    _say_waiting(pid or self.daemon_pid, step)
                    nag_at = None
                    continue
                if record is not None:
                    if record[1] != self.daemon_pid:
                        self._pin(record[1])
                elif exec_is_ready and pid is not None:
                    return pid  # closed by a successful exec
                if record is None:
                    program = _program_after_exec(pid, self.daemon_pidfd) if pid else None
                    if program is not None:
                        raise DaemonStartupError(
                            f"the daemon (pid {pid}) ran another program ({program}) before"
                            " it was ready: call notify_ready_on_exec() just before the exec",
                            daemon_pid=pid,
                        )
                    if pid and not left and _running_on(pid, self.daemon_pidfd):
                        raise DaemonStartupError(
                            f"the daemon (pid {pid}) closed the start-up pipe (its fd"
                            f" {self.daemon_fd}) while still running, before it was ready:"
                            " call notify_ready() before closing inherited fds, or keep"
                            " that one open",
                            daemon_pid=pid,
                        )
                    raise DaemonStartupError(
                        "the daemon exited before it was ready"
                        + (f" (pid {pid})" if pid else "")
                        + ": it was killed, called os._exit(), or left its with block"
                        " without calling notify_ready()",
                        daemon_pid=pid,
                    )
                kind, pid, payload = record
                if kind == "PID":
                    self._check_pinned(pid, payload)
                if kind == "READY":
                    return pid
                if kind == "EXEC":
                    exec_is_ready = True
                if kind == "LEFT":
                    left = True
                if kind == "STEP":
                    step = payload.decode("utf-8", "replace") or _READY_STEP
                    nag_at = time.monotonic() + NAG_AFTER
                if kind == "ERROR":
                    self._wait_exited(pid, reader, time.monotonic() + GRACE)
                    raise _startup_error(pid, payload)
        except TimeoutError:
            raise DaemonReadyTimeout(
                f"the daemon did not report ready within {timeout} s"
                + (f" (pid {pid})" if pid else ""),
                daemon_pid=pid,
            ) from None
        finally:
            self._close_read_end()

    def _close_read_end(self) -> None:
        """Close the pipe's read end, once: when an error record is read, before the
        imports that tell it (pidfd, json), which need a descriptor to read a module
        with, and a launcher at its limit (EMFILE) would otherwise lose the error."""
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    def _pin(self, pid: int) -> None:
        self.close_pidfd()
        self.daemon_pid = pid
        self.daemon_gone = False
        try:
            self.daemon_pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # exited and reaped already: it will say no more
            self.daemon_gone = True
        except (AttributeError, OSError):  # no pidfds here
            pass

    def _check_pinned(self, pid: int, started: bytes) -> None:
        """The ``PID`` record: let go of the process pinned for ``pid`` if it did
        not start when the daemon did (``started``, empty if unknown): the daemon
        died and its pid was reused before the launcher read its records (they
        stay in the pipe). It is then gone, whatever runs with its pid."""
        if self.daemon_pidfd is None or pid != self.daemon_pid or not started.isdigit():
            return
        found = _start_ticks(pid)  # read after the pidfd opened: its process, or a later one
        if found is not None and found != int(started):
            self.close_pidfd()
            self.daemon_gone = True

    def _wait_exited(self, pid: int, reader: _RecordReader, deadline: float) -> None:
        """Wait (to ``deadline``) until ``pid``, which reported its failure, has
        exited: it closed the pipe before ``os._exit``, and a daemon with much memory
        to give back is still running for a while after that. Through its pidfd, not
        the pipe's end-of-file: a process the daemon forked (a worker) keeps the pipe
        open, and is stopped next, with the rest of the daemon's session."""
        if self.daemon_pidfd is None or pid != self.daemon_pid:
            reader.wait_eof(deadline)  # no pidfds here: the EOF is all there is to wait on
            self._close_read_end()
            return
        self._close_read_end()  # the error is read; spares a descriptor for the imports
        from .pidfd import wait_exit  # a failed start only

        wait_exit(self.daemon_pidfd, max(0.0, deadline - time.monotonic()))

    def close_pidfd(self) -> None:
        if self.daemon_pidfd is not None:
            os.close(self.daemon_pidfd)
            self.daemon_pidfd = None


def _say_waiting(pid: int | None, step: str) -> None:
    """One line on stderr while the launcher waits on a daemon that says nothing."""
    who = f"the daemon (pid {pid})" if pid else "the daemon"
    try:
        sys.stderr.write(
            f"daemonctx: still waiting for {who} to {step} ({NAG_AFTER:g} s so far;"
            " Ctrl-C stops it)\n"
        )
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _startup_error(pid: int, payload: bytes) -> DaemonStartupError:
    import json

    remote_errno: int | None = None
    try:
        record = json.loads(payload.decode("utf-8", "replace"))
        remote_type = str(record["type"])
        message = str(record["message"])
        text = str(record["traceback"])
        number = record.get("errno")
        if isinstance(number, int) and not isinstance(number, bool):
            remote_errno = number
    except (ValueError, KeyError, TypeError, AttributeError):
        remote_type, message, text = "unknown", payload[:200].decode("utf-8", "replace"), ""
    summary = f"{remote_type}: {message}" if message else remote_type
    return DaemonStartupError(
        f"the daemon (pid {pid}) failed to start: {summary}",
        remote_type=remote_type,
        remote_message=message,
        remote_traceback=text or None,
        daemon_pid=pid,
        remote_errno=remote_errno,
    )


class _RecordReader:
    """Reads whole records from the pipe, with an optional deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def _fill(self, deadline: float | None, pidfd: int | None = None, gone: bool = False) -> None:
        """Read what is in the pipe, waiting for it until ``deadline``. The daemon's
        exit (its ``pidfd`` readable, or ``gone``) is the end-of-file once the pipe
        holds nothing more: a process it forked may keep the pipe open for ever."""
        if gone and not self._readable(0):
            self.eof = True
            return
        if deadline is not None or pidfd is not None:
            import select  # poll, not select(): our fd may be 1024 or more

            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if pidfd is not None:
                poller.register(pidfd, select.POLLIN)
            milliseconds = None
            if deadline is not None:
                remaining = max(0.0, deadline - time.monotonic())
                # poll takes whole milliseconds: round up, so a short wait never spins at 0
                milliseconds = int(-(-remaining * 1000 // 1))
            ready = [fd for fd, _events in poller.poll(milliseconds)]
            if not ready:
                raise TimeoutError
            # Only the exit: a last record, written before it, shows in a second look.
            if self.fd not in ready and not self._readable(0):
                self.eof = True
                return
        chunk = os.read(self.fd, 65536)
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def _readable(self, milliseconds: int) -> bool:
        import select

        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(milliseconds))

    def next(
        self, deadline: float | None, pidfd: int | None = None, gone: bool = False
    ) -> tuple[str, int, bytes] | None:
        while True:
            header, sep, rest = self.buffer.partition(b"\n")
            if sep:
                try:
                    kind, pid, length = header.decode("ascii").split(" ")
                    size = int(length)
                    if size > MAX_PAYLOAD:
                        raise ValueError(length)
                except ValueError:
                    raise DaemonStartupError(f"garbled start-up record {header[:80]!r}") from None
                if len(rest) >= size:
                    self.buffer = rest[size:]
                    return kind, int(pid), rest[:size]
            elif len(self.buffer) > 256:
                raise DaemonStartupError("garbled start-up record: header too long")
            if self.eof:
                return None
            self._fill(deadline, pidfd, gone)

    def wait_eof(self, deadline: float) -> None:
        """Read until every write end is closed, so the daemon has finished exiting."""
        try:
            while not self.eof:
                self._fill(deadline)
                self.buffer = b""
        except TimeoutError:
            pass


def _middle_cut(text: str, most: int) -> str:
    """``text`` if it has at most ``most`` characters, else its start and its end
    around a mark saying how much was cut: a message's end says why it failed."""
    if len(text) <= most:
        return text
    keep = max(most - 40, 16)
    head = keep // 2
    tail = keep - head
    return f"{text[:head]}[... {len(text) - keep} characters cut ...]{text[-tail:]}"


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (with its pid, a process's
    identity: a reused pid is another start); None if it cannot be read. As
    ``procfs``, which the launcher and the first child do not import."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _running_on(pid: int, pidfd: int | None) -> bool:
    """Whether the daemon ``pid``, whose end of the pipe is closed, runs on and is
    not exiting: it closed the pipe itself (``os.closerange``). An exiting process
    has closed its fds before its pidfd says it exited, but is marked exiting first.
    Only with a pidfd, still running after the look: the pid is then the daemon's."""
    if pidfd is None:
        return False
    import select

    from .procfs import is_alive  # a failed start only

    alive = is_alive(pid)
    return alive and not select.select([pidfd], [], [], 0)[0]


def _program_after_exec(pid: int, pidfd: int | None) -> str | None:
    """The program ``pid`` runs if it is no longer ours: the daemon closed the pipe
    by an ``exec`` (close-on-exec), without ``notify_ready_on_exec()``. A daemon that
    exits has given up its program before its fds (``/proc/PID/exe`` is gone), so
    this names no program for one that died; nor for one that exec'd ours again.
    Only with a pidfd, still running after the look: the pid is then the daemon's."""
    if pidfd is None:
        return None
    import select

    try:
        program = os.readlink(f"/proc/{pid}/exe")
        ours = os.readlink("/proc/self/exe")
        if select.select([pidfd], [], [], 0)[0]:  # exited meanwhile: maybe not its pid now
            return None
    except (OSError, ValueError):  # exited, or not ours to look at
        return None
    return program if program != ours else None
