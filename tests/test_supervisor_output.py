"""Captured program output (daemonctx.supervisor.output): lines to files, pipes, ttys and
sockets, rotation, logrotate's move and reopen, a full disk and a target nobody drains,
the in-memory ring.

Real files, real pipes, a real pty, a real (small) tmpfs; no mocks, no sleeps: a target
that cannot take more must drop at once, so each feed is simply timed.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import re
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mounted_tmpfs, needs_root, run_as_nobody, run_in_child

from daemonctx.paths import UnsafePathError
from daemonctx.supervisor.config import LogFile
from daemonctx.supervisor.output import CHUNK_COST, MAX_LINE, Capture, Line, Ring, Target

pytestmark = pytest.mark.timeout(30)

NUMBERED = re.compile(rb"line (\d{6})")
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # in fcntl from Python 3.10


def numbered(first: int, last: int) -> bytes:
    """Lines "line 000000" ... for ``first`` <= n < ``last``, 12 bytes each."""
    return b"".join(b"line %06d\n" % n for n in range(first, last))


def numbers(data: bytes) -> list[int]:
    """The numbers of ``data``'s lines, checking that every line is whole."""
    assert data == b"" or data.endswith(b"\n"), data[-40:]
    found = []
    for text in data.split(b"\n")[:-1]:
        match = NUMBERED.fullmatch(text)
        assert match, f"not a whole line: {text!r}"
        found.append(int(match.group(1)))
    return found


def pieces(data: bytes, seed: int, most: int = 300) -> Iterator[bytes]:
    """``data`` cut at random places, most lines split across two pieces."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.randint(1, most)
        yield data[pos : pos + step]
        pos += step


def drain(fd: int) -> bytes:
    """All that a pipe or pty holds now (without waiting for more)."""
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.set_blocking(fd, blocking)
    return b"".join(chunks)


def opened(spec: str | LogFile, what: str = "web's stdout", inherit: int | None = None) -> Target:
    target = Target.open(spec, what, inherit)
    assert target is not None
    return target


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


# -- lines: joined, waiting, flushed, cut ---------------------------------------------------


def test_lines_reach_the_file_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(str(log))
    capture = Capture(target, None, Ring(4096))
    capture.feed("stdout", b"one\ntw")
    assert log.read_bytes() == b"one\n"
    capture.feed("stdout", b"o\nthr")
    capture.feed("stdout", b"ee")
    assert log.read_bytes() == b"one\ntwo\n"  # "three" has no end yet
    capture.feed("stdout", b"")
    capture.close_stream("stdout")
    assert log.read_bytes() == b"one\ntwo\nthree\n"
    capture.close_stream("stdout")  # nothing more to flush
    assert (target.written, target.dropped, capture.dropped) == (14, 0, 0)
    assert [line.text for line in capture.ring.last(10)] == [b"one", b"two", b"three"]
    target.close()


def test_random_splits_lose_and_glue_nothing(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(str(log))
    capture = Capture(target, None, Ring(1 << 20))
    data = numbered(0, 20000)
    for piece in pieces(data, seed=1, most=5000):
        capture.feed("stdout", piece)
    target.close()
    assert log.read_bytes() == data
    assert [line.text for line in capture.ring.last(3)] == data.splitlines()[-3:]


def test_a_line_longer_than_max_line_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(str(log))
    capture = Capture(target, None, Ring(1 << 20))
    # A long line arriving in small reads is never held past MAX_LINE bytes...
    for _ in range(2 * MAX_LINE // 4096 + 1):
        capture.feed("stdout", b"x" * 4096)
    assert log.read_bytes() == (b"x" * MAX_LINE + b"\n") * 2
    capture.feed("stdout", b"\n")
    # ...and one arriving whole, in one read, is cut the same way.
    capture.feed("stdout", b"y" * (MAX_LINE + 5) + b"\nz\n")
    target.close()
    lines = log.read_bytes().split(b"\n")[:-1]
    assert [len(line) for line in lines] == [MAX_LINE, MAX_LINE, 4096, MAX_LINE, 5, 1]
    assert max(len(line.text) for line in capture.ring.last(10)) == MAX_LINE


# -- rotation -------------------------------------------------------------------------------


def rotated(log: Path) -> list[Path]:
    """web.log's backups, oldest first, then web.log."""
    backups = sorted(log.parent.glob(log.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, log]


@pytest.mark.parametrize("most", [7, 300, 5000])
def test_rotation_keeps_every_line_once_in_order(tmp_path: Path, most: int) -> None:
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=1000, backups=100))
    assert target.rotates
    capture = Capture(target, None, Ring(0))
    data = numbered(0, 2000)  # 24 000 bytes: about 24 files
    for piece in pieces(data, seed=most, most=most):
        capture.feed("stdout", piece)
    target.close()
    files = rotated(log)
    assert [p.name for p in files[:2]] == [f"web.log.{len(files) - 1}", f"web.log.{len(files) - 2}"]
    assert all(p.stat().st_size <= 1000 for p in files)
    assert all(p.stat().st_size > 1000 - 12 for p in files[:-1])  # each file filled up
    assert numbers(b"".join(p.read_bytes() for p in files)) == list(range(2000))
    assert target.written == len(data) and target.dropped == 0


def test_rotation_keeps_at_most_backups_files(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=1000, backups=3))
    capture = Capture(target, None, Ring(0))
    for piece in pieces(numbered(0, 2000), seed=3):
        capture.feed("stdout", piece)
    target.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "web.log",
        "web.log.1",
        "web.log.2",
        "web.log.3",
    ]
    kept = numbers(b"".join(p.read_bytes() for p in rotated(log)))
    assert kept == list(range(kept[0], 2000))  # the newest lines, none missing
    assert all(p.stat().st_size <= 1000 for p in rotated(log))


def test_backups_zero_replaces_the_file(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=1000, backups=0))
    for n in range(0, 300, 10):
        target.write(numbered(n, n + 10))
    target.close()
    assert [p.name for p in tmp_path.iterdir()] == ["web.log"]
    kept = numbers(log.read_bytes())
    assert kept == list(range(kept[0], 300)) and log.stat().st_size <= 1000


