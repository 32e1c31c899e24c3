"""File descriptors: what the daemon keeps, what it closes, and fds 0-2."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DAEMON, ROOT, Daemons, proc_fds, run_script

from daemonctx import DaemonContext, DaemonOptionError
from daemonctx.options import resolve_files_preserve
from daemonctx.process import open_fds


def test_standard_streams_go_to_devnull_by_default(daemons: Daemons) -> None:
    event, _ = daemons.start({})
    fds = proc_fds(event["pid"])
    assert [fds[0], fds[1], fds[2]] == ["/dev/null"] * 3


def test_standard_streams_bound_to_files(daemons: Daemons, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("")
    event, _ = daemons.start(
        {
            "options": {
                "stdin": str(tmp_path / "in"),
                "stdout": str(tmp_path / "out"),
                "stderr": str(tmp_path / "err"),
            }
        }
    )
    fds = proc_fds(event["pid"])
    assert fds[0] == str(tmp_path / "in")
    assert fds[1] == str(tmp_path / "out")
    assert fds[2] == str(tmp_path / "err")


def test_only_preserved_fds_survive(daemons: Daemons, tmp_path: Path) -> None:
    """The report file and one preserved file stay; an fd leaked by the launcher goes."""
    leaked = tmp_path / "leaked"

    def leak() -> None:
        fd = os.open(leaked, os.O_WRONLY | os.O_CREAT)
        os.set_inheritable(fd, True)
        os.dup2(fd, 40)

    result, report = daemons.launch(
        {"options": {"preserve": [str(tmp_path / "kept")]}}, preexec_fn=leak, close_fds=False
    )
    assert result.returncode == 0, result.stderr
    pid = daemons.event(report, "open")["pid"]
    targets = set(proc_fds(pid).values())
    assert str(tmp_path / "kept") in targets
    assert str(report) in targets
    assert str(leaked) not in targets
    assert sorted(proc_fds(pid)) == [0, 1, 2, 3, 4], proc_fds(pid)


def test_high_fds_are_closed_with_a_huge_fd_limit(daemons: Daemons, tmp_path: Path) -> None:
    """A container may set RLIMIT_NOFILE to a million: an fd up there is still closed,
    and the start does not loop over the whole range (it would take seconds)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard = 1 << 20
    if hard < 10000:
        pytest.skip(f"hard RLIMIT_NOFILE is only {hard}")
    high = hard - 1

    def leak_high() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, high)

    result, report = daemons.launch({}, preexec_fn=leak_high, close_fds=False, timeout=30)
    assert result.returncode == 0, result.stderr
    pid = daemons.event(report, "open")["pid"]
    assert high not in proc_fds(pid)


def test_launched_with_standard_fds_closed(daemons: Daemons, tmp_path: Path) -> None:
    """Python starts with sys.stdout None and the stdout file lands on fd 0. The
    daemon must still start, with 0-2 bound to the requested streams."""
    report = tmp_path / "closed.jsonl"
    out = tmp_path / "out"
    config = json.dumps(
        {"report": str(report), "report_after_open": True, "options": {"stdout": str(out)}}
    )
    script = f"exec {sys.executable} {DAEMON} '{config}' <&- >&- 2>&-"
    result = subprocess.run(["sh", "-c", script], timeout=20)
    daemons.track(report)
    assert result.returncode == 0
    pid = daemons.event(report, "open")["pid"]
    fds = proc_fds(pid)
    assert fds[0] == "/dev/null"
    assert fds[1] == str(out)
    assert fds[2] == "/dev/null"
    assert str(report) in fds.values()


@pytest.mark.parametrize(("item", "shown"), [("log", "<_io.TextIOWrapper name="), ("0", "0")])
def test_a_preserved_file_on_a_standard_fd_is_refused(
    tmp_path: Path, item: str, shown: str
) -> None:
    """Launched with fd 0 closed, a file opened before open() lands on fd 0; it
    cannot be both kept and replaced by stdin, so the start fails, loudly, naming
    what was given: the file, or its fd."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from daemonctx import DaemonContext\n"
        f"log = open({str(tmp_path / 'log')!r}, 'a')\n"
        "assert log.fileno() == 0\n"
        f"DaemonContext(files_preserve=[{item}]).open()\n"
    )
    result = subprocess.run(
        ["sh", "-c", f'exec {sys.executable} -c "$0" <&-', code],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"daemonctx.errors.DaemonOptionError: files_preserve item 1 ({shown}"), (
        last
    )
    assert last.endswith(
        ": fd 0 is where stdin goes and would be replaced: the process started with fd 0"
        " closed, so this file was opened since; open it after fds 0-2 are open, or pass"
        " it as stdin="
    ), last


def test_a_standard_fd_given_as_an_int_is_left_out_as_its_stream_is(tmp_path: Path) -> None:
    """files_preserve=[sys.stdout.fileno()] is files_preserve=[sys.stdout]: fd 1 is
    the stdout option's (here /dev/null), as in python-daemon, not a refused file."""
    seen = tmp_path / "seen"
    code = (
        f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from daemonctx import DaemonContext\n"
        "preserve = [sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno()]\n"
        "with DaemonContext(files_preserve=preserve, detach_process=False):\n"
        "    print('to the daemon s stdout', flush=True)\n"
        f"    with open({str(seen)!r}, 'w') as out:\n"
        "        out.write(os.readlink('/proc/self/fd/1'))\n"
    )
    with open(tmp_path / "stdout", "w") as stdout:
        result = subprocess.run(
            [sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, timeout=20
        )
    assert result.returncode == 0, result.stderr
    assert seen.read_text() == "/dev/null"
    assert (tmp_path / "stdout").read_text() == "", "the launcher's stdout file was replaced"


def test_print_works_in_a_daemon_launched_with_stdout_closed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from daemonctx import DaemonContext\n"
        f"with DaemonContext(stdout=open({str(out)!r}, 'a'), detach_process=False):\n"
        "    print('hello from the daemon', flush=True)\n"
    )
    result = subprocess.run(["sh", "-c", f'exec {sys.executable} -c "$0" >&-', code], timeout=20)
    assert result.returncode == 0
    assert out.read_text() == "hello from the daemon\n"


