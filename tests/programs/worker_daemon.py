"""A daemon with workers, as a Service: ``worker_daemon.py PIDFILE KIND COMMAND``.

KIND says how it starts one worker:
  fork      os.fork(): the worker keeps the pidfile's descriptor
  mp-fork   a non-daemonic multiprocessing.Process (fork): Python's exit joins it
  mp-spawn  one that execs a new interpreter (and its resource tracker): no lock
Once it runs, the daemon writes the workers' pids, one a line, to PIDFILE.workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from daemonctx import Service
from daemonctx.procfs import children


def serve() -> None:
    while True:
        time.sleep(1000)


class App(Service):
    ready_on_open = False

    def __init__(self, pidfile: str, kind: str) -> None:
        super().__init__(pidfile, name="app")
        self.kind = kind

    def run(self) -> None:
        if self.kind == "fork":
            if os.fork() == 0:
                serve()
        else:
            method = self.kind.split("-")[1]
            multiprocessing.get_context(method).Process(target=serve).start()
        workers = sorted(children(os.getpid()))
        with open(f"{self.pidfile_path}.workers.tmp", "w") as f:
            f.write("".join(f"{pid}\n" for pid in workers))
        os.rename(f"{self.pidfile_path}.workers.tmp", f"{self.pidfile_path}.workers")
        self.notify_ready()
        while True:
            signal.pause()


if __name__ == "__main__":
    App(sys.argv[1], sys.argv[2]).main(sys.argv[3:])
