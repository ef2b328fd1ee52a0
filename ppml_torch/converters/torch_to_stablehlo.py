"""A torch model to StableHLO (``.mlir``), its weights (``.safetensors``) and a manifest.

The work behind ``ppml-torch export-stablehlo`` and ``converters/torch_to_stablehlo.py``:

* :func:`parse_input_spec` -- ``float32[16,30]`` or ``input_ids=int64[1,8]``;
* :func:`load_factory_module` -- ``package.module:factory`` (+ JSON kwargs, seed, checkpoint);
* :func:`load_hf_causal_lm` -- a Hugging Face causal LM saved with ``save_pretrained``;
* :func:`export_torch` -- convert (graph route), lower to StableHLO, write the three files.

Every bad input is a :class:`~ppml_torch.errors.PpmlError` of one line naming the fix, raised
before the conversion starts where it can be known that early.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..dtypes import jax_dtype_name
from ..errors import InputFileError
from ..stablehlo import (
    ExportError,
    check_stem,
    describe_leaves,
    prepare_out_dir,
    to_stablehlo,
    write_export,
)

_SPEC_RE = re.compile(r"^(?:(?P<name>[A-Za-z_]\w*)=)?(?P<dtype>\w+)\[(?P<shape>[\d,\s]*)\]$")
_INT_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64")
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
DTYPES = _FLOAT_DTYPES + _INT_DTYPES


class InputSpec(NamedTuple):
    """One example input: keyword ``name`` (``None`` when positional), dtype name and shape."""

    name: str | None
    dtype: str
    shape: tuple[int, ...]


def parse_input_spec(spec: str) -> InputSpec:
    """``'input_ids=int64[1,8]'`` -> ``InputSpec('input_ids', 'int64', (1, 8))``."""
    m = _SPEC_RE.match(spec.strip())
    if not m:
        raise ExportError(
            f"bad input spec {spec!r}: write dtype[shape] or name=dtype[shape], "
            "e.g. float32[16,30] or input_ids=int64[1,8]"
        )
    if m["dtype"] not in DTYPES:
        raise ExportError(f"input spec {spec!r}: unknown dtype {m['dtype']!r}; use one of {DTYPES}")
    parts = m["shape"].replace(" ", "").split(",")
    if any(p == "" for p in parts) and parts != [""]:
        raise ExportError(f"input spec {spec!r}: empty dimension; write e.g. float32[16,30]")
    return InputSpec(m["name"], m["dtype"], tuple(int(d) for d in parts if d))


def import_object(
    path: str, *, error: type[Exception] = ExportError, label: str = "module path"
) -> Any:
    """``'package.module:attr'`` -> the attribute (the current folder is searched, as by ``-m``).

    Bad paths raise ``error`` with one line starting ``{label} {path!r}:``.
    """
    mod_name, sep, attr = path.partition(":")
    if not sep or not mod_name or not attr:
        raise error(f"{label} {path!r}: write package.module:factory_or_class")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise error(
            f"{label} {path!r}: cannot import {e.name!r}; check the spelling, or run from "
            "the folder that holds it"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise error(f"{label} {path!r}: {mod_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise error(f"{label} {path!r}: {attr} is not callable; name a class or factory")
    return obj


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """JSON object of keyword arguments for a factory (``None`` -> ``{}``)."""
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportError(
            f"kwargs {text!r} are not valid JSON ({e.msg}); write e.g. '{{\"hidden\": 15}}'"
        ) from None
    if not isinstance(kwargs, dict):
        raise ExportError(f"kwargs must be a JSON object like '{{\"hidden\": 15}}', got {text!r}")
    return kwargs


def load_factory_module(
    module_path: str,
    kwargs: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    checkpoint: str | Path | None = None,
):
    """``factory(**kwargs)`` after ``torch.manual_seed(seed)``, in eval mode, and its description.

    ``checkpoint`` is a ``torch.save``d state_dict (or ``{"state_dict": ...}``), loaded with
    ``weights_only=True`` and ``strict=True``.
    """
    import torch

    factory = import_object(module_path)
    if checkpoint is not None:
        _check_file(Path(checkpoint))
    torch.manual_seed(seed)
    try:
        module = factory(**(kwargs or {}))
    except TypeError as e:
        raise ExportError(f"{module_path}(**{kwargs or {}}) failed: {e}; fix --kwargs") from None
    except Exception as e:  # noqa: BLE001 - the user's factory: its error, in one line
        text = " ".join(str(e).split())[:200]
        raise ExportError(
            f"{module_path}(**{kwargs or {}}) raised {type(e).__name__}: {text}; fix the factory "
            "or its --kwargs"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ExportError(
            f"{module_path} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    source = type(module).__name__
    if checkpoint is not None:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            raise InputFileError(
                f"{checkpoint}: not a readable torch checkpoint ({type(e).__name__}); it is "
                "truncated, or not a state_dict saved with torch.save"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise InputFileError(
                f"{checkpoint}: holds a {type(state).__name__}, not a state_dict; save "
                "model.state_dict()"
            )
        missing, unexpected = _key_mismatch(module, state)
        if missing or unexpected:
            raise InputFileError(
                f"{checkpoint} does not fit {source}: missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}; check --kwargs or the checkpoint"
            )
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise InputFileError(f"{checkpoint} does not fit {source}: {_first_line(e)}") from None
        source += f" from {checkpoint}"
    return module.eval(), source


def _key_mismatch(module: Any, state: dict[str, Any]) -> tuple[list[str], list[str]]:
    want = set(module.state_dict())
    return sorted(want - set(state)), sorted(set(state) - want)


def load_hf_causal_lm(hf_dir: str | Path):
    """A ``save_pretrained`` causal LM, offline, cache off (logits only), and its description."""
    from transformers import AutoModelForCausalLM

    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise InputFileError(f"{hf_dir}: no such folder; pass a save_pretrained directory")
    if not (hf_dir / "config.json").is_file():
        raise InputFileError(
            f"{hf_dir}: no config.json in it; pass a folder written by save_pretrained"
        )
    try:
        module = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, ...
        raise InputFileError(
            f"{hf_dir}: cannot load a causal LM from it ({_first_line(e)}); check the folder "
            "holds config.json and the weights of save_pretrained"
        ) from None
    module.config.use_cache = False  # logits only, no key/value cache in the outputs
    return module.eval(), f"{type(module).__name__} from {hf_dir}"


def example_inputs(specs: Sequence[InputSpec], seed: int = 0):
    """Torch example tensors (random normal floats, zero integers) and their JAX stand-ins.

    Returns ``(torch args, torch kwargs, jax args, jax kwargs)``; the JAX stand-ins are
    ``jax.ShapeDtypeStruct`` with 64-bit types made 32-bit (JAX runs 32-bit).
    """
    import jax
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(seed)
    t_args, t_kwargs, j_args, j_kwargs = [], {}, [], {}
    for name, dtype, shape in specs:
        tdtype = getattr(torch, dtype)
        if tdtype.is_floating_point:
            t = torch.randn(shape, generator=gen).to(tdtype)
        else:
            t = torch.zeros(shape, dtype=tdtype)
        j = jax.ShapeDtypeStruct(shape, np.dtype(jax_dtype_name(dtype)))  # the one 64->32-bit table
        if name is None:
            t_args.append(t)
            j_args.append(j)
        else:
            if name in t_kwargs:
                raise ExportError(f"input {name!r} is given twice; give each keyword input once")
            t_kwargs[name] = t
            j_kwargs[name] = j
    return tuple(t_args), t_kwargs, tuple(j_args), j_kwargs


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_torch` wrote."""

    source: str
    mlir_path: Path
    weights_path: Path
    manifest_path: Path
    n_inputs: int
    n_weights: int
    n_chars: int

    def describe(self) -> str:
        return (
            f"{self.source}: {self.n_inputs} inputs ({self.n_weights} weights), "
            f"{self.n_chars} chars of StableHLO\n"
            f"wrote {self.mlir_path}, {self.weights_path}, {self.manifest_path}"
        )


