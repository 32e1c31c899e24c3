"""The daemon's own user cannot steer root's pidfile to another directory, nor to
another file: between the foreground check and the daemon's acquire() (which runs as
root, before the privilege drop) it may change whatever it can write.

Real processes: a launcher as root, and that user's moves made as nobody (setpriv) at
the last moment before acquire(), by a test program that wraps it (what the user can do
in the real window: the fork and setsid between the check and the acquire)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENV, NOBODY, NOGROUP, Daemons, needs_root, needs_tools, wait_gone

from daemonctx.pidfile import guard_path

# Run as root; argv: pidfile, report, the shell command nobody runs before acquire().
PROGRAM = f"""
import os, subprocess, sys
from daemonctx import DaemonContext
from daemonctx.pidfile import PIDLockFile

pidfile, report, moves = sys.argv[1:4]
original = PIDLockFile.acquire

def acquire(self, timeout=None):
    as_nobody = ["setpriv", "--reuid={NOBODY}", "--regid={NOGROUP}", "--clear-groups"]
    subprocess.run([*as_nobody, "sh", "-c", moves], check=True)
    original(self, timeout)

PIDLockFile.acquire = acquire
out = open(report, "w", buffering=1)
context = DaemonContext(
    uid={NOBODY}, gid={NOGROUP}, pidfile=PIDLockFile(pidfile),
    working_directory="/", files_preserve=[out],
)
with context:
    out.write(f"{{os.getpid()}}\\n")
"""

needs_setpriv = needs_tools("setpriv")


def as_nobody(*command: str) -> None:
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups"]
    subprocess.run([*prefix, *command], check=True)


def start(daemons: Daemons, pidfile: Path, moves: str) -> subprocess.CompletedProcess[str]:
    """Run PROGRAM to completion; wait until the daemon it started, if any, is gone."""
    program = daemons.tmp_path / "race.py"
    program.write_text(PROGRAM)
    report = daemons.tmp_path / "race-report"
    result = subprocess.run(
        [sys.executable, str(program), str(pidfile), str(report), moves],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
    )
    if report.exists() and report.read_text():
        wait_gone(daemons.add(int(report.read_text())))
    return result


@needs_root
@needs_setpriv
@pytest.mark.parametrize(
    "where", ["in a directory of its own", "in a sticky directory"], ids=["nested", "sticky"]
)
def test_the_daemons_user_cannot_swap_the_pidfiles_directory_before_acquire(
    daemons: Daemons, open_dir: Path, shared_dir: Path, where: str
) -> None:
    """The tester's reproduction: the pidfile's directory, nobody's, is renamed and a
    symlink to a directory of root's put in its place. It was followed by root's
    acquire(), which created (or would have taken over and rewritten) a pidfile in a
    directory nobody chose. Now the daemon's user is trusted as the owner of the
    pidfile's own directory only, where it cannot rename it: such a place is refused in
    the foreground, and nothing is written anywhere."""
    rootdir = open_dir / "rootdir"
    rootdir.mkdir(mode=0o755)
    if where == "in a directory of its own":
        above = open_dir / "nob"
        above.mkdir(mode=0o755)
        os.chown(above, NOBODY, NOGROUP)
        reason = (
            f"{above} is owned by uid {NOBODY}, the daemon's user, trusted as the owner"
            " of the pidfile's own directory only"
        )
    else:
        above = shared_dir
    sub = above / "sub"
    as_nobody("mkdir", "-m", "0755", str(sub))
    if where == "in a sticky directory":
        reason = (
            f"{sub} is owned by uid {NOBODY}, the daemon's user, in {shared_dir} writable by others"
        )
    pidfile = sub / "app.pid"
    result = start(daemons, pidfile, f"mv {sub} {sub}.old && ln -s {rootdir} {sub}")
    assert sorted(os.listdir(rootdir)) == [], "root wrote where nobody sent it"
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"daemonctx.paths.UnsafePathError: refusing pidfile {pidfile}: {reason}"
    )


@needs_root
@needs_setpriv
def test_in_its_own_directory_the_daemons_user_cannot_send_roots_write_elsewhere(
    daemons: Daemons, open_dir: Path
) -> None:
    """RuntimeDirectory= with User=: the directory is trusted, and stays the one root
    writes in (its parent is root's). The user may put symlinks at both of the pidfile's
    names before acquire(): they are refused, not followed."""
    rootdir = open_dir / "rootdir"
    rootdir.mkdir(mode=0o755)
    (rootdir / "app.pid").write_text("4242\n")  # a stale pidfile of root's there
    run = open_dir / "svc"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY, NOGROUP)
    pidfile = run / "app.pid"
    guard = guard_path(str(pidfile))
    moves = (
        f"mv {run} {run}.old 2>/dev/null; ln -s {rootdir}/app.pid {pidfile};"
        f" ln -s {rootdir}/.app.pid.lock {guard}"
    )
    result = start(daemons, pidfile, moves)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f" failed to start: lockfile.LockFailed: {pidfile} is a symbolic link, not a regular file;"
        " refusing to use it as a pidfile"
    )
    assert run.is_dir() and not run.is_symlink(), "nobody could not rename it"
    assert sorted(os.listdir(rootdir)) == ["app.pid"]
    assert (rootdir / "app.pid").read_text() == "4242\n"


@needs_root
@pytest.mark.parametrize("uid", [NOBODY, None], ids=["daemon's directory", "sticky directory"])
def test_a_pidfile_hard_linked_to_another_file_of_roots_is_refused(
    daemons: Daemons, open_dir: Path, shared_dir: Path, uid: int | None
) -> None:
    """With fs.protected_hardlinks=0, a user who may write the pidfile's directory
    (the daemon's own, or a sticky one) can link a file of root's there, say another
    daemon's stale pidfile: root would lock it, rewrite it with its pid, and link it at
    the hidden second name. The test links it as root, which the setting lets that
    user do; the pidfile is refused and the other file left as it was."""
    other = open_dir / "other.pid"
    other.write_text("4242\n")
    if uid is None:
        run = shared_dir
    else:
        run = open_dir / "svc"
        run.mkdir(mode=0o755)
        os.chown(run, NOBODY, NOGROUP)
    pidfile = run / "app.pid"
    os.link(other, pidfile)
    options: dict[str, object] = {"pidfile": str(pidfile)}
    if uid is not None:
        options.update(uid=uid, gid=NOGROUP)
    result, _ = daemons.launch({"options": options, "pidfile_class": "daemonctx"})
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f" failed to start: lockfile.LockFailed: refusing pidfile {pidfile}:"
        f" {pidfile} has 2 hard links (it may be another file's name)"
    )
    assert other.read_text() == "4242\n"
    assert os.stat(other).st_nlink == 2, "no second name added"
    assert not os.path.lexists(guard_path(str(pidfile)))
