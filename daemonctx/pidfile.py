"""Pidfiles that cannot go stale and cannot race.

The holder keeps an ``flock`` on the pidfile for its whole life. The kernel drops that
lock when the process dies, so a pidfile is *stale* exactly when it exists but nobody
holds its lock, and the next ``acquire`` simply takes it over: no ``kill(pid, 0)``
guessing, no trust in a pid that may have been reused.

The classes keep the API of lockfile's ``PIDLockFile`` and python-daemon's
``TimeoutPIDLockFile`` and raise lockfile's exceptions. lockfile (which pulls in
``socket`` and ``threading``) is imported only at the moment one of them is raised.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from .errors import DaemonOptionError

# typing costs ~5 ms of every daemon's start-up: annotations only (docs/architecture.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, TypeVar, Union

    PathArg = Union[str, "os.PathLike[str]"]
    FileKey = tuple[int, int, int]
    _Self = TypeVar("_Self", bound="PIDLockFile")

__all__ = ["PIDLockFile", "PidfileStatus", "TimeoutPIDLockFile", "read_pidfile_status"]

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_MAX_DELAY = 0.05  # cap of the exponential backoff while waiting for a holder
_READER_RETRIES = (0.001, 0.002, 0.004, 0.008)  # see _try_lock
_MAX_REPLACED = 1000  # consecutive "file was replaced under us" retries before giving up
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _lockfile_error(name: str, message: str) -> Exception:
    """Build lockfile's exception *name*; importing lockfile only here keeps imports lean."""
    import lockfile  # type: ignore[import-untyped]

    cls: type[Exception] = getattr(lockfile, name)
    return cls(message)


class _Unusable(Exception):
    """The path cannot be used as a pidfile; public callers turn this into LockFailed."""


def _refuse(path: str, what: str) -> _Unusable:
    return _Unusable(f"{path} is {what}, not a regular file; refusing to use it as a pidfile")


def _create(path: str) -> int | None:
    """A new file at *path* (mode 0o644 less the umask), opened read-write, or None when
    it cannot be created (it exists, say): then ``_open`` opens what is there."""
    try:
        return os.open(path, _OPEN_FLAGS | os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return None


def _open(path: str, writable: bool) -> int | None:
    """Open *path* as a pidfile: never through a symlink, and only if it is a regular file.

    ``writable`` opens read-write and creates the file (mode 0o644 less the umask);
    otherwise a missing file gives None. ``lstat`` refuses a FIFO or device before it is
    opened (opening one can block or have side effects); O_NOFOLLOW, O_NONBLOCK and the
    ``fstat`` of the open fd close the race with a file swapped in meanwhile.
    """
    flags = _OPEN_FLAGS | (os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY)
    try:
        kind = stat.S_IFMT(os.lstat(path).st_mode)
    except FileNotFoundError:
        if not writable:
            return None
    except OSError as exc:
        raise _Unusable(f"cannot open pidfile {path}: {exc.strerror}") from exc
    else:
        if kind != stat.S_IFREG:
            raise _refuse(path, _KINDS.get(kind, "not a regular file"))
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError as exc:
        if not writable:
            return None
        raise _Unusable(f"cannot create pidfile {path}: {exc.strerror}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, _KINDS[stat.S_IFLNK]) from exc
        raise _Unusable(f"cannot open pidfile {path}: {exc.strerror}") from exc
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        raise _refuse(path, _KINDS.get(kind, "not a regular file"))
    return fd


def _untrusted(path: str, st: os.stat_result, uid: int | None = None) -> str | None:
    """Why a pidfile (or its directory) must not be trusted, as start-stop-daemon rules:
    owned by a user other than us or root, or writable by someone else. None if trusted.

    ``uid``: the user a DaemonContext switches to, trusted too as the owner of a
    directory (not of a file) for that context's pidfile: a directory of its own,
    such as systemd's ``RuntimeDirectory=`` with ``User=``, is where that daemon's
    pidfile goes. Only the pidfile's own directory, in one that user cannot write
    (``_plain_trusted_directories``, ``paths.check_path``): it may then delete or
    replace what is in it, not which directory it is, nor make root write elsewhere
    (its symlinks are refused, and hard links: ``_extra_links``)."""
    me = os.geteuid()
    mine = uid is not None and uid not in (0, me) and stat.S_ISDIR(st.st_mode)
    if st.st_uid not in (0, me) and not (mine and st.st_uid == uid):
        whom = f"root, uid {me} or the daemon's uid {uid}" if mine else f"root or uid {me}"
        return f"{path} is owned by uid {st.st_uid}, not by {whom}"
    mode = st.st_mode
    if stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
        return None  # sticky: others may add files, but not replace ours
    if mode & stat.S_IWOTH:
        return f"{path} is writable by others (mode {stat.S_IMODE(mode):04o})"
    if mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid()):
        return f"{path} is writable by group {st.st_gid} (mode {stat.S_IMODE(mode):04o})"
    return None


def _others_may_write(st: os.stat_result) -> bool:
    """Whether others, or a group not root's or ours, may write *st*, sticky or not."""
    mode = st.st_mode
    return bool(mode & stat.S_IWOTH or (mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid())))


