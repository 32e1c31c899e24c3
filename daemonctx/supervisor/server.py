"""The control socket's server side: binding it safely, connections, and who may do what.

- **One owner.** A lock file beside the socket (``control.sock.lock``), held
  with ``flock`` for the supervisor's life, decides who owns the socket: the
  holder is alive, so its socket is live and is never taken over; without a
  holder any socket file there is stale and is replaced. A second supervisor
  fails at once, naming the first one's pid (learnt from the live socket's
  ``SO_PEERCRED``). A dead supervisor's guard holds the lock until it has
  killed what that supervisor left (``guard.py``): while nobody listens on the
  socket, the lock is waited for (``LOCK_WAIT``). A lock still held on a lock
  file removed since (``rm -r`` of the directory) counts as held: its holder
  runs, out of reach.
- **No window wider than the final mode.** The socket is created by ``bind``
  under a umask that gives exactly 0600 (0660 when a group may connect, with
  the effective gid switched to that group around ``bind`` when we are root;
  others bind it 0600, then chown and chmod it), and its directory must not be
  writable by other users. With both a control and an observer group it is
  0666: a socket has one group, and every request is checked anyway.
- **Credentials, per connection.** ``SO_PEERCRED`` (and ``SO_PEERGROUPS``) at
  accept: root and our own uid may run everything, members of the control
  group too, members of the observer group the read-only commands; anyone else
  gets ``permission-denied`` for every request, and nothing runs. A reload that
  changes the groups judges every open connection again, by the same
  credentials.
- **Never blocked by a client.** Non-blocking sockets, requests bounded by the
  protocol's ``MAX_LINE``, answers queued in order and dropped with the
  connection when a client stops reading, idle connections closed. A
  connection with ``MAX_PENDING_REQUESTS`` unanswered is not read from until
  answers go out: its client's writes block in its kernel, not in our memory.
"""

from __future__ import annotations

import errno as errnos
import fcntl
import grp
import logging
import os
import pwd
import socket
import stat
import struct
from typing import TYPE_CHECKING, Callable

from ..errors import DaemonError, escaped_traceback, one_line
from ..paths import UnsafePathError, check_path
from . import protocol
from .guard import lock_holder, orphaned_holder
from .protocol import BadLine, Request

if TYPE_CHECKING:
    from .loop import EventLoop, Timer
    from .protocol import Line

__all__ = [
    "ADMIN",
    "OBSERVER",
    "Connection",
    "ControlServer",
    "ControlSocketError",
    "Peer",
    "check_control_path",
    "check_free",
]

ADMIN = "admin"
OBSERVER = "observer"

#: A connection with no request in progress is closed after this many seconds,
#: and so is one whose client has read none of its answers for as long.
IDLE_TIMEOUT = 60.0
#: Answers a client has not read yet: with more than this still unread when
#: another answer is ready, the connection is dropped (one answer of any size
#: goes out to a client that reads it).
MAX_PENDING_OUTPUT = 4 * 1024 * 1024
#: The same across every connection of users who are not admins: past it, one
#: of theirs is dropped when another answer is ready for it (admins' are neither
#: counted nor dropped), so that 448 of them cannot make the supervisor hold 448
#: answers of the largest size.
MAX_OTHERS_PENDING_OUTPUT = 64 * 1024 * 1024
#: Requests of one connection not answered yet (``tail`` long-polls, a ``stop``
#: under way): at this many, it is not read from until answers go out.
MAX_PENDING_REQUESTS = 16
MAX_CONNECTIONS = 512
#: Connections one user who is not an admin may hold, and those kept for admins
#: whatever the others hold: an observer cannot shut root out.
MAX_CONNECTIONS_PER_USER = 64
ADMIN_RESERVE = 64
#: Out of descriptors (EMFILE, ENFILE), the listener rests this long, or until a
#: connection closes: its clients wait in the backlog, and the loop does not spin.
ACCEPT_PAUSE = 0.25
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)

