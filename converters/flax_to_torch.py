"""Bring Flax parameters written by ``torch_to_flax.py`` (or trained since) back to torch.

The torch module is rebuilt from the spec stored in the params file, the weights are
checked key by key and shape by shape, then loaded with ``load_state_dict(strict=True)``.
Output: a state_dict file (``--out``: ``.safetensors`` or ``.pt``/``.pth``/``.bin``), or
for a HF GPT-2 a ``save_pretrained`` directory (``--hf-out``).

``--module package.module:factory [--kwargs JSON]`` loads into your own module instead
(its ``state_dict`` names are kept, e.g. ``fc1.weight`` rather than ``0.weight``); its
config is compared with the stored spec first::

    python converters/flax_to_torch.py --params trained.safetensors --out mlp.pt
    python converters/flax_to_torch.py --params gpt2.msgpack --hf-out gpt2-back/
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
    p.add_argument("--params", required=True, help="Flax params (.safetensors or .msgpack)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="state_dict file (.safetensors, .pt, .pth, .bin)")
    out.add_argument("--hf-out", help="directory for save_pretrained (HF GPT-2 params only)")
    p.add_argument("--module", help="package.module:factory_or_class: load into this module")
    p.add_argument("--kwargs", help="with --module: keyword arguments as a JSON object")
    return p


def _module_from(path: str, kwargs: str | None) -> Any:
    if os.getcwd() not in sys.path:  # like `python -m`: modules beside the caller are found
        sys.path.insert(0, os.getcwd())
    mod_name, _, attr = path.partition(":")
    if not attr:
        raise SystemExit(f"--module {path!r}: write package.module:factory_or_class")
    factory: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        factory = getattr(factory, part)
    text = kwargs or "{}"
    return factory(**json.loads(Path(text).read_text() if text.endswith(".json") else text))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ppml_torch.converters.flax import check_spec, family_of, files, from_flax

    variables, spec = files.load_flax(args.params)
    if args.module:
        module = _module_from(args.module, args.kwargs)
        check_spec(spec, family_of(module).spec(module))
    else:
        module = files.build(spec)
    from_flax(variables, module)

    if args.hf_out:
        if spec["family"] != "hf_gpt2":
            raise SystemExit(f"--hf-out needs HF GPT-2 params; these are {spec['family']!r}")
        module.save_pretrained(args.hf_out)
        print(f"{spec['family']} -> {args.hf_out}")
    else:
        files.save_torch_state_dict(args.out, module.state_dict())
        print(f"{spec['family']} ({len(module.state_dict())} tensors) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
