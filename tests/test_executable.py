"""``daemonctx.executable``: what exec(2) will need of a program, read from the
file as the kernel reads it (a ``#!`` line's interpreter, an ELF program's loader),
so that a start fails in the foreground naming it, rather than in the daemon with
"No such file or directory" for a script that exists. Real files: the system's
programs, and scripts and ELF headers written here."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Tracker

from daemonctx.errors import CommandError
from daemonctx.executable import interpreter, missing_interpreter, resolve_program


def _script(path: Path, text: bytes) -> str:
    path.write_bytes(text)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"#!/bin/sh\necho\n", "/bin/sh"),
        (b"#! /bin/sh -e\n", "/bin/sh"),
        (b"#!\t/usr/bin/env python3\n", "/usr/bin/env"),
        (b"#!/bin/sh\r\necho\n", "/bin/sh\r"),  # as the kernel reads it
        (b"#!/bin/sh", "/bin/sh"),  # no newline at all
        (b"#!\n", None),
        (b"echo no line\n", None),
        (b"", None),
    ],
    ids=[
        "plain",
        "space-and-argument",
        "tab-env",
        "crlf",
        "no-newline",
        "empty",
        "none",
        "empty-file",
    ],
)
def test_the_interpreter_of_a_script(tmp_path: Path, text: bytes, expected: str | None) -> None:
    found = interpreter(_script(tmp_path / "app", text))
    assert found == (None if expected is None else ("#!", expected))


def test_the_loader_of_the_system_s_programs() -> None:
    """What `readelf -l` calls "Requesting program interpreter"."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    found = interpreter(sleep)
    assert found is not None and found[0] == "ELF" and os.path.isfile(found[1])
    if shutil.which("readelf"):
        shown = subprocess.run(["readelf", "-l", sleep], capture_output=True, text=True).stdout
        assert f"[Requesting program interpreter: {found[1]}]" in shown


def _elf32_big_endian(loader: bytes) -> bytes:
    """A minimal ELF32 MSB header, one PT_LOAD then one PT_INTERP program header."""
    header = bytearray(52)
    header[:6] = b"\x7fELF\x01\x02"  # 32-bit, big-endian
    struct.pack_into(">IHH", header, 28, 52, 0, 0)  # e_phoff; e_flags, e_ehsize unused
    struct.pack_into(">HH", header, 42, 32, 2)  # e_phentsize, e_phnum
    interp_at = 52 + 2 * 32
    load = struct.pack(">IIIIIIII", 1, 0, 0, 0, 0, 0, 5, 0)
    interp = struct.pack(">IIIIIIII", 3, interp_at, 0, 0, len(loader) + 1, 0, 4, 1)
    return bytes(header) + load + interp + loader + b"\0" + bytes(64)


def test_the_loader_of_a_32_bit_big_endian_program(tmp_path: Path) -> None:
    path = _script(tmp_path / "app", _elf32_big_endian(b"/lib/ld.so.1"))
    assert interpreter(path) == ("ELF", "/lib/ld.so.1")


