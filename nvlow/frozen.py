"""The record base of every core result: a frozen class built from its annotations, cheap to define.

``@dataclasses.dataclass(frozen=True)`` compiles an ``__init__``, ``__repr__``, ``__eq__`` and
``__hash__`` per class with ``exec`` (about 1 ms a class, and ``import dataclasses`` pulls in
``inspect``, ``ast``, ``tokenize``...): some 60 result classes cost more than all the work of
``nvlow args``. :class:`Record` reads a subclass's annotations once, in ``__init_subclass__``, and
shares one generic implementation, so defining a record costs microseconds and nothing here imports
``typing`` or ``dataclasses`` at run time.

What callers may rely on, as with frozen dataclasses: keyword or positional construction in
annotation order with defaults, ``field(default_factory=..., compare=...)``, equality and hashing on
the compared fields, a ``Name(field=value, ...)`` repr, assignment refused
(:class:`FrozenRecordError`, an ``AttributeError`` like ``dataclasses.FrozenInstanceError``), pickling,
and :func:`replace`/:func:`asdict`. The standard library's ``dataclasses.fields``, ``replace``,
``asdict`` and ``is_dataclass`` work on records too: ``__dataclass_fields__`` is built on first use
(the public API promises this).

Example:
    >>> class Point(Record):
    ...     x: int
    ...     y: int = 0
    >>> p = Point(1)
    >>> p, p == Point(1, 0), replace(p, y=2), asdict(p)
    (Point(x=1, y=0), True, Point(x=1, y=2), {'x': 1, 'y': 0})
    >>> p.x = 3
    Traceback (most recent call last):
    ...
    nvlow.frozen.FrozenRecordError: cannot assign to field 'x' of frozen record Point
    >>> import dataclasses
    >>> [f.name for f in dataclasses.fields(p)], dataclasses.replace(p, x=5)
    (['x', 'y'], Point(x=5, y=0))
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Dict, FrozenSet, Optional, Tuple, TypeVar

    from typing_extensions import dataclass_transform

    R = TypeVar("R", bound="Record")
else:
    def dataclass_transform(**_: object) -> object:
        return lambda cls: cls


class FrozenRecordError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Factory:
    __slots__ = ("make", "compare")

    def __init__(self, make: Optional[Callable[[], Any]], compare: bool) -> None:
        self.make = make
        self.compare = compare


_NO_DEFAULT = object()


def field(*, default_factory: Optional[Callable[[], Any]] = None, compare: bool = True) -> Any:
    """A field whose default is made per instance (``default_factory``) or left out of ``==``/hash."""
    return _Factory(default_factory, compare)


class _DataclassFields:
    """``__dataclass_fields__`` made on first use with ``dataclasses.make_dataclass`` (public API only)."""

    def __get__(self, instance: object, owner: type) -> Dict[str, Any]:
        made = owner.__dict__.get("_record_dataclass_fields")
        if made is None:
            import dataclasses

            specs = []
            for name in owner._record_fields:  # type: ignore[attr-defined]
                default = owner._record_defaults.get(name, _NO_DEFAULT)  # type: ignore[attr-defined]
                kw: Dict[str, Any] = {"compare": name in owner._record_compare}  # type: ignore[attr-defined]
                if isinstance(default, _Factory):
                    kw["default_factory"] = default.make
                elif default is not _NO_DEFAULT:
                    kw["default"] = default
                specs.append((name, owner._record_types[name], dataclasses.field(**kw)))  # type: ignore[attr-defined]
            made = dataclasses.make_dataclass(owner.__name__, specs, frozen=True).__dataclass_fields__  # type: ignore[attr-defined]
            type.__setattr__(owner, "_record_dataclass_fields", made)
        return made  # type: ignore[no-any-return]


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """Base of nvlow's result records (see the module docstring)."""

    _record_fields: ClassVar[Tuple[str, ...]] = ()
    _record_field_set: ClassVar[FrozenSet[str]] = frozenset()
    _record_compare: ClassVar[Tuple[str, ...]] = ()
    _record_defaults: ClassVar[Dict[str, Any]] = {}
    _record_types: ClassVar[Dict[str, str]] = {}
    _record_frozen: ClassVar[bool] = True
    __dataclass_fields__ = _DataclassFields()

    def __init_subclass__(cls, frozen: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__annotations__", {})
        names = list(cls._record_fields)
        types = dict(cls._record_types)
        defaults = dict(cls._record_defaults)
        compare = list(cls._record_compare)
        for name, kind in own.items():
            if str(kind).startswith(("ClassVar", "typing.ClassVar")):
                continue
            if name not in types:
                names.append(name)
            types[name] = kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))
            value = cls.__dict__.get(name, _NO_DEFAULT)
            if value is not _NO_DEFAULT:
                defaults[name] = value
                if isinstance(value, _Factory):
                    delattr(cls, name)  # the instance always has its own value
            if not (isinstance(value, _Factory) and not value.compare) and name not in compare:
                compare.append(name)
        cls._record_fields = tuple(names)
        cls._record_field_set = frozenset(names)
        cls._record_types = types
        cls._record_defaults = defaults
        cls._record_compare = tuple(n for n in names if n in compare)
        cls._record_frozen = frozen
        setattr(cls, "__match_args__", tuple(names))  # positional patterns, as a dataclass has
        if not frozen:
            cls.__hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as a dataclass with eq

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._record_fields
        if not kwargs and len(args) == len(names):  # every field given in order: the common case
            self.__dict__.update(zip(names, args))
            return
        if not args and len(kwargs) == len(names) and kwargs.keys() == self._record_field_set:
            self.__dict__.update(kwargs)  # every field by name (the instance reads fields by name)
            return
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments but {len(args)} were given")
        values = dict(zip(names, args))
        for name in names[len(args):]:
            if name in kwargs:
                values[name] = kwargs.pop(name)
                continue
            default = self._record_defaults.get(name, _NO_DEFAULT)
            if default is _NO_DEFAULT:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            values[name] = default.make() if isinstance(default, _Factory) and default.make else default
        if kwargs:
            name = next(iter(kwargs))
            given = "given twice" if name in values else "unexpected"
            raise TypeError(f"{type(self).__name__}() got an {given} keyword argument {name!r}")
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._record_frozen:
            raise FrozenRecordError(f"cannot assign to field {name!r} of frozen record {type(self).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._record_frozen:
            raise FrozenRecordError(f"cannot delete field {name!r} of frozen record {type(self).__name__}")
        object.__delattr__(self, name)

    def _record_key(self) -> Tuple[Any, ...]:
        d = self.__dict__
        return tuple(d[n] for n in self._record_compare)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._record_key() == other._record_key()

    def __hash__(self) -> int:
        return hash(self._record_key())

    def __repr__(self) -> str:
        d = self.__dict__
        inner = ", ".join(f"{n}={d[n]!r}" for n in self._record_fields)
        return f"{type(self).__qualname__}({inner})"


def replace(record: R, **changes: Any) -> R:
    """A copy of ``record`` with ``changes`` (``dataclasses.replace`` for records)."""
    values = {n: record.__dict__[n] for n in record._record_fields}
    for name in changes:
        if name not in values:
            raise TypeError(f"{type(record).__name__} has no field {name!r}")
    values.update(changes)
    return type(record)(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def asdict(record: Record) -> Dict[str, Any]:
    """The record as a dict, nested records and containers included (``dataclasses.asdict``)."""
    d = record.__dict__
    return {n: _plain(d[n]) for n in record._record_fields}
