"""A daemon that logs to a file, and reopens it on SIGHUP for logrotate.

    python examples/logging_daemon.py --log /tmp/app.log --pidfile /tmp/app.pid
    mv /tmp/app.log /tmp/app.log.1                  # what logrotate does...
    kill -HUP "$(cat /tmp/app.pid)"                 # ...then its postrotate script
    tail /tmp/app.log                               # new lines, in a new file
    kill "$(cat /tmp/app.pid)"

The log file is opened before the daemon starts, so a bad path fails in the
terminal, and ``files_preserve=[handler]`` keeps it open in the daemon.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType


class ReopeningFileHandler(logging.FileHandler):
    """A ``FileHandler`` that opens its path anew at the first record after ``reopen()``.

    ``reopen`` only sets a flag, so it is safe as a signal handler: the file is
    swapped in ``emit``, under the handler's lock, never in the middle of a write.
    """

    def __init__(self, filename: str) -> None:
        super().__init__(filename, encoding="utf-8")
        self._reopen = False

    def reopen(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._reopen = True

    def emit(self, record: logging.LogRecord) -> None:
        if self._reopen:
            self._reopen = False
            new = open(self.baseFilename, "a", encoding=self.encoding)  # noqa: SIM115
            old = self.setStream(new)
            if old is not None:
                old.close()
        super().emit(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", default="/tmp/daemonctx-app.log")
    parser.add_argument("--pidfile", default="/tmp/daemonctx-app.pid")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between lines")
    args = parser.parse_args()

    handler = ReopeningFileHandler(os.path.abspath(args.log))
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(message)s"))
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    context = DaemonContext(
        pidfile=TimeoutPIDLockFile(os.path.abspath(args.pidfile)),
        files_preserve=[handler],  # every other fd is closed in the daemon
        signal_map={signal.SIGHUP: handler.reopen},  # SIGTERM still stops the daemon
        umask=0o027,  # reopened logs are rw-r----- (the default umask is 0: rw-rw-rw-)
    )
    with context:
        log.info("started")
        beat = 0
        try:
            while True:
                beat += 1
                log.info("heartbeat %d", beat)
                time.sleep(args.interval)
        finally:
            log.info("stopping")  # on SIGTERM, too: it unwinds this block


if __name__ == "__main__":
    main()
