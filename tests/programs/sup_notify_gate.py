"""A ``ready = "notify"`` program for tests/test_supervisor_run.py.

    sup_notify_gate.py GATE

Sends ``STATUS=waiting for the gate``, waits until the file GATE exists, then
sends ``READY=1`` with ``STATUS=serving`` and sleeps until killed. It talks
sd_notify by hand (no daemonctx import), as any program would.
"""

from __future__ import annotations

import os
import sys
import time

from cli_program import notify  # this directory is sys.path[0]


def main() -> None:
    gate = sys.argv[1]
    notify(b"STATUS=waiting for the gate")
    while not os.path.exists(gate):
        time.sleep(0.02)
    notify(b"READY=1\nSTATUS=serving")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
