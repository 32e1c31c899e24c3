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
import subprocess
from pathlib import Path

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


# -- an output file is never the pidfile ------------------------------------------


def _refusal(option: str, typed: str, pidfile: str, guard: bool = False) -> str:
    what = (
        f"the pidfile's hidden second name (the guard of --pidfile {pidfile})"
        if guard
        else f"the pidfile (--pidfile {pidfile})"
    )
    return f"daemonctx: error: {option} {typed}: that is {what}; give another file\n"


@pytest.mark.parametrize("command", ["start", "run"])
@pytest.mark.parametrize("option", ["--stdout", "--stderr"])
def test_an_output_file_that_is_the_pidfile_is_refused(
    tracker: Tracker, command: str, option: str
) -> None:
    """The program's output would overwrite the pidfile (and a --user program could
    rewrite it), or go to its guard, which release() unlinks: refused in the
    foreground, nothing started, no file made."""
    pidfile = tracker.pidfile
    guard = str(tracker.tmp_path / ".app.pid.lock")
    for typed, is_guard in ((pidfile, False), (guard, True)):
        result = tracker.daemonctx(
            command, "-p", pidfile, option, typed, "--", "sh", "-c", "seq 1 100; exec sleep 985"
        )
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == _refusal(option, typed, pidfile, is_guard)
        assert tracker.processes() == [] and os.listdir(tracker.tmp_path) == []


def test_the_pidfile_through_a_link_or_a_relative_path_is_refused(tracker: Tracker) -> None:
    """Resolved paths are compared (a symlinked directory, a relative path), and
    where both files exist, the file itself (a hard link to a stale pidfile)."""
    tmp = tracker.tmp_path
    (tmp / "link").symlink_to(tmp)
    pidfile = str(tmp / "app.pid")
    for typed in ("link/app.pid", "./app.pid", "link/.app.pid.lock"):
        result = tracker.daemonctx(
            "start", "-p", pidfile, "--stdout", typed, "--", "sleep", "985", cwd=tmp
        )
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        guard = typed.endswith(".lock")
        assert result.stderr == _refusal("--stdout", typed, pidfile, guard)
    (tmp / "app.pid").write_text("")  # stale: left empty by a crash
    os.link(tmp / "app.pid", tmp / "out.log")
    result = tracker.daemonctx(
        "start", "-p", pidfile, "--stderr", "out.log", "--", "sleep", "985", cwd=tmp
    )
    assert (result.returncode, result.stderr) == (1, _refusal("--stderr", "out.log", pidfile))
    assert tracker.processes() == [] and (tmp / "app.pid").read_text() == ""


def test_restart_with_the_pidfile_as_output_keeps_the_daemon(tracker: Tracker) -> None:
    pid = tracker.start("sleep", "985")
    for typed in (tracker.pidfile, str(tracker.tmp_path / ".app.pid.lock")):
        result = tracker.daemonctx(
            "restart", "-p", tracker.pidfile, "--stdout", typed, "--", "sh", "-c", "seq 1 100"
        )
        assert result.returncode == 1 and result.stdout == ""
        # the guard of a running daemon is the pidfile's very file
        assert result.stderr == _refusal("--stdout", typed, tracker.pidfile)
        assert tracker.processes() == [pid]
        assert Path(tracker.pidfile).read_text() == f"{pid}\n"


def test_another_output_file_beside_the_pidfile_is_fine(tracker: Tracker) -> None:
    out = tracker.tmp_path / "app.pid.log"
    pid = tracker.start("sh", "-c", "echo hi; exec sleep 985", options=("--stdout", str(out)))
    wait_for(lambda: out.read_text() == "hi\n", what="the program's output")
    assert Path(tracker.pidfile).read_text() == f"{pid}\n"


# -- a pidfile path that cannot be used --------------------------------------------

DELETED = "--pidfile x.pid: relative to a current directory that was deleted; give an absolute path"


@pytest.mark.parametrize(
    ("args", "code", "out", "err"),
    [
        (("start", "-p", "x.pid", "--", "sleep", "985"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("restart", "-p", "x.pid", "--", "sleep", "985"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("run", "-p", "x.pid", "--", "true"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("stop", "-p", "x.pid"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("signal", "-p", "x.pid", "HUP"), 1, "", f"daemonctx: error: {DELETED}\n"),
        (("status", "-p", "x.pid"), 4, f"x status is unknown: {DELETED}\n", ""),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else None,
)
def test_a_relative_pidfile_in_a_deleted_directory_is_named(
    tracker: Tracker, args: tuple[str, ...], code: int, out: str, err: str
) -> None:
    """Every command says what start says, not "No such file or directory"."""
    gone = tracker.tmp_path / "gone"
    gone.mkdir()
    line = " ".join(f"'{word}'" for word in [*tracker.command(), *args])
    result = subprocess.run(
        ["sh", "-c", f"cd '{gone}' && rmdir '{gone}' && exec {line}"],
        capture_output=True,
        text=True,
        env=tracker.env,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (code, out, err)
    assert tracker.processes() == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("start", "--", "sleep", "985"), 1),
        (("restart", "--", "sleep", "985"), 1),
        (("run", "--", "true"), 1),
        (("stop",), 1),
        (("signal", "HUP"), 1),
        (("status",), 4),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else None,
)
def test_a_pidfile_name_too_long_is_no_privilege_error(
    tracker: Tracker, args: tuple[str, ...], code: int
) -> None:
    """ENAMETOOLONG is a path that cannot be used, not one refused as untrusted: exit
    1 as cli.md says for each command (status: 4, "unknown"), no "refusing"."""
    pidfile = str(tracker.tmp_path / ("a" * 300 + ".pid"))
    command, *rest = args
    result = tracker.daemonctx(command, "-p", pidfile, *rest)
    why = f"cannot open pidfile {pidfile}: File name too long"
    if command == "status":
        assert (result.returncode, result.stderr) == (4, "")
        assert result.stdout == f"{'a' * 300} status is unknown: {why}\n"
    else:
        assert (result.returncode, result.stdout) == (code, "")
        assert result.stderr == f"daemonctx: error: {why}\n"
    assert tracker.processes() == []
