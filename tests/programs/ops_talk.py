"""A program that talks on stdout and stderr in turn, for
tests/test_supervisor_operations.py.

    ops_talk.py DIR

Writes ``out 1``, ``err 2``, ``out 3``, ``err 4`` (odd lines on stdout, even
ones on stderr, each flushed, 0.05 s apart so that the order they are read in
is the order they were written), then for K = 1, 2, ...: waits until the file
DIR/go-K exists, writes ``follow K`` on stdout and, 0.05 s later,
``follow-err K`` on stderr. Sleeps until killed meanwhile.
"""

from __future__ import annotations

import os
import sys
import time


def say(stream: str, text: str) -> None:
    out = sys.stdout if stream == "out" else sys.stderr
    out.write(text + "\n")
    out.flush()


def main() -> None:
    directory = sys.argv[1]
    for number in range(1, 5):
        stream = "out" if number % 2 else "err"
        say(stream, f"{stream} {number}")
        time.sleep(0.05)
    round_ = 1
    while True:
        while not os.path.exists(os.path.join(directory, f"go-{round_}")):
            time.sleep(0.01)
        say("out", f"follow {round_}")
        time.sleep(0.05)
        say("err", f"follow-err {round_}")
        round_ += 1


if __name__ == "__main__":
    main()
