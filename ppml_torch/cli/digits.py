"""``ppml-torch digits``: a CNN trained on sklearn's digits on several runtimes (issue 20)."""

from __future__ import annotations

import argparse

from . import options

HELP = "train a CNN on sklearn's digits (8x8 images) on torch, cpu, spu and secretflow"
DEFAULT_RUNS = ("torch", "cpu", "spu:SEMI2K", "spu:ABY3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..apps.digits.train import BATCH_SIZE, EPOCHS

    options.add_runs(p, DEFAULT_RUNS, note="e.g. secretflow:SEMI2K (slow: ~1-2 min/epoch)")
    options.add_field(p)
    p.add_argument("--epochs", type=options.positive_int, default=EPOCHS)
    p.add_argument("--batch", type=options.positive_int, default=BATCH_SIZE, help="batch size")
    p.add_argument(
        "--train-rows",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="train on the first N of the 1437 training images only (quick runs)",
    )
    options.add_party(p)


def check_launch(args: argparse.Namespace) -> None:
    """Checks of a one-process-per-party run, cheap, before any process starts."""
    from ..runners.runspec import one_party_run, parse_runs

    one_party_run(parse_runs(args.runs, args.field, allow_torch=False), "secretflow:SEMI2K")
    _check_sizes(args)


def _check_sizes(args: argparse.Namespace) -> None:
    """--train-rows and --batch against the data, one line before any work."""
    from ..apps.digits.data import load_data
    from ..runners.config import ConfigError

    n = len(load_data(args.train_rows).x_train)
    if args.train_rows is not None and args.train_rows > n:
        raise ConfigError(f"--train-rows {args.train_rows}: the training split has {n} images")
    if n < 2:
        raise ConfigError("--train-rows: give at least 2 (one training image per party)")
    if args.batch > n:
        raise ConfigError(f"--batch {args.batch} is larger than the {n} training images")


def run(args: argparse.Namespace) -> int:
    from ..apps.digits import report
    from ..apps.digits.data import load_data
    from ..runners.runspec import parse_runs

    if options.one_party(args):
        return _run_party(args)
    runs = parse_runs(args.runs, args.field)  # validated before any work
    _check_sizes(args)
    print(report.setup_line(args.epochs, args.batch, args.train_rows))
    ref = report.eager_row(load_data(args.train_rows), epochs=args.epochs, batch_size=args.batch)
    table = report.Table(ref)
    print(table.header)
    print("-" * len(table.header))

    def on_row(r: report.DigitsRow) -> None:
        print(table.line(r), flush=True)

    report.run_digits(
        runs,
        epochs=args.epochs,
        batch_size=args.batch,
        train_rows=args.train_rows,
        ref=ref,
        on_row=on_row,
    )
    print(report.TABLE_NOTE)
    return 0


def _run_party(args: argparse.Namespace) -> int:
    """One party's process of a multi-process run: its own data, its own figures."""
    from ..apps.digits import parties, report
    from ..apps.digits.data import load_data
    from ..runners.runspec import parse_runs
    from ..runners.secretflow.cluster import check_party, load_cluster

    check_launch(args)
    run = parse_runs(args.runs, args.field, allow_torch=False)[0]
    check_party(load_cluster(args.cluster), args.party)  # before any data or runtime
    print(report.setup_line(args.epochs, args.batch, args.train_rows))
    print(
        f"this process is party {args.party} ({args.cluster}); its own data only, "
        "timings and bytes sent are this party's"
    )
    ref = None
    if args.party == report.WEIGHTS_OWNER:  # the test set is alice's: so is the reference
        ref = report.eager_row(
            load_data(args.train_rows), epochs=args.epochs, batch_size=args.batch
        )
    table = report.Table(ref)
    print(table.header)
    print("-" * len(table.header))
    if ref is not None:
        print(table.line(ref), flush=True)
    res = parties.run_party(
        run,
        cluster=args.cluster,
        party=args.party,
        epochs=args.epochs,
        batch_size=args.batch,
        train_rows=args.train_rows,
    )
    print(table.line(res.row), flush=True)
    if res.module is not None:
        print(f"{args.party} received: the trained weights, scored on its test set")
    else:
        print(f"{args.party} received: nothing revealed; the trained weights went to alice")
    return 0
