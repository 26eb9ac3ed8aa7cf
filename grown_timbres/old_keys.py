"""Read access by the keys of the dict a dataclass replaced: code written for the dicts
(features["f0"], batch["examples"]["starts"], {**features, "f0": ...}) keeps working.

    OLD_KEYS {old key: attribute path ("excerpts.f0")} -> obj[key], key in obj, obj.get, ** and
    items(), all read-only
"""
from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import ClassVar


class OldKeys(Mapping):
    """A read-only Mapping view of a dataclass under the keys of the dict it replaced, exactly
    those (code iterating over the dict sees what it saw). A class sets OLD_KEYS; a key it does
    not map raises a KeyError naming the fields to use instead.
    Equality and hashing stay those of objects: the fields hold arrays, which compare
    element by element."""

    OLD_KEYS: ClassVar[dict] = {}
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __getitem__(self, key):
        try:
            path = self.OLD_KEYS[key]
        except (KeyError, TypeError):
            raise KeyError(f"{type(self).__name__} has no key {key!r}: read its fields "
                           f"({', '.join(f'.{name}' for name in self.__dataclass_fields__)})"
                           ) from None
        return operator.attrgetter(path)(self)

    def __iter__(self):
        return iter(self.OLD_KEYS)

    def __len__(self) -> int:
        return len(self.OLD_KEYS)
