"""Name -> class registries for the plug-in families (gates, experts)."""
from __future__ import annotations

from typing import Any


class Registry:
    """Families registered by ``cls.name``; ``get`` accepts a name or an instance.

    ``what`` names the argument in messages ("gating", "expert"); ``family``
    describes what an instance must be ("moestat.gating gate object"); ``unknown``
    starts the message for an unknown name; ``instead`` says what else may be passed.
    """

    def __init__(self, what: str, family: str, unknown: str, instead: str):
        self.what, self.family, self.unknown, self.instead = what, family, unknown, instead
        self._classes: dict[str, type] = {}

    def register(self, cls):
        self._classes[cls.name] = cls
        return cls

    def __contains__(self, name) -> bool:
        return name in self._classes

    def __getitem__(self, name: str) -> type:
        return self._classes[name]

    def available(self) -> list[str]:
        return sorted(self._classes)

    def get(self, obj: Any, base: type):
        if isinstance(obj, base):
            return obj
        if isinstance(obj, str):
            if obj not in self._classes:
                raise ValueError("%s %r; choose one of %s or pass %s"
                                 % (self.unknown, obj, ", ".join(repr(n) for n in self.available()), self.instead))
            return self._classes[obj]()
        raise TypeError("%s must be a name (%s) or a %s, got %s"
                        % (self.what, ", ".join(self.available()), self.family, type(obj).__name__))
