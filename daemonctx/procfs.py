"""Readers of ``/proc``: who holds a lock, and what a process is.

The question they answer is "which processes hold *this* lock right now?".
``/proc/locks`` cannot answer it: it names the process that *took* a lock,
which may have exited while a child that inherited the descriptor keeps the
lock, and whose pid may since belong to someone else. What cannot be forged is
``/proc/<pid>/fdinfo/<fd>``: it lists a ``lock:`` line only on a descriptor
whose open file description owns the lock. A process shows that line only if
it took the lock or received the very descriptor from the one that did.

Nothing here signals anything; callers pin a pid with a pidfd first, then
check it here, then signal through the pidfd (see ``identity``).
"""

from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    FileKey = tuple[int, int, int]  # (major, minor, inode), as /proc/locks writes it

__all__ = [
    "Holders",
    "all_pids",
    "boot_time",
    "children",
    "deleted_lock_holders",
    "environment_value",
    "exclusive_flocks",
    "file_key",
    "files_of",
    "find_lock_holders",
    "foreign",
    "group_and_session",
    "held_locks",
    "holding_fds",
    "is_original",
    "is_running",
    "locks_hidden",
    "parent_pid",
    "process_command",
    "process_start_time",
    "process_uptime",
    "session_id",
    "session_members",
    "started_before",
    "thread_group",
    "unusable",
]

_PROC_LOCKS = "/proc/locks"
_INIT_PID_NS = 0xEFFFFFFC  # the initial pid namespace's inode (PROC_PID_INIT_INO, nsfs.h)


def file_key(st: os.stat_result) -> FileKey:
    """The (major, minor, inode) that /proc/locks and fdinfo name a file by."""
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def _parse_lock(fields: list[bytes]) -> tuple[int, FileKey] | None:
    """(pid, key) of an active exclusive flock, from the fields after the ordinal."""
    if len(fields) < 5 or fields[0] != b"FLOCK" or fields[2] != b"WRITE":
        return None
    try:
        major, minor, ino = fields[4].split(b":")
        return int(fields[3]), (int(major, 16), int(minor, 16), int(ino))
    except ValueError:
        return None


def exclusive_flocks() -> list[tuple[int, FileKey]] | None:
    """Every active exclusive ``flock`` in /proc/locks: (pid that took it, file key).

    Lines look like ``1: FLOCK  ADVISORY  WRITE 1234 fd:01:123456 0 EOF``; waiters
    (``1: -> FLOCK ...``) are skipped. The pid is a hint only (see the module doc),
    and is 0 or negative for a locker outside our pid namespace. None where there
    is no /proc/locks to read (not Linux). Its first read in a process can take
    milliseconds (the kernel waits for an RCU grace period): keep it off fast paths.
    """
    try:
        with open(_PROC_LOCKS, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        parsed = _parse_lock(line.split()[1:])
        if parsed is not None:
            found.append(parsed)
    return found


_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)


def _open_files(pid: int, keys: Iterable[FileKey]) -> list[tuple[str, os.stat_result]] | None:
    """(fd name, stat of its file) for each fd of ``pid`` open on one of ``keys``;
    [] when it has none or is gone, None when we may not look (another user's
    process, as non-root)."""
    wanted = set(keys)
    base = f"/proc/{pid}/fd"
    try:
        try:
            names = os.listdir(base)
        except PermissionError:  # another user's; or, ours, its main thread exited
            names = []  # (a zombie's fd may be listed by root only)
            if _live_thread(pid) is None:
                return None
        if not names and (thread := _live_thread(pid)) is not None:
            base = f"{thread}/fd"  # its main thread exited: the others hold its fds
            names = os.listdir(base)
    except PermissionError:
        return None
    except OSError as exc:
        if exc.errno in _NO_DESCRIPTOR:  # not "it holds none": we cannot look
            raise OSError(exc.errno, f"cannot look at /proc: {exc.strerror}") from None
        return []
    found = []
    for name in names:
        try:
            st = os.stat(f"{base}/{name}")
        except OSError:
            continue
        if file_key(st) in wanted:
            found.append((name, st))
    if found and thread_group(pid) != pid:
        return []  # a thread's id, reachable in /proc though not listed: no process's
    return found


