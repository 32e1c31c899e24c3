"""Which processes are the daemon behind a pidfile: found, proven, then signalled.

The daemon holds its pidfile's lock for its whole life (see ``pidfile``), and
so does any child that inherited the lock's descriptor. Those processes, and
only those, are "the daemon" here. Each is proven by ``/proc/<pid>/fdinfo``
(its descriptor owns the lock: nobody else can show that), pinned with a pidfd
*before* it is proven, and signalled only through that pidfd, so no pid
reused meanwhile can be hit. The pid written in the file is a hint: it names
the main process when that process holds the lock, and nothing otherwise.

A pidfile deleted or replaced while its daemon runs (systemd unlinks
``PIDFile=`` after a failed start; an operator's ``rm``) leaves the lock on the
old inode; the kernel still names it ``<path> (deleted)`` in ``/proc``, and
``find`` follows it there, so mutual exclusion does not depend on the path. It
follows only a file it would trust at the path (another user's is not ours).

As root, a pidfile another user owns or can replace is refused, as
start-stop-daemon refuses it: ``paths.UnsafePathError``, LSB code 4.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import pidfile as _pidfile
from . import procfs
from .paths import UnsafePathError, check_path
from .pidfd import exited as _exited
from .pidfd import send_stop, wait_any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ForeignProc", "Found", "find", "signal_main", "stop_daemon"]

FileKey = tuple[int, int, int]
_ATTEMPTS = 10  # looks at the pidfile when it is replaced while we look
_FIRST_PAUSE, _LAST_PAUSE = 0.001, 0.05  # between looks at holders a stop could not pin
# a magic link in /proc/<pid>/fd is followed (no O_NOFOLLOW); nothing can block or stick
_REOPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


@dataclass
class Found:
    """What a pidfile says about its daemon, with every pid proven.

    ``held``: some process holds the lock (of the file at ``path``, or of a former
    file there, then ``deleted``). ``main_pid``: the pid written in the file, when
    that process holds the lock (or, when ``hidden`` holders cannot be looked at,
    when it started before the file was written). ``holders``: every process proven
    to hold the lock. ``recorded_pid``: whatever pid the file names, for messages.
    """

    path: str
    exists: bool = False
    held: bool = False
    recorded_pid: int | None = None
    main_pid: int | None = None
    holders: tuple[int, ...] = ()
    hidden: bool = False
    deleted: bool = False
    keys: tuple[FileKey, ...] = field(default=(), repr=False)

    @property
    def leftovers(self) -> tuple[int, ...]:
        """Holders other than the main process: children that inherited the lock."""
        return tuple(pid for pid in self.holders if pid != self.main_pid)


class ForeignProc(OSError):
    """/proc is another pid namespace's (``procfs.foreign``): a pid found there names
    another process here, so no holder can be proven, pinned or signalled."""


def _refuse(path: str, reason: str) -> UnsafePathError:
    return UnsafePathError("pidfile", path, reason)


def _trusted(st: os.stat_result) -> bool:
    """Whether a locked file, found through a process's fd, is one we would trust as
    our pidfile at its path: a regular file that root or we own, and nobody else may
    write (``pidfile._untrusted``). Another user may lock and delete a file of theirs."""
    return stat.S_ISREG(st.st_mode) and _pidfile._untrusted("", st) is None


def _reopen(pid: int, key: FileKey) -> int | None:
    """A read-only fd of our own on the file ``pid`` holds the lock of, opened through
    its descriptor (the file may have no name left); None if there is none to open."""
    for name in procfs.holding_fds(pid, key) or []:
        try:
            fd = os.open(f"/proc/{pid}/fd/{name}", _REOPEN_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):  # not "none to open": say so
                message = f"cannot look at the lock's holders: {exc.strerror}"
                raise OSError(exc.errno, message) from None
            continue
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and procfs.file_key(st) == key:
            return fd
        os.close(fd)
    return None


def _look(path: str, every_holder: bool) -> Found | None:
    """One look at the file at ``path``; None when it was replaced while we looked."""
    try:
        fd = _pidfile._open(path, writable=False)
    except _pidfile._Unusable as exc:
        cause = exc.__cause__
        if isinstance(cause, PermissionError):
            raise cause from None
        if isinstance(cause, OSError) and cause.errno != errno.ELOOP:  # not a link: unusable
            raise OSError(cause.errno, str(exc)) from None  # (a name too long), not untrusted
        raise _refuse(path, str(exc).split(": ", 1)[-1]) from None
    if fd is None:
        return Found(path)
    try:
        st = os.fstat(fd)
        reason = _pidfile._untrusted(path, st)
        if reason is not None:
            raise _refuse(path, reason)
        key = procfs.file_key(st)
        found = Found(path, exists=True, recorded_pid=_pidfile._pid_in(fd), keys=(key,))
        found.held = _pidfile._is_held(fd)
        if found.held:
            _prove(found, st.st_mtime, every_holder)
        return found if _pidfile._is_at_path(path, fd) else None
    finally:
        os.close(fd)


def _prove(found: Found, written: float, every_holder: bool) -> None:
    """Fill ``holders`` and ``main_pid`` from /proc (``found.keys`` are held)."""
    recorded = found.recorded_pid
    if recorded is not None and not every_holder:
        fds = procfs.holding_fds(recorded, found.keys[0])
        if fds:
            found.main_pid, found.holders = recorded, (recorded,)
            return
    holders: set[int] = set()
    for key in found.keys:
        result = procfs.find_lock_holders(key, [recorded] if recorded else [], held=True)
        holders.update(result.pids)
        found.hidden = found.hidden or result.hidden
    found.holders = tuple(sorted(holders))
    if recorded is not None and recorded in holders:
        found.main_pid = recorded
    elif recorded is not None and (inner := _written_inside(holders, recorded)) is not None:
        found.main_pid = inner
    elif recorded is not None and found.hidden and procfs.is_original(recorded, written):
        found.main_pid = recorded  # cannot look as this user; the file cannot lie (see pidfile)


def _written_inside(holders: set[int], recorded: int) -> int | None:
    """The holder that wrote ``recorded`` from a pid namespace of its own (a daemon
    started in a container, looked at from the host): its pid there is ``recorded``."""
    inside = [pid for pid in holders if procfs.own_namespace_pid(pid) == recorded]
    return inside[0] if len(inside) == 1 else None


def _guarded(found: Found, real: str, every_holder: bool) -> bool:
    """Follow the guard link (``pidfile.guard_path``) to a held pidfile that is no
    longer at ``real``; True if a live process holds it."""
    guard = _pidfile.guard_path(real)
    try:
        fd = _pidfile._open(guard, writable=False)
    except _pidfile._Unusable:
        return False
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
        if _pidfile._untrusted(guard, st) is not None or not _pidfile._is_held(fd):
            return False
        if not _pidfile.guard_is_pidfiles(real, fd, None):
            return False  # another program's lock on a file of its own at that name
        # A daemon that created and locked the pidfile (and this link) since we
        # looked at ``real`` is holding it, not hiding it: held, not deleted.
        at_path = _pidfile._is_at_path(real, fd)
        found.held, found.deleted, found.exists = True, not at_path, found.exists or at_path
        found.keys = (procfs.file_key(st),)
        found.recorded_pid = _pidfile._pid_in(fd)
        _prove(found, st.st_mtime, every_holder)
        return True
    finally:
        os.close(fd)


def _device(directory: str) -> int | None:
    """The device of ``directory``, or of its nearest ancestor once it is removed
    (a whole ``RuntimeDirectory=``: the deleted pidfile was on that device)."""
    while True:
        try:
            return os.stat(directory).st_dev
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(directory)
            if parent == directory:
                return None
            directory = parent
        except OSError:
            return None


def _former_file(found: Found, real: str, every_holder: bool) -> None:
    """Follow a lock still held on a file that was at ``real`` and has been deleted:
    through its guard link, else through ``/proc/<pid>/fd`` (both names deleted,
    or their directory removed, or a daemon that could not link one)."""
    if _guarded(found, real, every_holder):
        return
    device = _device(os.path.dirname(real))
    if device is None:
        return
    former = procfs.deleted_lock_holders(real, device, _trusted)
    if not former:
        return
    found.held, found.deleted = True, True
    found.keys = tuple(sorted({key for _pid, key in former}))
    written = 0.0
    old = _reopen(*former[0])  # the old file is still readable through the holder's fd
    if old is not None:
        try:
            found.recorded_pid = _pidfile._pid_in(old)
            written = os.fstat(old).st_mtime
        finally:
            os.close(old)
    _prove(found, written, every_holder)


def find(path: str, *, every_holder: bool = True) -> Found:
    """Look at the pidfile at ``path`` and prove which processes are its daemon.

    ``every_holder=False`` stops at the main process when it holds the lock (a
    status or a start check); a stop needs them all. Raises ``UnsafePathError``
    for a pidfile another user controls, ``PermissionError`` when it cannot be read,
    ``ForeignProc`` when /proc is another pid namespace's.
    """
    typed = os.path.abspath(path)
    wrong = procfs.foreign()
    if wrong is not None:
        raise ForeignProc(f"cannot tell which processes are {typed}'s daemon: {wrong}")
    try:  # the directories, through trusted symlinks only; the file itself is no symlink
        directory = check_path(os.path.dirname(typed), "pidfile")
    except UnsafePathError as exc:
        raise _refuse(typed, exc.reason) from None
    real = os.path.join(directory, os.path.basename(typed))
    found: Found | None = None
    for _ in range(_ATTEMPTS):
        found = _look(real, every_holder)
        if found is not None:
            break
    if found is None:
        found = Found(real, exists=True)
    if not found.held:
        _former_file(found, real, every_holder)
    found.path = typed
    return found


# -- stopping -----------------------------------------------------------------


def _holds_trusted(pid: int, key: FileKey) -> bool:
    """Whether ``pid`` holds the lock on ``key`` through a file we trust (``_trusted``):
    the inode is looked at through the holder's own fd, so a file freed and its inode
    number reused by another user's file since ``find`` is not taken for ours."""
    for name in procfs.holding_fds(pid, key) or []:
        try:
            st = os.stat(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if procfs.file_key(st) == key and _trusted(st):
            return True
    return False


def _pin(pid: int, keys: tuple[FileKey, ...]) -> int | None:
    """A pidfd for ``pid`` if, once pinned, it is proven to hold one of ``keys``.

    The pidfd comes first: if the check then sees the lock in /proc/<pid> while the
    pidfd's process is still alive, that /proc entry was this very process.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        if any(_holds_trusted(pid, key) for key in keys) and not _exited(pidfd):
            return pidfd
    except BaseException:
        os.close(pidfd)
        raise
    os.close(pidfd)
    return None


def signal_main(found: Found, signum: int) -> bool:
    """Send ``signum`` to ``found``'s main process, pinned and proven to hold the
    lock first; False when it is gone by then (or no longer holds it). Raises
    ``PermissionError`` when we may not signal it."""
    if found.main_pid is None:
        return False
    pidfd = _pin(found.main_pid, found.keys)
    if pidfd is None:
        return False
    try:
        _signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
    return True


def _probes(found: Found) -> dict[FileKey, int]:
    """An fd of our own on each locked file, opened through a holder's fd while it
    holds the lock: a failed flock on it shows the lock still held once /proc/locks
    no longer lists it (its taker reaped, in a pid namespace)."""
    probes: dict[FileKey, int] = {}
    for key in found.keys:
        for pid in found.holders:
            fd = _reopen(pid, key)
            if fd is not None:
                probes[key] = fd
                break
    return probes


def _current_holders(keys: tuple[FileKey, ...], probes: dict[FileKey, int]) -> list[int]:
    """The processes holding any of ``keys`` now, through a file we trust (``_pin``
    would refuse the others); a key with no probe is searched for."""
    pids: set[int] = set()
    for key in keys:
        probe = probes.get(key)
        if probe is not None and not _pidfile._is_held(probe):
            # Free: nobody holds it. No look at /proc/locks, whose first read in a
            # process waits for an RCU grace period (24 ms here, after every stop).
            continue
        found = procfs.find_lock_holders(key, held=True).pids
        pids.update(pid for pid in found if _holds_trusted(pid, key))
    return sorted(pids)


@dataclass
class Stopped:
    """What ``stop_daemon`` did: ``signalled`` pids in order (the main one first),
    ``exited`` False if one outlived the last step (``left`` names those), ``sent``
    the signals of the steps after the first that were needed (SIGKILL, by default)."""

    signalled: list[int]
    exited: bool
    sent: list[int]
    seconds: float
    left: list[int] = field(default_factory=list)  # still there when it gave up


def stop_daemon(found: Found, steps: Sequence[tuple[int, float]]) -> Stopped:
    """Signal the main process, wait for it, then every process still holding the lock,
    with the first of ``steps`` ((signal, seconds), ...); when its seconds have passed,
    the next step's signal to whatever remains, and so on (``TERM``, 10, then ``KILL``,
    5, by default). Gives up after the last step's seconds.

    Only pinned, proven holders are signalled (``_pin``). Raises ``PermissionError``
    when we may not signal them.
    """
    started = time.monotonic()
    step = 0
    signum, wait = steps[0]
    deadline = started + wait
    pinned: dict[int, int] = {}
    sent: list[int] = []  # the signals of the steps after the first, as they were sent
    targets = [found.main_pid] if found.main_pid else list(found.holders)
    probes = _probes(found)

    def next_step(alive: list[int]) -> bool:
        """To the next step, its signal to ``alive``; False after the last."""
        nonlocal step, signum, deadline
        if step + 1 >= len(steps):
            return False
        step += 1
        signum, wait = steps[step]
        for pidfd in alive:
            try:
                send_stop(pidfd, signum)  # and SIGCONT: a stopped one runs its handler
            except ProcessLookupError:
                pass
        sent.append(signum)
        deadline = time.monotonic() + wait
        return True

    pause = _FIRST_PAUSE
    unpinned: list[int] = []
    refused: set[int] = set()  # holders _pin refused once: looked at again after a pause
    try:
        while True:
            for pid in [pid for pid in targets if pid not in pinned]:
                pidfd = _pin(pid, found.keys)
                if pidfd is None:
                    refused.add(pid)
                    continue
                pinned[pid] = pidfd
                try:
                    send_stop(pidfd, signum)
                except ProcessLookupError:
                    pass
            alive = [fd for fd in pinned.values() if not _exited(fd)]
            if alive:
                if time.monotonic() >= deadline:
                    if not next_step(alive):
                        break
                    targets = _current_holders(found.keys, probes)
                    continue
                wait_any(alive, deadline - time.monotonic())
                continue
            targets = _current_holders(found.keys, probes)  # children that kept the lock
            if not targets:
                return Stopped(list(pinned), True, sent, time.monotonic() - started)
            if time.monotonic() >= deadline and not next_step([]):
                unpinned = targets  # holders, none of them pinned alive: what is left
                break
            if all(pid in pinned or pid in refused for pid in targets):
                # Only holders we could not pin (gone meanwhile, or not ours to signal):
                # look again, less and less often, until the deadline.
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                pause = min(pause * 2, _LAST_PAUSE)
        left = [pid for pid, fd in pinned.items() if not _exited(fd)] or unpinned
    finally:
        for fd in [*pinned.values(), *probes.values()]:
            os.close(fd)
    return Stopped(list(pinned), False, sent, time.monotonic() - started, left)
