"""The workbench's one kind of cache: the most recently used few entries of something costly (a run's loaded
model and data, thumbnails, a POST's result that its redirect shows), thread-safe, dropping the least recently
used beyond its size. Request handlers run in threads (``asyncio.to_thread``), so every use takes the lock."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable


class Recent:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict = {}  # key -> the lock its entry is made under (serialise)

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            self._put(key, value)

    def get_or_make(self, key: Hashable, make: Callable[[], object], serialise: bool = False):
        """The entry for ``key``, made by ``make()`` when missing. ``serialise``: make it under that key's own
        lock, so two requests for one costly entry (a run's dataset) build it once while requests for other
        keys go on (one global lock once made every run's thumbnails wait for one run's dataset)."""
        if serialise:
            with self._lock:
                making = self._making.setdefault(key, threading.Lock())
            with making:
                found = self.get(key, _MISSING)
                if found is _MISSING:
                    found = make()
                    self.put(key, found)
                return found
        found = self.get(key, _MISSING)
        if found is _MISSING:
            found = make()
            self.put(key, found)
        return found

    def _put(self, key: Hashable, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


_MISSING = object()
