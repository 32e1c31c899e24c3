"""Captured program output: where each line goes, and what the supervisor remembers.

The supervisor's one thread reads every program's stdout and stderr pipes (their
read ends are non-blocking) and hands the bytes to a ``Capture``, which passes
complete lines to a ``Target`` (a log file, or a copy of the supervisor's own
stdout or stderr) and to a ``Ring`` (the last bytes of output, for ``ctl tail``
and ``ctl why``).

Nothing here ever blocks: targets are written non-blocking, and what a target
cannot take now (a full disk, a pipe nobody drains) is dropped and counted in
``Target.dropped``; a target is never left holding half a line with the next line
glued to it. (The one blocking write, to another user's terminal that the
supervisor may not open again, is a ``_Writer`` thread's.) The hot path (no
timestamps, whole lines) costs a few Python operations per chunk read, never per
line: one ``rfind``, one ``os.write``, one append to the ring.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import re
import select
import signal
import socket
import stat
import threading
import time
from collections import deque
from typing import Callable, NamedTuple

from .. import paths
from ..errors import one_line
from .config import LogFile

__all__ = ["CHUNK_COST", "MAX_LINE", "Capture", "Line", "Ring", "Target"]

MAX_LINE = 65536
"""The longest line kept whole, newline not counted: a longer line is cut after
``MAX_LINE`` bytes (the piece gets a newline) and the rest is a line of its own."""

CHUNK_COST = 180
"""What the ring counts for each chunk it keeps, beyond its text: the memory of its
entry (a tuple, its time, its numbers, a bytes header, a deque slot: 182 to 186 bytes
measured on Python 3.9 to 3.13), so that 1-byte writes cannot make ``output_buffer``
hold a hundred times its size."""

STREAMS = ("stdout", "stderr")

log = logging.getLogger("daemonctx.supervisor")

_PIPE_BUF = select.PIPE_BUF  # a write of at most this many bytes to a pipe is atomic
# A disk that is full: removing the oldest backup makes room.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_RETRY = 1.0  # seconds between tries to open a new file after a rotation could not
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
_REOPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# How a target is written (``Target._kind``):
_FILE = (
    "file"  # a regular file of our own, named by its path: may rotate; cut back on a short write
)
_PIPE = "pipe"  # a pipe or FIFO: whole lines in writes of at most PIPE_BUF bytes
_STREAM = "stream"  # a tty, a device, a regular file shared with others: one write per chunk
_SOCKET = "socket"  # a socket: send(MSG_DONTWAIT), the fd's shared flags left alone
_DEAD = "dead"  # a copy of a pipe nobody reads any more: everything is dropped


_QUEUED = 65536  # bytes a terminal's writer thread may hold: more is dropped (and counted)


class _Lane:
    """What the targets writing one open file (a pipe, a terminal, a socket, a file: by
    ``(st_dev, st_ino)``, not by fd number: as root each is an open of its own) share:
    which of them owes the rest of a line a partial write cut. While one does, the
    others' lines wait for it to be paid, or are dropped and counted: never written in
    the middle of it. A target that leaves (closed by a reload, a program removed, the
    supervisor's log replaced) while it still owes one, after one more try to pay it,
    leaves that rest here (``rest``): the next target to write the file, one already
    there or one that comes later, writes it first (and counts it as written). The
    lane is kept while it holds a rest, even with no target left (our stdout, stderr or a
    FIFO, which a program added later may write; not a log file of ours alone)."""

    __slots__ = ("key", "owed_by", "rest", "users")

    def __init__(self, key: tuple[int, int] | None) -> None:
        self.key = key
        self.owed_by: Target | None = None
        self.rest = b""  # the rest of a cut line whose target left: whoever writes next pays
        self.users = 0


_lanes: dict[tuple[int, int], _Lane] = {}


def _join_lane(key: tuple[int, int] | None) -> _Lane:
    if key is None:
        return _Lane(None)
    lane = _lanes.get(key)
    if lane is None:
        lane = _lanes[key] = _Lane(key)
    lane.users += 1
    return lane


def _leave_lane(lane: _Lane, target: Target) -> None:
    """``target`` writes the file no more: a rest it still owes stays with the lane, for
    the next writer (the file is left in the middle of that line)."""
    if lane.owed_by is target:
        lane.owed_by = None
        if lane.key is None or (target._kind is _FILE and lane.users <= 1):
            # a file of ours that nobody else writes (rotated away, perhaps): it ends there
            target.dropped += len(target._owed)
        else:
            lane.rest = target._owed
        target._owed = b""
    if lane.key is not None:
        lane.users -= 1
        if lane.users <= 0 and not lane.rest and _lanes.get(lane.key) is lane:
            del _lanes[lane.key]


class _Writer:
    """A thread writing a terminal that is not ours to open again (another user's), for
    every target on it: a blocking write there may wait for ever (``poll`` says POLLOUT
    when a terminal has any room at all, not PIPE_BUF bytes as for a pipe), and the
    shared fd's flags are not ours to change. The supervisor's loop hands it whole
    lines while it holds less than ``_QUEUED`` bytes (``put``), else they are dropped
    and counted; the loop never waits for it. One thread per terminal, whatever the
    number of targets on it (``join``, ``leave``): their lines in the order given. It
    writes its own dup of the fd, with every signal blocked, and closes it when it
    ends: once the last target left and what it holds is written. (One stuck in a
    write to a terminal nobody reads ends when the process does; a new target on
    that terminal meanwhile joins it rather than start another.)"""

    def __init__(self, fd: int, key: tuple[int, int], what: str) -> None:
        """Raises ``OSError`` (EAGAIN) when the thread cannot start (a pids limit)."""
        self.key = key
        self._fd = os.dup(fd)
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[bytes, Target]] = deque()
        self._held = 0  # bytes in _queue, and the one being written
        self._users = 1
        self._ended = False
        # (target, bytes) the thread could not write, with the error: counted by put
        self._failed: list[tuple[Target, int, OSError]] = []
        self._thread = threading.Thread(target=self._run, name=f"daemonctx: {what}", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as exc:  # "can't start new thread": a pids cgroup at its limit
            os.close(self._fd)
            raise OSError(errno.EAGAIN, f"cannot start a thread to write it: {exc}") from None

    def put(self, target: Target, data: bytes) -> int:
        """Queue the whole lines of ``data`` that fit; the bytes queued."""
        with self._cond:
            room = _QUEUED - self._held
            size = len(data)
            if size > room:
                size = data.rfind(b"\n", 0, room) + 1
            if size:
                self._queue.append((data if size == len(data) else data[:size], target))
                self._held += size
                self._cond.notify_all()
            failed, self._failed = self._failed, []
        for who, lost, exc in failed:
            who.written -= lost
            who.dropped += lost
            who.error = exc
        return size

    def join(self) -> bool:
        """Another target on the same terminal: True unless the thread is ending."""
        with self._cond:
            if self._ended:
                return False
            self._users += 1
            return True

    def leave(self) -> None:
        """A target let go; the last one stops the thread once its lines are written."""
        with self._cond:
            self._users -= 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until it holds nothing; True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._held, timeout)

    def _run(self) -> None:
        # Signals go to the supervisor's own thread: a write here is never cut by one
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        fd = self._fd
        cond = self._cond
        while True:
            with cond:
                while not self._queue and self._users > 0:
                    cond.wait()
                if not self._queue:
                    self._ended = True
                    if _writers.get(self.key) is self:
                        del _writers[self.key]
                    break
                data, target = self._queue[0]
            done = 0
            try:
                while done < len(data):
                    done += os.write(fd, data[done:])
            except OSError as exc:
                with cond:
                    self._failed.append((target, len(data) - done, exc))
            with cond:
                self._queue.popleft()
                self._held -= len(data)
                cond.notify_all()
        os.close(fd)


_writers: dict[tuple[int, int], _Writer] = {}

# The file each path names (``paths.resolved_name``) -> the one target writing it for
# every program that names it (``Target.open(shared=True)``): one fd, one size, one
# rotation, however many instances and programs write there.
_shared: dict[str, Target] = {}


def _writer_for(fd: int, key: tuple[int, int], what: str) -> _Writer:
    writer = _writers.get(key)
    if writer is None or not writer.join():
        writer = _writers[key] = _Writer(fd, key, what)
    return writer


@atexit.register
def _flush_writers(timeout: float = 1.0) -> None:
    """At exit, give the terminals' writer threads a moment to write what they hold (a
    terminal nobody reads keeps its lines: the process does not wait long for it)."""
    deadline = time.monotonic() + timeout
    for writer in list(_writers.values()):
        writer.wait(max(0.0, deadline - time.monotonic()))


def _own_fd(resolved: str) -> int | None:
    """The fd number when ``resolved`` (as ``paths.check_path`` returns it) is a link to one
    of our own open files: /proc/<our pid>/fd/N or /proc/<our pid>/task/<tid>/fd/N."""
    match = re.fullmatch(rf"/proc/{os.getpid()}(?:/task/\d+)?/fd/(\d+)", resolved)
    return int(match.group(1)) if match else None


def _reason(exc: OSError) -> str:
    """Why ``exc`` happened, in words, without "[Errno N]"."""
    if exc.filename2 is not None:
        return f"cannot rename {exc.filename} to {exc.filename2}: {exc.strerror}"
    if exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or str(exc)


class Target:
    """Where one stream's lines go: a file (path or LogFile), or a copy of the supervisor's
    fd ("inherit").

    How each kind is written, never blocking:

    - A regular file named by its path: one ``write`` per chunk. Rotated before a write
      that would take it past ``max_bytes`` (when > 0): ``path`` becomes ``path.1``, ...,
      ``path.<backups>`` (the oldest is dropped; ``backups`` 0: the file is just replaced
      by a new one; only the backups there are, up to the first one missing, are moved:
      a rename per file, not per possible backup), then a new file is opened at ``path``.
      A line is never split across files: a chunk that does not fit is written in parts
      at line boundaries, rotating between them; a single line longer than ``max_bytes``
      is written whole into a fresh file, the only case where a file exceeds
      ``max_bytes``. If the file at ``path`` is no longer ours (logrotate moved it),
      rotation opens a new file without renaming.
      If rotation fails, the bound still holds: a backup that cannot be moved up is
      skipped (the one below replaces it); a file that cannot be moved aside is emptied
      in place (its lines are lost); a file moved aside for which no new one can be
      opened is left alone, and output is dropped (and counted) until a new one can be
      (tried once a second). ``rotate_error`` says why, logged once; it is cleared, and
      that logged, at the next rotation that works. A short write (ENOSPC, EDQUOT, EFBIG)
      is cut back to its last whole line (``ftruncate``), so the file only ever holds
      whole lines; then (ENOSPC, EDQUOT) the oldest backup there is is removed, to make
      room for the newest lines, and they are tried once more.
    - A pipe or FIFO: lines in groups of at most PIPE_BUF bytes, each write atomic: what
      does not fit when the pipe is full is dropped, in whole lines.
    - Another user's terminal, which we may not open again (``guarded``): handed, in
      whole lines, to a thread that writes it (``_Writer``), as long as that holds
      less than ``_QUEUED`` bytes; the rest is dropped. ``written`` counts what was
      handed over; what the thread then fails to write (a hangup) moves to
      ``dropped`` at the next ``write``.
    - A tty, a device, a socket (``send`` with MSG_DONTWAIT, since O_NONBLOCK would
      change the shared file), a regular file that is not ours to cut (the supervisor's
      own stdout when it is a file, or ``/dev/stdout`` naming one): one write per chunk.
      Such writes, and a write of a line longer than PIPE_BUF to a pipe, may be partial:
      then the rest of the line that was cut is kept (at most one line) and written first
      next time, so no line is glued to half another; meanwhile new lines are dropped.
      That holds across targets: all those writing one open file (by ``(st_dev,
      st_ino)``: two programs' "inherit" stdout, each its own open of the supervisor's
      stdout pipe, and the supervisor's log on it) share the rest owed (``_Lane``),
      so none writes into the middle of another's cut line.

    Every program writing one file (the instances of a program, two programs naming one
    path) writes it through one target (``open(shared=True)``): one fd, one size, one
    rotation. Targets of their own would each rotate on their own count, and one would
    go on writing the backup (or the deleted file) another had moved aside.

    Counts are in bytes as written (timestamps included): ``written`` + ``dropped`` is all
    that was given to ``write``, less a cut line's rest still waiting to go out (or left,
    at ``close``, to the next target on the same file: that one counts it as written).
    """

    dropped: int
    written: int
    rotates: bool
    error: OSError | None  # the last error writing, rotating or reopening
    rotate_error: OSError | None  # why the last rotation failed, until one works: for status
    says_drops: bool  # log why output is dropped (not for the supervisor's own log)

    def __init__(
        self,
        fd: int,
        what: str,
        spec: LogFile | None = None,
        *,
        inherit: int | None = None,
        umask: int = 0o022,
    ) -> None:
        """Use ``open``: this takes over ``fd``, opened as ``spec`` or copied from ``inherit``."""
        self.what = what
        self._key: str | None = None  # its name in _shared, when it is shared
        self._users = [what]  # who writes it (``open(shared=True)``), first opener first
        self.says_drops = True
        self._said: set[int | None] = set()  # the errnos of the drops logged (once each)
        self._failing: OSError | None = None  # a drop logged, until a write works again
        self.umask = umask  # for the files rotation and reopen create
        self.spec = spec
        self.path = spec.path if spec is not None else None
        self.inherit = inherit
        self.max_bytes = spec.max_bytes if spec is not None else 0
        self.backups = spec.backups if spec is not None else 0
        self.timestamps = spec.timestamps if spec is not None else False
        self.dropped = 0
        self.written = 0
        self.error = None
        self.rotate_error = None
        self._fd = -1
        self._identity = (0, 0)  # the open file's (st_dev, st_ino)
        self._retry_at = 0.0  # no new file after a rotation: drop until then (monotonic)
        self._unwritten = b""  # the lines a full disk refused in the last file write
        self._said_full = False  # a backup was removed for a full disk, and logged
        self._may_guard = False  # see open's ``guarded``
        self._poll: select.poll | None = None  # a shared blocking fd: written when ready
        self._kind = _DEAD
        self._sock: socket.socket | None = None
        self._size = 0
        self._owed = b""  # the rest of a line a partial write cut, to write before anything new
        self._lane = _join_lane(None)  # shared with the targets writing the same file
        self._writer: _Writer | None = None  # a terminal not ours to reopen: see _Writer
        self._stamp_second = -1
        self._stamp_text = ""
        self._put: Callable[[bytes | memoryview, bytes], bool] = self._put_dead
        self.rotates = False
        self._adopt(fd)

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        spec: str | LogFile,
        what: str,
        inherit: int | None = None,
        *,
        umask: int = 0o022,
        guarded: bool = False,
        shared: bool = False,
    ) -> Target | None:
        """A target for ``spec``: "inherit" (a non-blocking copy of fd ``inherit``; None when
        ``inherit`` is None), "null" (None), an absolute path (a ``LogFile`` that never
        rotates) or a ``LogFile``. ``what`` ("web's stdout") names it in errors.

        Files are opened by ``paths.open_log`` (mode ``0o640 & ~umask``, safe as root).
        A path naming one of our own fds (``/dev/stdout``, ``/proc/self/fd/1``) is a copy
        of that fd, as "inherit". Raises ``paths.UnsafePathError`` or ``OSError``, one line
        naming the path; ``ValueError`` for a relative path or another word.

        ``guarded`` (the supervisor's own log, and a program's "inherit": better written
        than lost, or than no start): a pipe or terminal not ours to open again (another
        user's: EACCES) is written through the shared fd, without changing its flags, at
        most PIPE_BUF bytes at a time, each only when ``poll`` says it can take more;
        without ``guarded`` that is an error. (Such a terminal is written by a thread,
        ``_Writer``: one that cannot start raises ``OSError``, EAGAIN.)

        ``shared`` (programs' files): a file already open for another writer (another
        instance, another program: the same file, however the path is spelled) is that
        writer's target, one more user of it (``close`` with the same ``what``): one fd,
        one size, one rotation. Its table stays as it is (``update`` changes it).
        """
        if spec == "null":
            return None
        if spec == "inherit":
            return None if inherit is None else cls._copy(inherit, what, None, guarded)
        if isinstance(spec, str):
            spec = LogFile(spec)  # ValueError unless absolute
        key = paths.resolved_name(spec.path) if shared else None
        if key is not None and key in _shared:
            target = _shared[key]
            target._users.append(what)
            target._name()
            return target
        number = _own_fd(paths.check_path(spec.path, what))
        if number is not None:
            return cls._copy(number, what, spec, guarded)
        fd = paths.open_log(spec.path, what, umask, blocking=False)
        try:
            target = cls(fd, what, spec, umask=umask)
        except BaseException:
            os.close(fd)
            raise
        if key is not None:
            target._key = key
            _shared[key] = target
        return target

    def _name(self) -> None:
        """``what``, naming every writer: "web:0's stdout and web:1's stdout"."""
        users = list(dict.fromkeys(self._users))  # a run's and a retired run's: once
        if len(users) <= 2:
            self.what = " and ".join(users)
        else:
            self.what = f"{users[0]}, {users[1]} and {len(users) - 2} more"

    @classmethod
    def _copy(cls, fd: int, what: str, spec: LogFile | None, guarded: bool = False) -> Target:
        target = cls(-1, what, spec, inherit=fd)
        target._may_guard = guarded
        target._copy_fd(fd)
        return target

    def _copy_fd(self, fd: int) -> None:
        """Become a non-blocking copy of our fd ``fd`` without changing its flags: a new
        open of /proc/self/fd/N for a pipe, tty or device; a dup for a regular file (the
        same offset as the supervisor's own writes; a file never blocks) and for a socket
        (written with MSG_DONTWAIT). A pipe nobody reads (ENXIO) or a terminal that hung
        up (EIO) drops everything: the program still starts."""
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise OSError(exc.errno, f"{self.what} (fd {fd}): {exc.strerror}") from exc
        if stat.S_ISREG(mode) or stat.S_ISSOCK(mode):
            self._adopt(os.dup(fd), shared=True)
            return
        try:
            copy = os.open(f"/proc/self/fd/{fd}", _REOPEN_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM) and self._may_guard:
                self._adopt(os.dup(fd), shared=True)
                if stat.S_ISCHR(mode):  # a terminal: a write may block whatever poll says
                    try:
                        self._writer = _writer_for(self._fd, self._identity, self.what)
                    except OSError as failed:  # no thread (a pids limit): a start that
                        self._adopt(-1)  # failed, tried again later, as for a file
                        reason = f"{self.what} (fd {fd}): {failed.strerror}"
                        raise OSError(failed.errno, reason) from None
                    self._put = self._put_queued
                else:  # a pipe: written only when it has room for PIPE_BUF bytes
                    self._poll = select.poll()
                    self._poll.register(self._fd, select.POLLOUT)
                return
            if exc.errno == errno.ENXIO:
                self.error = OSError(exc.errno, f"{self.what}: no process reads fd {fd}")
                return
            if exc.errno == errno.EIO:  # a terminal that hung up: it takes nothing more
                self.error = OSError(exc.errno, f"{self.what}: fd {fd} is a terminal that hung up")
                return
            raise OSError(exc.errno, f"{self.what} (fd {fd}): {exc.strerror}") from exc
        self._adopt(copy)

    def _adopt(self, fd: int, *, shared: bool = False) -> None:
        """Write to ``fd`` from now on (closing the previous one), chosen by what it is."""
        if self._owed:  # one more try to end our cut line, while we still have the file
            self._pay()
        old, old_sock = self._fd, self._sock
        self._fd, self._sock = fd, None
        self._poll = None
        if self._writer is not None:
            self._writer.leave()
            self._writer = None
        _leave_lane(self._lane, self)  # a rest still owed stays there, for the next writer
        self._retry_at = 0.0
        if fd < 0:
            kind = _DEAD
            self._lane = _join_lane(None)
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                kind = _STREAM if shared or not self._names(st) else _FILE
            elif stat.S_ISFIFO(st.st_mode):
                kind = _PIPE
            elif stat.S_ISSOCK(st.st_mode):
                kind = _SOCKET
                self._sock = socket.socket(fileno=fd)  # leaves O_NONBLOCK as it was
            else:
                kind = _STREAM
            if not shared and kind != _SOCKET:
                os.set_blocking(fd, False)  # our own open file description
            self._size = st.st_size
            self._identity = (st.st_dev, st.st_ino)
            self._lane = _join_lane(self._identity)
        self._kind = kind
        self._put = {
            _FILE: self._put_file,
            _PIPE: self._put_pipe,
            _STREAM: self._put_stream,
            _SOCKET: self._put_socket,
            _DEAD: self._put_dead,
        }[kind]
        self._set_rotates()
        if old_sock is not None:
            old_sock.close()
        elif old >= 0:
            os.close(old)

    def _names(self, st: os.stat_result) -> bool:
        """Whether our path (resolved, its last link not followed) is the file ``st``."""
        if self.path is None:
            return False
        try:
            here = os.lstat(paths.check_path(self.path, self.what))
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino)

    def _set_rotates(self) -> None:
        self.rotates = self._kind == _FILE and self.max_bytes > 0

    def moved(self) -> bool:
        """Whether ``path`` no longer names the regular file written (logrotate moved or
        removed it): one ``stat``, cheap enough for every record of the supervisor's log."""
        if self._kind != _FILE or self.path is None:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return (st.st_dev, st.st_ino) != self._identity

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes | memoryview, when: float | None = None, head: bytes = b"") -> int:
        """Write ``data`` (complete lines, each ending with b"\\n"), each prefixed with the
        time ``when`` (default: now) if ``timestamps``. Never blocks, never raises for an
        error writing: what does not fit is dropped, in whole lines, and counted. Returns
        the bytes dropped (0: all of it went out).

        ``head``: complete lines to write before ``data``, in the same system call to a file
        (``writev``: a line completed from two reads costs no copy of the second read).

        The first drop of each kind (errno) is logged, with its reason, and the next write
        that works after it ("written again"): a full disk, a file made immutable, a pipe
        whose reader left are said, not only counted; at most twice per kind."""
        dropped = self.dropped
        self._write(data, when, head)
        lost = self.dropped - dropped
        if (lost or self._failing is not None) and self.says_drops:
            self._say(lost)
        return lost

    def _say(self, lost: int) -> None:
        """Log a drop of a kind not said yet, or that writing works again after one."""
        if not lost:
            self._failing = None
            log.info("%s: %s written again", one_line(self.what), one_line(self._where()))
            return
        error = self.error
        if error is self.rotate_error and error is not None:
            return  # logged by _report, with what was done instead
        kind = None if error is None else error.errno
        if kind in self._said:
            return
        self._said.add(kind)
        self._failing = error or OSError(errno.EBADF, "it is closed")
        reason = _reason(self._failing)
        if reason.startswith(f"{self.what}: "):  # "web's stdout: no process reads fd 1"
            reason = reason[len(self.what) + 2 :]
        log.info(
            "%s: cannot write %s: %s; its output is dropped (and counted) until it can (said once)",
            one_line(self.what),
            one_line(self._where()),
            one_line(reason),
        )

    def _where(self) -> str:
        if self.path is not None:
            return self.path
        return {1: "standard output", 2: "standard error"}.get(self.inherit or 0, "its fd")

    def _write(self, data: bytes | memoryview, when: float | None, head: bytes) -> None:
        lane = self._lane
        owner = lane.owed_by
        if (owner is not None and not owner._pay()) or (lane.rest and not self._pay(lane)):
            # a line cut short (ours, another target's on the same file, or one that a
            # target closed since left there) comes first
            if owner is not None and owner is not self:
                self.error = owner.error
            self.dropped += len(head) + len(data)
            if self.timestamps:
                self.dropped += self._stamp_size(head) + self._stamp_size(data)
            return
        if head:
            if not (
                self.timestamps
                or self._kind is _PIPE
                or (self.rotates and self._size + len(head) + len(data) > self.max_bytes)
            ):
                self._put(data, head)
                return
            data = head + data
        if self.timestamps:
            data = self._stamp(bytes(data), time.time() if when is None else when)
        if self.rotates and self._size + len(data) > self.max_bytes:
            self._write_rotating(data)
        else:
            self._put(data, b"")

    def _stamp_prefix(self, when: float) -> bytes:
        second = int(when)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        millis = min(int((when - second) * 1000), 999)
        return f"{self._stamp_text}.{millis:03d} ".encode()

    def _stamp_size(self, data: bytes | memoryview) -> int:
        return bytes(data).count(b"\n") * 24  # len("2026-11-26T12:00:00.123 ")

    def _stamp(self, data: bytes, when: float) -> bytes:
        prefix = self._stamp_prefix(when)
        return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"

    def _write_rotating(self, data: bytes | memoryview) -> None:
        """Write ``data`` across as many files as needed, each within ``max_bytes``."""
        try:  # emptied behind our back (logrotate's copytruncate): its size, not our count
            self._size = min(self._size, os.fstat(self._fd).st_size)
        except OSError:
            pass
        data = bytes(data)
        view = memoryview(data)
        pos, size = 0, len(data)
        fresh = self._size == 0
        while pos < size:
            room = self.max_bytes - self._size
            if size - pos <= room:
                end = size
            else:
                end = data.rfind(b"\n", pos, pos + max(room, 0)) + 1
                if end <= pos:  # not one more whole line fits
                    if not fresh:
                        if not self._rotate():  # no file to go on in, for now
                            self.dropped += size - pos
                            return
                        fresh = True
                        continue
                    end = data.find(b"\n", pos) + 1  # a line longer than max_bytes: alone
            if not self._put(view[pos:end], b""):
                self.dropped += size - end
                return
            fresh = False
            pos = end

    def _rotate(self) -> bool:
        """Move the file aside and open a new one at ``path``. True when writing goes on
        in an empty file: a new one, or this one emptied in place (see the class)."""
        assert self.path is not None
        if self._retry_at and time.monotonic() < self._retry_at:
            return False
        skipped: OSError | None = None  # a backup that could not be moved up
        try:
            resolved = paths.check_path(self.path, self.what)
            try:
                here: os.stat_result | None = os.lstat(resolved)
            except FileNotFoundError:
                here = None
            if here is not None and (here.st_dev, here.st_ino) == self._identity:
                if self.backups:
                    # The backups there are, path.1 up to the first missing one (or to
                    # the oldest kept, which the one before it replaces), each moved one
                    # up, the oldest first: a rename per file, not per possible backup.
                    last = 0
                    while last < self.backups - 1 and os.path.lexists(f"{resolved}.{last + 1}"):
                        last += 1
                    for number in range(last, 0, -1):
                        try:
                            os.rename(f"{resolved}.{number}", f"{resolved}.{number + 1}")
                        except FileNotFoundError:
                            pass
                        except OSError as exc:  # (a directory planted there): replaced below
                            skipped = skipped or exc
                    os.rename(resolved, f"{resolved}.1")
                else:
                    os.unlink(resolved)
            # else: logrotate (or someone) moved our file away: just start a new one
            fd = paths.open_log(self.path, self.what, self.umask, blocking=False)
        except OSError as exc:
            return self._rotate_failed(exc)
        self._adopt(fd)
        if skipped is not None:
            self._report(skipped, "fewer backups are kept")
        elif self.rotate_error is not None:
            self.rotate_error = None
            log.info("%s: %s rotated again", self.what, self.path)
        return True

    def _rotate_failed(self, exc: OSError) -> bool:
        """Keep within ``max_bytes`` all the same: empty the file in place if it is still
        the one at ``path``; else drop output until a new file can be opened (tried
        again ``_RETRY`` s later). True when writing may go on."""
        emptied = False
        try:
            if self._names(os.fstat(self._fd)):
                os.ftruncate(self._fd, 0)
                emptied = True
        except OSError:
            pass
        if emptied:
            self._size = 0
            self._report(exc, "emptied it in place")
        else:
            self._retry_at = time.monotonic() + _RETRY
            self._report(exc, "its output is dropped until a new file can be opened")
        return emptied

    def _report(self, exc: OSError, then: str) -> None:
        """Keep why a rotation failed, for status; log it once, saying ``then`` what
        was done instead."""
        said = self.rotate_error is not None
        error = OSError(exc.errno, f"{self.what}: cannot rotate {self.path}: {_reason(exc)}")
        self.error = self.rotate_error = error
        if not said:
            log.info("%s; %s", error.strerror, then)

    def _fail(self, exc: OSError, lost: int) -> bool:
        self.error = exc
        self.dropped += lost
        return False

    # Each _put_* writes `head` then `data` (whole lines) if it can, in one system call where
    # it can; True when all of it was written.

    def _put_file(self, data: bytes | memoryview, head: bytes) -> bool:
        if self._write_file(data, head):
            return True
        rest, self._unwritten = self._unwritten, b""
        if not rest or not self.rotates or not self._drop_oldest_backup():
            return False
        self.dropped -= len(rest)  # tried once more
        written = self._write_file(rest, b"")
        self._unwritten = b""
        return written

    def _drop_oldest_backup(self) -> bool:
        """The disk is full: remove the oldest backup there is, to make room for the
        newest lines. True when one was removed. Logged the first time only: a disk
        too small for every backup sees this at every rotation."""
        assert self.path is not None
        try:
            resolved = paths.check_path(self.path, self.what)
            last = 0
            while last < self.backups and os.path.lexists(f"{resolved}.{last + 1}"):
                last += 1
            if not last:
                return False
            os.unlink(f"{resolved}.{last}")
        except OSError:
            return False
        if not self._said_full:
            self._said_full = True
            message = "%s: the disk is full: removed %s.%d to make room (said once)"
            log.info(message, self.what, self.path, last)
        return True

    def _write_file(self, data: bytes | memoryview, head: bytes) -> bool:
        """``_put_file``'s one write; what a full disk refused is kept in ``_unwritten``."""
        try:
            done = os.writev(self._fd, (head, data)) if head else os.write(self._fd, data)
        except OSError as exc:  # ENOSPC, EDQUOT, EFBIG, EIO...
            if exc.errno in _FULL:
                self._unwritten = head + bytes(data)
            return self._fail(exc, len(head) + len(data))
        self._size += done
        if done == len(head) + len(data):
            self.written += done
            return True
        if head:
            data = head + data
        # A short write (the disk filled up): cut the file back to the last whole line.
        keep = bytes(data[:done]).rfind(b"\n") + 1
        try:
            end = os.fstat(self._fd).st_size
            os.ftruncate(self._fd, end - done + keep)
        except OSError:
            self.written += done
            return self._owe(data, done)
        self._size -= done - keep
        self.written += keep
        self._unwritten = bytes(data[keep:])
        return self._fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), len(data) - keep)

    def _put_pipe(self, data: bytes | memoryview, head: bytes) -> bool:
        if head:
            data = head + data
        size = len(data)
        if size <= _PIPE_BUF:
            return self._put_stream(data, b"")
        raw = data if isinstance(data, bytes) else bytes(data)
        view = memoryview(raw)
        pos = 0
        while pos < size:
            if size - pos <= _PIPE_BUF:
                end = size
            else:
                end = raw.rfind(b"\n", pos, pos + _PIPE_BUF) + 1
                if end <= pos:  # one line longer than PIPE_BUF: may go out in part
                    end = raw.find(b"\n", pos + _PIPE_BUF) + 1
            if not self._put_stream(view[pos:end], b""):
                self.dropped += size - end
                return False
            pos = end
        return True

    def _put_stream(self, data: bytes | memoryview, head: bytes) -> bool:
        if self._poll is not None:
            return self._put_guarded(head + bytes(data) if head else data)
        try:
            done = os.writev(self._fd, (head, data)) if head else os.write(self._fd, data)
        except OSError as exc:  # EAGAIN (full), EPIPE (nobody reads), EIO (hung up)...
            return self._fail(exc, len(head) + len(data))
        self.written += done
        return done == len(head) + len(data) or self._owe(head + data if head else data, done)

    def _put_guarded(self, data: bytes | memoryview) -> bool:
        """Write a shared blocking fd (another user's pipe or tty) only as far as it can
        take: at most PIPE_BUF bytes at a time, each after poll said it has room (a
        larger write, a long line's, would block until a reader made room)."""
        assert self._poll is not None
        size = len(data)
        done = 0
        while done < size:
            if not self._poll.poll(0):
                break
            try:
                done += os.write(self._fd, data[done : done + _PIPE_BUF])
            except OSError as exc:
                if not done:
                    return self._fail(exc, size)
                break
        if not done:
            return self._fail(OSError(errno.EAGAIN, os.strerror(errno.EAGAIN)), size)
        self.written += done
        return done == size or self._owe(data, done)

    def _put_socket(self, data: bytes | memoryview, head: bytes) -> bool:
        assert self._sock is not None
        try:
            if head:
                done = self._sock.sendmsg((head, data), (), _SEND_FLAGS)
            else:
                done = self._sock.send(data, _SEND_FLAGS)
        except OSError as exc:
            return self._fail(exc, len(head) + len(data))
        self.written += done
        return done == len(head) + len(data) or self._owe(head + data if head else data, done)

    def _put_queued(self, data: bytes | memoryview, head: bytes) -> bool:
        assert self._writer is not None
        raw = head + data if head else bytes(data)
        done = self._writer.put(self, raw)
        self.written += done
        if done == len(raw):
            return True
        return self._fail(OSError(errno.EAGAIN, "the terminal takes no more now"), len(raw) - done)

    def _put_dead(self, data: bytes | memoryview, head: bytes) -> bool:
        self.dropped += len(head) + len(data)
        return False

    def _owe(self, data: bytes | memoryview, done: int) -> bool:
        """After a partial write of ``done`` bytes: keep the rest of the line it cut, to
        write first next time; drop the lines after it. Returns False."""
        raw = data if isinstance(data, bytes) else bytes(data)
        if done and raw[done - 1 : done] != b"\n":
            end = raw.find(b"\n", done) + 1
            self._owed = raw[done:end]
            self._lane.owed_by = self
        else:
            end = done
        self.dropped += len(raw) - end
        self.error = OSError(errno.EAGAIN, "only part of the output could be written")
        return False

    def _pay(self, lane: _Lane | None = None) -> bool:
        """Write what is owed of a cut line, ours or (``lane``) the rest a target that
        left owed there; True once nothing is owed. What goes out counts as ours, and
        a rest we write only in part becomes ours to pay."""
        if lane is not None:
            owed, lane.rest = lane.rest, b""
        else:
            owed, self._owed = self._owed, b""
            self._lane.owed_by = None
        ok = (self._put_stream if self._kind in (_PIPE, _FILE) else self._put)(owed, b"")
        if not ok and not self._owed:
            # Nothing of it went out (and it was counted as dropped): keep owing all of it.
            self.dropped -= len(owed)
            if lane is not None:
                lane.rest = owed
            else:
                self._owed = owed
                self._lane.owed_by = self
        return ok

    # -- changes ------------------------------------------------------------------------------

    def reopen(self) -> None:
        """Open ``path`` again, for a file logrotate moved away: a new file from now on.
        A no-op for a copy of an fd and for what is not a regular file of ours (a FIFO, a
        device). On failure the open file stays in use and the error is raised."""
        if self.inherit is not None:
            if self._kind == _DEAD:  # a pipe nobody read: perhaps someone does now
                self._copy_fd(self.inherit)
            return
        if self._kind != _FILE or self.path is None:
            return
        try:
            fd = paths.open_log(self.path, self.what, self.umask, blocking=False)
        except OSError as exc:
            self.error = exc
            raise
        self._adopt(fd)

    def update(self, spec: LogFile) -> None:
        """Apply a live change of ``max_bytes``, ``backups`` or ``timestamps`` (same path).
        Backups beyond a lowered ``backups`` are left where they are."""
        if spec.path != self.path:
            raise ValueError(f"{self.what}: cannot change path {self.path!r} to {spec.path!r}")
        self.spec = spec
        self.max_bytes, self.backups, self.timestamps = (
            spec.max_bytes,
            spec.backups,
            spec.timestamps,
        )
        self._set_rotates()

    def close(self, what: str | None = None) -> None:
        """Close the target; a shared one (``open(shared=True)``) once its last user,
        ``what`` as it opened it, let go. A cut line's rest still owed, after one more
        try, is left to the next target that writes the same file (``_Lane``): not
        counted here."""
        if self._key is not None:
            if what in self._users:
                self._users.remove(what)
            elif self._users:
                self._users.pop()
            if self._users:
                self._name()
                return
            if _shared.get(self._key) is self:
                del _shared[self._key]
            self._key = None
        self._adopt(-1)

    def __repr__(self) -> str:
        where = self.path if self.path is not None else f"fd {self.inherit}"
        return f"<Target {self.what}: {where} ({self._kind})>"


