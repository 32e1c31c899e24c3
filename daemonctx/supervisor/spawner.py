"""A thread with a small descriptor table of its own, to fork programs from.

A fork copies the forking thread's descriptor table, and the child closes all
but three of them again before its exec, while Popen waits. With 1,000
programs the supervisor holds some 3,000 descriptors (a pidfd and two pipes
each), cold in the cache: measured, the child's ``close_range`` alone took 0.4
to 0.8 ms on every restart, the table's copy besides. A ``Spawner`` thread calls
``unshare(CLONE_FILES)``: from then on its table is its own, it closes all it
copied, and a program forked from it copies almost nothing. The loop thread
hands it one start at a time and waits for it (60 to 130 µs more), passing the
program's stdout and stderr over a socket pair (SCM_RIGHTS), since a
descriptor the loop opens later is not in the spawner's table.

The programs are still our children: any thread may wait for them, and the
loop reaps them as before. Orphans are adopted by the first live thread, the
loop's, never by the spawner. The spawner keeps the loop's signal wake-up
descriptor at its number: a signal the kernel delivers to the spawner's thread
writes to it, as to the loop's. The spawner must live as long as the programs
it starts: a parent-death signal fires when the forking thread exits.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ..process import close_fds, fd_gaps

__all__ = ["Spawner", "SpawnerGone"]

CLONE_FILES = 0x400
_T = TypeVar("_T")


class SpawnerGone(OSError):
    """The spawner's thread ended before it finished the start asked of it: fork
    from the loop's thread from now on."""


def _unshare_files() -> None:
    """Give this thread a descriptor table of its own (a copy of the shared one).
    Raises ``OSError`` whose text names the call and the reason."""
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        try:
            unshare(CLONE_FILES)
        except OSError as exc:
            raise OSError(exc.errno, f"unshare(CLONE_FILES): {exc.strerror}") from None
        return
    import ctypes

    from .spawn import load_libc  # here only: spawn uses this module

    if load_libc().unshare(CLONE_FILES) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"unshare(CLONE_FILES): {os.strerror(number)}")


class Spawner:
    """Runs ``run``'s calls in a thread whose descriptor table is its own.

    ``keep`` lists the descriptors the thread keeps at their numbers (the signal
    wake-up fd). ``start`` raises ``OSError`` where a thread cannot have a
    table of its own (a seccomp filter that refuses unshare), or cannot start at
    all (EAGAIN: a pids limit, RLIMIT_NPROC): then fork from the loop's thread as
    before. Use from one thread at a time.
    """

    def __init__(self, keep: Iterable[int] = ()) -> None:
        self._keep = set(keep)
        self._ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A number, not a socket object: once the thread has its own table, the
        # same number names its copy there and ours here, each closed on its side.
        self._theirs = theirs.detach()
        self._job: Callable[[int | None, int | None], Any] | None = None
        self._result: Any = None
        self._failed: BaseException | None = None
        self._finished = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spawner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread (its ``native_id`` names ``/proc/<pid>/task/<id>``) while it runs."""
        return self._thread

    def start(self) -> None:
        """Start the thread and wait until its table is its own."""
        thread = threading.Thread(target=self._serve, name="daemonctx-spawner", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": a pids limit, EAGAIN
            os.close(self._theirs)
            self._ours.close()
            raise OSError(errno.EAGAIN, f"cannot start the spawner thread: {exc}") from None
        self._thread = thread
        try:
            ready = self._ours.recv(1)
        finally:
            os.close(self._theirs)  # ours: from now on the thread holds the only copy
        if ready != b"r":
            self.close()
            failed = self._failed
            if isinstance(failed, OSError):
                raise failed
            raise OSError(errno.EIO, f"the spawner thread did not start: {failed!r}")

    def run(
        self, job: Callable[[int | None, int | None], _T], stdout: int | None, stderr: int | None
    ) -> _T:
        """``job(stdout, stderr)`` in the spawner's thread, with copies of the two
        descriptors there (None stays None); what it returns or raises."""
        if self._thread is None:
            raise SpawnerGone(errno.EBADF, "the spawner is closed")
        if stdout is not None and stdout == stderr:
            fds, layout = [stdout], b"oo"
        else:
            fds = [fd for fd in (stdout, stderr) if fd is not None]
            layout = (b"o" if stdout is not None else b"-") + (b"e" if stderr is not None else b"-")
        self._job, self._finished = job, False
        try:
            socket.send_fds(self._ours, [layout], fds)
            done = self._ours.recv(1)
        except OSError:
            done = b""
        finally:
            self._job = None
        if done != b"d":
            self.close()  # joins the thread: what it did is known from here
            if not self._finished:
                raise SpawnerGone(errno.EIO, "the spawner thread is gone")
            # it ended after the job: what the job did stands (a program may run)
        result, failed = self._result, self._failed
        self._result = self._failed = None
        if failed is not None:
            raise failed
        return result  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the thread: it closes what its table holds as it goes. Idempotent."""
        thread, self._thread = self._thread, None
        self._ours.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _serve(self) -> None:
        theirs = self._theirs
        try:
            _unshare_files()
        except BaseException as exc:
            self._failed = exc
            os.write(theirs, b"!")  # the table is still shared: the loop closes it
            return
        # From here the table is this thread's: what it closes, it closes for itself.
        try:
            close_fds(fd_gaps({0, 1, 2, *self._keep, theirs}))  # this thread's table
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            for fd in (0, 1, 2):  # no copy of the supervisor's old log stays open here
                os.dup2(null, fd, inheritable=False)
            os.close(null)
        except BaseException as exc:
            self._failed = exc
            os.write(theirs, b"!")
            os.close(theirs)
            return
        sock = socket.socket(fileno=theirs)
        try:
            sock.send(b"r")
            while True:
                layout, fds, _flags, _address = socket.recv_fds(sock, 2, 2)
                if not layout:
                    return  # the loop closed its end
                self._do(layout, fds)
                sock.send(b"d")
        except OSError:  # the loop sees the end of the socket: SpawnerGone
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _do(self, layout: bytes, fds: list[int]) -> None:
        """Run the job with the descriptors received, then close them: a copy left
        here would keep the program's pipes from ever reaching their end."""
        try:
            given = iter(fds)
            stdout = next(given) if layout[:1] == b"o" else None
            second = next(given) if layout[1:] == b"e" else None
            stderr = stdout if layout == b"oo" else second
            job = self._job
            assert job is not None
            self._result = job(stdout, stderr)
        except BaseException as exc:  # raised again in the loop's thread
            self._failed = exc
        finally:
            self._finished = True
            for fd in fds:
                os.close(fd)