def _extra_links(path: str, st: os.stat_result) -> str | None:
    """Why a pidfile with more than one name must not be used, or None. Its own hidden
    second name (``guard_path``) is the only other name it may have: with
    ``fs.protected_hardlinks=0`` a user who may write its directory could link a file
    of root's there (another daemon's pidfile), for root to rewrite, lock or remove."""
    if st.st_nlink <= 1:
        return None
    guard = guard_path(path)
    names = 1
    try:
        there = os.lstat(guard)
    except OSError:
        pass
    else:
        names += (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino)
    if st.st_nlink > names:  # rare: a start killed between its spare link and its unlink
        names += _drop_spares(guard, st)
    if st.st_nlink <= names:
        return None
    return f"{path} has {st.st_nlink} hard links (it may be another file's name)"


def _drop_spares(guard: str, st: os.stat_result) -> int:
    """Remove the spare names (``GUARD.<pid>``, ``_link_guard``'s and ``_restore``'s)
    a start killed at the wrong moment left on the pidfile ``st`` (called under its
    lock: nobody else adds or removes one meanwhile); how many there were. Only
    names in the pidfile's own directory count: a name elsewhere is another file's."""
    directory, prefix = os.path.split(guard)
    prefix += "."
    dropped = 0
    try:
        with os.scandir(directory or ".") as entries:
            for entry in entries:
                rest = entry.name[len(prefix) :]
                if not entry.name.startswith(prefix) or not rest.isdigit() or not rest.isascii():
                    continue
                if entry.inode() != st.st_ino or not entry.is_file(follow_symlinks=False):
                    continue
                os.unlink(entry.path)
                dropped += 1
    except OSError:
        pass
    return dropped


def _plain_trusted_directories(directory: str, uid: int | None = None) -> bool:
    """Whether every directory from / down to *directory* (absolute) is a real directory,
    no symlink, owned by root or us and writable by nobody else (or sticky): the common
    case, checked with a few lstat calls. Otherwise ``paths.check_path`` decides.

    *directory* itself may be the daemon's ``uid``'s, in a parent that nobody else may
    write, sticky or not: then that user cannot rename it, or put a symlink in its place
    between this check and the daemon's ``acquire()`` (which runs as root)."""
    parts = ["", *directory.strip("/").split("/")]
    current, above = "/", None
    for n, part in enumerate(parts):
        current = os.path.join(current, part) if part else current
        try:
            st = os.lstat(current)
        except OSError:
            return False
        last = n == len(parts) - 1
        if not stat.S_ISDIR(st.st_mode) or _untrusted(current, st, uid if last else None):
            return False
        mine = last and st.st_uid not in (0, os.geteuid())
        if mine and above is not None and _others_may_write(above):
            return False  # the daemon's user's, where others may write: check_path says
        above = st
    return True


def _read_only_twin(path: str, fd: int, uid: int | None) -> int | None:
    """A read-only fd on fd's file (the one that will hold the lock), or None if
    *path* names another file by now. Refuses a file, or a directory, another user
    (than the daemon's ``uid``) controls: a pidfile that user could rewrite must not
    steer root."""
    st = os.fstat(fd)
    reason = _untrusted(path, st, uid)
    if reason is not None:
        raise _Unusable(f"refusing pidfile {path}: {reason}")
    reason = _untrusted_directory(path, uid)  # again, now that the file is open there
    if reason is not None:
        raise _Unusable(f"refusing pidfile {path}: {reason}")
    try:
        twin = os.open(path, _OPEN_FLAGS | os.O_RDONLY)
    except FileNotFoundError:
        return None  # unlinked since: start over
    except OSError as exc:  # EMFILE with one fd left: an error, not a reason to retry
        raise _Unusable(f"cannot open pidfile {path}: {exc.strerror}") from exc
    mine = os.fstat(twin)
    if (mine.st_dev, mine.st_ino) != (st.st_dev, st.st_ino):
        os.close(twin)
        return None
    return twin


def _untrusted_directory(path: str, uid: int | None) -> str | None:
    """Why the directory ``path`` is in must not be trusted (another user's), or None."""
    directory = os.path.dirname(path) or "."
    try:
        return _untrusted(directory, os.stat(directory), uid)
    except OSError:
        return None  # the open says what is wrong


def _refuse_untrusted_directory(path: str, uid: int | None) -> None:
    """``LockFailed`` when the directory ``path`` is in is another user's (as
    ``_read_only_twin`` says again once the file is open): checked first, so
    that no empty pidfile is left there by a refused start."""
    reason = _untrusted_directory(path, uid)
    if reason is not None:
        raise _lockfile_error("LockFailed", f"refusing pidfile {path}: {reason}")


def _forget(path: str, fd: int, created: bool) -> None:
    """Close *fd*, first unlinking the file if this acquire created it and the path
    still names it: a failed acquire leaves no (empty) pidfile behind. Needs no
    new descriptor (with one left, the open of the second one is what failed).
    Locked first, unlinked, then closed, as ``_let_go`` does: a start that opened
    the file meanwhile and locks it next finds it unlinked and starts over; one
    that holds it already keeps it."""
    try:
        if created:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _is_at_path(path, fd) and os.fstat(fd).st_size == 0:
                os.unlink(path)
    except OSError:  # BlockingIOError: another start holds it, and it is theirs
        pass
    finally:
        os.close(fd)


