"""Convert a torch model to StableHLO text (``.mlir``) and its weights (``.safetensors``).

The model comes from one of:

* ``--module package.module:factory_or_class`` (+ ``--kwargs '{"json": ...}'``), built with
  ``--seed``, optionally loading ``--checkpoint file.pt`` (a ``torch.save``d state_dict,
  loaded with ``weights_only=True``);
* ``--hf-dir DIR``: a Hugging Face causal LM saved with ``save_pretrained`` (tested on GPT-2).

Each ``--input`` gives one example input as ``dtype[shape]`` (positional) or
``name=dtype[shape]`` (keyword), e.g. ``--input float32[16,30]`` or
``--input input_ids=int64[1,8]``.  The model is converted by the graph route
(``ppml_torch.converters.fx.convert``, ``--index-lowering`` choosing the form of gathers on
input indices) and lowered by ``to_stablehlo``; the program's inputs are
the parameters (sorted by torch name) followed by the example inputs, as listed in the
``.json`` manifest written beside the ``.mlir``.  64-bit inputs become 32-bit (JAX runs 32-bit).

    python converters/torch_to_stablehlo.py --module torch.nn:Linear --kwargs '{"in_features": 30, "out_features": 1}' \
        --input float32[16,30] --out-dir out/
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

_SPEC_RE = re.compile(r"^(?:(?P<name>[A-Za-z_]\w*)=)?(?P<dtype>\w+)\[(?P<shape>[\d,\s]*)\]$")


def parse_input(spec: str) -> tuple[str | None, str, tuple[int, ...]]:
    """``'name=int64[1,8]'`` -> ``('name', 'int64', (1, 8))``; the name is optional."""
    m = _SPEC_RE.match(spec.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad --input {spec!r}: write dtype[shape] or name=dtype[shape], e.g. float32[16,30]"
        )
    shape = tuple(int(d) for d in m["shape"].replace(" ", "").split(",") if d)
    return m["name"], m["dtype"], shape


def import_object(path: str) -> Any:
    """``'package.module:attr'`` -> the attribute."""
    if ":" not in path:
        raise SystemExit(f"--module {path!r}: write package.module:factory_or_class")
    mod_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: modules beside the caller are found
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_module(args: argparse.Namespace):
    """The torch module to convert, in eval mode, and a short description of it."""
    import torch

    if args.hf_dir:
        from transformers import AutoModelForCausalLM

        module = AutoModelForCausalLM.from_pretrained(args.hf_dir, local_files_only=True)
        module.config.use_cache = False  # logits only, no key/value cache in the outputs
        return module.eval(), f"{type(module).__name__} from {args.hf_dir}"

    factory = import_object(args.module)
    kwargs = json.loads(args.kwargs) if args.kwargs else {}
    if not isinstance(kwargs, dict):
        raise SystemExit(f"--kwargs must be a JSON object, got {args.kwargs!r}")
    torch.manual_seed(args.seed)
    module = factory(**kwargs)
    if not isinstance(module, torch.nn.Module):
        raise SystemExit(f"{args.module} returned a {type(module).__name__}, not a torch.nn.Module")
    source = type(module).__name__
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        module.load_state_dict(state, strict=True)
        source += f" from {args.checkpoint}"
    return module.eval(), source


def example_inputs(specs, seed: int):
    """Torch example tensors (random normal floats, zero integers) and their JAX stand-ins."""
    import jax
    import numpy as np
    import torch

    from ppml_torch.dtypes import jax_dtype_name

    gen = torch.Generator().manual_seed(seed)
    t_args, t_kwargs, j_args, j_kwargs = [], {}, [], {}
    for name, dtype, shape in specs:
        tdtype = getattr(torch, dtype, None)
        if not isinstance(tdtype, torch.dtype):
            raise SystemExit(f"--input: unknown dtype {dtype!r} (use a torch dtype name)")
        if tdtype.is_floating_point:
            t = torch.randn(shape, generator=gen).to(tdtype)
        else:
            t = torch.zeros(shape, dtype=tdtype)
        np_dtype = np.dtype(jax_dtype_name(dtype))  # the one 64->32-bit table
        j = jax.ShapeDtypeStruct(shape, np_dtype)
        if name is None:
            t_args.append(t)
            j_args.append(j)
        else:
            t_kwargs[name] = t
            j_kwargs[name] = j
    return tuple(t_args), t_kwargs, tuple(j_args), j_kwargs


def _describe(tree: Any, prefix: str) -> list[dict[str, Any]]:
    """Name, shape and dtype of every leaf, in JAX's flattening order."""
    import jax
    import numpy as np

    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out.append(
            {
                "name": prefix + jax.tree_util.keystr(path),
                "shape": list(np.shape(leaf)),
                "dtype": str(np.dtype(leaf.dtype)),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="torch_to_stablehlo",
        description="Torch model -> StableHLO (.mlir) + weights (.safetensors, torch names)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--module", help="package.module:factory_or_class building the nn.Module")
    src.add_argument("--hf-dir", help="a Hugging Face causal-LM directory (save_pretrained)")
    p.add_argument("--kwargs", help="JSON object of keyword arguments for --module")
    p.add_argument("--checkpoint", help="torch.save'd state_dict for --module (weights_only)")
    p.add_argument(
        "--input",
        action="append",
        type=parse_input,
        required=True,
        metavar="[NAME=]DTYPE[SHAPE]",
        help="one example input, repeat for more: float32[16,30] or input_ids=int64[1,8]",
    )
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--name", help="output file stem (default: the module's class name)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and example inputs")
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
        help="also compile the StableHLO with SPU (all inputs secret) to check it is accepted",
    )
    args = p.parse_args(argv)
    if args.checkpoint and not args.module:
        p.error("--checkpoint goes with --module")
    if args.kwargs and not args.module:
        p.error("--kwargs goes with --module")

    import jax
    import numpy as np
    from safetensors.numpy import save_file

    from ppml_torch.converters.fx import convert
    from ppml_torch.converters.fx.stablehlo import compile_stablehlo, to_stablehlo

    module, source = load_module(args)
    t_args, t_kwargs, j_args, j_kwargs = example_inputs(args.input, args.seed)
    model = convert(module, t_args, t_kwargs, index_lowering=args.index_lowering)
    text = to_stablehlo(model, *j_args, **j_kwargs)
    out_struct = jax.eval_shape(model.apply, model.params, *j_args, **j_kwargs)

    stem = args.name or type(module).__name__
    args.out_dir.mkdir(parents=True, exist_ok=True)
    mlir_path = args.out_dir / f"{stem}.mlir"
    weights_path = args.out_dir / f"{stem}.safetensors"
    manifest_path = args.out_dir / f"{stem}.json"
    mlir_path.write_text(text)
    weights = {k: np.ascontiguousarray(v) for k, v in model.params_to_torch(model.params).items()}
    save_file(weights, str(weights_path))
    inputs = (
        _describe(model.params, "params")
        + _describe(j_args, "args")
        + _describe(j_kwargs, "kwargs")
    )
    manifest = {
        "source": source,
        "mlir": mlir_path.name,
        "weights": weights_path.name,
        "inputs": inputs,  # the order of the StableHLO main function's arguments
        "outputs": _describe(out_struct, "out"),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")

    print(
        f"{source}: {len(inputs)} inputs ({len(weights)} weights), {len(text)} chars of StableHLO"
    )
    print(f"wrote {mlir_path}, {weights_path}, {manifest_path}")
    if args.spu_check:
        n_out = len(jax.tree_util.tree_leaves(out_struct))
        exe = compile_stablehlo(text, ["secret"] * len(inputs), n_outputs=n_out, name=stem)
        ops = len(re.findall(r"= pphlo\.", exe.code.decode()))
        print(f"SPU accepted the StableHLO: {ops} pphlo ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