def export_torch(
    module: Any,
    specs: Sequence[InputSpec],
    out_dir: str | Path,
    *,
    name: str | None = None,
    source: str | None = None,
    seed: int = 0,
    index_lowering: str = "auto",
) -> ExportResult:
    """Convert ``module`` by the graph route and write ``NAME.mlir/.safetensors/.json``.

    The program's inputs are the parameters (sorted by torch name) followed by the example
    inputs, as listed in the manifest; ``NAME`` defaults to the module's class name.  The
    output folder is checked before the (slow) conversion.
    """
    import jax

    from .fx import convert

    if not specs:
        raise ExportError("no example inputs; give at least one, e.g. float32[16,30]")
    name = check_stem(name or type(module).__name__)
    prepare_out_dir(out_dir)
    t_args, t_kwargs, j_args, j_kwargs = example_inputs(specs, seed)
    model = convert(module, t_args, t_kwargs, index_lowering=index_lowering)  # type: ignore[arg-type]
    text = to_stablehlo(model, *j_args, **j_kwargs)
    out_struct = jax.eval_shape(model.apply, model.params, *j_args, **j_kwargs)
    weights = model.params_to_torch(model.params)
    inputs = (
        describe_leaves(model.params, "params")
        + describe_leaves(j_args, "args")
        + describe_leaves(j_kwargs, "kwargs")
    )
    source = source or type(module).__name__
    paths = write_export(
        out_dir, name, text, weights, inputs, describe_leaves(out_struct, "out"), source
    )
    return ExportResult(source, *paths, len(inputs), len(weights), len(text))


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputFileError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty; save it again")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
