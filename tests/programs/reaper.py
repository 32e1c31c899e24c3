"""Run a command as a child subreaper that reaps at once, as a real init does.

    reaper.py COMMAND [ARG...]

Orphans of COMMAND (a daemon whose first child has exited) are reparented here
and reaped as soon as they exit, so their pids are free again. Exits with
COMMAND's status once COMMAND has exited.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36

libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl: {os.strerror(ctypes.get_errno())}")
command = os.fork()
if command == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
while True:
    pid, status = os.wait()
    if pid == command:
        sys.exit(os.waitstatus_to_exitcode(status))
