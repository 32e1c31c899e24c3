"""Numbered lines as fast as Python writes them, for tests/test_supervisor_operations.py.

    ops_numbered.py DONE COUNT [PAD] [--until STOP] [--tick SECONDS]

Writes lines ``N xxx`` to stdout, N from 1, each with ``N % 17 + PAD`` x's (so a
reader can tell a whole line from a piece), through Python's block buffer: the
supervisor gets chunks that end anywhere, mid-line included. Writes COUNT lines,
or with ``--until`` goes on until the file STOP exists (looked for every 1000
lines). Then it flushes, writes the number of the last line to the file DONE
(atomically: a rename) and sleeps until killed; with ``--tick`` it goes on
writing one more numbered line (flushed) every SECONDS meanwhile.
"""

from __future__ import annotations

import os
import sys
import time


def line(number: int, pad: int) -> str:
    return f"{number} {'x' * (number % 17 + pad)}\n"


def main() -> None:
    args = sys.argv[1:]
    until = tick = None
    if "--until" in args:
        index = args.index("--until")
        until = args[index + 1]
        del args[index : index + 2]
    if "--tick" in args:
        index = args.index("--tick")
        tick = float(args[index + 1])
        del args[index : index + 2]
    done, count, *rest = args
    pad = int(rest[0]) if rest else 0
    write = sys.stdout.write
    number = 0
    if until is None:
        for number in range(1, int(count) + 1):
            write(line(number, pad))
    else:
        while True:
            for _ in range(1000):
                number += 1
                write(line(number, pad))
            if os.path.exists(until):
                break
    sys.stdout.flush()
    with open(done + ".tmp", "w") as file:
        file.write(f"{number}\n")
    os.rename(done + ".tmp", done)
    while True:
        if tick is None:
            time.sleep(3600)
            continue
        time.sleep(tick)
        number += 1
        write(line(number, pad))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
