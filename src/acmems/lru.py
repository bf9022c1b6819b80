"""A small least-recently-used memo: the CSR memo, the auth-decision memo and the hot chains of the
file cache all keep the most recent entries and drop the oldest."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``size`` entries; :meth:`get` and :meth:`put` make an entry the most recent."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an Lru needs room for at least one entry")
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recent), or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value for ``key``, or None, leaving its place in the order as it is."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key``; the least recent entry goes if there is no room."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value, if it had one."""
        return self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def keys(self) -> list[K]:
        """The keys, least recent first (a copy: the memo may change meanwhile)."""
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
