"""python-daemon: ``daemon.DaemonContext`` with its ``TimeoutPIDLockFile``.

Usage: python_daemon.py PIDFILE FIFO LAUNCH_ID

python-daemon's launcher exits right after the first fork. Once ``open()``
has returned (the pidfile is written) the daemon sends the ready marker, the
same as every benchmark program, and waits; SIGTERM ends it (the default
signal map), and closing the context removes the pidfile.
"""

from __future__ import annotations

import os
import signal
import sys

import daemon  # type: ignore[import-untyped]
import daemon.pidfile  # type: ignore[import-untyped]


def report_ready(fifo: str, launch_id: str, impl: str) -> None:
    # O_NONBLOCK: fail (ENXIO) instead of hanging if the benchmark is gone.
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, f"{launch_id} {os.getpid()} {impl}\n".encode())
    finally:
        os.close(fd)


def main() -> None:
    pidfile, fifo, launch_id = sys.argv[1:4]
    context = daemon.DaemonContext(pidfile=daemon.pidfile.TimeoutPIDLockFile(pidfile))
    with context:
        report_ready(fifo, launch_id, "daemon.pidfile")
        while True:
            signal.pause()


if __name__ == "__main__":
    main()
