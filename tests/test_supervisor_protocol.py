"""The control socket's protocol (daemonctx.supervisor.protocol): encoding, framing
and every error answer, without a socket."""

from __future__ import annotations

import json
import pickle
import sys
from typing import TYPE_CHECKING, Any

import pytest

from daemonctx.errors import DaemonError
from daemonctx.supervisor.protocol import (
    BAD_REQUEST,
    BAD_RESPONSE,
    ERROR_TYPES,
    MAX_LINE,
    NOT_PLAIN,
    PROTOCOL_VERSION,
    READ_ONLY_COMMANDS,
    TOO_LARGE,
    UNSUPPORTED_VERSION,
    BadLine,
    LineDecoder,
    ProtocolError,
    RemoteError,
    Request,
    RequestError,
    Response,
    encode_error,
    encode_names_request,
    encode_request,
    encode_result,
    encode_text_result,
    parse_request,
    parse_response,
    success_result,
)

if TYPE_CHECKING:
    from daemonctx.supervisor.protocol import Line

STREAM = (
    b'{"id": 1, "command": "status", "args": {"program": "web"}}\n'
    b'{"id": "two", "command": "stop", "args": {"program": "caf\xc3\xa9"}, "version": 1}\n'
    b'{"command": "ping"}\n'
)
EXPECTED = [
    Request(id=1, command="status", args={"program": "web"}),
    Request(id="two", command="stop", args={"program": "café"}),
    Request(id=None, command="ping"),
]


def decode(line: bytes) -> dict[str, Any]:
    """A response line, checked to be one line of JSON."""
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


def error_of(line: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_request(line)
    return caught.value


# Encoding and round trips.


def test_the_documented_ping_answer() -> None:
    assert encode_result(1, "pong") == b'{"id": 1, "ok": true, "result": "pong"}\n'
    assert parse_request(b'{"id":1,"command":"ping"}\n') == Request(1, "ping", {}, 1)


@pytest.mark.parametrize("id", [1, 0, -5, 2**63 - 1, -(2**63), "abc", "", None])
@pytest.mark.parametrize("args", [None, {}, {"program": "web", "signal": "HUP", "n": [1, None]}])
def test_request_round_trip(id: int | str | None, args: dict[str, Any] | None) -> None:
    line = encode_request(id, "restart", args)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line)["version"] == PROTOCOL_VERSION
    assert parse_request(line) == Request(id, "restart", args or {}, PROTOCOL_VERSION)


@pytest.mark.parametrize(
    "result", [None, "pong", 3, [1, "x"], {"web": {"state": "running", "pid": 42}}, "a\nb"]
)
def test_result_round_trip(result: object) -> None:
    response = parse_response(encode_result("x", result))
    assert response == Response(id="x", ok=True, result=result)
    assert response.unwrap() == result


@pytest.mark.parametrize("error_type", sorted(ERROR_TYPES))
def test_error_round_trip(error_type: str) -> None:
    line = encode_error(7, error_type, "no program named 'web'")
    assert decode(line) == {
        "id": 7,
        "ok": False,
        "error": {"type": error_type, "message": "no program named 'web'"},
    }
    response = parse_response(line)
    assert (response.id, response.ok) == (7, False)
    assert (response.error_type, response.error_message) == (error_type, "no program named 'web'")
    with pytest.raises(RemoteError) as caught:
        response.unwrap()
    assert isinstance(caught.value, DaemonError)
    assert (caught.value.type, caught.value.message) == (error_type, "no program named 'web'")
    assert str(caught.value) == "no program named 'web'"


def test_error_messages_are_one_line_and_ids_may_be_none() -> None:
    line = encode_error(None, "failed", "exec failed:\n  No such file\r\n")
    assert decode(line) == {
        "id": None,
        "ok": False,
        "error": {"type": "failed", "message": "exec failed: No such file"},
    }