def test_a_rotation_renames_the_backups_there_are_not_every_possible_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backups = 1000`` and five rotations: 1 + 2 + 3 + 4 + 5 renames (each backup
    there is moves one up, then the file), not 999 tries for each rotation, which
    froze the supervisor's loop with a huge ``backups``. (The renames are counted;
    each still happens.)"""
    renames: list[str] = []
    real_rename = os.rename

    def counted(source: str, destination: str) -> None:
        renames.append(os.path.basename(source))
        real_rename(source, destination)

    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=120, backups=1000))
    monkeypatch.setattr(os, "rename", counted)
    for n in range(0, 60, 10):  # 120 bytes each: one rotation before each but the first
        target.write(numbered(n, n + 10))
    monkeypatch.undo()
    target.close()
    assert len(renames) == 15, renames
    assert [numbers(p.read_bytes())[0] for p in rotated(log)] == list(range(0, 60, 10))


def test_a_rotation_moves_the_backups_up_to_the_first_one_missing(tmp_path: Path) -> None:
    """web.log.2 removed by hand: web.log.1 takes its place, and web.log.3 (older
    than the gap) stays; with no gap, the oldest kept is replaced."""
    log = tmp_path / "web.log"
    for number in (1, 3):
        (tmp_path / f"web.log.{number}").write_bytes(b"backup %d\n" % number)
    log.write_bytes(numbered(0, 10))
    target = opened(LogFile(str(log), max_bytes=120, backups=3))
    target.write(numbered(10, 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "web.log",
        "web.log.1",
        "web.log.2",
        "web.log.3",
    ]
    assert (tmp_path / "web.log.2").read_bytes() == b"backup 1\n"
    assert (tmp_path / "web.log.3").read_bytes() == b"backup 3\n"
    target.write(numbered(20, 30))  # .1, .2, .3 there: .2 replaces .3, the oldest
    target.close()
    assert (tmp_path / "web.log.3").read_bytes() == b"backup 1\n"
    assert numbers((tmp_path / "web.log.1").read_bytes()) == list(range(10, 20))
    assert len(list(tmp_path.iterdir())) == 4


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    """The one case where a file passes max_bytes: a single line that is longer."""
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=100, backups=5))
    long_line = b"L" * 250 + b"\n"
    target.write(numbered(0, 3) + long_line + numbered(3, 5))
    target.write(long_line)
    target.close()
    assert [p.read_bytes() for p in rotated(log)] == [
        numbered(0, 3),
        long_line,
        numbered(3, 5),
        long_line,
    ]


def test_rotation_into_an_existing_log_counts_its_size(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_bytes(numbered(0, 80))  # 960 bytes from an earlier run
    target = opened(LogFile(str(log), max_bytes=1000, backups=2))
    target.write(numbered(80, 90))  # 3 lines still fit (36 of 40 bytes left)
    target.close()
    assert [p.read_bytes() for p in rotated(log)] == [numbered(0, 83), numbered(83, 90)]


def test_update_changes_limits_and_timestamps_live(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(str(log))
    assert not target.rotates
    target.write(numbered(0, 100))
    target.update(LogFile(str(log), max_bytes=1000, backups=1))
    assert target.rotates
    target.write(numbered(100, 101))  # 1212 bytes: rotates first
    target.update(LogFile(str(log), max_bytes=1000, backups=1, timestamps=True))
    target.write(b"stamped\n", when=0.5)
    with pytest.raises(ValueError, match="cannot change path"):
        target.update(LogFile(str(tmp_path / "other.log")))
    target.close()
    assert (tmp_path / "web.log.1").read_bytes() == numbered(0, 100)
    new = log.read_bytes().split(b"\n")
    assert new[0] == b"line 000100" and new[1].endswith(b".500 stamped")


# -- rotation that fails: the bound holds, the error is said once ---------------------------


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The supervisor's log records (``daemonctx.supervisor``) written meanwhile."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("daemonctx.supervisor")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_file_that_cannot_be_moved_aside_is_emptied_in_place(
    tmp_path: Path, logged: list[str]
) -> None:
    """A directory at web.log.1: web.log cannot be renamed there (EISDIR). It is
    emptied in place at each rotation instead, so it stays within max_bytes; the
    error is kept for status and logged once, and cleared (and that logged) by the
    first rotation that works."""
    log, planted = tmp_path / "web.log", tmp_path / "web.log.1"
    planted.mkdir()
    target = opened(LogFile(str(log), max_bytes=1000, backups=1))
    for n in range(0, 1000, 10):  # 12 000 bytes
        target.write(numbered(n, n + 10))
    assert log.stat().st_size <= 1000
    kept = numbers(log.read_bytes())
    assert kept == list(range(kept[0], 1000))  # the newest lines, whole
    error = f"web's stdout: cannot rotate {log}: cannot rename {log} to {planted}: Is a directory"
    assert target.rotate_error is not None and target.rotate_error.strerror == error
    assert logged == [f"{error}; emptied it in place"]
    planted.rmdir()
    target.write(numbered(1000, 1100))
    assert target.rotate_error is None
    assert logged[1:] == [f"web's stdout: {log} rotated again"]
    target.close()
    assert all(p.stat().st_size <= 1000 for p in (log, planted))
    assert numbers(planted.read_bytes() + log.read_bytes())[-1] == 1099


def test_a_backup_that_cannot_be_moved_up_is_replaced(tmp_path: Path, logged: list[str]) -> None:
    """A directory where web.log.2 goes up to web.log.3: web.log.2 stays and
    web.log.1 replaces it; the files stay within max_bytes, fewer backups are kept,
    and that is said once."""
    log = tmp_path / "web.log"
    (tmp_path / "web.log.3").mkdir()
    target = opened(LogFile(str(log), max_bytes=1000, backups=3))
    for n in range(0, 1000, 10):
        target.write(numbered(n, n + 10))
    target.close()
    files = [log, tmp_path / "web.log.1", tmp_path / "web.log.2"]
    assert all(p.stat().st_size <= 1000 for p in files)
    kept = numbers(b"".join(p.read_bytes() for p in reversed(files)))
    assert kept == list(range(kept[0], 1000))
    assert target.rotate_error is not None
    error = f"cannot rename {log}.2 to {log}.3: Is a directory"
    assert logged == [f"web's stdout: cannot rotate {log}: {error}; fewer backups are kept"]


@needs_root
def test_no_new_file_after_the_move_drops_output_until_one_can_be_opened(
    tmp_path: Path, logged: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """web.log moved to web.log.1, then no inode left for a new web.log: web.log.1 is
    a backup now and gets nothing more (past max_bytes); output is dropped and counted
    until a new file can be opened, then goes there."""
    from daemonctx.supervisor import output

    monkeypatch.setattr(output, "_RETRY", 0.0)  # try again at every write
    with mounted_tmpfs(tmp_path / "few", "64k,nr_inodes=3") as directory:  # "/" + 2 files
        log, spare = directory / "web.log", directory / "spare"
        target = opened(LogFile(str(log), max_bytes=1000, backups=1))
        spare.touch()
        for n in range(0, 300, 10):
            target.write(numbered(n, n + 10))
        assert not log.exists() and (directory / "web.log.1").stat().st_size <= 1000
        assert target.dropped > 0 and target.rotate_error is not None
        assert "No space left on device" in target.rotate_error.strerror
        assert logged[0].endswith("; its output is dropped until a new file can be opened")
        spare.unlink()
        target.write(numbered(300, 310))
        target.close()
        assert numbers(log.read_bytes()) == list(range(300, 310))
        assert logged[1:] == [f"web's stdout: {log} rotated again"]


@needs_root
def test_on_a_full_disk_a_rotating_file_drops_its_oldest_backup_to_make_room(
    small_tmpfs: Path, logged: list[str]
) -> None:
    """256 KiB of disk, web.log and five backups of 64 KiB: the disk fills before the
    backups are all there. A write that does not fit removes the oldest backup and is
    tried again: nothing is dropped, the newest lines are on disk. (The file stopped
    growing, so it never rotated: everything after was dropped.)"""
    log = small_tmpfs / "web.log"
    target = opened(LogFile(str(log), max_bytes=65536, backups=5))
    capture = Capture(target, None, Ring(0))
    for piece in pieces(numbered(0, 90_000), seed=11, most=4096):  # about 1 MB
        capture.feed("stdout", piece)
    target.close()
    files = rotated(log)
    assert all(p.stat().st_size <= 65536 for p in files)
    kept = numbers(b"".join(p.read_bytes() for p in files))
    assert kept == list(range(kept[0], 90_000))  # the newest lines, none missing
    assert target.dropped == 0
    removed = f"web's stdout: the disk is full: removed {log}.4 to make room (said once)"
    assert logged == [removed]


# -- logrotate: move, then reopen -----------------------------------------------------------


def test_logrotate_move_then_reopen_loses_no_line(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    moved = tmp_path / "web.log-20261126"
    target = opened(LogFile(str(log), max_bytes=0))
    capture = Capture(target, None, Ring(0))
    parts = list(pieces(numbered(0, 3000), seed=7))
    third = len(parts) // 3
    for piece in parts[:third]:
        capture.feed("stdout", piece)
    log.rename(moved)  # logrotate's move...
    for piece in parts[third : 2 * third]:
        capture.feed("stdout", piece)  # ...still goes to the moved file
    target.reopen()  # ...until SIGHUP / ctl reopen
    for piece in parts[2 * third :]:
        capture.feed("stdout", piece)
    capture.close_stream("stdout")
    target.close()
    old, new = numbers(moved.read_bytes()), numbers(log.read_bytes())
    assert old and new and old + new == list(range(3000))


def test_rotation_after_a_move_starts_a_new_file_without_renaming(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=1000, backups=3))
    target.write(numbered(0, 50))
    log.rename(tmp_path / "moved")
    target.write(numbered(50, 100))  # would pass max_bytes: the file at path is not ours
    target.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved", "web.log"]
    assert numbers((tmp_path / "moved").read_bytes() + log.read_bytes()) == list(range(100))


def test_rotation_after_copytruncate_counts_the_emptied_file_not_what_was_written(
    tmp_path: Path,
) -> None:
    """logrotate's copytruncate empties the file behind the supervisor's back: the
    next rotation comes at max_bytes of new lines (it came at max_bytes minus what
    the file held before it was emptied: far too early)."""
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=1000, backups=3))
    target.write(numbered(0, 60))  # 720 bytes
    (tmp_path / "web.log-20261126").write_bytes(log.read_bytes())  # copytruncate's copy...
    os.truncate(log, 0)  # ...and truncate
    target.write(numbered(60, 130))  # 840 bytes: they fit
    assert not (tmp_path / "web.log.1").exists(), "rotated too early"
    assert numbers(log.read_bytes()) == list(range(60, 130))
    target.write(numbered(130, 145))  # 1020 bytes: now it rotates, at 996
    target.close()
    assert numbers((tmp_path / "web.log.1").read_bytes()) == list(range(60, 143))
    assert numbers(log.read_bytes()) == list(range(143, 145))


def test_reopen_failure_keeps_the_open_file(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    log = directory / "web.log"
    target = opened(str(log))
    target.write(b"before\n")
    directory.rename(tmp_path / "gone")
    with pytest.raises(OSError, match="no such directory"):
        target.reopen()
    assert target.error is not None
    target.write(b"after\n")
    target.close()
    assert (tmp_path / "gone" / "web.log").read_bytes() == b"before\nafter\n"


# -- targets that are not regular files: never rotated, never failing -----------------------


def test_a_pipe_named_by_path_never_rotates(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    target = opened(LogFile(f"/proc/self/fd/{write_end}", max_bytes=100, backups=2))
    assert not target.rotates
    capture = Capture(target, None, Ring(0))
    data = numbered(0, 4000)  # 48 000 bytes: fits in the pipe
    for piece in pieces(data, seed=11, most=9000):
        capture.feed("stdout", piece)
    target.reopen()  # a no-op for a pipe
    capture.feed("stdout", numbered(4000, 4001))
    assert drain(read_end) == numbered(0, 4001)
    assert target.dropped == 0 and target.error is None
    target.close()
    assert os.get_blocking(write_end)  # our copy had its own flags


def test_inherit_copies_without_changing_the_shared_fd(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    assert Target.open("inherit", "web's stdout", None) is None
    assert Target.open("null", "web's stdout", write_end) is None
    target = opened("inherit", inherit=write_end)
    assert not target.rotates
    target.write(b"hello\n")
    target.reopen()  # a no-op
    target.write(b"again\n")
    target.close()
    assert drain(read_end) == b"hello\nagain\n"
    assert os.get_blocking(write_end)
    os.write(write_end, b"still open\n")
    assert drain(read_end) == b"still open\n"


@needs_root
def test_a_guarded_copy_of_another_users_pipe_writes_only_what_it_can_take(
    pipe: tuple[int, int],
) -> None:
    """The supervisor's own log on a standard error that is another user's pipe (a
    container run as a user): it may not open it again (EACCES), so it writes the
    shared fd, never changing its flags, and only when poll says the pipe can take
    more: a pipe nobody drains drops whole lines and never blocks."""
    read_end, write_end = pipe
    fcntl.fcntl(read_end, F_SETPIPE_SZ, 4096)

    def as_nobody() -> None:
        os.close(read_end)  # a blocked write (the bug) fails once the test closes its own
        signal.alarm(20)
        with pytest.raises(PermissionError):
            Target.open("inherit", "web's stdout", write_end)
        target = Target.open("inherit", "the supervisor's log", write_end, guarded=True)
        assert target is not None
        started = time.monotonic()
        for n in range(0, 2000, 10):  # 24 000 bytes, the pipe holds 4096
            target.write(numbered(n, n + 10))
        assert time.monotonic() - started < 5
        assert target.dropped > 0 and target.written + target.dropped == 24_000
        assert os.get_blocking(write_end)
        assert target._writer is None  # poll is exact for a pipe: no thread
        target.close()

    run_as_nobody(as_nobody)
    found = numbers(drain(read_end))
    assert found == list(range(len(found))) and 0 < len(found) < 2000


@needs_root
def test_a_guarded_copy_writes_a_long_line_only_as_far_as_the_pipe_takes_it(
    pipe: tuple[int, int],
) -> None:
    """A program's line longer than PIPE_BUF, on another user's pipe nobody drains
    (a program's "inherit" under a supervisor run as a user): written PIPE_BUF bytes
    at a time, each after poll said there is room. In one write after poll, it
    blocked until a reader made room: the supervisor hung."""
    read_end, write_end = pipe
    fcntl.fcntl(read_end, F_SETPIPE_SZ, 4096)

    def as_nobody() -> None:
        os.close(read_end)
        signal.alarm(20)
        target = Target.open("inherit", "web's stdout", write_end, guarded=True)
        assert target is not None
        started = time.monotonic()
        for _ in range(3):
            target.write(b"x" * 20_000 + b"\n")
        assert time.monotonic() - started < 5
        assert target.written == 4096 and target.dropped > 0
        assert os.get_blocking(write_end)
        target.close()

    run_as_nobody(as_nobody)
    assert drain(read_end) == b"x" * 4096


def test_a_pty_never_rotates_and_its_lines_stay_whole() -> None:
    master, slave = os.openpty()
    try:
        target = opened(LogFile(os.ttyname(slave), max_bytes=50))
        assert not target.rotates
        target.write(numbered(0, 100))
        data = drain(master).replace(b"\r\n", b"\n")
        assert data == numbered(0, 100)
        # Nobody reads: the tty fills up, then writing drops (at most one cut line waits).
        started = time.monotonic()
        for n in range(0, 100_000, 500):
            target.write(numbered(n, n + 500))
        assert time.monotonic() - started < 5
        assert target.dropped > 0
        held = drain(master).replace(b"\r\n", b"\n")
        target.write(numbered(100_000, 100_001))  # the rest of a cut line goes first
        held += drain(master).replace(b"\r\n", b"\n")
        found = numbers(held)
        assert found == sorted(found) and found[-1] == 100_000
        target.close()
    finally:
        os.close(master)
        os.close(slave)


def read_until(fd: int, end: bytes, timeout: float = 10) -> bytes:
    """What a pty's master gives (newlines as written) until ``end`` is in it, within
    ``timeout`` s."""
    got = b""
    deadline = time.monotonic() + timeout
    while end not in got.replace(b"\r\n", b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no {end!r} within {timeout} s: {got[-200:]!r}"
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 1 << 16)
    return got.replace(b"\r\n", b"\n")


@needs_root
def test_a_guarded_copy_of_another_users_terminal_nobody_reads_never_blocks() -> None:
    """A supervisor run as a user, its stdout another user's terminal (root's pty: it
    may not open it again) that nobody reads: a write blocked (for a terminal, poll
    says POLLOUT for any room at all), and the supervisor hung. A writer thread now
    does the blocking writes; the target hands it whole lines while it holds less than
    64 KiB, drops and counts the rest, and the shared fd stays blocking."""
    master, slave = os.openpty()

    def as_nobody() -> None:
        signal.alarm(20)
        with pytest.raises(PermissionError):
            Target.open("inherit", "web's stdout", slave)
        target = Target.open("inherit", "web's stdout", slave, guarded=True)
        assert target is not None
        started = time.monotonic()
        for n in range(0, 100_000, 500):  # 1.2 MB, the terminal holds a few KiB
            target.write(numbered(n, n + 500))
        assert time.monotonic() - started < 5
        assert target.dropped > 0 and target.written + target.dropped == 1_200_000
        assert os.get_blocking(slave)
        # A reader again: what was held comes out whole and in order, then new lines.
        held = b""
        tries = 0
        while True:
            held += read_until(master, b"\n")
            dropped = target.dropped
            target.write(numbered(100_000, 100_001))
            tries += 1
            if target.dropped == dropped:
                break
        held += read_until(master, b"line 100000\n")
        found = numbers(held)
        assert found == sorted(found) and found[-1] == 100_000
        assert target.written + target.dropped == 1_200_000 + 12 * tries
        # One thread for the terminal, whoever writes it; it ends with the last of them.
        other = Target.open("inherit", "the supervisor's log", slave, guarded=True)
        assert other is not None and other._writer is target._writer
        assert target._writer is not None
        thread = target._writer._thread
        target.close()
        other.write(b"the last line\n")
        assert other.dropped == 0
        other.close()
        thread.join(5)
        assert not thread.is_alive()
        assert b"the last line\n" in read_until(master, b"the last line\n")

    try:
        run_as_nobody(as_nobody)
    finally:
        os.close(master)
        os.close(slave)


def test_inherit_of_a_terminal_that_hung_up_drops_and_counts() -> None:
    """The supervisor's stdout a terminal whose other end closed (its session
    ended): a program's "inherit" cannot open it again (EIO). It was an error
    ("cannot open cannot use fd 1 for web's stdout: Input/output error"), and
    the program never started; now its output is dropped and counted."""
    master, slave = os.openpty()
    os.close(master)
    try:
        target = Target.open("inherit", "web's stdout", slave, guarded=True)
        assert target is not None
        target.write(b"hello\n")
        assert target.dropped == len(b"hello\n") and target.written == 0
        assert target.error is not None
        assert target.error.strerror == f"web's stdout: fd {slave} is a terminal that hung up"
        target.close()
    finally:
        os.close(slave)


def test_inherit_of_a_closed_fd_names_the_stream_once() -> None:
    """What an fd that cannot be used says, after the caller's "cannot open "."""
    with pytest.raises(OSError) as info:
        Target.open("inherit", "web's stdout", 999, guarded=True)
    assert info.value.strerror == "web's stdout (fd 999): Bad file descriptor"