def _abandon(path: str, fd: int, lock_fd: int, created: bool) -> None:
    """Close *fd* and *lock_fd* (which holds the lock) of a pidfile we locked but did
    not write: first unlinked, under our lock, if this acquire created it (it is
    still empty), else left as it was (a stale pidfile, or another tool's file)."""
    try:
        if created and _is_at_path(path, lock_fd) and os.fstat(lock_fd).st_size == 0:
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)
        os.close(lock_fd)


def _absolute(path: str) -> str:
    """*path* joined to the working directory, not folded: "link/.." is the kernel's."""
    return path if path.startswith("/") else os.path.join(os.getcwd(), path)


def _trusted_place(seen: str, uid: int | None = None) -> str:
    """Where the pidfile *seen* (absolute) is: its directories resolved through
    trusted symlinks only (the file itself is never a symlink). Raises
    ``paths.UnsafePathError`` naming *seen* when another user (than the daemon's
    ``uid``) controls one of them, and ``OSError`` when one is missing or cannot be
    looked at."""
    if _plain_trusted_directories(os.path.dirname(seen), uid):
        return seen
    from .paths import UnsafePathError, check_path  # symlinks, or a refusal to explain

    try:
        directory = check_path(os.path.dirname(seen), "pidfile", uid)
    except UnsafePathError as exc:
        raise UnsafePathError("pidfile", seen, exc.reason) from None
    return os.path.join(directory, os.path.basename(seen))


def _open_trusted(path: str) -> int | None:
    """A read-only fd on the pidfile at *path* if it is one we trust (root's or ours,
    writable by nobody else, in directories nobody else controls); None if there is
    none, or one another user controls. ``_Unusable`` for a symlink or special file."""
    try:
        real = _trusted_place(_absolute(path))
    except PermissionError:  # paths.UnsafePathError: another user's directory
        return None
    except OSError:
        real = path  # a missing directory, say: the open tells
    fd = _open(real, writable=False)
    if fd is not None and _untrusted(real, os.fstat(fd)) is not None:
        os.close(fd)
        return None
    return fd


def _open_or_fail(path: str, writable: bool) -> int | None:
    try:
        return _open(path, writable)
    except _Unusable as exc:
        raise _lockfile_error("LockFailed", str(exc)) from exc.__cause__


def _pid_in(fd: int) -> int | None:
    """The pid written in the open pidfile; None when empty (not yet written) or not a pid."""
    try:
        line = os.pread(fd, 64, 0).split(b"\n", 1)[0].strip()
    except OSError:
        return None
    # Linux pids go up to 2**22 (PID_MAX_LIMIT): anything longer is not a pid
    return int(line) if line.isdigit() and len(line) <= 7 and 0 < int(line) <= 2**22 else None


def _other_text(fd: int) -> bool:
    """True when the file holds something else than a pid (or nothing): a typo's
    --pidfile app.conf must not be emptied, overwritten or removed."""
    try:
        data = os.pread(fd, 65, 0)
    except OSError:
        return False
    # A pid on the first line, as _pid_in reads it (what follows it is not looked
    # at), or nothing: NULs a crash left (written size, no data) count for nothing.
    first = data.replace(b"\0", b"").split(b"\n", 1)[0].strip()
    return len(data) > 64 or not (first == b"" or (first.isdigit() and len(first) <= 7))


def _not_a_pidfile(path: str, doing: str) -> Exception:
    message = f"refusing to {doing} {path}: it holds something other than a pid"
    return _lockfile_error("LockFailed", message)


def _is_at_path(path: str, fd: int) -> bool:
    """True while *fd* is still the file linked at *path* (not unlinked, not replaced)."""
    mine = os.fstat(fd)
    try:
        there = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return mine.st_nlink > 0 and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _exclusive_holder(
    fd: int, flocks: list[tuple[int, FileKey]] | None = None, *, held: bool = False
) -> int | None:
    """A live process that holds the exclusive flock on fd's file, or None if none does.

    The pid written in the file is preferred when that process really holds the
    lock (its fdinfo shows it); otherwise any verified holder, for instance a child
    that inherited the lock from a daemon that has exited. When holders cannot be
    looked at (another user's processes, as non-root), the written pid is returned
    if that process started before the pid was written (a pid reused later did not).
    Without a /proc of ours (none, or another pid namespace's), the written pid.
    """
    from . import procfs  # only when the lock is held: never on a fresh start

    st = os.fstat(fd)
    key = procfs.file_key(st)
    recorded = _pid_in(fd)
    if flocks is None:
        flocks = procfs.exclusive_flocks()
    if flocks is None or procfs.foreign():  # no /proc of ours: the file is all we have
        return recorded
    lockers = [pid for pid, locked in flocks if locked == key]
    if not lockers and not held:  # ``held``: a flock of ours failed, /proc/locks may hide it
        return None
    if recorded is not None:
        fds = procfs.holding_fds(recorded, key)
        if fds:
            return recorded
        if (
            fds is None
            and procfs.is_original(recorded, st.st_mtime)
            and not procfs.another_taker(recorded, lockers)
        ):
            return recorded
    holders = procfs.find_lock_holders(key, lockers, held=held)
    return holders.pids[0] if holders.pids else None


