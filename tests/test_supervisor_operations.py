"""Running the supervisor day to day, on real processes: ``ctl reload`` (what it
restarts, what it applies live, a broken file, ``--dry-run``), program output
(logrotate's move and reopen, rotation by size, ``/dev/stdout``, a full disk, a
pipe nobody reads), ``ctl tail``, ``ctl why`` after a crash loop, stop ladders.

Each test writes a TOML file (``supervisors.config``), runs the supervisor in the
foreground (a child of the test, its stdout and stderr pipes) and checks what an
operator would: ``ctl`` output and exit codes, ``Client`` answers, pids, /proc,
the files on disk, what the programs themselves record. Every process carries
the ``supervisors`` fixture's token and is killed by pid when the test ends.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    NOBODY,
    PROGRAMS,
    READABLE_ROOT,
    ROOT,
    Supervisors,
    cmdline_of,
    fill_up,
    mounted_tmpfs,
    needs_root,
    pid_alive,
    proc_environ,
    proc_fds,
    proc_stat,
    proc_status,
    python_for_nobody,
    run_script,
    wait_for,
    wait_gone,
)

from daemonctx import procfs
from daemonctx.supervisor.server import live_owner

pytestmark = pytest.mark.timeout(30)

PY = sys.executable
SLEEP = shutil.which("sleep") or "/bin/sleep"
GREP = shutil.which("grep") or "/bin/grep"
IGNORE_TERM = PROGRAMS / "sup_ignore_term.py"
NUMBERED = PROGRAMS / "ops_numbered.py"
NOTIFY_GATE = PROGRAMS / "sup_notify_gate.py"
TALK = PROGRAMS / "ops_talk.py"
LADDER = PROGRAMS / "ops_ladder.py"

# How the supervisor writes a duration: "94 ms", "0.31 s", "1.5 s".
DURATION = r"[\d.]+ m?s"
LINE = re.compile(rb"(\d+) (x*)")


# -- helpers ------------------------------------------------------------------------


def duration(text: str) -> float:
    number, unit = text.split()
    return float(number) / (1000 if unit == "ms" else 1)


def numbered_line(number: int, pad: int = 0) -> bytes:
    """What ops_numbered.py writes as line ``number``."""
    return b"%d %s\n" % (number, b"x" * (number % 17 + pad))


def numbers(data: bytes, pad: int = 0) -> list[int]:
    """The numbers of ops_numbered.py's lines in ``data``, checking each line is whole."""
    assert data == b"" or data.endswith(b"\n"), f"ends inside a line: {data[-60:]!r}"
    found = []
    for text in data.split(b"\n")[:-1]:
        match = LINE.fullmatch(text)
        assert match, f"not a whole line: {text[:80]!r}"
        number = int(match.group(1))
        assert len(match.group(2)) == number % 17 + pad, f"a piece of line {number}: {text!r}"
        found.append(number)
    return found


def read_number(path: Path, timeout: float = 20) -> int:
    """The number a program wrote to ``path`` (atomically), once it is there."""
    wait_for(path.exists, timeout, what=f"{path.name} to be written")
    return int(path.read_text())


def contents(path: Path) -> bytes:
    """What ``path`` holds now; nothing while a rotation has moved it and not yet
    made it again."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def log_text(supervisors: Supervisors) -> str:
    return supervisors.log.read_text() if supervisors.log.exists() else ""


def running(supervisors: Supervisors, *names: str, timeout: float = 20) -> dict[str, int]:
    """The pids of ``names`` once every one of them runs."""

    def all_running() -> dict[str, int] | None:
        with supervisors.client() as client:
            infos = client.status(*names)
        if all(info.running and info.pid is not None for info in infos):
            return {info.name: info.pid for info in infos}
        return None

    found: dict[str, int] = wait_for(all_running, timeout, what=f"{names} running")
    return found


def status_names(supervisors: Supervisors) -> list[str]:
    with supervisors.client() as client:
        return [info.name for info in client.status()]


def reload(supervisors: Supervisors, *args: str) -> list[str]:
    """``ctl reload ARGS``, which must succeed; its output lines."""
    result = supervisors.ctl("reload", *args)
    assert result.returncode == 0, result
    return result.stdout.splitlines()


def ignoring_term(tmp_path: Path, stop_timeout: float) -> dict[str, Any]:
    """A program that ignores SIGTERM (SIGKILL ends it, after ``stop_timeout``): it
    creates ``tmp_path/NAME``, NAME its instance's, once it does."""
    marker = f"{tmp_path}/$DAEMONCTX_PROGRAM"
    return {
        "command": ["/bin/sh", "-c", f'exec {PY} {IGNORE_TERM} "{marker}"'],
        "stop_timeout": stop_timeout,
    }


def cmdline(pid: int) -> list[str]:
    return cmdline_of(pid).decode().split("\0")[:-1]


