"""Which paths root may trust, and a safe opener for a daemon's log files.

daemonctx runs as root and opens files at paths the operator names (pidfiles,
``--stdout``, ``--stderr``). A local user who owns a directory on the way, or can
write one (/tmp), could plant a symlink, a hard link or a file there and have
root write where they choose. ``check_path`` applies start-stop-daemon's rules
to every component before anything is opened; ``open_log`` then opens without
following a symlink and checks the open file again, which closes the window
between the check and the open.

Imported on a daemon's start-up path: only ``os``, ``stat`` and ``errno``.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import DaemonError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "UnsafePathError",
    "check_owned_file",
    "check_path",
    "check_root",
    "jail_owner",
    "open_log",
    "trusted_uids",
]

_MAX_LINKS = 40  # the kernel's limit too
# O_NONBLOCK so that opening a FIFO nobody reads fails (ENXIO) instead of hanging; cleared
# after the open unless the caller writes non-blocking (open_log's ``blocking``).
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


def _show(path: str) -> str:
    """``path`` for a one-line message: quoted when it holds a newline or the like."""
    return path if path.isprintable() else repr(path)


class UnsafePathError(DaemonError, PermissionError):
    """A path another user could control; ``path`` is what the user typed, ``reason`` why it
    is refused. A ``PermissionError`` with errno EPERM: "insufficient privilege" (LSB code 4).
    """

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(errno.EPERM, f"refusing {what} {_show(path)}: {reason}")
        self.what = what
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"refusing {self.what} {_show(self.path)}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (multiprocessing, pytest-forked)
        return (type(self), (self.what, self.path, self.reason))


def trusted_uids() -> set[int]:
    """The owners whose files and directories we trust: root and ourselves."""
    return {0, os.geteuid()}


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _writers(st: os.stat_result) -> str | None:
    """Who besides trusted users may write ``st``: "others", "group N", or None."""
    if st.st_mode & stat.S_IWOTH:
        return "others"
    if st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid()):
        return f"group {st.st_gid}"
    return None


def _is_own_fd_dir(directory: str) -> bool:
    """/proc/self/fd or /proc/thread-self/fd as the walk resolves them: /proc/<our pid>/fd,
    /proc/<our pid>/task/<tid>/fd. Their links name our own open files ("pipe:[1234]")."""
    own = f"/proc/{os.getpid()}"
    if directory == f"{own}/fd":
        return True
    head, _, tid = os.path.dirname(directory).rpartition("/")
    return directory.endswith("/fd") and head == f"{own}/task" and tid.isdigit()


def _is_own_proc(directory: str) -> bool:
    """/proc itself (self, thread-self) or our own /proc/<pid>/...: links read as
    they lead, for us."""
    own = f"/proc/{os.getpid()}"
    return directory == "/proc" or directory == own or directory.startswith(own + "/")


def _proc_devices() -> set[int]:
    """The devices of every procfs mount, /proc's and others' (``mount -t proc``
    elsewhere): their links are followed only from /proc itself, ours."""
    devices = set()
    try:
        devices.add(os.lstat("/proc").st_dev)  # whatever mountinfo says
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return devices
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 2 and rest.split()[:1] == ["proc"]:
            major, _, minor = parts[2].partition(":")
            if major.isdigit() and minor.isdigit():
                devices.add(os.makedev(int(major), int(minor)))
    return devices


def _names(path: str) -> list[str]:
    """The components of ``path``, last first (a stack to pop)."""
    return [name for name in reversed(path.split("/")) if name not in ("", ".")]


def _walk(
    path: str,
    what: str,
    uid: int | None = None,
    jail: bool = False,
    owner_of_last: int | None = None,
) -> tuple[str, bool]:
    """``check_path``'s walk, trusting user ``uid`` too when given (its symbolic
    links as well); with ``jail``, the last directory may not be writable by others
    even if sticky. ``owner_of_last``: a user trusted as the owner of the last
    directory only (not of its links), in a directory nobody else may write, sticky
    or not: that user may change what is in it, never which directory it is. Also
    returns True when it stopped at one of our own /proc fd links, which must be
    opened through the link (no O_NOFOLLOW) or dup'd, and never created."""
    trusted = trusted_uids()
    link_owners = set(trusted)
    if uid is not None:
        trusted.add(uid)
        link_owners.add(uid)
    last_owner = owner_of_last if owner_of_last not in trusted else None

    def refuse(reason: str) -> UnsafePathError:
        return UnsafePathError(what, path, reason)

    def enter(directory: str, st: os.stat_result, last: bool = False) -> tuple[str, str | None]:
        if st.st_uid == last_owner:  # the daemon's own directory (RuntimeDirectory=)
            if not last:
                raise refuse(
                    f"{_show(directory)} is owned by uid {st.st_uid}, the daemon's user,"
                    " trusted as the owner of the pidfile's own directory only"
                )
            parent, writers = chain[-1]
            if writers:  # sticky is not enough: that user may rename its own entry
                raise refuse(
                    f"{_show(directory)} is owned by uid {st.st_uid}, the daemon's user,"
                    f" in {_show(parent)} writable by {writers}"
                )
        elif st.st_uid not in trusted:
            raise refuse(f"{_show(directory)} is owned by uid {st.st_uid}")
        writers = _writers(st)
        if writers and jail and last:  # anyone could make the jail's /lib, sticky or not
            raise refuse(f"{_show(directory)} is writable by {writers} (mode {_mode(st)})")
        if writers and not st.st_mode & stat.S_ISVTX:
            raise refuse(
                f"{_show(directory)} is writable by {writers} (mode {_mode(st)}) and not sticky"
            )
        return directory, writers

    # The directories walked into, each with who else may write it (sticky if anyone).
    # ".." is the kernel's (the parent of where a link led), not folded as text.
    chain: list[tuple[str, str | None]] = []
    chain.append(enter("/", os.lstat("/"), jail and path.strip("/") == ""))
    todo = _names(path if path.startswith("/") else os.path.join(os.getcwd(), path))
    links = 0
    proc: set[int] | None = None  # the procfs mounts' devices
    while todo:
        name = todo.pop()
        current, writers = chain[-1]
        if name == "..":  # every directory in chain is real (no symlink), so this is its parent
            if len(chain) > 1:
                chain.pop()
            continue
        entry = os.path.join(current, name)
        try:
            st = os.lstat(entry)
        except FileNotFoundError:
            if not todo:
                return entry, False  # a file to create
            message = f"{what} {_show(path)}: no such directory {_show(entry)}"
            raise FileNotFoundError(errno.ENOENT, message) from None
        except OSError as exc:
            raise OSError(exc.errno, f"cannot check {what} {_show(path)}: {exc.strerror}") from exc
        is_link = stat.S_ISLNK(st.st_mode)
        if st.st_uid not in link_owners and is_link:
            raise refuse(f"{_show(entry)} is a symbolic link owned by uid {st.st_uid}")
        if st.st_uid not in trusted and writers and st.st_uid != last_owner:
            raise refuse(
                f"{_show(entry)} is owned by uid {st.st_uid}, in {_show(current)}"
                f" writable by {writers}"
            )
        if is_link:
            if not todo and _is_own_fd_dir(current):
                return entry, True
            if proc is None:  # read once a walk, at its first link
                proc = _proc_devices()
            if st.st_dev in proc and not _is_own_proc(current):  # that process's view
                raise refuse(
                    f"{_show(entry)} is another process's link (its root, cwd or files"
                    " may be another mount namespace's): give the path itself"
                )
            links += 1
            if links > _MAX_LINKS:
                raise refuse("too many symbolic links")
            try:
                target = os.readlink(entry)
            except OSError as exc:  # /proc/1/fd/1: a link even root may not read
                message = f"cannot check {what} {_show(path)}: {exc.strerror}"
                raise OSError(exc.errno, message) from exc
            if target.startswith("/"):
                del chain[1:]
            todo.extend(_names(target))
        elif stat.S_ISDIR(st.st_mode):
            chain.append(enter(entry, st, not todo))
        elif todo:
            message = f"{what} {_show(path)}: {_show(entry)} is not a directory"
            raise NotADirectoryError(errno.ENOTDIR, message)
        else:
            return entry, False
    return chain[-1][0], False


