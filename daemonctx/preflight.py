"""Checks that depend on the system, run in ``open()`` before any fork.

Whatever can fail here fails in the foreground, with the option and the
value in the message, instead of in a detached daemon.
"""

from __future__ import annotations

import os

from .errors import DaemonOptionError
from .fds import check_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def preload(prevent_core: bool, chroot_directory: str | None, pidfile: Any) -> None:
    """Import now what the daemon will need later.

    ``resource`` costs four times more after the fork (copy-on-write faults).
    Inside a chroot no module file is reachable, so what the error paths use
    is loaded up front there: the error report (json, traceback) and, for our
    pidfile, lockfile, whose exceptions it raises.
    """
    if prevent_core:
        import resource  # noqa: F401
    if chroot_directory is not None:
        import json  # noqa: F401
        import traceback  # noqa: F401

        if callable(getattr(pidfile, "fail_if_held", None)):
            import lockfile  # type: ignore[import-untyped] # noqa: F401


def inside_root(chroot_directory: str | None, path: str) -> str:
    """Where ``path``, as the daemon will see it after chroot, is seen from here."""
    if chroot_directory is None or not os.path.isabs(path):
        return path
    return os.path.join(chroot_directory, path.lstrip("/"))


def check_directories(chroot_directory: str | None, working_directory: str) -> None:
    if chroot_directory is not None and not os.path.isdir(chroot_directory):
        raise DaemonOptionError("chroot_directory", chroot_directory, "no such directory")
    seen_from_here = inside_root(chroot_directory, working_directory)
    if not os.path.isdir(seen_from_here):
        where = f" (inside chroot_directory {chroot_directory!r})" if chroot_directory else ""
        raise DaemonOptionError("working_directory", working_directory, f"no such directory{where}")


def stream_fd(name: str, stream: Any) -> int | None:
    """The fd a ``stdin``/``stdout``/``stderr`` option will be bound from."""
    if stream is None:
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError) as exc:  # closed file, or io.UnsupportedOperation
        raise DaemonOptionError(name, stream, f"has no usable file descriptor: {exc}") from exc
    if not isinstance(fd, int) or not check_open(fd):
        raise DaemonOptionError(name, stream, f"fd {fd!r} is not open")
    return fd


_STREAM_NAMES = ("stdin", "stdout", "stderr")


def check_standard_fd_conflicts(preserved: set[int], stream_fds: list[int | None]) -> None:
    """A preserved fd on 0, 1 or 2 would be silently replaced by a standard stream.

    It happens when the launcher starts with those fds closed and opens a file
    before ``open()``. Refuse it rather than lose the file.
    """
    for fd in sorted(preserved):
        if fd < 3 and stream_fds[fd] != fd:
            name = _STREAM_NAMES[fd]
            raise DaemonOptionError(
                "files_preserve",
                fd,
                f"fd {fd} is where {name} goes and would be replaced; the process started "
                f"with fd {fd} closed: open this file after fds 0-2 are open, or pass it as "
                f"{name}=",
            )


def check_owner(uid: int | None, gid: int | None, initgroups: bool) -> tuple[int, int, str | None]:
    """Resolve ``uid``/``gid`` and check that this process may switch to them.

    Returns (uid, gid, user name for initgroups or None).
    """
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if os.geteuid() != 0:
        held_uids, held_gids = _held_ids()
        if uid not in held_uids:
            raise DaemonOptionError(
                "uid", uid, f"cannot switch to it as uid {os.geteuid()} (not root)"
            )
        if gid not in held_gids:
            raise DaemonOptionError(
                "gid", gid, f"cannot switch to it as uid {os.geteuid()} (not root)"
            )
        if initgroups:
            raise DaemonOptionError("initgroups", True, "setting groups needs root")
    user_name = None
    if initgroups:
        import pwd

        try:
            user_name = pwd.getpwuid(uid).pw_name
        except KeyError:
            raise DaemonOptionError(
                "uid", uid, "initgroups=True needs a user name and this uid has no passwd entry"
            ) from None
    return uid, gid, user_name


def _held_ids() -> tuple[set[int], set[int]]:
    if hasattr(os, "getresuid"):
        return set(os.getresuid()), set(os.getresgid())
    return {os.getuid(), os.geteuid()}, {os.getgid(), os.getegid()}


def check_pidfile(pidfile: Any, chroot_directory: str | None, working_directory: str) -> None:
    """For a pidfile with a ``path`` (ours, lockfile's): its directory must exist,
    and for ours, no running process may hold it (unless it was given a timeout
    to wait for one).

    The daemon opens the path after chroot and chdir, so that is where it is
    resolved here too.
    """
    path = getattr(pidfile, "path", None)
    if not isinstance(path, str):
        return
    seen_from_here = inside_root(chroot_directory, os.path.join(working_directory, path))
    directory = os.path.dirname(seen_from_here)
    if not os.path.isdir(directory):
        raise DaemonOptionError("pidfile", path, f"directory {directory!r} does not exist")
    fail_if_held = getattr(pidfile, "fail_if_held", None)
    if callable(fail_if_held):  # ours: a second instance fails here, before forking
        fail_if_held(seen_from_here)
