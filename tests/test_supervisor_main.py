"""The supervisor's main process when it is not the leader (``MAINPID=``, a forking
program's ``pidfile``), its own sd_notify messages under systemd, the Python API's
``serve(daemon=...)``, and a restarted supervisor killing what its predecessor left."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    Supervisors,
    cmdline_of,
    guard_of,
    needs_pid_namespace,
    needs_root,
    needs_tools,
    pid_alive,
    proc_environ,
    proc_fds,
    proc_stat,
    proc_status,
    spawn_as_pid,
    toml_value,
    wait_for,
    wait_gone,
)

from daemonctx.pidfd import exited

SLEEP = shutil.which("sleep") or "/bin/sleep"

FORKER = textwrap.dedent(
    """
    import os, sys, time
    if os.fork():
        sys.exit(0)              # the leader exits 0 at once, as a forking daemon's parent does
    os.setsid()
    if os.fork():
        os._exit(0)
    time.sleep(0.2)              # the pidfile comes a little after the parent's exit
    path = sys.argv[1]
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(1000)
    """
)


def test_a_forking_program_is_supervised_through_its_pidfile(supervisors: Supervisors) -> None:
    pidfile = supervisors.tmp_path / "forker.pid"
    supervisors.config(
        {
            "forker": {
                "command": [sys.executable, "-c", FORKER, str(pidfile)],
                "pidfile": str(pidfile),
                "restart": "always",
            }
        }
    )
    supervisors.foreground()
    daemon = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    info = wait_for(lambda: (i := supervisors.status("forker")).pid == daemon and i)
    assert info.state == "running"
    assert int(proc_stat(daemon)[1]) == supervisors.foreground_pid  # adopted: we are a subreaper
    # its exit is the program's exit: it is restarted, and the new daemon is tracked
    os.kill(daemon, signal.SIGKILL)
    wait_gone(daemon)
    pidfile_changed = wait_for(
        lambda: pidfile.exists() and int(pidfile.read_text()) != daemon and int(pidfile.read_text())
    )
    info = wait_for(lambda: (i := supervisors.status("forker")).pid == pidfile_changed and i)
    assert info.restarts == 1 and info.last_exit is not None and info.last_exit.signal == 9
    # and a stop stops it
    result = supervisors.ctl("stop", "forker")
    assert result.returncode == 0, result.stderr
    wait_gone(pidfile_changed)
    assert supervisors.status("forker").state == "stopped"


# A forking program whose launcher's child (the intermediate process of a double
# fork) takes a while to start the daemon. With the flag file there, that child
# gets the pid the pidfile names (the last run's daemon): root chooses it through
# ns_last_pid, as a busy machine's pids do by themselves after a wrap.
REUSING_FORKER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    pidfile, flag = sys.argv[1:3]
    def fork_as(pid):
        # the old daemon keeps its pid until it is reaped (by the supervisor,
        # slower on a loaded machine): every try before that misses
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.001)
        with open("/proc/sys/kernel/ns_last_pid", "w") as chooser:
            fcntl.flock(chooser, fcntl.LOCK_EX)  # as conftest.spawn_as_pid
            for _ in range(2000):
                chooser.seek(0)
                chooser.write(str(pid - 1))
                chooser.flush()
                child = os.fork()
                if child == 0:
                    if os.getpid() == pid:
                        return 0
                    os._exit(0)
                if child == pid:
                    return child
                os.waitpid(child, 0)
        os._exit(3)
    stale = None
    if os.path.exists(flag):
        os.unlink(flag)
        with open(pidfile) as f:
            stale = int(f.read())
    if (fork_as(stale) if stale else os.fork()):
        os._exit(0)                  # the leader exits 0
    time.sleep(0.5)                  # the intermediate process prepares things
    if os.fork() == 0:
        os.setsid()
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(1000)
    time.sleep(0.5)
    """
)


def test_the_last_runs_pidfile_never_names_the_next_runs_main_process(
    supervisors: Supervisors,
) -> None:
    """The daemon crashed; the next run's wait read the pidfile it had left before
    the new daemon wrote its own, and took the process of the new run that reused
    that pid (its intermediate process) for the daemon: that one's exit "ended"
    the run, and the real daemon was killed as left running. The file as it was
    before the spawn is not the new run's."""
    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("/proc/sys/kernel/ns_last_pid is not ours to write (needs root)")
    pidfile, flag = supervisors.tmp_path / "fk.pid", supervisors.tmp_path / "reuse"
    supervisors.config(
        {
            "fk": {
                "command": [sys.executable, "-c", REUSING_FORKER, str(pidfile), str(flag)],
                "pidfile": str(pidfile),
                "restart": "always",
            }
        }
    )
    supervisors.foreground()
    first = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    wait_for(lambda: supervisors.status("fk").pid == first, what="the first daemon in charge")
    flag.touch()
    os.kill(first, signal.SIGKILL)  # it crashes; the next run's intermediate gets its pid
    daemon = wait_for(
        lambda: pidfile.exists() and int(pidfile.read_text()) != first and int(pidfile.read_text()),
        what="the new daemon's pidfile",
    )
    assert not flag.exists(), "the new run did not aim at the old pid"
    wait_for(lambda: supervisors.status("fk").pid == daemon, what="the new daemon in charge")
    wait_gone(first)  # the intermediate process, which had the old pid, has exited
    info = wait_for(lambda: (i := supervisors.status("fk")).pid == daemon and i)
    assert info.state == "running" and info.restarts == 1, info
    assert pid_alive(daemon)
    assert "left running" not in supervisors.log.read_text()


# A forking daemon that does not start a session: it stays in its launcher's
# process group (the launcher exits), and so does its worker, which takes 0.3 s
# to finish on SIGTERM.
GROUPLESS_FORKER = textwrap.dedent(
    """
    import os, signal, sys, time
    pidfile, events = sys.argv[1], sys.argv[2]
    def note(line):
        with open(events, "a") as f:
            f.write(line + "\\n")
    if os.fork():
        time.sleep(0.1)
        sys.exit(0)
    if os.fork() == 0:  # the worker
        def finish(signum, frame):
            note(f"worker-term {os.getpid()}")
            time.sleep(0.3)
            note("worker-done")
            os._exit(0)
        signal.signal(signal.SIGTERM, finish)
        note(f"worker {os.getpid()}")
        while True:
            time.sleep(1000)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(1000)  # SIGTERM ends it at once
    """
)


def test_a_daemon_outside_its_own_group_stops_with_its_workers_gracefully(
    supervisors: Supervisors,
) -> None:
    """A forking program's daemon that leads no group (its launcher's group, the
    launcher gone): a stop gives the rest of that group under it the stop signal
    too, and after the daemon's exit the time left to finish, as a leader's group
    gets; not SIGKILL at once, nor nothing."""
    pidfile = supervisors.tmp_path / "daemon.pid"
    events = supervisors.tmp_path / "events"
    supervisors.config(
        {
            "web": {
                "command": [sys.executable, "-c", GROUPLESS_FORKER, str(pidfile), str(events)],
                "pidfile": str(pidfile),
                "stop_timeout": 10,
            }
        }
    )
    supervisors.foreground()
    daemon = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    wait_for(lambda: supervisors.status("web").pid == daemon, what="the daemon in charge")
    assert int(proc_stat(daemon)[2]) != daemon, "the daemon must not lead its group"
    lines = wait_for(lambda: events.exists() and events.read_text().split(), what="the worker")
    worker = int(lines[1])
    began = time.monotonic()
    stopped = supervisors.ctl("stop", "web")
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped
    wait_gone(worker, 5)
    assert events.read_text().splitlines()[1:] == [f"worker-term {worker}", "worker-done"]
    assert took >= 0.3, f"the stop did not wait for the worker: {took:.2f} s"
    assert "left running" not in supervisors.log.read_text()


def test_a_forking_programs_daemon_that_never_writes_the_pidfile_is_killed_when_the_wait_ends(
    supervisors: Supervisors,
) -> None:
    """Without a live process of its own in the pidfile by ``start_timeout``, the run
    has ended: what it left is killed (as systemd kills a forking service's cgroup),
    or each restart would leave one more daemon behind."""
    announced = supervisors.tmp_path / "daemon.pid"  # where it says its pid: not the pidfile
    supervisors.config(
        {
            "forker": {
                "command": [sys.executable, "-c", FORKER, str(announced)],
                "pidfile": str(supervisors.tmp_path / "never-written.pid"),
                "start_timeout": 1,
                "restart": "never",
            }
        }
    )
    supervisors.foreground(booted=False)
    daemon = wait_for(lambda: announced.exists() and int(announced.read_text()), what="the daemon")
    assert int(proc_stat(daemon)[1]) == supervisors.foreground_pid, "an orphan of ours"
    wait_gone(daemon, 5)
    info = supervisors.status("forker")
    assert info.state == "exited" and info.pid is None, info


# A forking program whose daemon never writes its pidfile: it notes the signals
# it gets (and ends on SIGTERM); with "bare", it runs without the program's mark.
AWAITED_FORKER = textwrap.dedent(
    """
    import os, signal, sys, time
    record, how, sleep = sys.argv[1:4]
    if os.fork():
        os._exit(0)              # the leader exits 0 at once: its pid is free now
    os.setsid()
    if how == "bare":            # its environment emptied (env -i, sudo)
        os.execve(sleep, [sleep, "1000"], {})
    def note(signum, frame):
        with open(record, "a") as f:
            f.write(signal.Signals(signum).name + "\\n")
        if signum == signal.SIGTERM:
            if how == "lingering":  # it takes its time to finish
                time.sleep(0.5)
                with open(record, "a") as f:
                    f.write("finished\\n")
            os._exit(0)
    signal.signal(signal.SIGHUP, note)
    signal.signal(signal.SIGTERM, note)
    with open(record, "a") as f:
        f.write("ready\\n")
    while True:
        signal.pause()
    """
)


