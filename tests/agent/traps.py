"""Objects that record every piece of their own code that runs: dunder methods, properties,
descriptors, __getattr__, __getattribute__, metaclass methods. keyhole must never set one off."""

from __future__ import annotations

from typing import Any

CALLS: list[str] = []


def _recorder(name: str, result: Any) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        CALLS.append(name)
        return result(self, *args) if callable(result) else result

    method.__name__ = name
    return method


class TrapMeta(type):
    """A metaclass that records hashing, comparing, isinstance checks and attribute reads of its classes."""

    def __hash__(cls) -> int:
        CALLS.append("meta.__hash__")
        return 0

    def __eq__(cls, other: object) -> bool:
        CALLS.append("meta.__eq__")
        return True

    def __ne__(cls, other: object) -> bool:
        CALLS.append("meta.__ne__")
        return False

    def __instancecheck__(cls, instance: object) -> bool:
        CALLS.append("meta.__instancecheck__")
        return True

    def __subclasscheck__(cls, subclass: type) -> bool:
        CALLS.append("meta.__subclasscheck__")
        return True

    def __getattribute__(cls, name: str) -> Any:
        CALLS.append(f"meta.__getattribute__({name})")
        return type.__getattribute__(cls, name)

    def __repr__(cls) -> str:
        CALLS.append("meta.__repr__")
        return "TrapClass"


_DUNDERS: dict[str, Any] = {
    "__eq__": True,
    "__ne__": False,
    "__lt__": True,
    "__le__": True,
    "__gt__": True,
    "__ge__": True,
    "__hash__": 0,  # every trap collides with 0, False and each other: lookups must not compare
    "__len__": 1,
    "__bool__": True,
    "__iter__": lambda self: iter([1, 2]),
    "__reversed__": lambda self: iter([2, 1]),
    "__contains__": True,
    "__getitem__": 1,
    "__missing__": 1,
    "__repr__": "Trap()",
    "__str__": "Trap",
    "__format__": "Trap",
    "__bytes__": b"Trap",
    "__add__": 1,
    "__radd__": 1,
    "__sub__": 1,
    "__rsub__": 1,
    "__mul__": 1,
    "__rmul__": 1,
    "__truediv__": 1,
    "__floordiv__": 1,
    "__mod__": 1,
    "__pow__": 1,
    "__rpow__": 1,
    "__neg__": 1,
    "__pos__": 1,
    "__abs__": 1,
    "__invert__": 1,
    "__index__": 1,
    "__int__": 1,
    "__float__": 1.0,
    "__complex__": 1j,
    "__round__": 1,
    "__lshift__": 1,
    "__and__": 1,
    "__or__": 1,
    "__call__": 1,
    "__enter__": 1,
    "__exit__": False,
    "__fspath__": "/trap",
    "__dir__": ["a"],
    "__sizeof__": 1,
    "__reduce__": (int, ()),
    "__copy__": 1,
    "__deepcopy__": 1,
    "__length_hint__": 1,
}


def _trap_namespace(prefix: str) -> dict[str, Any]:
    namespace = {name: _recorder(f"{prefix}.{name}", result) for name, result in _DUNDERS.items()}

    def __getattr__(self: Any, name: str) -> Any:  # noqa: N807
        CALLS.append(f"{prefix}.__getattr__({name})")
        return 1

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        CALLS.append(f"{prefix}.__getattribute__({name})")
        return object.__getattribute__(self, name)

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        CALLS.append(f"{prefix}.__setattr__({name})")
        object.__setattr__(self, name, value)

    def prop(self: Any) -> int:
        CALLS.append(f"{prefix}.prop")
        return 1

    def klass(self: Any) -> type:
        CALLS.append(f"{prefix}.__class__")
        return int

    namespace.update(
        __getattr__=__getattr__,
        __getattribute__=__getattribute__,
        __setattr__=__setattr__,
        prop=property(prop),
        __class__=property(klass),
        desc=Descriptor(),
    )
    return namespace


class Descriptor:
    def __get__(self, instance: Any, owner: Any = None) -> int:
        CALLS.append("Descriptor.__get__")
        return 1

    def __set__(self, instance: Any, value: Any) -> None:
        CALLS.append("Descriptor.__set__")


Trap: Any = TrapMeta("Trap", (), _trap_namespace("Trap"))
SlotTrap: Any = TrapMeta("SlotTrap", (), {**_trap_namespace("SlotTrap"), "__slots__": ("a", "b")})
TrapList: Any = type("TrapList", (list,), _trap_namespace("TrapList"))
TrapDict: Any = type("TrapDict", (dict,), _trap_namespace("TrapDict"))
TrapStr: Any = type("TrapStr", (str,), _trap_namespace("TrapStr"))
TrapInt: Any = type("TrapInt", (int,), _trap_namespace("TrapInt"))
TrapFloat: Any = type("TrapFloat", (float,), _trap_namespace("TrapFloat"))


class DictIsAProperty:
    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        CALLS.append("DictIsAProperty.__dict__")
        return {"leaked": 1}


def make_trap(kind: str, payload: Any) -> Any:
    """Build a trap without recording (construction is the test's own doing, not keyhole's)."""
    if kind == "Trap":
        obj = Trap()
        object.__setattr__(obj, "a", payload)
        object.__setattr__(obj, "b", [payload])
    elif kind == "SlotTrap":
        obj = SlotTrap()
        object.__setattr__(obj, "a", payload)
    elif kind == "TrapList":
        obj = TrapList([payload, 1])
    elif kind == "TrapDict":
        obj = TrapDict()
        dict.__setitem__(obj, "a", payload)
        dict.__setitem__(obj, 0, 1)
    elif kind == "TrapStr":
        obj = TrapStr("trap-string")
    elif kind == "TrapInt":
        obj = TrapInt(7)
    elif kind == "TrapFloat":
        obj = TrapFloat(2.5)
    elif kind == "DictIsAProperty":
        obj = DictIsAProperty()
    else:
        raise AssertionError(kind)
    return obj


TRAP_KINDS = ["Trap", "SlotTrap", "TrapList", "TrapDict", "TrapStr", "TrapInt", "TrapFloat", "DictIsAProperty"]
