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
    ``stray_pid``: that pid, when it holds no lock and is a live process that started
    before the file was written (an edited file; not a pid reused since), for messages.
    """

    path: str
    exists: bool = False
    held: bool = False
    recorded_pid: int | None = None
    main_pid: int | None = None
    holders: tuple[int, ...] = ()
    hidden: bool = False
    deleted: bool = False
    stray_pid: int | None = None
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
            fd = os.open(f"{procfs.files_of(pid)}/fd/{name}", _REOPEN_FLAGS)
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
        elif found.recorded_pid is not None and procfs.is_original(found.recorded_pid, st.st_mtime):
            found.stray_pid = found.recorded_pid  # unlocked, yet alive since before the write
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
    elif recorded is not None and (group := procfs.thread_group(recorded)) in holders:
        found.main_pid = group  # the file names a thread of it (a tid is no process's pid)
    elif recorded is not None and (inner := _written_inside(holders, recorded)) is not None:
        found.main_pid = inner
    elif (
        recorded is not None
        and found.hidden
        and procfs.is_original(recorded, written)
        and not _taken_by_another(found, recorded)
    ):
        found.main_pid = recorded  # cannot look as this user; the file cannot lie (see pidfile)
    elif recorded is not None and written and procfs.is_original(recorded, written):
        found.stray_pid = recorded  # alive when the file was written, and no holder


def _taken_by_another(found: Found, recorded: int) -> bool:
    """Whether /proc/locks names another live taker of ``found``'s lock than
    ``recorded`` (``procfs.another_taker``)."""
    takers = [pid for pid, key in procfs.exclusive_flocks() or [] if key in found.keys]
    return procfs.another_taker(recorded, takers)


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
            st = os.stat(f"{procfs.files_of(pid)}/fd/{name}")
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
    except (ProcessLookupError, FileNotFoundError):  # ENOENT: a thread's id, no process's
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # a thread's id, on kernels before 6.9
            return None
        raise
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
    the signals of the steps after the first that were needed (SIGKILL, by default),
    ``session`` the other processes of the daemon's session it stopped too."""

    signalled: list[int]
    exited: bool
    sent: list[int]
    seconds: float
    left: list[int] = field(default_factory=list)  # still there when it gave up
    session: list[int] = field(default_factory=list)


# -- the daemon's session -------------------------------------------------------
#
# A daemon's workers (a pre-fork server's, os.fork, multiprocessing) need not hold
# the lock: the main process's clean exit releases it for every copy of its fd
# (flock(LOCK_UN) acts on the open file description). They are in its session.
# A session's id is its leader's pid, and Linux frees that pid only once no
# process is left in the session (free_pid waits for every PIDTYPE_SID link): so
# while one process known to be in the session is still unreaped, the number
# names that very session, and whoever /proc shows in it is a member. Only members
# that descend from the daemon are its workers: a session also holds a dead shell's
# other jobs (two daemons started by one script), or a helper the entrypoint started
# before it exec'd the daemon, which holds a pidfile lock of its own.


def _attached(pidfd: int) -> bool:
    """Whether the pidfd's process is not reaped yet (a zombie too): it still holds
    its pid, and its session's id. EPERM is raised only for a process that exists."""
    try:
        _signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _daemon_session(pid: int, pidfd: int) -> int | None:
    """The session of the pinned main process ``pid`` when it is the daemon's own and
    may be stopped as a whole; else None.

    Its own: the main leads it (systemd, ``setsid``), or its leader is gone and the
    main is in the group the session began with (a double fork: the start's first
    child made it and exited). Never a session whose leader lives (a shell's: ``run``,
    ``detach_process=False`` on a terminal), nor a dead shell's other jobs (each in a
    group of its own). Each read is trusted only once the main is seen alive after it:
    then the number was its session's, and no other (the main keeps it)."""
    ids = procfs.group_and_session(pid)
    if ids is None:
        return None
    group, session = ids
    if session <= 0:
        return None  # its session is outside our pid namespace
    if session != pid:
        if group != session:
            return None
        leader = _open_pidfd(session)
        if leader is not None:
            try:
                if not _exited(leader):
                    return None  # the leader lives: its session, not the daemon's
            finally:
                os.close(leader)
    return session if not _exited(pidfd) else None


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:  # ESRCH: none; EINVAL, ENOENT: a thread's id, no process's
        return None


