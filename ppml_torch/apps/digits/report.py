"""The digits table: one row per run (test accuracy, time per epoch, communication)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from ...runners import CommStats, total
from ...runners.runspec import RunSpec
from .data import WEIGHTS_OWNER, DigitsData, load_data
from .train import BATCH_SIZE, EPOCHS, LR, accuracy, torch_eager, train

__all__ = ["WEIGHTS_OWNER", "DigitsRow", "Table", "eager_row", "fit_row", "run_digits"]

TABLE_NOTE = (
    "acc: test accuracy (360 images) of the trained weights, revealed to alice once and "
    "scored by her in plaintext; |dacc|: against torch eager (same initial weights and "
    "batches); epoch: mean run time of one epoch (one program call); compile: JAX/SPU "
    "compilation (n/a: SecretFlow compiles inside its SPU actors); communication: all "
    "parties' sends for the whole fit"
)


@dataclasses.dataclass(frozen=True)
class DigitsRow:
    backend: str
    protocol: str
    field: str
    accuracy: float | None  # None in a process that is not alice's (one process per party)
    epochs: int
    run_s: float  # all epochs (torch eager: the whole loop)
    compile_s: float | None
    comm: CommStats | None  # the whole fit's, None in plaintext


def fit_row(run: RunSpec, session, data: DigitsData, *, epochs: int, batch_size: int):
    """Train on ``session`` (``run``'s): ``(row, trained module or None)``."""
    module, history = train(session, data, epochs=epochs, batch_size=batch_size)
    report = total(history.reports, "train")  # puts, epochs, the weights' reveal
    run_s = sum(e.run_s for e in history.epochs)
    comp = [e.compile_s for e in history.epochs]
    compile_s = None if any(c is None for c in comp) else sum(comp)
    acc = None if module is None else accuracy(module, data)
    row = DigitsRow(
        run.backend, run.protocol or "-", run.field or "-", acc, epochs, run_s, compile_s,
        report.comm,
    )  # fmt: skip
    return row, module


def eager_row(data: DigitsData, *, epochs: int, batch_size: int) -> DigitsRow:
    t = time.perf_counter()
    module = torch_eager(data, epochs=epochs, batch_size=batch_size)
    run_s = time.perf_counter() - t
    return DigitsRow("torch", "-", "-", accuracy(module, data), epochs, run_s, None, None)


def run_digits(
    runs: Sequence[RunSpec],
    *,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    train_rows: int | None = None,
    ref: DigitsRow | None = None,
    on_row: Callable[[DigitsRow], None] | None = None,
) -> list[DigitsRow]:
    """Train once per run; ``on_row`` sees each row as it is done.

    ``ref``: the torch eager row (:func:`eager_row`, computed here when not given): the
    reference of ``|dacc|``, a row only when ``runs`` lists torch.
    """
    data = load_data(train_rows)
    if ref is None:
        ref = eager_row(data, epochs=epochs, batch_size=batch_size)
    rows = []
    for run in runs:
        if run.is_torch:
            row = ref
        else:
            with run.open() as s:
                row, _ = fit_row(run, s, data, epochs=epochs, batch_size=batch_size)
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def setup_line(epochs: int, batch_size: int, train_rows: int | None = None) -> str:
    rows = "1437 training images" if train_rows is None else f"first {train_rows} training images"
    return (
        "digits CNN conv(1->8)-relu-maxpool-conv(8->16)-relu-maxpool-linear(64->10), "
        f"{epochs} epochs, batch {batch_size}, SGD {LR} on cross entropy, by ppml_torch.fit; "
        f"{rows}: alice the first half + weights + test set, bob the second half"
    )


class Table:
    """The table's text, a line per row as rows come; ``|dacc|`` against torch eager."""

    header = (
        f"{'backend':<11} {'protocol':<8} {'field':<5} {'acc':>6} {'|dacc|':>6} "
        f"{'epoch':>8} {'compile':>8}  communication"
    )

    def __init__(self, ref: DigitsRow | None = None) -> None:
        self.ref = ref

    def line(self, r: DigitsRow) -> str:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.4f}"
        ref = None if self.ref is None else self.ref.accuracy
        d = "-" if r.accuracy is None or ref is None else f"{abs(r.accuracy - ref):.4f}"
        comp = "n/a" if r.compile_s is None else f"{r.compile_s:.1f}s"
        if r.backend == "torch":
            comp = "-"
        epoch = f"{r.run_s / r.epochs:.2f}s"
        comm = r.comm.describe() if r.comm is not None else "-"
        return (
            f"{r.backend:<11} {r.protocol:<8} {r.field:<5} {acc:>6} {d:>6} {epoch:>8} "
            f"{comp:>8}  {comm}"
        )