log = logging.getLogger("daemonctx.supervisor")


def _nothing() -> None:
    """A closed connection's event handler."""


class ControlSocketError(DaemonError, OSError):
    """The control socket cannot be used: one line naming the path and why."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Peer:
    """Who is on the other end of a connection, as the kernel saw it at connect."""

    __slots__ = ("gid", "groups", "pid", "role", "uid")

    def __init__(self, pid: int, uid: int, gid: int, groups: tuple[int, ...]) -> None:
        self.pid, self.uid, self.gid, self.groups = pid, uid, gid, groups
        self.role: str | None = None

    def __repr__(self) -> str:
        return f"uid {self.uid} pid {self.pid}"


def _group_id(name: str | None) -> int | None:
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    return grp.getgrnam(name).gr_gid


def _peer(sock: socket.socket) -> Peer:
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    groups: tuple[int, ...] = ()
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * 256)
        groups = struct.unpack(f"{len(raw) // 4}I", raw)
    except OSError:  # before Linux 4.13: the user's groups from the group database
        try:
            name = pwd.getpwuid(uid).pw_name
            groups = tuple(os.getgrouplist(name, gid))
        except (KeyError, OSError):
            groups = ()
    return Peer(pid, uid, gid, groups)


def check_control_path(path: str) -> str:
    """Check the control socket's directory (exists, and no other user can write
    it or anything above it) before anything starts. Returns ``path``."""
    directory = os.path.dirname(path) or "."
    try:
        check_path(directory, "control socket directory")
        st = os.stat(directory)
    except UnsafePathError as exc:
        raise ControlSocketError(errnos.EPERM, str(exc)) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ControlSocketError(
            exc.errno or errnos.EIO, f"control socket {path}: {directory}: {reason}"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ControlSocketError(
            errnos.ENOTDIR, f"control socket {path}: {directory} is not a directory"
        )
    if st.st_mode & 0o022:
        raise ControlSocketError(
            errnos.EPERM,
            f"control socket {path}: {directory} is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); use a directory only the supervisor can write",
        )
    return path


def live_owner(path: str) -> int | None:
    """The pid of the process listening on ``path``, or None when nothing listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return None
        return int(_peer(probe).pid)


#: How long a held lock is waited for while nobody listens on the socket: a dead
#: supervisor's guard holds it while it kills what that supervisor left.
LOCK_WAIT = 10.0


def _lock(fd: int, operation: int, path: str) -> None:
    """``flock(fd, operation)`` without blocking, waited for while the holder
    does not listen on ``path`` (a guard at work, or a supervisor starting), up
    to ``LOCK_WAIT``. Raises ``ControlSocketError`` naming the owner."""
    import time

    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline or live_owner(path) is not None:
                raise _taken(path) from None
        time.sleep(0.01)


def _taken(path: str) -> ControlSocketError:
    owner = live_owner(path)
    if owner is None:  # the lock is held, and nobody has listened all this time
        holder = lock_holder(path)
        if holder is not None:
            return _unreachable(path, *holder)
    who = f" (pid {owner})" if owner is not None else ""
    return ControlSocketError(
        errnos.EADDRINUSE, f"control socket {path}: another supervisor{who} is running there"
    )


def _unreachable(path: str, pid: int, guard: bool) -> ControlSocketError:
    """The error for a lock held by ``pid`` while nothing listens on ``path``."""
    if guard:
        message = (
            f"the guard (pid {pid}) of a supervisor that died still holds it, stopping what "
            "that supervisor left; start again once it has exited"
        )
    else:
        message = (
            f"another supervisor (pid {pid}) runs there, but its socket file was removed "
            f"and nothing can reach it: stop it first (kill {pid})"
        )
    return ControlSocketError(errnos.EADDRINUSE, f"control socket {path}: {message}")