MESSAGES = [
    {"id": 1, "ok": True, "result": {"programs": [{"name": "caf\u00e9", "uptime": 0.1 + 0.2}]}},
    {"id": "x\ud800", "ok": True, "result": [None, True, False, -(2**70), 1e300, "\u2603\n"]},
    {"id": None, "ok": True, "result": {"": {}, "a": [], "b": [[{}]], "1": 1}},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_the_encoder_made_once_writes_what_json_writes(
    message: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C encoder the module keeps, and its fallback without one, write each
    message as ``json`` with the protocol's options does."""
    from daemonctx.supervisor import protocol

    expected = json.dumps(message, ensure_ascii=True, allow_nan=False).encode() + b"\n"
    assert protocol._C_ENCODER is not None  # CPython has it
    assert protocol._dump(message) == expected
    monkeypatch.setattr(protocol, "_C_ENCODER", None)
    assert protocol._dump(message) == expected


def test_output_is_ascii_even_for_a_lone_surrogate() -> None:
    request = parse_request(b'{"id": "\\ud800", "command": "ping"}')
    line = encode_result(request.id, "caf\xe9")
    line.decode("ascii")
    assert parse_response(line) == Response(id="\ud800", ok=True, result="caf\xe9")


@pytest.mark.parametrize(
    ("call", "exception"),
    [
        (lambda: encode_request(True, "ping"), ValueError),
        (lambda: encode_request(1.5, "ping"), ValueError),  # type: ignore[arg-type]
        (lambda: encode_request(2**63, "ping"), ValueError),
        (lambda: encode_request(1, "Ping"), ValueError),
        (lambda: encode_request(1, "ping", [1]), TypeError),  # type: ignore[arg-type]
        (lambda: encode_request(1, "ping", {"x": float("nan")}), ValueError),
        (lambda: encode_request(1, "ping", {"x": "y" * MAX_LINE}), ValueError),
        (lambda: encode_result(1, object()), TypeError),
        (lambda: encode_error(1, "oops", "message"), ValueError),
    ],
)
def test_encoding_refuses_what_the_other_side_would(call: Any, exception: type) -> None:
    with pytest.raises(exception):
        call()


def _itself() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"x": float("nan")}, "NaN or infinity (JSON has neither)"),
        ({"x": [1, {"y": float("-inf")}]}, "NaN or infinity (JSON has neither)"),
        ({"n": 10**5000}, "an integer of about 5001 digits (Python writes at most "),
        ({"n": {"k": [-(10**6000)]}}, "an integer of about 6001 digits"),
        ({"l": _itself()}, "a value that contains itself, or is nested too deep"),
        ({"l": _nested(100_000)}, "a value that contains itself, or is nested too deep"),
    ],
)
def test_a_request_that_cannot_be_written_says_why_in_one_line(
    args: dict[str, Any], reason: str
) -> None:
    """Each its own reason: an int past Python's limit on digits is not "NaN or
    infinity", a value that contains itself is not a bare RecursionError."""
    if "digits" in reason and not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("this Python writes integers of any length")
    with pytest.raises(RequestError) as info:
        encode_request(1, "echo", args)
    assert str(info.value).startswith(f"echo: a request cannot carry {reason}"), info.value
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("result", [_itself(), {"deep": _nested(100_000)}])
def test_a_result_that_contains_itself_or_nests_too_deep_is_a_value_error(result: Any) -> None:
    with pytest.raises(ValueError, match=r"^it contains itself, or is nested too deep$"):
        encode_result(1, result)


def test_errors_pickle() -> None:
    error = pickle.loads(pickle.dumps(ProtocolError(BAD_REQUEST, "no command", "a")))
    assert (error.type, error.message, error.id) == (BAD_REQUEST, "no command", "a")
    remote = pickle.loads(pickle.dumps(RemoteError("failed", "it broke")))
    assert (remote.type, remote.message) == ("failed", "it broke")


