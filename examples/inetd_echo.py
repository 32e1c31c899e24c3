"""An inetd-style service: the super-server (inetd, xinetd, or a systemd socket
with ``Accept=yes``) accepts a connection and starts this program with the
socket as its stdin and stdout. It echoes that client's lines and exits when
the client closes the connection.

    # /etc/inetd.conf
    7007 stream tcp nowait nobody /opt/app/venv/bin/python python /opt/app/inetd_echo.py

``detach_process=None`` sees that stdin is a socket and does not fork: the
super-server keeps track of the process it started.
"""

from __future__ import annotations

import sys

from daemonctx import DaemonContext


def main() -> None:
    context = DaemonContext(
        stdin=sys.stdin,  # the connection. None would put /dev/null on fds 0 and 1,
        stdout=sys.stdout,  # and the client would get nothing
        # stderr stays None (/dev/null): tracebacks must not go to the client.
    )
    with context:
        for line in sys.stdin.buffer:  # until the client closes its side
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