def test_a_socket_is_written_without_blocking_and_left_blocking() -> None:
    ours, theirs = socket.socketpair()
    try:
        target = opened("inherit", inherit=ours.fileno())
        started = time.monotonic()
        for n in range(0, 200_000, 5000):  # large sends: one is usually taken in part
            target.write(numbered(n, n + 5000))
        assert time.monotonic() - started < 5
        assert target.dropped > 0 and ours.getblocking()
        received = b""
        theirs.setblocking(False)
        while True:
            try:
                received += theirs.recv(1 << 20)
            except BlockingIOError:
                break
        target.write(numbered(200_000, 200_001))  # a cut line's rest, then this line
        received += theirs.recv(1 << 20)
        found = numbers(received)
        assert found == sorted(found) and found[-1] == 200_000
        assert target.written == len(received)
        target.close()
    finally:
        ours.close()
        theirs.close()


# -- a full disk, a target nobody drains ----------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, mounted for the test (root only)."""
    with mounted_tmpfs(tmp_path / "small", "256k") as directory:
        yield directory


@needs_root
def test_a_full_disk_drops_and_counts_and_keeps_whole_lines(small_tmpfs: Path) -> None:
    log = small_tmpfs / "web.log"
    target = opened(str(log))
    capture = Capture(target, None, Ring(65536))
    data = numbered(0, 90_000)  # about 1 MB
    started = time.monotonic()
    for piece in pieces(data, seed=5, most=65536):
        capture.feed("stdout", piece)
    assert time.monotonic() - started < 5
    assert target.dropped > 0 and capture.dropped == target.dropped
    assert target.written + target.dropped == len(data)
    assert target.error is not None and target.error.errno == errno.ENOSPC
    on_disk = log.read_bytes()
    assert len(on_disk) == target.written
    found = numbers(on_disk)  # whole lines only
    assert found == list(range(len(found)))  # dropped only once the disk was full
    # The ring still has the latest output, whatever the disk said.
    assert capture.ring.last(1)[0].text == b"line 089999"
    target.close()


