"""A ``Type=forking`` service with ``PIDFile=``. Install it with
``app-forking.service`` beside it.

systemd waits for the process it started to exit, then reads the pidfile to
learn the daemon's pid. daemonctx's launcher exits (0) only once the daemon
has written its pidfile and finished ``open()``, so systemd never reads a
missing or stale pidfile; a failure before that makes the launcher exit 1 with
the daemon's error, in the journal.

When the daemon already runs (started by hand, say), the start fails at once,
in the foreground, with one line and exit status 69 (EX_UNAVAILABLE). systemd
deletes ``PIDFile=`` after that failed start; the running daemon still holds
the lock of the deleted file and daemonctx finds it there, so the restarts
``Restart=on-failure`` makes fail the same way: never a second daemon.

    python examples/systemd/forking_daemon.py --pidfile /tmp/app-forking.pid
"""

from __future__ import annotations

import argparse
import sys
import time

import lockfile

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile

EXIT_ALREADY_RUNNING = 69  # EX_UNAVAILABLE: tells "already running" from other failures


def main() -> None:
    parser = argparse.ArgumentParser(description="A Type=forking daemon")
    parser.add_argument("--pidfile", default="/run/app-forking.pid")  # absolute: see PIDFile=
    args = parser.parse_args()
    context = DaemonContext(
        detach_process=True,  # started by systemd the parent is PID 1, and None would not fork
        pidfile=TimeoutPIDLockFile(args.pidfile),
        umask=0o022,
    )
    try:
        context.open()  # the launcher exits 0 here, once the pidfile names the daemon
    except lockfile.AlreadyLocked as exc:  # raised here, in the foreground, before any fork
        print(f"forking_daemon: already running: {exc}", file=sys.stderr)
        sys.exit(EXIT_ALREADY_RUNNING)
    with context:
        while True:  # your work; SIGTERM (systemctl stop) ends it with exit status 0
            time.sleep(60)


if __name__ == "__main__":
    main()
