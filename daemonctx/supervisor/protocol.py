r"""The control socket's protocol: versioned JSON lines, one module for server and client.

Pure (bytes in, bytes out, no sockets), so that the framing and every error
answer are tested without a server, and so that the server and the client
cannot disagree about the format.

Protocol, version 1
-------------------

The supervisor listens on a Unix stream socket. A client writes requests, one
JSON object per line (UTF-8, ended by ``\n`` or ``\r\n``), and reads one
response line for each request, in the order it sent them::

    {"id": 1, "command": "status", "args": {"names": ["web"]}, "version": 1}

- ``command`` (required): a name matching ``[a-z][a-z0-9_-]*``, at most 64
  characters. ``commands`` lists the ones the server knows.
- ``args`` (optional, default ``{}``): a JSON object, the command's arguments.
- ``id`` (optional): an integer (signed 64-bit) or a string, echoed back in
  the response so that a client can match answers to questions. Without one,
  the response's ``id`` is ``null``.
- ``version`` (optional, default 1): the protocol version the client speaks.
  A server answers a version it does not support with ``unsupported-version``,
  naming the versions it does support.

Any other field is refused, so that a typo is not silently ignored. Blank lines
are skipped without an answer. A request line is at most ``MAX_LINE`` bytes
(its line ending not counted); a longer one is discarded up to its newline and
answered with one ``too-large`` error.

Responses::

    {"id": 1, "ok": true, "result": ...}
    {"id": 1, "ok": false, "error": {"type": "not-found", "message": "no program named 'web'"}}

The ``result`` depends on the command. ``error.message`` is one line for a
human; ``error.type`` is one of these stable names, for programs:

- ``bad-request``: not UTF-8, not JSON, not an object, a field missing,
  invalid or unknown;
- ``too-large``: the request line is longer than ``MAX_LINE`` bytes;
- ``unknown-command``: no command of that name;
- ``bad-arguments``: the command's ``args`` are wrong;
- ``permission-denied``: the caller may not run that command (observers may
  run only ``READ_ONLY_COMMANDS``);
- ``not-found``: no such program;
- ``failed``: the command ran and failed;
- ``unsupported-version``: the request's ``version`` is not supported;
- ``internal``: a bug in the supervisor.

From a shell::

    $ printf '{"id":1,"command":"ping"}\n' | socat - UNIX-CONNECT:/run/shop/control.sock
    {"id": 1, "ok": true, "result": "pong"}

From Python (three lines)::

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect("/run/shop/control.sock"); sock.sendall(b'{"id":1,"command":"status"}\n')
        print(sock.makefile().readline())
"""

from __future__ import annotations

import json
import re
import sys

from ..errors import DaemonError
from .record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ctl milliseconds at run time
    from collections.abc import Iterator
    from typing import Any, NoReturn, Union

    RequestId = Union[int, str, None]
    """A request's id: an int, a str, or None when the request had none."""

    Line = Union["Request", "BadLine"]
    """What ``LineDecoder.feed`` yields for each line: a request, or a bad line."""

__all__ = [
    "BAD_ARGUMENTS",
    "BAD_REQUEST",
    "BAD_RESPONSE",
    "ERROR_TYPES",
    "FAILED",
    "INTERNAL",
    "MAX_LINE",
    "NOT_FOUND",
    "NOT_PLAIN",
    "PERMISSION_DENIED",
    "PROTOCOL_VERSION",
    "READ_ONLY_COMMANDS",
    "SUPPORTED_VERSIONS",
    "TOO_LARGE",
    "UNKNOWN_COMMAND",
    "UNSUPPORTED_VERSION",
    "BadLine",
    "LineDecoder",
    "ProtocolError",
    "RemoteError",
    "Request",
    "RequestError",
    "Response",
    "encode_error",
    "encode_names_request",
    "encode_request",
    "encode_result",
    "encode_text_result",
    "parse_request",
    "parse_response",
    "success_result",
]

PROTOCOL_VERSION = 1
"""The version this module speaks, and sends in every request."""

SUPPORTED_VERSIONS = frozenset({1})
"""The request versions a server built on this module answers."""

