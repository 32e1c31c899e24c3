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
import signal
import socket
import socketserver
import threading
from typing import Any

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile


class EchoHandler(socketserver.StreamRequestHandler):
    """Send every line a client writes straight back to it."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


class EchoServer(socketserver.ThreadingTCPServer):
    """Threads joined at exit, not daemon threads: a daemon thread still running
    while the interpreter shuts down can hang its exit. To end those threads,
    closing the server shuts down the connections still open."""

    allow_reuse_address = True  # a restart can bind the port again at once
    daemon_threads = False
    block_on_close = True  # server_close() joins the client threads

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.clients: set[socket.socket] = set()  # first: a failed bind closes the server
        self.clients_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.clients_lock:
            self.clients.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.clients_lock:
            self.clients.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        with self.clients_lock:
            for client in self.clients:
                try:
                    client.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
                except OSError:
                    pass
        super().server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7007, help="0: any free port")
    parser.add_argument("--pidfile", default="/tmp/daemonctx-echo.pid")
    parser.add_argument("--port-file", help="write the port the server listens on here")
    args = parser.parse_args()

    # The daemon works in "/", so relative paths are made absolute here.
    port_file = os.path.abspath(args.port_file) if args.port_file else None
    server: EchoServer | None = None

    def stop(signum: int, frame: Any) -> None:
        """SIGTERM ends serve_forever() between two requests, not with an exception
        raised wherever the main thread is (inside a thread's start, say)."""
        if server is None:  # no server yet: exit at once, as DaemonContext does
            context.terminate(signum, frame)
        else:  # shutdown() waits for serve_forever() to return: not from its thread
            threading.Thread(target=server.shutdown).start()

    context = DaemonContext(
        pidfile=TimeoutPIDLockFile(os.path.abspath(args.pidfile)),
        ready_on_open=False,  # the command returns at notify_ready(), not at the end of open()
        umask=0o022,  # the port file is created rw-r--r-- (the default umask is 0)
        signal_map={signal.SIGTERM: stop},
    )
    # EchoServer binds in the daemon, once open() is done. An exception there, before
    # notify_ready() (the port is in use, say), is raised in the launcher: the command
    # fails with it, and no daemon is left behind.
    with context, EchoServer((args.host, args.port), EchoHandler) as echo:
        server = echo  # from here on, SIGTERM stops it
        if port_file is not None:
            with open(port_file, "w") as f:
                f.write(f"{echo.server_address[1]}\n")
        context.notify_ready()  # listening: the command exits 0 now
        echo.serve_forever()  # until SIGTERM; then the daemon exits 0


if __name__ == "__main__":
    main()
