"""The ``ppml-torch`` command.  Each sub-command is a thin layer over a library module."""

from __future__ import annotations

import argparse
import sys

LOSS_NOTE = (
    "note: the original homework's loss broadcast y (n,) against predictions (n, 1) into an "
    "(n, n) matrix; here y is (n, 1)"
)


def _homework_mlp(args: argparse.Namespace) -> int:
    from . import homework as hw

    runs = hw.parse_runs(args.runs, args.field)  # validated before any work starts
    print(
        f"breast-cancer MLP [30, 15, 8, 1] ReLU, {args.epochs} epochs, batch 10, SGD 0.01; "
        f"alice: features 0-14, bob: features 15-29 + labels; {args.normalise} min-max"
    )
    print(LOSS_NOTE)
    header = f"{'backend':<11} {'protocol':<8} {'field':<5} {'AUC':>7} {'|dAUC|':>7} {'compile':>8} {'run':>8}  communication"
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


def _ops(args: argparse.Namespace) -> int:
    from .converters.fx.table import main as ops_main

    return ops_main(args.rest)


def _protocols(args: argparse.Namespace) -> int:
    from .runners.config import FIELD_FRACTION_BITS, PROTOCOL_DEFAULTS, PROTOCOLS

    for name, n in PROTOCOLS.items():
        print(f"{name:<8} {n} parties  defaults: {PROTOCOL_DEFAULTS[name]}")
    print(f"fraction bits by field: {FIELD_FRACTION_BITS}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .homework import DEFAULT_RUNS, NORMALISATIONS

    p = argparse.ArgumentParser(prog="ppml-torch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    h = sub.add_parser(
        "homework-mlp", help="train the breast-cancer MLP on cpu, spu and secretflow"
    )
    h.add_argument(
        "--runs",
        nargs="+",
        default=list(DEFAULT_RUNS),
        help="backend[:protocol] list (default: %(default)s); e.g. spu:CHEETAH (slow: ~18 s/epoch)",
    )
    h.add_argument("--field", default="FM64", help="FM64 or FM128 for the MPC runs")
    h.add_argument("--epochs", type=int, default=10)
    h.add_argument("--normalise", choices=NORMALISATIONS, default="per-feature")
    h.set_defaults(func=_homework_mlp)

    o = sub.add_parser("ops", help="the converter's op table (--json for JSON)", add_help=False)
    o.add_argument("rest", nargs=argparse.REMAINDER)
    o.set_defaults(func=_ops)

    pr = sub.add_parser("protocols", help="protocols, party counts and runtime defaults")
    pr.set_defaults(func=_protocols)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ops"]:  # the op table has its own options (--json, --family, ...)
        from .converters.fx.table import main as ops_main

        return ops_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .runners.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as e:
        print(f"ppml-torch: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
