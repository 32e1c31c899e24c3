"""A small daemon the tests start: configured by a JSON argument, it reports
what it sees to a report file that it keeps open through fd closing (so it
works inside a chroot and after dropping privileges).

Config keys:
  report      path of the report file (JSON lines); always preserved
  options     DaemonContext keyword arguments, with paths for stdin/stdout/
              stderr, "pidfile" as a path, and "preserve" as a list of paths
              to open and pass in files_preserve
  before      list of actions to run before open(): "print", "thread",
              "block_sigusr1", "session_with_tty", "close_std_fds"
  hup_report  install a SIGHUP handler that reports {"event": "signal"}
  report_signals  the same for these signal numbers
  ready_late  with ready_on_open=False: call notify_ready() after this
              many seconds (0 means at once)
  fail_in_block  raise this message inside the with block
  exit_after  leave the with block on its own after reporting
  barrier_fd  an inherited pipe fd to read from first (EOF releases the start)
  worker      first thing in the with block, start a child that sleeps: "fork"
              (os.fork) or "multiprocessing" (a 'fork' Process); it inherits the
              start-up pipe, and is reported as {"event": "worker", "pid": ...}
  kill_self   then SIGKILL the daemon itself: it dies without a word
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from daemonctx import DaemonContext

config = json.loads(sys.argv[1])
options = dict(config.get("options", {}))
# With "report_after_open" the report is opened inside the daemon, for tests
# whose launcher starts with fds 0-2 closed (it would land on one of them).
late_report = config.get("report_after_open", False)
report = None if late_report else open(config["report"], "a", buffering=1)  # noqa: SIM115


def emit(**event: object) -> None:
    global report
    if report is None:
        report = open(config["report"], "a", buffering=1)  # noqa: SIM115
    event.setdefault("pid", os.getpid())
    report.write(json.dumps(event) + "\n")
    report.flush()


class SimplePidfile:
    """A plain PEP 3143 pidfile (writes the pid, removes it on exit)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> SimplePidfile:
        with open(self.path, "w") as f:
            f.write(f"{os.getpid()}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)


if "barrier_fd" in config:  # block until the test closes the pipe: start all at once
    os.read(config["barrier_fd"], 1)
    os.close(config["barrier_fd"])

for action in config.get("before", []):
    if action == "print":
        print("printed-before-open")  # no flush: open() must flush it exactly once
    elif action == "thread":
        import threading

        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
    elif action == "block_sigusr1":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    elif action == "session_with_tty":
        # Be what `ssh -t host cmd` makes: a session leader owning a terminal.
        os.setsid()
        master, slave = os.openpty()
        os.close(os.open(os.ttyname(slave), os.O_RDWR))  # acquire as controlling tty
        config["_tty_master"] = master

for key in ("stdin", "stdout", "stderr"):
    if isinstance(options.get(key), str):
        options[key] = open(options[key], "r" if key == "stdin" else "a")  # noqa: SIM115
if isinstance(options.get("pidfile"), str):
    if config.get("pidfile_class") == "daemonctx":
        from daemonctx.pidfile import PIDLockFile

        options["pidfile"] = PIDLockFile(options["pidfile"])
    else:
        options["pidfile"] = SimplePidfile(options["pidfile"])
preserved = [open(path, "a") for path in options.pop("preserve", [])]  # noqa: SIM115
options["files_preserve"] = [
    *([report] if report else []),
    *preserved,
    *options.get("files_preserve", []),
]
if "signal_map" in options:
    options["signal_map"] = {int(k): v for k, v in options["signal_map"].items()}
reported = [signal.SIGHUP] if config.get("hup_report") else []
for number in reported + config.get("report_signals", []):
    options.setdefault("signal_map", {})[number] = lambda signum, frame: emit(
        event="signal", signum=signum
    )


def start_worker(how: str) -> None:
    """A child of the daemon that sleeps, holding what the daemon holds."""
    if how == "multiprocessing":
        import multiprocessing

        process = multiprocessing.get_context("fork").Process(target=time.sleep, args=(1000,))
        process.start()
        pid = process.pid
    else:
        pid = os.fork()
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
    emit(event="worker", pid=pid)


context = DaemonContext(**options)
try:
    with context:
        # From "open" on, a signal anywhere in the body unwinds through "closing":
        # a test sends SIGTERM as soon as it has read "open". A start made to fail
        # (fail_in_block) leaves without it, as before.
        failing = False
        try:
            emit(event="open", ppid=os.getppid())
            if "worker" in config:
                start_worker(config["worker"])
            if config.get("kill_self"):
                os.kill(os.getpid(), signal.SIGKILL)
            if "ready_late" in config:
                time.sleep(config["ready_late"])
                context.notify_ready()
                emit(event="ready")
            if config.get("fail_in_block"):
                # memory in use, which the exit takes a while to give back
                ballast = b"x" * (config.get("ballast_mib", 0) << 20)
                failing = True
                raise RuntimeError(config["fail_in_block"])
            if not config.get("exit_after"):
                while True:
                    signal.pause()
        finally:
            if not failing:
                emit(event="closing", is_open=context.is_open)
finally:
    emit(event="closed", is_open=context.is_open)