def test_read_only_commands() -> None:
    assert frozenset({"status", "ping", "commands", "why", "tail"}) == READ_ONLY_COMMANDS


# Framing.


def test_one_feed_many_lines() -> None:
    assert LineDecoder().feed(STREAM) == EXPECTED


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = LineDecoder()
        assert decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) == EXPECTED, cut
        assert decoder.pending == 0


def test_split_at_every_pair_of_boundaries() -> None:
    for first in range(0, len(STREAM) + 1, 3):
        for second in range(first, len(STREAM) + 1):
            decoder = LineDecoder()
            lines = decoder.feed(STREAM[:first])
            lines += decoder.feed(STREAM[first:second])
            lines += decoder.feed(STREAM[second:])
            assert lines == EXPECTED, (first, second)


def test_byte_at_a_time() -> None:
    decoder = LineDecoder()
    lines: list[Line] = []
    for i in range(len(STREAM)):
        lines += decoder.feed(STREAM[i : i + 1])
    assert lines == EXPECTED


def test_crlf_and_blank_lines() -> None:
    data = STREAM.replace(b"\n", b"\r\n")
    data = b"\r\n\n   \n" + data.replace(b"\r\n", b"\r\n\r\n", 1)
    for cut in range(len(data) + 1):
        decoder = LineDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == EXPECTED, cut


def test_a_last_line_without_newline_is_read_at_eof() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"id": 9, "command": "ping"}') == []
    assert decoder.feed_eof() == [Request(9, "ping")]
    assert decoder.feed_eof() == []


def too_large(lines: list[Line]) -> None:
    assert len(lines) == 1 and isinstance(lines[0], BadLine), lines
    assert (lines[0].error.type, lines[0].error.id) == (TOO_LARGE, None)
    assert decode(lines[0].response)["error"]["type"] == TOO_LARGE


def test_an_over_long_line_is_refused_in_bounded_memory() -> None:
    decoder = LineDecoder()
    chunk = 4096
    data = b'{"id": 1, "command": "status", "args": {"x": "' + b"y" * (1 << 20)
    lines: list[Line] = []
    for i in range(0, len(data), chunk):
        lines += decoder.feed(data[i : i + chunk])
        assert decoder.pending <= MAX_LINE + chunk
    too_large(lines)  # answered once, before the line even ended
    assert decoder.feed(b'"}}\n{"id": 2, "command": "ping"}\n') == [Request(2, "ping")]
    assert decoder.feed(b'{"id": 3, "command": "ping"}\n') == [Request(3, "ping")]


def test_an_over_long_line_in_one_read() -> None:
    decoder = LineDecoder()
    lines = decoder.feed(b"x" * (MAX_LINE + 2) + b'\n{"command": "ping"}\n')
    too_large(lines[:1])
    assert lines[1:] == [Request(None, "ping")]
    assert decoder.pending == 0


def test_the_limit_is_exact() -> None:
    """A line of MAX_LINE bytes (its ending not counted) is read; one byte more is not."""
    head = b'{"command": "ping", "id": "'
    fits = head + b"x" * (MAX_LINE - len(head) - 2) + b'"}'
    assert len(fits) == MAX_LINE
    for ending in (b"\n", b"\r\n"):
        for cut in (0, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + len(ending)):
            decoder = LineDecoder()
            data = fits + ending
            lines = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
            assert len(lines) == 1 and isinstance(lines[0], Request), (ending, cut)
            longer = fits.replace(b'"x', b'"xx') + ending
            decoder = LineDecoder()
            too_large(decoder.feed(longer[:cut]) + decoder.feed(longer[cut:]))
    too_large([BadLine(error_of(fits.replace(b'"x', b'"xx')))])


def test_a_bad_line_does_not_stop_the_next() -> None:
    lines = LineDecoder().feed(b'nonsense\n{"id": 1, "command": "ping"}\n')
    assert isinstance(lines[0], BadLine) and lines[0].error.type == BAD_REQUEST
    assert lines[1:] == [Request(1, "ping")]


