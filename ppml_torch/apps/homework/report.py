"""The homework table: one row per run spec (AUC, time, communication), and its text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ...runners import RunReport, total
from ...runners.runspec import RunSpec
from .data import load_data
from .evaluate import auc
from .train import ROUTE, predict_test, torch_mlp, train

LOSS_NOTE = (
    "note: the original homework's loss broadcast y (n,) against predictions (n, 1) into an "
    "(n, n) matrix; here y is (n, 1)"
)
TABLE_NOTE = (
    "compile: JAX/SPU compilation (n/a: SecretFlow compiles inside its SPU actors); "
    "run: the epochs' execution; AUC on the 20% test split, scored under MPC and "
    "revealed to bob only; the trained weights are revealed once, to alice"
)


@dataclasses.dataclass(frozen=True)
class HomeworkRow:
    backend: str
    protocol: str
    field: str
    auc: float | None  # None in a process that is not bob's (one process per party)
    report: RunReport


def run_homework(
    runs: Sequence[RunSpec],
    *,
    epochs: int = 10,
    normalise: str = "per-feature",
    route: str = ROUTE,
    on_row: Callable[[HomeworkRow], None] | None = None,
) -> list[HomeworkRow]:
    """Train and score the homework once per run; ``on_row`` sees each row as it is done."""
    data = load_data(normalise)
    rows = []
    for run in runs:
        backend, protocol, field = run.backend, run.protocol, run.field
        module = torch_mlp()  # the homework's initial weights, fresh for every run
        with run.open() as s:
            module, history = train(s, data, module=module, epochs=epochs, route=route)
            scores = predict_test(s, module, data, route=route)
        report = total(history.reports, "train")  # puts, epochs, the weights' reveal
        row = HomeworkRow(backend, protocol or "-", field or "-", auc(scores, data), report)
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def setup_line(epochs: int, normalise: str, route: str = ROUTE) -> str:
    return (
        f"breast-cancer MLP [30, 15, 8, 1] ReLU, {epochs} epochs, batch 10 (+ partial 5), "
        f"SGD 0.01 on mean((y-p)^2/2), by ppml_torch.fit ({route} route); "
        f"alice: features 0-14 + weights, bob: features 15-29 + labels; {normalise} min-max"
    )


class Table:
    """The table's text, a line per row as rows come; ``|dAUC|`` is against the first cpu row."""

    header = (
        f"{'backend':<11} {'protocol':<8} {'field':<5} {'AUC':>7} {'|dAUC|':>7} "
        f"{'compile':>8} {'run':>8}  communication"
    )

    def __init__(self) -> None:
        self.ref_auc: float | None = None

    def line(self, r: HomeworkRow) -> str:
        if r.backend == "cpu" and self.ref_auc is None:
            self.ref_auc = r.auc
        d = f"{abs(r.auc - self.ref_auc):.4f}" if self.ref_auc is not None else "-"
        comp = "n/a" if r.report.compile_s is None else f"{r.report.compile_s:.1f}s"
        comm = r.report.comm.describe() if r.report.comm else "-"
        return (
            f"{r.backend:<11} {r.protocol:<8} {r.field:<5} {r.auc:>7.4f} {d:>7} {comp:>8} "
            f"{r.report.run_s:>7.1f}s  {comm}"
        )
