"""daemonctx_daemon.py with timestamps: where does daemonctx's start-up time go?

Usage: trace_daemonctx.py PIDFILE FIFO LAUNCH_ID PIDFILE_IMPL EVENTS_FILE

Runs the benchmark's daemonctx program unchanged, after wrapping daemonctx's
steps (from the outside; daemonctx itself is not edited) with timers. Every
event is ``(label, pid, start_ns, end_ns)`` on ``time.perf_counter_ns()``,
which is CLOCK_MONOTONIC on Linux, so the launching benchmark can place it on
its own clock. The events list is inherited through both forks, so the daemon
holds the whole story; it writes it to EVENTS_FILE just before it sends the
ready marker. Only for ``trace_startup.py``: the wrappers cost about a microsecond
each.
"""

from __future__ import annotations

import time

T0 = time.perf_counter_ns()

import os  # noqa: E402 - after T0 on purpose (os is preloaded by site: free)
import sys  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

EVENTS: list[tuple[str, int, int, int]] = [("interpreter ready (main starts)", os.getpid(), T0, T0)]


def mark(label: str, start: int) -> None:
    EVENTS.append((label, os.getpid(), start, time.perf_counter_ns()))


def wrap(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] | None = getattr(owner, name, None)
    if original is None:  # renamed in daemonctx: say so in the report
        now = time.perf_counter_ns()
        EVENTS.append((f"not traced: {getattr(owner, '__name__', owner)}.{name}", 0, now, now))
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return original(*args, **kwargs)
        finally:
            mark(label, start)

    setattr(owner, name, timed)


def main() -> None:
    events_file = sys.argv.pop(5)
    impl = sys.argv[4]
    start = time.perf_counter_ns()
    import signal  # noqa: F401 - what every benchmark program imports first

    mark("import signal (+enum; every variant)", start)
    start = time.perf_counter_ns()
    import daemonctx

    mark("import daemonctx", start)
    pidfile_class: Any = None
    if impl == "library":
        start = time.perf_counter_ns()
        from daemonctx.pidfile import TimeoutPIDLockFile

        mark("import daemonctx.pidfile", start)
        pidfile_class = TimeoutPIDLockFile

    from daemonctx import handoff, process

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import daemonctx_daemon as program

    if pidfile_class is None:
        pidfile_class = program.FallbackPIDFile
    ctx_class = daemonctx.DaemonContext
    for owner, name, label in (
        (ctx_class, "__init__", "DaemonContext() (option checks)"),
        (ctx_class, "_preflight", "open: preflight checks"),
        (process, "detach_required", "open: detach_required"),
        (process, "fd_gaps", "open: list fds to close"),
        (process, "flush_standard_streams", "open: flush stdio"),
        (process, "warn_if_threads_alive", "open: threads check"),
        (handoff.Handoff, "__init__", "open: handoff pipe"),
        (process, "fork", "fork (child side)"),
        (process, "start_new_session", "setsid"),
        (handoff.Handoff, "send_pid", "send PID record"),
        (process, "reset_signal_mask", "reset signal mask"),
        (process, "close_fds", "close fds"),
        (process, "open_devnull", "open /dev/null"),
        (process, "prevent_core_dump", "prevent core (import resource)"),
        (process, "change_working_directory", "chdir"),
        (process, "change_file_creation_mask", "umask"),
        (process, "redirect_standard_streams", "redirect stdio"),
        (pidfile_class, "__enter__", "pidfile enter"),
        (process, "change_process_owner", "change owner"),
        (process, "install_signal_handlers", "install signal handlers"),
        (handoff.Handoff, "send_ready", "send READY record"),
    ):
        wrap(owner, name, label)

    report_ready = program.report_ready

    def report_and_dump(fifo: str, launch_id: str, impl: str) -> None:
        # Written before the marker: the benchmark stops the daemon as soon as
        # the marker arrives. (This delays the marker by the write, ~0.1 ms.)
        mark("open() returned, block entered", time.perf_counter_ns())
        with open(events_file, "w") as f:
            for event in EVENTS:
                f.write("\t".join(map(str, event)) + "\n")
        report_ready(fifo, launch_id, impl)

    program.report_ready = report_and_dump
    program.main()


if __name__ == "__main__":
    main()