MAX_LINE = 64 * 1024
"""The longest request line, in bytes, its line ending not counted."""

#: How long ``tail`` with a cursor (a follow) waits for a line before it answers
#: none: a client's timeout for a follow request comes on top of it.
TAIL_WAIT = 30.0

MAX_TAIL_LINES = 100_000
"""The most lines one ``tail`` request asks for."""

MAX_TAIL_BYTES = 4 * 1024 * 1024
"""About the most bytes of output one ``tail`` answer carries (whole chunks: a
follower's next request goes on from there). JSON writes a byte that is not
UTF-8 in 6, so an answer stays well within what a client reads (64 MiB)."""

READ_ONLY_COMMANDS = frozenset({"status", "ping", "commands", "why", "tail"})
"""The commands an observer (a peer without control rights) may run."""

# Error types: stable names a program may test for.
BAD_REQUEST = "bad-request"
TOO_LARGE = "too-large"
UNKNOWN_COMMAND = "unknown-command"
BAD_ARGUMENTS = "bad-arguments"
PERMISSION_DENIED = "permission-denied"
NOT_FOUND = "not-found"
FAILED = "failed"
UNSUPPORTED_VERSION = "unsupported-version"
INTERNAL = "internal"

ERROR_TYPES = frozenset(
    {
        BAD_REQUEST,
        TOO_LARGE,
        UNKNOWN_COMMAND,
        BAD_ARGUMENTS,
        PERMISSION_DENIED,
        NOT_FOUND,
        FAILED,
        UNSUPPORTED_VERSION,
        INTERNAL,
    }
)
"""Every error type a server sends."""

BAD_RESPONSE = "bad-response"
"""The type of the ``ProtocolError`` a client raises for a response it cannot
read. Local to the client: never sent on the wire, so not in ``ERROR_TYPES``."""

COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_ID_MIN, _ID_MAX = -(2**63), 2**63 - 1
_REQUEST_FIELDS = frozenset({"id", "command", "args", "version"})


class ProtocolError(DaemonError):
    """A request (or, in a client, a response) that breaks the protocol.

    ``type`` is one of ``ERROR_TYPES`` (``BAD_RESPONSE`` in a client),
    ``message`` one line for a human, and ``id`` the request's id when it could
    be read, so that the error response still reaches the right question.
    """

    def __init__(self, type: str, message: str, id: RequestId = None) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.id = id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type, self.message, self.id))

    def encode(self) -> bytes:
        """The error response line for this error."""
        return encode_error(self.id, self.type, self.message)


class RemoteError(DaemonError):
    """The server answered a request with an error (``Response.unwrap``).

    ``type`` is the server's error type (see ``ERROR_TYPES``; a newer server may
    send others), ``message`` its one-line explanation, also ``str(error)``.
    """

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type, self.message))


class RequestError(ValueError):
    """A request ``encode_request`` cannot send: longer than ``MAX_LINE``, or
    holding a value JSON cannot write (NaN, infinity, an int past Python's limit
    on digits, a value that contains itself). One line, for a human."""


@record(frozen=True)
class Request:
    """A well-formed request, as the server receives it."""

    id: RequestId
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    version: int = PROTOCOL_VERSION


@record(frozen=True)
class BadLine:
    """A request line that could not be read: answer it with ``response``."""

    error: ProtocolError

    @property
    def response(self) -> bytes:
        """The error response line to send back."""
        return self.error.encode()


@record(frozen=True)
class Response:
    """A response, as the client receives it.

    ``result`` is set when ``ok``; ``error_type`` and ``error_message`` when not.
    """

    id: RequestId
    ok: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None

    def unwrap(self) -> Any:
        """The result, or ``RemoteError`` when the server answered with an error."""
        if not self.ok:
            raise RemoteError(self.error_type or INTERNAL, self.error_message or "")
        return self.result


# Encoding. ensure_ascii keeps every line valid UTF-8 (even a lone surrogate a
# client sent as "\ud800" is echoed as an escape), allow_nan=False keeps it JSON.


# One encoder and one decoder, made once: json.dumps and json.loads build a new
# one at every call when given options (a tenth of a status round trip).
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False)


