"""A program whose leader dies at once on SIGTERM while a worker in its process
group takes its time to stop, for tests/test_supervisor_run.py.

    sup_group_stop.py FILE GATE [--ignore] [--daemon PIDFILE]

The leader forks a worker (in the leader's process group) and waits: SIGTERM
kills it at once (its default action). The worker appends ``worker PID ready``
to FILE; on SIGTERM it appends ``worker PID SIGTERM``, waits until GATE (a FIFO)
is opened for writing, appends ``worker PID done`` and exits. With ``--ignore``
the worker ignores SIGTERM. With ``--daemon`` it forks into the background
instead: a daemon in a session of its own does what the leader did, writes its
pid to PIDFILE, and the leader exits 0 (a ``pidfile`` program).
"""

from __future__ import annotations

import os
import signal
import sys

from sup_record import append  # this directory is sys.path[0]


def work(path: str, gate: str, ignore: bool) -> None:
    me = os.getpid()

    def stop(signum: int, frame: object) -> None:
        append(path, f"worker {me} SIGTERM")
        os.close(os.open(gate, os.O_RDONLY))  # blocks until the test opens it to write
        append(path, f"worker {me} done")
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore else stop)
    append(path, f"worker {me} ready")
    while True:
        signal.pause()


def lead(path: str, gate: str, ignore: bool) -> None:
    """Fork the worker into this process's group, then wait for signals."""
    if os.fork() == 0:
        work(path, gate, ignore)
    while True:
        signal.pause()


def main() -> None:
    path, gate, options = sys.argv[1], sys.argv[2], sys.argv[3:]
    ignore = "--ignore" in options
    if "--daemon" not in options:
        lead(path, gate, ignore)
    pidfile = options[options.index("--daemon") + 1]
    written, told = os.pipe()
    if os.fork() == 0:
        os.close(written)
        os.setsid()
        with open(pidfile + ".tmp", "w") as file:
            file.write(f"{os.getpid()}\n")
        os.rename(pidfile + ".tmp", pidfile)
        os.close(told)  # the leader may exit now
        lead(path, gate, ignore)
    os.close(told)
    os.read(written, 1)  # EOF: the daemon's pid is written
    os._exit(0)


if __name__ == "__main__":
    main()
