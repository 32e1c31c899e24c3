"""Finding the processes that hold a pidfile's lock where the usual look falls short.
As root, on real processes.

- A pidfile whose whole directory was removed is still found in /proc/<pid>/fd.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import Tracker

# -- the pidfile's directory removed ------------------------------------------------------


def test_a_daemon_whose_pidfile_directory_was_removed_is_running_and_stopped(
    tracker: Tracker,
) -> None:
    """A whole RuntimeDirectory= removed under a running daemon."""
    run = tracker.tmp_path / "run"
    run.mkdir()
    pidfile = str(run / "app.pid")
    pid = start_in(tracker, pidfile)
    shutil.rmtree(run)
    result = tracker.daemonctx("status", "--pidfile", pidfile)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"app is running (pid {pid}")
    assert result.stdout.endswith(f"; its pidfile {pidfile} was deleted or replaced\n")
    result = tracker.daemonctx("stop", "--pidfile", pidfile)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"stopped app (pid {pid}) in ")
    assert tracker.processes() == []
    assert tracker.daemonctx("status", "--pidfile", pidfile).returncode == 3


def start_in(tracker: Tracker, pidfile: str) -> int:
    result = tracker.daemonctx("start", "--pidfile", pidfile, "--", "sleep", "1000")
    assert result.returncode == 0, result.stderr
    return int(Path(pidfile).read_text())
