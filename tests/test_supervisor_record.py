"""``record``: the frozen value classes of the supervisor's protocol, results and
state machine, built without ``dataclasses``; they must behave as the frozen
dataclasses type checkers take them for."""

from __future__ import annotations

import pickle

import pytest

from daemonctx.supervisor.protocol import Request
from daemonctx.supervisor.record import field, record
from daemonctx.supervisor.results import ExitInfo, ProgramInfo


@record(frozen=True)
class Point:
    x: int
    y: int
    label: str = "origin"
    tags: list[str] = field(default_factory=list)


@record(frozen=True)
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError(f"negative: {self.value}")


def test_arguments_by_position_by_keyword_and_defaults() -> None:
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2, label="origin")
    point = Point(3, 4, "p")
    assert (point.x, point.y, point.label, point.tags) == (3, 4, "p", [])
    assert Point.FIELDS == ("x", "y", "label", "tags")


def test_a_default_factory_makes_a_fresh_value_for_each_instance() -> None:
    first, second = Point(0, 0), Point(0, 0)
    assert first.tags == [] and first.tags is not second.tags
    given = ["a"]
    assert Point(0, 0, tags=given).tags is given


@pytest.mark.parametrize(
    "call",
    [
        lambda: Point(1),  # y missing
        lambda: Point(1, 2, "a", [], "extra"),
        lambda: Point(1, 2, z=3),
        lambda: Point(1, 2, x=1),  # x twice
    ],
)
def test_wrong_arguments_are_type_errors(call: object) -> None:
    with pytest.raises(TypeError):
        call()  # type: ignore[operator]


def test_the_first_instance_compiles_init_and_later_ones_use_it() -> None:
    @record(frozen=True)
    class Fresh:
        a: int
        b: str = "b"

    generic = Fresh.__init__
    assert Fresh(1).b == "b"
    assert Fresh.__init__ is not generic  # compiled once, on the first instance
    assert Fresh(2, "c") == Fresh(a=2, b="c") and Fresh(2) != Fresh(3)
    assert Fresh.__init__.__qualname__.endswith("Fresh.__init__")


def test_frozen_equal_hashable_and_shown() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError, match="frozen"):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del point.x  # type: ignore[misc]
    assert point.x == 1
    assert hash(ExitInfo(1, None, False, "exited 1", 2.0)) == hash(
        ExitInfo(1, None, False, "exited 1", 2.0)
    )
    assert Request(1, "status") == Request(1, "status") != Request(2, "status")
    assert repr(Point(1, 2)) == "Point(x=1, y=2, label='origin', tags=[])"


def test_post_init_runs_after_the_fields_are_set() -> None:
    assert Checked(3).value == 3
    with pytest.raises(ValueError, match="negative: -1"):
        Checked(-1)


def test_records_survive_pickling() -> None:
    info = ProgramInfo(
        "web", "web", "exited", "exited 1", None, None, 1.5, 0, 1,
        ExitInfo(1, None, False, "exited 1", 1.5), None, "",
    )  # fmt: skip
    assert pickle.loads(pickle.dumps(info)) == info
    assert info.dropped == 0 and info.stopped


def test_a_record_refuses_slots_and_private_fields() -> None:
    with pytest.raises(TypeError, match="Slotted"):

        @record(frozen=True)
        class Slotted:
            __slots__ = ("a",)
            a: int

    with pytest.raises(TypeError, match="Private"):

        @record(frozen=True)
        class Private:
            _fields: int