class PipeLines:
    """Lines read from a pipe (a child's stdout), with bounded waits."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: list[str] = []
        self._rest = b""

    def wait(self, count: int, timeout: float = 10) -> list[str]:
        """Read until at least ``count`` lines came; all the lines read so far."""
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"{count} lines expected within {timeout} s: {self.lines}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"EOF after {self.lines}")
            data = self._rest + chunk
            *whole, self._rest = data.split(b"\n")
            self.lines += [line.decode() for line in whole]
        return self.lines


# -- reload ---------------------------------------------------------------------------


def test_reload_of_backoff_keys_and_stop_timeout_restarts_nothing_and_applies_live(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """restart_delay, start_limit and stop_timeout change without a restart (the
    same pids), and the new values rule what follows: a stop that ignores SIGTERM
    is ended by SIGKILL after the new 0.3 s (not the old 30 s), and a crash loop
    backs off by the new restart_delay (20 s, not 0.1 s)."""
    pidfile = tmp_path / "web.pid"
    web: dict[str, Any] = {
        "command": [PY, str(IGNORE_TERM), str(pidfile)],
        "restart": "always",
        "restart_delay": 0.1,
        "start_limit": 5,
        "stop_timeout": 30,
    }
    db = {"command": [SLEEP, "1000"]}
    supervisors.config({"web": web, "db": db})
    supervisors.foreground()
    before = running(supervisors, "web", "db")
    wait_for(pidfile.exists, what="web to ignore SIGTERM")

    supervisors.config(
        {"web": {**web, "restart_delay": 20, "start_limit": 0, "stop_timeout": 0.3}, "db": db}
    )
    assert reload(supervisors) == [
        "change web: stop_timeout, restart_delay, start_limit (live, no restart)"
    ]
    assert running(supervisors, "web", "db") == before
    with supervisors.client() as client:
        ((_info, runs),) = client.why("web")
    assert len(runs) == 1 and runs[0].ended is None, runs

    # The new stop_timeout: SIGKILL 0.3 s after the ignored SIGTERM.
    began = time.monotonic()
    stopped = supervisors.ctl("stop", "web")
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped
    assert 0.3 <= took < 5, took
    wait_gone(before["web"], 5)
    with supervisors.client() as client:
        ((_info, runs),) = client.why("web")
    assert runs[-1].exit is not None and runs[-1].exit.text == "killed by SIGKILL"
    first, kill = runs[-1].steps
    assert first == "SIGTERM"
    assert re.fullmatch(rf"SIGKILL after ({DURATION})", kill), kill
    assert 0.3 <= duration(kill.removeprefix("SIGKILL after ")) < 2, kill

    # The new restart_delay: the second restart of a crash streak waits about 20 s.
    assert supervisors.ctl("start", "web").returncode == 0
    pid = running(supervisors, "web")["web"]
    os.kill(pid, signal.SIGKILL)  # the first restart comes at once
    wait_gone(pid, 5)
    pid = wait_for(
        lambda: (info := supervisors.status("web")).running and info.pid != pid and info.pid,
        what="web restarted at once",
    )
    os.kill(pid, signal.SIGKILL)
    info = supervisors.wait_state("web", "backoff")
    assert info.next_start is not None and 15 < info.next_start <= 23, info.text
    assert running(supervisors, "db") == {"db": before["db"]}


def test_reload_of_a_command_restarts_that_program_only(
    supervisors: Supervisors,
) -> None:
    web, db = {"command": [SLEEP, "1000"]}, {"command": [SLEEP, "1001"]}
    supervisors.config({"web": web, "db": db})
    supervisors.foreground()
    before = running(supervisors, "web", "db")

    supervisors.config({"web": {"command": [SLEEP, "2000"]}, "db": db})
    assert reload(supervisors) == ["change web: command (restart)"]
    wait_gone(before["web"], 5)
    after = wait_for(
        lambda: (pids := running(supervisors, "web", "db"))["web"] != before["web"] and pids,
        what="web restarted",
    )
    assert after["db"] == before["db"], "db was restarted too"
    assert cmdline(after["web"])[1:] == ["2000"]

    with supervisors.client() as client:
        ((info, runs),) = client.why("web")
    assert info.restarts == 0, "a reload's restart is no crash"
    old, new = runs
    assert (old.pid, new.pid) == (before["web"], after["web"])
    assert old.stopped_by == "reload"
    assert old.exit is not None and old.exit.text == "killed by SIGTERM"
    assert new.ended is None
    why = supervisors.ctl("why", "web")
    assert why.returncode == 0, why
    assert "    stopped by reload (SIGTERM)" in why.stdout.splitlines(), why.stdout
    with supervisors.client() as client:
        ((_info, runs),) = client.why("db")
    assert len(runs) == 1 and runs[0].ended is None


def test_a_broken_file_changes_nothing_and_names_file_table_and_key(
    supervisors: Supervisors,
) -> None:
    """Each broken file also changes web's command: nothing may restart it. The
    error is one line naming the file, and the table and key (or the line of a
    TOML syntax error). A fixed file then reloads."""
    web, db = {"command": [SLEEP, "1000"]}, {"command": [SLEEP, "1001"]}
    path = supervisors.config({"web": web, "db": db})
    supervisors.foreground()
    before = running(supervisors, "web", "db")
    changed = {"command": [SLEEP, "2000"]}

    broken: list[tuple[dict[str, Any], list[str]]] = [
        ({"restart_dealy": 1}, ["[program.db]", "restart_dealy:", "unknown key"]),
        ({"restart_delay": -1}, ["[program.db]", "restart_delay:"]),
        ({"user": "no-such-user-here"}, ["[program.db]", "user:", "no-such-user-here"]),
        ({"command": ["/nonexistent/daemonctx-nothing"]}, ["[program.db]", "command:"]),
    ]
    for extra, expected in broken:
        supervisors.config({"web": changed, "db": {**db, **extra}})
        result = supervisors.ctl("reload")
        assert result.returncode == 1, result
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        for part in [str(path), *expected]:
            assert part in line, (part, line)
        assert "nothing changed" in line
        assert running(supervisors, "web", "db") == before

    supervisors.config({"web": changed, "db": db})
    path.write_text(path.read_text() + "\n[program.broken\ncommand = 1\n")
    result = supervisors.ctl("reload", "--dry-run")
    assert result.returncode == 1, result
    (line,) = result.stderr.splitlines()
    lines = path.read_text().splitlines()
    assert f"{path}: line {lines.index('[program.broken') + 1}" in line, line
    assert running(supervisors, "web", "db") == before
    assert "reload:" not in log_text(supervisors), "nothing was applied"

    # A FIFO included (root's own: trusted): refused, never read; the supervisor serves
    supervisors.config({"web": changed, "db": db})
    path.write_text(path.read_text().replace("[supervisor]", '[supervisor]\ninclude = ["d/*"]'))
    (path.parent / "d").mkdir()
    os.mkfifo(path.parent / "d" / "x.toml")
    result = supervisors.ctl("reload")
    assert result.returncode == 1, result
    assert result.stderr.endswith(f"nothing changed: {path.parent}/d/x.toml: not a regular file\n")
    assert running(supervisors, "web", "db") == before
    (path.parent / "d" / "x.toml").unlink()

    supervisors.config({"web": changed, "db": db})
    assert reload(supervisors) == ["change web: command (restart)"]
    wait_gone(before["web"], 5)
    assert running(supervisors, "db") == {"db": before["db"]}


def test_a_reload_after_the_file_s_directory_moved_is_one_line(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    (tmp_path / "etc").mkdir()
    supervisors.config_path = tmp_path / "etc" / "shop.toml"
    supervisors.config({"web": {"command": [SLEEP, "1000"]}})
    supervisors.foreground()
    before = running(supervisors, "web")
    (tmp_path / "etc").rename(tmp_path / "etc.moved")
    result = supervisors.ctl("reload")
    assert result.returncode == 1, result
    assert result.stderr == (
        f"daemonctx: error: nothing changed: configuration file {tmp_path}/etc/shop.toml:"
        f" no such directory {tmp_path}/etc\n"
    )
    assert running(supervisors, "web") == before


@pytest.mark.parametrize("why", ["missing", "unsafe"])
def test_a_reload_whose_new_output_file_cannot_be_opened_changes_nothing(
    supervisors: Supervisors, tmp_path: Path, why: str
) -> None:
    """p's new stdout is in a directory that does not exist yet, or one anyone may
    write: the reload (and its dry run) is refused whole, in one line naming the
    program, the stream and the path, as supervise would be (the unsafe one by the
    file's checks, as at the start: the file, the table and the key). Nothing changed: db
    is not restarted, q's new file is not opened, the next reload does not say
    "nothing changed". Once the directory is right, a reload applies it all."""
    tick = ["/bin/sh", "-c", "while :; do echo tick; sleep 0.05; done"]
    p, q = {"command": tick, "stdout": f"{tmp_path}/p.log"}, {"command": tick}
    db = {"command": [SLEEP, "1000"]}
    supervisors.config({"p": p, "q": {**q, "stdout": f"{tmp_path}/q.log"}, "db": db})
    proc = supervisors.foreground()
    before = running(supervisors, "p", "q", "db")
    later = tmp_path / "later"
    if why == "unsafe":
        later.mkdir()
        later.chmod(0o777)  # not sticky: another user could plant p.log there
        reason = f"{later} is writable by others (mode 0777) and not sticky"
    else:
        reason = f"no such directory {later}"
    supervisors.config(
        {
            "p": {**p, "stdout": f"{later}/p.log"},
            "q": {**q, "stdout": f"{tmp_path}/q2.log"},
            "db": {"command": [SLEEP, "1001"]},
        }
    )
    if why == "unsafe":
        where = f"{supervisors.config_path}: [program.p] stdout: refusing"
    else:
        where = "cannot open p's stdout"
    error = f"daemonctx: error: nothing changed: {where} {later}/p.log: {reason}\n"
    for args in (("--dry-run",), (), ()):
        result = supervisors.ctl("reload", *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", error), result
    assert running(supervisors, "p", "q", "db") == before
    assert not (tmp_path / "q2.log").exists() and not (later / "p.log").exists()
    opened = proc_fds(proc.pid).values()
    assert f"{tmp_path}/q.log" in opened and f"{tmp_path}/q2.log" not in opened
    log = log_text(supervisors)
    assert "reload:" not in log and "internal error" not in log and "Traceback" not in log
    # why, in the supervisor's log too (the journal, under systemctl reload): twice,
    # not for the dry run
    assert log.count(f"reload refused: {error.removeprefix('daemonctx: error: ')}") == 2, log

    if why == "unsafe":
        later.chmod(0o755)
    else:
        later.mkdir()
    assert reload(supervisors) == [
        "change p: stdout (live, no restart)",
        "change q: stdout (live, no restart)",
        "change db: command (restart)",
    ]
    wait_gone(before["db"], 5)
    assert cmdline(running(supervisors, "db")["db"]) == [SLEEP, "1001"]
    for path in (later / "p.log", tmp_path / "q2.log"):
        wait_for(lambda path=path: b"tick\n" in path.read_bytes(), what=f"ticks in {path}")


def test_a_program_removed_but_still_stopping_cannot_be_started_and_comes_back_as_one(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A reload removed slow, which ignores SIGTERM: ctl start slow is refused,
    saying so (it is no program any more; not "did you mean 'slow'?"); a reload
    that adds it back takes the same instance, started again once the old
    process is gone: never two, and nothing outlives the shutdown."""
    keep = {"command": [SLEEP, "1000"]}
    slow = ignoring_term(tmp_path, 60)
    supervisors.config({"keep": keep, "slow": slow})
    supervisors.foreground()
    wait_for((tmp_path / "slow").exists, what="slow to ignore SIGTERM")
    old = running(supervisors, "slow")["slow"]
    supervisors.config({"keep": keep})
    assert reload(supervisors) == ["remove slow"]
    for command in ("start", "restart", "stop"):
        result = supervisors.ctl(command, "slow")
        assert result.returncode == 1, result
        assert result.stderr == (
            "daemonctx: error: program 'slow' was removed by a reload and is stopping\n"
        )
    assert supervisors.ctl("start", "all").returncode == 0
    with supervisors.client() as client:
        assert client.status("slow")[0].state == "stopping"  # still to be looked at

    supervisors.config({"keep": keep, "slow": {**slow, "stop_timeout": 0.5}})
    assert reload(supervisors) == ["add slow"]
    with supervisors.client() as client:
        assert [info.name for info in client.status()].count("slow") == 1
    os.kill(old, signal.SIGKILL)
    new = running(supervisors, "slow")["slow"]
    assert new != old
    assert supervisors.ctl("shutdown").returncode == 0  # SIGKILL after 0.5 s
    wait_gone(new, 5)


def test_reload_dry_run_prints_the_plan_and_changes_nothing(
    supervisors: Supervisors,
) -> None:
    web, db, old = ({"command": [SLEEP, str(n)]} for n in (1000, 1001, 1002))
    supervisors.config({"web": web, "db": db, "old": old})
    supervisors.foreground()
    before = running(supervisors, "web", "db", "old")

    supervisors.config(
        {
            "web": {"command": [SLEEP, "2000"]},
            "db": {**db, "restart_delay": 0.5},
            "new": {"command": [SLEEP, "1003"]},
        }
    )
    plan = [
        "add new",
        "remove old",
        "change web: command (restart)",
        "change db: restart_delay (live, no restart)",
    ]
    assert reload(supervisors, "--dry-run") == [f"would {line}" for line in plan]
    as_json = supervisors.ctl("--json", "reload", "--dry-run")
    assert as_json.returncode == 0, as_json
    assert json.loads(as_json.stdout) == {
        "added": ["new"],
        "removed": ["old"],
        "changed": [
            {"name": "web", "fields": ["command"], "restart": True},
            {"name": "db", "fields": ["restart_delay"], "restart": False},
        ],
        "supervisor": [],
        "groups": [],
        "applied": False,
    }
    assert running(supervisors, "web", "db", "old") == before
    assert status_names(supervisors) == ["web", "db", "old"]
    absent = supervisors.ctl("status", "new")
    assert absent.returncode != 0 and "no program named 'new'" in absent.stderr, absent

    # The plan is what a reload then does.
    assert reload(supervisors) == plan
    wait_gone(before["old"], 5)
    after = running(supervisors, "web", "db", "new")
    assert after["db"] == before["db"] and after["web"] != before["web"]


def test_reload_adds_and_removes_programs_and_changes_instances(
    supervisors: Supervisors,
) -> None:
    web, old = {"command": [SLEEP, "1000"]}, {"command": [SLEEP, "1001"]}
    supervisors.config({"web": web, "old": old})
    supervisors.foreground()
    before = running(supervisors, "web", "old")

    supervisors.config({"web": web, "new": {"command": [SLEEP, "1002"]}})
    assert reload(supervisors) == ["add new", "remove old"]
    new = running(supervisors, "new")["new"]
    wait_gone(before["old"], 5)
    wait_for(lambda: status_names(supervisors) == ["web", "new"], what="old gone from status")
    assert running(supervisors, "web")["web"] == before["web"]
    gone = supervisors.ctl("status", "old")
    assert gone.returncode != 0 and "no program named 'old'" in gone.stderr, gone

    # From one instance to two: web becomes web:0 and web:1, new processes (a restart).
    supervisors.config({"web": {**web, "instances": 2}, "new": {"command": [SLEEP, "1002"]}})
    assert reload(supervisors) == ["change web: instances (restart)"]
    two = running(supervisors, "web")
    assert sorted(two) == ["web:0", "web:1"] and len(set(two.values())) == 2
    wait_for(
        lambda: sorted(status_names(supervisors)) == ["new", "web:0", "web:1"],
        what="web:0 and web:1 only",
    )
    wait_gone(before["web"], 5)
    assert running(supervisors, "new") == {"new": new}

    # From two to three and back: the others go on.
    supervisors.config({"web": {**web, "instances": 3}, "new": {"command": [SLEEP, "1002"]}})
    assert reload(supervisors) == ["change web: instances (live, no restart)"]
    three = running(supervisors, "web")
    assert sorted(three) == ["web:0", "web:1", "web:2"], three
    assert {name: three[name] for name in two} == two
    supervisors.config({"web": {**web, "instances": 2}, "new": {"command": [SLEEP, "1002"]}})
    assert reload(supervisors) == ["change web: instances (live, no restart)"]
    wait_gone(three["web:2"], 5)
    assert running(supervisors, "web") == two

    supervisors.config({"web": web, "new": {"command": [SLEEP, "1002"]}})
    assert reload(supervisors) == ["change web: instances (restart)"]
    one = running(supervisors, "web")
    assert list(one) == ["web"]
    wait_for(lambda: sorted(status_names(supervisors)) == ["new", "web"], what="one web")
    for pid in two.values():
        wait_gone(pid, 5)
    assert running(supervisors, "new") == {"new": new}


def test_a_reload_from_one_instance_to_two_and_back_never_runs_old_and_new_together(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """web becomes web:0 and web:1: the new instances start once the old one is
    gone (as supervisord's update), not beside it, where they could find its port
    or its files still taken. The old ones here ignore SIGTERM: they stay until
    the test kills them."""
    stubborn = ignoring_term(tmp_path, 60)
    supervisors.config({"web": stubborn})
    supervisors.foreground()
    wait_for((tmp_path / "web").exists, what="web to ignore SIGTERM")
    old = running(supervisors, "web")["web"]

    supervisors.config({"web": {**stubborn, "instances": 2}})
    assert reload(supervisors) == ["change web: instances (restart)"]
    with supervisors.client() as client:
        states = {info.name: info.state for info in client.status()}
    assert states == {"web:0": "stopped", "web:1": "stopped", "web": "stopping"}
    assert "web:0, web:1 start once web stopped" in log_text(supervisors)
    os.kill(old, signal.SIGKILL)
    two = running(supervisors, "web:0", "web:1")
    for name in two:
        wait_for((tmp_path / name).exists, what=f"{name} to ignore SIGTERM")

    # And back: web starts once both are gone; a stop asked meanwhile holds it.
    supervisors.config({"web": stubborn})
    assert reload(supervisors) == ["change web: instances (restart)"]
    with supervisors.client() as client:
        assert client.status("web")[0].state == "stopped"
    os.kill(two["web:0"], signal.SIGKILL)
    wait_gone(two["web:0"], 5)
    with supervisors.client() as client:
        assert client.status("web")[0].state == "stopped"  # web:1 is still there
    os.kill(two["web:1"], signal.SIGKILL)
    one = running(supervisors, "web")["web"]
    assert one not in (old, *two.values())

    supervisors.config({"web": {**stubborn, "instances": 2}})
    reload(supervisors)
    assert supervisors.ctl("stop", "web:1").returncode == 0
    os.kill(one, signal.SIGKILL)
    running(supervisors, "web:0")
    with supervisors.client() as client:
        assert client.status("web:1")[0].state == "stopped"


def test_defaults_reach_every_program_and_a_reload_applies_a_changed_one(
    supervisors: Supervisors,
) -> None:
    """[defaults]: the environment every program reads, merged with a program's
    own; a changed default is a change of each program that takes it."""

    def write(tier: str) -> None:
        path = supervisors.config(
            {
                "web": {"command": [SLEEP, "1000"], "environment": {"ROLE": "web"}},
                "db": {"command": [SLEEP, "1001"], "environment": {"TIER": "db's own"}},
            }
        )
        with path.open("a") as file:
            file.write(f'\n[defaults]\nenvironment = {{ TIER = "{tier}" }}\n')

    write("prod")
    supervisors.foreground()
    pids = running(supervisors, "web", "db")

    def environment(pid: int) -> dict[str, str]:
        raw = proc_environ(pid)
        found = dict(pair.decode().partition("=")[::2] for pair in raw.split(b"\0") if pair)
        return {key: found[key] for key in ("ROLE", "TIER") if key in found}

    assert environment(pids["web"]) == {"ROLE": "web", "TIER": "prod"}
    assert environment(pids["db"]) == {"TIER": "db's own"}
    write("staging")
    assert reload(supervisors) == ["change web: environment (restart)"]
    wait_gone(pids["web"], 5)
    web = running(supervisors, "web")["web"]
    assert environment(web) == {"ROLE": "web", "TIER": "staging"}
    assert running(supervisors, "db")["db"] == pids["db"]


def test_reload_starts_no_program_with_autostart_false_but_new_instances_of_a_started_one(
    supervisors: Supervisors,
) -> None:
    web = {"command": [SLEEP, "1000"]}
    supervisors.config({"web": web})
    supervisors.foreground()
    manual = {"command": [SLEEP, "1001"], "autostart": False, "instances": 2}
    supervisors.config({"web": web, "started": manual, "idle": manual})
    assert reload(supervisors) == ["add started", "add idle"]
    assert supervisors.ctl("start", "started").returncode == 0
    two = running(supervisors, "started")

    supervisors.config(
        {"web": web, "started": {**manual, "instances": 3}, "idle": {**manual, "instances": 3}}
    )
    assert reload(supervisors) == [
        "change started: instances (live, no restart)",
        "change idle: instances (live, no restart)",
    ]
    three = running(supervisors, "started")
    assert {name: three[name] for name in two} == two and "started:2" in three
    with supervisors.client() as client:
        idle = client.status("idle")
    assert [(info.name, info.state, info.pid) for info in idle] == [
        (f"idle:{index}", "stopped", None) for index in range(3)
    ]


@pytest.mark.parametrize("change", ["command", "instances", "added"])
def test_a_reload_during_the_boot_keeps_its_order_and_its_wait(
    supervisors: Supervisors, tmp_path: Path, change: str
) -> None:
    """The boot waits for db (READY=1 once the file gate exists) before web, which
    comes after it. A reload meanwhile restarts db (a new command; one instance
    to two), or adds late, after db too: the boot goes on waiting for db (its new
    processes), and starts web and late, and is over, only once db is ready."""
    gate = tmp_path / "gate"
    db = {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"}
    web = {"command": [SLEEP, "1000"], "after": ["db"]}
    late = {"command": [SLEEP, "1001"], "after": ["db"]}
    supervisors.config({"db": db, "web": web})
    proc = supervisors.foreground(booted=False)
    old = wait_for(lambda: supervisors.status("db").pid, what="db to run")
    changed, dbs = {
        "command": ({**db, "command": [*db["command"], "again"]}, ["db"]),
        "instances": ({**db, "instances": 2}, ["db:0", "db:1"]),
        "added": (db, ["db"]),
    }[change]
    supervisors.config({"db": changed, "web": web, "late": late})
    plan = reload(supervisors)
    assert plan[0] == "add late" and len(plan) == (1 if change == "added" else 2), plan
    if change != "added":
        wait_gone(old, 5)

    def db_starting() -> bool:
        with supervisors.client() as client:
            infos = client.status(*dbs)
        return all(i.state == "starting" and i.pid not in (None, old) for i in infos)

    if change != "added":
        wait_for(db_starting, what="db's new processes")
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "starting"
        assert [(i.name, i.state) for i in client.status("web", "late")] == [
            ("web", "stopped"),
            ("late", "stopped"),
        ]
    gate.touch()
    supervisors.wait_answering(proc)
    assert proc.poll() is None
    running(supervisors, "web", "late", *dbs)
    lines = log_text(supervisors).splitlines()

    def first(text: str) -> int:
        return next(n for n, line in enumerate(lines) if text in line)

    ready = max(first(f"{name}: running") for name in dbs)
    assert ready < first("web: running") and ready < first("late: running"), lines
    assert first("every program is ready") > first("late: running"), lines


def test_a_reload_during_the_boot_starts_nothing_the_boot_started_again(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The boot walks the new file's waves from the first: a one-shot it ran
    (done, exited) is not run again, a program it started not restarted."""
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    migrate = {"command": ["/bin/sh", "-c", f"echo run >> {runs}"], "ready": "exited"}
    db = {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify", "after": ["migrate"]}
    web = {"command": [SLEEP, "1000"], "after": ["db"]}
    supervisors.config({"migrate": migrate, "db": db, "web": web})
    proc = supervisors.foreground(booted=False)
    old = wait_for(lambda: supervisors.status("db").pid, what="db to run")
    supervisors.config({"migrate": migrate, "db": db, "web": {**web, "stop_timeout": 5}})
    assert reload(supervisors) == ["change web: stop_timeout (live, no restart)"]
    gate.touch()
    supervisors.wait_answering(proc)
    assert running(supervisors, "db", "web")["db"] == old
    assert runs.read_text() == "run\n"
    assert supervisors.status("migrate").state == "exited"


def _states(supervisors: Supervisors) -> dict[str, tuple[str, int | None]]:
    """Each instance's state and pid, as ``ctl status`` shows them."""
    with supervisors.client() as client:
        return {info.name: (info.state, info.pid) for info in client.status()}


def test_a_reload_starts_restarts_and_removes_programs_in_after_order(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """web comes after db, which is ready once its gate file exists; web ignores
    SIGTERM, so its stop lasts until the test kills it. A reload that adds both
    starts web once db is ready; one that restarts both (a new environment) stops
    web, then db once web is gone, and starts web once the new db is ready; one
    that removes both stops db once web is gone: as the boot and the shutdown."""

    def db(gate: str) -> dict[str, Any]:
        command = ["/bin/sh", "-c", f'exec {PY} {NOTIFY_GATE} "$GATE"']
        return {"command": command, "ready": "notify", "environment": {"GATE": gate}}

    def web(version: str) -> dict[str, Any]:
        return {**ignoring_term(tmp_path, 60), "after": ["db"], "environment": {"V": version}}

    a = {"command": [SLEEP, "1000"]}
    supervisors.config({"a": a})
    supervisors.foreground()

    supervisors.config({"a": a, "db": db(f"{tmp_path}/gate1"), "web": web("1")})
    assert reload(supervisors) == ["add db", "add web"]
    wait_for(lambda: supervisors.status("db").pid, what="db to run")
    waiting = supervisors.status("web")
    assert (waiting.state, waiting.pid) == ("stopped", None)
    assert waiting.text == "stopped, starts once db ready"
    (tmp_path / "gate1").touch()
    first = running(supervisors, "db", "web")
    wait_for((tmp_path / "web").exists, what="web to ignore SIGTERM")

    supervisors.config({"a": a, "db": db(f"{tmp_path}/gate2"), "web": web("2")})
    assert reload(supervisors) == [
        "change db: environment (restart)",
        "change web: environment (restart)",
    ]
    states = _states(supervisors)
    assert states["db"] == ("running", first["db"]), states  # web is still there
    assert states["web"] == ("stopping", first["web"]), states
    os.kill(first["web"], signal.SIGKILL)
    wait_gone(first["db"], 5)
    wait_for(lambda: supervisors.status("db").pid not in (None, first["db"]), what="a new db")
    waiting = supervisors.status("web")
    assert waiting.state == "stopped" and waiting.text.endswith(", starts once db ready")
    (tmp_path / "gate2").touch()
    second = running(supervisors, "db", "web")
    environ = proc_environ(second["web"]).split(b"\0")
    assert second["web"] != first["web"] and b"V=2" in environ

    supervisors.config({"a": a})
    assert reload(supervisors) == ["remove db", "remove web"]
    states = _states(supervisors)
    assert states["db"] == ("running", second["db"]), states
    assert states["web"] == ("stopping", second["web"]), states
    os.kill(second["web"], signal.SIGKILL)
    wait_gone(second["db"], 5)
    wait_for(lambda: status_names(supervisors) == ["a"], what="db and web gone")


LISTENER = """\
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a drain that lasts: until SIGKILL
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
open(sys.argv[2], "w").close()
while True:
    time.sleep(3600)
"""


def test_a_renamed_program_starts_once_the_old_one_is_gone(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """web renamed www (a remove and an add, the same command): www starts once web
    is gone, not beside it, where web's port was still taken (a failed start, a
    crash loop, failed for good). web here ignores SIGTERM until killed."""
    listener = tmp_path / "listener.py"
    listener.write_text(LISTENER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    marker = f"{tmp_path}/$DAEMONCTX_PROGRAM"
    program = {"command": ["/bin/sh", "-c", f'exec {PY} {listener} {port} "{marker}"']}
    supervisors.config({"web": program})
    supervisors.foreground()
    wait_for((tmp_path / "web").exists, what="web to listen")
    web = running(supervisors, "web")["web"]

    supervisors.config({"www": program})
    assert reload(supervisors) == ["add www", "remove web"]
    states = _states(supervisors)
    assert states == {"www": ("stopped", None), "web": ("stopping", web)}, states
    assert supervisors.status("www").text == "stopped, starts once web stopped"
    os.kill(web, signal.SIGKILL)
    wait_for((tmp_path / "www").exists, what="www to listen on web's port")
    www = supervisors.status("www")
    assert (www.state, www.restarts) == ("running", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert status_names(supervisors) == ["www"]


def test_a_program_stopped_on_purpose_stays_stopped_when_a_reload_changes_its_instances(
    supervisors: Supervisors,
) -> None:
    """ctl stop web, then reloads that change its instances (1 -> 2, 2 -> 3): its
    instances are added stopped, none is started, as for any other change of a
    program stopped on purpose; worker runs on untouched."""
    web = {"command": [SLEEP, "1000"]}
    worker = {"command": [SLEEP, "1001"]}
    supervisors.config({"web": web, "worker": worker})
    supervisors.foreground()
    before = running(supervisors, "web", "worker")
    assert supervisors.ctl("stop", "web").returncode == 0

    for count, names in ((2, ["web:0", "web:1"]), (3, ["web:0", "web:1", "web:2"])):
        supervisors.config({"web": {**web, "instances": count}, "worker": worker})
        reload(supervisors)
        expected = [*names, "worker"]
        wait_for(lambda want=expected: status_names(supervisors) == want, what=f"{expected}")
        states = _states(supervisors)
        assert states == {
            **{name: ("stopped", None) for name in names},
            "worker": ("running", before["worker"]),
        }, states
    assert supervisors.ctl("start", "web").returncode == 0
    assert sorted(running(supervisors, "web")) == ["web:0", "web:1", "web:2"]


def test_a_reload_during_the_boot_that_makes_a_program_autostart_before_another_starts_it(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """While the boot waits for db, a reload gives x (autostart = false) autostart
    and puts it in web's after: a valid file. The boot starts x, then web once db
    and x are ready, and is over: not a dead supervisor saying x was stopped."""
    gate = tmp_path / "gate"
    db = {"command": [PY, str(NOTIFY_GATE), str(gate)], "ready": "notify"}
    x = {"command": [SLEEP, "1002"]}
    web = {"command": [SLEEP, "1001"], "after": ["db"]}
    supervisors.config({"db": db, "x": {**x, "autostart": False}, "web": web})
    proc = supervisors.foreground(booted=False)
    wait_for(lambda: supervisors.status("db").pid, what="db to run")
    supervisors.config({"db": db, "x": x, "web": {**web, "after": ["db", "x"]}})
    assert reload(supervisors) == [
        "change x: autostart (live, no restart)",
        "change web: after (live, no restart)",
    ]
    gate.touch()
    supervisors.wait_answering(proc)
    assert proc.poll() is None, proc.communicate(timeout=5)
    running(supervisors, "db", "x", "web")
    with supervisors.client() as client:
        assert client.request("status")["supervisor"]["state"] == "running"
    lines = log_text(supervisors).splitlines()
    x_ready = next(n for n, line in enumerate(lines) if "x: running" in line)
    assert x_ready < next(n for n, line in enumerate(lines) if "web: running" in line), lines


def test_a_reload_adds_the_first_program_that_sends_ready_1(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """No program needed the notify socket at the start: the reload's notify program
    gets one (it used to start without NOTIFY_SOCKET and fail on start_timeout)."""
    web = {"command": [SLEEP, "1000"]}
    supervisors.config({"web": web})
    supervisors.foreground()
    notifying = {
        "command": [PY, str(PROGRAMS / "sup_record.py"), str(tmp_path / "n.rec"), "notify", "0"],
        "environment": {"PYTHONPATH": str(ROOT)},
        "ready": "notify",
        "start_timeout": 10,
    }
    supervisors.config({"web": web, "n": notifying})
    assert reload(supervisors) == ["add n"]
    running(supervisors, "n")


def test_a_reload_during_a_stop_leaves_that_stop_its_ladder_and_the_next_gets_the_new(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """An operator watching a slow ``ctl stop`` (TERM, QUIT, KILL) simplifies the
    ladder to ``stop_timeout = 1`` and reloads: the stop under way still sends its
    SIGKILL 3 s after SIGQUIT, and status names the signals sent (SIGKILL never
    came: the step was read against the new ladder as "stuck after SIGKILL", and
    ``ctl stop``, then ``ctl shutdown``, hung). The next stop is the new ladder."""
    pidfile, quitfile = tmp_path / "web.pid", tmp_path / "quit"
    web: dict[str, Any] = {"command": [PY, str(LADDER), str(pidfile), str(quitfile)]}
    supervisors.config({"web": {**web, "stop": ["TERM", 0.3, "QUIT", 3, "KILL"]}})
    supervisors.foreground()
    pid = running(supervisors, "web")["web"]
    wait_for(pidfile.exists, what="web to ignore SIGTERM")
    stop = supervisors.ctl_popen("stop", "web")
    try:
        wait_for(quitfile.exists, what="the stop's SIGQUIT")
        supervisors.config({"web": {**web, "stop_timeout": 1}})
        assert reload(supervisors) == ["change web: stop_timeout, stop (live, no restart)"]
        text = supervisors.status("web").text
        sent = rf"stopping \(pid {pid}, SIGQUIT sent {DURATION} ago, SIGTERM ignored for 0.3 s\)"
        assert re.fullmatch(sent, text), text
        out, err = stop.communicate(timeout=15)
        assert stop.returncode == 0 and out.startswith("web  stopped"), (out, err)
    finally:
        stop.kill()
    wait_gone(pid, 5)
    with supervisors.client() as client:
        ((_info, runs),) = client.why("web")
    assert runs[-1].exit is not None and runs[-1].exit.text == "killed by SIGKILL"
    term, quit_, kill = runs[-1].steps
    assert term == "SIGTERM" and quit_.startswith("SIGQUIT after "), runs[-1].steps
    assert 3.3 <= duration(kill.removeprefix("SIGKILL after ")) < 6, kill

    assert supervisors.ctl("start", "web").returncode == 0
    pid = running(supervisors, "web")["web"]
    stopped = supervisors.ctl("stop", "web")
    assert stopped.returncode == 0, stopped
    with supervisors.client() as client:
        ((_info, runs),) = client.why("web")
    term, kill = runs[-1].steps  # the new ladder: TERM, 1 s, KILL
    assert term == "SIGTERM" and 1 <= duration(kill.removeprefix("SIGKILL after ")) < 3, kill


def test_a_reload_of_watchdog_leaves_the_run_its_interval(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """The run got WATCHDOG_USEC=1500000 and pings at a fifth of it: a reload to
    ``watchdog = 0.2`` does not make it hung (it was killed at the next check as
    "no WATCHDOG=1 within 0.2 s"); it is stopped only once it stops pinging, for
    its own 1.5 s. The next run gets the new interval."""
    rec = tmp_path / "w.rec"
    w: dict[str, Any] = {
        "command": [PY, str(PROGRAMS / "sup_watchdog.py"), str(rec), "ping", "2"],
        "environment": {"PYTHONPATH": str(ROOT)},
    }
    supervisors.config({"w": {**w, "watchdog": 1.5}})
    supervisors.foreground()
    pid = running(supervisors, "w")["w"]
    assert b"WATCHDOG_USEC=1500000\0" in proc_environ(pid)
    supervisors.config({"w": {**w, "watchdog": 0.2}})
    assert reload(supervisors) == ["change w: watchdog (live, no restart)"]

    def first_run_over() -> Any:
        with supervisors.client() as client:
            ((_info, runs),) = client.why("w")
        return runs[0] if runs[0].ended is not None else None

    run = wait_for(first_run_over, 15, what="w's first run to end")
    assert run.stopped_by == "no WATCHDOG=1 within 1.5 s", run.stopped_by
    assert f"hang {pid} " in rec.read_text()  # stopped after it stopped pinging, not before
    new = wait_for(lambda: (info := supervisors.status("w")).pid != pid and info.pid, 10)
    assert b"WATCHDOG_USEC=200000\0" in proc_environ(new)


def test_a_reload_of_ready_leaves_the_start_under_way_its_own(
    supervisors: Supervisors,
) -> None:
    """``ctl start w`` of a ``ready = 1.5`` program, given no NOTIFY_SOCKET; a
    reload sets ``ready = "notify"`` meanwhile: the start is still ready at 1.5 s
    (it was killed then as "no READY=1 within 60 s", and ``ctl start`` failed)."""
    w: dict[str, Any] = {"command": [SLEEP, "1000"], "autostart": False}
    supervisors.config({"w": {**w, "ready": 1.5}})
    supervisors.foreground()
    start = supervisors.ctl_popen("start", "w")
    try:
        info = supervisors.wait_state("w", "starting")
        pid = info.pid or wait_for(lambda: supervisors.status("w").pid, what="w's pid")
        supervisors.config({"w": {**w, "ready": "notify"}})
        assert reload(supervisors) == ["change w: ready (live, no restart)"]
        text = supervisors.status("w").text
        assert re.fullmatch(rf"starting \(pid {pid}, up {DURATION} of 1.5 s\)", text), text
        out, err = start.communicate(timeout=15)
        assert start.returncode == 0 and out.startswith(f"w  running (pid {pid}"), (out, err)
    finally:
        start.kill()
    assert b"NOTIFY_SOCKET=" not in proc_environ(pid)
    with supervisors.client() as client:
        ((_info, runs),) = client.why("w")
    assert len(runs) == 1 and runs[0].ended is None and runs[0].ready is not None, runs


def test_a_critical_program_whose_backoff_a_reload_ends_stops_everything_at_once(
    supervisors: Supervisors,
) -> None:
    """A critical program waits 30 s in backoff; a reload sets ``restart = "never"``:
    it has failed for good, and the supervisor stops everything now with its exit
    status (it did when the backoff's timer fired, 30 s later)."""
    c: dict[str, Any] = {
        "command": ["/bin/sh", "-c", "sleep 0.2; exit 3"],
        "restart_delay": 30,
        "restart_delay_max": 30,
        "critical": True,
    }
    supervisors.config({"c": c})
    proc = supervisors.foreground(booted=False)
    supervisors.wait_state("c", "backoff", timeout=10)
    supervisors.config({"c": {**c, "restart": "never"}})
    assert reload(supervisors) == ["change c: restart (live, no restart)"]
    assert proc.wait(10) == 3
    assert "c is critical and failed for good" in supervisors.log.read_text()


def test_a_reload_to_restart_never_ends_a_backoff_under_way(supervisors: Supervisors) -> None:
    """A crash loop waits in backoff; a reload sets ``restart = "never"``: it is
    ``exited`` at once, ``why`` says why, and no start comes at the backoff's end
    (one came, and only its exit was judged by the new policy)."""
    c: dict[str, Any] = {
        "command": ["/bin/sh", "-c", "sleep 0.2; exit 3"],
        "restart_delay": 2,
        "restart_delay_max": 2,
    }
    supervisors.config({"c": c})
    supervisors.foreground(booted=False)
    info = supervisors.wait_state("c", "backoff", timeout=10)
    due = time.monotonic() + info.next_start
    supervisors.config({"c": {**c, "restart": "never"}})
    assert reload(supervisors) == ["change c: restart (live, no restart)"]
    info = supervisors.status("c")
    assert info.state == "exited" and info.text.startswith("exited 3 ("), info.text
    why = supervisors.ctl("why", "c").stdout
    decisions = re.findall(r"^    then: (.*)$", why, re.MULTILINE)
    assert decisions[-1] == "not restarted: a reload set restart = 'never'", why

    def past_the_backoff() -> bool:
        with supervisors.client() as client:
            ((info, runs),) = client.why("c")
        assert info.state == "exited" and len(runs) == len(decisions), (info.text, runs)
        return time.monotonic() > due + 0.5

    wait_for(past_the_backoff, 10, what="the backoff's end to pass")
    assert "not restarted: a reload set restart = 'never'" in log_text(supervisors)


def test_a_group_stands_for_its_programs_in_ctl_and_a_reload_changes_it_live(
    supervisors: Supervisors,
) -> None:
    """supervisord's [group:x]: ctl stop shop, ctl start shop:* (supervisorctl's
    form), web:* for every instance of web; a reload changes the group live."""
    web = {"command": [SLEEP, "1000"], "instances": 2}
    db, cache = {"command": [SLEEP, "1001"]}, {"command": [SLEEP, "1002"]}
    path = supervisors.config({"web": web, "db": db, "cache": cache})
    path.write_text(path.read_text() + '\n[group.shop]\nprograms = ["web", "db"]\n')
    supervisors.foreground()
    stopped = supervisors.ctl("stop", "shop")
    assert stopped.returncode == 0, stopped
    assert [line.split()[0] for line in stopped.stdout.splitlines()] == ["web:0", "web:1", "db"]
    with supervisors.client() as client:
        assert {info.name: info.state for info in client.status()} == {
            "web:0": "stopped", "web:1": "stopped", "db": "stopped", "cache": "running"
        }  # fmt: skip
    assert supervisors.ctl("start", "shop:*").returncode == 0
    running(supervisors, "web:0", "web:1", "db")
    assert supervisors.ctl("status", "web:*").stdout.count("running") == 2

    path.write_text(path.read_text().replace('programs = ["web", "db"]', 'programs = ["cache"]'))
    assert reload(supervisors) == ["change [group.shop] (live)"]
    assert supervisors.ctl("stop", "shop").stdout.split()[0] == "cache"
    unknown = supervisors.ctl("stop", "sohp")
    assert unknown.returncode == 1
    assert "no program or group named 'sohp' (did you mean 'shop'?)" in unknown.stderr


def test_a_group_from_an_included_file_is_used_by_ctl_and_changed_by_a_reload(
    supervisors: Supervisors,
) -> None:
    """A package's conf.d file with its programs and their group (supervisord's
    conf.d may hold a [group:x]); editing that file changes the group live."""
    path = supervisors.config({"db": {"command": [SLEEP, "1001"]}})
    conf_d = path.parent / "conf.d"
    conf_d.mkdir()
    package = conf_d / "shop.toml"
    package.write_text(
        f'[program.web]\ncommand = ["{SLEEP}", "1000"]\n[group.shop]\nprograms = ["web", "db"]\n'
    )
    path.write_text(
        path.read_text().replace("[supervisor]", '[supervisor]\ninclude = ["conf.d/*"]')
    )
    supervisors.foreground()
    stopped = supervisors.ctl("stop", "shop")
    assert stopped.returncode == 0, stopped
    assert [line.split()[0] for line in stopped.stdout.splitlines()] == ["web", "db"]
    package.write_text(package.read_text().replace('["web", "db"]', '["web"]'))
    assert reload(supervisors) == ["change [group.shop] (live)"]
    started = supervisors.ctl("start", "shop")
    assert [line.split()[:2] for line in started.stdout.splitlines()] == [["web", "running"]]
    assert supervisors.status("db").state == "stopped"


def test_a_detached_supervisor_started_with_a_relative_config_path_can_reload(
    supervisors: Supervisors,
) -> None:
    """`cd /etc/shop && daemonctx supervise --config shop.toml`: the daemon runs
    in /, and `ctl reload` still reads shop.toml (its absolute path, taken at
    the start), not /shop.toml."""
    web = {"command": [SLEEP, "1000"]}
    supervisors.config({"web": web})
    here = supervisors.config_path.parent
    name = supervisors.config_path.name
    started = supervisors.daemonctx("supervise", "--config", name, cwd=here)
    assert started.returncode == 0, started
    daemon = live_owner(supervisors.control)
    assert daemon is not None and os.readlink(f"/proc/{daemon}/cwd") == "/"
    supervisors.add(daemon)
    supervisors.config({"web": web, "new": {"command": [SLEEP, "1001"]}})
    result = supervisors.daemonctx("ctl", "--config", name, "reload", cwd=here)
    assert (result.returncode, result.stdout.splitlines()) == (0, ["add new"]), result
    running(supervisors, "new")


def test_a_log_given_on_the_command_line_wins_over_the_file_at_each_reload(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """supervise --config FILE --log LOG, FILE without a log: a reload of FILE as it
    is changes nothing (it said "change [supervisor] log (live)"), and LOG goes on."""

    def write(programs: dict[str, dict[str, Any]]) -> None:  # no [supervisor] log
        path = supervisors.config(programs)
        lines = path.read_text().splitlines()
        path.write_text("\n".join(line for line in lines if not line.startswith("log =")))

    write({"web": {"command": [SLEEP, "1000"]}})
    log = tmp_path / "given.log"
    supervisors.foreground("--log", str(log))
    assert reload(supervisors) == ["nothing changed"]
    write({"web": {"command": [SLEEP, "1000"]}, "new": {"command": [SLEEP, "1001"]}})
    assert reload(supervisors) == ["add new"]
    wait_for(lambda: "reload: add new" in log.read_text(), what="the reload in the given log")


def test_a_reload_of_the_same_values_spelled_another_way_changes_nothing(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A directory with a trailing "/", the user and group by id rather than by name,
    paths with "/./" and "//" (a program's stdout, the supervisor's pidfile, control
    socket and log): the same process runs on, its log file is not reopened, and
    the supervisor's pidfile and socket are no "cannot change". (They restarted
    the program, reopened the file, or refused the reload.) A program started
    after it still carries the control path it was started with: what the
    supervisor marks its programs with."""
    import grp
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    out = tmp_path / "out.log"
    web = {"command": [SLEEP, "1000"], "directory": f"{tmp_path}/", "user": user,
           "group": group, "stdout": {"path": str(out), "max_bytes": 65536}}  # fmt: skip
    pidfile = tmp_path / "sup.pid"
    supervisors.config({"web": web}, pidfile=str(pidfile))
    proc = supervisors.foreground()
    pid = running(supervisors, "web")["web"]

    def out_fds() -> list[int]:
        return [fd for fd, link in proc_fds(proc.pid).items() if link == str(out)]

    (before,) = out_fds()
    respelled = {**web, "directory": str(tmp_path), "user": os.getuid(), "group": os.getgid(),
                 "stdout": {"path": f"{tmp_path}//out.log", "max_bytes": 65536}}  # fmt: skip
    supervisors.config(
        {"web": respelled},
        pidfile=f"{tmp_path}/./sup.pid",
        control=supervisors.control.replace("/control.sock", "//control.sock"),
        log=str(supervisors.log).replace("/supervisor.log", "/./supervisor.log"),
    )
    for args in (("--dry-run",), ()):
        assert reload(supervisors, *args) == ["nothing changed"]
    assert running(supervisors, "web") == {"web": pid}
    assert out_fds() == [before], "out.log not reopened"
    assert supervisors.ctl("restart", "web").returncode == 0
    new = running(supervisors, "web")["web"]
    assert new != pid
    assert procfs.environment_value(new, "DAEMONCTX_SUPERVISOR") == supervisors.control
    assert int(pidfile.read_text()) == proc.pid


def test_a_program_s_output_may_not_be_the_supervisor_s_log_at_the_start_or_by_reload(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A program that writes lines that look like the supervisor's: its stdout
    set to the supervisor's log (however spelled) is refused by supervise, and
    by a reload, as a pidfile is: one line naming the file, the table and the
    key, nothing changed. The log has no forged line. (The reload moved the
    program's stdout into the log: "uid 0 (pid 1): shutdown", written by it.)"""
    forged = "2026-01-01 00:00:00,000 daemonctx: uid 0 (pid 1): shutdown"
    app_log = tmp_path / "app.log"
    app = {"command": ["/bin/sh", "-c", f"while :; do echo '{forged}'; sleep 0.05; done"],
           "stdout": str(app_log)}  # fmt: skip
    into_log = {
        **app,
        "stdout": str(supervisors.log).replace("/supervisor.log", "//supervisor.log"),
    }
    path = supervisors.config({"app": into_log})
    refused = supervisors.supervise()  # the foreground check: before it becomes a daemon
    error = (
        f"daemonctx: error: {path}: [program.app] stdout: {into_log['stdout']!r}"
        " is the supervisor's log: no program may write in it\n"
    )
    assert (refused.returncode, refused.stderr) == (1, error), refused

    supervisors.config({"app": app})
    supervisors.foreground()
    pid = running(supervisors, "app")["app"]
    supervisors.config({"app": into_log})
    for args in (("--dry-run",), ()):
        result = supervisors.ctl("reload", *args)
        reason = error.replace("error: ", "error: nothing changed: ", 1)
        assert (result.returncode, result.stderr) == (1, reason), result
    lines = len(app_log.read_text().splitlines())
    wait_for(
        lambda: len(app_log.read_text().splitlines()) > lines + 2, what="app's lines in app.log"
    )
    assert running(supervisors, "app") == {"app": pid}
    assert "(pid 1)" not in log_text(supervisors)


# A program that says when it starts, and on SIGTERM says goodbye on both streams.
GOODBYE = (
    "import os, signal, sys\n"
    "def bye(*_):\n"
    "    print(f'stdout: shutting down {os.getpid()}', flush=True)\n"
    "    print(f'stderr: shutting down {os.getpid()}', file=sys.stderr, flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "print(f'started {os.getpid()}', flush=True)\n"
    "while True: signal.pause()\n"
)


def test_a_reload_that_switches_stderr_to_or_from_stdout_loses_no_line_of_the_old_run(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """stderr from err.log to "stdout", and back: a restart. What the old process
    writes while it stops goes to its own files (its stderr to err.log, or,
    merged, to out.log), the new process's to the new layout. (The old files
    were closed before the old process was stopped: its goodbye reached ctl
    tail, and no file.)"""
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    p = {"command": [PY, "-c", GOODBYE], "stdout": str(out), "stderr": str(err)}
    supervisors.config({"p": p})
    supervisors.foreground()
    first = running(supervisors, "p")["p"]

    def restarted(old: int, layout: dict[str, Any]) -> int:
        """Reload to ``layout``; the new pid, once its old one's goodbye was read."""
        supervisors.config({"p": {**p, **layout}})
        assert reload(supervisors) == ["change p: stderr (restart)"]
        new = wait_for(
            lambda: (pid := running(supervisors, "p")["p"]) != old and pid, what="p restarted"
        )
        goodbye = {f"stdout: shutting down {old}", f"stderr: shutting down {old}"}

        def said() -> bool:
            with supervisors.client() as client:
                lines = {line.text for line in client.tail("p", 50)[0]}
            return goodbye <= lines and f"started {new}" in lines

        wait_for(said, what="the goodbye in ctl tail")
        return int(new)

    second = restarted(first, {"stderr": "stdout"})
    assert out.read_text().splitlines() == [
        f"started {first}",
        f"stdout: shutting down {first}",
        f"started {second}",
    ]
    assert err.read_text().splitlines() == [f"stderr: shutting down {first}"]

    third = restarted(second, {})
    lines = out.read_text().splitlines()[3:]  # merged: both streams in out.log
    assert sorted(lines[:2]) == [
        f"stderr: shutting down {second}",
        f"stdout: shutting down {second}",
    ]
    assert lines[2:] == [f"started {third}"]
    assert err.read_text().splitlines() == [f"stderr: shutting down {first}"]

    def old_files_closed() -> bool:  # once the old run's pipes have ended
        links = list(proc_fds(supervisors.foreground_pid).values())
        return links.count(str(out)) == 1 and links.count(str(err)) == 1

    wait_for(old_files_closed, what="the old run's files closed, the new ones open")


# -- program output ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGHUP", "SIGUSR2", "ctl reopen"])
def test_logrotate_move_and_reopen_loses_no_line(
    supervisors: Supervisors, tmp_path: Path, how: str
) -> None:
    """A program writes numbered lines as fast as it can; meanwhile web.log is
    moved to web.log.1 and the supervisor told (SIGHUP; SIGUSR2, supervisord's
    signal for it, in logrotate recipes written for supervisord; or ``ctl reopen web``).
    Every number is in one of the two files exactly once, whole, in order: the
    first numbers in web.log.1, the rest in the new web.log."""
    log, rotated = tmp_path / "web.log", tmp_path / "web.log.1"
    stop, done = tmp_path / "stop", tmp_path / "done"
    supervisors.config(
        {
            "web": {
                "command": [PY, str(NUMBERED), str(done), "0", "--until", str(stop)],
                "stdout": {"path": str(log)},
            }
        }
    )
    proc = supervisors.foreground()
    size = 300_000
    wait_for(lambda: log.exists() and log.stat().st_size > size, what="web.log to fill")
    log.rename(rotated)
    if how.startswith("SIG"):
        proc.send_signal(getattr(signal, how))
        wait_for(lambda: f"{how}: log files reopened" in log_text(supervisors), what="it")
    else:
        reopened = supervisors.ctl("reopen", "web")
        assert reopened.returncode == 0, reopened
        wait_for(  # its outcome too (the supervisor's log may trail its answer)
            lambda: "reopen: log files reopened" in log_text(supervisors), what="the log line"
        )
    wait_for(lambda: log.exists() and log.stat().st_size > size, what="the new web.log to fill")
    assert not done.exists(), "the program was still writing"
    stop.touch()
    last = read_number(done)

    def both() -> int:
        return rotated.read_bytes().count(b"\n") + log.read_bytes().count(b"\n")

    wait_for(lambda: both() >= last, what=f"{last} lines in the two files")
    first, second = numbers(rotated.read_bytes()), numbers(log.read_bytes())
    assert first and second
    assert first == list(range(1, len(first) + 1))
    assert second == list(range(len(first) + 1, last + 1))
    assert supervisors.status("web").dropped == 0


def _ends_with(log: Path, line: bytes) -> bool:
    """Whether ``log`` ends with ``line`` (rotation renames it, then creates it anew)."""
    try:
        return log.read_bytes().endswith(b"\n" + line)
    except FileNotFoundError:
        return False


def test_rotation_by_size_keeps_backups_and_whole_lines(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    log, done = tmp_path / "web.log", tmp_path / "done"
    count = 3000
    supervisors.config(
        {
            "web": {
                "command": [PY, str(NUMBERED), str(done), str(count)],
                "stdout": {"path": str(log), "max_bytes": 4096, "backups": 3},
            }
        }
    )
    supervisors.foreground()
    assert read_number(done) == count

    wait_for(lambda: _ends_with(log, numbered_line(count)), what="the last line")
    files = sorted(path.name for path in tmp_path.glob("web.log*"))
    assert files == ["web.log", "web.log.1", "web.log.2", "web.log.3"]
    longest = len(numbered_line(16))
    found: list[int] = []
    for name in reversed(files):  # oldest first
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 4096, name
        if name != "web.log":
            assert len(data) > 4096 - longest, f"{name} was rotated early: {len(data)} bytes"
        found += numbers(data)
    assert found == list(range(found[0], count + 1)), "the newest lines, each once, in order"
    assert supervisors.status("web").dropped == 0


def test_a_rotation_that_cannot_rename_keeps_the_bound_and_says_why(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A directory stands where web.log.1 goes (planted by another user in a shared
    log directory): web.log cannot be moved aside, so it is emptied in place and
    stays within max_bytes; the error is logged once, shown by ``status`` (its text
    and ``--json``), and cleared, and that logged, once a rotation works again.
    (Every rotation failed in silence and web.log grew without bound.)"""
    log, done, planted = tmp_path / "web.log", tmp_path / "done", tmp_path / "web.log.1"
    planted.mkdir()
    count = 3000  # 63 KB
    supervisors.config(
        {
            "web": {
                "command": [PY, str(NUMBERED), str(done), str(count)],
                "stdout": {"path": str(log), "max_bytes": 4096, "backups": 1},
            }
        }
    )
    supervisors.foreground()
    assert read_number(done) == count

    wait_for(lambda: _ends_with(log, numbered_line(count)), what="the last line")
    assert log.stat().st_size <= 4096
    assert numbers(log.read_bytes())[-1] == count  # whole lines, the newest
    error = f"web's stdout: cannot rotate {log}: cannot rename {log} to {planted}: Is a directory"
    assert supervisors.status("web").output_error == error
    shown = supervisors.ctl("status", "web")
    assert shown.stdout.startswith("web  running (pid ") and f" [{error}]" in shown.stdout, shown
    (raw,) = json.loads(supervisors.ctl("status", "--json").stdout)["programs"]
    assert raw["output_error"] == error
    assert log_text(supervisors).count("cannot rotate") == 1
    assert f"{error}; emptied it in place\n" in log_text(supervisors)

    planted.rmdir()
    done.unlink()
    assert supervisors.ctl("restart", "web").returncode == 0  # 3000 lines more
    assert read_number(done) == count
    wait_for(lambda: supervisors.status("web").output_error is None, what="the error cleared")
    assert f"web's stdout: {log} rotated again" in log_text(supervisors)
    assert planted.is_file() and planted.stat().st_size <= 4096
    (raw,) = json.loads(supervisors.ctl("status", "--json").stdout)["programs"]
    assert raw["output_error"] is None and "[" not in raw["text"]


def test_dev_stdout_with_rotation_configured_never_rotates(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """supervisord's "Illegal seek": here /dev/stdout (the supervisor's stdout, a
    pipe) takes every line whole, before and after a SIGHUP, and nothing tries to
    rotate it."""
    done = tmp_path / "done"
    supervisors.config(
        {
            "web": {
                "command": [PY, str(NUMBERED), str(done), "500", "--tick", "0.01"],
                "stdout": {"path": "/dev/stdout", "max_bytes": 4096, "backups": 2},
            }
        }
    )
    proc = supervisors.foreground()
    assert proc.stdout is not None
    out = PipeLines(proc.stdout.fileno())
    out.wait(320)  # past max_bytes: about 14 bytes a line
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: log files reopened" in log_text(supervisors), what="the reopen")
    seen = len(out.lines)
    out.wait(seen + 5)  # lines still come after the reopen
    data = "".join(line + "\n" for line in out.lines).encode()
    assert numbers(data) == list(range(1, len(out.lines) + 1))
    log = log_text(supervisors).replace(str(tmp_path), "TMP")
    for word in ("seek", "rotat", "cannot", "error", "Errno"):
        assert word not in log, log
    assert not os.path.lexists("/dev/stdout.1") and not os.path.lexists("/dev/stdout.2")
    assert os.path.islink("/dev/stdout")
    info = supervisors.status("web")
    assert info.running and info.dropped == 0


@needs_root
def test_a_full_tmpfs_drops_and_counts_and_never_blocks_the_program(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """About 1 MB into a 64 KiB tmpfs: the program finishes at once (its marker
    appears), what did not fit is counted, exactly (the bytes on disk plus those
    dropped are all it wrote), ``ctl status`` says so, the log says why once, and
    the file holds only whole lines."""
    done = tmp_path / "done"
    # the supervisor holds the file open: killed before the unmount
    with mounted_tmpfs(tmp_path / "full", "64k", supervisors.kill_all) as full:
        count, pad = 11_000, 80
        log = full / "web.log"
        supervisors.config(
            {
                "web": {
                    "command": [PY, str(NUMBERED), str(done), str(count), str(pad)],
                    "stdout": {"path": str(log)},
                }
            }
        )
        supervisors.foreground()
        assert read_number(done, timeout=10) == count, "never blocked"
        total = sum(len(numbered_line(n, pad)) for n in range(1, count + 1))
        assert total > 1_000_000

        def accounted() -> int | None:
            dropped = supervisors.status("web").dropped
            return dropped if dropped + log.stat().st_size == total else None

        dropped = wait_for(accounted, what="every byte written or counted as dropped")
        assert dropped >= total - 65536
        status = supervisors.ctl("status", "web")
        assert status.returncode == 0, status
        match = re.search(r"\[([\d ]+) bytes of output dropped\]", status.stdout)
        assert match, status.stdout
        assert int(match.group(1).replace(" ", "")) == dropped
        found = numbers(log.read_bytes(), pad)
        assert found == list(range(1, len(found) + 1)), "the first lines, whole"
        assert supervisors.status("web").running
        said = (
            f"daemonctx: web's stdout: cannot write {log}: No space left on device; its"
            " output is dropped (and counted) until it can (said once)\n"
        )
        assert log_text(supervisors).count(said) == 1, "why, said once (it was never said)"


def test_a_pipe_nobody_reads_never_blocks_the_program_and_dropped_grows(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """stdout = "inherit" while the supervisor's own stdout is a pipe the test
    never reads: about 1 MB goes out at once (the marker appears), the program
    goes on writing a line every 10 ms, and the count of dropped bytes grows."""
    done = tmp_path / "done"
    supervisors.config(
        {
            "web": {
                "command": [PY, str(NUMBERED), str(done), "10000", "80", "--tick", "0.01"],
                "stdout": "inherit",
            }
        }
    )
    supervisors.foreground()
    pid = running(supervisors, "web")["web"]
    assert read_number(done, timeout=10) == 10_000, "never blocked"
    first = wait_for(lambda: supervisors.status("web").dropped, what="bytes dropped")
    assert first > 0
    wait_for(lambda: supervisors.status("web").dropped > first, what="dropped to grow")
    info = supervisors.status("web")
    assert info.running and info.pid == pid
    status = supervisors.ctl("status", "web")
    assert "bytes of output dropped" in status.stdout, status.stdout


# A program that writes lines when told, for the tests of a file several programs
# write: for K = 1, 2, ... it waits until the file DIR/NAME.go-K exists (NAME its
# DAEMONCTX_PROGRAM: web:0), writes as many lines ``NAME K N xxx`` as that file says,
# each flushed, then creates DIR/NAME.done-K.
ON_DEMAND = (
    "import os, sys, time\n"
    "name = os.environ['DAEMONCTX_PROGRAM']\n"
    "base = os.path.join(sys.argv[1], name)\n"
    "k = 1\n"
    "while True:\n"
    "    while not os.path.exists(f'{base}.go-{k}'): time.sleep(0.005)\n"
    "    for n in range(1, int(open(f'{base}.go-{k}').read()) + 1):\n"
    "        sys.stdout.write(f'{name} {k} {n:05d} ' + 'x' * 30 + '\\n')\n"
    "        sys.stdout.flush()\n"
    "    open(f'{base}.done-{k}', 'w').close()\n"
    "    k += 1\n"
)


class Told:
    """Tells each ON_DEMAND program in ``directory`` to write its next lines."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rounds: dict[str, int] = {}

    def write(self, name: str, count: int) -> bytes:
        """``name`` writes ``count`` lines, and has; the last of them."""
        k = self.rounds[name] = self.rounds.get(name, 0) + 1
        told = self.directory / f"{name}.go-{k}"
        told.with_suffix(".tmp").write_text(str(count))
        told.with_suffix(".tmp").rename(told)  # never read half written
        wait_for((self.directory / f"{name}.done-{k}").exists, what=f"{name}'s lines {k}")
        return b"%s %d %05d %s\n" % (name.encode(), k, count, b"x" * 30)


def read_until(fd: int, end: bytes, timeout: float = 10) -> bytes:
    """What a pipe gives until it ends with ``end``, within ``timeout`` s."""
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(end):
        left = deadline - time.monotonic()
        assert left > 0, f"no {end!r} within {timeout} s: {got[-200:]!r}"
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 1 << 16)
    return got


def log_files(log: Path) -> dict[str, bytes]:
    """``log`` and its backups: name -> content."""
    return {path.name: path.read_bytes() for path in sorted(log.parent.glob(log.name + "*"))}


def opened_as(pid: int, log: Path) -> list[str]:
    """What ``pid`` holds open of ``log`` and its backups, deleted ones included."""
    return [link for link in proc_fds(pid).values() if link.startswith(str(log))]


def test_instances_share_one_rotating_file_and_a_quiet_one_never_writes_a_backup(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """web:0 and web:1 write one rotating web.log: web:1 says a line, web:0 then
    writes enough for three rotations, web:1 another line, which is in web.log (it
    went into the deleted backup its own fd still had, in silence, with nothing
    dropped or logged: each instance had a file of its own, rotated on its own
    count, and the files grew to twice max_bytes). The supervisor holds web.log
    once; every file is within max_bytes and holds whole lines, each once."""
    log = tmp_path / "web.log"
    supervisors.config(
        {
            "web": {
                "command": [PY, "-c", ON_DEMAND, str(tmp_path)],
                "instances": 2,
                "stdout": {"path": str(log), "max_bytes": 4096, "backups": 2},
            }
        }
    )
    proc = supervisors.foreground()
    told = Told(tmp_path)
    first = told.write("web:1", 1)
    wait_for(lambda: first in contents(log), what="web:1's first line")
    busy = told.write("web:0", 300)  # 15 KB: three rotations
    wait_for(lambda: contents(log).endswith(busy), what="web:0's last line")
    quiet = told.write("web:1", 1)
    wait_for(lambda: contents(log).endswith(quiet), what="web:1's line in web.log")

    assert opened_as(proc.pid, log) == [str(log)], "one open file, not a backup"
    files = log_files(log)
    assert list(files) == ["web.log", "web.log.1", "web.log.2"]
    lines = [line for name in reversed(files) for line in files[name].splitlines(True)]
    assert all(len(data) <= 4096 for data in files.values()), {n: len(d) for n, d in files.items()}
    assert all(re.fullmatch(rb"web:[01] \d \d{5} x{30}\n", line) for line in lines)
    busy_lines = [int(line.split()[2]) for line in lines if line.startswith(b"web:0 ")]
    assert busy_lines == list(range(busy_lines[0], 301)), "the newest lines, each once, in order"
    assert lines[-1] == quiet
    assert supervisors.status("web:0").dropped == supervisors.status("web:1").dropped == 0


def test_two_programs_on_one_file_share_it_through_reloads_reopens_and_a_removal(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Programs a and b name one rotating file (b spells it another way): one open
    file for both. A reload giving b alone another table is refused, naming both;
    one giving both a new one applies to the file at once. After logrotate's move,
    SIGHUP and ``ctl reopen a`` each open the path again once, for both; a reload
    that removes b leaves the file open for a."""
    log, moved = tmp_path / "app.log", tmp_path / "app.log.old"
    table = {"path": str(log), "max_bytes": 4096, "backups": 1}
    programs = {
        "a": {"command": [PY, "-c", ON_DEMAND, str(tmp_path)], "stdout": table},
        "b": {
            "command": [PY, "-c", ON_DEMAND, str(tmp_path)],
            "stdout": {**table, "path": f"{tmp_path}/./app.log"},
        },
    }
    supervisors.config(programs)
    proc = supervisors.foreground()
    told = Told(tmp_path)

    def written(*names: str) -> None:
        """Each of ``names`` writes a line, which is the last of app.log."""
        for name in names:
            line = told.write(name, 1)
            wait_for(lambda end=line: contents(log).endswith(end), what=name)
        assert opened_as(proc.pid, log) == [str(log)], "one open file for both"

    written("a", "b")

    supervisors.config({**programs, "b": {**programs["b"], "stdout": {**table, "max_bytes": 8192}}})
    refused = supervisors.ctl("reload")
    clash = (
        f"daemonctx: error: nothing changed: {supervisors.config_path}: [program.b] stdout:"
        f" '{log}' is the stdout of program 'a' too, with another table (max_bytes 4096"
        " there, 8192 here): every writer of one file shares its rotation: give them the"
        " same table\n"
    )
    assert (refused.returncode, refused.stderr) == (1, clash), refused

    bigger = {**table, "max_bytes": 8192}
    supervisors.config({name: {**keys, "stdout": bigger} for name, keys in programs.items()})
    reload(supervisors)
    told.write("a", 150)  # 7 KB: more than the old max_bytes, less than the new one
    written("b")
    assert 4096 < log.stat().st_size <= 8192 and not (tmp_path / "app.log.1").exists()

    log.rename(moved)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: log files reopened" in log_text(supervisors), what="the reopen")
    written("a", "b")
    log.rename(moved)
    assert supervisors.ctl("reopen", "a").returncode == 0
    written("b", "a")  # b's file too: the one they share

    supervisors.config({"a": {**programs["a"], "stdout": bigger}})
    assert reload(supervisors) == ["remove b"]
    wait_for(lambda: status_names(supervisors) == ["a"], what="b gone")
    written("a")
    assert supervisors.status("a").dropped == 0


def test_stdout_and_stderr_on_one_file_with_two_tables_are_refused(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """stdout and stderr name one file with different tables: ``supervise`` refuses
    it in one line that names both, and starts nothing (stderr's max_bytes, backups
    and timestamps were ignored in silence)."""
    log = tmp_path / "two.log"
    supervisors.config(
        {
            "two": {
                "command": [SLEEP, "100"],
                "stdout": {"path": str(log), "max_bytes": 1_000_000, "backups": 1},
                "stderr": {"path": str(log), "max_bytes": 4096, "backups": 3, "timestamps": True},
            }
        }
    )
    refused = supervisors.supervise()
    assert refused.returncode != 0 and refused.stdout == "", refused
    assert refused.stderr == (
        f"daemonctx: error: {supervisors.config_path}: [program.two] stderr: '{log}' is the"
        " stdout of program 'two' too, with another table (max_bytes 1000000 there, 4096"
        " here; backups 1 there, 3 here; timestamps false there, true here): every writer"
        " of one file shares its rotation: give them the same table\n"
    ), refused.stderr
    assert not log.exists() and not supervisors.log.exists(), "nothing started"


def test_why_output_is_dropped_is_logged_once_and_so_is_its_end(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """stdout is a FIFO whose reader leaves: the lines are dropped (EPIPE), counted
    in ``status`` and, the first time, logged with the reason (before, only the
    count said anything); once a reader is back, that writing works again is logged,
    once too."""
    fifo = tmp_path / "web.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader: the FIFO may be opened
    try:
        supervisors.config(
            {"web": {"command": [PY, "-c", ON_DEMAND, str(tmp_path)], "stdout": str(fifo)}}
        )
        supervisors.foreground()
        told = Told(tmp_path)
        line = told.write("web", 1)
        assert read_until(reader, line).endswith(line)
        os.close(reader)
        reader = -1

        told.write("web", 1)
        dropped = wait_for(lambda: supervisors.status("web").dropped, what="lines dropped")
        assert dropped == len(line)
        said = (
            f"daemonctx: web's stdout: cannot write {fifo}: Broken pipe; its output is"
            " dropped (and counted) until it can (said once)\n"
        )
        wait_for(lambda: said in log_text(supervisors), what="the reason logged")
        told.write("web", 1)
        wait_for(lambda: supervisors.status("web").dropped == 2 * dropped, what="more dropped")
        assert log_text(supervisors).count("cannot write") == 1
        status = supervisors.ctl("status", "web").stdout
        assert f"[{2 * dropped} bytes of output dropped]" in status, status

        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader again
        line = told.write("web", 1)
        assert read_until(reader, line).endswith(line)
        again = f"daemonctx: web's stdout: {fifo} written again\n"
        wait_for(lambda: again in log_text(supervisors), what="its end logged")
        assert read_until(reader, told.write("web", 1))
        text = log_text(supervisors)
        assert text.count("cannot write") == 1 and text.count("written again") == 1, text
        assert supervisors.status("web").dropped == 2 * dropped
    finally:
        if reader >= 0:
            os.close(reader)


# Program a of the tests below: once b has filled the pipe, ten lines of 20 000
# bytes, 0.1 s apart (each may be cut by a pipe that has some room, or dropped whole).
LONG_LINE = (
    "import os, sys, time\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.005)\n"
    "for _ in range(10):\n"
    "    os.write(1, b'A' * 20000 + b'\\n')\n"
    "    time.sleep(0.1)\n"
    "open(sys.argv[2], 'w').close()\n"
    "time.sleep(1000)\n"
)
# Program b: lines of 300 bytes at about 1 kHz, numbered, for `count` lines.
FAST_LINES = (
    "import os, sys, time\n"
    "count = int(sys.argv[2])\n"
    "for n in range(count):\n"
    "    os.write(1, b'b%06d ' % n + b'b' * 292 + b'\\n')\n"
    "    if n == 1000: open(sys.argv[1], 'w').close()  # the pipe is full by now\n"
    "    time.sleep(0.001)\n"
    "open(sys.argv[3], 'w').close()\n"
    "time.sleep(1000)\n"
)
B_LINE = re.compile(rb"b\d{6} b{292}")


class SlowReader:
    """A thread reading a pipe 2 KiB every 10 ms until its end (or ``stop``)."""

    def __init__(self, fd: int) -> None:
        import threading

        self.fd = fd
        self.chunks: list[bytes] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            chunk = os.read(self.fd, 2048)
            if not chunk:
                return
            self.chunks.append(chunk)
            self.stopped.wait(0.01)  # a reader that is slowish: that is the scenario

    def rest(self, timeout: float = 20) -> bytes:
        """All it read, once it read the end (within ``timeout`` s)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the pipe's end"
        return b"".join(self.chunks)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


def two_writers_on_one_stdout(
    supervisors: Supervisors, tmp_path: Path, prefix: list[str], python: str = PY
) -> tuple[bytes, dict[str, int]]:
    """Programs a (ten 20,000-byte lines) and b (300-byte lines at 1 kHz) with
    stdout = "inherit", the supervisor's stdout a pipe read slowly (run by
    ``python``, behind ``prefix``: as nobody, importing READABLE_ROOT): what came
    out, and the bytes each dropped."""
    run = tmp_path / "run"  # the supervisor's and the programs' (as nobody: theirs)
    run.mkdir()
    if prefix:
        os.chown(run, NOBODY, NOBODY)
    began, a_done, b_done = run / "began", run / "a-done", run / "b-done"
    supervisors.control = str(run / "control.sock")
    supervisors.config(
        {
            "a": {
                "command": [python, "-c", LONG_LINE, str(began), str(a_done)],
                "stdout": "inherit",
            },
            "b": {
                "command": [python, "-c", FAST_LINES, str(began), "3000", str(b_done)],
                "stdout": "inherit",
            },
        },
        log=str(run / "supervisor.log"),
    )
    read_end, write_end = os.pipe()
    reader = SlowReader(read_end)
    try:
        proc = supervisors.popen(
            [*prefix, python, "-m", "daemonctx", "supervise", "--config",
             str(supervisors.config_path), "--foreground"],
            env={**supervisors.env, "PYTHONPATH": str(READABLE_ROOT if prefix else ROOT)},
            stdout=write_end, stderr=(tmp_path / "stderr").open("wb"),
        )  # fmt: skip
        os.close(write_end)
        write_end = -1
        supervisors.wait_answering(proc)
        wait_for(b_done.exists, 30, what="b's last line")
        wait_for(a_done.exists, 10, what="a's last line")
        dropped = {name: supervisors.status(name).dropped for name in ("a", "b")}
        proc.terminate()
        proc.wait(20)
        out = reader.rest()
    finally:
        reader.stop()
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)
    return out, dropped


def _not_whole(out: bytes) -> list[str]:
    """What in ``out`` is neither one of a's lines (20,000 A's) nor one of b's, nor
    ends with a newline: each shown by its size and ends."""
    *lines, last = out.split(b"\n")
    bad = [line for line in lines if line != b"A" * 20000 and not B_LINE.fullmatch(line)]
    bad += [last] if last else []
    return [f"{len(line)} bytes: {line[:40]!r}...{line[-40:]!r}" for line in bad]


def test_lines_of_programs_sharing_the_supervisors_stdout_stay_whole(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Two programs' "inherit" stdout: two opens of the supervisor's stdout pipe. A's
    20 000-byte line went out in part, and b's lines went in the middle of it (16 691
    bytes of A's, then b's line, then the rest of A's). Now the rest of a cut line is
    written before anyone else's; b's lines meanwhile are dropped and counted."""
    out, dropped = two_writers_on_one_stdout(supervisors, tmp_path, [])
    assert _not_whole(out) == []
    # a's lines: whole, or dropped whole and counted
    assert out.split(b"\n").count(b"A" * 20000) * 20001 + dropped["a"] == 10 * 20001
    assert dropped["b"] > 0  # b's lines the pipe could not take, or that waited for a's


@needs_root
@pytest.mark.timeout(60)
def test_lines_of_programs_sharing_another_users_stdout_stay_whole(open_dir: Path) -> None:
    """The same with the supervisor run as nobody on root's pipe (written through the
    shared fd, PIPE_BUF bytes at a time): 4096 of A's bytes, then one of b's lines."""
    python = python_for_nobody()
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    supervisors = Supervisors(open_dir)  # in a directory nobody can reach
    try:
        out, dropped = two_writers_on_one_stdout(supervisors, open_dir, prefix, python)
    finally:
        supervisors.kill_all()
    assert _not_whole(out) == []
    assert out.split(b"\n").count(b"A" * 20000) * 20001 + dropped["a"] == 10 * 20001
    assert dropped["b"] > 0


# A program that, once told to (its argument exists), writes 3 MB of ~100-byte lines
# as fast as it can, once (a restart finds `done` and writes nothing), then sleeps.
BURST = (
    "import os, sys, time\n"
    "go, done = sys.argv[1], sys.argv[2]\n"
    "if not os.path.exists(done):\n"
    "    while not os.path.exists(go): time.sleep(0.005)\n"
    "    for n in range(30000): os.write(1, b'w%06d ' % n + b'w' * 92 + b'\\n')\n"
    "    open(done, 'w').close()\n"
    "time.sleep(1000)\n"
)


def _supervisors_as_nobody(open_dir: Path) -> tuple[Supervisors, Path, str, list[str]]:
    """Supervisors in ``open_dir`` whose socket goes in ``run/``, a directory nobody
    owns; the Python nobody may run; the prefix that runs a command as nobody."""
    python = python_for_nobody()
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    supervisors = Supervisors(open_dir)
    run = open_dir / "run"
    run.mkdir()
    os.chown(run, NOBODY, NOBODY)
    supervisors.control = str(run / "control.sock")
    return supervisors, run, python, as_nobody


@needs_root
def test_a_supervisor_not_root_runs_a_program_whose_user_is_its_own(open_dir: Path) -> None:
    """The supervisor run as nobody, a program with ``user = "nobody"`` and
    ``group = "nogroup"`` (a file written for root, or for either): the program runs
    as nobody. It failed to start: setgroups() of nobody's own groups is refused
    to a process that is not root (reported as "cannot change to directory")."""
    import grp
    import pwd

    supervisors, run, python, as_nobody = _supervisors_as_nobody(open_dir)
    user, group = pwd.getpwuid(NOBODY).pw_name, grp.getgrgid(NOBODY).gr_name
    web = {"command": [SLEEP, "1000"], "user": user, "group": group, "directory": str(run)}
    supervisors.config({"web": web}, log=str(run / "supervisor.log"))
    try:
        proc = supervisors.popen(
            [*as_nobody, python, "-m", "daemonctx", "supervise", "--config",
             str(supervisors.config_path), "--foreground"],
            env={**supervisors.env, "PYTHONPATH": str(READABLE_ROOT)},
        )  # fmt: skip
        supervisors.wait_answering(proc)
        info = supervisors.wait_state("web", "running")
        assert os.stat(f"/proc/{info.pid}").st_uid == NOBODY
    finally:
        supervisors.kill_all()


@needs_root
@pytest.mark.timeout(60)
def test_a_supervisor_run_as_a_user_never_blocks_on_another_users_terminal(
    open_dir: Path,
) -> None:
    """The supervisor run as nobody, its stdout and stderr root's terminal (a pty: it
    may not open it again), which nobody reads after the boot: a program's "inherit"
    output filled it and the supervisor hung in write() (poll says a terminal can
    take more when it has any room at all), answering no request. Now a thread
    writes the terminal: the supervisor answers, drops and counts; its own log on
    the terminal too, and says how many records it dropped once it can."""
    supervisors, run, python, as_nobody = _supervisors_as_nobody(open_dir)
    go, done = run / "go", run / "done"
    supervisors.config_path.write_text(
        f"[supervisor]\ncontrol = {json.dumps(supervisors.control)}\n\n"
        f"[program.web]\ncommand = {json.dumps([python, '-c', BURST, str(go), str(done)])}\n"
        'stdout = "inherit"\n'
    )  # no log: the supervisor logs on its standard error, the terminal
    env = {**supervisors.env, "PYTHONPATH": str(READABLE_ROOT)}
    master, slave = os.openpty()
    seen = bytearray()

    def read_for(seconds: float, until: bytes = b"") -> bool:
        """Read the terminal for ``seconds``, or until it showed ``until``."""
        deadline = time.monotonic() + seconds
        while not until or until not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if select.select([master], [], [], left)[0]:
                seen.extend(os.read(master, 1 << 16))
        return True

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*as_nobody, python, "-m", "daemonctx", "ctl", "--control"]
        return subprocess.run(
            [*command, supervisors.control, "--timeout", "3", *args],
            env=env, capture_output=True, text=True, timeout=20,
        )  # fmt: skip

    try:
        proc = supervisors.popen(
            [*as_nobody, python, "-m", "daemonctx", "supervise", "--config",
             str(supervisors.config_path), "--foreground"],
            env=env, stdout=slave, stderr=slave,
        )  # fmt: skip
        supervisors.wait_answering(proc)
        assert proc.poll() is None
        read_for(2)  # the boot's log, read; from now on nobody reads the terminal
        go.touch()
        wait_for(done.exists, 20, what="the program's 3 MB, never blocked")
        status = ctl("status", "web")
        assert status.returncode == 0, status
        assert "bytes of output dropped" in status.stdout, status.stdout
        # its own log on the terminal nobody reads: a request it logs
        for _ in range(3):
            restart = ctl("restart", "web")
            assert restart.returncode == 0, restart
        status = ctl("status", "web")
        assert status.returncode == 0, status
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
        assert wchan != "wait_woken", wchan
        # A reader again: what it held comes out, then the log says what it dropped.
        said = b"log records before the one above were dropped"
        for _ in range(10):
            assert ctl("restart", "web").returncode == 0
            if read_for(1, said):
                break
        assert said in seen, bytes(seen[-300:])
    finally:
        supervisors.kill_all()
        os.close(master)
        os.close(slave)


# -- tail ---------------------------------------------------------------------------------


def test_tail_shows_stdout_and_stderr_interleaved_and_follows(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Output to "null": ``ctl tail`` still has it (the ring). ``-n 3`` gives the
    last three lines of both streams in the order written; ``-f`` prints those,
    then each new line as the program writes it."""
    supervisors.config(
        {"web": {"command": [PY, str(TALK), str(tmp_path)], "stdout": "null", "stderr": "null"}}
    )
    supervisors.foreground()

    def four() -> bool:
        with supervisors.client() as client:
            return len(client.tail("web", 10)[0]) == 4

    wait_for(four, what="the first four lines")
    tail = supervisors.ctl("tail", "web", "-n", "3")
    assert tail.returncode == 0, tail
    assert tail.stdout == "err 2\nout 3\nerr 4\n"
    with supervisors.client() as client:
        lines, _cursor = client.tail("web", 3)
    assert [(line.stream, line.text) for line in lines] == [
        ("stderr", "err 2"),
        ("stdout", "out 3"),
        ("stderr", "err 4"),
    ]

    follow = supervisors.ctl_popen("tail", "-f", "web", stderr=subprocess.DEVNULL, text=False)
    try:
        assert follow.stdout is not None
        out = PipeLines(follow.stdout.fileno())
        assert out.wait(4) == ["out 1", "err 2", "out 3", "err 4"]
        for round_ in (1, 2, 3):
            (tmp_path / f"go-{round_}").touch()
            assert out.wait(4 + 2 * round_)[-2:] == [f"follow {round_}", f"follow-err {round_}"]
        assert len(out.lines) == 10
    finally:
        follow.kill()
        follow.wait(10)


def _burst(supervisors: Supervisors, tmp_path: Path, count: int, buffer: int) -> Path:
    """A program "web" that says "start", then writes ``seq 1 count`` at once when the
    returned gate file appears; ``output_buffer`` is ``buffer``. Started, and its
    "start" in the ring, when this returns."""
    go, done = tmp_path / "go", tmp_path / "done"
    burst = f"echo start; while [ ! -e {go} ]; do sleep 0.01; done; seq 1 {count}; : > {done}"
    supervisors.config(
        {"web": {"command": ["/bin/sh", "-c", burst + "; exec sleep 1000"],
                 "stdout": "null", "output_buffer": buffer}}
    )  # fmt: skip
    supervisors.foreground()
    with supervisors.client() as client:
        wait_for(lambda: [line.text for line in client.tail("web", 5)[0]] == ["start"])
    return go


def _release(supervisors: Supervisors, go: Path, count: int) -> None:
    """Open ``_burst``'s gate; return once its last line is in the ring."""
    go.touch()
    wait_for((go.parent / "done").exists, what="the burst written")
    with supervisors.client() as client:
        wait_for(lambda: client.tail("web", 1)[0][-1].text == str(count), what="its last line")


def test_tail_after_a_cursor_says_when_lines_were_lost(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A follower slower than the program: lines written after its cursor that the
    ring (``output_buffer``) no longer holds. ``Client.tail`` says so (``missed``),
    still unpacks as (lines, cursor); a tail that lost nothing says it did not.
    (Followers lost lines in silence: 45 % of them with 60 followers.)"""
    go = _burst(supervisors, tmp_path, 20000, 4096)
    with supervisors.client() as client:
        first = client.tail("web", 5)
        lines, cursor = first
        assert lines == first.lines
        assert not first.missed and first.cursor == cursor
        _release(supervisors, go, 20000)
        later = client.tail("web", 0, after=cursor)
        assert later.missed
        assert later.lines[-1].text == "20000" and later.lines[0].text != "1"
    result = supervisors.ctl("--json", "tail", "web")
    assert result.returncode == 0, result


def test_a_follower_behind_but_within_the_buffer_gets_every_line(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """200,000 lines at once, all within ``output_buffer``: a tail after a cursor
    taken before gets every one of them over two answers, none missed. (It got the
    newest 100,000 with ``missed`` false: ``ctl tail -f`` skipped 87,226 lines
    without a word.)"""
    go = _burst(supervisors, tmp_path, 200000, 4_000_000)
    with supervisors.client() as client:
        cursor = client.tail("web", 1).cursor
        _release(supervisors, go, 200000)
        texts: list[str] = []
        for _ in range(4):
            answer = client.tail("web", 0, after=cursor)
            assert not answer.missed
            texts += [line.text for line in answer.lines]
            cursor = answer.cursor
            if texts and texts[-1] == "200000":
                break
    assert texts == [str(n) for n in range(1, 200_001)]


def test_a_line_longer_than_output_buffer_leaves_tail_and_why_the_lines_before_it(
    supervisors: Supervisors,
) -> None:
    """A program says why it fails on stderr, dumps a 64 KiB line (its configuration,
    a JSON blob) and exits 1: that one line (65,537 bytes, the default output_buffer
    65,536) emptied the ring, so ``ctl why`` showed no stderr and ``ctl tail`` nothing.
    Now both show the error, and the long line's end. With output_buffer = 4096,
    5 KB JSON lines left ``tail`` empty for good: now it shows the newest one's end."""
    dump = (
        "echo 'FATAL: cannot parse /etc/app.conf line 3' >&2; sleep 0.2;"
        " head -c 65536 /dev/zero | tr '\\0' x; echo; exit 1"
    )
    blob = 'printf \'{"pad": "%05000d", "n": %d}\\n\' 0 $i'
    json_lines = f"echo started; for i in 1 2 3; do {blob}; done; exec {SLEEP} 1000"
    supervisors.config(
        {
            "app": {"command": ["/bin/sh", "-c", dump], "restart": "never", "stdout": "null",
                    "stderr": "null"},
            "json": {"command": ["/bin/sh", "-c", json_lines], "stdout": "null",
                     "output_buffer": 4096},
        }
    )  # fmt: skip
    supervisors.foreground()
    supervisors.wait_state("app", "exited")
    why = supervisors.ctl("why", "app")
    assert why.returncode == 0, why
    assert "    stderr: FATAL: cannot parse /etc/app.conf line 3\n" in why.stdout, why.stdout
    tail = supervisors.ctl("tail", "app", "-n", "10")
    assert tail.returncode == 0, tail
    assert tail.stdout == "FATAL: cannot parse /etc/app.conf line 3\n" + "x" * 32767 + "\n"

    def third() -> bool:
        with supervisors.client() as client:
            lines = client.tail("json", 10)[0]
        return bool(lines) and lines[-1].text.endswith('"n": 3}')

    wait_for(third, what="json's third line")
    newest = "0" * (2047 - len('", "n": 3}')) + '", "n": 3}'  # its last 2047 bytes
    assert supervisors.ctl("tail", "json", "-n", "10").stdout == newest + "\n"


DOTS = """
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
for n in range(60_000):
    os.write(1, b"\\n")
    if n % 3 == 0:
        time.sleep(0)
os.write(1, b"done\\n")
time.sleep(1000)
"""


def test_one_byte_writes_keep_the_supervisor_within_about_output_buffer(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A program that writes its output a byte at a time (progress dots, heartbeats,
    short lines flushed one by one): the supervisor kept each read as an entry of
    about 180 bytes, and counted 1 for it: with output_buffer = 50,000 the
    supervisor grew by 7 MB (500,000: 60 MB). Each entry counts what it takes now:
    it grows by less than 2 MB, and ``tail`` still has the newest lines."""
    go = tmp_path / "go"
    supervisors.config(
        {"dots": {"command": [PY, "-c", DOTS, str(go)], "stdout": "null",
                  "output_buffer": 50_000}}
    )  # fmt: skip
    proc = supervisors.foreground()

    def rss() -> int:
        return int(proc_status(proc.pid)["VmRSS"].split()[0]) * 1024

    before = rss()
    go.touch()
    with supervisors.client() as client:

        def done() -> bool:
            lines = client.tail("dots", 1)[0]
            return bool(lines) and lines[-1].text == "done"

        wait_for(done, 25, "its last line")
        lines = client.tail("dots", 10)[0]
    grown = rss() - before
    assert grown < 2 * 1024 * 1024, f"the supervisor grew by {grown} bytes"
    assert [line.text for line in lines] == [""] * 9 + ["done"]


def test_tail_into_a_pipe_shows_bytes_that_are_not_utf8_as_the_replacement_character(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """What docs/supervisor.md says: lines go as they are into a pipe, but for bytes
    that are not UTF-8 (the protocol carries text); the program's file has its bytes."""
    out = tmp_path / "web.log"
    script = "printf 'a\\377b\\000c\\033d\\n'; exec sleep 1000"
    supervisors.config({"web": {"command": ["/bin/sh", "-c", script], "stdout": str(out)}})
    supervisors.foreground()
    wait_for(lambda: out.exists() and out.read_bytes().endswith(b"\n"), what="its line")
    assert out.read_bytes() == b"a\xffb\x00c\x1bd\n"
    proc = subprocess.run(
        [*supervisors.command(), "ctl", "--control", supervisors.control, "tail", "web"],
        env=supervisors.env, capture_output=True, timeout=30,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, b"a\xef\xbf\xbdb\x00c\x1bd\n"), proc


def test_a_tail_of_much_output_that_is_not_utf8_stays_within_what_a_client_reads(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """20 MB of bytes that are not UTF-8 in the buffer: JSON writes each in 6, so
    100,000 lines of them made an answer past a client's 64 MiB, and every tail
    failed ("over 67108864 bytes"), a follower's from the same cursor for ever.
    Answers hold about 4 MiB of output now: ``tail -n`` the newest lines within
    it, a follower all of them, page after page."""
    done = tmp_path / "done"
    code = (
        "import sys, time\n"
        "sys.stdout.buffer.write((b'\\xff' * 999 + b'\\n') * 20000); sys.stdout.flush()\n"
        f"open({str(done)!r}, 'w').close(); time.sleep(1000)\n"
    )
    supervisors.config(
        {"bin": {"command": [sys.executable, "-c", code], "stdout": "null",
                 "output_buffer": 30_000_000}}
    )  # fmt: skip
    supervisors.foreground()
    wait_for(done.exists, what="its output written")
    result = supervisors.ctl("tail", "-n", "100000", "bin")
    assert result.returncode == 0, result.stderr
    shown = result.stdout.splitlines()
    assert 4000 <= len(shown) < 20000 and shown[-1] == "\ufffd" * 999
    with supervisors.client() as client:
        wait_for(lambda: len(client.tail("bin", 1).lines) == 1, what="its lines in the ring")
        count, cursor, answers = 0, 0, 0
        while count < 20000:
            answer = client.tail("bin", 0, after=cursor)
            assert not answer.missed
            count += len(answer.lines)
            cursor = answer.cursor
            answers += 1
        assert count == 20000 and answers > 1


def test_tail_of_a_program_that_keeps_no_output_says_so(
    supervisors: Supervisors,
) -> None:
    """``output_buffer = 0``: nothing to tail. ``ctl tail -f`` printed, for each
    line the program wrote, that lines were lost "faster than this follows them"."""
    ticker = "while true; do echo tick; sleep 0.05; done"
    supervisors.config(
        {"web": {"command": ["/bin/sh", "-c", ticker], "stdout": "null", "output_buffer": 0}}
    )
    supervisors.foreground()
    for args in (("tail", "web"), ("tail", "-f", "web")):
        result = supervisors.ctl(*args)
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert result.stderr == (
            "daemonctx: error: web keeps none of its output (its output_buffer is 0)\n"
        )


def test_tail_follow_ends_when_its_reader_does(supervisors: Supervisors, tmp_path: Path) -> None:
    """``ctl tail -f web | head -2`` (or ``| grep -m1 ready``) returns: once the
    pipe's reader has exited, the next line ends the command, quietly, with 0."""
    ticker = 'while true; do echo "tick $i"; i=$((i+1)); sleep 0.05; done'
    supervisors.config({"web": {"command": ["/bin/sh", "-c", ticker], "stdout": "null"}})
    supervisors.foreground()
    read_end, write_end = os.pipe()
    follow = supervisors.ctl_popen("tail", "-f", "web", stdout=write_end)
    os.close(write_end)
    try:
        out = PipeLines(read_end)
        assert len(out.wait(2)) >= 2  # head -2 has what it wanted
    finally:
        os.close(read_end)
    _out, err = follow.communicate(timeout=10)
    assert (follow.returncode, err) == (0, "")


def test_tail_follow_into_grep_ends_with_grep_though_no_line_comes(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """``ctl tail -f web | grep -m1 ready``, waiting until the program says it is
    ready, of a program that writes nothing after that line: the follow exits 0
    as soon as grep has (as GNU ``tail -f`` does). It long-polled on, 30 s at a
    time, until the program's next line, which never came: the pipeline hung."""
    go = tmp_path / "go"
    script = (
        'echo starting; while [ ! -e "$1" ]; do sleep 0.05; done; echo ready now; exec sleep 1000'
    )
    supervisors.config(
        {"web": {"command": ["/bin/sh", "-c", script, "sh", str(go)], "stdout": "null"}}
    )
    supervisors.foreground()
    wait_for(lambda: supervisors.ctl("tail", "web").stdout == "starting\n", what="its line")
    read_end, write_end = os.pipe()
    try:
        follow = supervisors.ctl_popen("tail", "-f", "web", stdout=write_end)
        grep = supervisors.popen(
            [GREP, "-m1", "ready"], stdin=read_end, stdout=subprocess.PIPE, text=True
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    go.touch()
    out, _ = grep.communicate(timeout=10)
    assert (grep.returncode, out) == (0, "ready now\n")
    _out, err = follow.communicate(timeout=5)  # its long poll lasts 30 s
    assert (follow.returncode, err) == (0, "")
    assert supervisors.ctl("status", "web").returncode == 0  # the supervisor serves on


@pytest.mark.parametrize("into", ["file", "terminal"])
def test_tail_follow_into_a_file_or_a_terminal_goes_on(
    supervisors: Supervisors, tmp_path: Path, into: str
) -> None:
    """``ctl tail -f web > web.log``, or on a terminal: no reader to lose (only
    a pipe's is watched), so the follow goes on, line after line."""
    import pty

    go = tmp_path / "go"
    script = 'echo up; while [ ! -e "$1" ]; do sleep 0.05; done; echo late; exec sleep 1000'
    supervisors.config(
        {"web": {"command": ["/bin/sh", "-c", script, "sh", str(go)], "stdout": "null"}}
    )
    supervisors.foreground()
    wait_for(lambda: supervisors.ctl("tail", "web").stdout == "up\n", what="its line")
    shown = bytearray()
    if into == "file":
        with open(tmp_path / "web.log", "wb") as log:
            follow = supervisors.ctl_popen("tail", "-f", "web", stdout=log)
        reader, writer = os.open(tmp_path / "web.log", os.O_RDONLY), -1
    else:
        reader, writer = pty.openpty()
        follow = supervisors.ctl_popen("tail", "-f", "web", stdout=writer)

    def seen(text: bytes) -> bool:
        while select.select([reader], [], [], 0)[0]:
            chunk = os.read(reader, 65536)
            if not chunk:
                break
            shown.extend(chunk)
        return text in shown

    try:
        wait_for(lambda: seen(b"up"), what="the first line")
        go.touch()
        wait_for(lambda: seen(b"late"), what="the line written since")
        assert follow.poll() is None, follow.communicate()
    finally:
        os.close(reader)
        if writer >= 0:
            os.close(writer)


@pytest.mark.parametrize("where", ["/dev/full", "a full disk"])
def test_tail_into_a_file_it_cannot_write_fails_saying_why(
    supervisors: Supervisors, tmp_path: Path, where: str
) -> None:
    """``ctl tail web > saved.txt`` on a full disk saved nothing and exited 0, and
    ``ctl tail -f`` ended at once with 0: a script that saves a crashed program's
    output believed it had. Now one line, as tail(1)'s, and exit 1; ``status``
    too (exit 4). Only a reader gone (EPIPE) ends quietly: the tests above."""
    ticker = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.05; done'
    supervisors.config({"tick": {"command": ["/bin/sh", "-c", ticker], "stdout": "null"}})
    supervisors.foreground()
    wait_for(lambda: "tick 2" in supervisors.ctl("tail", "tick").stdout, what="its lines")
    full = tmp_path / "full"

    def check() -> None:
        target = Path("/dev/full") if where == "/dev/full" else full / "saved.txt"
        # status: 4, LSB's "status unknown" (its 1 means "dead, pidfile left")
        for args, code in (
            (["tail", "tick", "-n", "5"], 1),
            (["tail", "-f", "tick"], 1),
            (["status"], 4),
        ):
            with open(target, "w") as out:
                proc = supervisors.ctl_popen(*args, stdout=out)
            _out, err = proc.communicate(timeout=20)  # tail -f too: at its first line
            assert (proc.returncode, err) == (
                code,
                "daemonctx: error: write error: No space left on device\n",
            ), args

    if where == "/dev/full":
        check()
        return
    with mounted_tmpfs(full, "64k"):
        fill_up(full)
        check()


def test_tail_of_a_program_with_instances_names_them(supervisors: Supervisors) -> None:
    """``ctl tail web`` when web runs as web:0 and web:1: refused, 2, naming the
    instances to choose from (it said only "name one program instance")."""
    supervisors.config({"web": {"command": [SLEEP, "1000"], "instances": 2}})
    supervisors.foreground()
    result = supervisors.ctl("tail", "web")
    assert (result.returncode, result.stdout) == (2, "")
    expected = "daemonctx: error: tail: name one program instance: web:0, web:1\n"
    assert result.stderr == expected, result.stderr
    assert supervisors.ctl("tail", "web:1").returncode == 0


ESCAPES = "printf 'hello\\033]0;PWNED\\007\\033[2J\\bX\\n' >&2; printf 'a\\tb\\n'; exit 3"


def _ctl_on_a_terminal(supervisors: Supervisors, *args: str) -> bytes:
    """What ``ctl ARGS`` writes to a terminal (a pty), read until it exits."""
    import pty

    controller, terminal = pty.openpty()
    try:
        proc = supervisors.ctl_popen(*args, stdout=terminal, stderr=subprocess.PIPE, text=False)
        os.close(terminal)
        terminal = -1
        out = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            out += chunk
        proc.wait(10)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else proc
        return out
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)


def test_a_program_s_escape_sequences_reach_no_terminal(supervisors: Supervisors) -> None:
    """A program writes a terminal's escape sequences (a window title, clear the
    screen, a backspace): ``ctl why`` shows them escaped (``\\x1b``), as ``status``
    does; ``ctl tail`` too on a terminal, but for tab, while into a pipe its lines
    go as they are, as tail(1)'s. (``why`` printed them raw: the program, perhaps
    run as another user, acted on the operator's terminal.)"""
    supervisors.config(
        {"esc": {"command": ["/bin/sh", "-c", ESCAPES], "restart": "never", "stdout": "null",
                 "stderr": "null"}}
    )  # fmt: skip
    supervisors.foreground()
    supervisors.wait_state("esc", "exited")
    why = supervisors.ctl("why", "esc")
    assert why.returncode == 0, why
    assert "\x1b" not in why.stdout and "\x07" not in why.stdout and "\x08" not in why.stdout
    assert "    stderr: hello\\x1b]0;PWNED\\x07\\x1b[2J\\x08X\n" in why.stdout, why.stdout

    piped = supervisors.ctl("tail", "esc")
    assert piped.stdout == "hello\x1b]0;PWNED\x07\x1b[2J\x08X\na\tb\n", piped
    shown = _ctl_on_a_terminal(supervisors, "tail", "esc").replace(b"\r\n", b"\n")
    assert shown == b"hello\\x1b]0;PWNED\\x07\\x1b[2J\\x08X\na\tb\n", shown


def _following_web(
    supervisors: Supervisors,
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """A supervisor of "web", which wrote a line, and ``ctl tail -f web`` following it."""
    supervisors.config({"web": {"command": ["/bin/sh", "-c", "echo up; exec sleep 1000"]}})
    supervisor = supervisors.foreground()
    wait_for(lambda: supervisors.ctl("tail", "web").stdout == "up\n", what="its line")
    follow = supervisors.ctl_popen("tail", "-f", "web")
    assert follow.stdout is not None
    assert follow.stdout.readline() == "up\n"  # it follows now
    return supervisor, follow


def test_tail_follow_ends_with_0_when_the_supervisor_shuts_down(supervisors: Supervisors) -> None:
    """``ctl tail -f`` while the supervisor shuts down: no more output can come;
    it says so on stderr and exits 0, as the table of exit codes says (it exited
    1, "the supervisor closed the connection")."""
    supervisor, follow = _following_web(supervisors)
    assert supervisors.ctl("shutdown").returncode == 0
    supervisor.wait(20)
    out, err = follow.communicate(timeout=20)
    assert follow.returncode == 0, (out, err)
    assert err == ("daemonctx: the supervisor closed the connection: no more output to follow\n"), (
        err
    )


def test_tail_follow_fails_when_the_supervisor_is_killed(supervisors: Supervisors) -> None:
    """``ctl tail -f`` while the supervisor is SIGKILLed: its socket file is left,
    which an orderly shutdown removes; the follow says the supervisor is gone
    without its shutdown and exits 1. It exited 0 with the words of a shutdown."""
    supervisor, follow = _following_web(supervisors)
    os.kill(supervisors.foreground_pid, signal.SIGKILL)
    supervisor.wait(20)
    out, err = follow.communicate(timeout=20)
    assert follow.returncode == 1, (out, err)
    assert err == (
        "daemonctx: error: the supervisor closed the connection, and its socket file"
        f" {supervisors.control} remains (killed?): no more output to follow\n"
    ), err


def test_tail_follow_with_a_short_timeout_waits_for_a_quiet_program(
    supervisors: Supervisors,
) -> None:
    """``ctl --timeout 1 tail -f web`` of a program quiet for 3 s: each follow
    request is a long poll of up to 30 s, which the timeout comes on top of; it
    failed after 1 s ("no answer from the supervisor within 1 s")."""
    script = "echo up; sleep 3; echo late; exec sleep 1000"
    supervisors.config({"web": {"command": ["/bin/sh", "-c", script]}})
    supervisors.foreground()
    wait_for(lambda: supervisors.ctl("tail", "web").stdout.startswith("up\n"), what="its line")
    follow = supervisors.ctl_popen("--timeout", "1", "tail", "-f", "web")
    assert follow.stdout is not None
    assert follow.stdout.readline() == "up\n"
    assert follow.stdout.readline() == "late\n", follow.stderr.read() if follow.poll() else ""
    assert follow.poll() is None


@pytest.mark.parametrize("then", ["removed", "added again"])
def test_tail_follow_ends_when_a_reload_removes_the_program(
    supervisors: Supervisors, then: str
) -> None:
    """``ctl tail -f web``, then a reload removes web (and another adds it back):
    the follower says so on stderr and exits 0 at once, as at a shutdown. It
    waited 30 s on the old instance's ring, then went on with the new process
    from the old cursor: its first lines skipped, nothing said."""
    other = {"command": [SLEEP, "1000"]}
    web = {"command": ["/bin/sh", "-c", "echo old; exec sleep 1000"]}
    supervisors.config({"other": other, "web": web})
    supervisors.foreground()
    wait_for(lambda: supervisors.ctl("tail", "web").stdout == "old\n", what="its line")
    follow = supervisors.ctl_popen("tail", "-f", "web")
    assert follow.stdout is not None
    assert follow.stdout.readline() == "old\n"  # it follows now, waiting for a line
    supervisors.config({"other": other})
    assert supervisors.ctl("reload").returncode == 0
    if then == "added again":
        new = {"command": ["/bin/sh", "-c", "echo new; exec sleep 1000"]}
        supervisors.config({"other": other, "web": new})
        assert supervisors.ctl("reload").returncode == 0
    started = time.monotonic()
    out, err = follow.communicate(timeout=20)
    assert time.monotonic() - started < 10, "it waited for its long poll to end"
    assert (follow.returncode, out) == (0, ""), (out, err)
    assert err == "daemonctx: web was removed (ctl reload): no more output to follow\n", err


@pytest.mark.parametrize("how", ["ctl reopen", "SIGHUP"])
def test_reopen_says_in_one_line_which_file_it_cannot_reopen(
    supervisors: Supervisors, tmp_path: Path, how: str
) -> None:
    """``ctl reopen`` after the log's directory was removed: one line naming the
    program's file, as a start's error does, without Python's ``[Errno 2]``. The
    supervisor's log says it once, for ``ctl reopen`` too (it said nothing), and
    not "cannot reopen: cannot reopen ..." then "SIGHUP: log files reopened"."""
    logs = tmp_path / "logs"
    logs.mkdir()
    supervisors.config({"web": {"command": [SLEEP, "1000"], "stdout": str(logs / "web.log")}})
    proc = supervisors.foreground()
    shutil.rmtree(logs)
    error = (
        f"cannot reopen web's stdout {logs}/web.log: no such directory {logs}"
        " (the file open before stays in use)"
    )
    by = "reopen" if how == "ctl reopen" else "SIGHUP"
    if how == "ctl reopen":
        result = supervisors.ctl("reopen")
        assert (result.returncode, result.stderr) == (1, f"daemonctx: error: {error}\n"), result
    else:
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: error in log_text(supervisors), what="the failed reopen in the log")
        assert supervisors.ctl("ping").returncode == 0  # the loop is past the handler
    said = [line.split(" daemonctx: ", 1)[1] for line in log_text(supervisors).splitlines()]
    assert [line for line in said if "cannot reopen" in line] == [f"{by}: {error}"], said
    assert not [line for line in said if "reopened" in line], said
    fds = [os.readlink(fd) for fd in Path(f"/proc/{proc.pid}/fd").iterdir()]
    assert f"{logs}/web.log (deleted)" in fds, "web's output goes on into the file it had"


# -- why ----------------------------------------------------------------------------------

CRASH = 'echo "boom: cannot bind (pid $$)" >&2; exit 3'


def crash_loop(supervisors: Supervisors, **keys: Any) -> None:
    supervisors.config(
        {
            "crashy": {
                "command": ["/bin/sh", "-c", CRASH],
                "restart": "always",
                "restart_delay": 0.05,
                "start_limit": 3,
                **keys,
            }
        }
    )
    supervisors.foreground()
    info = supervisors.wait_state("crashy", "failed", timeout=10)
    assert "3 starts within" in info.text, info.text


def test_why_after_a_crash_loop_shows_each_run_its_decision_and_stderr(
    supervisors: Supervisors,
) -> None:
    crash_loop(supervisors)
    why = supervisors.ctl("why", "crashy")
    assert why.returncode == 0, why
    text = why.stdout
    assert text.startswith("crashy: failed: 3 starts within"), text
    assert len(re.findall(r"pid \d+, (?:ready [\d:.]+|never ready), exited 3 at ", text)) == 3, text
    decisions = re.findall(r"^    then: (.*)$", text, re.MULTILINE)
    assert len(decisions) == 3, text
    assert decisions[0] == "restarted at once"
    assert re.fullmatch(
        rf"backoff {DURATION} \(attempt 3, exited 3 {DURATION} after start\)", decisions[1]
    ), decisions
    assert decisions[2].startswith("failed: 3 starts within 60 s (last: exited 3"), decisions
    # The stderr lines are shown (whose they are: see the next test).
    assert re.search(r"^    stderr: boom: cannot bind \(pid \d+\)$", text, re.MULTILINE), text

    as_json = supervisors.ctl("--json", "why", "crashy")
    assert as_json.returncode == 0, as_json
    (program,) = json.loads(as_json.stdout)["programs"]
    assert program["name"] == "crashy" and program["status"]["state"] == "failed"
    runs = program["runs"]
    assert len(runs) == 3
    assert [run["exit"]["code"] for run in runs] == [3, 3, 3]
    assert [run["exit"]["text"] for run in runs] == ["exited 3"] * 3
    assert [run["decision"] for run in runs] == decisions
    assert all(run["stopped_by"] is None and run["steps"] == [] for run in runs)
    assert len({run["pid"] for run in runs}) == 3
    assert all(run["started"] <= run["ended"] for run in runs)
    assert any("boom: cannot bind" in line for run in runs for line in run["stderr"])
    with supervisors.client() as client:
        ((_info, infos),) = client.why("crashy")
    assert [info.pid for info in infos] == [run["pid"] for run in runs]


def test_why_shows_each_run_its_own_stderr(supervisors: Supervisors) -> None:
    """Each run writes "boom: cannot bind (pid ITS PID)" and exits 3: each run
    shows its own line, and only its own (not the earlier runs' lines, which the
    ring still holds; not missing because the exit was seen before the line was
    read)."""
    crash_loop(supervisors)
    with supervisors.client() as client:
        ((_info, runs),) = client.why("crashy")
    assert [run.stderr for run in runs] == [(f"boom: cannot bind (pid {run.pid})",) for run in runs]


def test_why_shows_a_run_s_last_line_without_a_newline_though_a_child_holds_the_pipe(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """Last words without a newline (``printf 'fatal: ...' >&2``) while a child the
    run started still holds stderr: the line reached the ring only at the pipe's
    EOF, after the exit had taken the run's stderr. ``ctl why`` never showed it,
    or showed it under the next run, beside that run's pid. Each run shows its own
    now, and the file has the line once, whole."""
    once = "echo 'first line' >&2; printf 'fatal: config missing' >&2; sleep 100 & exit 1"
    loop = 'echo "run $$ starting" >&2; printf "fatal in run $$" >&2; sleep 100 & exit 1'
    errors = tmp_path / "once.err"
    supervisors.config(
        {
            "once": {"command": ["/bin/sh", "-c", once], "restart": "never",
                     "stderr": str(errors)},
            "loop": {"command": ["/bin/sh", "-c", loop], "restart": "always",
                     "restart_delay": 0.05, "start_limit": 3, "stderr": "null"},
        }
    )  # fmt: skip
    supervisors.foreground()
    supervisors.wait_state("once", "exited")
    supervisors.wait_state("loop", "failed")
    with supervisors.client() as client:
        ((_once, (run,)), (_loop, runs)) = client.why("once", "loop")
    assert run.stderr == ("first line", "fatal: config missing")
    assert len(runs) == 3
    assert [run.stderr for run in runs] == [
        (f"run {run.pid} starting", f"fatal in run {run.pid}") for run in runs
    ]
    why = supervisors.ctl("why", "once")
    assert why.stdout.endswith("    stderr: first line\n    stderr: fatal: config missing\n")
    wait_for(lambda: errors.read_bytes().endswith(b"\n"), what="once.err's last line")
    assert errors.read_bytes() == b"first line\nfatal: config missing\n"


def test_why_keeps_history_runs(supervisors: Supervisors) -> None:
    crash_loop(supervisors, history=2)
    with supervisors.client() as client:
        ((_info, runs),) = client.why("crashy")
    assert len(runs) == 2
    decisions = [run.decision or "" for run in runs]
    assert decisions[0].startswith("backoff") and decisions[1].startswith("failed"), decisions
    why = supervisors.ctl("why", "crashy")
    assert len(re.findall(r"exited 3 at ", why.stdout)) == 2, why.stdout


# -- stop ladders --------------------------------------------------------------------------


def test_stop_ladder_escalates_term_quit_kill_and_records_each_step(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    pidfile, quitfile = tmp_path / "web.pid", tmp_path / "quit"
    supervisors.config(
        {
            "web": {
                "command": [PY, str(LADDER), str(pidfile), str(quitfile)],
                "stop": ["TERM", 0.3, "QUIT", 0.3, "KILL"],
            }
        }
    )
    supervisors.foreground()
    pid = running(supervisors, "web")["web"]
    wait_for(pidfile.exists, what="web to ignore SIGTERM")
    assert int(pidfile.read_text()) == pid

    began = time.monotonic()
    stopped = supervisors.ctl("stop", "web")
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped
    assert "web  stopped" in stopped.stdout
    assert 0.6 <= took < 3, took
    assert quitfile.read_text() == "quit\n", "the QUIT step ran, once"
    wait_gone(pid, 5)
    assert not pid_alive(pid)

    with supervisors.client() as client:
        ((info, runs),) = client.why("web")
    assert info.state == "stopped"
    (run,) = runs
    assert run.exit is not None and run.exit.text == "killed by SIGKILL"
    assert run.stopped_by is not None and "through the control socket" in run.stopped_by
    term, quit_, kill = run.steps
    assert term == "SIGTERM"
    assert quit_.startswith("SIGQUIT after ") and kill.startswith("SIGKILL after "), run.steps
    after_quit = duration(quit_.removeprefix("SIGQUIT after "))
    after_kill = duration(kill.removeprefix("SIGKILL after "))
    assert 0.3 <= after_quit < 1.5 and 0.6 <= after_kill < 2.5 and after_quit < after_kill
    why = supervisors.ctl("why", "web")
    steps = rf"\(SIGTERM, SIGQUIT after {DURATION}, SIGKILL after {DURATION}\)"
    pattern = rf"stopped by uid {os.getuid()} .*{steps}"
    assert re.search(pattern, why.stdout), why.stdout


@pytest.mark.parametrize("how", [("stop", "web"), ("shutdown",)], ids=["stop", "shutdown"])
def test_a_stopped_program_is_continued_so_that_its_term_handler_runs(
    supervisors: Supervisors, tmp_path: Path, how: tuple[str, ...]
) -> None:
    """A program stopped by SIGSTOP (``ctl signal STOP``, a debugger) keeps SIGTERM
    pending until it is continued: the supervisor sends SIGCONT right after the
    stop signal, to the same processes, as systemd does. Its TERM handler runs at
    once, at ``ctl stop`` as at ``ctl shutdown``: no SIGKILL after ``stop_timeout``."""
    clean = tmp_path / "clean"
    script = f"trap 'echo clean > {clean}; exit 0' TERM; while :; do sleep 0.1; done"
    supervisors.config({"web": {"command": ["/bin/sh", "-c", script], "stop_timeout": 10}})
    proc = supervisors.foreground()
    pid = supervisors.wait_state("web", "running").pid
    assert supervisors.ctl("signal", "STOP", "web").returncode == 0
    wait_for(lambda: proc_stat(pid)[0] == "T", what="web stopped")

    began = time.monotonic()
    result = supervisors.ctl(*how)
    took = time.monotonic() - began
    assert result.returncode == 0, result
    assert took < 5, took
    assert clean.read_text() == "clean\n", "its TERM handler ran"
    if how == ("shutdown",):
        assert proc.wait(20) == 0
        assert "web: stopped (exited 0" in log_text(supervisors)
        return
    with supervisors.client() as client:
        ((info, runs),) = client.why("web")
    (run,) = runs
    assert info.state == "stopped"
    assert run.exit is not None and run.exit.text == "exited 0"
    assert run.steps == ("SIGTERM",), run.steps


@needs_root
def test_the_supervisors_own_log_follows_logrotate_and_never_a_planted_symlink(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """logrotate moves supervisor.log away: the next line goes to a new file (mode
    0640) at the path, the old lines stay in supervisor.log.1. Then another user,
    given the directory, puts a symlink there: the supervisor does not write
    through it (it goes on in the file it has)."""
    log, rotated = supervisors.log, Path(f"{supervisors.log}.1")
    supervisors.config({"web": {"command": ["/bin/sleep", "1000"]}})
    supervisors.foreground()
    assert "web: running" in log.read_text()
    log.rename(rotated)
    assert supervisors.ctl("stop", "web").returncode == 0
    wait_for(lambda: log.exists() and "web: stopped" in log.read_text(), what="a new log")
    assert "web: running" in rotated.read_text() and "web: stopped" not in rotated.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o640

    target = tmp_path / "target"
    target.write_text("")
    log.rename(rotated)
    os.chmod(tmp_path, 0o777)  # another user could now plant a link
    log.symlink_to(target)
    assert supervisors.ctl("start", "web").returncode == 0
    # A request's log lines are written after its answer: wait for them.
    wait_for(lambda: "web: running" in rotated.read_text(), what="the start's log line")
    assert target.read_text() == "", "written through a symlink"


def test_a_stop_overtaken_by_a_start_is_answered(supervisors: Supervisors, tmp_path: Path) -> None:
    """ctl stop waits for the program's process to be gone; a ctl start while it
    stops starts another run once it is: the stop is answered then (exit 1: the
    program runs again), never left waiting."""
    slow = ignoring_term(tmp_path, 1)
    supervisors.config({"a": slow})
    supervisors.foreground()
    wait_for((tmp_path / "a").exists, what="a to ignore SIGTERM")
    old = running(supervisors, "a")["a"]
    stop = supervisors.ctl_popen("stop", "a")
    try:
        wait_for(lambda: supervisors.status("a").state == "stopping", what="a stopping")
        assert supervisors.ctl("start", "a").returncode == 0
        out, _err = stop.communicate(timeout=10)
        assert stop.returncode == 1 and out.startswith("a  running (pid "), out
        assert running(supervisors, "a")["a"] != old
    finally:
        stop.kill()


def test_the_supervisor_s_own_log_on_a_full_disk_is_said_once_not_a_traceback_a_line(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    with mounted_tmpfs(tmp_path / "full", "64k", supervisors.kill_all) as full:
        log = full / "supervisor.log"
        supervisors.config({"web": {"command": [SLEEP, "1000"]}}, log=str(log))
        proc = supervisors.foreground()
        fill_up(full)
        filler = full / "filler"
        for _ in range(40):  # a few log records each (request, stop, start): pages of them
            assert supervisors.ctl("restart", "web").returncode == 0
        filler.unlink()
        assert supervisors.ctl("restart", "web").returncode == 0
        wait_for(
            lambda: "log records before the one above were dropped" in log.read_text(),
            what="the count of records dropped",
        )
        assert supervisors.ctl("shutdown").returncode == 0
        _out, err = proc.communicate(timeout=10)
    assert "Logging error" not in err and "Traceback" not in err, err
    assert err.count(f"cannot write the supervisor log {log}: No space left on device") == 1, err


def _without_log(path: Path) -> None:
    """Take the ``log`` line out of the configuration file ``path``: standard error."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if not line.startswith("log =")) + "\n")


def _read_all(fd: int) -> bytes:
    """What the non-blocking pipe ``fd`` holds now."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("where", ["stderr", "fifo"])
def test_a_log_reader_that_reads_nothing_never_blocks_the_supervisor(
    supervisors: Supervisors, tmp_path: Path, where: str
) -> None:
    """The supervisor's own log is a pipe whose reader reads nothing (its standard
    error, as a stalled terminal or journald; or a FIFO named as ``log``): requests
    that log far more than the pipe holds are all answered, the records that do not
    fit are dropped, and once the reader reads, the next record is followed by their
    count. (It blocked in write(): no answers, no output drained, no restarts.)"""
    import fcntl

    supervisors.config({"web": {"command": [SLEEP, "1000"]}})
    if where == "fifo":
        fifo = tmp_path / "log.fifo"
        os.mkfifo(fifo)
        read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        write_end = -1
        supervisors.config({"web": {"command": [SLEEP, "1000"]}}, log=str(fifo))
    else:
        _without_log(supervisors.config_path)
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
    try:
        fcntl.fcntl(read_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
        command = [*supervisors.command(), "supervise", "--config", str(supervisors.config_path)]
        proc = supervisors.popen(
            [*command, "--foreground"],
            env=supervisors.env,
            stdout=subprocess.DEVNULL,
            stderr=write_end if write_end >= 0 else subprocess.DEVNULL,
        )
        if write_end >= 0:
            os.close(write_end)
            write_end = -1
        supervisors.wait_answering(proc)
        with supervisors.client(timeout=10) as client:
            for _ in range(60):  # about 300 bytes of log each: 18 KB
                (info,) = client.restart("web")
                assert info.running
        assert proc.poll() is None
        heard = _read_all(read_end)
        assert b"web: running" in heard and len(heard) <= 4096
        with supervisors.client(timeout=10) as client:
            client.restart("web")

        def counted() -> int:
            nonlocal heard
            heard += _read_all(read_end)
            found = re.search(rb"\((\d+) log records before the one above were dropped\)", heard)
            return int(found.group(1)) if found else 0

        assert wait_for(counted, what="the count of records dropped") > 100
        assert supervisors.ctl("shutdown").returncode == 0
        assert proc.wait(timeout=20) == 0
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_a_reload_that_changes_log_logs_to_the_new_file_from_then_on(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """``log`` changed in the file: one that cannot be opened is refused, one line,
    nothing changed (by the dry run too); then a good one is opened at the reload
    and used from then on, the old one's last line says where the log went, and
    the old file is closed.
    (It said "change [supervisor] log (live)" and went on in the old file.)"""
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    programs: dict[str, dict[str, Any]] = {"web": {"command": [SLEEP, "1000"]}}
    supervisors.config(programs, log=str(old))
    proc = supervisors.foreground()
    missing = tmp_path / "missing" / "new.log"
    supervisors.config({**programs, "db": {"command": [SLEEP, "1001"]}}, log=str(missing))
    for args in (("--dry-run",), ()):  # the dry run said it would do, and then it did not
        refused = supervisors.ctl("reload", *args)
        assert refused.returncode == 1, refused
        assert refused.stderr == (
            f"daemonctx: error: nothing changed: supervisor log {missing}:"
            f" no such directory {missing.parent}\n"
        )
    with supervisors.client() as client:
        assert [info.name for info in client.status()] == ["web"]

    supervisors.config(programs, log=str(new))
    assert reload(supervisors) == ["change [supervisor] log (live)"]
    assert supervisors.ctl("restart", "web").returncode == 0
    wait_for(lambda: new.exists() and "web: running" in new.read_text(), what="the new log")
    assert "reload: change [supervisor] log" in new.read_text()
    last = old.read_text().splitlines()[-1]
    assert last.endswith(f"reload: the supervisor's log goes to {new} from now on"), last
    assert "restart" not in old.read_text()
    links = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
    assert str(new) in links and str(old) not in links


def test_a_reload_that_removes_log_of_a_daemon_is_refused_its_log_goes_nowhere_else(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """A supervisor that became a daemon (its standard error /dev/null): a reload
    that removes ``log`` is refused, one line saying where the log would go, and
    the log goes on in its file. ``log = "/dev/null"`` says it is meant: applied,
    and the old log's last line says so. (The log went to /dev/null, its last
    line saying "standard error".)"""
    programs = {"a": {"command": [SLEEP, "1000"]}}
    path = supervisors.config(programs)
    assert supervisors.supervise().returncode == 0
    daemon = live_owner(supervisors.control)
    assert daemon is not None
    supervisors.add(daemon)
    assert os.readlink(f"/proc/{daemon}/fd/2") == "/dev/null"
    text = path.read_text()
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("log =")))
    for args in (("--dry-run",), ()):
        refused = supervisors.ctl("reload", *args)
        assert (refused.returncode, refused.stderr) == (
            1,
            f"daemonctx: error: nothing changed: {path}: [supervisor] log: without it the log"
            ' goes to standard error (/dev/null): keep a log file, or set log = "/dev/null"'
            " to keep none\n",
        ), refused
    assert supervisors.ctl("restart", "a").returncode == 0
    wait_for(lambda: "restart {'names': ['a']}" in log_text(supervisors), what="the restart logged")
    assert str(supervisors.log) in proc_fds(daemon).values()

    supervisors.config(programs, log="/dev/null")
    assert reload(supervisors) == ["change [supervisor] log (live)"]
    last = log_text(supervisors).splitlines()[-1]
    assert last.endswith("reload: the supervisor's log goes to /dev/null from now on"), last
    assert str(supervisors.log) not in proc_fds(daemon).values()


def test_a_reload_that_removes_log_says_what_standard_error_is(supervisors: Supervisors) -> None:
    """In the foreground (standard error a pipe here; a terminal, the journal):
    the old log's last line names it, and the reload's lines are there."""
    path = supervisors.config({"a": {"command": [SLEEP, "1000"]}})
    proc = supervisors.foreground()
    assert proc.stderr is not None
    path.write_text(
        "\n".join(line for line in path.read_text().splitlines() if not line.startswith("log ="))
    )
    assert reload(supervisors) == ["change [supervisor] log (live)"]
    last = log_text(supervisors).splitlines()[-1]
    expected = "reload: the supervisor's log goes to standard error (a pipe) from now on"
    assert last.endswith(expected), last
    request, change = PipeLines(proc.stderr.fileno()).wait(2)[:2]
    assert request.endswith("reload {'dry_run': False}"), request
    assert change.endswith("reload: change [supervisor] log"), change


@pytest.mark.parametrize("kind", ["directory", "fifo"])
@pytest.mark.parametrize("key", ["log", "stdout"])
def test_a_reload_dry_run_refuses_what_the_reload_refuses(
    supervisors: Supervisors, tmp_path: Path, kind: str, key: str
) -> None:
    """A new ``log`` or program ``stdout`` that is a directory, or a FIFO nobody
    reads: the dry run said "would change", the reload then "nothing changed:
    cannot open ...". Both say the same now; the dry run creates nothing."""
    target = tmp_path / "target"
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)
    web: dict[str, Any] = {"command": [SLEEP, "1000"], "stdout": str(tmp_path / "web.log")}
    supervisors.config({"web": web})
    supervisors.foreground()
    supervisors.wait_state("web", "running")
    if key == "log":
        supervisors.config({"web": web}, log=str(target))
        what = "supervisor log"
    else:
        supervisors.config({"web": {**web, "stdout": str(target)}})
        what = "web's stdout"
    reason = "Is a directory" if kind == "directory" else "no process reads the FIFO"
    error = f"daemonctx: error: nothing changed: cannot open {what} {target}: {reason}\n"
    for args in (("--dry-run",), ()):
        result = supervisors.ctl("reload", *args)
        assert (result.returncode, result.stderr) == (1, error), result


def test_two_supervisors_in_one_process_each_log_where_they_are_told(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """``Supervisor(log=...)`` twice in one Python process, one after the other: each
    logs to its own file, and its end takes its handler away. (The second one's
    lines went to the first one's file.)"""
    code = f"""
import logging, threading, time
from daemonctx.supervisor import Client, Program, Supervisor

def shut_down(control):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            Client(control, timeout=5).shutdown(wait=False)
            return
        except Exception:
            time.sleep(0.01)

for n in (1, 2):
    control = {str(tmp_path)!r} + f"/c{{n}}.sock"
    log = {str(tmp_path)!r} + f"/sup{{n}}.log"
    program = Program(f"p{{n}}", [{SLEEP!r}, "1000"])
    threading.Thread(target=shut_down, args=(control,)).start()
    assert Supervisor(control=control, log=log, programs=[program]).serve() == 0
print(logging.getLogger("daemonctx.supervisor").handlers)
"""
    result = run_script(code, env=supervisors.env)
    assert result.stdout == "[]\n", result
    first, second = (tmp_path / "sup1.log").read_text(), (tmp_path / "sup2.log").read_text()
    assert "p1: running" in first and "c2.sock" not in first and "p2" not in first
    assert "p2: running" in second and "c1.sock" not in second and "p1" not in second


def test_while_a_reload_s_old_instance_stops_the_new_ones_wait_whatever_is_asked(
    supervisors: Supervisors, tmp_path: Path
) -> None:
    """web -> web:0, web:1 with the old web ignoring SIGTERM: ctl start web:0 waits
    for it too (status says so); ctl stop web waits for it, and cancels the starts
    to come; a second reload (to three) before it is gone adds web:2 stopped, as
    the program was stopped on purpose, and starts none beside it."""

    def logged(line: str) -> None:
        wait_for(lambda: line in log_text(supervisors), what=line)

    supervisors.config({"web": ignoring_term(tmp_path, 60)})
    supervisors.foreground()
    wait_for((tmp_path / "web").exists, what="web to ignore SIGTERM")
    old = running(supervisors, "web")["web"]
    supervisors.config({"web": {**ignoring_term(tmp_path, 60), "instances": 2}})
    reload(supervisors)
    assert "starts once web stopped" in supervisors.status("web:0").text
    start = supervisors.ctl_popen("start", "web:0")
    try:
        logged("start {'names': ['web:0']}")
        assert start.poll() is None, "it waits for web to be gone"
        stop = supervisors.ctl_popen("stop", "web")
        logged("stop {'names': ['web']}")
        assert start.wait(10) == 1  # answered: the stop came, web:0 stays stopped
        supervisors.config({"web": {**ignoring_term(tmp_path, 60), "instances": 3}})
        reload(supervisors)
        with supervisors.client() as client:
            states = {info.name: info.state for info in client.status()}
        expected = {"web": "stopping", "web:0": "stopped", "web:1": "stopped"}
        assert states == {**expected, "web:2": "stopped"}, states
        assert stop.poll() is None, "web still runs: the stop is not over"
        os.kill(old, signal.SIGKILL)
        out, _err = stop.communicate(timeout=10)
        assert stop.returncode == 0, out
    finally:
        start.kill()
    wait_for(lambda: status_names(supervisors) == ["web:0", "web:1", "web:2"], what="web gone")
    with supervisors.client() as client:
        assert [info.state for info in client.status("web")] == ["stopped"] * 3


# -- a reload while a program owes a cut line ------------------------------------------------

# Program a: lines of 60 000 bytes, back to back; b: numbered 30-byte lines, 1 kHz.
GIANT_LINES = "import os\nwhile True: os.write(1, b'A' * 60000 + b'\\n')\n"
SHORT_LINES = (
    "import os, time\n"
    "n = 0\n"
    "while True:\n"
    "    os.write(1, b'b%06d ' % n + b'B' * 22 + b'\\n')\n"
    "    n += 1\n"
    "    time.sleep(0.001)\n"
)
SHORT_LINE = re.compile(rb"b\d{6} B{22}")


class TrickleReader:
    """A thread reading a pipe 4 KiB a millisecond until its end: slow enough that a
    60 000-byte line goes out in parts."""

    def __init__(self, fd: int) -> None:
        import threading

        self.fd = fd
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return
            self.chunks.append(chunk)
            time.sleep(0.001)

    def rest(self, timeout: float = 20) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the pipe's end"
        return b"".join(self.chunks)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["null", "removed"])
def test_a_reload_that_closes_a_program_s_output_mid_line_glues_nothing_onto_it(
    supervisors: Supervisors, tmp_path: Path, how: str
) -> None:
    """Programs a (60 000-byte lines) and b (30-byte lines) on "inherit" stdout, a pipe
    read slowly; every 0.3 s a reload switched a's stdout to "null" and back (or
    removed a and added it back). A reload closing a's target while it owed the rest
    of a cut line dropped that rest, and b's next line went straight after the half
    line: "AAAA...AAAAb001234 BBB...". Now the rest is written first by the next
    target on the pipe (or a's closing target ends it): every line whole."""
    a = {"command": [PY, "-c", GIANT_LINES], "stdout": "inherit"}
    b = {"command": [PY, "-c", SHORT_LINES], "stdout": "inherit"}
    supervisors.config({"a": a, "b": b})
    read_end, write_end = os.pipe()
    reader = TrickleReader(read_end)
    try:
        proc = supervisors.popen(
            [*supervisors.command(), "supervise", "--config", str(supervisors.config_path),
             "--foreground"],
            env=supervisors.env, stdout=write_end, stderr=(tmp_path / "stderr").open("wb"),
        )  # fmt: skip
        os.close(write_end)
        write_end = -1
        supervisors.wait_answering(proc)
        with supervisors.client() as client:
            for cycle in range(24):
                time.sleep(0.3)
                if cycle % 2 == 0:
                    programs = {"a": {**a, "stdout": "null"}, "b": b} if how == "null" else {"b": b}
                else:
                    programs = {"a": a, "b": b}
                supervisors.config(programs)
                client.reload()
        assert proc.poll() is None
        proc.terminate()
        proc.wait(20)
        out = reader.rest()
    finally:
        if write_end >= 0:
            os.close(write_end)
        reader.thread.join(20)
        os.close(read_end)
    lines = out.split(b"\n")
    last = lines.pop()  # the supervisor exited while a's line was cut: its start only
    assert last.strip(b"A") == b"", last[:80]
    giant = short = 0
    for line in lines:
        if line == b"A" * 60000:
            giant += 1
        elif line.strip(b"A") == b"" and len(line) < 60000:
            pass  # a removed, its line cut short: what it wrote of it, ended at its exit
        elif SHORT_LINE.fullmatch(line):
            short += 1
        elif not line.startswith(b"20"):  # the supervisor's log is in its file
            raise AssertionError(
                f"not a whole line: {len(line)} bytes: {line[:40]!r}...{line[-40:]!r}"
            )
    assert giant and short, (giant, short)


# -- threads that cannot start ----------------------------------------------------------------


def _at_its_limit(group: Path, pid: int) -> None:
    """Put ``pid`` (its threads) in ``group``, then let the group make no more tasks."""
    (group / "cgroup.procs").write_text(str(pid))
    (group / "pids.max").write_text((group / "pids.current").read_text())


@pytest.mark.timeout(90)
def test_a_start_whose_spawner_thread_cannot_start_forks_from_the_loop_instead(
    pids_cgroup: Path, supervisors: Supervisors
) -> None:
    """128 programs (the next start is the spawner's first), then ``ctl start b`` in
    a pids cgroup at its limit: "daemonctx: error: RuntimeError: can't start new
    thread", and b "starting" for good (a later start never answered). Now the
    spawner's thread that cannot start means forking from the loop's thread, said
    once in the log; that fork fails too (EAGAIN), a start failure tried again
    after the backoff; once the limit is lifted b runs."""
    sleepers = {"command": [SLEEP, "1000"], "stdout": "null", "stderr": "null"}
    supervisors.config(
        {
            "web": {**sleepers, "instances": 128},
            "b": {**sleepers, "autostart": False, "start_limit": 0, "restart_delay": 0.2},
        }
    )
    proc = supervisors.foreground()
    _at_its_limit(pids_cgroup, proc.pid)
    start = supervisors.ctl_popen("start", "b")
    wait_for(
        lambda: (
            "programs are forked from the loop's thread: cannot start the spawner thread"
            in supervisors.log.read_text()
        ),
        20,
        what="the fallback, in the log",
    )
    wait_for(
        lambda: "Resource temporarily unavailable" in supervisors.log.read_text(),
        20,
        what="b's failed start",
    )
    (pids_cgroup / "pids.max").write_text("max")
    info = supervisors.wait_state("b", "running", 30)
    assert info.pid and pid_alive(info.pid)
    out, err = start.communicate(timeout=30)
    assert "RuntimeError" not in out + err, (out, err)
    assert "internal error" not in out + err, (out, err)
    assert "Traceback" not in supervisors.log.read_text()
    proc.terminate()
    proc.wait(30)


@needs_root
@pytest.mark.timeout(90)
def test_a_start_whose_terminal_writer_cannot_start_fails_and_is_tried_again(
    pids_cgroup: Path, open_dir: Path
) -> None:
    """The supervisor run as nobody on root's terminal (a pty: written by a thread),
    its log in a file, b's stdout "inherit" and no thread on the terminal yet; in a
    pids cgroup at its limit, ``ctl start b``: a traceback at ``Thread.start`` and b
    "starting" for good. Now b's start fails ("cannot open b's stdout ..."), is
    tried again after its backoff, and runs once the limit is lifted, its lines on
    the terminal."""
    supervisors, run, python, as_nobody = _supervisors_as_nobody(open_dir)
    supervisors.log = run / "supervisor.log"
    talk = "import time\nwhile True:\n    print('b is here', flush=True)\n    time.sleep(0.1)\n"
    supervisors.config(
        {
            "b": {
                "command": [python, "-c", talk],
                "stdout": "inherit",
                "autostart": False,
                "start_limit": 0,
                "restart_delay": 0.2,
            }
        },
        log=str(supervisors.log),
    )
    env = {**supervisors.env, "PYTHONPATH": str(READABLE_ROOT)}
    master, slave = os.openpty()
    seen = bytearray()
    try:
        proc = supervisors.popen(
            [*as_nobody, python, "-m", "daemonctx", "supervise", "--config",
             str(supervisors.config_path), "--foreground"],
            env=env, stdout=slave, stderr=slave,
        )  # fmt: skip
        supervisors.wait_answering(proc)
        assert proc.poll() is None
        _at_its_limit(pids_cgroup, proc.pid)
        with supervisors.client(timeout=20) as client:
            (info,) = client.start("b")  # answered once the start failed
        assert info.state != "starting", info
        wait_for(
            lambda: (
                "cannot open b's stdout (fd 1): cannot start a thread to write it"
                in supervisors.log.read_text()
            ),
            20,
            what="b's failed start, in the log",
        )
        (pids_cgroup / "pids.max").write_text("max")
        supervisors.wait_state("b", "running", 30)

        def said() -> bool:
            while select.select([master], [], [], 0)[0]:
                seen.extend(os.read(master, 1 << 16))
            return b"b is here" in seen

        wait_for(said, 10, what="b's lines on the terminal")
        assert "Traceback" not in supervisors.log.read_text()
        proc.terminate()
        proc.wait(30)
    finally:
        supervisors.kill_all()
        os.close(master)
        os.close(slave)
