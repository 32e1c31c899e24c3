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
import time

from .process import GRACE, finite_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "GRACE",
    "exited",
    "open_pidfd",
    "pin_session",
    "send_stop",
    "signal_and_wait",
    "stop_session",
    "terminate_all",
    "wait_any",
    "wait_exit",
]


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


def send_stop(pidfd: int, signum: int) -> None:
    """Send a stop's ``signum``, then SIGCONT (unless it is SIGKILL or SIGCONT), as
    systemd, runit and s6 do: a stopped process (SIGSTOP, a debugger, Ctrl-Z)
    would keep ``signum`` pending and run no handler until the SIGKILL. Raises
    as ``pidfd_send_signal`` does for ``signum``; one gone before SIGCONT is fine."""
    _signal.pidfd_send_signal(pidfd, signum)
    if signum != _signal.SIGKILL and signum != _signal.SIGCONT:
        try:
            _signal.pidfd_send_signal(pidfd, _signal.SIGCONT)
        except ProcessLookupError:
            pass


def signal_and_wait(
    pidfd: int, signum: int, timeout: float, kill_timeout: float = GRACE
) -> tuple[bool, bool]:
    """Send ``signum`` (and SIGCONT: ``send_stop``), wait up to ``timeout`` s, then
    SIGKILL and wait up to ``kill_timeout`` s. Returns (exited, killed). Raises
    ``PermissionError`` when we may not signal the process."""
    killed = False
    for number, wait in ((signum, timeout), (_signal.SIGKILL, kill_timeout)):
        try:
            send_stop(pidfd, number)
        except ProcessLookupError:
            return True, killed
        killed = number == _signal.SIGKILL
        if wait_exit(pidfd, wait):
            return True, killed
    return False, killed


def terminate_all(pidfds: Sequence[int], grace: float = GRACE) -> bool:
    """SIGTERM (and SIGCONT) to each, ``grace`` seconds for all to exit, then SIGKILL
    and ``grace`` more; True once all have exited. One wait for them all, not one each."""
    for signum in (_signal.SIGTERM, _signal.SIGKILL):
        for pidfd in pidfds:
            try:
                send_stop(pidfd, signum)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while True:
            alive = [pidfd for pidfd in pidfds if not exited(pidfd)]
            remaining = deadline - time.monotonic()
            if not alive or remaining <= 0:
                break
            wait_any(alive, remaining)
        if not alive:
            return True
    return False


def pin_session(session: int) -> list[int]:
    """Pidfds on the live processes of session ``session``, each seen in it again
    once pinned, so a pid reused between the look and the pin is not taken.

    Safe only while ``session`` cannot name another session: the caller keeps the
    process whose pid it is (its own child, the session's leader) unreaped, and
    Linux reuses no pid that is still a session's id.
    """
    from .procfs import session_id, session_members

    pinned = []
    for pid in session_members(session):
        pidfd = open_pidfd(pid)
        if pidfd is None:
            continue
        if session_id(pid) == session and not exited(pidfd):
            pinned.append(pidfd)
        else:
            os.close(pidfd)
    return pinned


_SESSION_ROUNDS = 5  # looks at a session being stopped: processes forked meanwhile


def stop_session(session: int, grace: float = GRACE) -> bool:
    """Stop every process of ``session`` (on ``pin_session``'s terms): SIGTERM, then
    SIGKILL after ``grace`` seconds, all at once (``terminate_all``), and again for
    those forked meanwhile. For what a failed start left: the daemon, its workers.
    True once none is left."""
    for _ in range(_SESSION_ROUNDS):
        pidfds = pin_session(session)
        if not pidfds:
            return True
        try:
            if not terminate_all(pidfds, grace):
                return False  # one outlived SIGKILL (stuck in the kernel)
        finally:
            for pidfd in pidfds:
                os.close(pidfd)
    return False