# Garbage: the right error type, and the id echoed when it was readable.


@pytest.mark.parametrize(
    ("line", "id"),
    [
        (b"not json", None),
        (b"{", None),
        (b'{"id": 1, "command": "ping"} {}', None),
        (b"[1, 2]", None),
        (b"42", None),
        (b'"ping"', None),
        (b"null", None),
        (b"\xff\xfe{}", None),
        (b'{"id": 1, "command": "p\xe9ng"}', None),  # Latin-1, not UTF-8
        (b"\xef\xbb\xbf{}", None),  # a byte-order mark
        (b'{"id": NaN, "command": "ping"}', None),
        (b'{"id": 1, "id": 2, "command": "ping"}', None),
        (b"[" * 30_000 + b"]" * 30_000, None),
        (b'{"id": true, "command": "ping"}', None),
        (b'{"id": 1.0, "command": "ping"}', None),
        (b'{"id": [1], "command": "ping"}', None),
        (b'{"id": 9223372036854775808, "command": "ping"}', None),
        (b'{"id": ' + b"9" * 5000 + b', "command": "ping"}', None),
        (b'{"id": 1}', 1),
        (b'{"id": "a", "command": null}', "a"),
        (b'{"id": 1, "command": 7}', 1),
        (b'{"id": 1, "command": ""}', 1),
        (b'{"id": 1, "command": "Status"}', 1),
        (b'{"id": 1, "command": "1status"}', 1),
        (b'{"id": 1, "command": "status\\n"}', 1),
        (b'{"id": 1, "command": "st atus"}', 1),
        (b'{"id": 1, "command": "' + b"a" * 65 + b'"}', 1),
        (b'{"id": 1, "command": "status", "args": [1]}', 1),
        (b'{"id": 1, "command": "status", "args": null}', 1),
        (b'{"id": 1, "command": "status", "args": "web"}', 1),
        (b'{"id": 1, "command": "status", "arg": {}}', 1),
        (b'{"id": 1, "command": "status", "version": "1"}', 1),
        (b'{"id": 1, "command": "status", "version": true}', 1),
        (b'{"id": 1, "command": "status", "args": {"n": Infinity}}', None),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_garbage_is_a_bad_request(line: bytes, id: int | str | None) -> None:
    error = error_of(line)
    assert (error.type, error.id) == (BAD_REQUEST, id), error.message
    assert "\n" not in error.message and len(error.message) < 200
    [bad] = LineDecoder().feed(line + b"\n")
    assert isinstance(bad, BadLine)
    assert decode(bad.response) == {
        "id": id,
        "ok": False,
        "error": {"type": BAD_REQUEST, "message": error.message},
    }


def test_blanks_around_a_request_and_what_follows_it() -> None:
    """JSON's blanks around the value are fine; anything else after it is not,
    and is named as ``json`` names it."""
    for line in (
        b' \t{"command": "ping"}',
        b'{"command": "ping"} \t\r',
        b'\r\n{"command": "ping"}\n',
    ):
        assert parse_request(line) == Request(id=None, command="ping"), line
    assert "Extra data" in error_of(b'{"command": "ping"} x').message
    assert "Expecting value" in error_of(b" ").message


def test_messages_name_the_culprit() -> None:
    assert "unknown field" in error_of(b'{"command": "x", "arg": {}}').message
    assert '"arg"' in error_of(b'{"command": "x", "arg": {}}').message
    assert '"Status"' in error_of(b'{"command": "Status"}').message
    assert "no command" in error_of(b"{}").message
    assert "UTF-8" in error_of(b"\xff").message


@pytest.mark.parametrize("version", [2, 0, -1, 10**30])
def test_unsupported_version(version: int) -> None:
    line = json.dumps({"id": "v", "command": "ping", "version": version, "new": 1}).encode()
    error = error_of(line)
    assert (error.type, error.id) == (UNSUPPORTED_VERSION, "v")
    assert "supported: 1" in error.message


def test_a_request_may_ask_for_version_1() -> None:
    assert parse_request(b'{"command": "ping", "version": 1}').version == 1


# Responses, in the client.


@pytest.mark.parametrize(
    "line",
    [
        b"nope",
        b"\xff",
        b"[]",
        b'{"id": 1}',
        b'{"id": 1, "ok": 1, "result": 2}',
        b'{"id": 1, "ok": false}',
        b'{"id": 1, "ok": false, "error": "failed"}',
        b'{"id": 1, "ok": false, "error": {"type": "failed"}}',
        b'{"id": 1, "ok": false, "error": {"type": 1, "message": "m"}}',
        b'{"id": true, "ok": true}',
    ],
)
def test_a_bad_response(line: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_response(line)
    assert caught.value.type == BAD_RESPONSE


def test_a_response_from_a_newer_server() -> None:
    """An error type this client does not know still reaches the caller."""
    line = b'{"id": 1, "ok": false, "error": {"type": "busy", "message": "try later"}}\n'
    with pytest.raises(RemoteError) as caught:
        parse_response(line).unwrap()
    assert (caught.value.type, caught.value.message) == ("busy", "try later")
    assert parse_response(b'{"id": null, "ok": true}').unwrap() is None


# Values nested just short of the decoder's limit, and numbers past Python's.


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _at_depth(frames: int, call: Any) -> Any:
    """``call()`` run ``frames`` Python frames deeper than here."""
    return call() if frames == 0 else _at_depth(frames - 1, call)


@pytest.mark.parametrize(
    "template",
    [
        b'{"command": "ping", "id": %s}',
        b'{"command": "ping", "version": %s}',
        b'{"command": %s}',
        b'{"command": "ping", "args": %s}',
        b"%s",
    ],
    ids=["id", "version", "command", "args", "line"],
)
def test_a_value_nested_just_short_of_the_limit_is_answered(template: bytes) -> None:
    """The decoder takes a value nested up to the interpreter's recursion limit
    less the frames under it; the error message about it must not recurse any
    deeper (json.dumps did, and a RecursionError took the supervisor down). At
    every depth and from stacks of several heights: an answer, never an
    exception out of the decoder."""
    import sys

    limit = sys.getrecursionlimit()
    for frames in (0, 7, 23):
        for depth in range(limit, limit - 150, -1):
            line = template % _nested(depth)

            def feed(line: bytes = line) -> list[Line]:
                return LineDecoder().feed(line + b"\n")

            (answer,) = _at_depth(frames, feed)
            if isinstance(answer, BadLine):
                assert answer.error.type == BAD_REQUEST, answer
                assert len(answer.error.message) < 200
                decode(answer.response)


def test_a_deep_value_in_a_response_is_a_bad_response() -> None:
    import sys

    limit = sys.getrecursionlimit()
    for depth in range(limit, limit - 150, -1):
        line = b'{"id": 1, "ok": ' + _nested(depth) + b"}"
        with pytest.raises(ProtocolError) as caught:
            parse_response(line)
        assert caught.value.type == BAD_RESPONSE


def test_messages_show_a_bounded_part_of_any_value() -> None:
    """What an error message shows of a value is its JSON, cut: a value nested a
    million deep or a string of a megabyte costs no more than a short one."""
    from daemonctx.supervisor.protocol import _shown

    deep: list[Any] = []
    for _ in range(1_000_000):
        deep = [deep]
    assert _shown(deep) == "[" * 37 + "..."
    assert _shown("x" * 1_000_000) == '"' + "x" * 36 + "..."
    for value in (1, -7, 1.5, None, True, False, "caf\xe9\n", [], {}, [1, [2, {"a": [3, {}]}]]):
        assert _shown(value, 1000) == json.dumps(value), value
    assert _shown({"a": 1, "b": [2, "c"]}) == '{"a": 1, "b": [2, "c"]}'
    assert _shown(float("inf")) == "Infinity"
    assert _shown(10**400) == "1" + "0" * 36 + "..."
    assert _shown(10**5000) == "<an integer of about 5001 digits>"
    assert _shown(object()) == "<object>"


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (b"1e999", "number out of range: 1e999"),
        (b"-1e999", "number out of range: -1e999"),
        (b"1.5e400", "number out of range: 1.5e400"),
        (b"9" * 5000, "number too long: 99999999999999999999... (5000 digits)"),
        (b"-" + b"9" * 5000, "number too long: -9999999999999999999... (5000 digits)"),
    ],
)
def test_a_number_past_what_python_reads_is_named_as_typed(number: bytes, message: str) -> None:
    """1e999 is read as infinity (which no answer could carry: not "id must be
    ...: Infinity"), an int of 5000 digits is past Python's limit on digits (not
    its message, which names sys.set_int_max_str_digits): each is a bad request
    that names the number as the client wrote it."""
    for line in (
        b'{"command": "ping", "id": %s}' % number,
        b'{"command": "ping", "args": {"n": [%s]}}' % number,
    ):
        error = error_of(line)
        assert (error.type, error.message) == (BAD_REQUEST, message), line[:60]


# The short ways of a status round trip: each must give what the long way gives.


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["web"],
        ["web:0", "all", "a b", "group:*"],
        ["caf\xe9"],
        ['a"b'],
        ["x\\y"],
        ["\x7f"],
        ["tab\there"],
        ["\ud800"],
        ["x" * (MAX_LINE + 1)],
    ],
    ids=lambda value: repr(value)[:30],
)
def test_a_names_request_is_written_as_the_encoder_writes_it(names: list[str]) -> None:
    try:
        expected: object = encode_request(12, "status", {"names": names})
    except RequestError as exc:
        with pytest.raises(RequestError) as caught:
            encode_names_request(12, "status", names)
        assert str(caught.value) == str(exc)
        return
    assert encode_names_request(12, "status", names) == expected
    assert parse_request(encode_names_request(12, "status", names)).args == {"names": names}