def _is_held(fd: int) -> bool:
    """Whether any open file description holds an exclusive flock on fd's file right now."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _try_lock(fd: int) -> tuple[bool, int | None]:
    """Take the exclusive lock without blocking: (True, None), or (False, holder pid if known).

    A failure that /proc/locks does not pin on an exclusive holder is retried over ~15 ms:
    it is usually a reader's momentary shared lock (``read_pidfile_status``), which must
    not make a starting daemon fail.
    """
    for delay in (0.0, *_READER_RETRIES):
        if delay:
            time.sleep(delay)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from . import procfs  # contention only: never on a fresh start

            flocks = procfs.exclusive_flocks()  # read once, for both questions
            key = procfs.file_key(os.fstat(fd))
            if flocks is None or any(locked == key for _pid, locked in flocks):
                return False, _exclusive_holder(fd, flocks)
        else:
            return True, None
    return False, _exclusive_holder(fd, held=True)


def _pause(pid: int | None, seconds: float) -> bool:
    """Sleep up to *seconds*, waking at once if process *pid* exits; True if it did."""
    if pid is not None:
        from .pidfd import open_pidfd, wait_exit  # waiting for a holder: not the fast path

        pidfd = open_pidfd(pid)
        if pidfd is not None:
            try:
                return wait_exit(pidfd, max(0.001, seconds))
            finally:
                os.close(pidfd)
    time.sleep(seconds)
    return False


def _pid_of(fd: int) -> int | None:
    """``read_pid``'s answer for the open file *fd* (see there).

    A live process is named only when it is proven to hold the lock: a stale file's
    pid that names a live process is another process's, or one that no longer holds
    its pidfile (when the file was written is no proof: any ``touch`` moves it)."""
    if _is_held(fd):
        return _exclusive_holder(fd, held=True)
    recorded = _pid_in(fd)
    if recorded is None:
        return None
    from . import procfs

    if procfs.foreign():
        return None  # whether a process has that pid, another namespace's /proc cannot tell
    if not procfs.is_running(recorded):
        return recorded  # names no live process (or a zombie): harmless, and shows it is stale
    return None


def _let_go(path: str, fd: int) -> None:
    """Unlink *path* and its guard if they are still fd's file, then unlock and close *fd*.

    Unlinking before unlocking means a reader can never find this file locked by anyone
    but us. If the file cannot be unlinked (a root-owned directory after dropping root,
    or the path no longer names it), it stays: unlocked, so stale. Its pid is then never
    trusted (``read_pid`` and ``status`` verify it), the next acquire takes it over, and
    ``daemonctx stop`` removes it. (The lock fd is read-only: it cannot empty the file.)
    """
    try:
        for name in (guard_path(path), path):
            try:
                if _is_at_path(name, fd):
                    os.unlink(name)
            except OSError:
                pass
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)  # also for copies of fd inherited by children
        except OSError:
            pass
        os.close(fd)


def guard_path(path: str) -> str:
    """The pidfile's second name, a hidden hard link beside it: ``/run/.app.pid.lock``.

    The holder links its pidfile there, so the lock keeps a name when the pidfile
    is deleted or replaced by another tool (an ``rm``, systemd after a failed
    start): a second start finds the lock there, fails, and puts the pidfile back.
    """
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.lock")


def _held_guard(
    path: str, ours: os.stat_result | None, *, replacing: bool = False
) -> tuple[int, int | None] | None:
    """(fd, holder) of a guard that a live daemon of *path* holds and that is not
    *ours*; None when there is no guard, nobody holds it (stale), or its holder is
    another program's (``guard_is_pidfiles``).

    ``replacing``: a start that will link its own file at the guard name, which
    replaces only a stale pidfile there (empty or a pid, as ``_other_text`` reads
    it). Anything else that nobody holds, a symlink or a file of another tool's
    that happens to have the name, raises ``_ForeignGuard``."""
    guard = guard_path(path)
    try:
        fd = _open(guard, writable=False)
    except _Unusable:
        if replacing:  # a symlink, a FIFO...: no pidfile of ours
            try:
                kind = stat.S_IFMT(os.lstat(guard).st_mode)
            except OSError:
                return None
            if kind != stat.S_IFREG:
                raise _ForeignGuard(f"it is {_KINDS.get(kind, 'not a regular file')}") from None
        return None
    if fd is None:
        return None
    keep = False
    try:
        st = os.fstat(fd)
        if ours is not None and (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
            return None
        if _untrusted(path, st) is None:
            locked, holder = _try_lock(fd)
            if not locked:
                if guard_is_pidfiles(path, fd, holder):
                    keep = True  # the caller closes it
                    return fd, holder
                return None  # another program's lock on a file of its own: left alone
        elif _is_held(fd):
            return None  # another user's program's lock: left alone, as above
        if replacing and _other_text(fd):
            raise _ForeignGuard("it holds something other than a pid")
        return None
    finally:
        if not keep:
            os.close(fd)


class _ForeignGuard(_Unusable):
    """The guard name holds another tool's file, which is never replaced: ``why``."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    def message(self, path: str) -> str:
        """One line naming the pidfile *path* as the user gave it, and its guard."""
        guard = guard_path(path)
        return f"refusing to replace {guard}, the second name of pidfile {path}: {self.why}"


