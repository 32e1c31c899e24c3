"""Run a command with unshare(2) refused, for tests/test_supervisor_spawner.py.

    no_unshare.py COMMAND [ARG...]

Installs a seccomp filter that makes every unshare() fail with EPERM, as
Docker's default profile does for a process without CAP_SYS_ADMIN, then
execs COMMAND (the filter is inherited across exec, and by every child).
x86_64 and aarch64 only: elsewhere it exits 77.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

_UNSHARE = {"x86_64": 272, "aarch64": 97}  # the system call's number
_LD_NR = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = seccomp_data.nr (offset 0)
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER, PR_SET_NO_NEW_PRIVS = 22, 2, 38


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main() -> None:
    number = _UNSHARE.get(platform.machine())
    if number is None:
        sys.exit(77)
    code = b"".join(
        [
            struct.pack("HBBI", _LD_NR, 0, 0, 0),
            struct.pack("HBBI", _JEQ, 0, 1, number),  # unshare: the next, else skip it
            struct.pack("HBBI", _RET, 0, 0, _RET_ERRNO | errno.EPERM),
            struct.pack("HBBI", _RET, 0, 0, _RET_ALLOW),
        ]
    )
    buffer = ctypes.create_string_buffer(code)
    program = _Program(len(code) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"no_unshare: PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        sys.exit(f"no_unshare: PR_SET_SECCOMP: {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
