"""A small least-recently-used cache, bounded by a cost (bytes for radiographs, a count otherwise)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable


class LRUCache:
    def __init__(self, capacity: float, cost: Callable[[object], float] = lambda value: 1):
        self.capacity, self._cost = capacity, cost
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._total = 0.0

    def get(self, key, default=None):
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key, value) -> None:
        if key in self._items:
            self._total -= self._cost(self._items.pop(key))
        self._items[key] = value
        self._total += self._cost(value)
        while self._total > self.capacity and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._total -= self._cost(old)

    def clear(self) -> None:
        self._items.clear()
        self._total = 0.0
