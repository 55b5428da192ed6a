"""nvlow.frozen.Record construction: the fast paths (every field in order, every field by name) and the
general one must build the same record and refuse the same mistakes as a frozen dataclass."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from nvlow.frozen import FrozenRecordError, Record, field


class Point(Record):
    x: int
    y: int = 0
    tags: list = field(default_factory=list, compare=False)  # type: ignore[type-arg]


class Child(Point):
    z: str = "z"


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: int = 0
    tags: list = dataclasses.field(default_factory=list, compare=False)  # type: ignore[type-arg]


@pytest.mark.parametrize("args,kwargs", [
    ((1, 2, ["a"]), {}),                      # every field in order (fast path)
    ((), {"tags": ["a"], "y": 2, "x": 1}),    # every field by name, out of order (fast path)
    ((1,), {"y": 2, "tags": ["a"]}),          # mixed
    ((1, 2), {}),                             # a default from the factory
    ((), {"x": 1}),
])
def test_construction_matches_a_frozen_dataclass(args, kwargs):
    p, d = Point(*args, **kwargs), DPoint(*args, **kwargs)
    assert (p.x, p.y, p.tags) == (d.x, d.y, d.tags)
    assert repr(p) == repr(d).replace("DPoint", "Point")
    assert p == Point(p.x, p.y, ["other"]) and hash(p) == hash(Point(p.x, p.y))  # tags not compared
    assert pickle.loads(pickle.dumps(p)) == p
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags"]


@pytest.mark.parametrize("args,kwargs,message", [
    ((), {}, "missing argument 'x'"),
    ((1, 2, [], 4), {}, "takes 3 arguments but 4 were given"),
    ((1,), {"x": 2}, "given twice"),
    ((), {"x": 1, "y": 2, "w": 3}, "unexpected keyword argument 'w'"),  # as many names as fields, one wrong
    ((), {"x": 1, "y": 2, "tags": [], "w": 3}, "unexpected keyword argument 'w'"),
])
def test_construction_mistakes(args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)
    with pytest.raises(TypeError):
        DPoint(*args, **kwargs)


def test_subclass_fields_and_frozen():
    c = Child(1, 2, [], "w")
    assert (c.x, c.y, c.z) == (1, 2, "w") and Child(z="q", x=1, y=0, tags=[]).z == "q"
    with pytest.raises(FrozenRecordError):
        c.x = 3  # type: ignore[misc]
    assert isinstance(FrozenRecordError("x"), AttributeError)