def _c_encoder() -> Any:
    """The C encoder behind ``_ENCODER``, made once: ``JSONEncoder.encode`` makes a
    new one for every message (its setup is a fifth of encoding a status answer).
    None where the C accelerator is missing."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    encoder = _ENCODER
    # The arguments JSONEncoder.iterencode passes for _ENCODER's options.
    return make(
        None,  # no circular check: our messages are trees
        encoder.default,
        json.encoder.encode_basestring_ascii,
        None,
        encoder.key_separator,
        encoder.item_separator,
        False,
        False,
        False,
    )


_C_ENCODER = _c_encoder()


def _dump(message: dict[str, Any]) -> bytes:
    if _C_ENCODER is None:
        return _ENCODER.encode(message).encode("ascii") + b"\n"
    return "".join(_C_ENCODER(message, 0)).encode("ascii") + b"\n"


def _check_id(id: object) -> None:
    if id is not None and not _is_id(id):
        raise ValueError(f"a request id is an int (64-bit) or a str, not {id!r}")


def _is_id(id: object) -> bool:
    if isinstance(id, str):
        return True
    return type(id) is int and _ID_MIN <= id <= _ID_MAX


def _one_line(message: str) -> str:
    """``message`` with its line breaks (and runs of blanks) made single spaces."""
    return " ".join(message.split())


def encode_request(id: RequestId, command: str, args: dict[str, Any] | None = None) -> bytes:
    """A request line (``\\n``-ended), stamped with ``PROTOCOL_VERSION``.

    Raises ``ValueError`` for an invalid id or command name, ``TypeError`` for
    args that are not a JSON-serializable object, and ``RequestError`` (a
    ``ValueError``) for a request too long, or a value JSON cannot write.
    """
    _check_id(id)
    if not isinstance(command, str) or not COMMAND_NAME.fullmatch(command):
        raise ValueError(f"a command name matches [a-z][a-z0-9_-]*, not {command!r}")
    if not args:
        if args is not None and not isinstance(args, dict):
            raise TypeError(f"args must be a dict, not {type(args).__name__}")
        if type(id) is int:  # ping, commands: no encoder needed for these
            return _request_line(id, command, "{}")
        args = {}
    if not isinstance(args, dict):
        raise TypeError(f"args must be a dict, not {type(args).__name__}")
    try:
        line = _dump({"id": id, "command": command, "args": args, "version": PROTOCOL_VERSION})
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"{command}: a request cannot carry {_unwritable(args, exc)}") from None
    if len(line) - 1 > MAX_LINE:
        raise RequestError(
            f"{command}: the request would be {len(line) - 1} bytes, over the control "
            f"protocol's limit ({MAX_LINE} bytes)"
        )
    return line


def encode_names_request(id: int, command: str, names: list[str]) -> bytes:
    """``encode_request(id, command, {"names": names})``, the same bytes, written
    without the JSON encoder when every name is printable ASCII with nothing to
    escape (a program's name, as a rule): the client's most frequent requests.
    ``command`` is checked as ``encode_request`` checks it: ``Client.call``'s is
    the caller's, and one with a quote or a newline would write a request of its
    own (a ``stop``) after the one asked for."""
    if type(command) is not str or not COMMAND_NAME.fullmatch(command):
        return encode_request(id, command, {"names": names})  # its ValueError
    for name in names:
        if not (
            type(name) is str
            and name.isascii()
            and name.isprintable()
            and '"' not in name
            and "\\" not in name
        ):
            return encode_request(id, command, {"names": names})
    if type(id) is not int or not 0 <= id < 1 << 63:
        return encode_request(id, command, {"names": names})
    shown = ", ".join(['"' + name + '"' for name in names])
    args = f'{{"names": [{shown}]}}'
    line = _request_line(id, command, args)
    if len(line) - 1 > MAX_LINE:  # refused there, in its words
        return encode_request(id, command, {"names": names})
    return line


def _request_line(id: int, command: str, args: str) -> bytes:
    """A request line as ``_dump`` writes it, ``args`` JSON text already (ASCII)."""
    line = f'{{"id": {id}, "command": "{command}", "args": {args}, "version": {PROTOCOL_VERSION}}}'
    return line.encode("ascii") + b"\n"


def encode_result(id: RequestId, result: Any) -> bytes:
    """A success response line (``\\n``-ended).

    Raises ``TypeError`` or ``ValueError`` when ``result`` is not JSON (a
    ``ValueError`` for one that contains itself or nests too deep, too).
    """
    _check_id(id)
    try:
        return _dump({"id": id, "ok": True, "result": result})
    except RecursionError:  # no circular check (_c_encoder): it recursed until stopped
        raise ValueError("it contains itself, or is nested too deep") from None


def encode_text_result(id: RequestId, result: str) -> bytes:
    """``encode_result`` for a result written as JSON text already (ASCII):
    the supervisor writes its status answers so, without the encoder."""
    _check_id(id)
    if id is None:
        shown = "null"
    elif isinstance(id, int):
        shown = f"{id:d}"
    else:
        shown = json_string(id)
    return f'{{"id": {shown}, "ok": true, "result": {result}}}\n'.encode("ascii")


#: A str as a JSON string, ASCII only (json's C escaper): for answers written as text.
json_string = json.encoder.encode_basestring_ascii


def _unwritable(value: object, error: BaseException) -> str:
    """What in ``value`` the encoder could not write (it raised ``error``): a
    float JSON has not, an int past Python's limit on digits, or a value that
    contains itself or nests past the recursion limit. Looked for: the
    encoder's ValueError is one of two messages, and names no value."""
    if isinstance(error, RecursionError):
        return "a value that contains itself, or is nested too deep"
    found = _first_unwritable(value)
    if isinstance(found, float):
        return "NaN or infinity (JSON has neither)"
    if found is not None:
        digits = int(found.bit_length() * 0.30103) + 1
        limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
        return f"an integer of about {digits} digits (Python writes at most {limit})"
    return f"a value JSON cannot write ({error})"


def _first_unwritable(value: object) -> float | int | None:
    """A NaN, an infinity, or an int too long to write in ``value`` (keys too),
    looked for with a stack of its own: ``value`` may contain itself."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(_pairs_raw(item) if isinstance(item, dict) else item)
        elif isinstance(item, float) and item - item != 0.0:  # inf or nan
            return item
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                int.__repr__(item)
            except ValueError:  # past sys.get_int_max_str_digits()
                return item
    return None


def _pairs_raw(mapping: dict[Any, Any]) -> Iterator[Any]:
    for key, item in mapping.items():
        yield key
        yield item


def encode_error(id: RequestId, type: str, message: str) -> bytes:
    """An error response line (``\\n``-ended); ``id`` is None when the request had none.

    ``type`` must be one of ``ERROR_TYPES`` (a ``ValueError`` otherwise: a typo
    in the server); ``message`` is made one line.
    """
    _check_id(id)
    if type not in ERROR_TYPES:
        raise ValueError(f"unknown error type {type!r}")
    return _dump({"id": id, "ok": False, "error": {"type": type, "message": _one_line(message)}})


# Decoding.


def _shown(value: object, limit: int = 40) -> str:
    """A short, one-line rendering of a client's value, for an error message: its
    JSON, cut at ``limit`` characters. Built a piece at a time with a stack of
    its own, not by ``json.dumps``: a value nested as deep as the decoder takes
    costs no recursion (json.dumps ran out of stack on one nested 979 deep, and
    took the supervisor down), and a long one only ``limit`` characters' work."""
    pieces: list[str] = []
    size = 0
    # Each open container: its items (a dict's as key, value, key...), its
    # closing bracket, whether it is a dict, and how many items were shown.
    stack: list[tuple[Iterator[Any], str, bool, list[int]]] = [(iter((value,)), "", False, [0])]
    while stack and size <= limit:
        items, closer, is_dict, count = stack[-1]
        item = next(items, _END)
        if item is _END:
            stack.pop()
            piece = closer
        else:
            index = count[0]
            count[0] += 1
            piece = ": " if is_dict and index % 2 else (", " if index else "")
            if isinstance(item, dict):
                pieces.append(piece + "{")
                size += len(piece) + 1
                stack.append((_pairs(item), "}", True, [0]))
                continue
            if isinstance(item, (list, tuple)):
                pieces.append(piece + "[")
                size += len(piece) + 1
                stack.append((iter(item), "]", False, [0]))
                continue
            piece += _scalar(item, limit)
        pieces.append(piece)
        size += len(piece)
    text = "".join(pieces)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_END = object()


def _pairs(mapping: dict[Any, Any]) -> Iterator[Any]:
    for key, item in mapping.items():
        yield str(key)
        yield item


def _scalar(value: object, limit: int) -> str:
    """One value that is no container, as JSON writes it (its first ``limit``
    characters or so, for a string)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else "true" if value else "false"
    if isinstance(value, str):
        return json.encoder.encode_basestring_ascii(value[: limit + 1])
    if isinstance(value, int):
        try:
            return str(int(value))
        except ValueError:  # past Python's limit on digits (not from a request: it reads none)
            return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if isinstance(value, float):
        finite = value - value == 0.0  # not inf nor nan
        return float.__repr__(value) if finite else _NON_FINITE[float.__repr__(value)]
    return f"<{type(value).__name__}>"


_NON_FINITE = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {_shown(key)}")
            seen.add(key)
    return result


class _Refused(ValueError):
    """A number the decoder's hooks refuse: said as it is, not as "not JSON"."""


def _typed(text: str) -> str:
    """A number as the client typed it, its first digits when it is long."""
    return text if len(text) <= 24 else text[:20] + "..."


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # 1e999 is read as infinity: no answer could carry it
        raise _Refused(f"number out of range: {_typed(text)}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # past Python's limit on digits (sys.get_int_max_str_digits)
        digits = len(text) - text.startswith("-")
        raise _Refused(f"number too long: {_typed(text)} ({digits} digits)") from None


_JSON_BLANKS = " \t\n\r"
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
# A request's numbers are checked as they are read: ints and floats are rare in
# requests (an id), frequent in answers, which keep the decoder's fast path.
_REQUEST_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    object_pairs_hook=_no_duplicates,
    parse_float=_finite,
    parse_int=_integer,
)


# An answer that failed to load is read again with its ints checked: one past
# Python's limit on digits is then "number too long", not CPython's advice to
# call sys.set_int_max_str_digits(), which is no advice for an operator.
_CHECKED_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates, parse_int=_integer
)


