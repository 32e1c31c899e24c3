"""A program with an orphan in its process group, both counting signals, for
tests/test_supervisor_run.py.

    sup_signal_counter.py FILE

The main process forks; the child forks again and exits, so the grandchild is
orphaned (reparented to the nearest subreaper) but stays in the program's
process group. Each of the two appends ``ROLE PID SIGNAL`` to FILE for every
SIGHUP, SIGUSR1 and SIGTERM it handles (exiting after SIGTERM), and
``ROLE PID ready`` once its handlers are in place.
"""

from __future__ import annotations

import os
import signal
import sys

from sup_record import append  # this directory is sys.path[0]


def count(path: str, role: str) -> None:
    """Record each signal as it is handled; wait for them forever."""

    def handler(signum: int, frame: object) -> None:
        append(path, f"{role} {os.getpid()} {signal.Signals(signum).name}")
        if signum == signal.SIGTERM:
            os._exit(0)

    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
        signal.signal(signum, handler)
    append(path, f"{role} {os.getpid()} ready")
    while True:
        signal.pause()


def main() -> None:
    path = sys.argv[1]
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            count(path, "orphan")
        os._exit(0)
    os.waitpid(child, 0)
    count(path, "leader")


if __name__ == "__main__":
    main()