def _group_and_mode(control_gid: int | None, observer_gid: int | None) -> tuple[int | None, int]:
    """The socket's group and mode: 0600; 0660 with the one group that may connect;
    0666 when two different groups may (a socket has one group: every request is
    checked anyway)."""
    groups = {gid for gid in (control_gid, observer_gid) if gid is not None}
    if not groups:
        return None, 0o600
    if len(groups) == 1:
        return groups.pop(), 0o660
    return None, 0o666


def check_free(path: str) -> None:
    """Raise ``ControlSocketError`` (naming its pid) when a live supervisor owns the
    socket at ``path``: its lock is held, or the lock of a lock file removed
    since. For the foreground, before anything starts."""
    _check_not_orphaned(path)
    try:
        # O_NONBLOCK: a FIFO planted there must not hang us in open().
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: nobody ever took it, or the listen will say why
    try:
        _check_regular(fd, path)
        _lock(fd, fcntl.LOCK_SH, path)
    finally:
        os.close(fd)


def _check_regular(fd: int, path: str) -> None:
    """Refuse a lock file that is not a regular file (a FIFO, a directory, a device)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise ControlSocketError(
            errnos.EEXIST, f"control socket {path}: {path}.lock is not a regular file"
        )


def _check_not_orphaned(path: str) -> None:
    """Raise ``ControlSocketError`` when a process still holds the lock of a lock
    file that was at ``path + ".lock"`` and has been removed (a tmp cleaner, an
    ``rm -r`` of the socket's directory): a supervisor, or a dead one's guard at
    work. Another one beside it would run every program twice, and sweep the
    first one's programs as a dead supervisor's."""
    holder = orphaned_holder(path)
    if holder is None:
        return
    if not holder[1] and live_owner(path) is not None:
        raise _taken(path)  # its socket is still there: it answers
    raise _unreachable(path, *holder)


class Connection:
    """One client: a decoder for its requests, its answers in order, its role."""

    def __init__(self, server: ControlServer, sock: socket.socket, peer: Peer) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.decoder = protocol.LineDecoder()
        self.slots: list[bytes | None] = []  # answers in request order; None: pending
        self.slot_bytes = 0  # the bytes of the answers in ``slots``, waiting on an earlier one
        self.output = bytearray()
        self.held = b""  # read past MAX_PENDING_REQUESTS requests: framed once answers go out
        self.resume: Timer | None = None  # armed to frame ``held`` at the next turn
        self.closed = False
        self.reading = True
        self.draining = False  # answers were left unsent at the last write()
        self.idle_timer: Timer | None = None
        self.idle_deadline = 0.0
        self.interest: tuple[bool, bool] | None = None  # (read, write) as the loop watches it
        self.writes = 0  # write() calls: each ends with the server's update()
        self.counted = peer.role != ADMIN  # its output in the server's others_output
        self.on_ready = lambda: server._ready(self)

    @property
    def busy(self) -> bool:
        return bool(self.slots) or bool(self.output) or bool(self.held)

    def answer_later(self) -> Callable[[bytes], None]:
        """Reserve the next answer's place; call the returned function with it."""
        index = len(self.slots)
        self.slots.append(None)
        base = self._base

        def respond(data: bytes) -> None:
            if self.closed:
                return
            try:
                self._store(index - (self._base - base), data)
            except Exception as exc:  # a bug: this connection ends, the supervisor goes on
                self.server.failed(self, exc)

        return respond

    _base = 0  # answers already moved out of ``slots``, so indexes stay valid

    def answer(self, data: bytes) -> None:
        """Answer the request being handled, now."""
        if not self.slots and not self.output and not self.closed:  # nothing before it
            self.slots.append(None)
            try:
                self._store(0, data)
            except Exception as exc:  # a bug: this connection ends, the supervisor goes on
                self.server.failed(self, exc)
            return
        self.answer_later()(data)

    def _store(self, slot: int, data: bytes) -> None:
        """Keep the answer ``data`` in its ``slot``; send what is in order."""
        # Checked before an answer is kept, not after a send: a client reading
        # one large answer is not dropped, one that does not read is. What is
        # held counts answers waiting behind an earlier one (a long-poll) as
        # much as those queued to go. Across the non-admins' connections, a
        # first answer counts too: one each on 448 connections is 448 of the largest.
        server = self.server
        if len(self.output) + self.slot_bytes > MAX_PENDING_OUTPUT or (
            self.counted and server.others_output > MAX_OTHERS_PENDING_OUTPUT
        ):
            server.close(self)
            return
        if slot == 0 and len(self.slots) == 1 and not self.output and not self.closed:
            self._send_alone(data)
            return
        self.slots[slot] = data
        self.slot_bytes += len(data)
        if self.counted:
            server.others_output += len(data)
        if slot == 0:
            self._flush_slots()

    def _send_alone(self, data: bytes) -> None:
        """The usual answer: the only one awaited, nothing unsent before it. Sent
        at once, as ``_flush_slots`` and ``write`` would, in fewer steps."""
        self.slots.clear()
        self._base += 1
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.server.close(self)
            return
        if sent < len(data):  # the client reads slowly: the long way, from here
            self.output += data[sent:]
            if self.counted:
                self.server.others_output += len(data) - sent
            self.write()
            return
        self.writes += 1
        self.draining = False
        self.server.update(self)

    def _flush_slots(self) -> None:
        moved = 0
        for data in self.slots:
            if data is None:
                break
            self.output += data
            self.slot_bytes -= len(data)
            moved += 1
        if moved:
            del self.slots[:moved]
            self._base += moved
            self.write()

    def write(self) -> None:
        if self.closed:
            return
        self.writes += 1
        sent_some = False
        while self.output:
            try:
                sent = self.sock.send(self.output)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.server.close(self)
                return
            del self.output[:sent]
            if self.counted:
                self.server.others_output -= sent
            sent_some = True
        if self.output and (sent_some or not self.draining):
            # Answers wait on the client: it has the idle timeout to read some.
            self.idle_deadline = self.server.loop.time() + self.server.idle_timeout
        self.draining = bool(self.output)
        self.server.update(self)


class ControlServer:
    """Listen on ``path``; hand each request to ``handler(connection, request)``.

    ``handler`` must answer each request exactly once, at once or later
    (``connection.answer`` / ``connection.answer_later``); permission checks are
    done before it is called. ``read_only`` names the commands observers may run.
    """

    def __init__(
        self,
        loop: EventLoop,
        path: str,
        handler: Callable[[Connection, Request], None],
        *,
        control_group: str | None = None,
        observer_group: str | None = None,
        read_only: Callable[[str], bool] = lambda command: command in protocol.READ_ONLY_COMMANDS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.loop = loop
        self.path = path
        self.handler = handler
        self.control_gid = _group_id(control_group)
        self.observer_gid = _group_id(observer_group)
        self.read_only = read_only
        self.idle_timeout = idle_timeout
        self.connections: dict[int, Connection] = {}
        self.others_output = 0  # answers held for non-admins' connections, in bytes
        self._listener: socket.socket | None = None
        self._resting: Timer | None = None  # out of descriptors: accept again then
        self._lock_fd: int | None = None
        self._uid = os.geteuid()

    # -- the socket -----------------------------------------------------------------------

    @property
    def lock_fd(self) -> int:
        """The held lock's fd (``listen`` took it): the guard keeps a copy."""
        assert self._lock_fd is not None
        return self._lock_fd

    def _lock_path(self) -> str:
        return self.path + ".lock"

    def _take_lock(self) -> None:
        path = self._lock_path()
        flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise ControlSocketError(
                exc.errno or errnos.EIO, f"control socket {self.path}: {path}: {exc.strerror}"
            ) from None
        try:
            _check_regular(fd, self.path)
            _lock(fd, fcntl.LOCK_EX, self.path)
            _check_not_orphaned(self.path)  # the lock may be a new file's
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def listen(self) -> None:
        """Take the socket: the lock, a stale socket file removed, then ``bind``."""
        check_control_path(self.path)
        self._take_lock()
        try:
            self._bind()
        except BaseException:
            self._release_lock()
            raise

    def _bind(self) -> None:
        path = self.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise ControlSocketError(
                    errnos.EEXIST, f"control socket {path}: a file that is not a socket is there"
                )
            os.unlink(path)  # we hold the lock: nobody listens on it
        group, mode = self._group_and_mode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # Born with its final mode (root switches its gid for the bind) or
        # narrower (0600, then chown, then chmod): never wider than ``mode``.
        switched = group is not None and self._uid == 0
        born = mode if group is None or switched else 0o600
        old_mask = os.umask(0o777 & ~born)
        try:
            if switched:
                assert group is not None
                os.setegid(group)
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise ControlSocketError(
                exc.errno or errnos.EIO, f"control socket {path}: {exc.strerror}"
            ) from None
        finally:
            os.umask(old_mask)
            if switched:
                os.setegid(os.getgid())
        if group is not None and not switched:
            try:
                os.chown(path, -1, group)
                os.chmod(path, mode)
            except OSError as exc:
                sock.close()
                os.unlink(path)
                raise ControlSocketError(
                    exc.errno or errnos.EPERM,
                    f"control socket {path}: cannot give it group {group}: {exc.strerror}",
                ) from None
        sock.listen(128)
        sock.setblocking(False)
        self._listener = sock
        self.loop.add_reader(sock.fileno(), self._accept)

    def set_groups(self, control_group: str | None, observer_group: str | None) -> None:
        """A reload changed the groups: every connection gets its role by them
        (open ones too: a member removed loses its rights at once), and the
        socket its new group and mode (narrowed to 0600 first, never wider)."""
        control_gid, observer_gid = _group_id(control_group), _group_id(observer_group)
        if self._listener is not None:  # first: when it fails, nothing has changed
            self._give_socket(*_group_and_mode(control_gid, observer_gid))
        self.control_gid, self.observer_gid = control_gid, observer_gid
        for connection in list(self.connections.values()):
            peer = connection.peer
            peer.role = self._role(peer)
            if peer.role is None and connection.reading:  # no right left: answered, then closed
                connection.reading = False
                connection.held = b""
                self.update(connection)

    def _give_socket(self, group: int | None, mode: int) -> None:
        """The socket file's new group and mode, narrowed to 0600 in between. When a
        step fails (a chown to a group a non-root supervisor is not in), its old
        group and mode are put back, and the error raised."""
        before = os.stat(self.path)
        try:
            os.chmod(self.path, 0o600)
            os.chown(self.path, -1, os.getegid() if group is None else group)
            os.chmod(self.path, mode)
        except OSError:
            try:
                os.chown(self.path, -1, before.st_gid)
                os.chmod(self.path, stat.S_IMODE(before.st_mode))
            except OSError:
                pass  # moved or gone meanwhile: nothing to put back
            raise

    def _group_and_mode(self) -> tuple[int | None, int]:
        return _group_and_mode(self.control_gid, self.observer_gid)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close_all(self) -> None:
        """Remove the socket file, close it and every connection, release the lock.
        The file goes first: a client whose connection closes finds none, the sign
        of an orderly end (one left behind says the supervisor was killed)."""
        listener = self._listener
        if listener is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.loop.cancel(self._resting)
            self._resting = None
            self.loop.remove_reader(listener.fileno())
            listener.close()
            self._listener = None
        for connection in list(self.connections.values()):
            self.close(connection)
        self._release_lock()

    # -- connections --------------------------------------------------------------------

    def _role(self, peer: Peer) -> str | None:
        if peer.uid in (0, self._uid):
            return ADMIN
        ids = {peer.gid, *peer.groups}
        if self.control_gid is not None and self.control_gid in ids:
            return ADMIN
        if self.observer_gid is not None and self.observer_gid in ids:
            return OBSERVER
        return None

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):  # a burst of clients, a bounded amount of work per event
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errnos.EMFILE, errnos.ENFILE, errnos.ENOBUFS, errnos.ENOMEM):
                    self._rest()  # the client waits in the backlog
                return
            if len(self.connections) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            try:
                peer = _peer(sock)
            except OSError:
                sock.close()
                continue
            peer.role = self._role(peer)
            if peer.role != ADMIN and not self._room_for(peer.uid):
                sock.close()
                continue
            connection = Connection(self, sock, peer)
            self.connections[sock.fileno()] = connection
            self.update(connection)

    def _room_for(self, uid: int) -> bool:
        """Whether a user who is not an admin may open one more connection."""
        others = [c.peer.uid for c in self.connections.values() if c.peer.role != ADMIN]
        return (
            len(others) < MAX_CONNECTIONS - ADMIN_RESERVE
            and others.count(uid) < MAX_CONNECTIONS_PER_USER
        )

    def _rest(self) -> None:
        """Stop watching the listener (it stays readable while its client waits,
        and the loop would spin) until ``ACCEPT_PAUSE`` has passed or a
        connection closes."""
        listener = self._listener
        if listener is None or self._resting is not None:
            return
        self.loop.remove_reader(listener.fileno())
        self._resting = self.loop.call_at(self.loop.time() + ACCEPT_PAUSE, self._rested)

    def _rested(self) -> None:
        """Watch the listener again, and accept what waits."""
        self._resting = None
        listener = self._listener
        if listener is not None:
            self.loop.add_reader(listener.fileno(), self._accept)
            self._accept()

    def update(self, connection: Connection) -> None:
        """Watch the connection for what it waits on: requests while we may read
        (fewer than MAX_PENDING_REQUESTS unanswered), writability while answers
        wait; arm the idle timer when it has nothing, or answers wait on its client."""
        if connection.closed:
            return
        # Backpressure: not read while MAX_PENDING_REQUESTS wait for answers,
        # or while requests read already wait to be framed (``held``).
        room = len(connection.slots) < MAX_PENDING_REQUESTS
        if connection.held and room and connection.resume is None:
            connection.resume = self.loop.call_at(
                self.loop.time(), lambda: self._resume(connection)
            )
        interest = (connection.reading and room and not connection.held, bool(connection.output))
        if interest != connection.interest:  # each change is a system call
            self.loop.watch(
                connection.sock.fileno(), connection.on_ready, read=interest[0], write=interest[1]
            )
            connection.interest = interest
        if connection.busy:
            if connection.output and connection.idle_timer is None:  # a client not reading
                connection.idle_timer = self.loop.call_at(
                    connection.idle_deadline, lambda: self._idle(connection)
                )
            return  # _idle leaves a connection with requests under way alone
        if not connection.reading:  # the client closed its end and has every answer
            self.close(connection)
            return
        # One timer per connection, moved on lazily: not a new one per request.
        connection.idle_deadline = self.loop.time() + self.idle_timeout
        if connection.idle_timer is None:
            connection.idle_timer = self.loop.call_at(
                connection.idle_deadline, lambda: self._idle(connection)
            )

    def _idle(self, connection: Connection) -> None:
        """The idle timer: close the connection if nothing came since its deadline,
        or if its client read none of its answers since."""
        connection.idle_timer = None
        if connection.closed or (connection.busy and not connection.output):
            return  # update() arms it again once the connection is idle
        if self.loop.time() < connection.idle_deadline:
            connection.idle_timer = self.loop.call_at(
                connection.idle_deadline, lambda: self._idle(connection)
            )
            return
        self.close(connection)

    def _ready(self, connection: Connection) -> None:
        try:
            if connection.output:
                connection.write()
                if connection.closed:
                    return
            if connection.interest is not None and connection.interest[0]:
                self._read(connection)
        except Exception as exc:  # a bug: this connection ends, the supervisor goes on
            self.failed(connection, exc)

    def _read(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(connection)
            return
        if data:
            self._take(connection, data)
        else:
            connection.reading = False
            self._serve(connection, connection.decoder.feed_eof())

    def _take(self, connection: Connection, data: bytes) -> None:
        """Frame and serve what was read, up to MAX_PENDING_REQUESTS unanswered
        requests; keep the rest, unframed, in ``held`` (at most one read's worth)."""
        room = MAX_PENDING_REQUESTS - len(connection.slots)
        if data.count(b"\n") > room:  # a line per request at most: blank ones count too
            end = -1
            for _ in range(max(room, 0)):
                end = data.index(b"\n", end + 1)
            data, connection.held = data[: end + 1], data[end + 1 :]
        self._serve(connection, connection.decoder.feed(data))

    def _resume(self, connection: Connection) -> None:
        """Answers went out: frame what ``held`` kept, then read again."""
        connection.resume = None
        if connection.closed:
            return
        data, connection.held = connection.held, b""
        try:
            self._take(connection, data)
        except Exception as exc:  # a bug: this connection ends, the supervisor goes on
            self.failed(connection, exc)

    def failed(self, connection: Connection, error: Exception) -> None:
        """A bug met while serving ``connection`` (an exception no request should
        raise): log it, send its client the answers ready and an ``internal``
        error, and close it. The supervisor and its other clients go on."""
        try:
            log.error(
                "internal error on the control connection of %s: %s: %s (closed)\n%s",
                connection.peer,
                type(error).__name__,
                one_line(str(error)),
                escaped_traceback(error),
            )
            if not connection.closed:
                reason = f"internal error: {type(error).__name__}: {error}"[:200]
                farewell = protocol.encode_error(None, protocol.INTERNAL, reason)
                connection.sock.send(bytes(connection.output) + farewell)
        except Exception:  # the close below is what matters now
            pass
        self.close(connection)

    def _serve(self, connection: Connection, lines: list[Line]) -> None:
        writes = connection.writes
        for line in lines:
            if connection.closed:
                return
            if isinstance(line, BadLine):
                connection.answer(line.response)
            else:
                self._dispatch(connection, line)
        if not connection.reading:  # refused: nothing more of it is served
            connection.held = b""
        # An answer written since updated the connection, unless it stopped
        # reading afterwards (a caller refused everything), or requests were
        # held back: one update, not two.
        if connection.writes == writes or not connection.reading or connection.held:
            self.update(connection)

    def _dispatch(self, connection: Connection, request: Request) -> None:
        role = connection.peer.role
        if role is None or (role == OBSERVER and not self.read_only(request.command)):
            who = f"uid {connection.peer.uid}"
            what = "any command" if role is None else f"{request.command!r}"
            connection.answer(
                protocol.encode_error(
                    request.id,
                    protocol.PERMISSION_DENIED,
                    f"permission denied: {who} may not run {what}",
                )
            )
            if role is None:  # nothing more to say to it: closed once answered
                connection.reading = False
            return
        self.handler(connection, request)

    def close(self, connection: Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        if connection.counted:
            self.others_output -= len(connection.output) + connection.slot_bytes
        # Its buffers go now, not when the last reference to it does (a
        # long-poll's answer function, held until it fires).
        connection.output = bytearray()
        connection.slots = []
        connection.slot_bytes = 0
        connection.held = b""
        connection.decoder = protocol.LineDecoder()
        self.loop.cancel(connection.idle_timer)
        self.loop.cancel(connection.resume)
        connection.idle_timer = connection.resume = None
        connection.on_ready = _nothing  # it referred to the connection: a cycle left to the gc
        fd = connection.sock.fileno()
        self.loop.remove_reader(fd)
        self.connections.pop(fd, None)
        connection.sock.close()
        if self._resting is not None:  # a descriptor is free: accept at the next turn
            self.loop.cancel(self._resting)
            self._resting = self.loop.call_at(self.loop.time(), self._rested)
