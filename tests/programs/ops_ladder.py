"""A program for a stop ladder, for tests/test_supervisor_operations.py.

    ops_ladder.py PIDFILE QUITFILE

Ignores SIGTERM; on SIGQUIT writes ``quit`` to QUITFILE (a thread dump's
stand-in) and then ignores SIGQUIT too. Writes its pid to PIDFILE once both
are in place, and sleeps until killed (only SIGKILL ends it).
"""

from __future__ import annotations

import os
import signal
import sys
import time

pidfile, quitfile = sys.argv[1:3]


def on_quit(signum: int, frame: object) -> None:
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    with open(quitfile, "a") as file:
        file.write("quit\n")


signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGQUIT, on_quit)
with open(pidfile + ".tmp", "w") as file:
    file.write(f"{os.getpid()}\n")
os.rename(pidfile + ".tmp", pidfile)
while True:
    time.sleep(3600)
