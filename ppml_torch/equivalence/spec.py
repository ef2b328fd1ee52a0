"""A model and its example inputs from text: ``pkg.mod:Factory float32[4,30]`` or a HF folder.

The same syntax as ``converters/torch_to_stablehlo.py`` (``--module pkg.mod:attr``,
``--input [name=]dtype[shape]``).  (A shared library version of that syntax is being written;
this small parser is the equivalence check's own until then.)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .check import EquivalenceError

_INPUT_RE = re.compile(r"^(?:(?P<name>[A-Za-z_]\w*)=)?(?P<dtype>[a-z]\w*)\[(?P<shape>[\d,\s]*)\]$")
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str | None  # None: positional
    dtype: str
    shape: tuple[int, ...]


def parse_input(spec: str) -> InputSpec:
    """``'input_ids=int64[1,8]'`` -> ``InputSpec('input_ids', 'int64', (1, 8))``."""
    m = _INPUT_RE.match(spec.strip())
    if not m:
        raise EquivalenceError(
            f"input {spec!r}: write dtype[shape] or name=dtype[shape], e.g. float32[4,30]"
        )
    import torch

    if not isinstance(getattr(torch, m["dtype"], None), torch.dtype):
        raise EquivalenceError(f"input {spec!r}: unknown dtype {m['dtype']!r} (a torch dtype name)")
    shape = tuple(int(d) for d in m["shape"].replace(" ", "").split(",") if d)
    return InputSpec(m["name"], m["dtype"], shape)


def is_hf_dir(target: str) -> bool:
    return Path(target).is_dir()


def import_object(target: str) -> Any:
    """``'package.module:attr'`` -> the attribute (modules beside the caller are found)."""
    if not _TARGET_RE.match(target):
        raise EquivalenceError(
            f"{target!r} is neither package.module:Factory nor a checkpoint folder"
        )
    mod_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise EquivalenceError(f"cannot import {mod_name!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EquivalenceError(f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_model(target: str, kwargs: str | None = None, seed: int = 0) -> tuple[Any, str]:
    """The torch module (eval mode) for ``target`` and a short description."""
    import torch

    if is_hf_dir(target):
        if kwargs:
            raise EquivalenceError("--kwargs applies to package.module:Factory targets only")
        return load_hf_dir(target)
    factory = import_object(target)
    try:
        kw = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as e:
        raise EquivalenceError(f"--kwargs is not JSON: {e}") from None
    if not isinstance(kw, dict):
        raise EquivalenceError(f"--kwargs must be a JSON object, got {kwargs!r}")
    torch.manual_seed(seed)
    try:
        module = factory(**kw)
    except TypeError as e:
        raise EquivalenceError(f"{target}(**{kw}) failed: {e}") from None
    if not isinstance(module, torch.nn.Module):
        raise EquivalenceError(
            f"{target} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module.eval(), f"{target}"


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
