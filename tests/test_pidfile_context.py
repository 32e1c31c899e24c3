"""Pidfiles used through a real DaemonContext: ours, and lockfile's own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    DAEMON,
    NOBODY,
    NOGROUP,
    Daemons,
    ProcessTracker,
    needs_root,
    proc_status,
    read_events,
    run_script,
    wait_for,
    wait_gone,
)

from daemonctx import status
from daemonctx.pidfile import PIDLockFile, guard_path, read_pidfile_status

OURS = {"pidfile_class": "daemonctx"}


def test_detached_daemon_holds_its_own_pid_in_the_pidfile(daemons: Daemons, tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    result, report = daemons.launch({"options": {"pidfile": str(pidfile)}, **OURS})
    assert result.returncode == 0, result.stderr
    state = read_pidfile_status(pidfile)  # at once: the launcher has exited
    assert state.running
    event = daemons.event(report, "open")
    assert state.pid == event["pid"] == int(pidfile.read_text())
    assert event["ppid"] != os.getpid()
    os.kill(event["pid"], signal.SIGTERM)
    wait_gone(event["pid"])
    assert not pidfile.exists(), "close() unlinked it"


def test_killed_daemon_never_blocks_the_next_start(daemons: Daemons, tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    config = {"options": {"pidfile": str(pidfile)}, **OURS}
    first, _ = daemons.start(config)
    os.kill(first["pid"], signal.SIGKILL)
    wait_gone(first["pid"])
    assert pidfile.exists(), "a SIGKILLed daemon leaves its file behind"
    assert not read_pidfile_status(pidfile).running
    second, _ = daemons.start(config)
    assert int(pidfile.read_text()) == second["pid"] != first["pid"]


@needs_root
def test_root_owned_directory_with_a_privilege_drop(daemons: Daemons, tmp_path: Path) -> None:
    """Written as root in a root-only directory (like /run), then the daemon runs as
    nobody: at stop it can neither unlink the file nor write it (its lock fd is
    read-only), so it lets go of the lock. The file is stale, still naming the pid
    that is gone, never trusted, and the next start takes it over."""
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    pidfile = run / "app.pid"
    config = {"options": {"pidfile": str(pidfile), "uid": NOBODY, "gid": NOBODY}, **OURS}
    first, _ = daemons.start(config)
    assert proc_status(first["pid"])["Uid"].split()[0] == str(NOBODY)
    assert pidfile.stat().st_uid == 0
    os.kill(first["pid"], signal.SIGTERM)
    wait_gone(first["pid"])
    assert pidfile.exists()
    assert pidfile.read_text() == f"{first['pid']}\n"
    assert not read_pidfile_status(pidfile).running
    assert PIDLockFile(str(pidfile)).read_pid() == first["pid"]  # gone: harmless to name
    second, _ = daemons.start(config)
    assert int(pidfile.read_text()) == second["pid"]


@needs_root
def test_a_directory_of_the_daemons_own_user_holds_its_pidfile(
    daemons: Daemons, open_dir: Path
) -> None:
    """systemd's RuntimeDirectory= with User=, python-daemon's usual setup: the
    pidfile's directory belongs to the user the daemon switches to. It is trusted
    for that daemon's pidfile, in the foreground check and where the daemon takes
    it; as that user, the daemon removes both of its names when it stops."""
    run = open_dir / "svc"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY, NOGROUP)
    pidfile = run / "app.pid"
    config = {"options": {"pidfile": str(pidfile), "uid": NOBODY, "gid": NOGROUP}, **OURS}
    first, _ = daemons.start(config)
    assert proc_status(first["pid"])["Uid"].split()[0] == str(NOBODY)
    assert read_pidfile_status(pidfile).pid == first["pid"] == int(pidfile.read_text())
    second, _ = daemons.launch(config)
    assert second.returncode == 1
    assert second.stderr.splitlines()[-1] == (
        f"lockfile.AlreadyLocked: {pidfile} is locked by running process {first['pid']}"
    )
    os.kill(first["pid"], signal.SIGTERM)
    wait_gone(first["pid"])
    assert not pidfile.exists() and not os.path.exists(guard_path(str(pidfile)))


@needs_root
@pytest.mark.parametrize(
    ("owner", "mode", "reason"),
    [
        (1, 0o755, "svc is owned by uid 1"),  # another user's (daemon, not the daemon's)
        (NOBODY, 0o777, "svc is writable by others (mode 0777) and not sticky"),
        (NOBODY, 0o775, f"svc is writable by group {NOGROUP} (mode 0775) and not sticky"),
    ],
    ids=["another user's", "writable by others", "writable by a group"],
)
def test_only_the_daemons_own_directory_is_trusted_for_its_pidfile(
    daemons: Daemons, open_dir: Path, owner: int, mode: int, reason: str
) -> None:
    run = open_dir / "svc"
    run.mkdir()
    run.chmod(mode)
    os.chown(run, owner, NOGROUP)
    pidfile = run / "app.pid"
    config = {"options": {"pidfile": str(pidfile), "uid": NOBODY, "gid": NOGROUP}, **OURS}
    result, _ = daemons.launch(config)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"daemonctx.paths.UnsafePathError: refusing pidfile {pidfile}: {run.parent}/{reason}"
    )
    assert list(run.iterdir()) == [], "nothing was created there"


@needs_root
@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_the_daemons_own_user_still_cannot_choose_where_root_writes(
    daemons: Daemons, open_dir: Path, planted: str
) -> None:
    """Its directories are trusted, not its symlinks (which could send root's
    write into any directory) nor a pidfile it made (which it could rewrite)."""
    run = open_dir / "svc"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY, NOGROUP)
    if planted == "symlink":
        link = open_dir / "link"
        link.symlink_to(run)
        os.lchown(link, NOBODY, NOGROUP)
        pidfile = link / "app.pid"
        reason = f"{link} is a symbolic link owned by uid {NOBODY}"
    else:
        pidfile = run / "app.pid"
        pidfile.write_text("")
        os.chown(pidfile, NOBODY, NOGROUP)
        reason = f"{pidfile} is owned by uid {NOBODY}, not by root or uid 0"
    config = {"options": {"pidfile": str(pidfile), "uid": NOBODY, "gid": NOGROUP}, **OURS}
    result, _ = daemons.launch(config)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"daemonctx.paths.UnsafePathError: refusing pidfile {pidfile}: {reason}"
    )


def test_with_both_names_of_its_pidfile_deleted_a_daemon_is_found_by_status(
    daemons: Daemons, tmp_path: Path
) -> None:
    """docs/pidfiles.md: open() follows the pidfile's hidden second name, not a
    search of /proc (a read of /proc/locks can cost a start 15 ms); once both
    names are deleted, ``daemonctx.status()`` before open() finds the daemon."""
    pidfile = tmp_path / "gd.pid"
    first, _ = daemons.start({"options": {"pidfile": str(pidfile)}, **OURS})
    pidfile.unlink()
    Path(guard_path(str(pidfile))).unlink()
    found = status(pidfile)
    assert (found.running, found.pid, found.deleted) == (True, first["pid"], True)


def test_relative_pidfile_path_is_inside_the_working_directory(
    daemons: Daemons, tmp_path: Path
) -> None:
    event, _ = daemons.start(
        {"options": {"pidfile": "app.pid", "working_directory": str(tmp_path)}, **OURS}
    )
    assert int((tmp_path / "app.pid").read_text()) == event["pid"]


@needs_root
def test_relative_working_directory_and_pidfile_are_inside_the_jail(
    daemons: Daemons, tmp_path: Path
) -> None:
    """chroot_directory=J, working_directory="sub": the daemon works in J/sub and
    holds J/sub/app.pid, though the launcher's directory has no sub."""
    jail = tmp_path / "jail"
    (jail / "sub").mkdir(parents=True)
    options = {"chroot_directory": str(jail), "working_directory": "sub", "pidfile": "app.pid"}
    result, report = daemons.launch({"options": options, **OURS}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    event = daemons.event(report, "open")
    assert os.readlink(f"/proc/{event['pid']}/cwd") == str(jail / "sub")
    assert int((jail / "sub" / "app.pid").read_text()) == event["pid"]
    assert read_pidfile_status(jail / "sub" / "app.pid").running


def test_a_timeout_lets_a_restart_wait_for_the_old_daemon(tmp_path: Path) -> None:
    """With acquire_timeout the foreground check lets the start through; acquire()
    in the daemon then waits for the holder to go."""
    holder = PIDLockFile(tmp_path / "app.pid")
    holder.acquire()
    try:
        result = run_script(
            f"""
import os, time
from daemonctx import DaemonContext, DaemonStartupError
from daemonctx.pidfile import TimeoutPIDLockFile
try:
    DaemonContext(pidfile=TimeoutPIDLockFile({str(tmp_path / "app.pid")!r}, 0.3)).open()
except DaemonStartupError as exc:
    print(exc.remote_type)
"""
        )
        assert result.stdout.strip() == "lockfile.LockTimeout"
    finally:
        holder.release()


def test_lockfiles_own_pidlockfile_works_as_the_pep_says(daemons: Daemons, tmp_path: Path) -> None:
    result = run_script(
        f"""
import os, signal
import lockfile.pidlockfile
from daemonctx import DaemonContext
path = {str(tmp_path / "lf.pid")!r}
with DaemonContext(pidfile=lockfile.pidlockfile.PIDLockFile(path)):
    signal.pause()
"""
    )
    assert result.returncode == 0
    pid = int((tmp_path / "lf.pid").read_text())
    daemons.pids.add(pid)
    assert Path(f"/proc/{pid}").exists()
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    assert not (tmp_path / "lf.pid").exists(), "lockfile's release removed it"


def test_twenty_simultaneous_starts_leave_exactly_one_daemon(
    daemons: Daemons, tmp_path: Path
) -> None:
    pidfile = tmp_path / "race.pid"
    report = tmp_path / "race.jsonl"
    gate_read, gate_write = os.pipe()
    launchers = []
    try:
        for _ in range(20):
            config = {
                "report": str(report),
                "barrier_fd": gate_read,
                "options": {"pidfile": str(pidfile)},
                **OURS,
            }
            launchers.append(
                daemons.popen(
                    [sys.executable, str(DAEMON), json.dumps(config)],
                    pass_fds=(gate_read,),
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    finally:
        os.close(gate_read)
        os.close(gate_write)  # all twenty read EOF and start together
    results = [(proc.wait(30), proc.stderr.read()) for proc in launchers]  # type: ignore[union-attr]
    daemons.track(report)
    winners = [err for code, err in results if code == 0]
    losers = [err for code, err in results if code != 0]
    assert len(winners) == 1, results
    state = read_pidfile_status(pidfile)
    assert state.running
    assert state.pid is not None
    daemons.pids.add(state.pid)
    assert len(losers) == 19
    wrong = [err for err in losers if f"locked by running process {state.pid}" not in err]
    assert not wrong, (state.pid, wrong)
    opened = {e["pid"] for e in read_events(report) if e["event"] == "open"}
    assert opened == {state.pid}, "only the winner got past open()"


def test_a_context_opened_inside_another_keeps_the_outer_pidfile_locked(
    tmp_path: Path, processes: ProcessTracker
) -> None:
    """A library that daemonizes again inside a daemon: the inner context closes
    every fd it was not asked to keep, but not the lock of the outer one's pidfile,
    so the daemon still shows running, a second instance is refused, and the outer
    close() removes the pidfile."""
    pidfile = tmp_path / "app.pid"
    out = tmp_path / "out"
    code = f"""
import os, signal
from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile
out = open({str(out)!r}, "a", buffering=1)
outer = DaemonContext(pidfile=TimeoutPIDLockFile({str(pidfile)!r}), files_preserve=[out])
try:
    with outer:
        with DaemonContext(detach_process=False, files_preserve=[out]):
            out.write(f"inner open {{os.getpid()}}\\n")
            signal.pause()
except BaseException as exc:
    out.write(f"{{type(exc).__name__}}: {{exc}}\\n")
"""
    run_script(code)
    line = wait_for(lambda: out.read_text(), 10, "the inner context open")
    assert line.startswith("inner open "), line
    daemon = processes.add(int(line.split()[-1]))
    status = read_pidfile_status(pidfile)
    assert (status.running, status.pid) == (True, daemon)
    second = run_script(
        "from daemonctx import DaemonContext\n"
        "from daemonctx.pidfile import TimeoutPIDLockFile\n"
        f"DaemonContext(pidfile=TimeoutPIDLockFile({str(pidfile)!r})).open()\n",
        check=False,
    )
    assert second.stderr.strip().splitlines()[-1] == (
        f"lockfile.AlreadyLocked: {pidfile} is locked by running process {daemon}"
    )
    os.kill(daemon, signal.SIGTERM)
    wait_gone(daemon)
    assert out.read_text() == f"{line}Terminated: Terminating on signal SIGTERM\n"
    assert sorted(os.listdir(tmp_path)) == ["out"], "no pidfile, no .app.pid.lock guard"
