"""quick_init: the faster __init__ behaves as the dataclass's own, and refuses what it does not
take when the class is decorated."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from streamtasks.wire.envelope import Envelope, ErrorInfo, ResultRecord, TaskStatus
from streamtasks.wire.quickinit import quick_init
from streamtasks.worker.outcomes import Outcome, Output, Record


def _stamp() -> list[int]:
    return [1]


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str
    c: bytes | None = None
    d: tuple[int, ...] = ()
    e: list[int] = field(default_factory=_stamp)


@quick_init
@dataclass(frozen=True, slots=True)
class Quick:
    a: int
    b: str
    c: bytes | None = None
    d: tuple[int, ...] = ()
    e: list[int] = field(default_factory=_stamp)


CALLS: list[tuple[tuple[object, ...], dict[str, object]]] = [
    ((1, "x"), {}),
    ((1,), {"b": "x", "c": b"c"}),
    ((), {"a": 1, "b": "x", "d": (1, 2), "e": [5]}),
    ((1, "x", None, (3,), [7]), {}),
    ((1, "x"), {"e": []}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_the_same_values_as_the_dataclass_init(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    plain, quick = Plain(*args, **kwargs), Quick(*args, **kwargs)  # type: ignore[arg-type]
    assert dataclasses.astuple(plain) == dataclasses.astuple(quick)
    assert repr(plain).replace("Plain", "Quick") == repr(quick)


def test_a_default_factory_runs_per_instance() -> None:
    one, two = Quick(1, "x"), Quick(1, "x")
    assert one.e == [1] and one.e is not two.e


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), ((1, "x"), {"a": 2}), ((1, "x"), {"f": 1}), ((1, "x", 1, 2, 3, 4), {})],
)
def test_wrong_calls_fail_as_the_dataclass_init_does(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    with pytest.raises(TypeError):
        Plain(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Quick(*args, **kwargs)  # type: ignore[arg-type]


def test_still_frozen_comparable_hashable_replaceable_and_picklable() -> None:
    q = Quick(1, "x", b"c", (2,), [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.a = 2  # type: ignore[misc]
    assert q == Quick(1, "x", b"c", (2,), [])
    assert q != Quick(2, "x", b"c", (2,), [])
    r = dataclasses.replace(q, a=3)
    assert (r.a, r.b, r.c) == (3, "x", b"c")
    assert pickle.loads(pickle.dumps(q)) == q
    e = ErrorInfo("T", "m")
    assert hash(e) == hash(ErrorInfo("T", "m", None))
    assert inspect.signature(Quick) == inspect.signature(Plain)


def test_the_per_task_records_keep_their_behaviour() -> None:
    for cls in (Envelope, ErrorInfo, ResultRecord, Record, Output, Outcome):
        assert cls.__init__.__code__.co_filename.startswith("<quick_init"), cls
    env = Envelope("id", "t", "q", b"a")
    assert env.attempt == 1 and env.created_at > 0 and env.continuation == ()
    assert Envelope.from_avro(env.to_avro()) == env
    res = ResultRecord("id", "t", TaskStatus.SUCCESS, 1, 5, value=b"v")
    assert ResultRecord.from_avro(res.to_avro()) == res
    rec = Record("topic", 0, 7, b"k", b"v", [])
    assert rec.timestamp is None and rec.log_fields()["offset"] == 7
    out = Output("r", b"k", b"v", [])
    assert out.result is None and Outcome("success", (out,)).then == ()
    for frozen, name in ((env, "id"), (res, "task_id"), (rec, "key"), (out, "key")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(frozen, name, b"x")


def test_refuses_what_it_does_not_take() -> None:
    @dataclass
    class NotFrozen:
        a: int

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class KwOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class NotInit:
        a: int = field(default=1, init=False)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int] = 0

    @dataclass(frozen=True, slots=True)
    class WithClassVar:
        a: int
        b: ClassVar[int] = 0

    for cls in (NotFrozen, NoSlots, PostInit, KwOnly, NotInit, WithInitVar, object):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)
    # a ClassVar is no field: taken, and left as it was
    assert quick_init(WithClassVar)(1).b == 0