@pytest.mark.parametrize("id", [None, 0, 5, -3, 2**63 - 1, 'a"b\xe9', ""])
def test_a_result_written_as_text_is_the_encoder_s_answer(id: int | str | None) -> None:
    result = {"programs": [{"name": "caf\xe9", "pid": 3, "uptime": 0.1, "last_exit": None}]}
    text = json.dumps(result, ensure_ascii=True)
    assert encode_text_result(id, text) == encode_result(id, result)


@pytest.mark.parametrize(
    "line",
    [
        b'{"id": 1, "ok": false, "error": {"type": "failed", "message": "no"}}',
        b'{"id": 2, "ok": true, "result": 1}',  # another request's
        b'{"id": true, "ok": true, "result": 1}',
        b'{"id": 1.0, "ok": true, "result": 1}',
        b'{"id": "1", "ok": true, "result": 1}',
        b'{"id": null, "ok": true, "result": 1}',
        b'{"id": 1, "ok": 1, "result": 1}',
        b'{"id": 1, "ok": true, "result": NaN}',
        b'{"id": 1, "ok": true, "result": 1} {}',
        b'{"id": 1, "ok": true, "result": 1}  ',
        b"\xff",
        b"[1]",
        b"",
        b"[" * 30_000 + b"]" * 30_000,
    ],
    ids=lambda value: repr(value)[:40],
)
def test_only_a_plain_success_to_this_request_is_read_the_short_way(line: bytes) -> None:
    """Anything else goes to parse_response, which says what it is."""
    assert success_result(line, 1) is NOT_PLAIN


