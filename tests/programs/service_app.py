"""A ``daemonctx.Service`` for tests/test_service.py: ``service_app.py COMMAND``.

Configured by environment variables (all paths absolute):
  SERVICE_PIDFILE  the pidfile
  SERVICE_REPORT   JSON lines {"event", "pid"}: "run", "ready", "reload", "stopping"
  SERVICE_STDOUT   a path for the daemon's stdout (run() prints a line to it)
  SERVICE_STDERR   a path for the daemon's stderr
  SERVICE_READY_DELAY  seconds run() waits before notify_ready()
  SERVICE_FAIL     run() raises RuntimeError(this) before notify_ready()
  SERVICE_RETURN   run() returns before notify_ready()
  SERVICE_CLOSE_FDS  run() first closes every fd above 2, as legacy code does
  SERVICE_CHDIR    the working_directory option
  SERVICE_NO_RELOAD  an empty signal_map (the defaults: SIGHUP kills)
  SERVICE_HOLD     a path: the daemon, holding its pidfile but before its signal
                   handlers, creates PATH.held and waits for PATH.go (20 s at most)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from daemonctx import Service

ENV = os.environ


def report(event: str) -> None:
    with open(ENV["SERVICE_REPORT"], "a") as f:
        f.write(json.dumps({"event": event, "pid": os.getpid()}) + "\n")


class App(Service):
    """A test service."""

    ready_on_open = False  # run() calls notify_ready() once it is set up
    signal_map = {signal.SIGHUP: "reload"}  # noqa: RUF012 - read once, never modified
    stop_timeout = 5.0

    def run(self) -> None:
        if "SERVICE_CLOSE_FDS" in ENV:
            os.closerange(3, 65536)
        report("run")
        time.sleep(float(ENV.get("SERVICE_READY_DELAY", "0")))
        if "SERVICE_FAIL" in ENV:
            raise RuntimeError(ENV["SERVICE_FAIL"])
        if "SERVICE_RETURN" in ENV:
            return
        try:  # a SIGTERM from here on is a stop after run() began serving
            print(f"serving from {os.getpid()}", flush=True)
            self.notify_ready()
            report("ready")
            while True:
                signal.pause()
        finally:
            report("stopping")

    def reload(self, signum: int, frame: object) -> None:
        report("reload")


def hold_before_owner_change(marker: str) -> None:
    """Stop the daemon in the instant between taking the pidfile and installing
    its handlers (the privilege drop is there), until the test says go."""
    from daemonctx import process

    change = process.change_process_owner

    def held(*args: object) -> None:
        open(marker + ".held", "w").close()
        deadline = time.monotonic() + 20
        while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
            time.sleep(0.005)
        change(*args)  # type: ignore[arg-type]

    process.change_process_owner = held  # type: ignore[assignment]


if __name__ == "__main__":
    if "SERVICE_HOLD" in ENV:
        hold_before_owner_change(ENV["SERVICE_HOLD"])
    options = {"stdout": ENV["SERVICE_STDOUT"]} if "SERVICE_STDOUT" in ENV else {}
    if "SERVICE_STDERR" in ENV:
        options["stderr"] = ENV["SERVICE_STDERR"]
    if "SERVICE_CHDIR" in ENV:
        options["working_directory"] = ENV["SERVICE_CHDIR"]
    if "SERVICE_NO_RELOAD" in ENV:
        options["signal_map"] = {}
    App(ENV["SERVICE_PIDFILE"], name="app", **options).main(sys.argv[1:])