def test_a_pipe_nobody_reads_drops_whole_lines(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 65536)
    target = opened("inherit", inherit=write_end)
    capture = Capture(target, None, Ring(65536))
    data = numbered(0, 90_000)
    started = time.monotonic()
    for piece in pieces(data, seed=9, most=65536):
        capture.feed("stdout", piece)
    assert time.monotonic() - started < 5
    assert target.dropped > 0 and target.written + target.dropped == len(data)
    held = drain(read_end)
    assert len(held) == target.written
    found = numbers(held)  # whole lines, none glued to half another
    assert found == list(range(len(found)))
    capture.feed("stdout", b"line 999999\n")  # room again
    assert drain(read_end) == b"line 999999\n"
    target.close()


def test_a_capture_counts_what_each_target_dropped_once() -> None:
    """stdout and stderr to two pipes nobody reads: the capture's dropped bytes are
    the sum of both targets'; one target for both streams is counted once; a
    target shared with another capture counts, in each, that one's lines only."""
    ends = [os.pipe(), os.pipe()]
    targets = []
    try:
        for _read_end, write_end in ends:
            fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
            targets.append(opened("inherit", inherit=write_end))
        out, err = targets
        both = Capture(out, err, Ring(4096))
        both.feed("stdout", b"o" * 5000 + b"\nafter\n")  # the pipe is full at "after"
        both.feed("stderr", b"e" * 7000 + b"\nafter\n")
        assert out.dropped > 0 and err.dropped > 0
        assert both.dropped == out.dropped + err.dropped
        before = out.dropped
        shared = Capture(out, out, Ring(4096))
        shared.feed("stdout", b"more\n")
        shared.feed("stderr", b"more\n")
        assert shared.dropped == out.dropped - before == 10
        assert both.dropped == before + err.dropped
        assert Capture(None, None, Ring(4096)).dropped == 0
    finally:
        for target in targets:
            target.close()
        for read_end, write_end in ends:
            os.close(read_end)
            os.close(write_end)


