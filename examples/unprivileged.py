"""Start as root, keep the pidfile in a root-owned directory such as /run, and
run as an unprivileged user.

    sudo python3 examples/unprivileged.py --user nobody --pidfile /run/daemonctx-app.pid
    grep -E '^(Uid|Gid|Groups)' /proc/"$(cat /run/daemonctx-app.pid)"/status
    sudo kill "$(cat /run/daemonctx-app.pid)"

The daemon writes the pidfile while it is still root, then drops to the user:
supplementary groups (root's are cleared), then gid, then uid, and checks that
root cannot be regained. A user or group that does not exist, or a start
without root, fails in the terminal before anything forks.
"""

from __future__ import annotations

import argparse
import grp
import pwd
import time

from daemonctx import DaemonContext
from daemonctx.pidfile import TimeoutPIDLockFile


def lookup(user: str, group: str | None) -> tuple[int, int]:
    """(uid, gid) of a user and group given by name or number; the group defaults
    to the user's primary group."""
    entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    if group is None:
        return entry.pw_uid, entry.pw_gid
    gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return entry.pw_uid, gid


def main() -> None:
    parser = argparse.ArgumentParser(description="A daemon that runs as another user")
    parser.add_argument("--user", default="nobody", help="name or uid")
    parser.add_argument("--group", help="name or gid (default: the user's primary group)")
    parser.add_argument("--pidfile", default="/run/daemonctx-app.pid")
    parser.add_argument(
        "--initgroups", action="store_true", help="take the user's supplementary groups"
    )
    args = parser.parse_args()
    uid, gid = lookup(args.user, args.group)
    context = DaemonContext(
        uid=uid,
        gid=gid,
        initgroups=args.initgroups,  # False: no supplementary groups at all
        pidfile=TimeoutPIDLockFile(args.pidfile),  # written before the privilege drop
        umask=0o022,
    )
    # Import everything the daemon needs before this line: once it is not root it
    # may not be able to read the Python installation (a virtualenv under /root).
    with context:
        while True:  # your work, as the user
            time.sleep(60)


if __name__ == "__main__":
    main()