def test_a_stop_while_the_pidfile_is_awaited_gives_the_daemon_its_stop_timeout(
    supervisors: Supervisors,
) -> None:
    """A stop of a forking program whose pidfile is still awaited: its daemon got
    the SIGTERM, and then at once the SIGKILL of "what its run left" (the wait's
    next look ended the run), before its handler had run. It now has the stop's
    ladder: its SIGTERM handler finishes, and the stop answers once it is gone."""
    record = supervisors.tmp_path / "signals"
    supervisors.config(
        {
            "slow": {
                "command": [sys.executable, "-c", AWAITED_FORKER, str(record), "lingering", SLEEP],
                "pidfile": str(supervisors.tmp_path / "slow.pid"),  # never written
                "start_timeout": 60,
                "stop_timeout": 30,
            }
        }
    )
    supervisors.foreground(booted=False)
    wait_for(lambda: record.exists() and "ready" in record.read_text(), what="the daemon")
    wait_for(lambda: supervisors.status("slow").pid is None, what="its leader to exit")
    started = time.monotonic()
    assert supervisors.ctl("stop", "slow").returncode == 0
    assert time.monotonic() - started >= 0.5  # answered once the daemon was gone
    assert record.read_text().split() == ["ready", "SIGTERM", "finished"]
    assert "killed 1 process its run left running" not in supervisors.log.read_text()


def test_while_the_pidfile_is_awaited_status_names_no_pid_and_signals_reach_the_daemon(
    supervisors: Supervisors,
) -> None:
    """Between the leader's exit and the pidfile, status showed the leader's pid
    (reaped: by then anyone's), `ctl signal` said success and signalled nobody,
    and a stop reached the daemon only by the SIGKILL of what its run left. Now
    no pid is shown, the daemon (come back to the supervisor) gets the signals,
    and a program with no such process is refused in one line."""
    record = supervisors.tmp_path / "signals"
    programs = {
        name: {
            "command": [sys.executable, "-c", AWAITED_FORKER, str(record), name, SLEEP],
            "pidfile": str(supervisors.tmp_path / f"{name}.pid"),  # never written
            "start_timeout": 60,
        }
        for name in ("slow", "bare")
    }
    supervisors.config(programs)
    supervisors.foreground(booted=False)
    wait_for(lambda: record.exists() and "ready" in record.read_text(), what="the daemon")
    me = supervisors.foreground_pid
    children = Path(f"/proc/{me}/task/{me}/children")
    (bare,) = wait_for(  # bare's daemon marked no more (before its exec it was)
        lambda: [
            int(pid)
            for pid in children.read_text().split()
            if _command_line(int(pid)) == b"\0".join([SLEEP.encode(), b"1000", b""])
        ],
        what="bare's daemon",
    )
    pidfd = os.pidfd_open(bare)  # its pid may be anyone's once the supervisor reaps it
    try:
        for name in ("slow", "bare"):
            info = wait_for(
                lambda n=name: (i := supervisors.status(n)).pid is None and i,  # type: ignore[misc]
                what=f"{name}'s leader to exit",
            )
            assert info.state == "starting" or info.state == "running", info
            assert "waiting for its pidfile" in info.text and "pid " not in info.text, info
        assert supervisors.ctl("signal", "HUP", "slow").returncode == 0
        wait_for(lambda: "SIGHUP" in record.read_text(), what="the daemon to get SIGHUP")
        refused = supervisors.ctl("signal", "HUP", "bare")
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused
        assert "bare: no process to signal yet, waiting for its pidfile" in refused.stderr, refused
        assert supervisors.ctl("stop", "slow").returncode == 0
        assert record.read_text().split() == ["ready", "SIGHUP", "SIGTERM"]
        log = supervisors.log.read_text()
        assert "slow: stopping (waiting for its pidfile, SIGTERM sent just now)" in log, log
    finally:  # unmarked: the supervisor never kills it (docs: "Stopping, and what survives")
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.close(pidfd)