def test_a_line_longer_than_pipe_buf_is_finished_before_the_next(pipe: tuple[int, int]) -> None:
    """A write of more than PIPE_BUF bytes to a pipe may be cut: the rest of that line waits
    and goes first, so the reader never sees the next line glued to half a line."""
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    target = opened("inherit", inherit=write_end)
    long_line = b"L" * 6000 + b"\n"
    target.write(long_line + b"after\n")
    assert target.written == 4096
    assert target.dropped == len(b"after\n")
    first = drain(read_end)
    target.write(b"next\n")
    assert first + drain(read_end) == long_line + b"next\n"
    assert target.written + target.dropped == len(long_line) + 6 + 5
    target.close()


def test_targets_on_one_pipe_never_write_into_each_others_cut_line(
    pipe: tuple[int, int],
) -> None:
    """Two programs' "inherit" stdout: two targets, two opens (as root, through
    /proc/self/fd) of one pipe. A's line longer than PIPE_BUF went out in part; B's
    lines went into the pipe in the middle of it (each target owed only its own
    rest). Now the rest of A's line is written first, whoever writes next, and B's
    lines meanwhile are dropped and counted."""
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    a = opened("inherit", "a's stdout", write_end)
    b = opened("inherit", "b's stdout", write_end)
    try:
        long_line = b"A" * 6000 + b"\n"
        a.write(long_line)
        assert a.written == 4096
        b.write(b"b" * 100 + b"\n")  # the pipe is full: dropped, A's line still owed
        assert b.dropped == 101 and b.written == 0
        out = drain(read_end)
        b.write(b"b" * 100 + b"\n")  # A's rest first, then this line
        b.write(b"b" * 100 + b"\n")
        out += drain(read_end)
        assert out == long_line + (b"b" * 100 + b"\n") * 2
        assert a.written == len(long_line) and a.dropped == 0
        assert b.written + b.dropped == 303
    finally:
        a.close()
        b.close()


