"""The README's command example, run as written (with its paths moved to a
temporary directory and a free port), and its output compared line by line."""

from __future__ import annotations

import re
import shlex
import socket
from pathlib import Path

import pytest
from conftest import ROOT, Supervisors, Tracker, run_script, wait_for


def readme_console_block() -> list[tuple[str, str]]:
    """(command, expected output) pairs of the README's ``console`` block that runs
    ``daemonctx start``."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        if "daemonctx start" in block:
            pairs: list[tuple[str, str]] = []
            for line in block.splitlines():
                if line.startswith("$ "):
                    pairs.append((line[2:], ""))
                else:
                    command, output = pairs[-1]
                    pairs[-1] = (command, output + line + "\n")
            return pairs
    raise AssertionError("README.md shows no daemonctx console example")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connect(port: int) -> socket.socket | None:
    """A connection to ``port`` on localhost, or None while nothing listens there."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionRefusedError:
        return None


def as_pattern(expected: str) -> str:
    """The README's output with pids and times made wildcards."""
    pattern = re.escape(expected)
    pattern = re.sub(r"pid\\ \d+", r"pid\\ \\d+", pattern)
    pattern = re.sub(r"\d+\\\.\d+\\ s", r"\\d+\\.\\d+\\ s", pattern)
    # the command line as the kernel shows it: python3 may be found as a full path
    return pattern.replace("python3", r"\S*python3")


def test_the_readme_command_example_runs_as_shown(tracker: Tracker) -> None:
    site = tracker.tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello\n")
    port = str(free_port())
    for command, expected in readme_console_block():
        words = shlex.split(command.replace("/tmp/site", str(site)).replace("8000", port))
        assert words[0] == "daemonctx"
        result = tracker.daemonctx(*words[1:])
        assert result.returncode == 0, (command, result.stderr)
        assert re.fullmatch(as_pattern(expected.replace("8000", port)), result.stdout), (
            command,
            result.stdout,
        )
        if words[1] == "start":  # the server really serves the directory, and logs there
            with wait_for(lambda: connect(int(port)), what="the server to listen") as conn:
                conn.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                assert b"hello" in conn.makefile("rb").read()
            log = Path(str(site) + ".log")  # its stderr: line-buffered, PYTHONUNBUFFERED or not
            wait_for(
                lambda log=log: "GET /index.html" in log.read_text(), what="the request logged"
            )
    assert tracker.processes() == []


def test_the_quickstart_runs_as_shown(tracker: Tracker) -> None:
    """docs/index.md's quickstart, with its paths in a temporary directory and
    serve_forever() a loop that logs: the command returns once the daemon runs,
    the log reopened after logrotate is rw-r-----, and SIGTERM stops it."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import wait_gone

    text = (ROOT / "docs" / "index.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", quickstart, re.S)
    assert code, "the quickstart has no python block"
    log, pidfile = tracker.tmp_path / "app.log", tracker.tmp_path / "app.pid"
    program = (
        code.group(1).replace("/var/log/app.log", str(log)).replace("/run/app.pid", str(pidfile))
    )
    serve = (
        "def serve_forever():\n    import time\n    while True:\n"
        "        logging.info('tick'); time.sleep(0.05)\n"
    )
    program = program.replace("context = DaemonContext(", serve + "context = DaemonContext(", 1)
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{program}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=tracker.env,
    )
    assert (result.returncode, result.stderr) == (0, "")
    pid = int(pidfile.read_text())
    wait_for(lambda: "tick" in log.read_text(), what="the daemon's log")
    log.rename(str(log) + ".1")  # logrotate: the daemon opens a new one, rw-r-----
    wait_for(lambda: log.exists() and "tick" in log.read_text(), what="the reopened log")
    assert log.stat().st_mode & 0o777 == 0o640
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    assert not pidfile.exists()


def test_run_takes_start_s_options_but_those_the_docs_name() -> None:
    """docs/cli.md: ``run`` takes ``start``'s options except the ones it lists."""
    import argparse

    from daemonctx.cli import build_parser

    parser = build_parser(only="daemon")
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    def options(command: str) -> set[str]:
        parser = commands.choices[command]
        return {flag for action in parser._actions for flag in action.option_strings}

    section = (ROOT / "docs" / "cli.md").read_text().split("\n## `run`\n", 1)[1]
    except_ = re.search(r"takes `start`'s options except (.*?):", section, re.S)
    assert except_, "docs/cli.md's run section does not say which options it lacks"
    assert set(re.findall(r"`(--[a-z-]+)`", except_.group(1))) == options("start") - options("run")


def test_the_supervisor_quickstart_session_exits_as_shown(supervisors: Supervisors) -> None:
    """docs/supervisor.md's Quickstart session, replayed against a real supervisor
    (two sleeping programs, web after db): each line names the program and state
    shown, and each ``echo $?`` the exit status the command before it had."""
    text = (ROOT / "docs" / "supervisor.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", quickstart, re.S)
    assert block, "the Quickstart has no console block"
    supervisors.config(
        {
            "db": {"command": ["sleep", "1000"]},
            "web": {"command": ["sleep", "1000"], "after": ["db"]},
        }
    )
    shown: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            shown.append((line[2:], []))
        else:
            shown[-1][1].append(line)
    returncode, checked = None, 0
    for command, lines in shown:
        words = shlex.split(command)
        if words == ["echo", "$?"]:
            assert lines == [str(returncode)], (command, lines, returncode)
            checked += 1
            continue
        if words[:2] != ["sudo", "daemonctx"]:
            continue  # mkdir
        words = [str(supervisors.config_path) if w.endswith(".toml") else w for w in words[2:]]
        result = supervisors.daemonctx(*words)
        returncode = result.returncode
        output = (result.stdout + result.stderr).splitlines()
        assert [o.split()[:2] for o in output] == [o.split()[:2] for o in lines], (command, output)
    assert checked >= 2
    assert supervisors.processes() == []


@pytest.mark.parametrize(
    ("options", "serve", "said"),
    [
        ("", "pass", r"the daemon exited before it was ready \(pid \d+\): it was killed, .*"),
        (
            "ready_timeout=0.2, ",
            "time.sleep(30)",
            r"the daemon did not report ready within 0\.2 s .*",
        ),
        (
            "",
            "raise RuntimeError('boom')",
            r"the daemon \(pid \d+\) failed to start: RuntimeError: boom",
        ),
    ],
    ids=["left-the-block", "ready-timeout", "raised"],
)
def test_the_handoff_page_s_failure_report_says_what_happened(
    tracker: Tracker, options: str, serve: str, said: str
) -> None:
    """docs/handoff.md's ``except DaemonStartupError`` example, in a launcher whose
    daemon fails before it is ready: one line saying how, whether the daemon
    raised an exception (remote_type set) or not (None)."""
    text = (ROOT / "docs" / "handoff.md").read_text()
    after = text.split("The launcher can also catch the error", 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S)
    assert code, "the handoff page shows no failure report"
    pidfile = tracker.tmp_path / "app.pid"
    example = code.group(1).replace("/run/app.pid", str(pidfile))
    example = example.replace("DaemonContext(", f"DaemonContext(ready_on_open=False, {options}")
    program = (
        "import time\n"
        "from daemonctx import DaemonContext, DaemonStartupError\n"
        "from daemonctx.pidfile import TimeoutPIDLockFile\n"
        f"def serve_forever():\n    {serve}\n" + example
    )
    result = run_script(program, env=tracker.env)
    assert re.fullmatch(f"could not start: {said}\n", result.stdout), result.stdout
    assert tracker.processes() == []
