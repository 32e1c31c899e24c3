"""sd_notify without libsystemd: tell a service manager about our state.

systemd (and other managers that speak the protocol) set ``NOTIFY_SOCKET``
to an AF_UNIX datagram socket, a path or ``@abstract`` name. Each message is
newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``STATUS=...``,
``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``MAINPID=...``. Without
``NOTIFY_SOCKET`` every call returns False at once, without importing socket.
"""

from __future__ import annotations

import os

from .errors import DaemonOSEnvironmentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Callable

__all__ = [
    "NotifyListener",
    "notify",
    "notify_socket_address",
    "watchdog_problem",
    "watchdog_seconds",
]


def notify_socket_address() -> str | None:
    """The address in ``NOTIFY_SOCKET`` (``@name`` becomes an abstract address), or None."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    return address


#: systemd's USEC_INFINITY: a WATCHDOG_USEC from it up is no interval.
_USEC_INFINITY = 2**64 - 1


def watchdog_seconds() -> float | None:
    """The watchdog interval the service manager asks of this process: send
    ``notify("WATCHDOG=1")`` more often than that (half of it, as systemd advises).
    None without one: no ``WATCHDOG_USEC`` (systemd's ``WatchdogSec=``, daemonctx
    supervise's ``watchdog``), or a ``WATCHDOG_PID`` that names another process (a
    child that inherited its parent's environment). sd_watchdog_enabled(3). None
    too for a value that cannot be used, which sd_watchdog_enabled refuses (it
    arms no watchdog): ``watchdog_problem()`` says what is wrong with it."""
    usec, _problem = _watchdog()
    return None if usec is None else usec / 1_000_000


def watchdog_problem() -> str | None:
    """Why a ``WATCHDOG_USEC`` or ``WATCHDOG_PID`` that is set cannot be used (one
    line naming the variable and what it holds), or None when it can, or is unset."""
    return _watchdog()[1]


def _watchdog() -> tuple[int | None, str | None]:
    """WATCHDOG_USEC as sd_watchdog_enabled(3) reads it: ASCII digits, from 1 to
    USEC_INFINITY - 1 (whatever else ``int`` takes, "²" or 5000 digits, is refused),
    for this process when WATCHDOG_PID is set. (microseconds, None), or (None, why)."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:  # unset, or emptied to unset it
        return None, None
    value = _decimal(usec, len(str(_USEC_INFINITY)))
    if value is None or not 0 < value < _USEC_INFINITY:
        reason = f"not a number of microseconds from 1 to {_USEC_INFINITY - 1}"
        return None, f"ignoring WATCHDOG_USEC={_shown(usec)}: {reason}"
    pid = os.environ.get("WATCHDOG_PID")
    if pid is None:
        return value, None
    number = _decimal(pid, 10)
    if number is None or number == 0:
        return None, f"ignoring WATCHDOG_USEC: WATCHDOG_PID={_shown(pid)} is not a process id"
    return (value, None) if number == os.getpid() else (None, None)


def _decimal(text: str, digits: int) -> int | None:
    """``text`` as a number of at most ``digits`` ASCII digits, or None."""
    if not (0 < len(text) <= digits and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _shown(value: str) -> str:
    """A variable's value for a message: quoted, escaped, cut after 40 characters."""
    if len(value) <= 40:
        return repr(value)
    return f"{value[:40]!r}... ({len(value)} characters)"


def notify(*lines: str, **fields: object) -> bool:
    """Send ``lines`` (``"READY=1"``) and ``fields`` (``STATUS="Loading"``) in one datagram.

    Returns True when a message was sent, False when ``NOTIFY_SOCKET`` is not set,
    or names a manager that is gone (no such path, nobody bound there): as
    sd_notify(3)'s caller ignores its error, the program goes on, but the first
    time it is said on stderr (a manager waiting for READY=1 would otherwise time
    out in silence). Raises ``DaemonOSEnvironmentError`` for an address that is
    not one (neither absolute nor ``@name``, too long) or any other failure.
    """
    address = notify_socket_address()
    if address is None:
        return False
    parts = [*lines, *(f"{key}={value}" for key, value in fields.items())]
    for part in parts:
        if "=" not in part or "\n" in part:
            raise ValueError(f"not a KEY=VALUE notification line: {part!r}")
    where = os.environ.get("NOTIFY_SOCKET")
    if not address.startswith(("/", "\0")):  # sd_notify(3) refuses it too (EINVAL)
        import errno

        raise DaemonOSEnvironmentError(
            errno.EINVAL,
            f"cannot notify the service manager at {where!r}: not an absolute path or @name",
        )
    import socket

    payload = "\n".join(parts).encode()
    connected = _connected
    try:
        if connected is not None and connected[0] == where:
            connected[1].send(payload)  # connected before a chroot: connect_notify_socket
        else:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, address)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        _say_gone_once(f"cannot notify the service manager at {where!r}: {exc.strerror}")
        return False
    except OSError as exc:
        code, reason = exc.errno, exc.strerror or str(exc)
        size = len(os.fsencode(address))
        if code is None and size > _SUN_PATH:  # Python's "AF_UNIX path too long", no errno
            import errno

            code = errno.ENAMETOOLONG
            reason = f"the address is too long ({size} bytes, at most {_SUN_PATH})"
        raise DaemonOSEnvironmentError(
            code, f"cannot notify the service manager at {where!r}: {reason}"
        ) from exc
    return True


_said_gone: list[bool] = []  # whether notify() has said its manager is gone


def _say_gone_once(message: str) -> None:
    """One warning line on stderr, the first time only: a program that notifies
    every few seconds (``WATCHDOG=1``) must not fill its log."""
    if _said_gone:
        return
    _said_gone.append(True)
    import sys

    try:
        sys.stderr.write(f"daemonctx: warning: {message}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


#: The longest AF_UNIX address on Linux (sun_path), an abstract one's leading NUL included.
_SUN_PATH = 108

# NOTIFY_SOCKET's value, and a datagram socket connected to it (connect_notify_socket):
# notify() sends through that socket while NOTIFY_SOCKET still says the same.
_connected: tuple[str, socket.socket] | None = None


def connect_notify_socket() -> int | None:
    """Connect a datagram socket to ``NOTIFY_SOCKET`` now, for ``notify()`` to send
    through from then on; return its fd (close-on-exec, 3 or above), or None when
    ``NOTIFY_SOCKET`` is unset or nobody is bound there now (``notify()`` then sends
    to the address, as without this, and says why that fails).

    For a chroot: systemd's ``NOTIFY_SOCKET`` is a path (/run/systemd/notify) that
    the jail lacks, but a connected AF_UNIX socket keeps reaching its peer."""
    global _connected
    value = os.environ.get("NOTIFY_SOCKET")
    address = notify_socket_address()
    if value is None or address is None:
        return None
    if _connected is not None:
        if _connected[0] == value:
            return _connected[1].fileno()
        _connected[1].close()
        _connected = None
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        if sock.fileno() < 3:  # started with fd 0-2 closed: the standard streams take them
            import fcntl

            moved = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
            sock.close()
            sock = socket.socket(fileno=moved)
        sock.connect(address)
    except (OSError, ValueError):  # garbage, nobody bound there, an address too long
        sock.close()
        return None
    _connected = (value, sock)
    return sock.fileno()


def connected_fd() -> int | None:
    """The fd ``connect_notify_socket`` connected, if any: one to keep open."""
    return None if _connected is None else _connected[1].fileno()


class NotifyListener:
    """The receiving end of sd_notify: a datagram socket of our own, passed to a
    program as ``NOTIFY_SOCKET``, so that it can tell us when it is ready.

    With ``base``, a path: ``notify`` in a directory of our own made in ``base``
    (mode 0711; the socket 0666, as systemd's, so that a program that changes
    user can still send), which ``close()`` removes, the directory too unless
    ``keep`` (``base`` is writable by others: sticky /tmp, where another user
    could make a directory of that name again). ``root``: the jail ``base`` is
    in, the program's "/", for the address it is given. Without ``base``, an
    abstract address: reachable from any chroot, but another user can bind it
    once we have closed it, and receive what the program sends there later.

    Any local user can read the address in /proc/net/unix and send to it, so each
    datagram carries its sender's credentials (SO_PASSCRED), and with ``accept``
    set, ``READY=1`` counts only when ``accept(pid, uid)`` of its sender is true
    (``pid`` 0 for a sender known to be reaped since: its uid alone can tell);
    others are ignored, and said so once on stderr.
    """

    def __init__(self, base: str | None = None, *, root: str = "/", keep: bool = False) -> None:
        import socket

        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._directory: str | None = None
        self._keep = keep
        self._maker = os.getpid()  # a forked copy removes nothing
        try:
            # before bind: no datagram may arrive without its sender's credentials
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self._pidfds = pass_pidfds(self._socket)
            if base is None:
                name = f"daemonctx/{os.getpid()}/{os.urandom(8).hex()}"
                self._socket.bind("\0" + name)
                self.address = "@" + name
            else:
                self._directory = _private_directory(base)
                path = os.path.join(self._directory, "notify")
                _bind_path(self._socket, path)
                os.chmod(path, 0o666)
                self.address = path if root == "/" else path[len(root.rstrip("/")) :]
        except BaseException:
            self._keep = False  # nobody was given the address
            self.close()
            raise
        self.accept: Callable[[int, int], bool] | None = None
        self._told = False

    def fileno(self) -> int:
        """The socket's fd, readable when a message waits (for a selector loop)."""
        return self._socket.fileno()

    def close(self) -> None:
        """Close the socket and remove its path: the program's later notifications
        fail with ENOENT, which ``notify()`` takes for a manager gone."""
        self._socket.close()
        directory, self._directory = self._directory, None
        if directory is None or os.getpid() != self._maker:
            return
        try:
            os.unlink(os.path.join(directory, "notify"))
        except OSError:
            pass
        if not self._keep:
            try:
                os.rmdir(directory)
            except OSError:
                pass

    def _ready_received(self) -> bool:
        """Read every waiting datagram; True if one from an accepted sender said READY=1."""
        import socket

        room = notify_space(self._pidfds)
        ready = False
        while True:
            try:
                data, ancillary, _flags, _address = self._socket.recvmsg(
                    65536, room, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return ready
            pid, uid, pidfd = sender_of(ancillary)
            try:
                if ready or b"READY=1" not in data.split(b"\n"):
                    continue
                sender = None if pid is None or uid is None else (pid, uid)
                accepted = self.accept is None or (sender is not None and self.accept(*sender))
                # Checked after accept(): its pid was the sender's only while unreaped.
                # Gone, what accept() read of that pid may be another process's: the
                # uid the kernel gave (pid 0: none to look at) decides alone.
                if accepted and self._pidfds and (pidfd < 0 or not unreaped(pidfd)):
                    accepted = self.accept is None or (
                        sender is not None and self.accept(0, sender[1])
                    )
                if accepted:
                    ready = True
                else:
                    self._ignored(sender)
            finally:
                if pidfd >= 0:
                    os.close(pidfd)

    def _ignored(self, sender: tuple[int, int] | None) -> None:
        import sys

        if self._told:
            return
        self._told = True
        who = "an unknown sender" if sender is None else f"pid {sender[0]} (uid {sender[1]})"
        try:
            sys.stderr.write(f"daemonctx: warning: ignored READY=1 from {who}: not the program\n")
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass

    def wait_ready(self, pidfd: int | None, timeout: float) -> str:
        """Wait for READY=1 while watching the program's pidfd: "ready", "exited" or "timeout"."""
        import time

        from .pidfd import wait_any

        deadline = time.monotonic() + timeout
        watched = [self._socket.fileno()] + ([] if pidfd is None else [pidfd])
        while True:
            if self._ready_received():
                return "ready"
            if pidfd is None:
                return "exited"
            remaining = deadline - time.monotonic()
            readable = wait_any(watched, remaining) if remaining > 0 else []
            if not readable:
                return "ready" if self._ready_received() else "timeout"
            if pidfd in readable:
                return "ready" if self._ready_received() else "exited"


def _private_directory(base: str) -> str:
    """A new directory in ``base``, ours, mode 0711 whatever the umask."""
    while True:
        path = os.path.join(base, f"daemonctx-notify.{os.urandom(8).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o711)
        return path


def _bind_path(sock: socket.socket, path: str) -> None:
    """Bind ``sock`` at ``path``, through /proc/self/fd when ``path`` is longer than a
    unix socket's address may be (a jail's directory: the program's own path to it,
    from its root, is short)."""
    if len(os.fsencode(path)) < _SUN_PATH:
        sock.bind(path)
        return
    directory, name = os.path.split(path)
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


# -- who sent a datagram --------------------------------------------------------------
# SCM_CREDENTIALS names a sender by its pid, which is another process's once the
# sender has been reaped. Linux 6.5 passes a pidfd too (SO_PASSPIDFD, SCM_PIDFD; Python's
# socket module may lack their names): through it, a sender gone since is told apart.

_SO_PASSPIDFD = 76
_SCM_PIDFD = 0x04
_SCM_MAX_FD = 253  # the most descriptors one message may pass


def pass_pidfds(sock: socket.socket) -> bool:
    """Ask the kernel for each sender's pidfd (SO_PASSPIDFD); False before Linux 6.5."""
    import socket

    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_PASSPIDFD", _SO_PASSPIDFD), 1)
    except OSError:
        return False
    return True


def notify_space(pidfds: bool) -> int:
    """The ancillary room ``recvmsg`` needs: credentials only, or with pidfds also the
    most descriptors a sender may pass, which come before the pidfd (each is closed
    by ``sender_of``; without the room, the kernel closes them, as a barrier wants)."""
    import socket
    import struct

    room = socket.CMSG_SPACE(struct.calcsize("3i"))
    if pidfds:
        size = struct.calcsize("i")
        room += socket.CMSG_SPACE(_SCM_MAX_FD * size) + socket.CMSG_SPACE(size)
    return room


def sender_of(ancillary: list[tuple[int, int, bytes]]) -> tuple[int | None, int | None, int]:
    """The sender's pid and uid (``SCM_CREDENTIALS``) and its pidfd (``SCM_PIDFD``;
    -1: none, or a negated error the kernel sent in its place). Every other
    descriptor received is closed at once; the caller closes the pidfd."""
    import socket
    import struct

    scm_pidfd = getattr(socket, "SCM_PIDFD", _SCM_PIDFD)
    size = struct.calcsize("i")
    pid = uid = None
    pidfd = -1
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            pid, uid, _gid = struct.unpack("iII", data[:12])
        elif kind in (socket.SCM_RIGHTS, scm_pidfd):
            count = len(data) // size
            for fd in struct.unpack(f"{count}i", data[: count * size]):
                if kind == scm_pidfd and pidfd < 0:
                    pidfd = fd
                elif fd >= 0:
                    os.close(fd)
    return pid, uid, pidfd


def unreaped(pidfd: int) -> bool:
    """Whether the process of ``pidfd`` has not been reaped (a zombie has not): its
    pid is still its own."""
    import signal

    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's, alive
        return True
    return True
