"""A TCP echo server daemon: the command returns once the server is listening.

    python examples/echo_server.py --port 7007 --pidfile /tmp/echo.pid
    nc 127.0.0.1 7007                               # type a line: it comes back
    kill "$(cat /tmp/echo.pid)"                     # the daemon exits 0 and removes its pidfile

With ``--port 0`` the kernel picks a free port; ``--port-file PATH`` writes the
port there before the command returns. If the port cannot be bound (in use,
or below 1024 without root), the command fails in the terminal with that error.
"""

from __future__ import annotations

import argparse
import os
import socketserver

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile


class EchoHandler(socketserver.StreamRequestHandler):
    """Send every line a client writes straight back to it."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a client still connected does not hold up the exit
    allow_reuse_address = True  # a restart can bind the port again at once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7007, help="0: any free port")
    parser.add_argument("--pidfile", default="/tmp/daemonctx-echo.pid")
    parser.add_argument("--port-file", help="write the port the server listens on here")
    args = parser.parse_args()

    # The daemon works in "/", so relative paths are made absolute here.
    port_file = os.path.abspath(args.port_file) if args.port_file else None
    context = DaemonContext(
        pidfile=TimeoutPIDLockFile(os.path.abspath(args.pidfile)),
        ready_on_open=False,  # the command returns at notify_ready(), not at the end of open()
        umask=0o022,  # the port file is created rw-r--r-- (the default umask is 0)
    )
    # EchoServer binds in the daemon, once open() is done. An exception there, before
    # notify_ready() (the port is in use, say), is raised in the launcher: the command
    # fails with it, and no daemon is left behind.
    with context, EchoServer((args.host, args.port), EchoHandler) as server:
        if port_file is not None:
            with open(port_file, "w") as f:
                f.write(f"{server.server_address[1]}\n")
        context.notify_ready()  # listening: the command exits 0 now
        server.serve_forever()  # until SIGTERM, which ends the daemon with status 0


if __name__ == "__main__":
    main()
