"""Environment files: a program's ``environment_file``, systemd's
``EnvironmentFile=``, compose's ``env_file``.

One ``NAME=VALUE`` a line. Blank lines and lines starting with ``#`` or ``;`` are
skipped, and an ``export`` before the name is allowed (a file a shell also
sources). A value in single quotes is taken as it is; in double quotes,
``\\n``, ``\\t``, ``\\\\``, ``\\"`` and ``\\$`` are unescaped; otherwise the
value is the rest of the line, without the blanks around it. Nothing is
expanded: ``$HOME`` stays ``$HOME``.

Such a file holds secrets and decides what a program (perhaps root's) loads
(``LD_PRELOAD``, ``PYTHONPATH``): it is trusted as the configuration file is, or
refused (``check_path``, ``check_owned_file``), and opened without following a
symlink or blocking on a FIFO. Errors name the file and the line, never a
value.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from ..errors import DaemonError
from ..paths import check_owned_file, check_path

__all__ = ["MAX_BYTES", "EnvironmentFileError", "parse", "read"]

#: The largest file read (an environment is a few KiB; a mistake may be anything).
MAX_BYTES = 1 << 20

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW


class EnvironmentFileError(DaemonError, ValueError):
    """A file that is not a valid environment file: ``str()`` is ``PATH: line N:
    REASON`` (or ``PATH: REASON``), ``errno`` what an ``OSError`` would carry."""

    def __init__(self, path: str, reason: str, errno: int = errno.EINVAL) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.errno = errno


def _unescape(text: str) -> str:
    out = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_ESCAPES.get(following, "\\" + following))
        else:
            out.append(char)
    return "".join(out)


def _escaped_end(value: str) -> bool:
    """Whether the last character of ``"..."`` is an escaped quote (``"x\\"``): an odd
    number of backslashes before it."""
    body = value[1:-1]
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def parse(text: str, path: str) -> dict[str, str]:
    """The variables of ``text``, the contents of the file ``path`` (for errors)."""
    found: dict[str, str] = {}
    # Lines end at \n only (\r\n too): splitlines() would also end one at \f or \u2028
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("export") and stripped[6:7].isspace():
            stripped = stripped[6:].lstrip()
        name, equals, value = stripped.partition("=")
        name = name.rstrip()
        if not equals or not _NAME.fullmatch(name):
            what = "a name of letters, digits and '_'" if equals else "NAME=VALUE"
            raise EnvironmentFileError(path, f"line {number}: expected {what}")
        value = value.strip()
        quote = value[:1]
        if quote in ("'", '"'):
            if len(value) < 2 or value[-1] != quote or (quote == '"' and _escaped_end(value)):
                raise EnvironmentFileError(path, f"line {number}: {name}: no closing {quote}")
            value = value[1:-1]
            if quote == '"':
                value = _unescape(value)
        if "\0" in value:
            raise EnvironmentFileError(path, f"line {number}: {name}: a NUL byte")
        found[name] = value
    return found


def read(path: str) -> dict[str, str]:
    """The variables in the file at ``path``, once it is found safe. Raises
    ``UnsafePathError``, ``OSError`` (it cannot be opened or read, naming
    ``path``), or ``EnvironmentFileError``."""
    what = "environment file"
    try:
        resolved = check_path(path, what)
        fd = os.open(resolved, _FLAGS)
    except DaemonError:
        raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EnvironmentFileError(path, "not a regular file", errno.EINVAL)
        check_owned_file(st, path, what)
        chunks = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        if isinstance(exc, DaemonError):
            raise
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise EnvironmentFileError(path, f"larger than {MAX_BYTES} bytes", errno.EFBIG)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = b"".join(chunks).count(b"\n", 0, exc.start) + 1
        raise EnvironmentFileError(path, f"line {line}: not UTF-8 text") from None
    return parse(text, path)
