"""The supervisor's event loop: one thread, one epoll, one heap of deadlines.

Readers are file descriptors (pidfds, sockets, pipes, the signal wake-up fd)
with a callback; timers are deadlines on the monotonic clock. ``run`` blocks in
``epoll_wait`` with the nearest deadline as its timeout (at most
``LONGEST_WAIT``, about 24.8 days), or with no timeout at all when no timer is
armed: an idle supervisor makes no wake-ups. epoll itself,
not ``selectors``: the supervisor runs on Linux only, and the wrapper's
bookkeeping (a key list per wake-up) was about 6 % of a status request's time.

Signals arrive through ``signal.set_wakeup_fd``: the handlers installed by
``watch_signals`` do nothing in Python; the interpreter's C handler writes the
signal's number to a non-blocking socket the loop reads, so a signal is an
event like any other and no callback runs inside a signal handler. The one
exception: while ``interruptible`` runs application code (a registered
command), a stop signal also raises ``Interrupted`` there, so that no command,
however slow or stuck, holds a shutdown up; the loop still gets the signal.
"""

from __future__ import annotations

import heapq
import itertools
import select
import signal
import socket
import time
from _thread import get_ident
from typing import Callable, TypeVar

__all__ = ["LONGEST_WAIT", "EventLoop", "Interrupted", "Timer", "running_in_this_thread"]

T = TypeVar("T")
#: The longest wait ``epoll_wait`` takes: its timeout is an int of milliseconds
#: (Python raises OverflowError past INT_MAX). A timer further away is waited
#: for in steps: the loop wakes early, runs nothing, and waits again.
LONGEST_WAIT = 2_147_483.0
#: The threads in ``EventLoop.run``: code they call cannot wait for the loop.
_running: set[int] = set()


def running_in_this_thread() -> bool:
    """Whether this code runs inside an ``EventLoop.run`` (a callback of it):
    what it waits for, the loop cannot do meanwhile."""
    return get_ident() in _running


class Interrupted(BaseException):
    """A stop signal came while ``EventLoop.interruptible`` ran code: raised in
    that code, wherever it was (a ``time.sleep``, a socket's ``recv``). Not an
    ``Exception``: an ``except Exception`` in the code does not stop it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Timer:
    """A deadline armed with ``EventLoop.call_at``; ``cancel()`` disarms it."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # What the callback holds goes now, not when the heap drops the entry
        # (it may stay there up to its deadline, behind live timers).
        self.callback = _nothing


class _Watch:
    """One watched fd: its callback and the epoll events asked for."""

    __slots__ = ("callback", "events")

    def __init__(self, callback: Callable[[], object], events: int) -> None:
        self.callback = callback
        self.events = events


