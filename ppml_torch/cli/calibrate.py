"""``ppml-torch calibrate``: per-module fixed-point headroom of a model on sample data."""

from __future__ import annotations

import argparse

from . import options

HELP = "find fixed-point overflow and precision loss before an MPC run (plaintext, sample data)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..runners.config import FIELD_FRACTION_BITS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--module", help="package.module:factory_or_class building the nn.Module")
    src.add_argument(
        "--homework",
        action="store_true",
        help="the breast-cancer MLP [30, 15, 8, 1], trained in plaintext, on its training data",
    )
    src.add_argument(
        "--gpt2",
        action="store_true",
        help="a tiny seeded HF GPT-2 (2 layers, width 64, vocab 256) on random token ids",
    )
    p.add_argument("--kwargs", help="JSON object of keyword arguments for --module")
    p.add_argument("--checkpoint", help="torch.save'd state_dict for --module (weights_only)")
    p.add_argument(
        "--input",
        action="append",
        metavar="[NAME=]DTYPE[SHAPE]",
        help="one input of --module, repeat for more: float32[16,30] or input_ids=int64[1,8]",
    )
    p.add_argument(
        "--sample",
        action="append",
        metavar="FILE.npy",
        help="sample values for the --input at the same position (default: random)",
    )
    p.add_argument(
        "--int-high",
        type=options.positive_int,
        help="random integer inputs are drawn from [0, N) (e.g. the vocabulary size)",
    )
    p.add_argument(
        "--seed",
        type=options.non_negative_int,
        default=0,
        help="seed for weights and random inputs",
    )
    p.add_argument(
        "--epochs",
        type=options.positive_int,
        default=10,
        help="--homework: plaintext training epochs",
    )
    p.add_argument(
        "--tokens", type=options.positive_int, default=16, help="--gpt2: length of the token sample"
    )
    options.add_route(p, "graph")
    options.add_field(p, runs=False)
    p.add_argument(
        "--fraction-bits",
        type=options.positive_int,
        help="default: " + ", ".join(f"{b} on {f}" for f, b in FIELD_FRACTION_BITS.items()),
    )
    p.add_argument("--protocol", default="SEMI2K", help="SEMI2K (default), CHEETAH or ABY3")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit with code 2 and a one-line error when a wrong result is predicted",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="with --check: also refuse low headroom, precision loss and divisors near zero",
    )


def run(args: argparse.Namespace) -> int:
    from ..apps import calibration_presets as presets
    from ..calibration.run import CalibrationInputError, calibrate
    from ..runners.config import resolve

    # everything a user typed is checked before the model is built
    resolve("spu", args.protocol, args.field, runtime=_knobs(args))
    if args.module is None and (args.input or args.sample or args.kwargs or args.checkpoint):
        raise CalibrationInputError(
            "--input, --sample, --kwargs and --checkpoint go with --module; the presets "
            "--homework and --gpt2 bring their own model and data"
        )
    if args.strict and not args.check:
        raise CalibrationInputError("--strict goes with --check")
    if args.homework:
        if args.epochs < 0:
            raise CalibrationInputError(f"--epochs must be 0 or more, got {args.epochs}")
        module, sample, desc = presets.homework_mlp(seed=args.seed, epochs=args.epochs)
        kwargs: dict = {}
    elif args.gpt2:
        module, sample, desc = presets.tiny_gpt2(seed=args.seed, tokens=args.tokens)
        kwargs = {}
    else:
        from ..converters import torch_to_stablehlo as t2s

        if not args.input:
            raise CalibrationInputError("--module needs its inputs: --input float32[16,30] ...")
        specs = [t2s.parse_input_spec(s) for s in args.input]
        sample, kwargs = presets.sample_inputs(
            specs, args.sample or (), seed=args.seed, int_high=args.int_high
        )
        module, desc = t2s.load_factory_module(
            args.module, t2s.parse_kwargs(args.kwargs), seed=args.seed, checkpoint=args.checkpoint
        )
        if not args.sample:
            desc += " on random inputs (calibration is only as good as its sample: pass --sample)"
    print(desc)
    report = calibrate(
        module,
        sample,
        sample_kwargs=kwargs,
        field=args.field,
        fraction_bits=args.fraction_bits,
        protocol=args.protocol,
        route=args.route,
    )
    print(report.describe())
    if args.check:
        report.check(strict=args.strict)
        print("check: no wrong result predicted")
    return 0


def _knobs(args: argparse.Namespace) -> dict:
    return {} if args.fraction_bits is None else {"fxp_fraction_bits": args.fraction_bits}
