"""``ppml-torch check``: is a torch model equivalent after conversion, in plaintext and MPC?"""

from __future__ import annotations

import argparse

from . import options

HELP = "check a torch model against its conversions on cpu and under MPC (a table)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODULE_SPEC",
        help="package.module:Factory (a class or function returning an nn.Module), or a "
        "Hugging Face save_pretrained folder",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="[NAME=]DTYPE[SHAPE]",
        help="example inputs, e.g. float32[4,30] or input_ids=int64[1,8] (HF folder default: "
        "input_ids=int64[1,8])",
    )
    p.add_argument("--kwargs", help="JSON object of keyword arguments for the factory")
    from ..equivalence.check import DEFAULT_RUNS

    options.add_runs(p, DEFAULT_RUNS)
    options.add_routes(p)
    p.add_argument("--grads", action="store_true", help="also compare gradients of sum(outputs)")
    p.add_argument(
        "--tolerance",
        type=float,
        help="atol and rtol for MPC runs (default: derived from the ops the model uses)",
    )
    p.add_argument(
        "--seed", type=options.non_negative_int, default=0, help="seed of the weights and inputs"
    )
    p.add_argument(
        "--int-high",
        type=options.positive_int,
        help="integer inputs are drawn from [0, INT_HIGH) (default: the vocabulary size of a "
        "HF model, else 2)",
    )


def run(args: argparse.Namespace) -> int:
    from ..equivalence.check import check_equivalence
    from ..equivalence.spec import default_inputs, load_model, make_inputs, parse_input
    from ..runners.runspec import parse_runs

    specs = [parse_input(s) for s in args.inputs]  # all bad input fails before any work
    parse_runs(args.runs)
    if args.tolerance is not None and not args.tolerance > 0:
        from ..equivalence.check import EquivalenceError

        raise EquivalenceError(f"--tolerance {args.tolerance} must be positive")
    module, source = load_model(args.model, args.kwargs, args.seed)
    specs = specs or default_inputs(module)
    high = args.int_high or getattr(getattr(module, "config", None), "vocab_size", None) or 2
    pos, kw = make_inputs(specs, args.seed, high)
    report = check_equivalence(
        module,
        pos,
        example_kwargs=kw or None,
        runs=args.runs,
        routes=args.routes,
        grads=args.grads,
        tolerance=args.tolerance,
    )
    print(f"{source}: {report}")
    return 0 if report.passed else 1
