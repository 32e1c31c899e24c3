"""A daemon that tries to rewrite its own pidfile after dropping root, through
every descriptor it has on it and through the path, and reports what happened.

    daemonctx start --user nobody --stdout REPORT -p PIDFILE -- pidfile_writer.py PIDFILE
    pidfile_writer.py --context PIDFILE REPORT     (DaemonContext(uid=65534, gid=65534))

The report is one JSON line: {"pid", "uid", "fds": [...], "attempts": {what: errno name
or "succeeded"}}; then it waits for signals.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def attack(pidfile: str) -> dict[str, object]:
    attempts: dict[str, str] = {}
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target != pidfile:
            continue
        fd = int(name)
        fds.append(fd)
        tries = {
            "write": lambda fd=fd: os.write(fd, b"1\n"),
            "pwrite": lambda fd=fd: os.pwrite(fd, b"1\n", 0),
            "ftruncate": lambda fd=fd: os.ftruncate(fd, 0),
            "reopen for writing": lambda fd=fd: os.open(f"/proc/self/fd/{fd}", os.O_WRONLY),
        }
        for what, attempt in tries.items():
            try:
                attempt()
                attempts[f"{what} fd {fd}"] = "succeeded"
            except OSError as exc:
                attempts[f"{what} fd {fd}"] = errno.errorcode[exc.errno or 0]
    for what, flags in (("open path", os.O_WRONLY), ("open path to append", os.O_APPEND)):
        try:
            os.open(pidfile, flags | os.O_WRONLY)
            attempts[what] = "succeeded"
        except OSError as exc:
            attempts[what] = errno.errorcode[exc.errno or 0]
    return {"pid": os.getpid(), "uid": os.getuid(), "fds": fds, "attempts": attempts}


def main() -> None:
    if sys.argv[1] == "--context":
        from daemonctx import DaemonContext
        from daemonctx.pidfile import PIDLockFile

        pidfile, report_path = sys.argv[2], sys.argv[3]
        report = open(report_path, "a")  # noqa: SIM115 - the daemon's for its life
        context = DaemonContext(
            pidfile=PIDLockFile(pidfile), uid=65534, gid=65534, files_preserve=[report]
        )
        context.open()
        report.write(json.dumps(attack(pidfile)) + "\n")
        report.flush()
    else:
        print(json.dumps(attack(sys.argv[1])), flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
