"""Listing and closing file descriptors, and resolving ``files_preserve``.

Closing costs follow the number of open fds, not ``RLIMIT_NOFILE``: we list
``/proc/self/fd`` (or ``/dev/fd``) and close the gaps between the fds we keep
with ``os.closerange``, which uses ``close_range(2)`` where the kernel has it.
Looping up to the limit, as python-daemon does, takes seconds when a
container sets the limit to a billion.
"""

from __future__ import annotations

import os
import sys

from .errors import DaemonOptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

_FD_DIRS = ("/proc/self/fd", "/dev/fd")


def open_fds() -> list[int] | None:
    """Return the open fds of this process, sorted, or None if they cannot be listed."""
    for directory in _FD_DIRS:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        # The listing's own directory fd shows up too; closing it later is harmless.
        return sorted(int(name) for name in names if name.isdigit())
    return None


def _fallback_max_fd() -> int:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 65536:
        soft = 65536  # only reached with no /proc and no /dev/fd: bound the loop
    return soft


def close_all_except(keep: Iterable[int]) -> None:
    """Close every open fd that is not in ``keep``."""
    kept = sorted(set(keep))
    fds = open_fds()
    end = (fds[-1] + 1) if fds else 0
    if fds is None:
        end = _fallback_max_fd()
    start = 0
    for fd in [*kept, end]:
        if fd > start:
            os.closerange(start, min(fd, end))
        start = max(start, fd + 1)


def fd_of(obj: Any) -> int | None:
    """Return the fd behind ``obj``: an int, anything with ``fileno()``, or a
    ``logging.Handler`` (its stream, or the socket of a socket-based handler).

    Returns None for a handler with nothing open yet (``FileHandler(delay=True)``).
    """
    if isinstance(obj, bool):
        raise TypeError("a bool is not a file descriptor")
    if isinstance(obj, int):
        return obj
    logging = sys.modules.get("logging")  # a Handler can only exist if logging is imported
    if logging is not None and isinstance(obj, logging.Handler):
        for attr in ("stream", "socket", "sock"):
            inner = getattr(obj, attr, None)
            if inner is not None:
                return fd_of(inner)
        return None
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        raise TypeError(f"{type(obj).__name__} has no fileno()")
    result = fileno()
    if not isinstance(result, int):
        raise TypeError(f"fileno() returned {result!r}")
    return result


def check_open(fd: int) -> bool:
    """Is ``fd`` an open file descriptor of this process?"""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def resolve_files_preserve(items: Iterable[Any] | None) -> set[int]:
    """Turn ``files_preserve`` into a set of open fds, or raise naming the bad item."""
    result: set[int] = set()
    for item in items or ():
        try:
            fd = fd_of(item)
        except (TypeError, ValueError, OSError) as exc:
            raise DaemonOptionError(
                "files_preserve", item, f"not a file descriptor, file, socket or handler: {exc}"
            ) from exc
        if fd is None:
            continue
        if fd < 0 or not check_open(fd):
            raise DaemonOptionError("files_preserve", item, f"fd {fd} is not open")
        result.add(fd)
    return result
