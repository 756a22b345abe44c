"""GatedLock: the Store's one lock, re-entrant, with a gate a thread passes before it takes the lock."""

from __future__ import annotations

import threading
import time

_held = threading.local()  # how many Store locks this thread holds
REGATE_S = 10.0  # a wait for the lock longer than this passes the gate again


class GatedLock:
    """A re-entrant lock that first calls `gate()` (when set), outside any Store lock, on a thread holding none.

    The Store's lock: the server sets the gate to "wait until the submits acknowledged so far are written"
    (serving.api.queue_front.QueueFront.drain), so anything that goes through the Store sees them. A thread that
    already holds a Store lock (this one or a cursor's) does not wait, so nothing waits on work queued behind it.
    """

    def __init__(self, parent: GatedLock | None = None):
        self._lock = threading.RLock()
        self.gate = None
        self._parent = parent  # a cursor's lock follows its connection's gate

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        gate = self.gate or (self._parent and self._parent.gate)
        held = getattr(_held, "n", 0)
        while True:
            if gate and not held:
                gate()
            t0 = time.monotonic()
            got = self._lock.acquire(blocking, timeout)
            if not got or not gate or held or time.monotonic() - t0 < REGATE_S:
                break
            # waited long for the lock (a big import held it): what was acknowledged meanwhile goes first, or a
            # lease acknowledged with a minute to spare could lapse before it is stored
            self._lock.release()
        if got:
            _held.n = held + 1
        return got

    def release(self) -> None:
        self._lock.release()
        _held.n -= 1
