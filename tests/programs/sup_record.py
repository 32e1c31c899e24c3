"""A program for tests/test_supervisor_run.py: it appends one line per event to
FILE, ``EVENT PID TIME`` (TIME from CLOCK_BOOTTIME, one clock for every process),
then does what MODE says.

    sup_record.py FILE crash CODE [SECONDS]   start, [run SECONDS,] exit CODE
    sup_record.py FILE forever                start, then sleep until killed
    sup_record.py FILE notify SECONDS         start, SECONDS later "ready" and
                                              READY=1 (daemonctx.systemd.notify),
                                              then sleep until killed

Kept small (no argparse) so that it starts fast: tests measure the gaps between
starts. ``os._exit`` skips the interpreter's clean-up for the same reason.
"""

from __future__ import annotations

import os
import sys
import time


def append(path: str, line: str) -> None:
    """Append ``line`` to ``path`` in one write (O_APPEND: whole lines, whatever
    other processes append)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def record(path: str, event: str) -> None:
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    append(path, f"{event} {os.getpid()} {now:.6f}")


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def main() -> None:
    path, mode, *rest = sys.argv[1:]
    record(path, "start")
    if mode == "crash":
        if len(rest) > 1:
            time.sleep(float(rest[1]))
            record(path, "exit")
        os._exit(int(rest[0]))
    if mode == "notify":
        from daemonctx.systemd import notify

        time.sleep(float(rest[0]))
        record(path, "ready")
        notify("READY=1")
    sleep_forever()


if __name__ == "__main__":
    main()