def test_a_plain_success_read_the_short_way_is_parse_response_s_result() -> None:
    line = b'{"id": 7, "ok": true, "result": {"programs": [{"name": "w", "uptime": 0.5}]}}'
    assert success_result(line, 7) == parse_response(line).unwrap()
    assert success_result(b'{"ok": true, "id": 7}', 7) is None


REPEATED = b', "command": "status", "args": {"names": ["web"]}, "version": 1}'


def test_a_repeated_status_request_is_read_as_the_first_was() -> None:
    """A client polling status sends the same line but for its id: every such
    line, on any connection, reads as the first did, with its own id."""
    [first] = LineDecoder().feed(b'{"id": 1' + REPEATED + b"\n")
    assert first == Request(id=1, command="status", args={"names": ["web"]})
    for id in (2, 0, 10**17, 123456789012345678):
        [again] = LineDecoder().feed(b'{"id": %d' % id + REPEATED + b"\n")
        assert again == Request(id=id, command="status", args={"names": ["web"]})


@pytest.mark.parametrize(
    ("id", "expected"),
    [
        (b"07", None),  # JSON has no leading zero
        (b"00", None),
        (b"1.0", None),
        (b"1e3", None),
        (b"true", None),
        (b"9223372036854775808", None),  # past 64 bits
        (b"99999999999999999999", None),
        (b"-1", -1),
        (b" 3", 3),
        (b'"3"', "3"),
    ],
)
def test_a_repeated_request_s_id_is_read_as_json_reads_it(
    id: bytes, expected: int | str | None
) -> None:
    """The line read before must not vouch for another id than JSON's own."""
    decoder = LineDecoder()
    decoder.feed(b'{"id": 1' + REPEATED + b"\n")
    [line] = decoder.feed(b'{"id": ' + id + REPEATED + b"\n")
    if expected is None:
        assert isinstance(line, BadLine), line
        assert decode(line.response)["error"]["type"] == BAD_REQUEST
    else:
        assert line == Request(id=expected, command="status", args={"names": ["web"]})