def _command_line(pid: int) -> bytes:
    """``/proc/<pid>/cmdline`` now: empty for a zombie, or one gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def up(supervisors: Supervisors, name: str) -> float:
    """How long ``name`` has been up by its status ("running (pid N, up 1.6 s)")."""
    text = supervisors.status(name).text
    assert " up " in text, text
    number, unit = text.split(" up ")[1].split()[:2]
    return float(number) / (1000 if unit.startswith("ms") else 1)


# A forking program whose daemon writes its pidfile only once the gate exists.
GATED_FORKER = textwrap.dedent(
    """
    import os, sys, time
    pidfile, gate = sys.argv[1:3]
    if os.fork():
        sys.exit(0)
    os.setsid()
    while not os.path.exists(gate):
        time.sleep(0.02)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(1000)
    """
)


def test_a_reload_of_start_timeout_leaves_the_pidfile_wait_under_way_its_own(
    supervisors: Supervisors,
) -> None:
    """The leader has exited and the supervisor waits for the pidfile, for the run's
    ``start_timeout`` of 30 s; a reload sets 0.5 s: the wait under way keeps its 30 s
    (it used to end at the next look, killing the daemon: "no live process of its
    own")."""
    pidfile, gate = supervisors.tmp_path / "forker.pid", supervisors.tmp_path / "gate"
    forker = {
        "command": [sys.executable, "-c", GATED_FORKER, str(pidfile), str(gate)],
        "pidfile": str(pidfile),
        "restart": "never",
    }
    supervisors.config({"forker": {**forker, "start_timeout": 30}})
    supervisors.foreground(booted=False)
    wait_for(
        lambda: "waiting for its pidfile" in supervisors.status("forker").text,
        what="the leader's exit",
    )
    supervisors.config({"forker": {**forker, "start_timeout": 0.5}})
    result = supervisors.ctl("reload")
    assert result.stdout.splitlines() == ["change forker: start_timeout (live, no restart)"], result
    # past the new limit by the supervisor's own clock: not ended by the reload's 0.5 s
    wait_for(
        lambda: up(supervisors, "forker") >= 1.5,
        10,
        what="1.5 s of the run, the pidfile not yet written",
    )
    gate.touch()
    daemon = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    info = wait_for(lambda: (i := supervisors.status("forker")).pid == daemon and i, 10)
    assert info.state == "running", info


# GATED_FORKER's daemon, which writes what signal it got and exits on it.
GATED_RECORDING_FORKER = GATED_FORKER.replace(
    "os.setsid()\n",
    "os.setsid()\n"
    "import signal\n"
    "def record(signum, frame):\n"
    "    with open(gate + '.got', 'a') as f:\n"
    "        f.write(signal.Signals(signum).name + '\\n')\n"
    "    os._exit(0)\n"
    "for signum in (signal.SIGINT, signal.SIGTERM):\n"
    "    signal.signal(signum, record)\n",
)


def test_a_daemon_found_in_the_pidfile_during_a_stop_gets_the_stops_own_signal(
    supervisors: Supervisors,
) -> None:
    """``stop = ["SIGINT", 10, "SIGKILL"]``: ``ctl stop`` comes while the supervisor
    waits for the pidfile, and the daemon writes it then. The daemon found at the
    next look gets the stop's step, SIGINT; it got ``stop_signal``, SIGTERM. The look
    may come before the file (the wait then ends: nothing to stop): tried again."""
    pidfile, gate = supervisors.tmp_path / "forker.pid", supervisors.tmp_path / "gate"
    got = supervisors.tmp_path / "gate.got"
    command = [sys.executable, "-c", GATED_RECORDING_FORKER, str(pidfile), str(gate)]
    supervisors.config(
        {
            "forker": {
                "command": command,
                "pidfile": str(pidfile),
                "restart": "never",
                "autostart": False,
                "stop": ["SIGINT", 10, "SIGKILL"],
            }
        }
    )
    supervisors.foreground()
    for _attempt in range(8):
        for path in (pidfile, gate, got):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        assert supervisors.ctl("start", "forker").returncode == 0
        wait_for(
            lambda: "waiting for its pidfile" in supervisors.status("forker").text,
            what="the leader's exit",
        )
        # the looks at the pidfile, more and more rarely, are 0.5 s apart after 1 s
        wait_for(lambda: up(supervisors, "forker") >= 1.5, 10, what="1.5 s of the run")
        stop = supervisors.ctl_popen("stop", "forker")
        # (the daemon, our child since the leader's exit, may get SIGINT at once
        # and end the stop before a status sees it stopping)
        wait_for(lambda: supervisors.status("forker").state != "running", 20, what="the stop")
        gate.touch()
        out, err = stop.communicate(timeout=20)
        assert stop.returncode == 0, (out, err)
        if got.exists():
            break
    assert got.read_text() == "SIGINT\n", supervisors.log.read_text()


# A forking daemon whose environment is gone by the time it writes its pidfile, as
# with a process title set (nginx, postgres, setproctitle overwrite what
# /proc/PID/environ reads): here env -i, so that no mark is ever read.
UNMARKED_FORKER = textwrap.dedent(
    """
    import os, sys
    pidfile = sys.argv[1]
    if os.fork():
        sys.exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.execv("/usr/bin/env", ["env", "-i", "/bin/sh", "-c",
             f'echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile} && exec sleep 1000'])
    """
)


def test_a_forking_daemon_whose_environment_is_gone_is_adopted_through_its_pidfile(
    supervisors: Supervisors,
) -> None:
    """The daemon the pidfile names carries no DAEMONCTX_PROGRAM (a process title
    set overwrites the environment /proc shows): it is our child, in no program's
    session, unmarked, of the program's user, and the pidfile was written during
    this run: it is the program's. It was refused ("not one of its processes"),
    the run ended as "exited 0", and the daemon ran on unsupervised, after a
    shutdown too."""
    pidfile = supervisors.tmp_path / "titled.pid"
    supervisors.config(
        {
            "titled": {
                "command": [sys.executable, "-c", UNMARKED_FORKER, str(pidfile)],
                "pidfile": str(pidfile),
                "start_timeout": 5,
            }
        }
    )
    supervisors.foreground()
    daemon = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    try:
        assert b"DAEMONCTX_PROGRAM=" not in proc_environ(daemon)
        info = wait_for(lambda: (i := supervisors.status("titled")).pid == daemon and i, 10)
        assert info.state == "running", info
        assert supervisors.ctl("stop", "titled").returncode == 0
        wait_gone(daemon, 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)


@needs_root
def test_a_pidfile_never_names_another_users_unmarked_process_for_a_program(
    supervisors: Supervisors, shared_dir: Path
) -> None:
    """Program ``owner`` (root) leaves an unmarked process that became our child;
    program ``thief`` runs as nobody and writes that pid in its pidfile. Not the
    thief's user: never adopted (``ctl stop thief`` would SIGTERM root's process)."""
    announced, pidfile = shared_dir / "orphan", shared_dir / "thief.pid"
    orphan_maker = (
        f"(env -i setsid /bin/sh -c 'echo $$ > {announced}.tmp; "
        f"mv {announced}.tmp {announced}; exec sleep 1001' &); exec sleep 1000"
    )
    thief = (
        f"while [ ! -s {announced} ]; do sleep 0.02; done; "
        f"cp {announced} {pidfile}.tmp && mv {pidfile}.tmp {pidfile}"
    )
    supervisors.config(
        {
            "owner": {"command": ["/bin/sh", "-c", orphan_maker]},
            "thief": {
                "command": ["/bin/sh", "-c", thief],
                "pidfile": str(pidfile),
                "user": "nobody",
                "start_timeout": 1,
                "restart": "never",
            },
        }
    )
    supervisors.foreground(booted=False)
    orphan = wait_for(lambda: announced.exists() and int(announced.read_text() or 0), 10)
    try:
        assert int(proc_stat(orphan)[1]) == supervisors.foreground_pid, "our child"
        info = supervisors.wait_state("thief", "exited", timeout=15)
        assert info.pid is None, info
        assert f"pid {orphan} is not one of its processes" in supervisors.log.read_text()
        assert pid_alive(orphan)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


# A forking program that puts something else where its pidfile goes: a FIFO
# (which blocked the supervisor for ever in open()), or a symbolic link to the
# file where its daemon wrote its pid.
PLANTING_FORKER = textwrap.dedent(
    """
    import os, sys, time
    pidfile, announced, plant = sys.argv[1:4]
    if os.fork() == 0:
        os.setsid()
        with open(announced + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(announced + ".tmp", announced)
        time.sleep(1000)
    while not os.path.exists(announced):
        time.sleep(0.01)
    if plant == "fifo":
        os.mkfifo(pidfile)
    else:
        os.symlink(announced, pidfile)
    """
)


@pytest.mark.parametrize("plant", ["fifo", "symlink"])
def test_a_pidfile_that_is_no_regular_file_is_refused_without_blocking(
    supervisors: Supervisors, plant: str
) -> None:
    """A FIFO where the pidfile goes made the supervisor block in open() for ever
    (no answer, SIGTERM ignored); a symbolic link was followed. Both are refused,
    said once in the log, and the wait ends as for no pidfile at all."""
    pidfile = supervisors.tmp_path / "forker.pid"
    announced = supervisors.tmp_path / "daemon.pid"
    command = [sys.executable, "-c", PLANTING_FORKER, str(pidfile), str(announced), plant]
    supervisors.config(
        {
            "forker": {
                "command": command,
                "pidfile": str(pidfile),
                "start_timeout": 1,
                "restart": "never",
            },
        }
    )
    supervisors.foreground(booted=False)
    daemon = wait_for(lambda: announced.exists() and int(announced.read_text()), what="the daemon")
    wait_for(lambda: os.path.lexists(pidfile), what="the planted pidfile")
    from daemonctx.supervisor import Client

    with Client(supervisors.control, timeout=5) as client:  # it answers meanwhile
        (info,) = client.status("forker")
    wait_gone(daemon, 5)
    with Client(supervisors.control, timeout=5) as client:
        (info,) = client.status("forker")
    assert info.state == "exited" and info.pid is None, info
    reasons = {"fifo": "not a regular file but a FIFO", "symlink": "a symbolic link (not followed)"}
    reason = reasons[plant]
    log = supervisors.log.read_text()
    assert log.count(f"forker: pidfile {pidfile} refused: {reason}") == 1, log
    assert f"forker: no live process of its own in {pidfile}: {reason}" in log


# A forking program whose daemon (in a session of its own) writes its pidfile
# while its parent lingers: until that parent exits, the daemon is not the
# supervisor's child. With a pid given, the file names that process instead.
LINGERING_FORKER = textwrap.dedent(
    """
    import os, sys, time
    pidfile, named = sys.argv[1:3]
    if os.fork():
        os._exit(0)              # the leader
    if os.fork() == 0:
        os.setsid()
        with open(pidfile + ".tmp", "w") as f:
            f.write(named or str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(1000)
    time.sleep(1)                # the daemon's parent
    """
)


def test_a_pid_refused_in_the_pidfile_is_said_once_when_the_wait_ends(
    supervisors: Supervisors,
) -> None:
    """ "ignored main pid N: not one of its processes" was logged at every look at
    the pidfile: for the program's own daemon while its parent ran on (adopted a
    moment later), and a dozen times for a pid that never became its. The
    refusal is said once, in the line that ends the wait."""
    own, other = supervisors.tmp_path / "own.pid", supervisors.tmp_path / "other.pid"
    stranger = os.getpid()  # never one of its processes
    supervisors.config(
        {
            name: {
                "command": [sys.executable, "-c", LINGERING_FORKER, str(path), named],
                "pidfile": str(path),
                "start_timeout": 2,
                "restart": "never",
            }
            for name, path, named in (("own", own, ""), ("other", other, str(stranger)))
        }
    )
    supervisors.foreground(booted=False)
    daemon = wait_for(lambda: own.exists() and int(own.read_text()), what="the own pidfile")
    wait_for(lambda: supervisors.status("own").pid == daemon, what="own's daemon in charge")
    supervisors.wait_state("other", "exited")
    log = supervisors.log.read_text()
    assert "ignored main pid" not in log, log
    refused = f"other: no live process of its own in {other}: pid {stranger} is not one of"
    assert log.count(refused) == 1 and log.count(f"pid {stranger}") == 1, log
    assert "own: no live process" not in log, log


def test_a_pidfile_s_reader_says_why_it_has_no_pid(tmp_path: Path) -> None:
    """What a forking program's pidfile may hold, and the reasons for no pid,
    which never quote the file."""
    from daemonctx.supervisor.core import _read_pid

    path = tmp_path / "x.pid"
    assert _read_pid(str(path)) == "No such file or directory"
    for text, expected in [
        ("123\n", 123),
        (" 42 extra", 42),
        ("", "no pid in it"),
        ("secret-value\n", "no pid in it"),
        ("-5", "no pid in it"),
        ("9" * 40, "no pid in it"),
    ]:
        path.write_text(text)
        assert _read_pid(str(path)) == expected, text
    path.unlink()
    path.mkdir()
    assert _read_pid(str(path)) == "not a regular file but a directory"
    path.rmdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert _read_pid(str(path)) == "not a regular file but a socket"
    path.unlink()
    path.symlink_to("/dev/zero")
    assert _read_pid(str(path)) == "a symbolic link (not followed)"


COUNTING_FORKER = textwrap.dedent(
    """
    import os, signal, sys
    if os.fork():
        sys.exit(0)              # a forking daemon: the leader exits at once
    os.setsid()                  # the daemon leads a group of its own
    if os.fork():
        os._exit(0)
    path, record = sys.argv[1], sys.argv[2]
    def handler(signum, frame):
        with open(record, "a") as f:
            f.write(signal.Signals(signum).name + "\\n")
    signal.signal(signal.SIGHUP, handler)
    signal.signal(signal.SIGUSR1, handler)
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    while True:
        signal.pause()
    """
)


def test_a_forking_programs_daemon_gets_each_signal_once(supervisors: Supervisors) -> None:
    """The daemon found through the pidfile leads its own group: one `ctl signal
    HUP` is one SIGHUP (one reload), not one to the group and one to the process."""
    pidfile = supervisors.tmp_path / "forker.pid"
    record = supervisors.tmp_path / "signals"
    supervisors.config(
        {
            "forker": {
                "command": [sys.executable, "-c", COUNTING_FORKER, str(pidfile), str(record)],
                "pidfile": str(pidfile),
            }
        }
    )
    supervisors.foreground()
    daemon = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    wait_for(lambda: supervisors.status("forker").pid == daemon, what="the daemon tracked")
    for _ in range(10):  # a second signal in a few microseconds often merges: try ten
        assert supervisors.ctl("signal", "HUP", "forker").returncode == 0
    # USR1 is delivered after any SIGHUP still pending (lowest number first).
    assert supervisors.ctl("signal", "USR1", "forker").returncode == 0
    wait_for(lambda: record.exists() and "SIGUSR1" in record.read_text(), what="USR1")
    assert record.read_text().split() == ["SIGHUP"] * 10 + ["SIGUSR1"], record.read_text()


def test_mainpid_moves_the_program_to_another_process(supervisors: Supervisors) -> None:
    """A wrapper starts the real server in the background, reports it with
    MAINPID= and exits: the server is the program from then on."""
    script = textwrap.dedent(
        """
        import os, socket, subprocess, sys
        server = subprocess.Popen(["sleep", "1000"])
        address = os.environ["NOTIFY_SOCKET"]
        address = "\\0" + address[1:] if address.startswith("@") else address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"MAINPID={server.pid}\\nREADY=1".encode(), address)
        """
    )
    supervisors.config({"wrapped": {"command": [sys.executable, "-c", script], "ready": "notify"}})
    supervisors.foreground()
    info = wait_for(lambda: (i := supervisors.status("wrapped")).state == "running" and i)
    server = info.pid
    assert server is not None
    assert cmdline_of(server).startswith(b"sleep\0")
    wait_for(lambda: "main process" in supervisors.log.read_text(), what="the leader's exit")
    assert supervisors.status("wrapped").state == "running"  # the wrapper's exit 0 ended nothing
    os.kill(server, signal.SIGTERM)
    wait_gone(server)
    info = wait_for(lambda: (i := supervisors.status("wrapped")).state != "running" and i)
    assert info.last_exit is not None and info.last_exit.signal == signal.SIGTERM


LEADER_IN_CHARGE = textwrap.dedent(
    """
    import os, signal, socket, sys
    events, gate = sys.argv[1], sys.argv[2]
    def append(text):
        with open(events, "a") as file:
            file.write(text + "\\n")
    child = os.fork()
    if child == 0:               # forks the main process and exits: the supervisor adopts it
        if os.fork():
            os._exit(0)
        address = os.environ["NOTIFY_SOCKET"]   # the main process: SIGTERM kills it at once
        address = "\\0" + address[1:] if address.startswith("@") else address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"MAINPID={os.getpid()}\\nREADY=1".encode(), address)
        while True:
            signal.pause()
    def stop(signum, frame):     # the leader cleans up, until the test opens the gate
        append("leader SIGTERM")
        os.close(os.open(gate, os.O_RDONLY))
        append("leader done")
        os._exit(0)
    os.waitpid(child, 0)
    signal.signal(signal.SIGTERM, stop)
    append(f"leader {os.getpid()}")
    while True:
        signal.pause()
    """
)


def test_a_stop_waits_for_the_leader_in_charge_when_the_main_process_goes_first(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """MAINPID= names a process of the leader's group that the supervisor adopted
    (its parent exited), while the leader runs on, in charge. At a stop the main
    process dies of SIGTERM at once and the leader takes its time to clean up:
    it keeps the stop's time (no SIGKILL when the main process is gone), and the
    stop returns once the leader is done."""
    events, gate = tmp_path / "events", tmp_path / "gate"
    os.mkfifo(gate)
    command = [sys.executable, "-c", LEADER_IN_CHARGE, str(events), str(gate)]
    supervisors.config({"web": {"command": command, "ready": "notify", "stop_timeout": 30}})
    supervisor = supervisors.foreground()

    def lines() -> list[str]:
        return events.read_text().splitlines() if events.exists() else []

    main = wait_for(lambda: (i := supervisors.status("web")).state == "running" and i).pid
    leader = int(wait_for(lines, what="the leader's line")[0].split()[1])
    assert main not in (None, leader) and proc_stat(main)[1] == str(supervisor.pid)
    stop = supervisors.ctl_popen("stop", "web")
    try:
        wait_for(lambda: "leader SIGTERM" in lines(), what="the leader's SIGTERM")
        wait_for(lambda: not pid_alive(main), what="the main process's exit")
        info = supervisors.status("web")  # answered after the main process's exit is handled
        assert (info.state, info.pid) == ("stopping", leader), info  # the leader's again
        assert pid_alive(leader), "killed when the main process exited"
        assert stop.poll() is None, stop.communicate()
    finally:
        with open(gate, "w"):  # the leader may finish now
            pass
    assert stop.wait(20) == 0, stop.communicate()
    assert lines()[1:] == ["leader SIGTERM", "leader done"]
    with supervisors.client() as client:
        ((info, runs),) = client.why("web")
    assert info.state == "stopped" and runs[-1].steps == ("SIGTERM",), runs[-1]


def test_a_main_process_that_dies_while_the_leader_runs_leaves_the_leader_shown(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The leader stays in charge while it runs: when the MAINPID= process dies
    first, the program runs on, and `status` shows the leader's pid again, not the
    dead one's."""
    events, gate = tmp_path / "events", tmp_path / "gate"
    os.mkfifo(gate)
    command = [sys.executable, "-c", LEADER_IN_CHARGE, str(events), str(gate)]
    supervisors.config({"web": {"command": command, "ready": "notify"}})
    supervisors.foreground()
    main = wait_for(lambda: (i := supervisors.status("web")).state == "running" and i).pid
    words = wait_for(  # the file appears before its line is written: the line, whole
        lambda: events.exists() and (text := events.read_text()).endswith("\n") and text.split(),
        what="the leader's line",
    )
    leader = int(words[1])
    os.kill(main, signal.SIGKILL)
    wait_for(lambda: not pid_alive(main), what="the main process's death")
    # The supervisor learns it from the main's pidfd, a moment after the kernel.
    wait_for(lambda: supervisors.status("web").pid != main, 5, what="status to drop the dead pid")
    info = supervisors.status("web")
    assert (info.state, info.pid) == ("running", leader), info


def test_a_mainpid_of_a_foreign_process_is_refused(supervisors: Supervisors) -> None:
    """MAINPID= may name only a process of the program: never the test's own."""
    script = textwrap.dedent(
        f"""
        import os, socket, time
        address = os.environ["NOTIFY_SOCKET"]
        address = "\\0" + address[1:] if address.startswith("@") else address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"MAINPID={os.getpid()}\\nREADY=1", address)
        time.sleep(1000)
        """
    )
    supervisors.config({"liar": {"command": [sys.executable, "-c", script], "ready": "notify"}})
    supervisors.foreground()
    info = wait_for(lambda: (i := supervisors.status("liar")).state == "running" and i)
    assert info.pid != os.getpid()
    assert f"ignored main pid {os.getpid()}" in supervisors.log.read_text()
    assert supervisors.ctl("stop", "liar").returncode == 0
    assert pid_alive(os.getpid())


def test_under_systemd_it_sends_ready_status_and_stopping(supervisors: Supervisors) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(supervisors.tmp_path / "notify.sock")
    listener.bind(address)
    listener.settimeout(10)
    try:
        supervisors.config(
            {
                "a": {"command": ["/bin/sleep", "1000"]},
                "b": {"command": ["/bin/sleep", "1000"], "after": ["a"]},
            }
        )
        supervisors.env["NOTIFY_SOCKET"] = address
        proc = supervisors.foreground()
        messages = [listener.recv(4096).decode()]
        while "STATUS=2 running" not in messages[-1]:
            messages.append(listener.recv(4096).decode())
        assert messages[0] == "READY=1"  # once every program is ready, and first
        # the programs do not inherit the supervisor's NOTIFY_SOCKET
        a = supervisors.status("a").pid
        assert b"NOTIFY_SOCKET=" not in proc_environ(a)
        proc.send_signal(signal.SIGTERM)
        while listener.recv(4096) != b"STOPPING=1":
            pass
        assert proc.wait(10) == 0
    finally:
        listener.close()


@pytest.mark.parametrize("how", ["failed", "stopped"])
def test_under_systemd_a_boot_that_ends_says_why_in_its_last_status(
    supervisors: Supervisors, how: str
) -> None:
    """``systemctl status`` of a unit whose start failed showed "1 stopping, 1
    stopped": its STATUS= now starts with why (a program's failed start; or,
    stopped by systemd's start timeout, what the start still waited for, which
    the log says too), and ends with the state it left: nothing "stopping" (that
    was sent after the loop had ended, so never). STOPPING=1 is sent once (the
    supervisor's DaemonContext sent it again at its close)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(supervisors.tmp_path / "notify.sock")
    listener.bind(address)
    listener.settimeout(10)
    try:
        web = (
            {"command": ["/bin/sh", "-c", "exit 3"], "ready": 2, "after": ["db"]}
            if how == "failed"
            else {"command": ["/bin/sleep", "1000"], "ready": "notify"}
        )
        db = {"command": ["/bin/sleep", "1000"], **({"ready": 0.3} if how == "failed" else {})}
        supervisors.config({"db": db, "web": web})
        supervisors.env["NOTIFY_SOCKET"] = address
        proc = supervisors.foreground(booted=False)
        if how == "stopped":
            supervisors.wait_state("web", "starting")
            proc.send_signal(signal.SIGTERM)  # systemd's TimeoutStartSec=
        proc.wait(20)
        messages: list[str] = []
        listener.settimeout(0)
        with contextlib.suppress(BlockingIOError):
            while True:
                messages += listener.recv(4096).decode().split("\n")
        statuses = [m for m in messages if m.startswith("STATUS=")]
        why = (
            "web failed to start: exited 3"
            if how == "failed"
            else "stopped while waiting for web (starting)"
        )
        left = "1 stopped, 1 failed" if how == "failed" else "2 stopped"
        assert statuses and statuses[-1].startswith(f"STATUS={why}"), statuses
        assert statuses[-1].endswith(f"; {left}"), statuses
        assert messages.count("STOPPING=1") == 1, messages
        assert messages.index("STOPPING=1") < messages.index(statuses[-1]), messages
        if how == "stopped":
            assert "the start was still waiting for web (starting)" in supervisors.log.read_text()
    finally:
        listener.close()


def test_under_systemd_with_watchdogsec_it_sends_watchdog_1_from_its_loop(
    supervisors: Supervisors,
) -> None:
    """WatchdogSec=0.4 (WATCHDOG_USEC; WATCHDOG_PID is optional): WATCHDOG=1 about
    every 0.2 s, and its programs do not inherit the variables (they would think
    the watchdog theirs)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(supervisors.tmp_path / "notify.sock")
    listener.bind(address)
    listener.settimeout(10)
    try:
        supervisors.config({"a": {"command": ["/bin/sleep", "1000"]}})
        supervisors.env.update(NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
        supervisors.foreground()
        pings = []
        while len(pings) < 6:
            if listener.recv(4096) == b"WATCHDOG=1":
                pings.append(time.monotonic())
        gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
        # As received: the first read late (a loaded machine) makes the next gap
        # short, by up to a period; over five gaps, a ping every 0.2 s spans at
        # least 0.8 s, one every 0.05 s 0.25 s.
        assert all(gap < 0.4 for gap in gaps) and pings[-1] - pings[0] >= 0.6, gaps
        environ = proc_environ(supervisors.status("a").pid)
        assert b"WATCHDOG_USEC=" not in environ and b"NOTIFY_SOCKET=" not in environ
    finally:
        listener.close()


def test_under_systemd_with_a_watchdog_of_60_days_it_stays_up(supervisors: Supervisors) -> None:
    """WatchdogSec=60d (systemd takes it): a WATCHDOG=1 every 30 days, a timer past
    the longest epoll_wait (about 24.8 days). That ended the supervisor right after
    READY=1, its programs killed; now the loop waits in steps, and it runs on."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(supervisors.tmp_path / "notify.sock")
    listener.bind(address)
    listener.settimeout(10)
    try:
        supervisors.config({"a": {"command": [SLEEP, "1000"]}})
        supervisors.env.update(NOTIFY_SOCKET=address, WATCHDOG_USEC=str(60 * 86400 * 10**6))
        result = supervisors.supervise()
        assert result.returncode == 0, result
        messages = []
        while "READY=1" not in messages:
            messages += listener.recv(4096).decode().split("\n")
        assert messages[0] == "WATCHDOG=1", messages
        program = supervisors.status("a").pid
        status = supervisors.ctl("status")
        assert status.returncode == 0 and "a  running" in status.stdout, status
        assert pid_alive(program) and supervisors.status("a").pid == program
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # what came since: no STOPPING=1
            while True:
                messages += listener.recv(4096).decode().split("\n")
        assert "STOPPING=1" not in messages, messages
    finally:
        listener.close()


@pytest.mark.parametrize(
    "usec", ["\u00b2", "9" * 5000, "0"], ids=["superscript-2", "5000-digits", "0"]
)
def test_an_unusable_watchdog_usec_is_ignored_and_named_in_the_log(
    supervisors: Supervisors, usec: str
) -> None:
    """As sd_watchdog_enabled(3) refuses it (no watchdog), with a line in the log
    naming the variable. "\u00b2" passed str.isdigit and then int() failed, and 5000
    digits passed int's limit: `supervise` refused to start, naming neither."""
    supervisors.config({"a": {"command": [SLEEP, "1000"]}})
    supervisors.env.update(WATCHDOG_USEC=usec)
    result = supervisors.supervise()
    assert result.returncode == 0 and result.stderr == "", result
    assert supervisors.status("a").state == "running"
    shown = repr(usec) if len(usec) <= 40 else f"{usec[:40]!r}... ({len(usec)} characters)"
    line = (
        f"daemonctx: ignoring WATCHDOG_USEC={shown}: not a number of microseconds"
        " from 1 to 18446744073709551614 (no WATCHDOG=1 is sent)\n"
    )
    assert line in supervisors.log.read_text()


BUGGY = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from daemonctx.supervisor import Program, Supervisor

    class Buggy(Supervisor):
        def _on_unexpected(self, signum):  # SIGUSR1: a bug in the event loop's path
            raise RuntimeError("a bug \\x1b]0;PWNED\\x07")

    Buggy(sys.argv[2], [Program("a", [sys.argv[3], "1000"])], log=sys.argv[4]).serve()
    """
)


def test_a_bug_that_ends_the_supervisor_is_in_its_log_escaped(supervisors: Supervisors) -> None:
    """An exception the event loop does not expect ends the supervisor (and its
    programs); its log says so, as "internal error" with the traceback escaped
    and indented, for a supervisor in the background has no stderr to read."""
    args = [str(ROOT), supervisors.control, SLEEP, str(supervisors.log)]
    proc = supervisors.popen(
        [sys.executable, "-c", BUGGY, *args],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    supervisors.wait_answering(proc)
    program = supervisors.status("a").pid
    os.kill(proc.pid, signal.SIGUSR1)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "RuntimeError" in err, err
    wait_gone(program)
    log = supervisors.log.read_text()
    stops = "internal error: the supervisor stops, its programs with it:\n"
    assert f"{stops}  Traceback (most recent call last):\n" in log, log
    assert "\n  RuntimeError: a bug \\x1b]0;PWNED\\x07\n" in log, log
    assert "\x1b" not in log and "\x07" not in log, log


def test_serve_with_a_daemon_context_returns_once_every_program_is_ready(
    supervisors: Supervisors,
) -> None:
    """The Python API: the launching process returns from serve() only once the
    programs are ready (here: after 0.5 s of running), then the daemon supervises."""
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from daemonctx import DaemonContext
        from daemonctx.supervisor import Program, Supervisor
        sup = Supervisor(control={supervisors.control!r},
                         pidfile={str(supervisors.tmp_path / "sup.pid")!r},
                         programs=[Program("slow", ["/bin/sleep", "1000"], ready=0.5)])
        sup.serve(daemon=DaemonContext())
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=supervisors.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed >= 0.5
    info = supervisors.status("slow")
    assert info.state == "running" and info.uptime is not None and info.uptime >= 0.5
    pid = int((supervisors.tmp_path / "sup.pid").read_text())
    with supervisors.client() as client:
        assert client.shutdown() == pid
    assert not (supervisors.tmp_path / "sup.pid").exists()


ESCAPER = textwrap.dedent(
    """
    import os, sys, time
    directory = sys.argv[1]
    def record(name):
        with open(os.path.join(directory, name + ".tmp"), "w") as f:
            f.write(str(os.getpid()))
        os.rename(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))
    if os.fork() == 0:           # a child in the program's group
        record("child")
        time.sleep(1000)
    if os.fork() == 0:           # a daemon that left the group and the session
        os.setsid()
        if os.fork() == 0:
            record("daemon")
            time.sleep(1000)
        os._exit(0)
    record("leader")
    time.sleep(1000)
    """
)


def _escaper(supervisors: Supervisors) -> dict[str, int]:
    """Run ESCAPER under a supervisor; the pids of its leader, child and daemon."""
    command = [sys.executable, "-c", ESCAPER, str(supervisors.tmp_path)]
    supervisors.config({"web": {"command": command}})
    supervisors.foreground()
    paths = {name: supervisors.tmp_path / name for name in ("leader", "child", "daemon")}
    wait_for(lambda: all(path.exists() for path in paths.values()), what="three processes")
    return {name: int(path.read_text()) for name, path in paths.items()}


def test_a_sigkilled_supervisor_leaves_nothing_running(supervisors: Supervisors) -> None:
    """SIGKILL leaves the supervisor no chance to stop anything: its guard kills
    the program, the child in its group and the daemon that escaped it (marked
    by DAEMONCTX_SUPERVISOR), and holds the socket's lock until they are gone:
    a supervisor started at once on the same socket waits for it, then starts."""
    pids = _escaper(supervisors)
    first = supervisors.foreground_pid
    assert int(proc_stat(pids["daemon"])[1]) == first  # adopted: we are a subreaper
    os.kill(first, signal.SIGKILL)
    supervisors.foreground()  # at once
    for name, pid in pids.items():
        assert not pid_alive(pid), f"the {name} survived its supervisor"
    assert "left running by a previous supervisor" not in supervisors.log.read_text()


# A forking daemon (a double fork: it leads no process group, its exited parent's
# is its own) and its worker in that group, its environment emptied (env -i, sudo).
FORKER_WITH_WORKER = textwrap.dedent(
    """
    import os, sys, time
    pidfile, sleep = sys.argv[1:3]
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if os.fork() == 0:
        os.execve(sleep, [sleep, "1007"], {})
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(1000)
    """
)


@pytest.mark.parametrize("guard", ["first", "replaced"])
def test_a_sigkilled_supervisor_s_guard_kills_the_group_of_a_forking_programs_daemon(
    supervisors: Supervisors, guard: str
) -> None:
    """The guard held the daemon found through the pidfile without its process
    group: after a SIGKILL of the supervisor, the daemon's unmarked worker ran on
    (a stop reached it). The group is killed too, also by a guard started again."""
    pidfile = supervisors.tmp_path / "fk.pid"
    command = [sys.executable, "-c", FORKER_WITH_WORKER, str(pidfile), SLEEP]
    supervisors.config({"fk": {"command": command, "pidfile": str(pidfile)}})
    supervisors.foreground()
    daemon = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), what="the pidfile")
    wait_for(lambda: supervisors.status("fk").pid == daemon, what="the daemon in charge")
    children = Path(f"/proc/{daemon}/task/{daemon}/children")
    worker = supervisors.add(
        wait_for(
            lambda: next(
                (
                    int(pid)
                    for pid in children.read_text().split()
                    if _command_line(int(pid)) == b"\0".join([SLEEP.encode(), b"1007", b""])
                ),
                None,
            ),
            what="the worker",
        )
    )
    group = proc_stat(daemon)[2]
    assert group != str(daemon) and proc_stat(worker)[2] == group, "one group, led by neither"
    supervisor = supervisors.foreground_pid
    first = guard_of(supervisor)
    if guard == "replaced":  # told again what it holds
        os.kill(first, signal.SIGKILL)
        first = wait_for(lambda: (pid := guard_of(supervisor)) != first and pid, what="a new one")
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(first, 30)
    wait_gone(daemon, 5)
    wait_gone(worker, 5)


SPAWNER = textwrap.dedent(
    """
    import os, sys, time
    directory, count = sys.argv[1], int(sys.argv[2])
    for _ in range(count):       # daemons that left the group and the session
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "1000"])
            os._exit(0)
        os.wait()
    open(os.path.join(directory, "spawned"), "w").close()
    time.sleep(1000)
    """
)


def _comm(pid: str) -> str | None:
    """/proc/<pid>/comm, or None once it has gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None


def test_a_sigkilled_supervisor_s_guard_kills_more_escaped_processes_than_it_has_descriptors(
    supervisors: Supervisors,
) -> None:
    """The guard pins each process it kills with a pidfd: 150 escaped daemons and
    a limit of 64 descriptors. It used to pass over those it had no descriptor
    left to pin, and leave them running."""
    command = [sys.executable, "-c", SPAWNER, str(supervisors.tmp_path), "150"]
    supervisors.config({"web": {"command": command}})
    supervisors.foreground(prefix=["prlimit", "--nofile=64:64", "--"])
    supervisor = supervisors.foreground_pid
    guard = guard_of(supervisor)
    wait_for((supervisors.tmp_path / "spawned").exists, 30, what="150 daemons")

    def all_sleeping() -> list[int] | None:  # adopted (a subreaper), and past their exec
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
        found = [int(pid) for pid in children if _comm(pid) == "sleep\n"]
        return found if len(found) == 150 else None

    # the spawner's wait ends with each parent's exit: its daemon's exec of sleep
    # may come later (a loaded machine)
    daemons = wait_for(all_sleeping, 30, what="150 daemons running sleep")
    pidfds = []
    try:
        for pid in daemons:
            pidfds.append(os.pidfd_open(pid))
        os.kill(supervisor, signal.SIGKILL)
        wait_gone(guard, 30)
        assert sum(not exited(fd) for fd in pidfds) == 0, "left running by the guard"
    finally:
        for fd in pidfds:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)


