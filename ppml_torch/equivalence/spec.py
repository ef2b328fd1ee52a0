"""A model and its example inputs from text: ``pkg.mod:Factory float32[4,30]`` or a HF folder.

The syntax of ``ppml-torch export-stablehlo`` (``--module pkg.mod:attr``, ``--input
[name=]dtype[shape]``), parsed by :mod:`ppml_torch.converters.torch_to_stablehlo`; this module
adds what checking needs: any HF architecture from a folder, default and random inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..converters.torch_to_stablehlo import (
    InputSpec,
    load_factory_module,
    parse_input_spec,
    parse_kwargs,
)
from .inputs import EquivalenceError

__all__ = ["InputSpec", "default_inputs", "load_hf_dir", "load_model", "make_inputs", "parse_input"]


def parse_input(spec: str) -> InputSpec:
    """``'input_ids=int64[1,8]'`` -> ``InputSpec('input_ids', 'int64', (1, 8))``."""
    return parse_input_spec(spec)


def is_hf_dir(target: str) -> bool:
    return Path(target).is_dir()


def load_model(target: str, kwargs: str | None = None, seed: int = 0) -> tuple[Any, str]:
    """The torch module (eval mode) for ``target`` and a short description."""
    if is_hf_dir(target):
        if kwargs:
            raise EquivalenceError("--kwargs applies to package.module:Factory targets only")
        return load_hf_dir(target)
    if ":" not in target:
        raise EquivalenceError(
            f"{target!r} is neither package.module:Factory nor a checkpoint folder"
        )
    module, _ = load_factory_module(target, parse_kwargs(kwargs), seed=seed)
    return module, target


def load_hf_dir(path: str) -> tuple[Any, str]:
    """A ``save_pretrained`` folder, by the class its config names, without network access."""
    import transformers

    if not (Path(path) / "config.json").is_file():
        raise EquivalenceError(f"{path} has no config.json; pass a save_pretrained folder")
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        raise EquivalenceError(f"{path}: cannot read config.json: {e}") from None
    arch = (getattr(config, "architectures", None) or ["AutoModel"])[0]
    cls = getattr(transformers, arch, None) or transformers.AutoModel
    try:
        module = cls.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise EquivalenceError(f"{path}: cannot load {arch}: {str(e).splitlines()[0]}") from None
    if hasattr(module.config, "use_cache"):
        module.config.use_cache = False  # compare the outputs, not a key/value cache
    return module.eval().float(), f"{arch} from {path}"


def default_inputs(module: Any) -> list[InputSpec]:
    """For a HF model without ``--input``: ``input_ids=int64[1,8]``."""
    if hasattr(module, "config") and hasattr(module.config, "vocab_size"):
        return [InputSpec("input_ids", "int64", (1, 8))]
    raise EquivalenceError("give the example inputs, e.g. float32[4,30]")


def make_inputs(
    specs: list[InputSpec], seed: int = 0, int_high: int = 2
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Random example tensors: floats from N(0, 1), integers uniform in [0, int_high)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    args, kwargs = [], {}
    for s in specs:
        dtype = getattr(torch, s.dtype)
        if dtype.is_floating_point:
            t = torch.randn(s.shape, generator=gen).to(dtype)
        elif dtype == torch.bool:
            t = torch.ones(s.shape, dtype=torch.bool)
        else:
            t = torch.randint(0, max(int_high, 1), s.shape, generator=gen, dtype=dtype)
        if s.name is None:
            if kwargs:
                raise EquivalenceError("positional inputs come before name=dtype[shape] inputs")
            args.append(t)
        else:
            kwargs[s.name] = t
    return tuple(args), kwargs