def guard_is_pidfiles(path: str, fd: int, holder: int | None) -> bool:
    """Whether the lock held on fd's file, found at *path*'s guard name, is a daemon's
    of the pidfile *path*: one of its holders opened it as *path* (a daemon opens its
    pidfile, and links the guard to it). Another program may lock a file of its own
    at that name (``flock /run/.app.pid.lock CMD``): its holders opened it by that
    name, and it is no daemon's. One holder we can look at decides: an exclusive
    flock belongs to one open file, which all its holders share, under the name it
    was opened by. True when none can be looked at (another user's processes, as
    non-root, or a /proc of another pid namespace): judged as held, as before."""
    from . import procfs  # only when a guard is held: never on a fresh start
    from .paths import resolved_name

    if procfs.foreign():
        return True  # its holders cannot be looked at: judged as held
    key = procfs.file_key(os.fstat(fd))
    real = resolved_name(path)
    said = procfs.opened_as(holder, key, real) if holder else None
    if said is None:  # the taker /proc/locks names is gone, or out of our sight
        for pid in procfs.find_lock_holders(key, [holder] if holder else [], held=True).pids:
            said = procfs.opened_as(pid, key, real)
            if said is not None:
                break
    return said is not False


def _remove_stale_guard(path: str) -> None:
    """Unlink the guard if nobody holds it (a shared lock, as ``break_lock`` takes)
    and it is a stale pidfile: a file of another tool's at that name is left."""
    guard = guard_path(path)
    try:
        fd = _open(guard, writable=False)
    except _Unusable:
        return
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        if not _other_text(fd) and _is_at_path(guard, fd):
            os.unlink(guard)
    except OSError:
        pass
    finally:
        os.close(fd)


def _restore(path: str, guard_fd: int) -> bool:
    """Put the guard's file back at *path* (missing or replaced): True if done."""
    guard = guard_path(path)
    spare = f"{guard}.{os.getpid()}"
    try:
        if not _is_at_path(guard, guard_fd):
            return False
        os.link(guard, spare, follow_symlinks=False)  # a symlink put there: not its target
        os.rename(spare, path)
    except OSError:
        return False
    finally:
        try:
            os.unlink(spare)  # left when rename found both names on one file
        except OSError:
            pass
    return True


def restore_pidfile(path: str) -> bool:
    """Put a live daemon's pidfile back at *path* from its guard link, after *path* was
    deleted or replaced; True if done. A guard nobody holds is left alone."""
    held = _held_guard(path, None)
    if held is None:
        return False
    try:
        return _restore(path, held[0])
    finally:
        os.close(held[0])


def _link_guard(path: str, fd: int) -> None:
    """Link the pidfile we hold (fd) at its guard name, replacing a stale guard.
    Best effort: a file system without hard links keeps the path as the only name.
    Only a stale pidfile is replaced (``_held_guard`` refused anything else before
    our pid was written); one put there since, or a lock of another program's, is
    left as it is."""
    guard = guard_path(path)
    try:
        os.link(path, guard, follow_symlinks=False)  # a symlink put there: not its target
        return
    except FileExistsError:
        if _is_at_path(guard, fd) or not _stale_pidfile_at(guard):
            return  # our very file (a stale pidfile taken over); or not ours to replace
    except OSError:
        return
    spare = f"{guard}.{os.getpid()}"
    try:
        os.link(path, spare, follow_symlinks=False)
        os.rename(spare, guard)  # the stale guard is replaced
    except OSError:
        pass
    finally:
        try:
            os.unlink(spare)  # left when rename found both names on one file
        except OSError:
            pass


def _stale_pidfile_at(path: str) -> bool:
    """Whether the file at *path* is a stale pidfile: a regular file nobody holds an
    exclusive flock on, empty or holding a pid. Not a symlink, not another
    program's locked file, not another tool's data that happens to have the name."""
    try:
        fd = _open(path, writable=False)
    except _Unusable:
        return False
    if fd is None:
        return False
    try:
        return not _is_held(fd) and not _other_text(fd)
    finally:
        os.close(fd)


def _check_path(path: PathArg) -> str:
    p = os.fspath(path)
    if not isinstance(p, str) or not p:
        raise DaemonOptionError("path", path, "must be a non-empty str path")
    return p


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise DaemonOptionError(name, value, "must be a number of seconds or None")
    return value


def _deleted_message(path: str, pid: int | None, restored: bool) -> str:
    who = f"process {pid}" if pid else "a running process"
    done = "; the file has been put back" if restored else ""
    return f"{path} was deleted or replaced, but {who} still holds its lock{done}"


