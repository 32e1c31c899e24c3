"""Pidfds: a file descriptor that names one process, whatever pid reuse follows.

A pid is turned into a pidfd the moment it is learnt; from then on the process
is signalled and waited for only through the pidfd (``pidfd_send_signal``,
and ``poll``/``select``, which report it readable once the process has
exited). The functions here are the only ways daemonctx waits on a process,
usable from a blocking call or, through the fd itself, from a selector loop.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found] # signal's C half: no enums to load
import os

from .process import GRACE, finite_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["GRACE", "exited", "open_pidfd", "signal_and_wait", "terminate", "wait_any", "wait_exit"]


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None when it is gone, is no pid (0, negative, or beyond
    Linux's 2**22: a program's MAINPID=99999999999), or pidfds are not available here."""
    if not 0 < pid <= _PID_MAX_LIMIT:
        return None
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


# Linux's PID_MAX_LIMIT: no pid is larger (and os.pidfd_open overflows past 2**31).
_PID_MAX_LIMIT = 1 << 22


def wait_any(pidfds: Sequence[int], timeout: float | None) -> list[int]:
    """Wait until one of ``pidfds`` has exited, at most ``timeout`` seconds (None:
    forever); return those that have. The fd is readable from the exit itself,
    before the process is reaped, and by then its files (and locks) are closed.
    Other fds may be watched beside them (a socket): they are returned when readable."""
    import select

    timeout = finite_timeout(timeout)
    if timeout is not None:
        timeout = max(0.0, timeout)
    poller = select.poll()
    for pidfd in pidfds:
        poller.register(pidfd, select.POLLIN)
    # poll takes whole milliseconds: round up, so a short wait never spins at 0
    milliseconds = None if timeout is None else int(-(-timeout * 1000 // 1))
    return [fd for fd, _mask in poller.poll(milliseconds)]


def wait_exit(pidfd: int, timeout: float | None) -> bool:
    """Wait until the process has exited; False if ``timeout`` seconds passed first."""
    return bool(wait_any([pidfd], timeout))


def exited(pidfd: int) -> bool:
    """Whether the process has exited (a zombie counts), without waiting."""
    return wait_exit(pidfd, 0)


def signal_and_wait(
    pidfd: int, signum: int, timeout: float, kill_timeout: float = GRACE
) -> tuple[bool, bool]:
    """Send ``signum``, wait up to ``timeout`` s, then SIGKILL and wait up to
    ``kill_timeout`` s. Returns (exited, killed). Raises ``PermissionError`` when
    we may not signal the process."""
    killed = False
    for number, wait in ((signum, timeout), (_signal.SIGKILL, kill_timeout)):
        try:
            _signal.pidfd_send_signal(pidfd, number)
        except ProcessLookupError:
            return True, killed
        killed = number == _signal.SIGKILL
        if wait_exit(pidfd, wait):
            return True, killed
    return False, killed


def terminate(pidfd: int, grace: float = GRACE) -> bool:
    """SIGTERM, ``grace`` seconds, then SIGKILL: for a daemon whose start failed.
    True once it is gone; False if it outlived that, or may not be signalled."""
    try:
        return signal_and_wait(pidfd, _signal.SIGTERM, grace, grace)[0]
    except PermissionError:
        return False
