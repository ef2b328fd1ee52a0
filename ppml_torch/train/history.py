"""What ``fit`` returns besides the module: one :class:`EpochRecord` per epoch in a
:class:`History`, the losses of single steps when asked (``log_every``), the set-up stages'
times and every session report.  ``print(history)`` prints it as a table."""

from __future__ import annotations

import dataclasses
from typing import Any

from ppml_torch.runners.base import RunReport
from ppml_torch.runners.comm import CommStats


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch: its mean loss (``None`` if not read) and what it cost.

    The loss is torch's usual running loss: each batch's loss before its step, averaged over
    the epoch's rows (a partial batch weighs its rows).  It is always read in plaintext
    sessions (nothing is disclosed there); under MPC only when revealed (``reveal_loss``).

    ``compile_s`` is the compilation inside this epoch's call (epoch 1 only; 0.0 when reused,
    ``None`` where the backend does not separate it).  ``comm`` is ``None`` in plaintext.
    """

    epoch: int
    loss: float | None
    compile_s: float | None
    run_s: float
    comm: CommStats | None


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """The loss of one step (``fit(log_every=...)``): ``step`` counts from 1 over the whole fit."""

    epoch: int
    step: int
    loss: float


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
    steps: list[StepRecord] = dataclasses.field(default_factory=list)  # log_every's losses
    # seconds per stage before the first epoch: checks, convert, range check, share
    stages: dict[str, float] = dataclasses.field(default_factory=dict)
    range_check: str | None = None  # what the range check saw (None: not run)
    # fit(profile=True): one step's MPC cost per module (a profiling ProfileReport)
    profile: Any = None

    @property
    def loss(self) -> list[float | None]:
        return [e.loss for e in self.epochs]

    def describe(self) -> str:
        """The epochs as a table (and the steps' losses when logged)."""
        rows = []
        for e in self.epochs:
            rows.append(
                (
                    str(e.epoch),
                    "hidden" if e.loss is None else f"{e.loss:.4f}",
                    "n/a" if e.compile_s is None else f"{e.compile_s:.2f}s",
                    f"{e.run_s:.2f}s",
                    "-" if e.comm is None else e.comm.describe(),
                )
            )
        lines = _table(("epoch", "loss", "compile", "run", "communication"), rows)
        if self.stages:
            lines.append(
                "set-up: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.stages.items())
                + (f"; wall {self.wall_s:.2f}s" if self.wall_s else "")
            )  # fmt: skip
        if self.profile is not None:
            lines.append("profile of one step per module: print(history.profile)")
        if self.steps:
            lines.append("")
            lines += _table(
                ("epoch", "step", "loss"),
                [(str(s.epoch), str(s.step), f"{s.loss:.4f}") for s in self.steps],
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]