@needs_root
def test_guarded_targets_on_one_pipe_never_write_into_each_others_cut_line(
    pipe: tuple[int, int],
) -> None:
    """The same as another user (one shared fd, written PIPE_BUF bytes at a time when
    poll says there is room): B's line went in after A's first 4096 bytes."""
    read_end, write_end = pipe
    fcntl.fcntl(read_end, F_SETPIPE_SZ, 4096)
    long_line = b"A" * 6000 + b"\n"
    line = b"b" * 100 + b"\n"

    def as_nobody() -> None:
        signal.alarm(20)
        a = Target.open("inherit", "a's stdout", write_end, guarded=True)
        b = Target.open("inherit", "b's stdout", write_end, guarded=True)
        assert a is not None and b is not None
        a.write(long_line)
        assert a.written == 4096
        b.write(line)
        assert b.dropped == len(line) and b.written == 0
        out = drain(read_end)  # an inherited fd: read as nobody too
        b.write(line)  # A's rest goes first (the pipe has no PIPE_BUF bytes free after)
        out += drain(read_end)
        b.write(line)
        out += drain(read_end)
        assert out == long_line + line
        assert a.written == len(long_line) and b.written == len(line)
        assert b.dropped == 2 * len(line)
        a.close()
        b.close()

    run_as_nobody(as_nobody)


# -- timestamps -----------------------------------------------------------------------------


def test_timestamps_prefix_each_line(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), timestamps=True))
    when = 1_800_000_000.123_456
    capture = Capture(target, None, Ring(4096), clock=lambda: when)
    capture.feed("stdout", b"one\ntwo\nth")
    capture.feed("stdout", b"ree\n")
    target.close()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)).encode() + b".123 "
    assert log.read_bytes() == b"".join(stamp + t + b"\n" for t in (b"one", b"two", b"three"))
    assert capture.ring.last(1) == [Line("stdout", when, b"three")]  # the ring keeps the text


