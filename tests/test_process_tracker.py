"""The test suite's own process tracker (conftest.ProcessTracker): its teardown
kills every process it must, whatever a reused pid now names."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

from conftest import (
    ProcessTracker,
    Tracker,
    cmdline_of,
    empty_cgroup,
    pid_alive,
    wait_gone,
)

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


def test_a_child_that_shows_no_token_yet_is_killed_with_its_parent(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """A supervisor's program in the middle of its exec shows no environment, so
    no token, for a while under load: the teardown found the supervisor, killed
    it, and the program ran on under init (a pids cgroup that never emptied).
    Here a child started without the token stands for it: killed all the same."""
    tracker = Tracker(tmp_path)
    code = (
        "import subprocess, sys; "
        f"child = subprocess.Popen([{SLEEP!r}, '1000'], env={{}}); "
        "print(child.pid, flush=True); child.wait()"
    )
    parent = tracker.popen(
        [sys.executable, "-c", code], env=tracker.env, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = processes.add(int(parent.stdout.readline()))  # killed by pid in the end, whatever
    assert pid_alive(child) and not tracker.has_token(child)
    tracker.kill_all()
    wait_gone(child, 10)
    assert not pid_alive(child), "the child was left running"


def test_a_process_left_in_a_pids_cgroup_is_named_and_killed(
    pids_cgroup: Path, processes: ProcessTracker
) -> None:
    """What a test leaves in its pids cgroup fails that test, by pid and command,
    and is killed: not a cgroup that never empties, nor a process running on."""
    sleeper = processes.popen([SLEEP, "1001"])
    cmdline_of(sleeper.pid)  # its exec done
    (pids_cgroup / "cgroup.procs").write_text(str(sleeper.pid))
    (line,) = empty_cgroup(pids_cgroup, timeout=0.2)
    assert line.startswith(f"pid {sleeper.pid} (") and line.endswith(f") {SLEEP} 1001"), line
    assert sleeper.wait(10) == -9
    assert not (pids_cgroup / "cgroup.procs").read_text().split()
