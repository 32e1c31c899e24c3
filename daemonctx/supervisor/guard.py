"""The guard: a small process that kills the programs when the supervisor dies.

Why not ``PR_SET_PDEATHSIG``: it must be set in the child after its credential
change, so only through Popen's ``preexec_fn``, which forces a full fork of the
supervisor (~2-3 ms a spawn, against ~0.3 ms through Popen's vfork path); and it
covers the program's main process only, not what that forks.

The guard is started once (``Guard.start``), in a session of its own, with a
copy of the control socket's lock (the same open file: the lock is held until
both are gone) and one end of a socket pair. The supervisor sends it a pidfd of
each program's leader (and adopted main process) with ``SCM_RIGHTS`` as it
starts them, and forgets them before it reaps them. When the socket reads end of
file without a goodbye (the supervisor died, however), the guard stops the
leaders, kills every process of their groups (through the leader's pidfd, on
Linux 6.9 and later: also once the leader has exited) and every process marked
with the supervisor's socket (``SUPERVISOR_VARIABLE``), waits until they are
gone, and exits, which releases the lock: the next supervisor on the socket finds nothing
of the last one's. It ignores the usual stop signals (a Ctrl-C or a process
group's SIGTERM must not leave the programs unguarded); the supervisor starts a
new guard if this one dies anyway.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import _socket
import errno  # a built-in module
import os
import stat  # loaded by os already
import sys

from .. import procfs
from ..paths import resolved_name
from ..pidfd import exited, open_pidfd, wait_any

# The guard process starts at every supervisor start, beside the programs: it
# imports C modules (_signal, _socket) rather than signal and socket, whose enums
# cost 15 ms there, and no typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable
    from typing import Callable

    from .loop import EventLoop, Timer

__all__ = [
    "GUARD_CODE",
    "LOCK_VARIABLE",
    "PROGRAM_VARIABLE",
    "SUPERVISOR_VARIABLE",
    "Guard",
    "lock_holder",
    "main",
    "orphaned_holder",
    "sweep",
]

#: Set in each program's environment to its instance name (like supervisord's
#: SUPERVISOR_PROCESS_NAME); attributes escaped descendants to their program.
PROGRAM_VARIABLE = "DAEMONCTX_PROGRAM"

#: Set in each program's environment to the control socket's path: what the
#: guard, and a restarted supervisor, look for in processes a dead one left
#: (any spelling of the same socket: ``/run/a/./c.sock`` is ``/run/a/c.sock``;
#: in another mount namespace, the same path must lead to the same directory).
SUPERVISOR_VARIABLE = "DAEMONCTX_SUPERVISOR"

#: Set beside it to the socket's lock file's identity, "DEV:INO": a program that
#: made a mount namespace of its own and hid the socket's directory there (a
#: tmpfs over /run: bwrap, firejail, ``unshare -m``) is still known for ours by
#: it; another supervisor's (a container's) lock is another file.
LOCK_VARIABLE = "DAEMONCTX_SUPERVISOR_LOCK"

#: pidfd_send_signal's flag (Linux 6.9, include/uapi/linux/pidfd.h): signal the
#: process group whose id is the pidfd's process's pid. The pidfd names that
#: group for good: a number reused once the group is empty is another group's.
PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2

#: How long the sweep waits for the killed processes to be gone.
SWEEP_WAIT = 5.0
#: Passes over /proc: a process forked during one is caught by the next.
SWEEP_PASSES = 5

_SOCKET_FD, _LOCK_FD = 3, 4
_GUARD_MODULE = "daemonctx.supervisor.guard"
# In a guard's command line (its -c code): the module's name alone may be in
# another's (a Python that imports it to change it, and a child forked from that)
GUARD_CODE = f"from {_GUARD_MODULE} import main"
# And every other signal that ends a process by default, but a fault's (SIGSEGV...):
# the supervisor's process group or a tool (SIGALRM, SIGPWR) must not end the guard.
_IGNORED = (
    *("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGTSTP"),
    *("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT"),
)
_SOL_SOCKET, _SCM_RIGHTS = _socket.SOL_SOCKET, _socket.SCM_RIGHTS
_FD_SIZE = 4  # an int in SCM_RIGHTS

#: How long the guard may take nothing from its socket while messages wait for
#: it (it was stopped: SIGSTOP, a debugger) before the supervisor kills it and
#: starts another, which holds every program.
STALL_LIMIT = 30.0

# What waits to be sent about a pid: its hold; its release; the release of an
# older process of the same pid followed by this one's hold (the hold alone
# says both: the guard replaces what it held under that pid).
_HOLD, _RELEASE, _RELEASE_HOLD = 1, 2, 3


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def sweep(
    control: str, users: Iterable[int], groups: dict[int, int] | None = None
) -> list[tuple[int, str | None]]:
    """Kill every process marked with ``control`` in its ``SUPERVISOR_VARIABLE``
    (in our mount namespace, or seeing our socket's directory: ``_Socket``) and
    owned by one of ``users``, and every process in the group of a process of
    ``groups`` (pid -> pidfd, stopped; the caller kills them after). Return (pid,
    program) of each, once they are gone (or after ``SWEEP_WAIT``).

    A live one that leads no group (a daemon a double fork left in the group of
    its exited parent) has its group's members found by the group's id in
    ``/proc``: stopped, it keeps that id its group's while the pidfd says it lives.

    Each group is killed through its leader's pidfd (``_kill_group``), whether the
    leader has exited or not. Where the kernel cannot (before Linux 6.9), its
    members count only while its leader lives (stop the leaders first): then the
    group's id is the leader's pid and cannot name another group. Each other
    candidate is pinned by a pidfd before it is looked at again and killed
    through it.
    """
    users = set(users)
    target = _Socket(control)
    # group id -> (the process that keeps it, its pidfd): its members found in /proc
    fallback: dict[int, tuple[int, int]] = {}
    signalled: dict[int, int] = {}  # group id -> leader's pidfd: killed through it
    for leader, leader_fd in (groups or {}).items():
        group = _live_group(leader, leader_fd)
        if group is not None and group != leader:
            fallback.setdefault(group, (leader, leader_fd))
            continue
        sent = _kill_group(leader_fd, _signal.SIGKILL)
        if sent is None:
            fallback[leader] = (leader, leader_fd)
        elif sent:
            signalled[leader] = leader_fd
    own = os.getpid()
    killed: list[tuple[int, str | None]] = []
    pinned: list[int] = []
    # pid -> the pidfd pinning the process judged there (-1 once let go): a
    # process running at a pid whose judged one exited is another (a program's
    # child forked while we sweep, at a pid we killed and that was reaped since)
    seen: dict[int, int] = {}
    room = _free_descriptors()
    try:
        for _ in range(SWEEP_PASSES):
            found = False
            # members of a group killed through its leader are waited for, never
            # signalled by their number: once the group is empty it may be another's
            dying = {group for group, fd in signalled.items() if _kill_group(fd, 0)}
            for pid in procfs.all_pids():
                if pid == own:
                    continue
                pin = seen.get(pid)
                # judged already: its pin lives, or no process runs at its pid now
                # (a zombie there is dead: ours, killed, or another's)
                if pin is not None and (
                    (pin >= 0 and not exited(pin)) or not procfs.is_running(pid)
                ):
                    continue
                if len(pinned) >= room:  # each pin is a descriptor: free them first
                    _wait_gone(pinned, SWEEP_WAIT)
                    while pinned:
                        os.close(pinned.pop())
                    seen = dict.fromkeys(seen, -1)
                pidfd = open_pidfd(pid)
                if pidfd is None:
                    continue
                verdict = _ours(pid, target, users, fallback, dying)
                if verdict is None:
                    os.close(pidfd)
                    continue
                seen[pid] = pidfd
                pinned.append(pidfd)
                name = procfs.environment_value(pid, PROGRAM_VARIABLE)
                if verdict:
                    try:
                        _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
                    except OSError:
                        continue
                    found = True
                killed.append((pid, name))
            if not found:
                break
        _wait_gone(pinned, SWEEP_WAIT)
    finally:
        for pidfd in pinned:
            os.close(pidfd)
    return killed


def _live_group(pid: int, pidfd: int) -> int | None:
    """The process group of ``pidfd``'s process ``pid``, or None once it has exited."""
    try:
        group = os.getpgid(pid)
    except OSError:
        return None
    return None if exited(pidfd) else group  # alive after: ``pid`` was still it


def _kill_group(pidfd: int, signum: int) -> bool | None:
    """Send ``signum`` (0: none, a check) to the process group whose id is the
    pid of ``pidfd``'s process, through the pidfd: also once that process has
    exited, or was reaped, and never to a group that took its number since.
    True if sent, False when the group has no process left, None where the
    kernel refuses (EINVAL: before Linux 6.9)."""
    try:
        _signal.pidfd_send_signal(pidfd, signum, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:
        return False
    except OSError as exc:
        return None if exc.errno == errno.EINVAL else True  # EPERM: there is one
    return True


def _free_descriptors() -> int:
    """How many processes a sweep may pin at once: the descriptors left under
    RLIMIT_NOFILE, less some for reading /proc (one each) and waiting. Past
    them, a pidfd (or /proc's environ) could not be opened, and the process
    would be passed over, left running."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return 1
    return max(1, soft - used - 8)


class _Socket:
    """The control socket a sweep looks for, however a mark spells it: the lock
    is on the file, so ``/run/a/c.sock``, ``/run/a/./c.sock``, ``/run/a//c.sock``
    and a path through a symlinked directory are one supervisor's."""

    def __init__(self, control: str) -> None:
        self.control = control
        self.name = os.path.basename(control)
        self.resolved = resolved_name(control)
        self._seen: dict[str, bool] = {control: True}
        self._namespace = _identity("/proc/self/ns/mnt")
        self._directory = _identity(os.path.dirname(self.resolved))
        lock = _identity(self.resolved + ".lock")
        self._lock = None if lock is None else lock_mark(*lock)

    def names(self, pid: int, mark: str | None) -> bool:
        """Whether process ``pid``'s ``mark`` names this socket file. A process in
        another mount namespace (a container's, a ``PrivateTmp=`` service's) may
        name another file by the same path: it is ours only if it sees our
        socket's directory there (a program of ours that made a mount namespace
        of its own), or carries our lock's identity (``LOCK_VARIABLE``: one that
        hid that directory). One gone meanwhile is not."""
        if not self.marks(mark):
            return False
        if self._namespace is None:  # no /proc/self/ns here: the path alone, as ever
            return True
        namespace = _identity(f"/proc/{pid}/ns/mnt")
        if namespace == self._namespace:
            return True
        if namespace is None or self._directory is None or mark is None:
            return False
        directory = _in_root(pid, os.path.dirname(mark))
        if directory is not None and _identity(directory) == self._directory:
            return True
        return self._lock is not None and procfs.environment_value(pid, LOCK_VARIABLE) == self._lock

    def marks(self, mark: str | None) -> bool:
        if mark is None:
            return False
        same = self._seen.get(mark)
        if same is None:
            # Another spelling names the same file by the same last name: only
            # then is the directory resolved (once a mark a sweep).
            same = os.path.basename(mark) == self.name and mark.startswith("/")
            if same:
                try:
                    same = resolved_name(mark) == self.resolved
                except (OSError, ValueError):
                    same = False
            self._seen[mark] = same
        return same


def lock_mark(device: int, inode: int) -> str:
    """``LOCK_VARIABLE``'s value for the lock file with this identity."""
    return f"{device}:{inode}"


def _in_root(pid: int, path: str) -> str | None:
    """Absolute ``path`` as process ``pid`` sees it: under its /proc/PID/root,
    each symbolic link on the way followed from that root. (The kernel takes a
    link to an absolute path there from our root: ``/var/run`` to ``/run`` would
    lead into our ``/run``.) None past 40 links."""
    root = f"/proc/{pid}/root"
    todo = [part for part in reversed(path.split("/")) if part]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":  # ``done`` has no link: its parent is what it says
            if done:
                done.pop()
            continue
        try:
            target = os.readlink("/".join([root, *done, part]))
        except OSError:  # no link (or nothing there: the stat that follows says)
            done.append(part)
            continue
        links += 1
        if links > 40:
            return None
        if target.startswith("/"):
            done = []
        todo.extend(part for part in reversed(target.split("/")) if part)
    return "/".join([root, *done])


def _identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path``, followed; None if it cannot be reached."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _ours(
    pid: int,
    target: _Socket,
    users: set[int],
    groups: dict[int, tuple[int, int]],
    dying: set[int],
) -> bool | None:
    """Whether to kill ``pid`` (True), only wait for it (False: a member of a
    group of ``dying``, killed with it), or leave it (None). A member of a group
    of ``groups`` counts while the process that keeps its id lives (its leader,
    or a held one in it, stopped): looked at after ``pid``'s group was read."""
    try:
        group = os.getpgid(pid)
    except OSError:
        return None
    if group in dying:
        return False
    keeper = groups.get(group)
    if keeper is not None and not exited(keeper[1]):  # it lives: its group
        # but not the keeper: killed now, it would end its group's safety
        # before the scan reached the members (the caller kills it after)
        return None if pid == keeper[0] else True
    if _owner(pid) not in users:
        return None
    return target.names(pid, procfs.environment_value(pid, SUPERVISOR_VARIABLE)) or None


def orphaned_holder(path: str) -> tuple[int, bool] | None:
    """The process that holds the lock of a removed lock file once at
    ``path + ".lock"`` (the control socket's), and whether it is a guard (its
    supervisor died); None when there is none. Reads ``/proc/locks``, and
    ``/proc/<pid>/fd`` of its holders."""
    directory = os.path.realpath(os.path.dirname(path) or ".")
    lock = os.path.join(directory, os.path.basename(path) + ".lock")
    # Its directory may be gone too (systemd removes a RuntimeDirectory= when a
    # start fails): the lock was on the file system of the nearest one left.
    while True:
        try:
            device = os.stat(directory).st_dev
            break
        except OSError:
            parent = os.path.dirname(directory)
            if parent == directory:
                return None
            directory = parent
    return _pick({pid for pid, _key in procfs.deleted_lock_holders(lock, device)})


def lock_holder(path: str) -> tuple[int, bool] | None:
    """The process that holds the control socket's lock (``path + ".lock"``, or a
    lock file removed since), and whether it is a guard; None when none does. A
    holder that does not listen on ``path`` is out of reach (its socket file was
    removed), or starting, or a dead supervisor's guard at work. Scans /proc
    when the lock is held: for error messages."""
    try:
        st = os.lstat(path + ".lock")
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        held = _pick(set(procfs.find_lock_holders(procfs.file_key(st)).pids))
        if held is not None:
            return held
    return orphaned_holder(path)


def _pick(holders: set[int]) -> tuple[int, bool] | None:
    """A supervisor among ``holders`` rather than a guard (its child holds a copy of
    the lock): (pid, False); else a guard: (pid, True); None when empty."""
    guards = []
    for pid in sorted(holders):
        command = procfs.process_command(pid) or ()
        if not any(GUARD_CODE in part for part in command):
            return pid, False
        guards.append(pid)
    return (guards[0], True) if guards else None


def _wait_gone(pidfds: list[int], timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    waiting = [fd for fd in pidfds if not exited(fd)]
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wait_any(waiting, left)
        waiting = [fd for fd in waiting if not exited(fd)]


# -- the supervisor's side -------------------------------------------------------------------


class Guard:
    """The supervisor's handle on its guard process: ``start`` it, ``hold`` each
    program's pidfd, ``release`` it once reaped, ``stop`` at the end.

    Nothing here blocks the loop, or delays what called it: messages wait until
    the loop has run the callbacks at hand (a restart's spawn comes first), then
    until the socket is writable. What waits is a pid, not a copy of its pidfd
    (the pidfd is read from ``hold``'s record when the message goes, and the
    caller releases a pid before it closes its pidfd): waiting costs no
    descriptor, at most one message waits per pid, and a pid released before
    its hold went sends neither. When the guard takes nothing for
    ``STALL_LIMIT`` seconds while messages wait (it was stopped), it is killed:
    ``died`` is called, as when the guard is gone; ``restart`` then starts
    another and sends it every pidfd held so far.
    """

    def __init__(
        self,
        loop: EventLoop,
        control: str,
        lock_fd: int,
        users: Iterable[int],
        died: Callable[[], None],
    ) -> None:
        self.control = control
        self.users = sorted(set(users))
        self._loop = loop
        self._lock_fd = lock_fd
        self._died = died
        self._sock: socket.socket | None = None
        self.pid: int | None = None
        self.pidfd = -1
        self._held: dict[int, tuple[int, bool]] = {}  # pid -> (pidfd, its group too)
        self._unsent: dict[int, int] = {}  # pid -> _HOLD, _RELEASE or _RELEASE_HOLD
        self._messages: list[bytes] = []  # other messages waiting: users, goodbye
        self._flush_timer: Timer | None = None
        self._stall_timer: Timer | None = None

    def start(self) -> None:
        """Start the guard process. Raises ``OSError`` when it cannot be started."""
        import errno
        import socket

        if getattr(sys, "frozen", False) or not sys.executable:
            raise OSError(errno.ENOEXEC, "no Python interpreter to run it with")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            high = [_dup_high(theirs.fileno()), _dup_high(self._lock_fd)]
            try:
                package = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
                code = (
                    f"import sys; sys.path.insert(0, {package!r}); "
                    f"{GUARD_CODE}; sys.exit(main(sys.argv[1:]))"
                )
                argv = [sys.executable, "-I", "-S", "-c", code, self.control, _users(self.users)]
                pid = os.posix_spawn(
                    sys.executable,
                    argv,
                    # the supervisor's marks, but the program name it may carry as
                    # a program itself (a nested supervisor): the guard is no
                    # program's process, which a program could name in MAINPID=
                    {k: v for k, v in os.environ.items() if k != PROGRAM_VARIABLE},
                    file_actions=[
                        *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()),
                        (os.POSIX_SPAWN_DUP2, high[0], _SOCKET_FD),
                        (os.POSIX_SPAWN_DUP2, high[1], _LOCK_FD),
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    ],
                    setsid=True,
                    setsigmask=(),
                )
            finally:
                for fd in high:
                    os.close(fd)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            self.pidfd = os.pidfd_open(pid)  # our unreaped child
        except OSError:
            ours.send(b"q")  # a goodbye: it exits and kills nothing (SIGCHLD reaps it)
            ours.close()
            raise
        self.pid = pid
        ours.setblocking(False)
        self._sock = ours
        self._unsent = dict.fromkeys(self._held, _HOLD)
        self._schedule()

    def forget(self) -> None:
        """Forget every pid held (before ``start``, after ``close``: the caller
        then ``hold``s what runs now)."""
        self._held.clear()

    def restart(self) -> None:
        """The guard died: reap it and start another, holding the same pidfds."""
        self.close()
        self.start()

    def hold(self, pid: int, pidfd: int, group: bool = True) -> None:
        """Have the guard kill ``pid`` (and its process group, with ``group``)
        if the supervisor dies. ``pidfd`` stays the caller's."""
        self._held[pid] = (pidfd, group)
        if self._sock is None:
            return
        waiting = self._unsent.get(pid)
        self._unsent[pid] = _HOLD if waiting is None or waiting == _HOLD else _RELEASE_HOLD
        self._schedule()

    def release(self, pid: int) -> None:
        """Forget ``pid`` (it was reaped), before its pidfd is closed. The
        guard's copy of its pidfd still names the dead process, so a late
        release is harmless."""
        if self._held.pop(pid, None) is None or self._sock is None:
            return
        if self._unsent.get(pid) == _HOLD:  # never sent: neither is its release
            del self._unsent[pid]
            return
        self._unsent[pid] = _RELEASE
        self._schedule()

    def set_users(self, users: Iterable[int]) -> None:
        """The users whose marked processes the guard kills (after a reload)."""
        self.users = sorted(set(users))
        self._send(b"u" + _users(self.users).encode())

    def stop(self) -> None:
        """Say goodbye (the guard exits and kills nothing), and reap it."""
        self._unsent.clear()  # what it would hold no longer matters
        self._send(b"q")
        if self._sock is not None:
            self._sock.settimeout(1.0)  # the end: waiting here delays nothing
            self._flush()
        self.close()

    def close(self) -> None:
        """Close our end (the guard exits at its end of file) and reap the guard."""
        self._loop.cancel(self._flush_timer)
        self._loop.cancel(self._stall_timer)
        self._flush_timer = self._stall_timer = None
        self._unsent.clear()
        self._messages.clear()
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self.pidfd >= 0:
            wait_any([self.pidfd], 5.0)
            try:
                os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                pass  # reaped by the supervisor's SIGCHLD handler
            os.close(self.pidfd)
            self.pidfd = -1

    def _send(self, message: bytes) -> None:
        if self._sock is None:
            return
        self._messages.append(message)
        self._schedule()

    def _schedule(self) -> None:
        """Flush once the loop has run the callbacks at hand (unless the socket
        was full, when its writability does)."""
        if self._flush_timer is None and self._stall_timer is None:
            self._flush_timer = self._loop.call_at(0.0, self._flush)

    def _sendmsg(self, message: bytes, pidfd: int = -1) -> None:
        assert self._sock is not None
        ancillary = []
        if pidfd >= 0:
            payload = pidfd.to_bytes(_FD_SIZE, sys.byteorder)
            ancillary.append((_SOL_SOCKET, _SCM_RIGHTS, payload))
        self._sock.sendmsg([message], ancillary)

    def _watch(self) -> None:
        if self._sock is not None:
            fd = self._sock.fileno()
            waiting = bool(self._unsent or self._messages)
            self._loop.watch(fd, self._event, read=True, write=waiting)

    def _flush(self) -> None:
        """Send what waits, as far as the socket takes it; the rest when writable."""
        self._flush_timer = None
        sent = 0
        try:
            while self._messages and self._sock is not None:
                self._sendmsg(self._messages[0])
                del self._messages[0]
                sent += 1
            for pid, what in list(self._unsent.items()):
                if self._sock is None:
                    break
                if what == _RELEASE:
                    self._sendmsg(b"-%d" % pid)
                else:
                    pidfd, group = self._held[pid]
                    self._sendmsg(b"+%s%d" % (b"g" if group else b"p", pid), pidfd)
                del self._unsent[pid]
                sent += 1
        except OSError:  # full (or a timeout, in stop), or it died: _event says
            pass
        waiting = bool(self._unsent or self._messages)
        if sent or not waiting:
            self._loop.cancel(self._stall_timer)
            self._stall_timer = None
        if waiting and self._stall_timer is None and self._sock is not None:
            deadline = self._loop.time() + STALL_LIMIT
            self._stall_timer = self._loop.call_at(deadline, self._stalled)
        self._watch()

    def _stalled(self) -> None:
        """The guard took nothing for ``STALL_LIMIT`` seconds (it is stopped):
        kill it. Its socket's end of file then calls ``died``."""
        self._stall_timer = None
        if self._sock is None or self.pidfd < 0:
            return
        import logging

        logging.getLogger("daemonctx.supervisor").info(
            "the guard (pid %s) took nothing for %g s: killing it", self.pid, STALL_LIMIT
        )
        try:
            _signal.pidfd_send_signal(self.pidfd, _signal.SIGKILL)
        except OSError:
            pass

    def _event(self) -> None:
        """Writable: send what waits. Readable: the guard never writes, so this
        is its end of file (it died)."""
        sock = self._sock
        if sock is None:
            return
        if self._unsent or self._messages:
            self._flush()
        try:
            data = sock.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(sock.fileno())
            self._died()


def _dup_high(fd: int) -> int:
    """A close-on-exec copy of ``fd`` above the guard's fixed numbers."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def _inheritable_fds() -> list[int]:
    """Our descriptors above 2 that an exec would keep (a socket systemd passed,
    a ``files_preserve`` file): the guard must not hold them open."""
    import fcntl

    from ..process import open_fds

    found = []
    for fd in open_fds() or ():
        if fd <= 2:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                found.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


def _users(users: Iterable[int]) -> str:
    return ",".join(str(uid) for uid in users)


def _parse_users(text: str) -> set[int]:
    return {int(uid) for uid in text.split(",") if uid}


# -- the guard's side ------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    """Take the hard RLIMIT_NOFILE: the guard holds a pidfd per program, and a
    reload may add programs after it started, with the soft limit the supervisor
    had then (a pidfd that does not fit is dropped on the way in). It starts
    nothing that would inherit the limit."""
    import resource  # a C module, as the others here

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str]) -> int:
    """The guard process: ``argv`` is the control socket's path and the users'
    ids; fd 3 its socket, fd 4 the lock. Returns its exit status."""
    control, users = argv[0], _parse_users(argv[1])
    for name in _IGNORED:
        number = getattr(_signal, name, None)  # SIGSTKFLT: Linux's, named since 3.11
        if number is not None:
            _signal.signal(number, _signal.SIG_IGN)
    for number in range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1):
        _signal.signal(number, _signal.SIG_IGN)
    _raise_fd_limit()
    sock = _socket.socket(fileno=_SOCKET_FD)
    held: dict[int, tuple[int, bool]] = {}
    space = _socket.CMSG_SPACE(_FD_SIZE)
    while True:
        try:
            data, ancillary, _flags, _address = sock.recvmsg(65536, space)
        except OSError:
            data, ancillary = b"", []
        fds = [
            int.from_bytes(payload[:_FD_SIZE], sys.byteorder)
            for level, kind, payload in ancillary
            if level == _SOL_SOCKET and kind == _SCM_RIGHTS
        ]
        if not data:
            break
        kind = data[:1]
        if kind == b"+" and fds:
            pid = int(data[2:])
            old = held.pop(pid, None)
            if old is not None:
                os.close(old[0])
            held[pid] = (fds.pop(), data[1:2] == b"g")
        elif kind == b"-":
            old = held.pop(int(data[1:]), None)
            if old is not None:
                os.close(old[0])
        elif kind == b"u":
            users = _parse_users(data[1:].decode())
        elif kind == b"q":
            return 0
        for fd in fds:
            os.close(fd)
    # The supervisor is gone: stop the leaders (before Linux 6.9 a group is found
    # by its id, which none may free while we look), kill their groups and
    # everything marked, then them.
    for pidfd, _group in held.values():
        try:
            _signal.pidfd_send_signal(pidfd, _signal.SIGSTOP)
        except OSError:
            pass
    groups = {pid: pidfd for pid, (pidfd, group) in held.items() if group}
    sweep(control, users, groups)
    for pidfd, _group in held.values():
        try:
            _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
        except OSError:
            pass
    _wait_gone([pidfd for pidfd, _group in held.values()], SWEEP_WAIT)
    return 0
