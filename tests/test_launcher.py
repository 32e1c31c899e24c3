"""``daemonctx start``'s launcher while it waits for the program: a start reported
failed leaves no process and no pidfile (the program's children that hold the
pidfile's lock included), SIGTERM and SIGHUP are Ctrl-C, the handoff works with fds
past 1024, and ``--notify`` believes READY=1 only from the program. A refused
pidfile and a relative path in a deleted directory are one line.

Processes carry the ``tracker`` token; the others a test starts are killed by the
``processes`` fixture. Waits are on a file, a pidfd or a pipe, each with a bound.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import (
    STARTED,
    Tracker,
    needs_root,
    python_program,
)

# -- a launcher with fds past 1024 -----------------------------------------------------


@needs_root
@pytest.mark.parametrize("options", [(), ("--notify",)], ids=["exec", "notify"])
def test_a_launcher_with_fds_past_1024_starts(tracker: Tracker, options: tuple[str, ...]) -> None:
    """The handoff pipe gets the lowest free fd: past 1024 here, which select() refuses."""
    argv = [*tracker.command(), "start", "--pidfile", tracker.pidfile, *options, "--"]
    argv += python_program() if options else ["sleep", "1000"]
    code = f"""
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
null = os.open("/dev/null", os.O_RDONLY)
os.set_inheritable(null, True)  # fds 3 to 1099 stay open across the exec: none is free
for fd in range(3, 1100):
    if fd != null:
        os.dup2(null, fd)
os.execv(sys.executable, {argv!r})
"""
    result = subprocess.run(
        [sys.executable, "-c", code], env=tracker.env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    match = STARTED.fullmatch(result.stdout)
    assert match, result.stdout
    assert tracker.processes() == [int(match.group(2))]
