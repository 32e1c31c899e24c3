"""What the single-daemon commands refuse in the foreground, before anything
starts or a running daemon is stopped: numbers in other scripts' digits, an
output file that is the pidfile, a program exec cannot run (as the user it
will run as), a pidfile path that cannot be used; and what a pidfile and the
start-up pipe do with no file descriptor to spare.

Real processes, real files: ``daemonctx`` runs as a subprocess, every process
it starts is killed by the ``tracker`` fixture.
"""

from __future__ import annotations

import os
import pwd
import stat

import pytest
from conftest import Tracker, pid_alive, wait_for

# -- numbers are ASCII digits -----------------------------------------------------


def _in_script(number: int, zero: str) -> str:
    """``number`` written in another script's digits ("٦٥٥٣٤" for 65534)."""
    return "".join(chr(ord(zero) + int(digit)) for digit in str(number))


@pytest.mark.parametrize("zero", ["\u0660", "\uff10"], ids=["arabic-indic", "fullwidth"])
def test_user_and_group_ids_are_ascii_digits(tracker: Tracker, zero: str) -> None:
    """``--user ٦٥٥٣٤`` is no uid (str.isdigit and int() would take it for 65534):
    a name, and no user has it."""
    nobody = pwd.getpwnam("nobody")
    for flag, number, what in (
        ("--user", nobody.pw_uid, "user"),
        ("--group", nobody.pw_gid, "group"),
    ):
        typed = _in_script(number, zero)
        result = tracker.daemonctx(
            "start", "-p", tracker.pidfile, flag, typed, "--", "sleep", "1000"
        )
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"daemonctx: error: {flag} {typed}: no such {what}\n"
        assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


@pytest.mark.parametrize(
    ("flag", "typed"),
    [
        ("--umask", "\u0660\u0667\u0667"),
        ("--umask", "0o77"),
        ("--umask", "+77"),
        ("--umask", "0_77"),
        ("--timeout", "\u0661\u0660"),
        ("--ready-after", "\u0661"),
    ],
)
def test_masks_and_seconds_are_ascii(tracker: Tracker, flag: str, typed: str) -> None:
    result = tracker.daemonctx("start", "-p", tracker.pidfile, flag, typed, "--", "sleep", "1000")
    assert result.returncode == 2, result.stderr
    assert f"argument {flag}" in result.stderr and repr(typed) in result.stderr
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_an_ascii_umask_still_works(tracker: Tracker) -> None:
    out = tracker.tmp_path / "out.log"
    pid = tracker.start(
        "sh", "-c", "umask; exec sleep 1000", options=("--umask", "077", "--stdout", str(out))
    )
    assert pid_alive(pid)
    wait_for(lambda: out.read_text() == "0077\n", what="the program's umask in its output")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
