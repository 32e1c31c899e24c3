"""``daemonctx start``'s launcher while it waits for the program: a start reported
failed leaves no process and no pidfile (the program's children that hold the
pidfile's lock included), SIGTERM and SIGHUP are Ctrl-C, the handoff works with fds
past 1024, and ``--notify`` believes READY=1 only from the program. A refused
pidfile and a relative path in a deleted directory are one line.

Processes carry the ``tracker`` token; the others a test starts are killed by the
``processes`` fixture. Waits are on a file, a pidfd or a pipe, each with a bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    NOBODY,
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


# -- restart's refusal, a deleted current directory ------------------------------------


@needs_root
def test_restart_refuses_an_untrusted_pidfile_with_4(tracker: Tracker) -> None:
    pidfile = Path(tracker.pidfile)
    pidfile.write_text("1\n")
    os.chown(pidfile, NOBODY, NOBODY)
    for action in ("start", "restart"):
        result = tracker.daemonctx(action, "--pidfile", str(pidfile), "--", "sleep", "1000")
        assert result.returncode == 4, (action, result.stderr)
        assert result.stderr == (
            f"daemonctx: error: refusing pidfile {pidfile}: {pidfile} is owned by uid"
            f" {NOBODY}, not by root or uid 0\n"
        ), (action, result.stderr)
    assert tracker.processes() == []


@pytest.mark.parametrize(
    ("args", "typed"),
    [(("--pidfile", "rel.pid"), "--pidfile rel.pid"), (("--chdir", "rel"), "--chdir rel")],
    ids=["pidfile", "chdir"],
)
def test_a_relative_path_in_a_deleted_directory_is_one_line(
    tracker: Tracker, args: tuple[str, ...], typed: str
) -> None:
    gone = tracker.tmp_path / "gone"
    gone.mkdir()
    if "--pidfile" not in args:
        args = ("--pidfile", tracker.pidfile, *args)
    command = [*tracker.command(), "start", *args, "--", "sleep", "1000"]
    result = subprocess.run(
        ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', str(gone), *command],
        env=tracker.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"daemonctx: error: {typed}: relative to a current directory that was deleted;"
        " give an absolute path\n"
    )
    assert tracker.processes() == []