def holding_fds(pid: int, key: FileKey) -> list[int] | None:
    """The fds of ``pid`` whose open file description holds an exclusive flock on ``key``.

    Returns [] when it holds none (or is gone), None when we may not look
    (another user's process, as non-root).
    """
    files = _open_files(pid, (key,))
    if files is None:
        return None
    held = []
    base = files_of(pid) if files else ""
    for name, _st in files:
        try:
            with open(f"{base}/fdinfo/{name}", "rb") as f:
                info = f.read()
        except OSError:
            continue
        for line in info.splitlines():
            parsed = _parse_lock(line.split()[2:]) if line.startswith(b"lock:") else None
            if parsed is not None and parsed[1] == key:
                held.append(int(name))
                break
    return held


_WRITE_LOCKS = (b"FLOCK", b"POSIX", b"OFDLCK")


def held_locks(pid: int) -> list[tuple[int, FileKey]] | None:
    """(fd, file key) for each fd of ``pid`` whose file it holds an exclusive lock on
    (``flock``, ``fcntl``, OFD), by its fdinfo; [] when none or gone, None when we
    may not look (another user's process, as non-root)."""
    base = f"{files_of(pid)}/fdinfo"
    try:
        names = os.listdir(base)
    except PermissionError:
        return None
    except OSError as exc:
        if exc.errno in _NO_DESCRIPTOR:
            raise OSError(exc.errno, f"cannot look at /proc: {exc.strerror}") from None
        return []
    held = []
    for name in names:
        try:
            with open(f"{base}/{name}", "rb") as f:
                info = f.read()
        except PermissionError:
            return None
        except OSError:
            continue
        for line in info.splitlines():
            fields = line.split()[2:] if line.startswith(b"lock:") else []
            if len(fields) < 5 or fields[0] not in _WRITE_LOCKS or fields[2] != b"WRITE":
                continue
            try:
                major, minor, ino = fields[4].split(b":")
                held.append((int(name), (int(major, 16), int(minor, 16), int(ino))))
            except ValueError:
                continue
    return held


def opened_as(pid: int, key: FileKey, path: str) -> bool | None:
    """Whether ``pid`` holds the flock on ``key`` through an fd it opened as ``path``
    (absolute, resolved): the kernel names such an fd ``path``, or ``path (deleted)``
    once that name is gone, whatever other names the file has. None when it tells
    nothing: we may not look (another user's process, as non-root), or it holds no
    such lock."""
    fds = holding_fds(pid, key)
    if not fds:
        return None
    names = (path, path + " (deleted)")
    for fd in fds:
        try:
            if os.readlink(f"{files_of(pid)}/fd/{fd}") in names:
                return True
        except OSError:
            continue
    return False