class EventLoop:
    """Readers and timers, run in one thread until ``stop()``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()  # close-on-exec
        self._watches: dict[int, _Watch] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        self._stopping = False
        #: Counts the waits for events: what was read of the system during one
        #: batch of callbacks may be reused within it (the supervisor's children).
        self.iteration = 0
        self._signal_socket: socket.socket | None = None
        self._signal_writer: socket.socket | None = None
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._old_wakeup_fd = -1
        self._interrupting: set[int] = set()  # the signals that raise Interrupted
        self._interruptible = False  # interruptible() runs code, not interrupted yet

    #: The loop's clock: ``time.monotonic()`` itself (no Python frame per call).
    time = staticmethod(time.monotonic)

    # -- readers ----------------------------------------------------------------------

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (replaces an earlier one)."""
        self.watch(fd, callback, read=True, write=False)

    def watch(self, fd: int, callback: Callable[[], object], *, read: bool, write: bool) -> None:
        """Call ``callback()`` when ``fd`` is readable (``read``) or writable (``write``);
        neither: stop watching it."""
        events = (select.EPOLLIN if read else 0) | (select.EPOLLOUT if write else 0)
        if not events:
            self.remove_reader(fd)
            return
        old = self._watches.get(fd)
        if old is None:
            self._epoll.register(fd, events)
        elif old.events != events:
            try:
                self._epoll.modify(fd, events)
            except FileNotFoundError:  # closed unwatched, its number reused: a new fd
                self._epoll.register(fd, events)
        # A new watch even for the same events: run() tells it from the old one.
        self._watches[fd] = _Watch(callback, events)

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd``; harmless when it is not watched. Call before closing it."""
        if self._watches.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:  # closed already: the kernel dropped it
                pass

    @property
    def watched(self) -> int:
        """How many descriptors are watched (about as many as the supervisor holds)."""
        return len(self._watches)

    @property
    def wakeup_fd(self) -> int | None:
        """The descriptor signals are written to (``watch_signals``), if any."""
        writer = self._signal_writer
        return None if writer is None else writer.fileno()

    # -- timers -----------------------------------------------------------------------

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` once, at ``deadline`` (``time()``'s clock) or soon after."""
        timer = Timer(deadline, callback)
        heapq.heappush(self._timers, (deadline, next(self._sequence), timer))
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """Disarm ``timer`` (None is fine). Cancelled entries leave the heap lazily."""
        if timer is not None and not timer.cancelled:
            timer.cancel()
            self._cancelled += 1
            timers = self._timers
            if self._cancelled > 64 and self._cancelled > len(timers) // 2:
                # In place: run() holds this very list, and must see the new
                # timers pushed after the compaction (a new list would leave it
                # waiting on a stale one, with no timeout once that one empties).
                timers[:] = [entry for entry in timers if not entry[2].cancelled]
                heapq.heapify(timers)
                self._cancelled = 0

    # -- signals ------------------------------------------------------------------------

    def watch_signals(
        self, handlers: dict[int, Callable[[int], None]], interrupting: tuple[int, ...] = ()
    ) -> None:
        """Deliver each signal in ``handlers`` as a loop event: ``handler(signum)``;
        those in ``interrupting`` also interrupt the code ``interruptible`` runs."""
        if self._signal_socket is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._signal_socket = reader
            self._signal_writer = writer
            self._old_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            self.add_reader(reader.fileno(), self._read_signals)
        self._interrupting.update(interrupting)
        for signum, handler in handlers.items():
            self._signal_handlers[signum] = handler
            signal.signal(signum, self._in_python)

    def _in_python(self, signum: int, frame: object) -> None:
        """The Python-level handler: nothing (the wake-up fd carries the signal),
        but in code ``interruptible`` runs, where a stop signal raises; once only,
        so that nothing after that code, the loop's own, can get it."""
        if self._interruptible and signum in self._interrupting:
            self._interruptible = False
            raise Interrupted(signum)

    def interruptible(self, function: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        """``function(*args, **kwargs)``, which a stop signal (``interrupting``)
        interrupts: ``Interrupted`` is raised in it, or at once when one came
        before that the loop has not read yet. The signal stays for the loop."""
        self._interruptible = True
        try:
            pending = self._pending_signals()
            for signum in pending:
                if signum in self._interrupting:
                    self._interruptible = False
                    raise Interrupted(signum)
            return function(*args, **kwargs)
        finally:
            self._interruptible = False

    def _pending_signals(self) -> bytes:
        """The signals written to the wake-up fd and not read yet (read by peeking)."""
        if self._signal_socket is None:
            return b""
        try:
            return self._signal_socket.recv(65536, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return b""

    def _read_signals(self) -> None:
        assert self._signal_socket is not None
        try:
            data = self._signal_socket.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        # Each signal once per read, in order, but a stop signal first: an exit read
        # with it (SIGCHLD) is then part of the shutdown, not a crash to restart.
        signals = dict.fromkeys(data)
        for signum in sorted(signals, key=lambda signum: signum not in self._interrupting):
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                handler(signum)

    # -- running --------------------------------------------------------------------------

    def stop(self) -> None:
        """Make ``run`` return after the current event; before ``run``, at once
        (what was set up before it may have finished already)."""
        self._stopping = True

    def run(self) -> None:
        """Wait for events and call their callbacks until ``stop()``."""
        thread = get_ident()
        _running.add(thread)
        try:
            self._run()
        finally:
            _running.discard(thread)
            self._stopping = False  # the next run goes on until its own stop()

    def _run(self) -> None:
        poll = self._epoll.poll
        watches = self._watches
        timers = self._timers
        while not self._stopping:
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)
                self._cancelled -= 1
            timeout = -1.0  # none: an idle loop makes no wake-ups
            if timers:
                timeout = min(max(0.0, timers[0][0] - time.monotonic()), LONGEST_WAIT)
            self.iteration += 1
            ready = [(fd, watches.get(fd)) for fd, _events in poll(timeout)]
            if len(ready) > 1 and self._signal_socket is not None:
                self._stop_signal_first(ready)
            for fd, watch in ready:
                # A callback earlier in this batch may have closed this fd (and a
                # new one may have its number): only a watch still registered runs.
                if watch is not None and watches.get(fd) is watch:
                    watch.callback()
                if self._stopping:
                    return
            self._run_due_timers()

    def _stop_signal_first(self, ready: list[tuple[int, _Watch | None]]) -> None:
        """A stop signal read in the same batch as a program's exit is handled
        first: the exit is then part of the shutdown, not a crash to restart.
        Else the batch keeps the kernel's order (a program's output pipes before
        its SIGCHLD: its last lines are read in the order they were written)."""
        assert self._signal_socket is not None
        signals = self._signal_socket.fileno()
        if any(fd == signals for fd, _watch in ready) and any(
            signum in self._interrupting for signum in self._pending_signals()
        ):
            ready.sort(key=lambda entry: entry[0] != signals)

    def _run_due_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and (timers[0][0] <= now or timers[0][2].cancelled):
            _deadline, _sequence, timer = heapq.heappop(timers)
            if timer.cancelled:
                self._cancelled -= 1
                continue
            timer.cancelled = True  # fired: a later cancel() is a no-op
            callback, timer.callback = timer.callback, _nothing
            callback()
            if self._stopping:
                return

    def close(self) -> None:
        """Restore the signal wake-up fd and close the epoll."""
        if self._signal_socket is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            for signum in self._signal_handlers:
                signal.signal(signum, signal.SIG_DFL)
            self._signal_socket.close()
            if self._signal_writer is not None:
                self._signal_writer.close()
            self._signal_socket = self._signal_writer = None
        self._epoll.close()
        self._watches.clear()


def _nothing() -> None:
    """A cancelled timer's callback."""
