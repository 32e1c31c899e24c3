"""The running supervisor of a configuration file whose ``control`` was edited since.

``ctl --config FILE`` reads the socket's path from the file; a supervisor takes a
new ``control`` only at a restart, so after an edit nothing listens there while
the supervisor of that file runs on its old socket. ``supervisors_of`` finds it,
on ``ctl``'s failure path only (it reads /proc): a process that

- runs as root or as us (``paths.trusted_uids``: nobody else's process is asked),
- was started as ``... supervise --config FILE`` (or ``-f``), FILE naming the same
  file now, as that process sees it (its root and, for a relative path, its
  working directory or ``PWD``), and
- listens on a Unix socket whose lock file (``SOCK.lock``) that very process holds,
  as seen from here: another mount namespace's socket at the same path is not it.

The command line only picks whom to look at; the lock and the listening socket,
checked by identity, say which socket is that supervisor's.
"""

from __future__ import annotations

import os

from .. import procfs
from ..paths import trusted_uids

__all__ = ["Found", "supervisors_of"]

_ACCEPTING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags: a listening socket
_STREAM = 1  # SOCK_STREAM in its Type column


class Found:
    """A supervisor started with the file: ``pid``, and ``control``, the socket it
    listens on (None when that could not be told: its /proc is not ours to read)."""

    __slots__ = ("control", "pid")

    def __init__(self, pid: int, control: str | None) -> None:
        self.pid = pid
        self.control = control

    def __repr__(self) -> str:
        return f"Found(pid={self.pid}, control={self.control!r})"


def supervisors_of(config: str) -> list[Found]:
    """The live supervisors started with ``supervise --config`` naming the file at
    ``config``, by pid. Empty when none is, or /proc is not this pid namespace's."""
    if procfs.unusable() is not None:
        return []
    try:
        wanted = os.stat(config)
    except OSError:
        return []
    trusted = trusted_uids()
    found = []
    for pid in procfs.all_pids():
        named = _config_argument(procfs.process_command(pid) or ())  # few have one
        if named is None or pid == os.getpid() or not _owned_by(pid, trusted):
            continue
        if _same_file(pid, named, wanted):
            found.append(Found(pid, _control_socket(pid)))
    return found


def _owned_by(pid: int, trusted: set[int]) -> bool:
    """Every uid of ``pid`` (real, effective, saved, file system) is in ``trusted``."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            for line in file:
                if line.startswith(b"Uid:"):
                    return all(int(uid) in trusted for uid in line.split()[1:])
    except (OSError, ValueError):
        pass
    return False


def _config_argument(command: tuple[str, ...]) -> str | None:
    """FILE of a ``supervise --config FILE`` command line (``--config=FILE``, ``-f
    FILE``, ``-fFILE``; the last one given, as argparse takes it), or None."""
    if "supervise" not in command[1:]:
        return None
    words = list(command[command.index("supervise", 1) + 1 :])
    named = None
    while words:
        word = words.pop(0)
        if word == "--":
            break
        if word in ("--config", "-f") and words:
            named = words.pop(0)
        elif word.startswith("--config="):
            named = word[len("--config=") :]
        elif word.startswith("-f") and not word.startswith("--"):
            named = word[2:]
    return named or None


def _same_file(pid: int, named: str, wanted: os.stat_result) -> bool:
    """Whether ``named``, as process ``pid`` sees it, is the file ``wanted`` now. When
    its root is not ours to look through (root's process, and we are not root), an
    absolute ``named`` as we see it: then its socket cannot be told either."""
    root = f"/proc/{pid}/root"
    if named.startswith("/"):
        places = [root + named]
    else:  # relative to where it started: its working directory, or the shell's PWD
        places = [f"/proc/{pid}/cwd/{named}"]
        started_in = procfs.environment_value(pid, "PWD")
        if started_in is not None and started_in.startswith("/"):
            places.append(f"{root}{started_in}/{named}")
    unsure = False
    for place in places:
        try:
            st = os.stat(place)
        except PermissionError:
            unsure = True
            continue
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    if unsure and named.startswith("/"):
        try:
            st = os.stat(named)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (wanted.st_dev, wanted.st_ino)
    return False


def _control_socket(pid: int) -> str | None:
    """The path of the control socket ``pid`` listens on: a listening stream socket
    of its own whose ``.lock`` file it holds, reached from here at that path."""
    from .guard import lock_holder
    from .server import live_owner

    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        with open(f"/proc/{pid}/net/unix", encoding="utf-8", errors="surrogateescape") as file:
            table = file.read().splitlines()[1:]
    except OSError:
        return None
    for line in table:
        # Num RefCount Protocol Flags Type St Inode Path (a path may hold spaces)
        fields = line.split(None, 7)
        if len(fields) < 8 or fields[6] not in inodes or not fields[7].startswith("/"):
            continue
        if int(fields[3], 16) & _ACCEPTING and int(fields[4], 16) == _STREAM:
            path = fields[7]
            if lock_holder(path) == (pid, False) and live_owner(path) == pid:
                return path
    return None
