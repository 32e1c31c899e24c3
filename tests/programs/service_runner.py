"""A service runner written the way python-daemon's ServiceRunner example is written
(its doc/examples/service-runner.txt), with only the imports changed to daemonctx:

- ``start`` breaks the lock of a stale pidfile (its pid names no process), then opens
  the context; ``AlreadyLocked`` means another instance runs;
- ``stop`` requires ``is_locked()``; then breaks the lock of a stale pidfile, or
  sends SIGTERM to ``read_pid()``.

    service_runner.py start|stop PIDFILE LOG
"""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import lockfile  # type: ignore[import-untyped]

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile


class RunnerError(Exception):
    pass


def is_pidfile_stale(pidfile: TimeoutPIDLockFile) -> bool:
    pid = pidfile.read_pid()
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIG_DFL)
    except ProcessLookupError:
        return True
    return False


def start(pidfile: TimeoutPIDLockFile, log_path: str) -> None:
    if is_pidfile_stale(pidfile):
        pidfile.break_lock()
    log = open(log_path, "a")  # noqa: SIM115 - the daemon's for its life
    context = DaemonContext(pidfile=pidfile, stdout=log, stderr=log)
    try:
        context.open()
    except lockfile.AlreadyLocked as exc:
        raise RunnerError(f"PID file {pidfile.path!r} already locked") from exc
    print(f"started with pid {os.getpid()}", flush=True)
    while True:
        time.sleep(60)


def stop(pidfile: TimeoutPIDLockFile) -> None:
    if not pidfile.is_locked():
        raise RunnerError(f"PID file {pidfile.path!r} not locked")
    if is_pidfile_stale(pidfile):
        pidfile.break_lock()
    else:
        os.kill(pidfile.read_pid(), signal.SIGTERM)  # type: ignore[arg-type]


def main() -> None:
    action, path, log_path = sys.argv[1:4]
    pidfile = TimeoutPIDLockFile(path, 1)
    try:
        if action == "start":
            start(pidfile, log_path)
        else:
            stop(pidfile)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
