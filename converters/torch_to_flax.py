"""Move a torch model's weights into Flax parameters (``.safetensors`` or ``.msgpack``).

The model comes from one of:

* ``--hf-dir DIR``: a HF GPT-2 saved with ``save_pretrained`` -> ``FlaxGPT2LMHeadModel``
  params; with ``--as-nanogpt`` it is loaded into ``ppml_torch.models.nanogpt.GPT`` first
  and written as Flax nanoGPT params;
* ``--nanogpt-config JSON`` (a ``GPTConfig`` as JSON text or a ``.json`` file) + ``--checkpoint``;
* ``--mlp 30,15,8,1 [--activation relu] [--final-activation sigmoid]`` + ``--checkpoint``
  (an ``nn.Sequential``: keys ``0.weight``, ``0.bias``, ``2.weight``...);
* ``--module package.module:factory [--kwargs JSON]`` + optional ``--checkpoint``: any module
  ``ppml_torch.to_flax`` accepts.

``--checkpoint`` is a state_dict in ``.safetensors`` or ``.pt``/``.pth``/``.bin`` (read with
``weights_only=True``).  The output file also holds the model's spec, which
``flax_to_torch.py`` reads to rebuild the torch module::

    python converters/torch_to_flax.py --mlp 30,15,8,1 --checkpoint mlp.pt --out mlp.safetensors
    python converters/torch_to_flax.py --hf-dir gpt2-dir --out gpt2.msgpack
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf-dir", help="HF GPT-2 directory (config.json + weights)")
    src.add_argument("--nanogpt-config", help="GPTConfig as JSON text or a .json file")
    src.add_argument("--mlp", help="layer widths of an nn.Sequential MLP, e.g. 30,15,8,1")
    src.add_argument("--module", help="package.module:factory_or_class returning the nn.Module")
    p.add_argument("--as-nanogpt", action="store_true", help="with --hf-dir: convert as nanoGPT")
    p.add_argument("--kwargs", help="with --module: keyword arguments as a JSON object")
    p.add_argument("--activation", default="relu", help="with --mlp: hidden activation")
    p.add_argument("--final-activation", help="with --mlp: activation after the last layer")
    p.add_argument("--checkpoint", help="state_dict file (.safetensors, .pt, .pth, .bin)")
    p.add_argument("--out", required=True, help="output Flax params (.safetensors or .msgpack)")
    return p


def _json_arg(text: str) -> dict[str, Any]:
    value = json.loads(Path(text).read_text() if text.endswith(".json") else text)
    if not isinstance(value, dict):
        raise SystemExit(f"expected a JSON object, got {text!r}")
    return value


def load_module(args: argparse.Namespace):
    """The torch module with its weights, in eval mode."""
    from ppml_torch.converters.flax import files, mlp

    if args.hf_dir:
        if args.checkpoint:
            raise SystemExit(
                "--checkpoint does not go with --hf-dir: the weights are in the directory"
            )
        if args.as_nanogpt:
            from ppml_torch.models.nanogpt import GPT

            return GPT.from_pretrained(args.hf_dir).eval()
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel.from_pretrained(args.hf_dir, local_files_only=True).eval()

    if args.nanogpt_config:
        from ppml_torch.models.nanogpt import GPT, GPTConfig

        module = GPT(GPTConfig(**_json_arg(args.nanogpt_config)))
    elif args.mlp:
        widths = [int(w) for w in args.mlp.split(",")]
        spec = {
            "family": "mlp",
            "widths": widths,
            "activation": args.activation,
            "final_activation": args.final_activation,
        }
        module = mlp.build(spec)
    else:
        if os.getcwd() not in sys.path:  # like `python -m`: modules beside the caller are found
            sys.path.insert(0, os.getcwd())
        mod_name, _, attr = args.module.partition(":")
        if not attr:
            raise SystemExit(f"--module {args.module!r}: write package.module:factory_or_class")
        factory: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
        module = factory(**(_json_arg(args.kwargs) if args.kwargs else {}))
    if args.checkpoint:
        from ppml_torch.converters.flax.common import load_into_torch

        load_into_torch(
            module,
            files.load_torch_state_dict(args.checkpoint),
            what=f"--checkpoint {args.checkpoint}",
        )
    elif not args.module:
        raise SystemExit("--checkpoint is needed with --nanogpt-config and --mlp")
    return module.eval()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ppml_torch.converters.flax import files, to_flax

    module = load_module(args)
    converted = to_flax(module)
    files.save_flax(args.out, converted.params, converted.extras["spec"])
    print(f"{converted!r} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