def own_namespace_pid(pid: int) -> int | None:
    """The pid that process ``pid`` has in its own pid namespace (the last of the
    ``NSpid`` line of /proc/<pid>/status): what it wrote in a pidfile, in a
    container, where we see it by another pid. None if gone or unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


class Holders:
    """The processes found holding a lock: ``pids`` (sorted), and ``hidden`` when some
    process could not be looked at (another user's, as non-root)."""

    __slots__ = ("hidden", "pids")

    def __init__(self, pids: list[int], hidden: bool) -> None:
        self.pids = sorted(pids)
        self.hidden = hidden

    def __repr__(self) -> str:
        return f"Holders(pids={self.pids}, hidden={self.hidden})"


_MOUNT_OWN = "mount this pid namespace's own (unshare --pid --fork --mount-proc, nsenter --mount)"


def foreign() -> str | None:
    """What is wrong when /proc is another pid namespace's, and how to mend it, in one
    line; None when it is ours (or when there is none: nothing can be misread there).

    ``unshare --pid --fork`` without ``--mount-proc``, or ``nsenter --pid`` without
    ``--mount``: the pids /proc shows are the other namespace's, and the same
    numbers name other processes here (a pidfd, a signal). One readlink: /proc/self
    names this process by the pid /proc knows it by, and not at all when /proc is a
    namespace's that cannot see this process (a child namespace's).
    """
    try:
        shown = os.readlink("/proc/self")
    except OSError:
        if not os.path.isdir("/proc/1"):
            return None  # no /proc mounted
        return f"/proc is another pid namespace's: it does not show this process; {_MOUNT_OWN}"
    me = os.getpid()
    if shown == str(me):
        return None
    return (
        f"/proc is another pid namespace's: it shows this process as pid {shown}, not {me};"
        f" {_MOUNT_OWN}"
    )


def unusable() -> str | None:
    """``foreign``'s line, or one for a /proc not mounted at all; None when /proc is ours."""
    wrong = foreign()
    if wrong is None and not os.path.isdir("/proc/self"):
        return "/proc is not mounted; mount it (mount -t proc proc /proc)"
    return wrong


def locks_hidden() -> bool:
    """Whether /proc/locks may leave out a held lock: in a pid namespace other than the
    initial one (a container), a lock whose taker has exited and been reaped is not
    listed, as the kernel has no pid to name it by there."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino != _INIT_PID_NS
    except OSError:
        return True


def find_lock_holders(key: FileKey, hints: Iterable[int] = (), *, held: bool = False) -> Holders:
    """Every process holding an exclusive flock on ``key``, by its fdinfo.

    When /proc/locks lists no such lock, nobody holds it and nothing is scanned,
    unless the caller saw it ``held`` (a failed flock of its own): the lock of a
    taker that is gone is not listed in a pid namespace (see ``locks_hidden``).
    Otherwise every process is looked at (a holder can be any descendant of the
    locker, reparented anywhere); ``hints`` only order the search.
    """
    if not held and not any(locked == key for _pid, locked in exclusive_flocks() or []):
        return Holders([], False)
    pids: list[int] = []
    hidden = False
    seen: set[int] = set()
    for pid in [*hints, *all_pids()]:
        if pid <= 0 or pid in seen:
            continue
        seen.add(pid)
        fds = holding_fds(pid, key)
        if fds is None:
            hidden = True
        elif fds:
            pids.append(pid)
    return Holders(pids, hidden)


def _fds_on(pid: int, keys: set[FileKey]) -> dict[FileKey, tuple[str, os.stat_result]]:
    """{key: (fd name, stat)}, the first fd of ``pid`` on each of ``keys``
    ({} if none, or if we may not look)."""
    found: dict[FileKey, tuple[str, os.stat_result]] = {}
    for name, st in _open_files(pid, keys) or []:
        found.setdefault(file_key(st), (name, st))
    return found


def _named(pid: int, name: str, wanted: str, key: FileKey) -> bool:
    try:
        if os.readlink(f"{files_of(pid)}/fd/{name}") != wanted:
            return False
    except OSError:
        return False
    return bool(holding_fds(pid, key))


def _deleted_by_name(
    wanted: str, trusted: Callable[[os.stat_result], bool]
) -> list[tuple[int, FileKey]]:
    """Every process with an fd named ``wanted`` (``<path> (deleted)``) that holds an
    exclusive flock on that unlinked, ``trusted`` file: a scan of every fd in /proc."""
    found: list[tuple[int, FileKey]] = []
    for pid in all_pids():
        base = f"/proc/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError:
            continue
        keys: set[FileKey] = set()
        for name in names:
            try:
                if os.readlink(f"{base}/{name}") != wanted:
                    continue
                st = os.stat(f"{base}/{name}")
            except OSError:
                continue
            if st.st_nlink == 0 and trusted(st):
                keys.add(file_key(st))
        found.extend((pid, key) for key in sorted(keys) if holding_fds(pid, key))
    return found


def _any_file(st: os.stat_result) -> bool:
    return True


def deleted_lock_holders(
    path: str, device: int, trusted: Callable[[os.stat_result], bool] = _any_file
) -> list[tuple[int, FileKey]]:
    """Processes holding an exclusive flock on an *unlinked* file that was named ``path``.

    A pidfile deleted (or replaced by a rename) while its daemon runs: the lock
    lives on with the old inode, and the kernel still names the file
    ``<path> (deleted)`` in ``/proc/<pid>/fd``. Only files ``trusted`` accepts (by
    their stat; any by default) count: another user may lock and delete a file of
    theirs at the path. Only locks on ``device`` (the pidfile directory's) are
    considered, and the process /proc/locks names for each is looked at first: when
    it still holds the file, nothing else is. Only a lock whose taker is gone (a
    child kept it) costs a search of /proc; where /proc/locks may not list that lock
    (``locks_hidden``), every fd in /proc is looked at by name.
    Returns (pid, key) pairs, a verified holder each.
    """
    wanted = path + " (deleted)"
    if locks_hidden():
        return _deleted_by_name(wanted, trusted)
    where = (os.major(device), os.minor(device))
    hints: dict[FileKey, list[int]] = {}
    for pid, key in exclusive_flocks() or []:
        if (key[0], key[1]) == where:
            hints.setdefault(key, []).append(pid)
    found = []
    unresolved: set[FileKey] = set()
    for key, pids in hints.items():
        for pid in pids:
            fds = _fds_on(pid, {key}) if pid > 0 else {}
            if key in fds:  # its taker still has it open: the answer is here
                name, st = fds[key]
                if st.st_nlink == 0 and trusted(st) and _named(pid, name, wanted, key):
                    found.append((pid, key))
                break
        else:
            unresolved.add(key)  # its taker is gone, or outside our pid namespace
    if unresolved:
        for pid in all_pids():
            for key, (name, st) in _fds_on(pid, unresolved).items():
                if not trusted(st):
                    unresolved.discard(key)  # whoever holds it: not a file of ours
                elif st.st_nlink == 0 and _named(pid, name, wanted, key):
                    found.append((pid, key))
                    unresolved.discard(key)
            if not unresolved:
                break
    return found


# -- what a process is --------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid,
    [2] pgrp, [3] session, [19] start time in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since boot (clock-tick resolution); None if gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _task_fields(path: str) -> list[bytes] | None:
    try:
        with open(f"{path}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _live_thread(pid: int) -> str | None:
    """``/proc/PID/task/TID`` of a thread that runs on in process ``pid`` when its main
    thread has exited (``pthread_exit``: the leader is a zombie, and its own fd
    directory is empty, while the process holds every fd); None otherwise."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] != b"Z":
        return None
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        path = f"/proc/{pid}/task/{tid}"
        task = _task_fields(path) if tid != str(pid) else None
        live = task is not None and len(task) > 6 and task[0] not in (b"Z", b"X")
        if live and not int(task[6]) & _PF_EXITING:  # type: ignore[index]
            return path
    return None


def files_of(pid: int) -> str:
    """The /proc directory whose ``fd`` and ``fdinfo`` show process ``pid``'s fds:
    ``/proc/PID``, or a live thread's when its main thread has exited."""
    return _live_thread(pid) or f"/proc/{pid}"


def thread_group(pid: int) -> int | None:
    """The process (``Tgid``) that ``pid`` is a thread of: ``pid`` itself for a
    process. A thread's id is reachable in /proc (``/proc/TID``) though not listed,
    and looks like a process there. None if gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process: not gone, not a zombie waiting to be reaped
    (a zombie main thread whose other threads run on is a live process)."""
    fields = _stat_fields(pid)
    if fields is not None and fields[0] == b"Z":
        return _live_thread(pid) is not None
    return fields is not None and fields[0] != b"X"


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs and has not begun to exit (``PF_EXITING``: it may have
    closed its fds already, and not be a zombie yet); a process whose main thread
    exited is alive while another thread runs on (``_live_thread``)."""
    fields = _stat_fields(pid)
    if fields is not None and fields[0] == b"Z":
        return _live_thread(pid) is not None
    if fields is None or len(fields) < 7 or fields[0] == b"X":
        return False
    return not int(fields[6]) & _PF_EXITING


def live_group(pid: int) -> int | None:
    """The process group of ``pid`` while it runs; None once it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 3 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[2])


def session_id(pid: int) -> int | None:
    """The session ``pid`` belongs to; None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[3]) if fields is not None and len(fields) > 3 else None


def group_and_session(pid: int) -> tuple[int, int] | None:
    """The process group and the session of ``pid``; None if it is gone."""
    fields = _stat_fields(pid)
    return (int(fields[2]), int(fields[3])) if fields is not None and len(fields) > 3 else None


def session_members(sid: int) -> list[int]:
    """The live processes in session ``sid`` (a scan of /proc)."""
    members = []
    for pid in all_pids():
        fields = _stat_fields(pid)
        live = fields is not None and len(fields) > 3 and fields[0] not in (b"Z", b"X")
        if live and int(fields[3]) == sid:  # type: ignore[index]
            members.append(pid)
    return members


def boot_time() -> float:
    """The wall-clock time (``time.time()``) of boot, to compare start times with mtimes."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def started_before(pid: int, wall_time: float, slack: float = 0.02) -> bool:
    """Whether ``pid`` started before ``wall_time`` (a file's mtime, say).

    A pidfile is written by the daemon after it started; a process that reused
    the pid started after the daemon was gone, so after the write. ``slack``
    covers the coarse clock of file times (a jiffy); start times are rounded down.
    """
    started = process_start_time(pid)
    return started is not None and boot_time() + started <= wall_time + slack


def another_taker(recorded: int, takers: Iterable[int]) -> bool:
    """Whether ``takers`` (/proc/locks's pids for a lock) name a live process other
    than ``recorded``: then ``recorded``, a pidfile's pid this user cannot prove,
    did not take the lock, however old it is (a pid written in another pid
    namespace names some other process here: a kernel thread, pid 4). A taker is a
    hint (a child may hold the lock once its taker exits): only a live one counts."""
    return any(pid > 0 and pid != recorded and is_running(pid) for pid in takers)


def is_original(pid: int, wall_time: float) -> bool:
    """Whether ``pid`` is alive and is the process that wrote a file at ``wall_time``
    (it started before), when its fds cannot be looked at to prove more."""
    return is_running(pid) and started_before(pid, wall_time)


def process_uptime(pid: int) -> float | None:
    """Seconds since ``pid`` started; None if it is gone."""
    started = process_start_time(pid)
    if started is None:
        return None
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)


