"""A program whose worker leaves its process group, for tests/test_supervisor_run.py.

    sup_own_session.py FILE session|group|same [--ignore] [--exec-as NAME]

The main process forks a worker that starts a session of its own (``session``:
as ``setsid cmd &`` or Python's ``Popen(start_new_session=True)``) or a process
group of its own in the same session (``group``: ``setpgid(0, 0)``), so no
signal to the program's group reaches it. The worker appends ``worker PID
ready`` to FILE; on SIGTERM it appends ``worker PID SIGTERM`` (its clean-up)
and exits 0; with ``--ignore`` it ignores SIGTERM. The main process waits; on
SIGTERM it appends ``main PID SIGTERM`` and exits 0.5 s later (it cleans up
too), so that the worker is reparented to the supervisor well after the stop
signal went out. ``same``: the worker stays in the program's group (the stop
signal reaches it there) and exits 1 s after its SIGTERM, outliving the main
process: each SIGTERM it gets appends its line. ``--exec-as NAME``: once ready,
the worker execs ``sleep`` under the argv[0] NAME.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from sup_record import append  # this directory is sys.path[0]


def work(path: str, how: str, ignore: bool, exec_as: str | None = None) -> None:
    if how == "session":
        os.setsid()
    elif how == "group":
        os.setpgid(0, 0)
    me = os.getpid()

    def stop(signum: int, frame: object) -> None:
        append(path, f"worker {me} SIGTERM")
        if how == "same":
            time.sleep(1)  # a survivor of the main process, still in the group
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore else stop)
    append(path, f"worker {me} ready")
    if exec_as is not None:  # a name of its choice, shown by /proc/PID/cmdline
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.execv("/bin/sleep", [exec_as, "300"])
    while True:
        signal.pause()


def main() -> None:
    path, how, options = sys.argv[1], sys.argv[2], sys.argv[3:]
    me = os.getpid()

    def stop(signum: int, frame: object) -> None:
        append(path, f"main {me} SIGTERM")
        time.sleep(0.5)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    if os.fork() == 0:
        exec_as = options[options.index("--exec-as") + 1] if "--exec-as" in options else None
        work(path, how, "--ignore" in options, exec_as)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
