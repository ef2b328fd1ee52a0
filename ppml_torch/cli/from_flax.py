"""``ppml-torch from-flax``: a Flax params file (as to-flax wrote it, or trained) -> torch.

The work is :func:`ppml_torch.converters.flax.jobs.flax_file_to_torch`; this module only
parses and prints.  ``converters/flax_to_torch.py`` runs the same command.
"""

from __future__ import annotations

import argparse

HELP = "load Flax params (from to-flax, or trained) back into torch"
EPILOG = """\
examples:
  ppml-torch from-flax --params mlp.safetensors --out mlp_back.pt
  ppml-torch from-flax --params gpt2.msgpack --hf-out gpt2-back/
  ppml-torch from-flax --params m.safetensors --module mypkg.models:make --kwargs '{"width": 8}' --out m.pt

The torch module is rebuilt from the spec stored in the params file (or made by --module,
whose config is compared with that spec); keys and shapes are checked before anything is
copied, then loaded with load_state_dict(strict=True)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--params", required=True, help="Flax params (.safetensors or .msgpack)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="state_dict file (.safetensors, .pt, .pth, .bin)")
    out.add_argument("--hf-out", help="folder for save_pretrained (HF GPT-2 params only)")
    p.add_argument("--module", help="package.module:factory_or_class: load into this module")
    p.add_argument("--kwargs", help="with --module: keyword arguments as a JSON object")


def run(args: argparse.Namespace) -> int:
    from ..converters.flax.jobs import flax_file_to_torch

    result = flax_file_to_torch(
        args.params, out=args.out, hf_out=args.hf_out, module=args.module, kwargs=args.kwargs
    )
    print(f"{result.spec['family']} ({result.n_tensors} tensors) -> {result.path}")
    return 0