def _load(line: bytes, type: str, decoder: json.JSONDecoder = _DECODER) -> Any:
    """The JSON value of ``line``; ``ProtocolError(type, ...)`` when it is not one.

    Strict: UTF-8 only, no NaN or Infinity, no duplicate keys (JSON leaves
    their meaning open), and deep nesting or an int too long for Python is an
    error, not a crash. A request's numbers (``_REQUEST_DECODER``) must also fit:
    a float in range (1e999 would be infinity), an int within Python's digits.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError(type, f"not UTF-8 (byte {error.start})") from None
    try:
        # raw_decode, not decode: the same scanner without decode's two regex
        # matches; a line with blanks before its value takes decode's path.
        value, end = decoder.raw_decode(text)
        if end == len(text) or not text[end:].strip(_JSON_BLANKS):
            return value
    except (RecursionError, ValueError):
        pass  # decode says why, the same way
    try:
        return (_CHECKED_DECODER if decoder is _DECODER else decoder).decode(text)
    except RecursionError:
        raise ProtocolError(type, "not JSON: nested too deeply") from None
    except _Refused as error:
        raise ProtocolError(type, str(error)) from None
    except ValueError as error:  # json.JSONDecodeError, and our hooks' refusals
        raise ProtocolError(type, _one_line(f"not JSON: {error}")) from None


def parse_request(line: bytes) -> Request:
    """The request on one line (its line ending optional).

    Raises ``ProtocolError`` (``bad-request``, ``too-large`` or
    ``unsupported-version``) whose ``id`` is the request's when it was readable.
    """
    if len(line.rstrip(b"\r\n")) > MAX_LINE:
        raise ProtocolError(TOO_LARGE, f"request line longer than {MAX_LINE} bytes")
    message = _load(line, BAD_REQUEST, _REQUEST_DECODER)
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, f"a request is a JSON object, not {_shown(message)}")

    id = message.get("id")
    if not _is_id(id) and id is not None:
        raise ProtocolError(BAD_REQUEST, f"id must be an int (64-bit) or a string: {_shown(id)}")

    # The version first: a newer client's request may well be invalid in version 1.
    version = message.get("version", PROTOCOL_VERSION)
    if type(version) is not int:
        raise ProtocolError(BAD_REQUEST, f"version must be an int: {_shown(version)}", id)
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            f"protocol version {_shown(version)} is not supported (supported: {supported})",
            id,
        )

    if not _REQUEST_FIELDS.issuperset(message):
        unknown = sorted(set(message) - _REQUEST_FIELDS)
        names = ", ".join(_shown(name) for name in unknown[:5])
        raise ProtocolError(BAD_REQUEST, f"unknown field(s): {names}", id)

    if "command" not in message:
        raise ProtocolError(BAD_REQUEST, "no command", id)
    command = message["command"]
    if not isinstance(command, str) or not COMMAND_NAME.fullmatch(command):
        raise ProtocolError(
            BAD_REQUEST,
            f"command must be a name matching [a-z][a-z0-9_-]* (64 at most): {_shown(command)}",
            id,
        )

    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(BAD_REQUEST, f"args must be a JSON object: {_shown(args)}", id)
    return Request(id=id, command=command, args=args, version=version)


# Read-only built-in requests read lately, by their bytes after the id: a client
# polling ``status`` sends the same line but for its id, which need not be read
# as JSON again (the decoder is a good part of a round trip). Only requests
# whose handlers never change their args, and only the exact same bytes: the
# same request in every field, checked once.
_REPEATABLE = frozenset({"status", "ping", "commands", "why"})
_REPEATED: dict[bytes, tuple[str, dict[str, Any], int]] = {}
_REPEATED_MAX = 64
_REPEATED_LONGEST = 1024


def _after_id(line: bytes) -> tuple[int, bytes] | None:
    """``line``'s id and what follows it, when it begins ``{"id": DIGITS, ``
    (a 64-bit id as JSON writes it: no leading zero); else None."""
    if line.startswith(b'{"id": '):
        comma = line.find(b", ", 7)
        digits = line[7:comma]
        if 7 < comma < 26 and digits.isdigit() and (digits[0] != 48 or comma == 8):
            return int(digits), line[comma:]
    return None


def _repeated(line: bytes) -> Request | None:
    """The request ``line`` (no newline) when it repeats one read lately."""
    split = _after_id(line)
    if split is not None:  # remembered lines are short: the id keeps it under MAX_LINE
        seen = _REPEATED.get(split[1])
        if seen is not None:
            return Request(split[0], *seen)
    return None


def _remember(line: bytes, request: Request) -> None:
    # a short line only: 64 of them hold 64 KiB at most, whoever sends them
    if (
        request.command in _REPEATABLE
        and len(line) <= _REPEATED_LONGEST
        and request.version in SUPPORTED_VERSIONS
    ):
        split = _after_id(line)
        if split is not None and split[0] == request.id:
            if len(_REPEATED) >= _REPEATED_MAX:
                _REPEATED.clear()
            _REPEATED[split[1]] = (request.command, request.args, request.version)


class LineDecoder:
    """Incremental framing of a connection's requests, in bounded memory.

    Feed it whatever each read returned: it keeps the incomplete last line
    (at most ``MAX_LINE`` + 1 bytes), and returns one ``Line`` for each line
    completed, in order. An over-long line is answered as soon as it is known
    to be one (one ``too-large`` ``BadLine``) and its remaining bytes are
    dropped as they arrive, up to its newline.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete line are held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Line]:
        """The lines ``data`` completes (none for a partial line, several at once)."""
        if not self._buffer and not self._discarding and data.find(b"\n") == len(data) - 1:
            request = _repeated(data[:-1])  # a whole line, as a polling client writes it
            if request is not None:
                return [request]
        lines: list[Line] = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._hold(data, start, lines)
                return lines
            self._complete(data, start, newline, lines)
            start = newline + 1
            if start == len(data):  # the usual read: a line's end, nothing after it
                return lines

    def feed_eof(self) -> list[Line]:
        """At end of input: the last line, if it had no newline."""
        lines: list[Line] = []
        self._complete(b"", 0, 0, lines)
        return lines

    def _hold(self, data: bytes, start: int, lines: list[Line]) -> None:
        if self._discarding or start == len(data):
            return
        # MAX_LINE + 1: a line of MAX_LINE bytes may still end with "\r\n".
        if len(self._buffer) + len(data) - start > MAX_LINE + 1:
            self._buffer.clear()
            self._discarding = True
            lines.append(_too_large())
        else:
            self._buffer += data[start:]

    def _complete(self, data: bytes, start: int, end: int, lines: list[Line]) -> None:
        if self._discarding:  # already answered
            self._discarding = False
            return
        if len(self._buffer) + end - start > MAX_LINE + 1:  # checked before copying it
            self._buffer.clear()
            lines.append(_too_large())
            return
        if self._buffer:
            line = bytes(self._buffer) + data[start:end]
            self._buffer.clear()
        else:
            line = data[start:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        try:
            request = parse_request(line)
            _remember(line, request)
            lines.append(request)
        except ProtocolError as error:
            lines.append(BadLine(error))
        except RecursionError:  # a value nested just short of the decoder's limit
            lines.append(BadLine(ProtocolError(BAD_REQUEST, "nested too deeply")))


def _too_large() -> BadLine:
    return BadLine(ProtocolError(TOO_LARGE, f"request line longer than {MAX_LINE} bytes"))


#: ``success_result``'s word for "not a plain success answer to this request".
NOT_PLAIN: Any = object()

# Answers come from the supervisor the client connected to: read by the C
# scanner alone (no hook per object), their NaN still refused. Anything odd
# goes to parse_response, which says what is wrong.
_ANSWER_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_SCAN_ANSWER = _ANSWER_DECODER.scan_once  # type: ignore[attr-defined]


def success_result(line: bytes, id: int) -> Any:
    """The result of ``line`` when it is a success answer to the request ``id``
    (an int), read in one pass; ``NOT_PLAIN`` for anything else (an error, a
    bad line): ``parse_response`` then reads it and says what it is."""
    try:
        text = line.decode("utf-8")
        message, end = _SCAN_ANSWER(text, 0)  # raw_decode's own call, one frame less
    except (ValueError, RecursionError, StopIteration):  # UnicodeDecodeError: a ValueError
        return NOT_PLAIN
    if (
        end == len(text)
        and type(message) is dict
        and message.get("ok") is True
        and type(message.get("id")) is int  # not True, nor 1.0
        and message["id"] == id
    ):
        return message.get("result")
    return NOT_PLAIN


def parse_response(line: bytes) -> Response:
    """The response on one line (its line ending optional), for a client.

    Raises ``ProtocolError`` of type ``BAD_RESPONSE`` when the line is not a
    response. An error type this module does not know is kept as it is (a newer
    server may send one). Responses have no length limit here: a client bounds
    its reads itself.
    """
    message = _load(line, BAD_RESPONSE)
    if not isinstance(message, dict):
        raise ProtocolError(BAD_RESPONSE, f"a response is a JSON object, not {_shown(message)}")
    id = message.get("id")
    if not _is_id(id) and id is not None:
        raise ProtocolError(BAD_RESPONSE, f"bad id in the response: {_shown(id)}")
    ok = message.get("ok")
    if ok is True:
        return Response(id=id, ok=True, result=message.get("result"))
    if ok is not False:
        raise ProtocolError(BAD_RESPONSE, f"ok must be true or false: {_shown(ok)}", id)
    error = message.get("error")
    if not (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    ):
        raise ProtocolError(
            BAD_RESPONSE, f"error must be an object with a type and message: {_shown(error)}", id
        )
    return Response(
        id=id, ok=False, error_type=error["type"], error_message=_one_line(error["message"])
    )