def resolved_name(path: str) -> str:
    """One spelling of the file at ``path``, to compare two paths or to match the
    name the kernel gives an open file: its directory's real path, as far as it
    exists (``.``, ``..``, ``//`` and symbolic links resolved), and its own name
    (a link there is the file compared, not followed)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(directory), name)


def check_path(path: str, what: str, uid: int | None = None) -> str:
    """Return ``path`` resolved (absolute, symlinks followed; a missing last component kept)
    after checking, from "/" down, that no other user could have chosen what it names.
    ``uid``, a daemon's own user, is trusted too as the owner of the last directory
    (where its pidfile goes), not of one on the way to it nor of symbolic links, and only
    in a directory nobody else may write, sticky or not: it may not send us elsewhere.

    Refused (``UnsafePathError``): a directory owned by another user, or writable by others
    (or a group other than ours) and not sticky; in a sticky one, an entry of another user's;
    a symbolic link of another user's; more than 40 links. A missing directory on the way
    raises ``FileNotFoundError``. A link in /proc/self/fd (our own open file, such as
    /dev/stdout's) ends the walk: that link's path is returned, for that fd.
    """
    return _walk(path, what, owner_of_last=uid)[0]


def jail_owner(uid: int | None, gid: int | None) -> int | None:
    """``uid`` when a jail of that user's may be trusted for a daemon running as
    ``uid`` with group ``gid``: the group is one the user has (primary or listed
    in the host's group database), so the user gains nothing by filling the jail.
    None otherwise (``--user nobody --group disk``: nobody's jail would run code
    with group disk), or for no user."""
    if uid is None:
        return None
    if gid is None:
        return uid
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except (KeyError, OverflowError):
        return None
    if gid == entry.pw_gid or gid in os.getgrouplist(entry.pw_name, entry.pw_gid):
        return uid
    return None


def check_root(path: str, what: str, uid: int | None = None) -> str:
    """Return the jail ``path`` resolved (absolute, no link, no ".."): the path to
    chroot to, so that the jail entered is the one checked. No user but root, us,
    and the daemon's own user ``uid`` could have chosen what is in it: root enters
    it, and what it finds there is run as the daemon's user. ``check_path``'s rules
    from "/" down, and the jail itself writable by none of the others, sticky or
    not (sshd's rule for a ``ChrootDirectory``, which trusts root only)."""
    resolved, own_fd = _walk(path, what, uid, jail=True)
    if own_fd:  # where the link leads is not looked at: the daemon's own fds differ
        raise UnsafePathError(what, path, "a link to an open file; give the directory's path")
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} {_show(path)}: no such directory") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{what} {_show(path)}: not a directory")
    # Judged again where the walk ended: "x/.." or a link to "." ends in a directory
    # entered earlier, as one on the way (where sticky was enough).
    writers = _writers(st)
    if writers:
        reason = f"{_show(resolved)} is writable by {writers} (mode {_mode(st)})"
        raise UnsafePathError(what, path, reason)
    return resolved


def check_owned_file(st: os.stat_result, path: str, what: str) -> None:
    """Refuse a pidfile another user owns or may write, as start-stop-daemon does: we would
    trust the pid in it (and signal that process)."""
    writers = _writers(st)
    if st.st_uid not in trusted_uids():
        raise UnsafePathError(what, path, f"the file is owned by uid {st.st_uid}")
    if writers:
        raise UnsafePathError(what, path, f"the file is writable by {writers} (mode {_mode(st)})")


def probe_log(path: str, what: str) -> None:
    """What ``open_log`` would refuse, creating and writing nothing (a reload's dry
    run): the path (``check_path``); an existing file opened and closed again (a
    directory, a FIFO nobody reads, a file that may not be written); for a new
    file, a directory it may be created in. Raises as ``open_log`` does."""
    if path.endswith("/") or os.path.basename(path) in (".", ".."):
        raise IsADirectoryError(errno.EISDIR, f"cannot open {what} {_show(path)}: Is a directory")
    resolved, own_fd = _walk(path, what)
    if own_fd:
        return
    try:
        fd = os.open(resolved, _LOG_FLAGS | os.O_NOFOLLOW)
    except FileNotFoundError:
        directory = os.path.dirname(resolved) or "."
        if not os.access(directory, os.W_OK | os.X_OK):
            error = OSError(errno.EACCES, os.strerror(errno.EACCES))
            raise _open_error(error, what, path, resolved) from None
        return
    except OSError as exc:
        raise _open_error(exc, what, path, resolved) from exc
    try:
        _check_opened(fd, resolved, what, path)
    finally:
        os.close(fd)


def _copy_own_fd(resolved: str) -> tuple[int, bool]:
    """A copy of the fd that ``resolved`` (/proc/<our pid>/fd/N) names, as the supervisor
    makes one: a dup for a socket (Linux refuses to open one through /proc, ENXIO; under
    systemd stdout is the journal's socket) and for a regular file (the caller's offset
    and O_APPEND, ``>`` or ``>>``: no write over the launcher's own lines); a new open for
    a pipe, FIFO, terminal or device (flags of its own; a pipe nobody reads is refused).
    Also returns True for a dup, whose flags (O_NONBLOCK) are the caller's: left alone."""
    import fcntl  # loaded already on the start-up path (pidfile's locks)

    st = os.stat(resolved)  # the open file itself, through the link
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISREG(st.st_mode):
        fd = os.dup(int(os.path.basename(resolved)))  # close-on-exec, as _LOG_FLAGS
        copied = os.fstat(fd)
        if (copied.st_dev, copied.st_ino) == (st.st_dev, st.st_ino):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                os.close(fd)
                raise OSError(errno.EBADF, "open for reading only")
            return fd, True
        os.close(fd)  # another thread's fd table (unshared): open the link, as for the rest
    return os.open(resolved, _LOG_FLAGS), False


def _open(resolved: str, own_fd: bool, mode: int) -> tuple[int, bool]:
    """The fd opened, and whether it is a dup of one of ours (``_copy_own_fd``)."""
    if own_fd:
        return _copy_own_fd(resolved)
    flags = _LOG_FLAGS | os.O_NOFOLLOW
    try:
        fd = os.open(resolved, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(resolved, flags), False
    try:
        os.fchmod(fd, mode)  # exactly `mode`: the process's own umask applied too
    except OSError:
        os.close(fd)
        raise
    return fd, False


def _open_error(exc: OSError, what: str, path: str, resolved: str) -> OSError:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW: a symlink appeared after check_path
        return UnsafePathError(what, path, f"{_show(resolved)} is a symbolic link")
    reason = exc.strerror
    if exc.errno == errno.ENXIO:
        try:
            if stat.S_ISFIFO(os.stat(resolved).st_mode):
                reason = "no process reads the FIFO"
        except OSError:
            pass
    return OSError(exc.errno, f"cannot open {what} {_show(path)}: {reason}")


def _check_opened(fd: int, resolved: str, what: str, path: str) -> None:
    """In a directory others can write, what we opened must be ours, not swapped in or
    planted there after ``check_path`` looked; a regular file with several links may be
    another user's hard link to a file of ours."""
    directory = os.path.dirname(resolved)
    writers = _writers(os.stat(directory))
    if not writers:
        return
    st = os.fstat(fd)
    where = f"in {_show(directory)} writable by {writers}"
    if st.st_uid not in trusted_uids():
        raise UnsafePathError(what, path, f"the file is another user's (uid {st.st_uid}), {where}")
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise UnsafePathError(what, path, f"the file has {st.st_nlink} hard links, {where}")


def open_log(path: str, what: str, umask: int = 0o022, *, blocking: bool = True) -> int:
    """Open ``path`` to append a daemon's stdout or stderr to; return the fd (close-on-exec,
    blocking: a daemon's own stdout expects that). ``blocking=False`` leaves it non-blocking,
    as it was opened, for a writer that must never wait on a reader (the supervisor's logs:
    a FIFO or a terminal opened by path is an open file description of its own, so its
    flag changes no one else's). A new file gets mode ``0o640 & ~umask``, whatever the
    process's umask.

    ``check_path`` first, then the open: without following a symlink, and not hanging on a
    FIFO nobody reads. Devices, FIFOs and sockets are fine. A path naming one of our own
    fds (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``) is that fd: dup'd when it is
    a socket or a regular file (``_copy_own_fd``). Errors name ``what`` and
    ``path`` on one line: ``UnsafePathError``, or an ``OSError`` (``IsADirectoryError``...).
    """
    if path.endswith("/") or os.path.basename(path) in (".", ".."):  # the walk drops them
        raise IsADirectoryError(errno.EISDIR, f"cannot open {what} {_show(path)}: Is a directory")
    resolved, own_fd = _walk(path, what)
    try:
        fd, shared = _open(resolved, own_fd, 0o640 & ~umask)
    except OSError as exc:
        raise _open_error(exc, what, path, resolved) from exc
    try:
        if not own_fd:
            _check_opened(fd, resolved, what, path)
        if blocking and not shared:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
