"""A ``Type=notify`` service: systemd starts it, it does not fork, and it tells
systemd when it is ready. Install it with ``app-notify.service`` beside it.

systemd tracks the process it started, so the context must not fork
(``detach_process=False``), and ``systemctl start`` returns when the daemon
sends ``READY=1`` (``notify_ready()``), not when the process starts.
``systemctl stop`` sends SIGTERM: the daemon sends ``STOPPING=1`` and exits 0.

Outside systemd (no ``NOTIFY_SOCKET``) it runs in the foreground and sends nothing.
"""

from __future__ import annotations

import sys
import time

from daemonctx import DaemonContext, notify


def main() -> None:
    context = DaemonContext(
        detach_process=False,  # systemd watches this very process: never fork
        ready_on_open=False,  # READY=1 when the set-up below is done
        stdout=sys.stdout,  # the journal; None would mean /dev/null
        stderr=sys.stderr,
        umask=0o022,
    )
    with context:
        print("loading", flush=True)
        # Set up here: bind sockets, open files, connect to databases. An
        # exception before notify_ready() fails the start (the unit fails).
        context.notify_ready()  # READY=1: `systemctl start` returns now
        notify(STATUS="serving")
        while True:  # your work; SIGTERM raises Terminated here: STOPPING=1, exit 0
            time.sleep(60)


if __name__ == "__main__":
    main()