def process_command(pid: int) -> tuple[str, ...] | None:
    """The command line of ``pid`` from /proc/<pid>/cmdline (a live thread's when its
    main thread has exited); None if it is gone or has none (a kernel thread, a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
        if not raw and (thread := _live_thread(pid)) is not None:
            with open(f"{thread}/cmdline", "rb") as f:
                raw = f.read()
    except OSError:
        return None
    words = raw.rstrip(b"\0").split(b"\0") if raw else []
    return tuple(os.fsdecode(word) for word in words) or None


def children(pid: int, task: int | None = None) -> list[int]:
    """The children of ``pid`` (every thread's), from ``/proc/<pid>/task/*/children``;
    with ``task``, only that thread's, in the order they became its children. A scan
    of /proc for their parent pid (any thread's) where the kernel lacks that file."""
    found: list[int] = []
    try:
        tasks = [str(task)] if task is not None else os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for name in tasks:
        try:
            with open(f"/proc/{pid}/task/{name}/children", "rb") as f:
                found.extend(map(int, f.read().split()))
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{name}"):
                continue  # an ended thread
            return [child for child in all_pids() if parent_pid(child) == pid]
        except (OSError, ValueError):
            continue
    return found


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid``; None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None


#: Reads of an empty environ, a millisecond apart, before it is taken as empty.
ENVIRON_TRIES = 5
_PF_KTHREAD = 0x00200000  # a kernel thread, in /proc/<pid>/stat's flags
_PF_EXITING = 0x00000004  # in exit(2), in /proc/<pid>/stat's flags


def environment_value(pid: int, name: str) -> str | None:
    """The value of ``name`` in the environment ``pid`` was exec'd with; None if unset
    or unreadable. A hint only: the process may have written its own.

    In the middle of an exec the kernel shows an empty environ for some
    microseconds (a reader polling without pause saw it in 84 of 300 execs of
    ``sh -c "exec sleep"``): an empty one is read again, but a kernel thread's
    or a zombie's, which stays empty."""
    raw, tries = _read_environ(pid), 1
    while raw == b"" and tries < ENVIRON_TRIES and _may_be_in_exec(pid):
        time.sleep(0.001)
        raw, tries = _read_environ(pid), tries + 1
    if raw is None:
        return None
    prefix = os.fsencode(name) + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return os.fsdecode(entry[len(prefix) :])
    return None


def _read_environ(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def _may_be_in_exec(pid: int) -> bool:
    """Whether an empty environ of ``pid`` may be an exec's moment: not a kernel
    thread's, nor a zombie's."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 7 or fields[0] in (b"Z", b"X"):
        return False
    return not int(fields[6]) & _PF_KTHREAD
