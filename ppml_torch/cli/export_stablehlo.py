"""``ppml-torch export-stablehlo``: a torch model to ``.mlir`` + ``.safetensors`` + manifest."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from . import options

HELP = "convert a torch model to StableHLO (.mlir), its weights (.safetensors) and a manifest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--module", help="package.module:factory_or_class building the nn.Module")
    src.add_argument("--hf-dir", help="a Hugging Face causal-LM directory (save_pretrained)")
    p.add_argument("--kwargs", help="JSON object of keyword arguments for --module")
    p.add_argument("--checkpoint", help="torch.save'd state_dict for --module (weights_only)")
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="[NAME=]DTYPE[SHAPE]",
        help="one example input, repeat for more: float32[16,30] or input_ids=int64[1,8]",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="folder for the three files")
    p.add_argument("--name", help="output file stem (default: the module's class name)")
    p.add_argument(
        "--seed",
        type=options.non_negative_int,
        default=0,
        help="seed for weights and example inputs",
    )
    p.add_argument(
        "--index-lowering",
        choices=("auto", "take", "one_hot"),
        default="auto",
        help="gathers on input indices (token ids, labels): a gather (cheapest under ABY3) or "
        "a one-hot product (fewer bytes under SEMI2K/CHEETAH); see docs/ops.md",
    )
    p.add_argument(
        "--spu-check",
        action="store_true",
        help="also compile the written files with SPU (all inputs secret) to check SPU takes them",
    )


def run(args: argparse.Namespace) -> int:
    from ..converters import torch_to_stablehlo as t2s
    from ..stablehlo import ExportError, check_stem

    if args.module is None and (args.checkpoint or args.kwargs):
        raise ExportError("--checkpoint and --kwargs go with --module; drop them with --hf-dir")
    # everything a user typed is checked before the model is built
    specs = [t2s.parse_input_spec(s) for s in args.input]
    if args.name is not None:
        check_stem(args.name)
    if args.hf_dir:
        module, source = t2s.load_hf_causal_lm(args.hf_dir)
    else:
        kwargs = t2s.parse_kwargs(args.kwargs)
        module, source = t2s.load_factory_module(
            args.module, kwargs, seed=args.seed, checkpoint=args.checkpoint
        )
    result = t2s.export_torch(
        module,
        specs,
        args.out_dir,
        name=args.name,
        source=source,
        seed=args.seed,
        index_lowering=args.index_lowering,
    )
    print(result.describe())
    if args.spu_check:
        from ..runners.compile import compile_export
        from ..stablehlo import read_export

        program = compile_export(read_export(result.manifest_path))
        ops = len(re.findall(r"= pphlo\.", program.pphlo))
        print(f"SPU accepted the StableHLO: {ops} pphlo ops")
    return 0
