"""A program for the watchdog tests: it appends ``EVENT PID TIME`` lines to FILE
(as sup_record.py, CLOCK_BOOTTIME), learns its interval from
``daemonctx.systemd.watchdog_seconds()`` (WATCHDOG_USEC), and then:

    sup_watchdog.py FILE ping SECONDS      WATCHDOG=1 at a fifth of the interval
                                           for SECONDS, then "hang" (no more)
    sup_watchdog.py FILE trigger SECONDS   SECONDS later "trigger": WATCHDOG=trigger

and sleeps until killed. Without an interval it records "no-watchdog" and sleeps.
"""

from __future__ import annotations

import os
import sys
import time

from daemonctx.systemd import notify, watchdog_seconds


def record(path: str, event: str) -> None:
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {os.getpid()} {now:.6f}\n".encode())
    finally:
        os.close(fd)


def main() -> None:
    path, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    record(path, "start")
    interval = watchdog_seconds()
    if interval is None:
        record(path, "no-watchdog")
    elif mode == "ping":
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            notify("WATCHDOG=1")
            time.sleep(interval / 5)
        record(path, "hang")
    else:
        time.sleep(seconds)
        record(path, "trigger")
        notify("WATCHDOG=trigger")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
