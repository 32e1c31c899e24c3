"""A process that ignores SIGTERM, for tests/test_supervisor_run.py.

    sup_ignore_term.py PIDFILE

Ignores SIGTERM, then writes its pid to PIDFILE (so the file's presence means
the signal is ignored already) and sleeps until killed.
"""

from __future__ import annotations

import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = sys.argv[1]
with open(path + ".tmp", "w") as file:
    file.write(f"{os.getpid()}\n")
os.rename(path + ".tmp", path)
while True:
    time.sleep(3600)
