"""``ppml-torch homework-mlp``: the SecretFlow homework's breast-cancer MLP on several runtimes."""

from __future__ import annotations

import argparse

HELP = "train the breast-cancer MLP (the SecretFlow homework) on cpu, spu and secretflow"
DEFAULT_RUNS = ("cpu", "spu:SEMI2K", "spu:ABY3", "secretflow:SEMI2K")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..apps.homework.data import NORMALISATIONS

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
    p.add_argument(
        "--route",
        choices=("graph", "flax"),
        default="flax",
        help="fit's conversion route (default %(default)s; graph does not run on secretflow yet)",
    )


def run(args: argparse.Namespace) -> int:
    from ..apps.homework import report
    from ..runners.config import ConfigError
    from ..runspec import parse_runs

    runs = parse_runs(args.runs, args.field, allow_torch=False)  # validated before any work
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    print(report.setup_line(args.epochs, args.normalise, args.route))
    print(report.LOSS_NOTE)
    table = report.Table()
    print(table.header)
    print("-" * len(table.header))
    report.run_homework(
        runs,
        epochs=args.epochs,
        normalise=args.normalise,
        route=args.route,
        on_row=lambda r: print(table.line(r), flush=True),
    )
    print(report.TABLE_NOTE)
    return 0
