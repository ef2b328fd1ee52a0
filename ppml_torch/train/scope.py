"""The handles one ``fit`` or ``predict`` made in a session, so that a failure frees them too.

A borrowed session stays open after the call: a value left in it would be a stray share of
a party's data.  Every put and call goes through a :class:`Scope`; the normal path frees each
handle when it is no longer needed, and :meth:`Scope.free_all` (in a ``finally``) frees what
a failure left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ppml_torch.runners.base import Handle, Session


class Scope:
    """Puts and calls in ``session``, remembered until freed."""

    def __init__(self, session: Session):
        self.session = session
        self.live: list[Handle] = []

    def put(self, value: Any, owner: str) -> Handle:
        h = self.session.put(value, owner=owner)
        self.live.append(h)
        return h

    def call(self, fn: Callable[..., Any], *args: Handle, name: str) -> Handle:
        h = self.session.call(fn, *args, name=name)
        self.live.append(h)
        return h

    def free(self, *handles: Handle) -> None:
        for h in handles:
            self.live.remove(h)
            self.session.free(h)

    def free_all(self) -> None:
        """Free every handle still held (best effort: after the real error)."""
        for h in self.live:
            try:
                self.session.free(h)
            except Exception:  # noqa: BLE001, S110 - best effort after the real error
                pass
        self.live.clear()
