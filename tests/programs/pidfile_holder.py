"""Acquire a daemonctx pidfile and hold it, for tests/test_pidfile.py.

Every step is reported as one line on stdout: "ready PID", then "locked PID TIME" or
"ExceptionName PID MESSAGE"; while locked it holds until EOF on stdin (or --hold SECONDS),
then prints "releasing PID TIME", releases and prints "released PID TIME" (and with
--linger stays alive until EOF on stdin). TIME is
time.monotonic(), comparable across processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from daemonctx.pidfile import PIDLockFile


def say(*words: object) -> None:
    print(*words, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--go-fd", type=int, help="wait for EOF on this fd before acquiring")
    parser.add_argument("--hold", type=float, help="hold this long instead of until stdin EOF")
    parser.add_argument("--die", action="store_true", help="exit without releasing")
    parser.add_argument("--linger", action="store_true", help="after release, wait for EOF")
    parser.add_argument("--exec", action="store_true", help="exec a program that keeps the lock")
    args = parser.parse_args()
    pid = os.getpid()
    say("ready", pid)
    if args.go_fd is not None:
        while os.read(args.go_fd, 1):
            pass
    lock = PIDLockFile(args.path, timeout=args.timeout)
    try:
        lock.acquire()
    except Exception as exc:
        say(type(exc).__name__, pid, exc)
        return
    say("locked", pid, time.monotonic())
    if args.exec:
        os.set_inheritable(lock.fileno(), True)
        code = "import os,sys; print('execd', os.getpid(), flush=True); sys.stdin.read()"
        os.execv(sys.executable, [sys.executable, "-c", code])
    if args.hold is None:
        sys.stdin.read()
    else:
        time.sleep(args.hold)
    if args.die:
        say("exiting", pid, time.monotonic())
        os._exit(0)
    say("releasing", pid, time.monotonic())
    lock.release()
    say("released", pid, time.monotonic())
    if args.linger:
        sys.stdin.read()


if __name__ == "__main__":
    main()
