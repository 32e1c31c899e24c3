"""A program that makes orphans, for tests/test_supervisor_run.py.

    sup_orphans.py GATE COUNT

Starts COUNT processes that each fork a grandchild and exit at once, so each
grandchild is orphaned and reparented (to PID 1 in a pid namespace, or to the
nearest subreaper). The grandchildren become ``/bin/sh`` with an empty
environment (nothing tells whose they are), wait until the file GATE exists,
then exit: whoever adopted them must reap them. The main process reaps its own
children and sleeps until killed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time


def main() -> None:
    gate, count = sys.argv[1], int(sys.argv[2])
    sleep = shutil.which("sleep") or "/bin/sleep"
    script = f'while [ ! -e "$0" ]; do {sleep} 0.02; done'
    for _ in range(count):
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                os.execve("/bin/sh", ["sh", "-c", script, gate], {})
            os._exit(0)
        os.waitpid(child, 0)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