def _held_message(path: str, pid: int | None) -> str:
    who = f"running process {pid}" if pid else "a running process (its pid is not written yet)"
    return f"{path} is locked by {who}"


class PIDLockFile:
    """A pidfile locked with ``flock`` for as long as its holder lives (lockfile's API).

    ``timeout`` is the default for ``acquire``: None or <= 0 fails at once when a live
    process holds the lock, > 0 waits up to that many seconds. A pidfile left by a dead
    process never blocks. As in lockfile, a relative ``path`` is resolved when the lock is
    taken (inside a DaemonContext: after its chroot and chdir), and ``threaded`` is ignored.
    """

    def __init__(self, path: PathArg, threaded: bool = False, timeout: float | None = None):
        self.path = _check_path(path)
        self.timeout = _check_timeout("timeout", timeout)
        self._fd: int | None = None
        self._owner = 0  # pid of the process that acquired; a forked child is not the owner
        self._daemon_uid: int | None = None  # trusted too (fail_if_held's uid)

    def _default_timeout(self) -> float | None:
        return self.timeout

    def fail_if_held(
        self, path: str | None = None, *, held_ok: bool = False, uid: int | None = None
    ) -> None:
        """Check the pidfile in the foreground: refuse one another user controls
        (``paths.UnsafePathError``), and raise ``AlreadyLocked`` naming the holder
        if a live process holds the lock and ``acquire()`` would not wait for it.

        Held includes a pidfile deleted or replaced while its daemon runs (an
        operator's ``rm``, systemd after a failed start): that daemon still holds
        the lock of the old file, found through its second name (``guard_path``),
        and a second one must not start beside it. Not once both names are gone:
        that search reads /proc/locks, up to 15 ms (an RCU grace period), too dear
        for every start; ``daemonctx.status()`` makes it.

        ``DaemonContext.open()`` calls it, so a second instance fails before it
        forks. ``path`` is where the file is seen from the calling process, when a
        chroot or a relative path puts it elsewhere. ``uid`` is the user the
        context switches to: the pidfile's own directory may be that user's, here
        and for the ``acquire()`` that follows in the daemon, if its parent is
        one that user cannot write (it could put a symlink in its place).
        """
        self._daemon_uid = uid
        seen = _absolute(path or self.path)
        real = _trusted_place(seen, uid)
        try:
            st = os.lstat(real)
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            reason = _untrusted(seen, st, uid)
            if reason is not None:
                from .paths import UnsafePathError

                raise UnsafePathError("pidfile", seen, reason)
        if held_ok:
            return  # only the path's trust was asked for (a restart's check)
        if st is not None and stat.S_ISREG(st.st_mode):
            try:
                fd = os.open(real, _OPEN_FLAGS | os.O_RDONLY)
            except OSError:
                fd = None  # gone since, or unreadable: acquire() says what is wrong
            if fd is not None:
                try:
                    if _other_text(fd):
                        raise _not_a_pidfile(self.path, "overwrite")
                finally:
                    os.close(fd)
        timeout = self._default_timeout()
        waits = timeout is not None and timeout > 0
        status = read_pidfile_status(real)
        if status.running:
            if waits:
                return  # acquire() will wait for the holder to go (a restart)
            raise _lockfile_error("AlreadyLocked", _held_message(self.path, status.pid))
        try:
            held = _held_guard(real, None, replacing=True)
        except _ForeignGuard as exc:  # acquire() would refuse it: say so before forking
            raise _lockfile_error("LockFailed", exc.message(self.path)) from None
        if held is not None:
            guard_fd, holder = held
            try:
                # A daemon that created and locked the pidfile (and its guard) since
                # we looked at it is holding it, not hiding it: held, not deleted.
                if _is_at_path(real, guard_fd):
                    raise _lockfile_error("AlreadyLocked", _held_message(self.path, holder))
                restored = _restore(real, guard_fd)
            finally:
                os.close(guard_fd)
            raise _lockfile_error("AlreadyLocked", _deleted_message(self.path, holder, restored))

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock and write our pid; raise AlreadyLocked or LockTimeout naming the holder."""
        if timeout is None:
            timeout = self.timeout
        if self._fd is not None:
            if self._owner == os.getpid():
                raise _lockfile_error(
                    "AlreadyLocked",
                    f"{self.path} is already locked by this object in this process ({self._owner})",
                )
            # A forked child: the inherited fd shares the parent's lock. Drop our copy
            # without unlocking (that would unlock the parent) and compete like anyone else.
            os.close(self._fd)
            self._fd = None
        deadline = time.monotonic() + timeout if timeout is not None and timeout > 0 else None
        delay, woken, replaced = 0.001, None, 0
        uid = self._daemon_uid
        _refuse_untrusted_directory(self.path, uid)  # before a file is created there
        while True:
            # The common case, a fresh start: create the file. A new file is a
            # regular file, so none of _open's checks is needed (nor the
            # exception of a failed lstat, costly just after a fork).
            fd = _create(self.path)
            created = fd is not None
            if fd is None:
                fd = _open_or_fail(self.path, writable=True)
            if fd is None:  # pragma: no cover - O_CREAT never reports a missing file
                continue
            try:
                lock_fd = _read_only_twin(self.path, fd, uid)
            except _Unusable as exc:
                # Closed (and the file we created unlinked) before lockfile is
                # imported to raise: that import needs a descriptor too.
                _forget(self.path, fd, created)
                raise _lockfile_error("LockFailed", str(exc)) from exc.__cause__
            except BaseException:
                _forget(self.path, fd, created)
                raise
            if lock_fd is None:  # replaced between the two opens
                os.close(fd)
                replaced += 1
                if replaced > _MAX_REPLACED:
                    raise _lockfile_error("LockFailed", f"{self.path} keeps being replaced")
                continue
            locked, holder = _try_lock(lock_fd)
            if locked and _is_at_path(self.path, lock_fd):
                # Under our lock: no start or daemon of this pidfile adds or removes
                # one of its names meanwhile (a holder unlinks them before unlocking).
                mine = os.fstat(lock_fd)
                reason = _extra_links(self.path, mine)
                if reason is not None:
                    _abandon(self.path, fd, lock_fd, created)
                    raise _lockfile_error("LockFailed", f"refusing pidfile {self.path}: {reason}")
                try:
                    held = _held_guard(self.path, mine, replacing=True)
                except _ForeignGuard as exc:  # another tool's file at the guard name
                    _abandon(self.path, fd, lock_fd, created)
                    raise _lockfile_error("LockFailed", exc.message(self.path)) from None
                if held is not None:  # the pidfile we replaced is a live daemon's
                    guard_fd, holder = held
                    os.close(fd)
                    _let_go(self.path, lock_fd)
                    try:
                        restored = _restore(self.path, guard_fd)
                    finally:
                        os.close(guard_fd)
                    message = _deleted_message(self.path, holder, restored)
                    raise _lockfile_error("AlreadyLocked", message)
                if _other_text(lock_fd):  # not ours to empty: unlocked and left as it is
                    os.close(fd)
                    os.close(lock_fd)
                    raise _not_a_pidfile(self.path, "overwrite")
                try:
                    data = b"%d\n" % os.getpid()
                    os.ftruncate(fd, 0)  # readers see empty ("not yet written") or the full pid
                    if os.pwrite(fd, data, 0) != len(data):
                        raise OSError(errno.EIO, "short write")
                except OSError as exc:
                    try:
                        os.ftruncate(fd, 0)  # no half-written pid left behind
                    except OSError:
                        pass
                    os.close(fd)
                    _let_go(self.path, lock_fd)
                    msg = f"cannot write pid to {self.path}: {exc.strerror}"
                    raise _lockfile_error("LockFailed", msg) from exc
                # Only the read-only twin is kept: a daemon that drops privileges
                # holds the lock but can never rewrite (or grow) its pidfile.
                os.close(fd)
                _link_guard(self.path, lock_fd)
                self._fd, self._owner = lock_fd, os.getpid()
                return
            moved = locked or not _is_at_path(self.path, lock_fd)
            os.close(fd)
            os.close(lock_fd)  # also drops a lock won on a file that is no longer at the path
            if moved:  # unlinked or replaced between our open and our lock: start over
                replaced += 1
                if replaced > _MAX_REPLACED:
                    raise _lockfile_error("LockFailed", f"{self.path} keeps being replaced")
                continue
            now = time.monotonic()
            if deadline is None:
                raise _lockfile_error("AlreadyLocked", _held_message(self.path, holder))
            if now >= deadline:
                msg = f"{_held_message(self.path, holder)} after waiting {timeout:g} s"
                raise _lockfile_error("LockTimeout", msg)
            if _pause(holder if holder != woken else None, min(delay, deadline - now)):
                woken = holder  # it exited; if the lock outlives it, poll instead of spinning
            delay = min(delay * 2, _MAX_DELAY)

    def release(self) -> None:
        """Unlink the pidfile, then unlock it.

        Never fails once we hold it: if it can no longer unlink the file (a
        root-owned directory after dropping root), it empties it instead.
        """
        fd = self._fd
        if fd is None:
            try:
                held = read_pidfile_status(self.path).running
            except Exception:
                held = False
            if held:
                raise _lockfile_error("NotMyLock", f"{self.path} is locked, but not by this object")
            raise _lockfile_error("NotLocked", f"{self.path} is not locked")
        if self._owner != os.getpid():
            raise _lockfile_error(
                "NotMyLock",
                f"{self.path} is locked by process {self._owner}, "
                f"not by this process ({os.getpid()})",
            )
        self._fd = None
        _let_go(self.path, fd)

    def read_pid(self) -> int | None:
        """The daemon's pid from the file, never a stranger's.

        While the lock is held: the pid written in the file if that process holds
        the lock, else the pid of a process that does (a child that inherited it).
        For a stale file (nobody holds the lock): the written pid while it names no
        process (harmless, and python-daemon-era runners see the file is stale),
        None once a process has that pid. Also None if the file is missing, empty,
        not a pid or not a regular file, and for a pidfile another user controls
        (``_open_trusted``): what it says would steer our signals.
        """
        for _ in range(10):  # the file may be replaced while we look: look again
            try:
                fd = _open_trusted(self.path)
            except _Unusable:
                return None
            if fd is None:
                return None
            try:
                pid = _pid_of(fd)
                if _is_at_path(self.path, fd):
                    return pid
            finally:
                os.close(fd)
        return None

    def is_locked(self) -> bool:
        """Whether the pidfile exists, held or stale, as lockfile's ``is_locked``;
        False for one another user controls, as ``read_pid`` ignores it.

        python-daemon-era code relies on it: a runner's ``stop`` checks
        ``is_locked()``, then ``read_pid()`` and ``break_lock()`` to clear the file
        of a daemon that was SIGKILLed. Whether a live process holds the lock is
        ``read_pidfile_status(path).running``.
        """
        try:
            fd = _open_trusted(self.path)
        except _Unusable as exc:
            raise _lockfile_error("LockFailed", str(exc)) from exc.__cause__
        if fd is None:
            return False
        os.close(fd)
        return True

    def i_am_locking(self) -> bool:
        """Whether this object holds the lock in this process (false in a forked child)."""
        return self._fd is not None and self._owner == os.getpid()

    def break_lock(self) -> None:
        """Remove a stale pidfile. A lock held by a live process is never stolen: that
        raises AlreadyLocked. If this object holds the lock, this is ``release()``."""
        if self.i_am_locking():
            self.release()
            return
        fd = _open_or_fail(self.path, writable=False)
        if fd is None:
            _remove_stale_guard(self.path)
            return
        try:
            # A shared lock, like a status reader's: granted only when no live
            # process holds the pidfile, and a start racing with us sees a
            # reader, waits a moment and retries instead of failing.
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _exclusive_holder(fd, held=True)
                raise _lockfile_error(
                    "AlreadyLocked",
                    _held_message(self.path, pid) + "; break_lock never steals a live lock",
                ) from None
            if _other_text(fd):
                raise _not_a_pidfile(self.path, "remove")
            if _is_at_path(self.path, fd):
                os.unlink(self.path)
        finally:
            os.close(fd)
        _remove_stale_guard(self.path)

    def fileno(self) -> int:
        """The fd that holds the lock (close-on-exec); make it inheritable to keep the lock
        across exec. Raises NotLocked unless this object holds the lock in this process."""
        fd = self._fd
        if fd is None or self._owner != os.getpid():
            raise _lockfile_error("NotLocked", f"{self.path} is not locked by this process")
        return fd

    def __enter__(self: _Self) -> _Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.path!r}>"


class TimeoutPIDLockFile(PIDLockFile):
    """python-daemon's ``TimeoutPIDLockFile``: ``acquire_timeout`` is acquire's default."""

    def __init__(
        self, path: PathArg, acquire_timeout: float | None = None, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(path, *args, **kwargs)
        self.acquire_timeout = _check_timeout("acquire_timeout", acquire_timeout)

    def _default_timeout(self) -> float | None:
        return self.acquire_timeout

    def acquire(self, timeout: float | None = None) -> None:
        """Like ``PIDLockFile.acquire``, with ``acquire_timeout`` when *timeout* is None."""
        super().acquire(self.acquire_timeout if timeout is None else timeout)


class PidfileStatus:
    """What a pidfile says about its daemon (see ``read_pidfile_status``).

    ``pid`` is set only when ``running``: the pid of the lock holder when we looked.
    ``recorded_pid`` is whatever pid the file contains, even when nobody holds the lock
    (then that process is dead, or its pid has been reused): for messages only, never
    for signals. (A plain class: a namedtuple costs ~2 ms of start-up to define.)
    """

    __slots__ = ("exists", "path", "pid", "recorded_pid", "running")

    def __init__(
        self, path: str, exists: bool, running: bool, pid: int | None, recorded_pid: int | None
    ) -> None:
        self.path = path
        self.exists = exists
        self.running = running
        self.pid = pid
        self.recorded_pid = recorded_pid

    def _fields(self) -> tuple[str, bool, bool, int | None, int | None]:
        return (self.path, self.exists, self.running, self.pid, self.recorded_pid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PidfileStatus):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"PidfileStatus(path={self.path!r}, exists={self.exists}, running={self.running},"
            f" pid={self.pid}, recorded_pid={self.recorded_pid})"
        )


def read_pidfile_status(path: PathArg) -> PidfileStatus:
    """Tell whether the pidfile's daemon is running, and its pid, without trusting pids.

    "Running" means the file's lock is held right now (tested with a momentary shared lock
    on a fresh read-only descriptor; the file is never created). The pid comes from
    /proc/locks, else from the file. If the file is replaced while we look, we look again.
    Raises lockfile.LockFailed if the path is a symlink or not a regular file.
    """
    path = _check_path(path)
    status = PidfileStatus(path, False, False, None, None)
    for _ in range(10):
        fd = _open_or_fail(path, writable=False)
        if fd is None:
            return PidfileStatus(path, False, False, None, None)
        try:
            running = _is_held(fd)
            pid = _exclusive_holder(fd, held=True) if running else None
            recorded = _pid_in(fd)
            status = PidfileStatus(path, True, running, pid, recorded)
            if _is_at_path(path, fd):
                return status
        finally:
            os.close(fd)
    return status
