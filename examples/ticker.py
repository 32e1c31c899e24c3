"""A complete small daemon: `python examples/ticker.py start|status|stop`.

`start` returns once the daemon is up and its pidfile names it; the daemon
writes a line to its log every half second until it receives SIGTERM.
Paths default to /tmp; set TICKER_DIR to put them elsewhere.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile, read_pidfile_status

DIRECTORY = os.environ.get("TICKER_DIR", "/tmp")
PIDFILE = os.path.join(DIRECTORY, "daemonctx-ticker.pid")
LOG = os.path.join(DIRECTORY, "daemonctx-ticker.log")
STOP_TIMEOUT = 10.0  # seconds stop waits for the daemon to exit


def start() -> None:
    log = open(LOG, "a", buffering=1)  # noqa: SIM115 - the daemon's stdout for its life
    context = DaemonContext(
        pidfile=TimeoutPIDLockFile(PIDFILE),
        stdout=log,
        stderr=log,
        working_directory=DIRECTORY,
    )
    print(f"starting ticker: pidfile {PIDFILE}, log {LOG}", flush=True)
    with context:  # the launcher exits 0 here once the daemon is up
        print(f"ticker {os.getpid()} started")
        try:
            while True:
                print(f"tick {time.strftime('%H:%M:%S')} from pid {os.getpid()}")
                time.sleep(0.5)
        finally:
            print(f"ticker {os.getpid()} stopping")


def status() -> int:
    state = read_pidfile_status(PIDFILE)
    if state.running:
        print(f"ticker is running (pid {state.pid})")
        return 0
    print("ticker is not running")
    return 3


def stop() -> int:
    state = read_pidfile_status(PIDFILE)
    if not state.running or state.pid is None:
        print("ticker is not running")
        return 0
    try:
        pidfd = os.pidfd_open(state.pid)
    except ProcessLookupError:  # it exited meanwhile
        print("ticker is not running")
        return 0
    started = time.monotonic()
    signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    exited, _, _ = select.select([pidfd], [], [], STOP_TIMEOUT)  # readable once it has exited
    os.close(pidfd)
    if not exited:
        print(
            f"ticker (pid {state.pid}) did not stop within {STOP_TIMEOUT:g} s of SIGTERM;"
            " it still runs",
            file=sys.stderr,
        )
        return 1
    print(f"stopped ticker (pid {state.pid}) in {time.monotonic() - started:.3f} s")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "start":
        start()
    elif command in ("status", "stop"):
        sys.exit(status() if command == "status" else stop())
    else:
        sys.exit(f"usage: {sys.argv[0]} start|status|stop")
