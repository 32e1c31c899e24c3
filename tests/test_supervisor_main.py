"""The supervisor's main process when it is not the leader (``MAINPID=``, a forking
program's ``pidfile``), its own sd_notify messages under systemd, the Python API's
``serve(daemon=...)``, and a restarted supervisor killing what its predecessor left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import ROOT, Supervisors, pid_alive, proc_stat, wait_for, wait_gone

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
    assert Path(f"/proc/{server}/cmdline").read_bytes().startswith(b"sleep\0")
    wait_for(lambda: "main process" in supervisors.log.read_text(), what="the leader's exit")
    assert supervisors.status("wrapped").state == "running"  # the wrapper's exit 0 ended nothing
    os.kill(server, signal.SIGTERM)
    wait_gone(server)
    info = wait_for(lambda: (i := supervisors.status("wrapped")).state != "running" and i)
    assert info.last_exit is not None and info.last_exit.signal == signal.SIGTERM


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
        assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{a}/environ").read_bytes()
        proc.send_signal(signal.SIGTERM)
        while listener.recv(4096) != b"STOPPING=1":
            pass
        assert proc.wait(10) == 0
    finally:
        listener.close()


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


def test_a_restarted_supervisor_kills_what_its_predecessor_left(supervisors: Supervisors) -> None:
    """SIGKILL the supervisor: its program dies (parent-death signal) but the
    program's own child, whose parent is the program, does not. The next
    supervisor on the same socket kills it before it starts anything."""
    child_pid = supervisors.tmp_path / "child.pid"
    supervisors.config(
        {"web": {"command": ["/bin/sh", "-c", f"sleep 1000 & echo $! > {child_pid}; wait"]}}
    )
    first = supervisors.foreground()
    leader = supervisors.status("web").pid
    child = wait_for(
        lambda: child_pid.exists() and child_pid.read_text().strip() and int(child_pid.read_text())
    )
    first.kill()
    first.wait(10)
    wait_gone(leader)  # PR_SET_PDEATHSIG
    assert pid_alive(child)  # what survives a SIGKILLed supervisor: the program's children
    child_pid.unlink()
    supervisors.foreground()
    wait_gone(child)
    log = supervisors.log.read_text()
    assert f"killing pid {child} (web), left running by a previous supervisor" in log
    assert log.index(f"killing pid {child}") < log.rindex("web: starting")
