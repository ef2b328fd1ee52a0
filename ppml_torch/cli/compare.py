"""``ppml-torch compare mlp``: the torch MLP trained on every runner and route vs torch eager."""

from __future__ import annotations

import argparse

from . import options

HELP = (
    "train the breast-cancer MLP defined in torch on torch eager, cpu, spu and secretflow "
    "(both routes); one row each, and plots"
)
MODELS = ("mlp",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..apps.compare import DEFAULT_RUNS

    p.add_argument("model", choices=MODELS, help="the model to compare (mlp: the homework MLP)")
    options.add_runs(p, DEFAULT_RUNS)
    options.add_field(p)
    options.add_routes(p)
    p.add_argument("--epochs", type=options.positive_int, default=10)
    p.add_argument(
        "--cheetah-epochs",
        type=options.positive_int,
        default=1,
        help="epochs of CHEETAH runs (about 18 s an epoch per route here; default %(default)s)",
    )
    p.add_argument(
        "--out", type=options.output_dir, default="compare-mlp", help="directory for the PNG plots"
    )


def run(args: argparse.Namespace) -> int:
    from ..apps import compare
    from ..runners.runspec import parse_runs

    runs = parse_runs(args.runs, args.field)  # validated before any work
    routes = options.distinct_routes(args.routes)
    print(compare.setup_line(args.epochs, args.cheetah_epochs))
    print(compare.HEADER)
    print("-" * len(compare.HEADER))
    rows, references = compare.run_compare(
        runs,
        routes=routes,
        epochs=args.epochs,
        cheetah_epochs=args.cheetah_epochs,
        on_row=lambda row: print(compare.line(row), flush=True),
    )
    print(compare.NOTE)
    for path in compare.write_plots(rows, references, args.out):
        print(f"wrote {path}")
    failed = [f"{r.run} {r.route}" for r in rows if r.error is not None]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}")
        return 1
    return 0
