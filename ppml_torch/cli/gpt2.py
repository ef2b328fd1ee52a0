"""``ppml-torch gpt2``: greedy GPT-2 generation on several runtimes, side by side
(the app: :mod:`ppml_torch.apps.gpt2`)."""

from __future__ import annotations

import argparse

from . import options

HELP = "greedy GPT-2 generation (KV cache, weights shared once) on torch, cpu, spu, secretflow"
DEFAULT_RUNS = ("torch", "cpu", "spu:ABY3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..apps.gpt2.job import DEFAULT_PROMPT, RANDOM_SHAPE

    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="text (default: %(default)r)")
    p.add_argument(
        "--tokens", type=options.positive_int, default=10, help="new tokens (default: %(default)s)"
    )
    options.add_runs(p, DEFAULT_RUNS)
    options.add_field(p)
    options.add_routes(p, ["graph"], flag="--route")
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a local GPT-2 save_pretrained directory (default: models/tiny-gpt2 when `make "
        "tiny-gpt2` has built it and no --layers/--width/--heads/--init-std is given)",
    )
    p.add_argument(
        "--approx",
        action="store_true",
        help="MPC-friendly approximations that change the numbers (PUMA's piecewise GeLU; the "
        "argmax over the checkpoint's candidates.json tokens when it has one); ids may differ "
        "from torch where its top-1 margin is small",
    )
    for name, v in RANDOM_SHAPE.items():
        p.add_argument(
            f"--{name}", type=options.positive_int, help=f"random model's {name} (default {v})"
        )
    p.add_argument(
        "--seed", type=options.non_negative_int, default=0, help="seed of the random model"
    )
    p.add_argument(
        "--init-std",
        type=float,
        help="random model's initializer_range (default 0.02, GPT-2's; it tends to repeat one "
        "token, 0.1 gives varied ids)",
    )
    options.add_party(
        p,
        note="the first party's process reads the weights, the second's the prompt, and only "
        "the second's gets the ids",
    )


def _job(args: argparse.Namespace):
    from ..apps.gpt2.job import Job, ModelSpec

    model = ModelSpec(
        args.checkpoint, args.layers, args.width, args.heads, args.init_std, args.seed
    )
    return Job(model, args.prompt, args.tokens, tuple(args.route), args.approx)


def check_launch(args: argparse.Namespace) -> None:
    """Checks of a one-process-per-party run, cheap, before any process starts."""
    from ..apps.gpt2 import parties
    from ..runners.runspec import parse_runs

    parties.check_launch(_job(args), parse_runs(args.runs, args.field))


def run(args: argparse.Namespace) -> int:
    from ..apps.gpt2 import parties, runs
    from ..runners.runspec import parse_runs

    specs = parse_runs(args.runs, args.field)  # every input checked before any work
    if options.one_party(args):
        parties.run_party(_job(args), specs, args.cluster, args.party, _print)
    else:
        runs.run_side_by_side(_job(args), specs, _print)
    return 0


def _print(line: str) -> None:
    print(line, flush=True)