def _other_pidfile(pid: int, ours: set[FileKey]) -> bool:
    """Whether ``pid`` holds a lock the daemon does not (not in ``ours``) on a file
    that names a pid: another daemon's pidfile (or we may not look: not ours either)."""
    held = procfs.held_locks(pid)
    if held is None:
        return True
    for name, key in held:
        if key in ours:
            continue
        link = f"{procfs.files_of(pid)}/fd/{name}"
        try:  # a regular file only: opening a device can act on it
            fd = os.open(link, _REOPEN_FLAGS) if stat.S_ISREG(os.stat(link).st_mode) else None
        except OSError:
            continue
        if fd is None:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and procfs.file_key(st) == key and _pidfile._pid_in(fd):
                return True
        finally:
            os.close(fd)
    return False


_MAX_DEPTH = 256  # ancestors looked at between a process and the daemon


def _descends(pid: int, roots: dict[int, int], ours: set[FileKey]) -> bool:
    """Whether ``pid`` descends from one of ``roots`` (pid: pidfd; the main process and
    members proven), its parent or a parent's parent being one, and neither it nor
    any process between holds another daemon's pidfile lock (``_other_pidfile``).

    A process whose parent exited (reparented to init or a subreaper) descends from
    nobody here: a dead shell's other jobs are such. Each parent link is read
    again after the walk: unchanged, it was that process's parent throughout (a
    parent's exit reparents its children before its pid can be reused); and the
    root is then seen unreaped, so its pid named it."""
    links: list[tuple[int, int]] = []
    current = pid
    for _ in range(_MAX_DEPTH):
        if _other_pidfile(current, ours):
            return False
        parent = procfs.parent_pid(current)
        if parent is None or parent <= 0:
            return False
        links.append((current, parent))
        if parent in roots:
            break
        if parent == 1:
            return False
        current = parent
    else:
        return False
    if any(procfs.parent_pid(child) != parent for child, parent in links):
        return False
    return _attached(roots[links[-1][1]])


def _session_members(
    session: int, known: dict[int, int], skip: set[int], ours: set[FileKey]
) -> tuple[dict[int, int], set[int]] | None:
    """Pidfds on the live processes of ``session`` but ``known`` (members proven
    before, pid: pidfd) and ``skip`` that descend from one of ``known``
    (``_descends``), and the pids of the others, which are not the daemon's. Each
    is pinned, then seen in it, then one of ``known`` seen in it and unreaped after
    all those looks. A process cannot leave a session and come back, so that one
    was in it throughout, and every look was at the daemon's session. None when no
    known member is left to vouch for the number: then nobody can be proven a
    member any more."""
    if not any(_attached(pidfd) for pidfd in known.values()):
        return None  # (no scan of /proc after the last exit: nothing could be proven)
    candidates: dict[int, int] = {}
    try:
        for pid in procfs.session_members(session):
            if pid in known or pid in skip:
                continue
            pidfd = _open_pidfd(pid)
            if pidfd is None:
                continue
            if procfs.session_id(pid) == session:
                candidates[pid] = pidfd
            else:
                os.close(pidfd)
        if not any(
            procfs.session_id(pid) == session and _attached(fd) for pid, fd in known.items()
        ):
            return None
        members, strangers = {}, set()
        for pid, pidfd in list(candidates.items()):
            if not _descends(pid, known, ours):
                strangers.add(pid)
            elif not _exited(pidfd):  # the process /proc showed was this pidfd's
                members[pid] = candidates.pop(pid)
        return members, strangers
    finally:
        for pidfd in candidates.values():
            os.close(pidfd)


