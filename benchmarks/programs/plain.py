"""The floor: the classic double-fork recipe, with nothing else.

Usage: plain.py PIDFILE FIFO LAUNCH_ID

The launcher leaves right after the first fork (nothing tells it when the
daemon is up). The daemon writes its pidfile with a plain ``open().write()``,
then writes ``"<launch id> <pid> none\\n"`` to FIFO, and waits for SIGTERM.
The ready marker is the same, byte for byte, in every benchmark program.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType


def report_ready(fifo: str, launch_id: str, impl: str) -> None:
    # O_NONBLOCK: fail (ENXIO) instead of hanging if the benchmark is gone.
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, f"{launch_id} {os.getpid()} {impl}\n".encode())
    finally:
        os.close(fd)


def terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    pidfile, fifo, launch_id = sys.argv[1:4]
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    os.umask(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, terminate)
    try:
        report_ready(fifo, launch_id, "none")
        while True:
            signal.pause()
    finally:
        os.unlink(pidfile)


if __name__ == "__main__":
    main()