def test_a_killed_guard_is_replaced(supervisors: Supervisors) -> None:
    """Kill the guard: the supervisor starts another, which holds the programs
    started before it. SIGKILL the supervisor then: nothing is left."""
    pids = _escaper(supervisors)
    supervisor = supervisors.foreground_pid
    first = guard_of(supervisor)
    started = float(proc_stat(first)[19]) / os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    time.sleep(max(0.0, started + 1.2 - uptime))  # one that dies within 1 s is not replaced
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (pid := guard_of(supervisor)) != first and pid, what="a new guard")
    assert f"the guard (pid {first}) died; starting another" in supervisors.log.read_text()
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(second)
    for name, pid in pids.items():
        assert not pid_alive(pid), f"the {name} survived its supervisor"


def test_a_guard_killed_at_once_is_replaced_after_a_delay(supervisors: Supervisors) -> None:
    """A guard killed within a second of its start (right after the boot): another
    comes a second later, then two (no busy loop), and holds the programs that
    ran before it: SIGKILL the supervisor then, and nothing is left. (The
    programs running then were left unguarded, for good.)"""
    pids = _escaper(supervisors)
    supervisor = supervisors.foreground_pid
    first = guard_of(supervisor)
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (pid := guard_of(supervisor)) != first and pid, what="a new guard")
    assert f"the guard (pid {first}) died at once; starting another in 1 s" in (
        supervisors.log.read_text()
    )
    os.kill(second, signal.SIGKILL)
    third = wait_for(lambda: (pid := guard_of(supervisor)) != second and pid, what="a third")
    assert f"the guard (pid {second}) died at once; starting another in 2 s" in (
        supervisors.log.read_text()
    )
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(third)
    for name, pid in pids.items():
        wait_gone(pid, 5)
        assert not pid_alive(pid), f"the {name} survived its supervisor"