def _elf64_header(table: int, size: int, count: int) -> bytes:
    """An ELF64 LSB header whose program header table is at ``table``: ``count``
    entries of ``size`` bytes."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 32, table)
    struct.pack_into("<HH", header, 54, size, count)
    return bytes(header)


@pytest.mark.parametrize(
    "text",
    [
        b"\x7fELF",  # cut short
        b"\x7fELF\x03\x01" + bytes(58),  # no such class
        _elf64_header(1 << 62, 56, 1),  # a table far past the end
        _elf64_header(64, 0xFFFF, 0xFFFF),  # 4 GB of entries
        _elf64_header(64, 0, 1) + bytes(56),  # entries of no size
        bytes(300),
    ],
    ids=["short", "bad-class", "table-past-the-end", "65535-entries", "empty-entries", "zeros"],
)
def test_garbage_is_no_interpreter_and_no_crash(tmp_path: Path, text: bytes) -> None:
    assert interpreter(_script(tmp_path / "app", text)) is None


def test_what_is_missing_is_said_with_the_line_as_typed(tmp_path: Path) -> None:
    crlf = _script(tmp_path / "crlf", b"#!/bin/sh\r\necho\n")
    assert missing_interpreter(crlf) == (
        "its interpreter '/bin/sh\\r' (the #! line) is not found (a Windows line ending?)"
    )
    assert missing_interpreter(_script(tmp_path / "ok", b"#!/bin/sh\n")) is None
    relative = _script(tmp_path / "rel", b"#!bin/sh\n")
    assert missing_interpreter(relative) is None, "relative to the exec's directory: not told"
    jail = tmp_path / "jail"
    (jail / "bin").mkdir(parents=True)
    assert missing_interpreter(crlf, str(jail)) is not None
    assert missing_interpreter(_script(tmp_path / "sh", b"#!/bin/sh\n"), str(jail)) == (
        f"its interpreter '/bin/sh' (the #! line) is not found in --chroot {jail}"
    )
    _script(jail / "bin" / "sh", b"")  # the kernel wants it executable too
    assert missing_interpreter(str(tmp_path / "sh"), str(jail)) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            b"#!/usr/bin/daemonctx-no-such-shell\n",
            "its interpreter '/usr/bin/daemonctx-no-such-shell' (the #! line) is not found",
        ),
        (
            b"#!/bin/sh\r\nsleep 1000\r\n",
            "its interpreter '/bin/sh\\r' (the #! line) is not found (a Windows line ending?)",
        ),
        (
            b"#!/usr/bin/env daemonctx-no-such-tool\n",
            "'daemonctx-no-such-tool', which its #! line runs through /usr/bin/env, is not found"
            " in PATH",
        ),
    ],
    ids=["missing", "crlf", "env"],
)
def test_start_of_a_script_whose_interpreter_is_missing_fails_in_the_foreground(
    tracker: Tracker, text: bytes, message: str
) -> None:
    """Before: "app failed to start: FileNotFoundError: ... '/path/app'", from the
    daemon, naming the script that does exist."""
    script = _script(tracker.tmp_path / "app.sh", text)
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", script)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"daemonctx: error: {script}: {message}\n"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_a_relative_path_through_a_link_is_joined_not_folded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """link/../app is the app beside the link's target, as the kernel resolves it;
    abspath's folding named ./app, another file."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    target = _script(tmp_path / "real" / "app", b"#!/bin/sh\n")
    _script(tmp_path / "app", b"#!/bin/sh\n")  # the decoy folding would name
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    monkeypatch.chdir(tmp_path)
    found = resolve_program("link/../app")
    assert found == str(tmp_path / "link/../app")
    assert os.path.samefile(found, target)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"#!/usr/bin/env python3\n", None),
        (b"#!/usr/bin/env -S python3 -u\n", None),  # env's options: not looked into
        (
            b"#!/usr/bin/env daemonctx-no-such-program\n",
            "'daemonctx-no-such-program', which its #! line runs through /usr/bin/env,"
            " is not found in PATH",
        ),
        (
            b"#!/usr/bin/env python3 -u\n",
            "its #! line gives env 'python3 -u' as one name (env -S would split it)",
        ),
        (b"#!/usr/bin/env /bin/sh\n", None),
        (
            b"#!/usr/bin/env /nonexistent/sh\n",
            "the program its #! line runs through env, '/nonexistent/sh', is not found",
        ),
    ],
    ids=["found", "options", "not-in-path", "one-name", "absolute", "absolute-missing"],
)
def test_env_in_the_shebang_is_followed_into_path(
    tmp_path: Path, line: bytes, message: str | None
) -> None:
    """env finds the program after the exec: a miss is "env: 'python3': No such
    file or directory" and exit 127, once the start has been reported."""
    if shutil.which("env") != "/usr/bin/env" or shutil.which("python3") is None:
        pytest.skip("needs /usr/bin/env and python3 in PATH")
    assert missing_interpreter(_script(tmp_path / "app", line)) == message


