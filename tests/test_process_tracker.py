"""The test suite's own process tracker (conftest.ProcessTracker): its teardown
kills every process it must, whatever a reused pid now names."""

from __future__ import annotations

import shutil
import threading

from conftest import ProcessTracker, pid_alive

SLEEP = shutil.which("sleep") or "/bin/sleep"


def test_a_pid_that_names_a_thread_now_does_not_stop_the_teardown(
    processes: ProcessTracker,
) -> None:
    """A learnt pid reused by a thread of another process: pidfd_open says ENOENT.
    The tracker passes over it and still kills the test's other processes."""
    started, release = threading.Event(), threading.Event()
    thread_ids: list[int] = []

    def run() -> None:
        thread_ids.append(threading.get_native_id())
        started.set()
        release.wait(30)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(10)
        sleeper = processes.popen([SLEEP, "1000"])
        tracker = ProcessTracker()
        tracker.add(thread_ids[0])  # a thread: /proc/<tid> exists, pidfd_open refuses it
        tracker.add(sleeper.pid)
        tracker.kill_all()
        assert sleeper.wait(5) == -9
        assert not pid_alive(sleeper.pid)
    finally:
        release.set()
        thread.join()