def test_the_guard_outlives_signals_that_end_a_process_by_default(
    supervisors: Supervisors,
) -> None:
    """SIGALRM, SIGPWR, a real-time signal, SIGUSR1... to the guard (a tool, a
    ``kill`` of the supervisor's process group) would end it, and its protection
    until the next one starts: it ignores every signal whose default action ends
    a process, but SIGKILL and a fault's."""
    supervisors.config({"web": {"command": [SLEEP, "1000"]}})
    supervisors.foreground()
    guard = guard_of(supervisors.foreground_pid)
    wait_for(  # holding web's pidfd: past its start, where it sets what it ignores
        lambda: "anon_inode:[pidfd]" in proc_fds(guard).values(), what="the guard to hold web"
    )
    names = ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGUSR1", "SIGUSR2")
    numbers = [*(getattr(signal, name) for name in names), signal.SIGRTMIN, signal.SIGRTMAX]
    if hasattr(signal, "SIGSTKFLT"):  # named from Python 3.11
        numbers.append(signal.SIGSTKFLT)
    ignored = int(proc_status(guard)["SigIgn"], 16)
    assert [n for n in numbers if not ignored >> (n - 1) & 1] == []
    for number in numbers:
        os.kill(guard, number)
    assert supervisors.ctl("status").returncode == 0  # a round trip: time to die
    assert pid_alive(guard) and guard_of(supervisors.foreground_pid) == guard
    assert "the guard" not in supervisors.log.read_text()


