"""The supervisor's event loop on real descriptors: which callbacks run in a
batch of events, watches changed and dropped, timers, and stop()."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import run_in_child

from daemonctx.supervisor.loop import LONGEST_WAIT, EventLoop, Interrupted


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    loop = EventLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def pipes() -> Iterator[list[tuple[int, int]]]:
    """Pipes the test makes (append to the list); every end still open is closed."""
    made: list[tuple[int, int]] = []
    try:
        yield made
    finally:
        for pair in made:
            for fd in pair:
                try:
                    os.close(fd)
                except OSError:
                    pass


def readable_pipe(pipes: list[tuple[int, int]]) -> int:
    read, write = os.pipe()
    pipes.append((read, write))
    os.write(write, b"x")
    return read


def test_a_callback_runs_while_its_fd_is_readable(
    loop: EventLoop, pipes: list[tuple[int, int]]
) -> None:
    fd = readable_pipe(pipes)
    calls: list[bytes] = []

    def read() -> None:
        calls.append(os.read(fd, 10))
        loop.stop()

    loop.add_reader(fd, read)
    loop.run()
    assert calls == [b"x"]


def test_an_fd_closed_by_an_earlier_callback_of_the_batch_is_not_called_even_if_reused(
    loop: EventLoop, pipes: list[tuple[int, int]]
) -> None:
    first, second = readable_pipe(pipes), readable_pipe(pipes)
    ran: list[str] = []

    def on_first() -> None:
        ran.append("first")
        loop.remove_reader(second)
        os.close(second)
        reused, writer = os.pipe()  # the lowest free number: second's
        pipes.append((reused, writer))
        assert reused == second
        loop.add_reader(reused, lambda: ran.append("reused"))
        loop.call_at(loop.time(), loop.stop)

    # Whichever the kernel reports first closes the other.
    loop.add_reader(first, on_first)
    loop.add_reader(second, lambda: ran.append("second"))
    loop.run()
    assert ran in (["first"], ["second", "first"]), ran
    assert "reused" not in ran  # nothing was written to it


def test_a_number_closed_without_remove_reader_and_reused_can_be_watched_again(
    loop: EventLoop, pipes: list[tuple[int, int]]
) -> None:
    read, write = os.pipe()
    pipes.append((read, write))
    loop.add_reader(read, lambda: None)
    os.close(read)  # the kernel drops it from the epoll set; the loop still has it
    again = readable_pipe(pipes)
    assert again == read
    ran: list[str] = []
    loop.watch(again, lambda: (ran.append("again"), loop.stop()), read=True, write=True)
    loop.run()
    assert ran == ["again"]


def test_watch_changes_events_and_neither_stops_watching(
    loop: EventLoop, pipes: list[tuple[int, int]]
) -> None:
    read, write = os.pipe()
    pipes.append((read, write))
    ran: list[str] = []
    loop.watch(write, lambda: (ran.append("writable"), loop.stop()), read=False, write=True)
    loop.run()
    assert ran == ["writable"]
    loop.watch(write, lambda: ran.append("again"), read=False, write=False)
    loop.remove_reader(write)  # harmless when not watched
    loop.call_at(loop.time(), loop.stop)
    loop.run()
    assert ran == ["writable"]


def test_timers_fire_in_deadline_order_and_cancelled_ones_never(loop: EventLoop) -> None:
    now = loop.time()
    fired: list[str] = []
    loop.call_at(now + 0.02, lambda: (fired.append("late"), loop.stop()))
    loop.call_at(now, lambda: fired.append("now"))
    loop.cancel(loop.call_at(now + 0.01, lambda: fired.append("cancelled")))
    loop.cancel(None)
    loop.run()
    assert fired == ["now", "late"]
    assert loop.time() >= now + 0.02


def test_a_stop_before_run_makes_it_return_at_once_and_the_next_run_goes_on(
    loop: EventLoop,
) -> None:
    """What runs before the loop (the supervisor's first wave) may already be
    over and call stop(): run() returns without waiting for any event, and a
    later run() waits for its own stop()."""
    loop.call_at(loop.time() + 30, lambda: None)  # would keep run() waiting 30 s
    loop.stop()
    began = loop.time()
    loop.run()
    assert loop.time() - began < 5
    fired: list[str] = []
    loop.call_at(loop.time(), lambda: (fired.append("next"), loop.stop()))
    loop.run()
    assert fired == ["next"]


def test_timers_armed_after_cancel_compacted_the_heap_still_fire(
    loop: EventLoop, pipes: list[tuple[int, int]]
) -> None:
    """Once most of the heap is cancelled, cancel() compacts it, while run() is
    running: a timer armed afterwards fires on time. (A new list there left
    run() on the old one, which emptied: it then waited with no timeout, and
    every timer stalled until some descriptor woke it.)"""
    fired: list[str] = []

    def compact() -> None:
        far = [loop.call_at(loop.time() + 60, lambda: fired.append("far")) for _ in range(200)]
        for timer in far:
            loop.cancel(timer)
        loop.call_at(loop.time() + 0.05, lambda: (fired.append("after"), loop.stop()))

    loop.call_at(loop.time(), compact)
    # The bound: a stalled loop wakes on this pipe, written 10 s from now.
    bound_read, bound_write = os.pipe()
    pipes.append((bound_read, bound_write))
    loop.add_reader(bound_read, lambda: (fired.append("bound"), loop.stop()))
    bound = threading.Timer(10, os.write, (bound_write, b"x"))
    bound.start()
    began = loop.time()
    try:
        loop.run()
    finally:
        bound.cancel()
        bound.join()
    assert fired == ["after"], fired
    assert loop.time() - began < 5


def test_a_timer_further_than_epoll_can_wait_is_waited_for_in_steps_never_early(
    loop: EventLoop, pipes: list[tuple[int, int]]
) -> None:
    """epoll_wait takes an int of milliseconds: a timeout past INT_MAX (about 24.8
    days) raised OverflowError, which ended the supervisor (a 2147483 s backoff
    with its jitter, a 50-day WatchdogSec=). The loop waits at most LONGEST_WAIT,
    and a wake-up before the timer is due runs nothing: it waits again."""
    fired: list[str] = []
    loop.call_at(loop.time() + 100 * 86400, lambda: fired.append("far"))
    fd = readable_pipe(pipes)
    loop.add_reader(fd, lambda: (os.read(fd, 1), loop.stop()))
    loop.run()  # the real epoll, given the longest wait
    assert fired == []

    waits: list[float] = []

    class Early:
        """An epoll that returns as if each wait had lasted its whole timeout."""

        def poll(self, timeout: float) -> list[tuple[int, int]]:
            waits.append(timeout)
            if len(waits) == 3:
                loop.stop()
            return []

    real, loop._epoll = loop._epoll, Early()  # type: ignore[assignment]
    try:
        loop.run()
    finally:
        loop._epoll = real
    assert fired == [] and waits == [LONGEST_WAIT] * 3, waits


def test_a_stop_signal_interrupts_only_the_code_interruptible_runs() -> None:
    """In a child (real signals, its own handlers): SIGTERM during
    ``interruptible(time.sleep, 30)`` raises Interrupted there at once; one that
    came before it, unread, raises before the code runs; SIGHUP (not a stop
    signal) and a SIGTERM outside it raise nothing. The loop gets each as an
    event, as before."""

    def check() -> None:
        loop = EventLoop()
        got: list[int] = []
        loop.watch_signals(
            {signal.SIGTERM: got.append, signal.SIGHUP: got.append},
            interrupting=(signal.SIGTERM,),
        )
        me = os.getpid()

        def hangup() -> str:
            os.kill(me, signal.SIGHUP)
            return "went on"

        assert loop.interruptible(hangup) == "went on"
        threading.Timer(0.2, os.kill, (me, signal.SIGTERM)).start()
        began = time.monotonic()
        with pytest.raises(Interrupted) as info:
            loop.interruptible(time.sleep, 30)
        assert info.value.signum == signal.SIGTERM and time.monotonic() - began < 10
        os.kill(me, signal.SIGTERM)  # outside: nothing raised, the loop gets it
        ran: list[bool] = []
        with pytest.raises(Interrupted):  # ...and it is still unread: no code runs
            loop.interruptible(ran.append, True)
        assert ran == []
        loop.call_at(loop.time(), loop.stop)
        loop.run()
        assert set(got) == {signal.SIGHUP, signal.SIGTERM}, got
        loop.close()

    run_in_child(check)