def test_a_repeated_request_past_the_limit_is_too_large() -> None:
    """A line of exactly MAX_LINE bytes, read, then the same with a longer id."""
    padding = MAX_LINE - len(
        b'{"id": 1, "command": "status", "args": {"names": [""]}, "version": 1}'
    )
    rest = b', "command": "status", "args": {"names": ["' + b"x" * padding + b'"]}, "version": 1}'
    decoder = LineDecoder()
    [first] = decoder.feed(b'{"id": 1' + rest + b"\n")
    assert isinstance(first, Request) and len(b'{"id": 1' + rest) == MAX_LINE
    [second] = decoder.feed(b'{"id": 10' + rest + b"\n")
    assert isinstance(second, BadLine)
    assert decode(second.response)["error"]["type"] == TOO_LARGE


def test_a_request_whose_handler_may_change_its_args_is_read_anew() -> None:
    """Only read-only built-in commands are read once: any other gets args of its own."""
    line = b', "command": "deploy", "args": {"hosts": ["a"]}, "version": 1}'
    decoder = LineDecoder()
    [first] = decoder.feed(b'{"id": 1' + line + b"\n")
    assert isinstance(first, Request)
    first.args["hosts"].append("changed")
    [second] = decoder.feed(b'{"id": 2' + line + b"\n")
    assert second == Request(id=2, command="deploy", args={"hosts": ["a"]})


def test_the_requests_remembered_hold_little_memory_whatever_is_sent() -> None:
    """Distinct status requests, short and near the limit: what is kept of them
    to read their repetitions stays within 64 lines of 1 KiB."""
    from daemonctx.supervisor import protocol

    decoder = LineDecoder()
    for n in range(200):
        name = b"%d-" % n + b"x" * (60 * 1024 if n % 2 else 10)
        line = b'{"id": 1, "command": "status", "args": {"names": ["' + name + b'"]}}\n'
        [request] = decoder.feed(line)
        assert isinstance(request, Request)
    assert 0 < len(protocol._REPEATED) <= 64
    assert sum(map(len, protocol._REPEATED)) <= 64 * 1024
