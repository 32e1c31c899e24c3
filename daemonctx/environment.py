"""Where are we running? Decides ``detach_process=None``.

A daemon started by init or a service manager, by a super-server (inetd,
systemd socket activation with ``Accept=yes``), or running as PID 1 in a
container must not fork into the background: its supervisor tracks the
process it started, and PID 1 leaving would stop the container.
"""

from __future__ import annotations

import os
import stat


def is_pid_one() -> bool:
    """This process is the init of its PID namespace (a container's main process)."""
    return os.getpid() == 1


def is_started_by_init() -> bool:
    """Our parent is PID 1: init, systemd, or a container's init started us."""
    return os.getppid() == 1


def is_socket(fd: int) -> bool:
    """``fd`` is an open socket (checked with fstat, without importing socket)."""
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def is_started_by_superserver() -> bool:
    """inetd-style start: the connection is handed to us as stdin."""
    return is_socket(0)


def detach_required() -> bool:
    """True when forking into the background is right for this process."""
    return not (is_pid_one() or is_started_by_init() or is_started_by_superserver())
