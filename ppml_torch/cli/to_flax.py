"""``ppml-torch to-flax``: a torch model's weights -> a Flax params file (with its spec).

The work is :func:`ppml_torch.converters.flax.jobs.torch_to_flax_file`; this module only
parses and prints.  ``converters/torch_to_flax.py`` runs the same command.
"""

from __future__ import annotations

import argparse

HELP = "move a torch model's weights into Flax params (.safetensors or .msgpack)"
EPILOG = """\
examples:
  ppml-torch to-flax --hf-dir gpt2-dir --out gpt2.msgpack
  ppml-torch to-flax --hf-dir gpt2-dir --as-nanogpt --out nano.safetensors
  ppml-torch to-flax --nanogpt-config cfg.json --checkpoint gpt.pt --out nano.safetensors
  ppml-torch to-flax --mlp 30,15,8,1 --checkpoint mlp.pt --out mlp.safetensors
  ppml-torch to-flax --module mypkg.models:make --kwargs '{"width": 8}' --out m.safetensors

Checkpoints are read with safetensors or torch.load(weights_only=True).  The output also
holds the model's spec, from which `ppml-torch from-flax` rebuilds the torch module."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf-dir", help="HF GPT-2 save_pretrained folder (config.json + weights)")
    src.add_argument("--nanogpt-config", help="nanoGPT GPTConfig as JSON text or a .json file")
    src.add_argument("--mlp", help="layer widths of an nn.Sequential MLP, e.g. 30,15,8,1")
    src.add_argument("--module", help="package.module:factory_or_class returning the nn.Module")
    p.add_argument(
        "--as-nanogpt", action="store_true", help="with --hf-dir: load it into nanoGPT's GPT"
    )
    p.add_argument("--kwargs", help="with --module: keyword arguments as a JSON object")
    p.add_argument("--activation", help="with --mlp: hidden activation (default relu)")
    p.add_argument("--final-activation", help="with --mlp: activation after the last layer")
    p.add_argument("--checkpoint", help="state_dict file (.safetensors, .pt, .pth, .bin)")
    p.add_argument("--out", required=True, help="output Flax params (.safetensors or .msgpack)")


def run(args: argparse.Namespace) -> int:
    from ..converters.flax.jobs import torch_to_flax_file

    converted = torch_to_flax_file(
        args.out,
        hf_dir=args.hf_dir,
        as_nanogpt=args.as_nanogpt,
        nanogpt_config=args.nanogpt_config,
        mlp=args.mlp,
        activation=args.activation,
        final_activation=args.final_activation,
        module=args.module,
        kwargs=args.kwargs,
        checkpoint=args.checkpoint,
    )
    print(f"{converted!r} -> {args.out}")
    return 0