def _escaper_left_behind(supervisors: Supervisors) -> dict[str, int]:
    """``_escaper``'s processes, left running by a supervisor SIGKILLed with its
    guard (stopped first, so that it cannot act)."""
    pids = _escaper(supervisors)
    supervisor = supervisors.foreground_pid
    guard = guard_of(supervisor)
    os.kill(guard, signal.SIGSTOP)
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(supervisor)
    os.kill(guard, signal.SIGKILL)
    wait_gone(guard)
    return pids


def test_a_restarted_supervisor_kills_what_its_predecessor_left(supervisors: Supervisors) -> None:
    """The supervisor and its guard both SIGKILLed (the guard stopped first, so
    that it cannot act): the programs run on. The next supervisor on the same
    socket kills them before it starts anything."""
    pids = _escaper_left_behind(supervisors)
    assert all(pid_alive(pid) for pid in pids.values())
    supervisors.foreground()
    assert _killed_before_the_start(supervisors, pids), supervisors.log.read_text()


def test_a_survivors_own_name_for_its_program_is_logged_escaped(
    supervisors: Supervisors,
) -> None:
    """A process left by a SIGKILLed supervisor names its program in its
    environment, which it may have rewritten: the next supervisor kills it and
    its log shows that name escaped, with no line of the name's making."""
    forged = "2026-11-28 00:00:00,000 daemonctx: uid 0 (pid 1): shutdown"
    name = "web\x1b]0;PWNED\x07\n" + forged
    code = textwrap.dedent(
        """
        import os, sys, time
        if os.fork() == 0:  # a daemon that left the session, under a name of its own
            os.setsid()
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            os.execve(sys.argv[3], [sys.argv[3], "1000"],
                      {**os.environ, "DAEMONCTX_PROGRAM": sys.argv[2]})
        time.sleep(1000)
        """
    )
    daemon_file = supervisors.tmp_path / "daemon"
    supervisors.config(
        {"web": {"command": [sys.executable, "-c", code, str(daemon_file), name, SLEEP]}}
    )
    supervisors.foreground()
    daemon = int(wait_for(lambda: daemon_file.exists() and daemon_file.read_text()))
    exec_done = f"{SLEEP}\0".encode()
    wait_for(lambda: cmdline_of(daemon).startswith(exec_done), what="the daemon's exec")
    supervisor = supervisors.foreground_pid
    guard = guard_of(supervisor)
    os.kill(guard, signal.SIGSTOP)  # so that it cannot act
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(supervisor)
    os.kill(guard, signal.SIGKILL)
    wait_gone(guard)
    assert pid_alive(daemon)
    supervisors.foreground()
    wait_gone(daemon)
    log = supervisors.log.read_text()
    shown = "web\\x1b]0;PWNED\\x07\\n" + forged
    assert f"killed pid {daemon} ({shown}), left running by a previous supervisor" in log, log
    assert "\x1b" not in log
    assert not any(line.startswith(forged) for line in log.splitlines()), log


def _killed_before_the_start(supervisors: Supervisors, pids: dict[str, int]) -> bool:
    """Whether, ``pids`` gone (waited for), the new supervisor's log says it killed
    each one, left by a previous supervisor, before it started web again."""
    for pid in pids.values():
        wait_gone(pid)
    log = supervisors.log.read_text()
    return all(
        f"killed pid {pid} (web), left running by a previous supervisor" in log
        and log.index(f"killed pid {pid}") < log.rindex("web: starting")
        for pid in pids.values()
    )


@pytest.mark.parametrize("spelling", ["dot", "slashes", "linked directory"])
def test_a_restarted_supervisor_finds_survivors_on_another_spelling_of_its_socket(
    supervisors: Supervisors, spelling: str
) -> None:
    """The same socket, written another way in the next supervisor's
    configuration: the lock is on the file, so it is the same supervisor's
    place, and what the last one left is killed before anything starts. (The
    mark was compared as a string: a second copy ran beside the survivors.)"""
    pids = _escaper_left_behind(supervisors)
    tmp = supervisors.tmp_path
    if spelling == "linked directory":
        (tmp / "link").symlink_to(tmp)
    other = {"dot": f"{tmp}/./control.sock", "slashes": f"{tmp}//control.sock"}.get(
        spelling, f"{tmp}/link/control.sock"
    )
    command = [sys.executable, "-c", ESCAPER, str(tmp)]
    supervisors.config({"web": {"command": command}}, control=other)
    supervisors.foreground()
    assert _killed_before_the_start(supervisors, pids), supervisors.log.read_text()


def test_the_sweep_finds_a_mark_spelled_another_way(tmp_path: Path) -> None:
    """The guard's sweep: a process marked with another spelling of the socket
    (as an older supervisor wrote it) is killed; one of another socket is not."""
    from daemonctx.supervisor.guard import SUPERVISOR_VARIABLE, sweep

    (tmp_path / "link").symlink_to(tmp_path)
    marks = {
        "dot": f"{tmp_path}/./c.sock",
        "link": f"{tmp_path}/link/c.sock",
        "other": f"{tmp_path}/other.sock",
    }
    procs = {
        name: subprocess.Popen([SLEEP, "1000"], env={**os.environ, SUPERVISOR_VARIABLE: mark})
        for name, mark in marks.items()
    }
    try:
        for proc in procs.values():
            wait_for(lambda proc=proc: "1000" in Path(f"/proc/{proc.pid}/cmdline").read_text())
        killed = sweep(f"{tmp_path}//c.sock", {os.geteuid()})
        assert sorted(pid for pid, _name in killed) == sorted(
            procs[name].pid for name in ("dot", "link")
        )
        assert procs["other"].poll() is None
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


