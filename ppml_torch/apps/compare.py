"""``ppml-torch compare mlp``: one torch MLP trained on every runner and route, against torch eager.

The homework's breast-cancer MLP ([30, 15, 8, 1], ReLU, defined in torch, the homework's Flax
initial weights; :mod:`ppml_torch.apps.homework.train`), the homework's split (alice: features
0-14 and the weights, bob: features 15-29 and the labels) and hyper-parameters (SGD, batch 10
plus the partial batch, ``nn.MSELoss`` at lr 0.005).  Each run trains through
``ppml_torch.fit`` on a run spec (``cpu``, ``spu:SEMI2K``, ...) and a route (``graph``,
``flax``); ``torch`` is torch eager, the reference.  Per run: the test AUC (scores computed in
the session, revealed to bob), the largest absolute weight difference against torch eager
after the same number of epochs, the train time (``fit``'s wall time: conversion, puts,
compilation, the epochs, the reveal of the weights) and the communication.

**Disclosure.** To draw the loss curves, every run reveals its mean training loss per epoch to
bob (the label owner): ``fit(..., reveal_loss="bob")``.  Under MPC that is a value computed
from both parties' data; a training that must not disclose it runs without (the default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..model import ROUTES
from ..runners import CommStats, Session, total
from ..runners.runspec import RunSpec

DEFAULT_RUNS = ("torch", "cpu", "spu:SEMI2K", "spu:CHEETAH", "spu:ABY3", "secretflow:SEMI2K")
LOSS_PLOT = "loss_curves.png"
SCATTER_PLOT = "predictions.png"


@dataclasses.dataclass
class CompareRow:
    """One run: ``route`` is ``"-"`` for torch eager."""

    run: str
    route: str
    epochs: int
    auc: float
    max_weight_diff: float  # vs torch eager after the same epochs (0.0 for torch itself)
    train_s: float
    comm: CommStats | None
    losses: list[float]  # mean training loss per epoch (revealed to bob under MPC)
    scores: np.ndarray  # test-set scores (revealed to bob)
    reference_auc: float  # torch eager's after the same epochs
    error: str | None = None  # the run failed: its first line (the other fields are empty)


@dataclasses.dataclass
class _Reference:
    module: Any
    losses: list[float]
    scores: np.ndarray
    auc: float
    train_s: float


def _max_diff(a: Any, b: Any) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def _reference(data: Any, epochs: int) -> _Reference:
    import torch

    from .homework import train as hw
    from .homework.evaluate import auc

    module = hw.torch_mlp()
    # the first torch optimizer of a process imports torch._dynamo (~6 s here): not training
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    t0 = time.perf_counter()
    module, losses = hw.torch_eager(module, data, epochs=epochs)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        scores = module(torch.as_tensor(data.x_test)).numpy().reshape(-1)
    return _Reference(module, losses, scores, auc(scores, data), train_s)


def run_compare(
    runs: Sequence[RunSpec],
    *,
    routes: Sequence[str] = ROUTES,
    epochs: int = 10,
    cheetah_epochs: int = 1,
    on_row: Callable[[CompareRow], None] | None = None,
    sessions: Mapping[RunSpec, Session] | None = None,
) -> tuple[list[CompareRow], dict[int, CompareRow]]:
    """Train once per run x route; returns the rows and torch eager's row per epoch count.

    CHEETAH runs train ``cheetah_epochs`` (it costs ~18 s an epoch here) and are compared with
    torch eager after as many epochs.  One session per run spec serves every route: opened
    and closed here, or taken from ``sessions`` (left open).
    """
    from .homework import train as hw
    from .homework.data import load_data
    from .homework.evaluate import auc

    data = load_data()
    refs: dict[int, _Reference] = {}

    def ref(n: int) -> _Reference:
        if n not in refs:
            refs[n] = _reference(data, n)
        return refs[n]

    def eager_row(n: int) -> CompareRow:
        r = ref(n)
        return CompareRow("torch", "-", n, r.auc, 0.0, r.train_s, None, r.losses, r.scores, r.auc)

    rows: list[CompareRow] = []
    for run in runs:
        n = cheetah_epochs if run.protocol == "CHEETAH" else epochs
        if run.is_torch:
            rows.append(eager_row(n))
            if on_row:
                on_row(rows[-1])
            continue
        given = (sessions or {}).get(run)
        with contextlib.nullcontext(given) if given is not None else run.open() as session:
            for route in routes:
                try:
                    row = _train_row(hw, session, data, run, route, n, ref(n), auc)
                except Exception as e:  # noqa: BLE001 - reported as the run's row, not hidden
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    row = CompareRow(
                        str(run), route, n, float("nan"), float("nan"), 0.0, None, [],
                        np.zeros(0), ref(n).auc, f"{type(e).__name__}: {first[:160]}",
                    )  # fmt: skip
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows, {n: eager_row(n) for n in refs}


def _train_row(hw, session, data, run, route, n, reference, auc) -> CompareRow:
    module, history = hw.train(session, data, epochs=n, route=route, reveal_loss=True)
    scores = hw.predict_test(session, module, data, route=route)
    rep = total(history.reports, "train")
    return CompareRow(
        str(run), route, n, auc(scores, data), _max_diff(module, reference.module),
        history.wall_s, rep.comm, [float(v) for v in history.loss], scores, reference.auc,
    )  # fmt: skip


# -- the table ----------------------------------------------------------------------------------


HEADER = (
    f"{'run':<24} {'route':<5} {'epochs':>6} {'AUC':>7} {'|dAUC|':>7} {'max|dW|':>9} "
    f"{'train':>7}  communication"
)
NOTE = (
    "|dAUC|, max|dW|: against torch eager after the same epochs (same initial weights and "
    "batches); train: fit's wall time (conversion, puts, compile, epochs, the weights' reveal); "
    "AUC on the 20% test split, scored in the session and revealed to bob; "
    "the loss per epoch is revealed to bob for the plots (a disclosure under MPC)"
)


def setup_line(epochs: int, cheetah_epochs: int) -> str:
    return (
        f"breast-cancer MLP [30, 15, 8, 1] ReLU defined in torch, SGD lr 0.005 on MSELoss, "
        f"batch 10 (+ partial 5), {epochs} epochs (CHEETAH {cheetah_epochs}); "
        "alice: features 0-14 + weights, bob: features 15-29 + labels"
    )


def line(row: CompareRow) -> str:
    if row.error is not None:
        return f"{row.run:<24} {row.route:<5} {row.epochs:>6} FAILED: {row.error}"
    comm = row.comm.describe() if row.comm is not None else "-"
    return (
        f"{row.run:<24} {row.route:<5} {row.epochs:>6} {row.auc:>7.4f} "
        f"{abs(row.auc - row.reference_auc):>7.4f} {row.max_weight_diff:>9.2e} "
        f"{row.train_s:>6.1f}s  {comm}"
    )


# -- the plots ----------------------------------------------------------------------------------


def _label(row: CompareRow) -> str:
    return "torch eager" if row.route == "-" else f"{row.run} {row.route}"


def write_plots(
    rows: Sequence[CompareRow], references: dict[int, CompareRow], out: str | Path
) -> list[Path]:
    """``loss_curves.png`` and ``predictions.png`` in ``out`` (created); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eager = {n: r for n, r in references.items()}
    runs = [r for r in rows if r.route != "-" and r.error is None]
    styles = {"graph": "-", "flax": "--"}
    cmap = plt.get_cmap("tab10")
    colours: dict[str, Any] = {}

    def colour(run: str):
        return colours.setdefault(run, cmap(len(colours) % 10))

    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    longest = max(eager)
    ref = eager[longest]
    x_ref = np.arange(1, len(ref.losses) + 1)
    ax.plot(x_ref, ref.losses, color="black", lw=3, alpha=0.35, label="torch eager", zorder=1)
    for r in runs:
        x = np.arange(1, len(r.losses) + 1)
        ax.plot(
            x, r.losses, styles.get(r.route, ":"), color=colour(r.run), marker="o", ms=3,
            label=_label(r), zorder=2,
        )  # fmt: skip
        diff = np.asarray(r.losses) - np.asarray(eager[r.epochs].losses)
        ax_d.plot(
            x, diff, styles.get(r.route, ":"), color=colour(r.run), marker="o", ms=3,
            label=_label(r),
        )  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss (MSE), revealed to bob")
    ax.set_title("Training loss per epoch")
    ax.set_xticks(x_ref)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax_d.axhline(0.0, color="black", lw=1, alpha=0.5)
    ax_d.set_xlabel("epoch")
    ax_d.set_ylabel("run's loss - torch eager's")
    ax_d.set_title("Loss difference vs torch eager (same epochs)")
    ax_d.set_xticks(x_ref)
    ax_d.grid(alpha=0.3)
    ax_d.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    loss_path = out / LOSS_PLOT
    fig.savefig(loss_path)
    plt.close(fig)

    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    markers = {"graph": "o", "flax": "x"}
    for r in runs:
        base = eager[r.epochs].scores
        ax.scatter(
            base, r.scores, s=14, marker=markers.get(r.route, "."), color=colour(r.run),
            label=_label(r) + ("" if r.epochs == longest else f" ({r.epochs} ep.)"), alpha=0.7,
        )  # fmt: skip
        ax_d.scatter(
            base, r.scores - base, s=14, marker=markers.get(r.route, "."), color=colour(r.run),
            alpha=0.7,
        )  # fmt: skip
    shown = [r.scores for r in runs] + [e.scores for e in eager.values()]
    lo, hi = min(a.min() for a in shown), max(a.max() for a in shown)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, alpha=0.5, label="y = x")
    ax.set_xlabel("torch eager test score")
    ax.set_ylabel("test score of the run (revealed to bob)")
    ax.set_title("Test predictions vs torch eager (same epochs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax_d.axhline(0.0, color="black", lw=1, alpha=0.5)
    ax_d.set_xlabel("torch eager test score")
    ax_d.set_ylabel("run - torch eager")
    ax_d.set_title("Difference (fixed-point error and its effect on training)")
    ax_d.grid(alpha=0.3)
    ax_d.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    scatter_path = out / SCATTER_PLOT
    fig.savefig(scatter_path)
    plt.close(fig)
    return [loss_path, scatter_path]