class Line(NamedTuple):
    """One line of output: its stream, when it was read (time.time()), its text without
    its newline."""

    stream: str
    when: float
    text: bytes


class Ring:
    """An instance's recent output, stdout and stderr interleaved in the order fed, in
    about ``size`` bytes of memory: each chunk counts its text and ``CHUNK_COST``. Kept
    as the chunks fed (whole lines, referenced, not copied), split into lines only when
    asked; the oldest chunk is dropped, or cut at a line boundary, to stay within
    ``size``, but the newest keeps at least its last line. A line longer than half of
    ``size`` keeps its last half only: one long line cannot push out all that came
    before it (the error a program wrote before it dumped its configuration). (A chunk
    that is a slice of a larger read keeps that read alive: the memory held may pass
    ``size`` by about one read.)"""

    def __init__(self, size: int) -> None:
        # (stream, when, buffer, start, stop, mark): the lines are buffer[start:stop]
        self._chunks: deque[tuple[str, float, bytes, int, int, int]] = deque()
        self._total = 0
        self.mark = 0  # chunks ever added: "the lines since" a mark, at no cost per line
        self.lost = 0  # the newest mark of a chunk dropped (or cut) to stay within size
        self._followers: list[Callable[[Line], None]] = []
        self._size = 0
        self.size = size

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"ring size: expected an integer >= 0, got {size!r}")
        self._size = size
        self._line_most = max(size // 2, 1)
        self._trim()

    def __len__(self) -> int:
        """The bytes counted: the text held, and ``CHUNK_COST`` for each chunk."""
        return self._total

    def add(self, stream: str, when: float, data: bytes) -> None:
        """Remember ``data`` (complete lines) and pass its lines to the followers. A follower
        that raises is stopped; the first such error is raised once all the others ran."""
        self._add(stream, when, data, 0, len(data))

    def _add(self, stream: str, when: float, data: bytes, start: int, stop: int) -> None:
        """``add`` of ``data[start:stop]``, without copying it."""
        self.mark += 1
        if self._size:
            kept, first, end = data, start, stop
            if stop - start > self._line_most:  # perhaps a line too long to keep whole
                kept, first, end = _shorten(data, start, stop, self._line_most)
            self._chunks.append((stream, when, kept, first, end, self.mark))
            self._total += end - first + CHUNK_COST
            if self._total > self._size:
                self._trim()
        else:
            self.lost = self.mark
        if self._followers:  # they get the lines whole
            self._tell(Line(stream, when, b""), data[start : stop - 1].split(b"\n"))

    def _trim(self) -> None:
        """Drop the oldest lines until within size; the newest chunk keeps its last line."""
        chunks = self._chunks
        if not self._size:
            if chunks:
                self.lost = chunks[-1][5]
            chunks.clear()
            self._total = 0
            return
        while self._total > self._size:
            stream, when, data, start, stop, mark = chunks[0]
            excess = self._total - self._size
            cut = stop
            if excess < stop - start:  # after the line that holds byte `excess`
                cut = data.find(b"\n", start + excess - 1, stop) + 1
            if cut == stop:
                if len(chunks) > 1:
                    chunks.popleft()
                    self._total -= stop - start + CHUNK_COST
                    self.lost = mark
                    continue
                cut = data.rfind(b"\n", start, stop - 1) + 1  # all but its last line
                if cut <= start:
                    return
            chunks[0] = (stream, when, data, cut, stop, mark)
            self._total -= cut - start
            self.lost = mark

    def _tell(self, line: Line, texts: list[bytes]) -> None:
        failure: Exception | None = None
        followers = self._followers
        for callback in list(followers):
            try:
                for text in texts:
                    callback(line._replace(text=text))
                    if callback not in followers:  # it has what it waited for
                        break
            except Exception as exc:
                if callback in self._followers:
                    self._followers.remove(callback)
                failure = failure or exc
        if failure is not None:
            raise failure

    def last(
        self,
        count: int,
        stream: str | None = None,
        since: int | None = None,
        most_bytes: int | None = None,
    ) -> list[Line]:
        """The last ``count`` lines (of ``stream`` only, if given; added after the
        ``mark`` ``since``, if given; no more than about ``most_bytes`` of text, if
        given: the newest whole lines within it), oldest first."""
        lines: list[Line] = []
        if count <= 0:
            return lines
        size = 0
        for chunk_stream, when, data, start, stop, mark in reversed(self._chunks):
            if since is not None and mark <= since:
                break
            if stream is not None and chunk_stream != stream:
                continue
            end = stop - 1  # its last newline
            while end >= start and len(lines) < count:
                newline = data.rfind(b"\n", start, end)
                first = newline + 1 if newline >= 0 else start
                if most_bytes is not None and lines and size + end - first + 1 > most_bytes:
                    lines.reverse()
                    return lines
                size += end - first + 1
                lines.append(Line(chunk_stream, when, data[first:end]))
                end = newline
            if len(lines) >= count:
                break
        lines.reverse()
        return lines

    def after(self, since: int, most: int, most_bytes: int) -> tuple[list[Line], int]:
        """The lines added after the ``mark`` ``since``, oldest first, in whole chunks
        up to the first that reaches ``most`` lines or ``most_bytes`` bytes (it may
        pass them by one chunk's), and the mark of the last chunk given: the
        ``since`` of the next call, which goes on where this one stopped rather than
        skipping to the newest lines. Only the chunks after ``since`` are looked at."""
        newer = []
        for chunk in reversed(self._chunks):
            if chunk[5] <= since:
                break
            newer.append(chunk)
        lines: list[Line] = []
        size = 0
        cursor = since
        for chunk_stream, when, data, start, stop, mark in reversed(newer):
            if lines and (len(lines) >= most or size >= most_bytes):
                break
            lines.extend(
                Line(chunk_stream, when, text) for text in data[start : stop - 1].split(b"\n")
            )
            size += stop - start
            cursor = mark
        return lines, cursor if lines else self.mark

    def follow(self, callback: Callable[[Line], None]) -> Callable[[], None]:
        """Call ``callback`` with every line added from now on; returns the function that
        stops it (calling it twice is harmless)."""
        self._followers.append(callback)

        def unfollow() -> None:
            if callback in self._followers:
                self._followers.remove(callback)

        return unfollow


def _shorten(data: bytes, start: int, stop: int, most: int) -> tuple[bytes, int, int]:
    """``data[start:stop]`` (whole lines) with each line longer than ``most`` bytes (its
    newline counted) cut to its last ``most``, as a new bytes; as given when none is.
    Steps of about ``most`` bytes, not one per line."""
    pieces: list[bytes] = []
    keep = pos = start
    while stop - pos > most:
        newline = data.rfind(b"\n", pos, pos + most)
        if newline >= 0:  # the lines up to it fit
            pos = newline + 1
            continue
        end = data.find(b"\n", pos + most) + 1  # the line at pos does not: its end
        pieces.append(data[keep:pos])
        keep, pos = end - most, end
    if not pieces:
        return data, start, stop
    pieces.append(data[keep:stop])
    short = b"".join(pieces)
    return short, 0, len(short)


def _cut_lines(data: bytes) -> tuple[bytes, bytes]:
    """``data`` as (its complete lines, every line longer than MAX_LINE cut into pieces of
    MAX_LINE bytes plus a newline; the partial last line, at most MAX_LINE bytes). Steps
    of about MAX_LINE bytes, not one per line."""
    pieces: list[bytes] = []
    start = pos = 0
    size = len(data)
    while size - pos > MAX_LINE:
        newline = data.rfind(b"\n", pos, pos + MAX_LINE + 1)
        if newline >= 0:
            pos = newline + 1
        else:
            pos += MAX_LINE
            pieces.append(data[start:pos])
            pieces.append(b"\n")
            start = pos
    end = max(data.rfind(b"\n", pos) + 1, pos)
    pieces.append(data[start:end])
    return b"".join(pieces), data[end:]


class Capture:
    """One program instance's output. Feed it what the pipes give.

    ``merged``: stderr shares stdout's pipe, so everything is stream "stdout" and goes to
    the ``stdout`` target. A partial last line waits for its end (or for EOF,
    ``close_stream``); one longer than MAX_LINE is cut there and goes out.

    Per chunk fed, the work does not grow with the number of lines (without timestamps):
    the bytes are neither split nor copied, but passed on as a slice; a line that was
    waiting is completed by a small separate write.
    """

    def __init__(
        self,
        stdout: Target | None,
        stderr: Target | None,
        ring: Ring,
        *,
        merged: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stdout = stdout
        self.stderr = stdout if merged else stderr
        self.ring = ring
        self.merged = merged
        self._clock = clock
        self._targets = {"stdout": self.stdout, "stderr": self.stderr}
        self._waiting = {"stdout": b"", "stderr": b""}
        self.dropped = 0  # bytes of its output the targets dropped (a file may be shared)

    def set_targets(self, stdout: Target | None, stderr: Target | None) -> None:
        """New targets (a reload changed where the output goes); closing the old
        ones is the caller's business."""
        self.stdout = stdout
        self.stderr = stdout if self.merged else stderr
        self._targets = {"stdout": self.stdout, "stderr": self.stderr}

    def feed(self, stream: str, data: bytes) -> None:
        """Take what ``stream`` ("stdout" or "stderr") gave: its complete lines go to the
        target and the ring now, a partial last line waits for its end."""
        if self.merged:
            stream = "stdout"
        try:
            waiting = self._waiting[stream]
        except KeyError:
            raise ValueError(f"unknown stream {stream!r}: expected stdout or stderr") from None
        size = len(data)
        end = data.rfind(b"\n") + 1
        if end == size and not waiting and 0 < size <= MAX_LINE + 1:  # the common case
            when = self._clock()
            target = self._targets[stream]
            if target is not None:
                self.dropped += target.write(data, when)
            self.ring._add(stream, when, data, 0, size)
            return
        start = 0
        head = b""
        if waiting:
            self._waiting[stream] = b""
            if not end:  # the waiting line goes on
                data, size = waiting + data, size + len(waiting)
            else:  # its end: the line goes out as a head of its own (not copying `data`)
                start = data.find(b"\n") + 1
                head = waiting + data[:start]
                if len(head) > MAX_LINE + 1:
                    head = _cut_lines(head)[0]
        if end - start > MAX_LINE + 1 or size - end > MAX_LINE:  # perhaps a line to cut
            if head:
                self._emit(stream, head, 0, len(head))
                head = b""
            data, rest = _cut_lines(data[start:] if start else data)
            start, end = 0, len(data)
        else:
            rest = data[end:] if end < size else b""
        self._waiting[stream] = rest
        if end > start or head:
            self._emit(stream, data, start, end, head)

    def close_stream(self, stream: str) -> None:
        """``stream`` reached EOF: a line still waiting goes out, with b"\\n" added."""
        if self.merged:
            stream = "stdout"
        waiting = self._waiting.get(stream)
        if waiting:
            self._waiting[stream] = b""
            data = waiting + b"\n"
            self._emit(stream, data, 0, len(data))

    def _emit(self, stream: str, data: bytes, start: int, stop: int, head: bytes = b"") -> None:
        """Pass on ``head`` (whole lines), then ``data[start:stop]``."""
        when = self._clock()
        target = self._targets[stream]
        if target is not None:
            body = data if start == 0 and stop == len(data) else memoryview(data)[start:stop]
            if head:
                self.dropped += target.write(body, when, head)
            else:
                self.dropped += target.write(body, when)
        if head:
            self.ring._add(stream, when, head, 0, len(head))
        if stop > start:
            self.ring._add(stream, when, data, start, stop)

    @property
    def stderr_stream(self) -> str:
        """The stream stderr's lines are in: "stderr", or "stdout" when merged."""
        return "stdout" if self.merged else "stderr"

    def stderr_tail(self, count: int, since: int | None = None) -> list[str]:
        """The last ``count`` lines of stderr in the ring, decoded (errors replaced), for
        failure messages; with ``merged``, the last lines of the one merged stream.
        ``since``: only lines added after that ``Ring.mark``."""
        lines = self.ring.last(count, self.stderr_stream, since)
        return [line.text.decode(errors="replace") for line in lines]