# A container's: a mount namespace with a tmpfs on the socket's directory, and a pid namespace.
UNSHARE_CONTAINER = [
    "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc",
]  # fmt: skip
MOUNT_THEN_EXEC = 'mount -t tmpfs -o mode=0700 tmpfs "$1" && shift && exec "$@"'


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _with_command(parent: int, command: bytes) -> int | None:
    """The child of ``parent`` whose command line is ``command`` (NUL-separated)."""
    for pid in _children(parent):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == command:
                return pid
    return None


@needs_root
@needs_pid_namespace
@pytest.mark.parametrize("path", ["direct", "absolute link"])
def test_a_container_s_programs_on_the_same_socket_path_are_not_the_host_supervisor_s(
    supervisors: Supervisors, tmp_path: Path, path: str
) -> None:
    """A container (a mount and a pid namespace, a tmpfs on the socket's
    directory) runs a supervisor on the control path of one on the host: another
    socket file. The host's supervisor kills nothing of the container's, at its
    start (the sweep) nor when it is SIGKILLed (its guard). It took the mark,
    the same path, for its own, and SIGKILLed the container's program twice.
    The path through a link to an absolute path (``/var/run`` to ``/run``) leads
    to the container's directory there, not to the host's."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    control = str(run / "c.sock")
    if path == "absolute link":
        (tmp_path / "link").symlink_to(run)
        control = str(tmp_path / "link" / "c.sock")
    inner = tmp_path / "container.toml"
    inner.write_text(
        f"[supervisor]\ncontrol = {toml_value(control)}\n"
        f"log = {toml_value(str(tmp_path / 'container.log'))}\n"
        f"[program.ctapp]\ncommand = {toml_value([SLEEP, '2001'])}\n"
    )
    container = supervisors.popen(
        [*UNSHARE_CONTAINER, "sh", "-c", MOUNT_THEN_EXEC, "sh", str(run),
         *supervisors.command(), "supervise", "--config", str(inner)],
        env=supervisors.env,
    )  # fmt: skip
    init = wait_for(lambda: _children(container.pid), what="the container's PID 1")[0]
    supervisors.add(init)
    command = f"{SLEEP}\x002001\x00".encode()
    ctapp = wait_for(lambda: _with_command(init, command), what="the container's program")
    pinned = os.pidfd_open(ctapp)
    try:
        supervisors.control = control
        supervisors.config({"hostapp": {"command": [SLEEP, "2002"]}}, control=control)
        supervisor = supervisors.foreground().pid
        guard = guard_of(supervisor)
        hostapp = supervisors.status("hostapp").pid
        assert not exited(pinned), "the host's supervisor killed the container's program"
        assert "left running by a previous supervisor" not in supervisors.log.read_text()
        os.kill(supervisor, signal.SIGKILL)
        wait_gone(guard)
        assert not pid_alive(hostapp), "the guard did not do its work"
        assert not exited(pinned), "the host's guard killed the container's program"
    finally:
        os.close(pinned)


@needs_root
@needs_tools("unshare")
@pytest.mark.parametrize("hides", [False, True], ids=["sees the socket", "hides its directory"])
def test_a_restarted_supervisor_kills_a_survivor_in_a_mount_namespace_of_its_own(
    supervisors: Supervisors, hides: bool
) -> None:
    """A program that made a mount namespace of its own (``unshare --mount``) is
    the supervisor's, and killed by the next one when its supervisor and guard
    were SIGKILLed: whether it still sees the socket's directory, or hid it under
    a tmpfs, as bwrap and firejail do (then its lock's identity in its
    environment tells; the directory rule alone let it live on beside a second
    copy)."""
    unshare = ["unshare", "--mount", "--propagation", "private", SLEEP, "1000"]
    if hides:
        hide = f"mount -t tmpfs sandbox {os.path.dirname(supervisors.control)} && exec {SLEEP} 1000"
        unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide]
    supervisors.config({"web": {"command": unshare}})
    supervisors.foreground()
    web = supervisors.status("web").pid
    wait_for(lambda: cmdline_of(web) == f"{SLEEP}\x001000\x00".encode(), what="unshare's exec")
    assert os.stat(f"/proc/{web}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    supervisor = supervisors.foreground_pid
    guard = guard_of(supervisor)
    os.kill(guard, signal.SIGSTOP)
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(supervisor)
    os.kill(guard, signal.SIGKILL)
    wait_gone(guard)
    assert pid_alive(web)
    supervisors.foreground()
    assert _killed_before_the_start(supervisors, {"web": web}), supervisors.log.read_text()


PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2  # include/uapi/linux/pidfd.h


def _groups_signalled_through_pidfds() -> bool:
    """Whether this kernel signals a process group through a pidfd (Linux 6.9)."""
    pidfd = os.pidfd_open(os.getpid())
    try:  # a check (signal 0) of the group of our pid: none (ESRCH), where it works
        signal.pidfd_send_signal(pidfd, 0, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except OSError as exc:
        return exc.errno != errno.EINVAL
    finally:
        os.close(pidfd)
    return True


needs_group_pidfd = pytest.mark.skipif(
    not _groups_signalled_through_pidfds(),
    reason="needs Linux 6.9 (pidfd_send_signal's PIDFD_SIGNAL_PROCESS_GROUP)",
)

IGNORER = "#!/bin/sh\nenv -i /bin/sh -c 'trap \"\" TERM; exec sleep 601' &\nexec sleep 1000\n"


@needs_group_pidfd
def test_a_supervisor_sigkilled_during_a_stop_leaves_no_group_member_without_its_mark(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A stop under way: the main process died of SIGTERM and is kept a zombie
    (its pid reserves the group's id) while a child in its group that ignores
    SIGTERM, its environment emptied (``env -i``, ``sudo``: no mark), takes its
    time. SIGKILL the supervisor then: its guard kills that child too. It counted
    the group only while its leader had not exited, and left the child running."""
    script = tmp_path / "ignorer.sh"
    script.write_text(IGNORER)
    script.chmod(0o755)
    supervisors.config({"ig": {"command": [str(script)], "stop_timeout": 30}})
    supervisor = supervisors.foreground().pid
    guard = guard_of(supervisor)
    leader = supervisors.status("ig").pid

    def member() -> int | None:
        for pid in _children(leader):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00601\x00":
                    return pid
        return None

    child = supervisors.add(wait_for(member, what="the child that ignores SIGTERM"))
    assert os.getpgid(child) == leader
    assert b"DAEMONCTX_SUPERVISOR=" not in proc_environ(child)
    supervisors.ctl_popen("stop", "ig")
    wait_for(lambda: proc_stat(leader)[0] == "Z", what="the main process kept a zombie")
    assert pid_alive(child)
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(guard)
    assert not pid_alive(child), "the guard left the group's child running"


