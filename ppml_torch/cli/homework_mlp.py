"""``ppml-torch homework-mlp``: the SecretFlow homework's breast-cancer MLP on several runtimes."""

from __future__ import annotations

import argparse

HELP = "train the breast-cancer MLP (the SecretFlow homework) on cpu, spu and secretflow"
DEFAULT_RUNS = ("cpu", "spu:SEMI2K", "spu:ABY3", "secretflow:SEMI2K")
LOSS_NOTE = (
    "note: the original homework's loss broadcast y (n,) against predictions (n, 1) into an "
    "(n, n) matrix; here y is (n, 1)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..homework import NORMALISATIONS

    p.add_argument(
        "--runs",
        nargs="+",
        default=list(DEFAULT_RUNS),
        help="backend[:protocol[:field]] list (default: %(default)s); e.g. spu:CHEETAH (slow: ~18 s/epoch)",
    )
    p.add_argument(
        "--field", default="FM64", help="field of MPC runs that name none: FM64 or FM128"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--normalise", choices=NORMALISATIONS, default="per-feature")


def run(args: argparse.Namespace) -> int:
    from .. import homework as hw
    from ..runners.config import ConfigError
    from ..runspec import parse_runs

    runs = parse_runs(args.runs, args.field, allow_torch=False)  # validated before any work
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    print(
        f"breast-cancer MLP [30, 15, 8, 1] ReLU, {args.epochs} epochs, batch 10, SGD 0.01; "
        f"alice: features 0-14, bob: features 15-29 + labels; {args.normalise} min-max"
    )
    print(LOSS_NOTE)
    header = (
        f"{'backend':<11} {'protocol':<8} {'field':<5} {'AUC':>7} {'|dAUC|':>7} "
        f"{'compile':>8} {'run':>8}  communication"
    )
    print(header)
    print("-" * len(header))
    ref: list[float] = []

    def row(r: hw.HomeworkRow) -> None:
        if r.backend == "cpu" and not ref:
            ref.append(r.auc)
        d = f"{abs(r.auc - ref[0]):.4f}" if ref else "-"
        comp = "n/a" if r.report.compile_s is None else f"{r.report.compile_s:.1f}s"
        comm = r.report.comm.describe() if r.report.comm else "-"
        print(
            f"{r.backend:<11} {r.protocol:<8} {r.field:<5} {r.auc:>7.4f} {d:>7} {comp:>8} "
            f"{r.report.run_s:>7.1f}s  {comm}",
            flush=True,
        )

    hw.run_homework(runs, epochs=args.epochs, normalise=args.normalise, on_row=row)
    print(
        "compile: JAX/SPU compilation (n/a: SecretFlow compiles inside its SPU actors); "
        "run: the epochs' execution; AUC on the 20% test split, scored under MPC and "
        "revealed to bob only"
    )
    return 0
