"""What ``fit`` returns besides the module: one :class:`EpochRecord` per epoch in a
:class:`History`, with the batches' layout and every session report."""

from __future__ import annotations

import dataclasses

from ppml_torch.runners.base import RunReport
from ppml_torch.runners.comm import CommStats


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch: its revealed mean loss (``None`` if not revealed) and what it cost.

    The loss is torch's usual running loss: each batch's loss before its step, averaged over
    the epoch's rows (a partial batch weighs its rows).

    ``compile_s`` is the compilation inside this epoch's call (epoch 1 only; 0.0 when reused,
    ``None`` where the backend does not separate it).  ``comm`` is ``None`` in plaintext.
    """

    epoch: int
    loss: float | None
    compile_s: float | None
    run_s: float
    comm: CommStats | None


@dataclasses.dataclass
class History:
    """What ``fit`` did: one :class:`EpochRecord` per epoch, plus the batches' layout."""

    epochs: list[EpochRecord]
    batches_per_epoch: int  # full batches (lax.scan)
    partial_batch: int  # rows of the kept last batch (0: none, or dropped)
    dropped_rows: int  # rows left out each epoch (drop_last=True)
    reports: list[RunReport]  # every session report of this fit (puts, calls, reveals)
    wall_s: float = 0.0
    weights_to: str | None = None  # the party that received the trained weights
    # the kept partial batch ran in the batch-shape program (graph route: no second conversion)
    partial_padded: bool = False
    # why it did not, when the graph route converted the partial batch's shape instead
    padding_refused: str | None = None
    conversions: int = 0  # conversions of the module this fit made (0 when all were cached)
    setup_s: float = 0.0  # before any session work: checks, conversion, padding check, mapping

    @property
    def loss(self) -> list[float | None]:
        return [e.loss for e in self.epochs]

    def describe(self) -> str:
        lines = []
        for e in self.epochs:
            loss = "hidden" if e.loss is None else f"{e.loss:.4f}"
            c = "n/a" if e.compile_s is None else f"{e.compile_s:.2f}s"
            comm = "" if e.comm is None else f", {e.comm.describe()}"
            lines.append(f"epoch {e.epoch}: loss {loss}, compile {c}, run {e.run_s:.2f}s{comm}")
        return "\n".join(lines)
