"""A program for tests/test_cli.py to run under ``daemonctx start``: it knows
nothing of daemonctx, only of sd_notify's ``NOTIFY_SOCKET``.

Options:
  --ready-after S   send READY=1 on $NOTIFY_SOCKET after S seconds (default 0)
  --exit-before-ready CODE   exit with CODE instead of sending READY=1
  --never-ready     never send READY=1
  --ignore-term     ignore SIGTERM (set before READY=1)
  --marker FILE     append a JSON line {"pid", "time", "notify_socket",
                    "watchdog": [WATCHDOG_USEC, WATCHDOG_PID]} just before
                    READY=1 (time is time.monotonic(), comparable across
                    processes)
  --signals FILE    on SIGHUP, SIGINT, SIGUSR1 or SIGTERM, write the signal's
                    name to FILE and exit 0
Then it waits for signals forever.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time


def notify(message: bytes) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--exit-before-ready", type=int)
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--marker")
    parser.add_argument("--signals")
    args = parser.parse_args()
    if args.signals:

        def record(signum: int, frame: object) -> None:
            with open(args.signals, "w") as f:
                f.write(signal.Signals(signum).name)
            sys.exit(0)

        for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGTERM):
            signal.signal(signum, record)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(args.ready_after)
    if args.exit_before_ready is not None:
        sys.exit(args.exit_before_ready)
    if args.marker:
        record = {
            "pid": os.getpid(),
            "time": time.monotonic(),
            "notify_socket": os.environ.get("NOTIFY_SOCKET"),
            "watchdog": [os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")],
        }
        with open(args.marker, "a") as f:
            f.write(json.dumps(record) + "\n")
    if not args.never_ready and "NOTIFY_SOCKET" in os.environ:
        notify(b"STATUS=up\nREADY=1")
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