def stop_daemon(found: Found, steps: Sequence[tuple[int, float]]) -> Stopped:
    """Signal the main process, wait for it, then every process still holding the lock,
    with the first of ``steps`` ((signal, seconds), ...); when its seconds have passed,
    the next step's signal to whatever remains, and so on (``TERM``, 10, then ``KILL``,
    5, by default). Gives up after the last step's seconds.

    When the main process is in a session of the daemon's own (``_daemon_session``),
    every other process of that session that descends from it (``_descends``: not
    through another daemon's pidfile lock) gets each step's signal with it: its
    workers, which lose the lock when it exits cleanly. They are looked for before the first
    signal and again at every wake-up, while a member known alive vouches for the
    session's id (``_session_members``). Only pinned, proven processes are
    signalled. Raises ``PermissionError`` when we may not signal the main process
    or a lock holder.
    """
    started = time.monotonic()
    step = 0
    signum, wait = steps[0]
    deadline = started + wait
    pinned: dict[int, int] = {}  # the main process and lock holders, pinned
    members: dict[int, int] = {}  # the other processes of the daemon's session
    vouchers: dict[int, int] = {}  # proven members of the session: main and members
    forbidden: set[int] = set()  # members we may not signal
    strangers: set[int] = set()  # members that are not the daemon's: another daemon, a job
    ours: set[FileKey] = set(found.keys)  # the locks of the daemon: its workers may hold them
    session: int | None = None
    sent: list[int] = []  # the signals of the steps after the first, as they were sent
    targets = [found.main_pid] if found.main_pid else list(found.holders)
    probes = _probes(found)

    def join_session() -> bool:
        """Pin the session's processes not pinned yet, send them this step's signal;
        True if there were any."""
        nonlocal session
        if session is None:
            return False
        looked = _session_members(session, vouchers, set(pinned) | forbidden | strangers, ours)
        if looked is None:
            session = None  # nobody left to vouch for its id: no more looks
            return False
        new, others = looked
        strangers.update(others)
        for pid, pidfd in new.items():
            try:
                send_stop(pidfd, signum)
            except ProcessLookupError:
                pass
            except PermissionError:  # not ours to signal (setuid, as not root): left alone
                os.close(pidfd)
                forbidden.add(pid)
                continue
            members[pid] = vouchers[pid] = pidfd
        return any(pid in members for pid in new)

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
            for pid in [pid for pid in targets if pid not in pinned and pid not in members]:
                pidfd = _pin(pid, found.keys)
                if pidfd is None:
                    refused.add(pid)
                    continue
                pinned[pid] = pidfd
                if pid == found.main_pid:  # its session, looked at before it can exit
                    session = _daemon_session(pid, pidfd)
                    ours.update(key for _fd, key in procfs.held_locks(pid) or [])
                    vouchers[pid] = pidfd
                    join_session()
                try:
                    send_stop(pidfd, signum)
                except ProcessLookupError:
                    pass
            join_session()  # forked meanwhile, or missed: a worker's child
            alive = [fd for fd in [*pinned.values(), *members.values()] if not _exited(fd)]
            if alive:
                if time.monotonic() >= deadline:
                    if not next_step(alive):
                        break
                    targets = _current_holders(found.keys, probes)
                    continue
                wait_any(alive, deadline - time.monotonic())
                continue
            targets = _current_holders(found.keys, probes)  # children that kept the lock
            if join_session():
                continue
            if not targets:
                return _stopped(found, pinned, members, True, sent, started)
            if time.monotonic() >= deadline and not next_step([]):
                unpinned = targets  # holders, none of them pinned alive: what is left
                break
            if all(pid in pinned or pid in refused for pid in targets):
                # Only holders we could not pin (gone meanwhile, or not ours to signal):
                # look again, less and less often, until the deadline.
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                pause = min(pause * 2, _LAST_PAUSE)
        everyone = {**pinned, **members}
        left = [pid for pid, fd in everyone.items() if not _exited(fd)] or unpinned
    finally:
        for fd in [*pinned.values(), *members.values(), *probes.values()]:
            os.close(fd)
    return _stopped(found, pinned, members, False, sent, started, left)


def _stopped(
    found: Found,
    pinned: dict[int, int],
    members: dict[int, int],
    exited: bool,
    sent: list[int],
    started: float,
    left: list[int] | None = None,
) -> Stopped:
    """The report: a session member that held the lock when we looked is a holder."""
    holders = [pid for pid in members if pid in found.holders]
    others = [pid for pid in members if pid not in found.holders]
    seconds = time.monotonic() - started
    return Stopped([*pinned, *holders], exited, sent, seconds, left or [], others)
