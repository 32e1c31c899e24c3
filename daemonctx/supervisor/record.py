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

    def _make_init(cls, names, defaults):
        """An ``__init__`` compiled for ``cls``'s fields, as dataclasses makes one: a
        generic one (a dict of the arguments, a loop over the names) took six
        times as long, and the supervisor builds records on every request."""
        scope = {"_MISSING": _MISSING}
        parameters = []
        body = []
        for name in names:
            default = defaults.get(name, _MISSING)
            if isinstance(default, _Factory):
                scope[f"_make_{name}"] = default.make
                parameters.append(f"{name}=_MISSING")
                body.append(f"    if {name} is _MISSING:\n        {name} = _make_{name}()")
            elif default is not _MISSING:
                scope[f"_default_{name}"] = default
                parameters.append(f"{name}=_default_{name}")
            else:
                parameters.append(name)
        # One statement, into __dict__: frozen, past our own __setattr__.
        body.append(f"    self.__dict__.update({{{', '.join(f'{n!r}: {n}' for n in names)}}})")
        if getattr(cls, "__post_init__", None) is not None:
            body.append("    self.__post_init__()")
        source = f"def __init__(self, {', '.join(parameters)}):\n" + "\n".join(body)
        exec(source, scope)  # our own field names, checked above
        return scope["__init__"]

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
        if "__slots__" in cls.__dict__ or not all(n.isidentifier() and n[0] != "_" for n in names):
            raise TypeError(f"{cls.__name__}: a record has no __slots__, its fields public names")
        cls.FIELDS = names

        def __init__(self, *args, **kwargs):
            # Compiled at the first instance, not at import: ``ctl`` imports a
            # dozen record classes and builds two or three of them.
            init = _make_init(cls, names, defaults)
            init.__qualname__ = f"{cls.__qualname__}.__init__"
            cls.__init__ = init
            init(self, *args, **kwargs)

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