def test_where_groups_cannot_be_signalled_through_pidfds_the_guard_finds_them_in_proc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before Linux 6.9 (EINVAL for the flag) the guard's sweep finds a group's
    members by their group id, while its leader lives: they are killed, and the
    leader is left to the guard, for after. (Killed first, in /proc's order, it
    could be gone before the scan reached the members: left running.)"""
    from daemonctx.supervisor import guard

    monkeypatch.setattr(guard, "_kill_group", lambda pidfd, signum: None)
    leader = subprocess.Popen(
        ["/bin/sh", "-c", f"{SLEEP} 1001 & exec {SLEEP} 1002"], start_new_session=True
    )
    pidfd = os.pidfd_open(leader.pid)
    try:
        member = wait_for(lambda: _with_command(leader.pid, f"{SLEEP}\x001001\x00".encode()))
        wait_for(lambda: cmdline_of(leader.pid) == f"{SLEEP}\x001002\x00".encode())
        killed = guard.sweep(str(tmp_path / "c.sock"), set(), {leader.pid: pidfd})
        assert [pid for pid, _name in killed] == [member]
        assert not pid_alive(member)
        assert leader.poll() is None
    finally:
        os.close(pidfd)
        leader.kill()
        leader.wait()


@needs_root
def test_the_guard_never_kills_a_group_that_took_a_dead_group_s_number(tmp_path: Path) -> None:
    """A program's group is gone, leader and all, and a new process leads a group
    of the same number: the guard's sweep, given the old leader's pidfd, leaves it."""
    from daemonctx.supervisor.guard import sweep

    old = subprocess.Popen([SLEEP, "1000"], start_new_session=True)
    pidfd = os.pidfd_open(old.pid)
    try:
        old.kill()
        old.wait()
        new = spawn_as_pid(old.pid, [SLEEP, "1000"], start_new_session=True)
        try:
            assert os.getpgid(new.pid) == old.pid
            assert sweep(str(tmp_path / "c.sock"), set(), {old.pid: pidfd}) == []
            assert new.poll() is None
        finally:
            new.kill()
            new.wait()
    finally:
        os.close(pidfd)


def test_a_stopped_guard_does_not_block_the_supervisor(supervisors: Supervisors) -> None:
    """The guard's socket fills while the guard is stopped (each restart sends it
    two messages): the supervisor keeps serving, and what waited reaches the
    guard once it runs again. Then SIGKILL the supervisor: the newest run dies."""
    supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
    supervisors.foreground()
    supervisor = supervisors.foreground_pid
    guard = guard_of(supervisor)
    os.kill(guard, signal.SIGSTOP)
    try:
        with supervisors.client() as client:
            for _ in range(400):  # far more than a socket buffer holds
                (info,) = client.restart("web")
                assert info.state == "running"
            pid = info.pid
    finally:
        os.kill(guard, signal.SIGCONT)
    assert pid is not None
    os.kill(supervisor, signal.SIGKILL)
    wait_gone(guard)
    assert not pid_alive(pid), "the last run survived its supervisor"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_the_guard_learns_the_users_a_reload_adds(supervisors: Supervisors) -> None:
    """A program added by a reload runs as nobody and leaves a daemon outside its
    group: the guard kills it too when the supervisor dies, though it kills a
    marked process only of the users the programs run as (which the reload
    told it)."""
    shared = Path(tempfile.mkdtemp(prefix="guard-users-", dir="/tmp"))  # nobody reaches it
    shared.chmod(0o777)
    try:
        supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
        supervisors.foreground()
        command = ["/usr/bin/python3", "-I", "-c", ESCAPER, str(shared)]
        batch = {"command": command, "user": "nobody"}
        supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}, "batch": batch})
        with supervisors.client() as client:
            added = client.reload()["added"]
        paths = {name: shared / name for name in ("leader", "child", "daemon")}
        wait_for(lambda: all(path.exists() for path in paths.values()), what="three processes")
        pids = {name: int(path.read_text()) for name, path in paths.items()}
        daemon_uid = Path(f"/proc/{pids['daemon']}").stat().st_uid
        os.kill(supervisors.foreground_pid, signal.SIGKILL)
        for pid in pids.values():
            wait_gone(pid, 5)
    finally:
        shutil.rmtree(shared)
    assert added == ["batch"]
    assert daemon_uid == pwd.getpwnam("nobody").pw_uid  # not one of the supervisor's users
    survivors = [name for name, pid in pids.items() if pid_alive(pid)]
    assert survivors == [], f"{survivors} survived the supervisor"


def test_the_guard_holds_no_descriptor_the_supervisor_inherited(
    supervisors: Supervisors,
) -> None:
    """A descriptor the supervisor inherited (a socket systemd passed, a pipe its
    parent waits on) is not held by its guard, which outlives the supervisor for
    a moment. Through the Python API, which keeps the process's descriptors as
    they are (``daemonctx supervise`` marks them close-on-exec)."""
    supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
    code = (
        "import sys\n"
        "from daemonctx.supervisor import Supervisor\n"
        "sys.exit(Supervisor.from_config(sys.argv[1]).serve())\n"
    )
    read_end, write_end = os.pipe()
    try:
        proc = supervisors.popen(
            [sys.executable, "-c", code, str(supervisors.config_path)],
            env=supervisors.env,
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        supervisors.foreground_pid = proc.pid
        supervisors.wait_answering(proc)
        pipe = os.readlink(f"/proc/{proc.pid}/fd/{write_end}")  # the supervisor has it
        guard = guard_of(proc.pid)
        held = set(proc_fds(guard).values())  # the guard may still be starting
        assert pipe not in held
        assert any(link.endswith("control.sock.lock") for link in held)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_running_supervisor_has_not_loaded_what_it_does_not_use(
    supervisors: Supervisors,
) -> None:
    """Each module is memory for the supervisor's whole life (its RSS is a goal of
    the benchmark): argparse (with gettext) parses only what `supervise --config
    FILE --foreground` does not, its help formatter would load shutil (bz2,
    lzma), the log's WatchedFileHandler logging.handlers (pickle, queue);
    difflib, shlex and random wait until a mistake, a command as text, a
    backoff needs them."""
    heavy = ("shutil", "bz2", "lzma", "logging.handlers", "pickle", "queue")
    heavy += ("difflib", "shlex", "random", "argparse", "gettext")
    supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print([m for m in {heavy!r} if m in sys.modules]))\n"
        "from daemonctx.cli import main\n"
        f"sys.exit(main(['supervise', '--config', {str(supervisors.config_path)!r}, "
        "'--foreground']))\n"
    )
    proc = supervisors.popen(
        [sys.executable, "-c", code], env=supervisors.env, stdout=subprocess.PIPE, text=True
    )
    supervisors.wait_answering(proc)
    assert supervisors.status("web").running
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out.strip().splitlines()[-1] == "[]"


def test_ctl_shutdown_does_not_claim_an_orderly_end_when_the_supervisor_was_killed(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The supervisor SIGKILLed while it stops a slow program: ctl shutdown sees
    its process gone, and its socket file left (an orderly end removes it)."""
    supervisors.config(
        {
            "slow": {
                "command": ["/bin/sh", "-c", "trap '' TERM; exec sleep 1000"],
                "stop_timeout": 60,
            }
        }
    )
    supervisors.foreground()
    supervisor = supervisors.foreground_pid
    shutdown = supervisors.ctl_popen("shutdown")
    try:
        wait_for(lambda: "slow: stopping" in supervisors.log.read_text(), what="the stop")
        os.kill(supervisor, signal.SIGKILL)
        _out, err = shutdown.communicate(timeout=10)
    finally:
        shutdown.kill()
    assert shutdown.returncode == 1
    assert err == (
        f"daemonctx: error: supervisor (pid {supervisor}) is gone, but did not finish its"
        f" shutdown (killed?): its socket file {supervisors.control} remains; its guard killed"
        " its programs\n"
    )


def test_an_application_s_own_children_outlive_serve_with_their_exit_status(
    supervisors: Supervisors,
) -> None:
    """serve() from Python: at its end the supervisor kills what its programs and
    alerts left (marked), never the application's own subprocesses, nor reaps
    them. (While it serves, its loop reaps every child that exits: docs.) The
    quick one exits once serve() has returned, when its stdin closes."""
    code = textwrap.dedent(
        f"""
        import subprocess, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from daemonctx.supervisor import Client, Program, Supervisor
        quick = subprocess.Popen(["/bin/sh", "-c", "read _; exit 3"], stdin=subprocess.PIPE)
        slow = subprocess.Popen(["/bin/sleep", "1000"])
        print(slow.pid, flush=True)
        sup = Supervisor(control={supervisors.control!r},
                         programs=[Program("p", ["/bin/sleep", "1001"])])
        def stop():  # once it serves (bounded: 10 s)
            for _ in range(200):
                try:
                    with Client({supervisors.control!r}, timeout=10) as client:
                        client.ping()
                        client.shutdown(wait=False)
                        return
                except Exception:
                    time.sleep(0.05)
        threading.Thread(target=stop, daemon=True).start()
        served = sup.serve()
        quick.stdin.close()
        print(served, quick.wait(), slow.poll(), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=supervisors.env, stdout=subprocess.PIPE, text=True
    )
    slow = 0
    try:
        assert proc.stdout is not None
        slow = int(proc.stdout.readline())
        assert proc.stdout.readline() == "0 3 None\n"
        assert pid_alive(slow)
        proc.wait(10)
    finally:
        proc.kill()
        if slow:
            os.kill(slow, signal.SIGKILL)


# The losing side of two `supervise` started at once on one pidfile, made certain:
# its look at the pidfile (before the daemon's start) is skipped, as if it came
# before the winner took the pidfile's lock. Only in this process.
RACE_LOSER = (
    "import sys; from daemonctx import control; "
    "control.check_not_running = lambda *args: None; "
    "from daemonctx.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("foreground", [False, True], ids=["detached", "foreground"])
def test_a_supervise_that_loses_the_race_for_its_pidfile_says_so_in_one_line(
    supervisors: Supervisors, tmp_path: Path, foreground: bool
) -> None:
    """Nine `supervise` at once with a pidfile: two losers died with lockfile's
    traceback (``lockfile.AlreadyLocked: ... is locked by running process N``,
    exit 1), when the winner took the pidfile's lock after their look at it.
    Now a line, exit 1, nothing started."""
    pidfile = tmp_path / "sup.pid"
    supervisors.config({"web": {"command": [SLEEP, "1000"]}}, pidfile=str(pidfile))
    first = supervisors.foreground()
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pidfile")
    second = tmp_path / "second.toml"  # its own socket and log: only the pidfile clashes
    second.write_text(
        f'[supervisor]\ncontrol = "{tmp_path}/second.sock"\npidfile = "{pidfile}"\n'
        f'log = "{tmp_path}/second.log"\n[program.web]\ncommand = ["{SLEEP}", "1000"]\n'
    )
    argv = ["supervise", "--config", str(second), *(["--foreground"] if foreground else [])]
    loser = supervisors.popen(
        [sys.executable, "-c", RACE_LOSER, *argv],
        env=supervisors.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = loser.communicate(timeout=20)
    assert (loser.returncode, err) == (
        1,
        f"daemonctx: error: the supervisor is already running: {pidfile} is locked by"
        f" running process {first.pid}\n",
    )
    assert not (tmp_path / "second.sock").exists()
    assert int(pidfile.read_text()) == first.pid and first.poll() is None


def test_what_the_daemon_reports_reads_as_what_the_foreground_says() -> None:
    """``supervise`` detached: the daemon's errors come back through the start-up
    handoff as a type name and a message. The pidfile's race lost there reads as
    lost in the foreground; a failed boot's lines are the line and its details."""
    from daemonctx.cli.supervise import _failure
    from daemonctx.errors import CommandError, DaemonStartupError

    lost = DaemonStartupError(
        "the daemon (pid 7) failed to start: ...",
        remote_type="lockfile.AlreadyLocked",
        remote_message="/run/sup.pid is locked by running process 5",
    )
    said = _failure(lost)
    assert (
        str(said)
        == "the supervisor is already running: /run/sup.pid is locked by running process 5"
    )
    assert said.details == ()
    boot = DaemonStartupError(
        "the daemon (pid 7) failed to start: ...",
        remote_type="daemonctx.supervisor.core.SupervisorStartError",
        remote_message="web failed to start: exited 1 (...)\n  web: first\n  web: \\x1b[2J",
    )
    said = _failure(boot)
    assert (str(said), said.details) == (
        "web failed to start: exited 1 (...)",
        ("web: first", "web: \\x1b[2J"),
    )
    copy = pickle.loads(pickle.dumps(said))
    assert (type(copy), str(copy), copy.exit_code, copy.details) == (
        CommandError,
        str(said),
        1,
        said.details,
    )
    other = DaemonStartupError("...", remote_type="OSError", remote_message="a\nb")
    assert (str(_failure(other)), _failure(other).details) == ("a\nb", ())  # one_line'd later