def test_env_looks_in_the_program_s_path_not_ours(tmp_path: Path) -> None:
    if shutil.which("env") != "/usr/bin/env":
        pytest.skip("needs /usr/bin/env")
    (tmp_path / "bin").mkdir()
    tool = _script(tmp_path / "bin" / "mytool", b"#!/bin/sh\n")
    script = _script(tmp_path / "app", b"#!/usr/bin/env mytool\n")
    assert missing_interpreter(script, search="/usr/bin:/bin") is not None
    assert missing_interpreter(script, search=f"/usr/bin:{os.path.dirname(tool)}") is None
    assert missing_interpreter(script, search="relative:/bin") is None, "cannot be told"


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    """Executable and "a file" to shutil.which, but a read would wait for a writer."""
    fifo = tmp_path / "app"
    os.mkfifo(fifo)
    fifo.chmod(0o755)
    assert interpreter(str(fifo)) is None
    assert missing_interpreter(str(fifo)) is None
    with pytest.raises(CommandError, match="not a regular file"):
        resolve_program(str(fifo))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"#!\n", "its #! line names no interpreter"),
        (b"#!   \n", "its #! line names no interpreter"),
        (b"#!\0/bin/sh\n", "its #! line names no interpreter"),
        (b"#!/tmp\n", "its interpreter '/tmp' (the #! line) is not an executable file"),
        (
            b"#!/etc/passwd\n",
            "its interpreter '/etc/passwd' (the #! line) is not an executable file",
        ),
        (b"#!/bin/sh -e\r\n", "its #! line gives /bin/sh '-e\\r' (a Windows line ending?)"),
        (
            b"#!/usr/bin/env\n",
            "its #! line gives /usr/bin/env no program to run (it would run the script, over"
            " and over)",
        ),
        (
            b"#!/usr/bin/env FOO=1\n",
            "its #! line gives /usr/bin/env only a variable, 'FOO=1', and no program to run (it"
            " would run the script, over and over)",
        ),
        (
            b"#!/usr/bin/env sh\r\n",
            "its #! line gives /usr/bin/env 'sh\\r' (a Windows line ending?)",
        ),
        (
            b"#!/usr/bin/env -i\n",
            "its #! line gives /usr/bin/env '-i' and no program to run (it would run the"
            " script, over and over)",
        ),
        (
            b"#!/usr/bin/env -\n",
            "its #! line gives /usr/bin/env '-' and no program to run (it would run the"
            " script, over and over)",
        ),
        (
            b"#!/usr/bin/env -i VAR=1 python3\n",
            "its #! line gives /usr/bin/env options and a program as one argument,"
            " '-i VAR=1 python3', which env refuses (env -S would split it)",
        ),
    ],
    ids=[
        "bare",
        "spaces",
        "nul",
        "directory",
        "not-executable",
        "crlf-argument",
        "env-alone",
        "env-variable",
        "env-crlf",
        "env-i-alone",
        "env-dash-alone",
        "env-options-as-one",
    ],
)
def test_what_exec_would_refuse_is_named(tmp_path: Path, line: bytes, message: str) -> None:
    if shutil.which("env") != "/usr/bin/env":
        pytest.skip("needs /usr/bin/env")
    assert missing_interpreter(_script(tmp_path / "app", line)) == message


def test_interpreters_are_followed_down_as_the_kernel_does(tmp_path: Path) -> None:
    """outer's interpreter is inner, a script whose own interpreter is missing:
    exec of outer fails with ENOENT naming outer."""
    inner = _script(tmp_path / "inner", b"#!/nonexistent/interp\n")
    outer = _script(tmp_path / "outer", f"#!{inner}\n".encode())
    assert missing_interpreter(outer) == (
        f"its interpreter {inner}: its interpreter '/nonexistent/interp' (the #! line) is not found"
    )


