"""``ppml-torch profile``: where the MPC cost of a model goes, per module and kind of work."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "where the MPC cost goes: bytes, sends and time per torch module, LAN/WAN estimates"
GPT2_SHAPE = {"layers": 2, "width": 64, "heads": 4}  # ppml-torch gpt2's random model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        nargs="?",
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
    p.add_argument(
        "--homework",
        action="store_true",
        help="one SGD step of the breast-cancer homework (MLP [30, 15, 8, 1], batch 10, its "
        "loss and update)",
    )
    p.add_argument(
        "--gpt2",
        action="store_true",
        help="one GPT-2 decode step and its argmax over GPT-2's vocabulary (seeded random "
        "weights; --layers, --width, --heads)",
    )
    for name, v in GPT2_SHAPE.items():
        p.add_argument(f"--{name}", type=int, default=v, help=f"--gpt2: {name} (default {v})")
    p.add_argument("--kwargs", help="JSON object of keyword arguments for the factory")
    p.add_argument(
        "--runs",
        nargs="+",
        default=["spu:SEMI2K"],
        metavar="RUN",
        help="spu[:PROTOCOL[:FIELD]] runs to profile (default: %(default)s)",
    )
    p.add_argument("--route", choices=("graph", "flax"), default="graph")
    p.add_argument(
        "--grads",
        action="store_true",
        help="profile the gradient of sum(outputs) too: forward and backward columns",
    )
    p.add_argument("--module", metavar="PATH", help="show only this module and what is inside it")
    p.add_argument("--top", type=int, default=20, help="rows to show, costliest first (0: all)")
    p.add_argument(
        "--networks",
        nargs="+",
        default=["lan", "wan"],
        help="network presets to estimate: lan, wan, puma-lan (default: %(default)s)",
    )
    p.add_argument(
        "--bandwidth",
        type=float,
        metavar="BITS_PER_S",
        help="also estimate a network of this bandwidth per party (with --rtt), e.g. 1e9",
    )
    p.add_argument("--rtt", type=float, metavar="SECONDS", help="its round trip, e.g. 0.0005")
    p.add_argument("--plot", metavar="OUT.png", help="write a bar chart of the costliest rows")
    p.add_argument("--repeats", type=int, default=1, help="runs per program; times are medians")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    p.add_argument(
        "--int-high",
        type=int,
        help="integer inputs are drawn from [0, INT_HIGH) (default: the vocabulary size of a "
        "HF model, else 2)",
    )


def run(args: argparse.Namespace) -> int:
    from ..profiling.network import as_network
    from ..profiling.report import ProfileError
    from ..profiling.run import check_run
    from ..runners.runspec import parse_runs

    # everything typed is checked before any model is built or session opened
    chosen = [n for n, on in (("MODULE_SPEC", args.model), ("--homework", args.homework),
                              ("--gpt2", args.gpt2)) if on]  # fmt: skip
    if len(chosen) != 1:
        raise ProfileError(
            "give one model: MODULE_SPEC [INPUTS], --homework or --gpt2"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if (args.homework or args.gpt2) and (args.inputs or args.kwargs or args.int_high):
        raise ProfileError("inputs, --kwargs and --int-high go with MODULE_SPEC, not the presets")
    if args.homework and args.grads:
        raise ProfileError("--homework profiles a training step: forward and backward already")
    runs = parse_runs(args.runs, allow_torch=False)
    for r in runs:
        check_run(r)
    networks = [as_network(n) for n in args.networks]
    if (args.bandwidth is None) != (args.rtt is None):
        raise ProfileError("--bandwidth and --rtt go together")
    if args.bandwidth is not None:
        networks.append(as_network(args.bandwidth, args.rtt))
    if args.top < 0 or args.repeats < 1:
        raise ProfileError("--top must be 0 or more and --repeats at least 1")
    plots = _plot_paths(args.plot, runs)
    if args.gpt2:
        for name in GPT2_SHAPE:
            if getattr(args, name) < 1:
                raise ProfileError(f"--{name} must be at least 1, got {getattr(args, name)}")

    module, inputs, desc = _model(args)
    if module is not None and args.module is not None and args.route == "graph":
        names = dict(module.named_modules())
        if args.module not in names:
            raise ProfileError(_unknown_module(args.module, names))
    print(desc)
    for run_spec, plot in zip(runs, plots, strict=True):
        report = _profile(args, run_spec, module, inputs)
        if args.module is not None:
            report.row(args.module)  # the flax route's names are known only now
        print()
        print(report.describe(top=args.top or None, networks=networks, under=args.module))
        if plot is not None:
            report.plot(plot)
            print(f"wrote {plot}")
    return 0


def _model(args: argparse.Namespace):
    """``(torch module or None, inputs, description)``, before any session starts."""
    if args.homework:
        from ..apps.profile_presets import homework_module

        module, desc = homework_module(args.seed)
        return module, None, desc
    if args.gpt2:
        from ..apps.profile_presets import gpt2_module

        module, desc = gpt2_module(args.layers, args.width, args.heads, args.seed)
        return module, None, desc
    from ..equivalence.spec import default_inputs, load_model, make_inputs, parse_input

    specs = [parse_input(s) for s in args.inputs]
    module, source = load_model(args.model, args.kwargs, args.seed)
    specs = specs or default_inputs(module)
    high = args.int_high or getattr(getattr(module, "config", None), "vocab_size", None) or 2
    pos, kw = make_inputs(specs, args.seed, high)
    shapes = ", ".join(f"{s.name + '=' if s.name else ''}{s.dtype}{list(s.shape)}" for s in specs)
    return module, (pos, kw), f"{source} on {shapes} (random inputs, seed {args.seed})"


def _profile(args: argparse.Namespace, run_spec, module, inputs):
    from ..apps import profile_presets as presets
    from ..profiling.run import profile

    if inputs is not None:
        pos, kw = inputs
        return profile(
            module,
            pos,
            example_kwargs=kw or None,
            session=str(run_spec),
            route=args.route,
            grads=args.grads,
            repeats=args.repeats,
        )
    if args.homework:
        program = presets.homework_step(route=args.route, seed=args.seed)
    else:
        _, desc = presets.gpt2_module(args.layers, args.width, args.heads, args.seed)
        program = presets.gpt2_decode_step(module, desc, route=args.route)
    with run_spec.open() as s:
        return presets.profile_program(s, program, repeats=args.repeats)


def _plot_paths(plot: str | None, runs: list) -> list[Path | None]:
    from ..errors import InputFileError
    from ..profiling.report import ProfileError

    if plot is None:
        return [None] * len(runs)
    out = Path(plot)
    if out.suffix.lower() != ".png":
        raise ProfileError(f"--plot {plot}: give a file name ending in .png")
    if not out.parent.is_dir():
        raise InputFileError(f"--plot {plot}: folder {out.parent} does not exist; create it first")
    if len(runs) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{str(r).replace(':', '-')}{out.suffix}") for r in runs]


def _unknown_module(path: str, names: dict) -> str:
    near = [n for n in names if n and (path in n or n in path)][:4]
    hint = f"; near: {', '.join(near)}" if near else ""
    return f"--module {path!r} is not a module of the model{hint} (names as in named_modules())"
