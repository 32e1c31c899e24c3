"""A program that leaves a daemon behind, for tests/test_supervisor_run.py.

    sup_double_fork.py FILE [exit]

The main process forks; the child starts a session of its own (leaving the
program's process group) and forks again; the grandchild appends
``grandchild PID`` to FILE and sleeps until killed; the child appends
``intermediate PID`` and exits, so the grandchild is orphaned (reparented to
the nearest subreaper). The main process reaps the child, as a launcher does,
appends ``leader PID`` and sleeps until killed (with ``exit``: exits 0, as a
daemon's launcher does once its daemon runs).
"""

from __future__ import annotations

import os
import sys

from sup_record import append, sleep_forever  # this directory is sys.path[0]


def main() -> None:
    path = sys.argv[1]
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            append(path, f"grandchild {os.getpid()}")
            sleep_forever()
        append(path, f"intermediate {os.getpid()}")
        os._exit(0)
    os.waitpid(child, 0)
    append(path, f"leader {os.getpid()}")
    if sys.argv[2:] == ["exit"]:
        sys.exit(0)
    sleep_forever()


if __name__ == "__main__":
    main()
