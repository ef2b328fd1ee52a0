"""The progress ``fit`` shows: one bar from the call on, with the stage it is in.

The bar starts when ``fit`` starts, so its clock is the real one: the set-up stages (checks,
convert, range check, share) before the first epoch, then ``compile + epoch 1`` (SPU compiles
the epoch program inside the first call) and the epochs.  :class:`Stages` also times each
set-up stage for :attr:`History.stages <ppml_torch.train.history.History.stages>`.
"""

from __future__ import annotations

import time
from typing import Any


class Stages:
    """A tqdm bar over epochs (``show=False``: no bar) that names the current stage."""

    def __init__(self, epochs: int, show: bool):
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}
        self._stage: str | None = None
        self._since = self.t0
        self.bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, desc="fit", unit="epoch")

    def stage(self, name: str) -> None:
        """Enter a set-up stage (the time since the previous one is that one's)."""
        self._close_stage()
        self._stage = name
        if self.bar is not None:
            self.bar.set_description_str(f"fit: {name}")

    def epoch(self, e: int, epochs: int) -> None:
        """Enter epoch ``e`` (the set-up is over)."""
        self._close_stage()
        if self.bar is not None:
            what = f"compile + epoch {e}/{epochs}" if e == 1 else f"epoch {e}/{epochs}"
            self.bar.set_description_str(f"fit: {what}")

    def done_epoch(self, loss: float | None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}")

    def close(self) -> None:
        self._close_stage()
        if self.bar is not None:
            self.bar.close()

    def _close_stage(self) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.times[self._stage] = self.times.get(self._stage, 0.0) + now - self._since
        self._stage = None
        self._since = now