@pytest.mark.parametrize("options", ["-S", "-iS", "-S -i", "--", "--split-string", "-u HOME"])
def test_env_options_that_leave_no_program_are_named(tmp_path: Path, options: str) -> None:
    """env runs the script itself then, which runs env again: a busy process
    forever, where start says "started". Checked against env itself."""
    if shutil.which("env") != "/usr/bin/env":
        pytest.skip("needs /usr/bin/env")
    script = _script(tmp_path / "app", f"#!/usr/bin/env {options}\nexit 0\n".encode())
    assert missing_interpreter(script) == (
        f"its #! line gives /usr/bin/env {options!r} and no program to run (it would run the"
        " script, over and over)"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([script], timeout=0.5, check=False, capture_output=True)


@pytest.mark.parametrize(
    "options",
    [
        "-S sh",
        "-S -i sh",
        "-S -i\\_sh",  # env -S's \_ is a space
        "-S VAR=1\\_sh",
        "-S -u\\_X\\_sh",
        "--split-string=-i\\_sh",
        "-S -Ssh",  # a nested -S's own value is the program
        "-S -i -Ssh",
        "-S --split-string=sh",
        "--split-string=--split-string=sh",
        "-S 'sh'",
    ],
)
def test_env_lines_that_run_are_not_refused(tmp_path: Path, options: str) -> None:
    """Checked against env itself: each runs the script's body, so none may be
    refused (a tester found these refused, env's own syntax read too simply)."""
    if shutil.which("env") != "/usr/bin/env":
        pytest.skip("needs /usr/bin/env")
    script = _script(tmp_path / "app", f"#!/usr/bin/env {options}\necho ran\n".encode())
    ran = subprocess.run([script], timeout=5, check=False, capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "ran\n"), ran.stderr
    assert missing_interpreter(script) is None


def test_a_loop_of_interpreters_is_named(tmp_path: Path) -> None:
    """exec fails with ELOOP ("Too many levels of symbolic links") for both."""
    loop = _script(tmp_path / "loop", f"#!{tmp_path / 'loop'}\n".encode())
    message = f"its interpreter {loop} is the script itself: the #! lines loop"
    assert missing_interpreter(loop) == message
    first, second = tmp_path / "first", tmp_path / "second"
    _script(first, f"#!{second}\n".encode())
    _script(second, f"#!{first}\n".encode())
    assert missing_interpreter(str(first)) == (
        f"its interpreter {second}: its interpreter {first} is a script that runs it:"
        " the #! lines loop"
    )
    for path in (loop, str(first)):
        with pytest.raises(OSError) as info:
            subprocess.run([path], check=False)
        assert info.value.errno == errno.ELOOP, "the kernel's answer"


@pytest.mark.parametrize("scripts", [5, 6])
def test_exec_follows_five_scripts_and_no_more(tmp_path: Path, scripts: int) -> None:
    """The kernel's own limit, checked against it: five run, a sixth is ELOOP."""
    true = shutil.which("true")
    assert true is not None
    interp = true
    for number in range(scripts, 0, -1):
        interp = _script(tmp_path / f"s{number}", f"#!{interp}\n".encode())
    missing = missing_interpreter(interp)
    if scripts == 5:
        assert subprocess.run([interp], check=False).returncode == 0
        assert missing is None
        return
    with pytest.raises(OSError) as info:
        subprocess.run([interp], check=False)
    assert info.value.errno == errno.ELOOP, "the kernel's answer"
    assert missing is not None
    assert missing.endswith(
        f"its interpreter {tmp_path / 's6'}: a #! script too: exec follows 5 scripts in a"
        " chain, no more"
    )


def _bom_line(directory: Path) -> bytes:
    """An editor's UTF-8 BOM: exec sees no #! line."""
    return b"\xef\xbb\xbf#!/bin/sh\nsleep 1000\n"


def _cut_line(directory: Path) -> bytes:
    """An interpreter there, by a name longer than the 255 bytes exec reads."""
    deep = directory / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    (deep / "sh").symlink_to("/bin/sh")
    return b"#!" + bytes(deep / "sh") + b"\nsleep 1000\n"


@pytest.mark.parametrize(
    ("line_in", "message"),
    [
        (_bom_line, "a UTF-8 byte order mark comes before its #! line, which exec then cannot see"),
        (
            _cut_line,
            "its #! line is longer than the 255 bytes exec reads of it, which cut its"
            " interpreter's name short",
        ),
    ],
    ids=["byte-order-mark", "cut-short"],
)
def test_what_exec_refuses_as_a_format_error_is_named(
    tracker: Tracker, line_in: Callable[[Path], bytes], message: str
) -> None:
    """ENOEXEC ("Exec format error") for a file that is there: named, not started."""
    script = _script(tracker.tmp_path / "app.sh", line_in(tracker.tmp_path))
    with pytest.raises(OSError) as info:
        subprocess.run([script], check=False)
    assert info.value.errno == errno.ENOEXEC, "the kernel's answer"
    result = tracker.daemonctx("start", "--pidfile", tracker.pidfile, "--", script)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"daemonctx: error: {script}: {message}\n"
    assert tracker.processes() == [] and not os.path.exists(tracker.pidfile)


def test_a_long_argument_is_only_cut_and_runs(tmp_path: Path) -> None:
    """Past 255 bytes, exec cuts the argument, and runs the line."""
    script = _script(tmp_path / "ok.sh", b"#!/bin/echo " + b"x" * 300 + b"\n")
    assert missing_interpreter(script) is None
    ran = subprocess.run([script], capture_output=True, check=True, text=True)
    assert ran.stdout == "x" * (255 - len("#!/bin/echo ")) + f" {script}\n"


def test_a_corrupt_elf_header_is_no_crash(tmp_path: Path) -> None:
    """Offsets past what seek takes (2**64 - 1): no traceback, nothing told."""
    header = bytearray(_elf64_header(0, 56, 1))
    struct.pack_into("<Q", header, 32, 2**64 - 1)
    assert interpreter(_script(tmp_path / "far", bytes(header))) is None
    entry = struct.pack("<IIQQQQQQ", 3, 0, 2**63, 0, 0, 16, 16, 1)
    table = _elf64_header(64, 56, 1) + entry
    assert interpreter(_script(tmp_path / "interp", table)) is None


@pytest.mark.parametrize(
    "line",
    [
        b"#!/usr/bin/env -S VAR=1 python3\n",
        b"#!/usr/bin/env --split-string=python3 -u\n",
        b"#!/usr/bin/perl -w\r\n",  # perl reads its own #! line, and takes the \r
        b"#!/usr/bin/env -iS python3\n",
        b"#!/usr/bin/env -0\n",  # env refuses it (exit 125): not judged here
    ],
    ids=["env-S-variable", "env-long-option", "perl-crlf-switch", "env-iS", "env-null"],
)
def test_lines_that_run_are_not_refused(tmp_path: Path, line: bytes) -> None:
    interpreter_path = line[2:].split()[0].decode()
    if not os.path.exists(interpreter_path):
        pytest.skip(f"needs {interpreter_path}")
    assert missing_interpreter(_script(tmp_path / "app", line)) is None


def test_elf_entries_too_small_for_their_fields(tmp_path: Path) -> None:
    """e_phentsize 36: p_filesz (8 bytes at 32) does not fit; no traceback."""
    entry = struct.pack("<IIQQQ", 3, 0, 0, 0, 0) + bytes(4)  # 36 bytes
    text = _elf64_header(64, 36, 1) + entry
    assert interpreter(_script(tmp_path / "app", text)) is None
