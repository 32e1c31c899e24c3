"""daemonctx: ``daemonctx.DaemonContext`` with a ``TimeoutPIDLockFile``.

Usage: daemonctx_daemon.py PIDFILE FIFO LAUNCH_ID PIDFILE_IMPL

PIDFILE_IMPL is ``library`` (``daemonctx.pidfile.TimeoutPIDLockFile``) or
``fallback`` (the small pidfile below, for while ``daemonctx.pidfile`` does
not exist yet); the ready marker names the one used. daemonctx's launcher
exits once ``open()`` has finished in the daemon; then the daemon sends the
ready marker, the same as every benchmark program, and waits for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys

from daemonctx import DaemonContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType


class FallbackPIDFile:
    """Writes our pid to ``path`` on enter and removes it on exit. No locking."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> FallbackPIDFile:
        with open(self.path, "w") as f:
            f.write(f"{os.getpid()}\n")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def report_ready(fifo: str, launch_id: str, impl: str) -> None:
    # O_NONBLOCK: fail (ENXIO) instead of hanging if the benchmark is gone.
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, f"{launch_id} {os.getpid()} {impl}\n".encode())
    finally:
        os.close(fd)


def main() -> None:
    pidfile, fifo, launch_id, impl = sys.argv[1:5]
    if impl == "library":
        from daemonctx.pidfile import TimeoutPIDLockFile

        context = DaemonContext(pidfile=TimeoutPIDLockFile(pidfile))
        used = "daemonctx.pidfile"
    else:
        context = DaemonContext(pidfile=FallbackPIDFile(pidfile))
        used = "fallback"
    with context:
        report_ready(fifo, launch_id, used)
        while True:
            signal.pause()


if __name__ == "__main__":
    main()
