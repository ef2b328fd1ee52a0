"""``ppml-torch homework-mlp``: the SecretFlow homework's breast-cancer MLP on several runtimes."""

from __future__ import annotations

import argparse

from . import options

HELP = "train the breast-cancer MLP (the SecretFlow homework) on cpu, spu and secretflow"
DEFAULT_RUNS = ("cpu", "spu:SEMI2K", "spu:ABY3", "secretflow:SEMI2K")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..apps.homework.data import NORMALISATIONS
    from ..apps.homework.train import ROUTE

    options.add_runs(p, DEFAULT_RUNS, torch=False, note="e.g. spu:CHEETAH (slow: ~18 s/epoch)")
    options.add_field(p)
    p.add_argument("--epochs", type=options.positive_int, default=10)
    p.add_argument("--normalise", choices=NORMALISATIONS, default="per-feature")
    options.add_route(p, ROUTE, what="fit's conversion route")
    options.add_party(p)
    p.add_argument(
        "--save",
        metavar="DIR",
        help="with --cluster: write what this party received to DIR/<party>.npz (alice: the "
        "trained weights, by torch name; bob: the test scores)",
    )


def check_launch(args: argparse.Namespace) -> None:
    """Checks of a one-process-per-party run, cheap, before any process starts."""
    from ..runners.runspec import one_party_run, parse_runs

    one_party_run(parse_runs(args.runs, args.field, allow_torch=False), "secretflow:SEMI2K")


def run(args: argparse.Namespace) -> int:
    from ..apps.homework import report
    from ..runners.config import ConfigError
    from ..runners.runspec import parse_runs

    runs = parse_runs(args.runs, args.field, allow_torch=False)  # validated before any work
    if options.one_party(args):
        return _run_party(args, runs[0])
    if args.save is not None:
        raise ConfigError(
            "--save writes what one party received: use it with --cluster/--party or launch"
        )
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


def _run_party(args: argparse.Namespace, run) -> int:
    """One party's process of a multi-process run: its own data, its own figures."""
    import os

    from ..apps.homework import parties, report
    from ..runners.secretflow.cluster import check_party, load_cluster

    check_launch(args)
    check_party(load_cluster(args.cluster), args.party)  # before any data or runtime
    print(report.setup_line(args.epochs, args.normalise, args.route))
    print(
        f"this process is party {args.party} ({args.cluster}); its own data only, "
        "timings and bytes sent are this party's"
    )
    table = report.Table()
    print(table.header)
    print("-" * len(table.header))
    res = parties.run_party(
        run,
        cluster=args.cluster,
        party=args.party,
        epochs=args.epochs,
        normalise=args.normalise,
        route=args.route,
    )
    r = res.row
    if r.auc is None:  # not bob's process: the scores went to bob
        comm = r.report.comm.describe() if r.report.comm else "-"
        print(
            f"{r.backend:<11} {r.protocol:<8} {r.field:<5} {'-':>7} {'-':>7} {'n/a':>8} "
            f"{r.report.run_s:>7.1f}s  {comm}",
            flush=True,
        )
    else:
        print(table.line(r), flush=True)
    got = []
    if res.module is not None:
        got.append("the trained weights (fit returned the trained module)")
    if res.scores is not None:
        got.append(f"the test scores ({len(res.scores)}), hence the AUC")
    missing = []
    if res.module is None:
        missing.append("the trained weights went to alice")
    if res.scores is None:
        missing.append("the test scores were revealed to bob only, no AUC here")
    print(
        f"{args.party} received: {', '.join(got) or 'nothing revealed'}"
        + (f"; {'; '.join(missing)}" if missing else "")
    )
    if args.save is not None:
        import numpy as np

        os.makedirs(args.save, exist_ok=True)
        out = {}
        if res.module is not None:
            out.update(
                {f"weight:{k}": v.detach().numpy() for k, v in res.module.state_dict().items()}
            )
        if res.scores is not None:
            out["scores"] = np.asarray(res.scores)
        path = os.path.join(args.save, f"{args.party}.npz")
        np.savez(path, **out)
        print(f"{args.party}: wrote {path} ({', '.join(sorted(out)) or 'nothing received'})")
    return 0