def test_timestamps_count_in_rotation(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(LogFile(str(log), max_bytes=400, backups=50, timestamps=True))
    for n in range(0, 100, 7):
        target.write(numbered(n, min(n + 7, 100)), when=1_800_000_000.0)
    target.close()
    files = rotated(log)
    assert all(p.stat().st_size <= 400 for p in files)
    lines = b"".join(p.read_bytes() for p in files).split(b"\n")[:-1]
    assert [int(line[-6:]) for line in lines] == list(range(100))
    assert all(re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000 line \d{6}", x) for x in lines)


# -- the ring -------------------------------------------------------------------------------


def test_ring_keeps_the_last_bytes_in_whole_lines() -> None:
    """Each chunk counts its text and CHUNK_COST: room for 10 chunks of 10 lines and
    5 lines of one more."""
    size = 10 * (120 + CHUNK_COST) + CHUNK_COST + 60
    ring = Ring(size)
    for n in range(0, 1000, 10):
        ring.add("stdout" if n % 20 else "stderr", float(n), numbered(n, n + 10))
        assert len(ring) <= size
    lines = ring.last(10_000)
    assert [int(line.text[5:]) for line in lines] == list(range(1000 - len(lines), 1000))
    assert len(lines) == 105
    assert lines[-1] == Line("stdout", 990.0, b"line 000999")
    big = numbered(0, 400)  # one chunk larger than the ring: its newest lines that fit
    ring.add("stderr", 1.0, big)
    kept = (size - CHUNK_COST) // 12
    assert [line.text for line in ring.last(10_000)] == big.splitlines()[-kept:]


def test_ring_knows_the_newest_chunk_it_lost() -> None:
    """``lost``: the newest mark whose lines were dropped, or cut, to stay within
    size: ``tail`` after a cursor older than it missed lines."""
    ring = Ring(30 + 2 * CHUNK_COST)  # two chunks, 30 bytes of text
    ring.add("stdout", 1.0, numbered(0, 2))  # 24 bytes: mark 1
    assert (ring.mark, ring.lost) == (1, 0)
    ring.add("stdout", 2.0, numbered(2, 3))  # mark 2: mark 1 loses a line
    assert (ring.mark, ring.lost) == (2, 1)
    ring.add("stdout", 3.0, numbered(3, 5))  # mark 3: the rest of 1, and 2, go
    assert (ring.mark, ring.lost) == (3, 2)
    assert [line.text for line in ring.last(10, since=2)] == [b"line 000003", b"line 000004"]
    off = Ring(0)
    off.add("stdout", 1.0, numbered(0, 1))
    assert off.lost == off.mark == 1


def test_ring_after_goes_on_from_its_cursor_in_whole_chunks() -> None:
    """A follower's lines: the oldest after its mark first, whole chunks up to the
    one that reaches ``most``; the mark returned is where the next call goes on, so
    that nothing the ring holds is skipped (the newest ``most`` skipped the rest)."""
    ring = Ring(1 << 20)
    for first in range(0, 300, 10):  # 30 chunks of 10 lines: marks 1 to 30
        ring.add("stdout", 1.0, numbered(first, first + 10))
    for most, most_bytes in ((25, 1 << 20), (1000, 250)):  # a chunk: 10 lines, 120 bytes
        got: list[int] = []
        cursor = 0
        while cursor < ring.mark:
            lines, cursor = ring.after(cursor, most, most_bytes)
            assert 25 <= len(lines) <= 30 or cursor == ring.mark
            got += numbers(b"".join(line.text + b"\n" for line in lines))
        assert got == list(range(300))
    assert ring.after(ring.mark, 25, 1 << 20) == ([], ring.mark)
    ring.size = 100  # all but the last lines lost: the cursor is the newest mark
    lines, cursor = ring.after(0, 25, 1 << 20)
    assert cursor == ring.mark and numbers(b"".join(x.text + b"\n" for x in lines))[-1] == 299


def test_ring_last_keeps_within_a_byte_budget() -> None:
    """``tail -n`` of long lines: the newest whole lines within ``most_bytes`` (an
    answer of 100,000 lines of 1 KB, written by JSON 6 bytes for each byte that
    is not UTF-8, was past what a client reads: every tail of it failed)."""
    ring = Ring(1 << 20)
    ring.add("stdout", 1.0, numbered(0, 100))  # 12 bytes a line
    assert [line.text for line in ring.last(1000, most_bytes=60)] == [
        b"line %06d" % n for n in range(95, 100)
    ]
    assert len(ring.last(1000, most_bytes=5)) == 1  # at least the newest line
    assert len(ring.last(1000)) == 100


def test_a_tail_unpacks_as_lines_and_cursor_and_keeps_missed_through_pickle() -> None:
    import copy
    import pickle

    from daemonctx.supervisor.results import OutputLine, Tail

    tail = Tail([OutputLine("stdout", 1.0, "x")], 5, True)
    lines, cursor = tail
    assert (lines, cursor) == (tail.lines, tail.cursor) == ([OutputLine("stdout", 1.0, "x")], 5)
    for again in (pickle.loads(pickle.dumps(tail)), copy.copy(tail), copy.deepcopy(tail)):
        assert again == tail and again.missed is True
    assert Tail([], 0).missed is False


def test_ring_last_across_chunks_and_streams_in_feed_order() -> None:
    ring = Ring(1 << 16)
    ring.add("stdout", 1.0, b"a\nb\n")
    ring.add("stderr", 2.0, b"c\n")
    ring.add("stdout", 3.0, b"d\ne\nf\n")
    assert ring.last(0) == [] and ring.last(-1) == []
    assert ring.last(4) == [
        Line("stderr", 2.0, b"c"),
        Line("stdout", 3.0, b"d"),
        Line("stdout", 3.0, b"e"),
        Line("stdout", 3.0, b"f"),
    ]
    assert [line.text for line in ring.last(100)] == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert ring.last(2, "stderr") == [Line("stderr", 2.0, b"c")]
    assert [line.text for line in ring.last(3, "stdout")] == [b"d", b"e", b"f"]


def test_ring_follow_and_unfollow() -> None:
    ring = Ring(0)  # keeps nothing, but can still be followed
    seen: list[Line] = []
    ring.add("stdout", 1.0, b"before\n")
    stop = ring.follow(seen.append)
    ring.add("stdout", 2.0, b"x\ny\n")
    ring.add("stderr", 3.0, b"z\n")
    stop()
    stop()
    ring.add("stdout", 4.0, b"after\n")
    assert seen == [Line("stdout", 2.0, b"x"), Line("stdout", 2.0, b"y"), Line("stderr", 3.0, b"z")]
    assert ring.last(10) == []


def test_ring_follower_that_raises_is_stopped_and_the_others_still_run() -> None:
    ring = Ring(1000)
    seen: list[bytes] = []

    def broken(line: Line) -> None:
        raise BrokenPipeError("client went away")

    ring.follow(broken)
    ring.follow(lambda line: seen.append(line.text))
    with pytest.raises(BrokenPipeError):
        ring.add("stdout", 1.0, b"one\n")
    ring.add("stdout", 2.0, b"two\n")
    assert seen == [b"one", b"two"]
    assert [line.text for line in ring.last(5)] == [b"one", b"two"]


def test_ring_live_size_change_trims() -> None:
    ring = Ring(10_000)
    ring.add("stdout", 1.0, numbered(0, 500))
    assert len(ring) == 6000 + CHUNK_COST
    ring.size = 120 + CHUNK_COST
    assert len(ring) == 120 + CHUNK_COST
    assert [line.text for line in ring.last(100)] == numbered(490, 500).splitlines()
    ring.size = 0
    assert len(ring) == 0 and ring.last(5) == []
    with pytest.raises(ValueError):
        ring.size = -1


def test_a_line_longer_than_the_ring_keeps_its_end_and_what_came_before() -> None:
    """A line longer than the ring emptied it, the lines before it with it: a 64 KiB
    line (65,537 bytes once cut, the default ring 65,536) after an error on stderr
    left ``ctl tail`` nothing and ``ctl why`` no stderr. A line longer than half the
    ring keeps its last half, wherever it is in its chunk; followers get it whole."""
    ring = Ring(65536)
    followed: list[Line] = []
    ring.follow(followed.append)
    fatal = b"FATAL: cannot parse /etc/app.conf line 3"
    ring.add("stderr", 1.0, fatal + b"\n")
    ring.add("stdout", 2.0, b"x" * MAX_LINE + b"\n")
    assert ring.last(10) == [Line("stderr", 1.0, fatal), Line("stdout", 2.0, b"x" * 32767)]
    assert len(ring) <= 65536
    assert followed[-1].text == b"x" * MAX_LINE
    ring.add("stdout", 3.0, b"before\n" + b"y" * 40000 + b"\nafter\n")  # pushes out the x
    assert [line.text[:6] for line in ring.last(4)] == [b"before", b"yyyyyy", b"after"]
    assert len(ring.last(4)[1].text) == 32767 and len(ring) <= 65536
    # output_buffer = 4096 and 5 KB JSON lines: the newest one's end, never nothing
    small = Ring(4096)
    small.add("stdout", 1.0, b"started\n")
    for n in range(3):
        small.add("stdout", 2.0 + n, b'{"n": %d, "pad": "%s"}\n' % (n, b"z" * 5000))
        (last,) = small.last(1)
        assert last.when == 2.0 + n and len(last.text) == 2047 and len(small) <= 4096


def test_short_writes_cannot_make_the_ring_hold_more_than_about_its_size() -> None:
    """One chunk per read, and a program writing 1-byte lines one write at a time:
    each chunk's entry takes about 180 bytes, and the ring counted only the text,
    so output_buffer = 500,000 held about 100 MB. Each chunk counts CHUNK_COST
    now: the memory held stays within twice the size (its text: 1 in 180)."""
    import tracemalloc

    size = 100_000
    ring = Ring(size)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(size):
            ring.add("stdout", float(n), b"%d\n" % (n % 10))  # a new object, as os.read's
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(ring) <= size
    assert held <= 2 * size, held
    assert [line.text for line in ring.last(3)] == [b"7", b"8", b"9"]
    mark = ring.mark
    ring.add("stderr", 1.0, b"new\n")
    assert ring.last(5, since=mark) == [Line("stderr", 1.0, b"new")]


# -- Capture: separate and merged streams ---------------------------------------------------


def test_capture_separate_streams(tmp_path: Path) -> None:
    out, err = opened(str(tmp_path / "out.log")), opened(str(tmp_path / "err.log"), "web's stderr")
    capture = Capture(out, err, Ring(4096))
    capture.feed("stdout", b"o1\no")
    capture.feed("stderr", b"e1\ne2\ne")
    capture.feed("stdout", b"2\n")
    capture.feed("stderr", b"3\n")
    capture.close_stream("stderr")
    with pytest.raises(ValueError, match="unknown stream"):
        capture.feed("stdin", b"x\n")
    out.close()
    err.close()
    assert (tmp_path / "out.log").read_bytes() == b"o1\no2\n"
    assert (tmp_path / "err.log").read_bytes() == b"e1\ne2\ne3\n"
    assert capture.stderr_tail(2) == ["e2", "e3"]
    assert [(line.stream, line.text) for line in capture.ring.last(10)] == [
        ("stdout", b"o1"),
        ("stderr", b"e1"),
        ("stderr", b"e2"),
        ("stdout", b"o2"),
        ("stderr", b"e3"),
    ]


def test_capture_merged_stderr_goes_through_stdout(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    target = opened(str(log))
    capture = Capture(target, None, Ring(4096), merged=True)
    capture.feed("stdout", b"out\nerr")
    capture.feed("stderr", b"or \xff\n")  # one pipe: a line may arrive as either
    capture.close_stream("stderr")
    target.close()
    assert log.read_bytes() == b"out\nerror \xff\n"
    assert {line.stream for line in capture.ring.last(10)} == {"stdout"}
    assert capture.stderr_tail(1) == ["error \ufffd"]
    assert capture.dropped == 0


def test_capture_without_targets_still_fills_the_ring() -> None:
    capture = Capture(None, None, Ring(4096))
    capture.feed("stderr", b"Traceback\nValueError: x\n")
    assert capture.stderr_tail(5) == ["Traceback", "ValueError: x"]
    assert capture.dropped == 0


# -- opening: refused, one line naming the path ---------------------------------------------


def test_open_in_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "web.log"
    with pytest.raises(OSError) as caught:
        Target.open(str(path), "web's stdout")
    message = str(caught.value)
    assert "web's stdout" in message and str(path) in message and "\n" not in message


def test_open_refuses_a_relative_path_and_other_words() -> None:
    with pytest.raises(ValueError):
        Target.open("web.log", "web's stdout")
    with pytest.raises(ValueError):
        Target.open("stdout", "web's stderr")


@needs_root
def test_open_refuses_a_planted_symlink(shared_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"root's\n")
    log = shared_dir / "web.log"
    run_as_nobody(lambda: os.symlink(secret, log))
    with pytest.raises(UnsafePathError) as caught:
        Target.open(LogFile(str(log), max_bytes=10), "web's stdout")
    assert str(log) in str(caught.value) and "\n" not in str(caught.value)
    assert secret.read_bytes() == b"root's\n"


def test_a_follower_that_stops_at_its_first_line_is_told_one_line_per_chunk() -> None:
    """A waiting ``tail`` wants the first line of a chunk, then the whole chunk in
    one answer: once it stops following, it is told no more of that chunk (it was
    called for each of 30,000 lines, by each of 30 followers: ping took 4.5 s)."""
    ring = Ring(1 << 20)
    calls: list[bytes] = []
    stops = []

    def first(line: Line) -> None:
        calls.append(line.text)
        stops[0]()

    stops.append(ring.follow(first))
    steady: list[bytes] = []
    ring.follow(lambda line: steady.append(line.text))
    ring.add("stdout", 1.0, numbered(0, 30_000))
    assert calls == [b"line 000000"]
    assert len(steady) == 30_000


def test_a_target_closed_while_it_owes_a_cut_line_leaves_its_rest_to_the_next_writer(
    pipe: tuple[int, int],
) -> None:
    """A reload closed a's target (a's stdout now "null", a removed) while it owed
    the rest of a cut line: the rest was dropped and b's next line went straight
    after the half line. Now a's target tries once more as it closes, then leaves
    the rest to the pipe's next writer, which writes it first (and counts it)."""
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    long_line = b"A" * 6000 + b"\n"
    line = b"b" * 100 + b"\n"
    a = opened("inherit", "a's stdout", write_end)
    b = opened("inherit", "b's stdout", write_end)
    try:
        a.write(long_line)
        assert a.written == 4096
        a.close()  # the pipe still full: the rest stays owed
        assert a.dropped == 0
        b.write(line)  # still full: dropped, the rest still first in line
        assert b.dropped == len(line) and b.written == 0
        out = drain(read_end)
        b.write(line)
        out += drain(read_end)
        assert out == long_line + line
        assert b.written == len(long_line) - 4096 + len(line)
    finally:
        a.close()
        b.close()


def test_a_rest_left_by_the_last_target_on_a_pipe_is_written_by_the_next_one(
    pipe: tuple[int, int],
) -> None:
    """The only program on the pipe removed mid-line, another added later: that one
    writes the rest first, never its line after the half one."""
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    long_line = b"A" * 6000 + b"\n"
    line = b"c" * 100 + b"\n"
    a = opened("inherit", "a's stdout", write_end)
    a.write(long_line)
    a.close()
    out = drain(read_end)
    c = opened("inherit", "c's stdout", write_end)
    try:
        c.write(line)
        out += drain(read_end)
        assert out == long_line + line
    finally:
        c.close()


def test_a_target_closed_while_it_owes_pays_as_it_closes_when_it_can(
    pipe: tuple[int, int],
) -> None:
    """A reader made room before the close: the closing target writes the rest itself
    (counted as its own), and nothing is left for anyone."""
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    long_line = b"A" * 6000 + b"\n"
    a = opened("inherit", "a's stdout", write_end)
    a.write(long_line)
    out = drain(read_end)
    a.close()
    out += drain(read_end)
    assert out == long_line
    assert a.written == len(long_line) and a.dropped == 0


@needs_root
def test_a_terminal_whose_writer_thread_cannot_start_is_a_target_that_cannot_be_opened(
    pids_cgroup: Path,
) -> None:
    """Another user's terminal (written by a thread) in a pids cgroup at its limit:
    ``Thread.start`` raised RuntimeError through ``Target.open``, which the
    supervisor took for an internal error (the program "starting" for good). Now it
    is an OSError (EAGAIN) naming the stream, as a file that cannot be opened: the
    start fails and is tried again; nothing is left open or half set up."""
    master, slave = os.openpty()
    try:

        def in_the_group() -> None:
            from daemonctx.supervisor import output

            (pids_cgroup / "cgroup.procs").write_text(str(os.getpid()))
            (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text())
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            before = sorted(os.listdir("/proc/self/fd"))
            lanes, writers = dict(output._lanes), dict(output._writers)
            with pytest.raises(OSError) as raised:
                Target.open("inherit", "b's stdout", slave, guarded=True)
            assert raised.value.errno == errno.EAGAIN, raised.value
            assert str(raised.value.strerror).startswith(
                f"b's stdout (fd {slave}): cannot start a thread to write it: "
            ), raised.value
            assert sorted(os.listdir("/proc/self/fd")) == before
            assert output._lanes == lanes and output._writers == writers

        run_in_child(in_the_group)
    finally:
        os.close(master)
        os.close(slave)
