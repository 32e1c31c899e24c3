"""Acquire and release a pidfile over and over, for the reader stress test.

Usage: pidfile_cycler.py PATH LOG SECONDS. Prints "ready", waits for EOF on stdin (a
barrier), then for SECONDS tries to acquire (without waiting) and, when it wins, holds for
up to 2 ms and releases. Each win is appended to LOG as "PID BEFORE ACQUIRED RELEASING
AFTER" (time.monotonic() before the acquire attempt, after it returned, before release, after
release returned): the real holding interval contains [ACQUIRED, RELEASING] and lies inside
[BEFORE, AFTER].
"""

from __future__ import annotations

import os
import random
import sys
import time

import lockfile  # type: ignore[import-untyped]

from daemonctx.pidfile import PIDLockFile


def main() -> None:
    path, log, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pid = os.getpid()
    rng = random.Random(pid)
    lock = PIDLockFile(path)
    logfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", pid, flush=True)
    sys.stdin.read()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = time.monotonic()
        try:
            lock.acquire()
        except lockfile.AlreadyLocked:
            time.sleep(rng.uniform(0, 0.0005))
            continue
        acquired = time.monotonic()
        time.sleep(rng.uniform(0, 0.002))
        releasing = time.monotonic()
        lock.release()
        times = (before, acquired, releasing, time.monotonic())
        os.write(logfd, f"{pid} {' '.join(map(repr, times))}\n".encode())


if __name__ == "__main__":
    main()