@pytest.mark.parametrize(("buffering", "seen"), [(1, "a line\n"), (-1, "")])
def test_print_is_line_buffered_when_the_stdout_file_given_is(
    tmp_path: Path, buffering: int, seen: str
) -> None:
    """print() writes through sys.stdout, which Python made block-buffered (its
    stdout a pipe, no PYTHONUNBUFFERED): a line-buffered ``stdout=`` file makes it
    line-buffered too, so a line is in the file before an exit that flushes nothing."""
    out = tmp_path / "out"
    code = (
        f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from daemonctx import DaemonContext\n"
        f"log = open({str(out)!r}, 'a', buffering={buffering})\n"
        "with DaemonContext(stdout=log, detach_process=False):\n"
        "    print('a line')\n"
        "    os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=20)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == seen


@pytest.mark.forked
def test_files_preserve_accepts_ints_files_sockets_and_handlers(tmp_path: Path) -> None:
    handle = open(tmp_path / "file", "w")  # noqa: SIM115
    sock_a, sock_b = socket.socketpair()
    handler = logging.FileHandler(tmp_path / "log")
    delayed = logging.FileHandler(tmp_path / "later", delay=True)
    raw = os.open(tmp_path / "raw", os.O_WRONLY | os.O_CREAT)
    items = [raw, handle, sock_a, handler, delayed]
    given = list(items)
    fds = resolve_files_preserve(given)
    assert fds == {raw, handle.fileno(), sock_a.fileno(), handler.stream.fileno()}
    assert given == items, "files_preserve must never be modified in place"
    assert resolve_files_preserve((raw,)) == {raw}
    del sock_b


def test_closing_the_listed_gaps_keeps_exactly_what_is_asked() -> None:
    code = (
        "import os, json\n"
        "from daemonctx.process import close_fds, fd_gaps\n"
        "opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(6)]\n"
        "keep = {0, 1, 2, opened[1], opened[4]}\n"
        "close_fds(fd_gaps(keep))\n"
        "print(json.dumps([sorted(keep), sorted(map(int, os.listdir('/proc/self/fd')))]))\n"
    )
    keep, still_open = json.loads(run_script(code).stdout)
    # The listing's own directory fd shows up once in the listing.
    assert len(still_open) == len(keep) + 1
    assert set(keep) <= set(still_open)


@pytest.mark.parametrize(
    ("item", "reason"),
    [("not a file", "not a file descriptor"), (3.5, "not a file descriptor"), (True, "bool")],
)
def test_files_preserve_rejects_non_files(item: object, reason: str) -> None:
    with pytest.raises(DaemonOptionError, match=reason) as info:
        resolve_files_preserve([item])
    assert info.value.option == "files_preserve"
    assert info.value.value == item


def test_an_error_names_the_item_not_the_whole_option() -> None:
    """ "files_preserve=3.5" read as if the option were 3.5: the message says which
    item, from 1, and shows it; .value is the item."""
    with pytest.raises(DaemonOptionError) as info:
        resolve_files_preserve([sys.stderr, 3.5])
    assert str(info.value) == (
        "files_preserve item 2 (3.5): not a file descriptor, file, socket or handler:"
        " float has no fileno()"
    )
    assert (info.value.option, info.value.value, info.value.item) == ("files_preserve", 3.5, 2)


@pytest.mark.forked
def test_files_preserve_skips_none_and_closed_things_as_python_daemon_does(
    tmp_path: Path,
) -> None:
    """python-daemon omits None, and a closed object has nothing to keep: a closed
    file (fileno() raises ValueError), a closed socket (fileno() is -1), a handler
    on either (a SysLogHandler whose /dev/log is missing keeps a closed socket)."""
    closed_file = open(tmp_path / "closed", "w")  # noqa: SIM115
    closed_file.close()
    closed_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    closed_socket.close()
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listening.bind(str(tmp_path / "log-socket"))
    syslog = logging.handlers.SysLogHandler(address=str(tmp_path / "log-socket"))
    syslog.socket.close()  # what 3.11+ leaves when the address is missing (3.9 raises)
    closed_handler = logging.FileHandler(tmp_path / "log")
    closed_handler.stream.close()
    kept = open(tmp_path / "kept", "w")  # noqa: SIM115
    items = [None, closed_file, closed_socket, syslog, closed_handler, kept]
    assert resolve_files_preserve(items) == {kept.fileno()}
    listening.close()


def test_files_preserve_still_refuses_an_open_file_without_an_fd() -> None:
    """A StringIO's fileno() raises io.UnsupportedOperation, a ValueError, but it is
    not closed: not a file, said so, not skipped."""
    import io

    with pytest.raises(DaemonOptionError, match=r"item 1 .*not a file descriptor"):
        resolve_files_preserve([io.StringIO()])


def test_a_daemon_starts_with_the_items_python_daemon_skips(tmp_path: Path) -> None:
    """The tester's three cases, in a process started with fd 1 closed: None, a
    SysLogHandler whose /dev/log is missing, and sys.stdout (None there)."""
    code = (
        f"import logging.handlers, os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from daemonctx import DaemonContext\n"
        "assert sys.stdout is None\n"
        "try:  # 3.11+ leaves a closed socket when the address is missing\n"
        f"    syslog = logging.handlers.SysLogHandler(address={str(tmp_path / 'no-log')!r})\n"
        "except OSError:  # 3.9 and 3.10 raise: the same state, made by hand\n"
        "    import socket\n"
        "    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        f"    s.bind({str(tmp_path / 'log')!r})\n"
        f"    syslog = logging.handlers.SysLogHandler(address={str(tmp_path / 'log')!r})\n"
        "    syslog.socket.close()\n"
        "assert syslog.socket.fileno() == -1\n"
        "preserve = [None, syslog, sys.stdout]\n"
        "with DaemonContext(files_preserve=preserve, detach_process=False):\n"
        f"    open({str(tmp_path / 'started')!r}, 'w').close()\n"
    )
    result = subprocess.run(
        ["sh", "-c", f'exec {sys.executable} -c "$0" >&-', code],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "started").exists()


def test_files_preserve_rejects_an_fd_that_is_not_open() -> None:
    unused = max(open_fds() or [0]) + 100
    with pytest.raises(DaemonOptionError, match=f"fd {unused} is not open"):
        resolve_files_preserve([unused])
    for huge in (2**31, 2**63, -1):  # not a traceback from os.fstat
        with pytest.raises(DaemonOptionError, match=f"fd {huge} is not open"):
            resolve_files_preserve([huge])


def test_files_preserve_takes_the_standard_streams_as_python_daemon_does() -> None:
    """Real programs pass [sys.stdout, sys.stderr] or their console handler's stream
    with stdout=None; fds 0-2 are replaced anyway, so they are simply left out."""
    code = (
        "import logging, sys\n"
        "from daemonctx import DaemonContext\n"
        "console = logging.StreamHandler(sys.stderr)\n"
        "context = DaemonContext(files_preserve=[sys.stdout, sys.stderr, console], "
        "detach_process=False)\n"
        "context.open()\n"
        "print('opened', flush=True)\n"
    )
    result = run_script(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", "stdout is /dev/null in the daemon, as asked"
    assert result.stderr == ""


def test_files_preserve_must_be_a_list_tuple_or_set() -> None:
    for value in (3, "/var/log/app.log", range(3, 5)):
        with pytest.raises(DaemonOptionError, match=r"must be a list, tuple or set$"):
            DaemonContext(files_preserve=value)  # type: ignore[arg-type]
    DaemonContext(files_preserve={3, 4})
    DaemonContext(files_preserve=frozenset({3}))


@pytest.mark.parametrize(
    ("item", "why"),
    [(object(), "object has no fileno()"), ("abc", "str has no fileno()"),
     (3.5, "float has no fileno()"), (True, "a bool is not a file descriptor")],
)  # fmt: skip
def test_a_bad_files_preserve_item_fails_on_the_line_that_sets_it(item: object, why: str) -> None:
    """As docs/index.md promises for every option: at construction and assignment,
    not only at open(); the item named by its place."""
    message = f"files_preserve item 2 ({item!r}): not a file descriptor, file, socket or handler: "
    with pytest.raises(DaemonOptionError) as info:
        DaemonContext(files_preserve=[sys.stderr, item])  # type: ignore[list-item]
    assert str(info.value) == message + why
    context = DaemonContext()
    with pytest.raises(DaemonOptionError) as info:
        context.files_preserve = (None, item)  # type: ignore[assignment]
    assert (info.value.value, info.value.item) == (item, 2)
    assert context.files_preserve is None
