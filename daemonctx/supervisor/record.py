"""Frozen value classes for the client's side, without importing ``dataclasses``.

``daemonctx ctl`` loads the protocol and the result types on every run, and
``dataclasses`` (with ``inspect``, which it imports) costs about 8 ms there: a
tenth of the time supervisorctl takes for a whole ``status``. For type
checkers, ``record`` *is* ``dataclasses.dataclass`` (and ``field`` its
``field``); at run time it adds what those classes use: ``__init__`` (positional
or keyword arguments, defaults, ``field(default_factory=...)``), ``__eq__``,
``__hash__``, ``__repr__``, immutability, and ``FIELDS`` (the names, in order).
"""

from __future__ import annotations

TYPE_CHECKING = False
__all__ = ["field", "record"]

if TYPE_CHECKING:
    from dataclasses import dataclass as record
    from dataclasses import field
else:
    _MISSING = object()

    class _Factory:
        """``field(default_factory=...)``: a fresh default for each instance."""

        __slots__ = ("make",)

        def __init__(self, make):
            self.make = make

    def field(*, default_factory):
        return _Factory(default_factory)

    def record(cls=None, /, *, frozen=True):
        """``@record(frozen=True)`` or ``@record``: make ``cls`` a frozen value class."""
        if cls is None:
            return lambda cls: _build(cls)
        return _build(cls)

    def _build(cls):
        # The class's own annotations (strings: ``from __future__ import
        # annotations``); inspect.get_annotations would cost the time saved here.
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        names = tuple(name for name, kind in own.items() if not str(kind).startswith("ClassVar"))
        defaults = {}
        for name in names:
            value = cls.__dict__.get(name, _MISSING)
            if value is not _MISSING:
                defaults[name] = value
                if isinstance(value, _Factory):
                    delattr(cls, name)
        cls.FIELDS = names

        def __init__(self, *args, **kwargs):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes {len(names)} arguments")
            values = dict(zip(names, args))
            for name, value in kwargs.items():
                if name not in names or name in values:
                    raise TypeError(f"{cls.__name__}(): unexpected argument {name!r}")
                values[name] = value
            for name in names:
                if name not in values:
                    if name not in defaults:
                        raise TypeError(f"{cls.__name__}(): missing argument {name!r}")
                    default = defaults[name]
                    values[name] = default.make() if isinstance(default, _Factory) else default
                object.__setattr__(self, name, values[name])
            post_init = getattr(self, "__post_init__", None)
            if post_init is not None:
                post_init()

        def _values(self):
            return tuple(getattr(self, name) for name in names)

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return _values(self) == _values(other)

        def __hash__(self):
            return hash(_values(self))

        def __repr__(self):
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
            return f"{cls.__qualname__}({shown})"

        def __setattr__(self, name, value):
            raise AttributeError(f"cannot assign to field {name!r}: {cls.__name__} is frozen")

        def __delattr__(self, name):
            raise AttributeError(f"cannot delete field {name!r}: {cls.__name__} is frozen")

        for function in (__init__, __eq__, __hash__, __repr__, __setattr__, __delattr__):
            function.__qualname__ = f"{cls.__qualname__}.{function.__name__}"
            setattr(cls, function.__name__, function)
        return cls
