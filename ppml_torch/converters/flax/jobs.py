"""The two file jobs of the Flax route, as ``ppml-torch to-flax`` / ``from-flax`` run them.

* :func:`torch_to_flax_file`: a torch model (a HF GPT-2 folder, a nanoGPT config, MLP
  widths or your own factory, plus a checkpoint) -> a Flax params file with its spec;
* :func:`flax_file_to_torch`: a Flax params file -> a torch ``state_dict`` file, or a HF
  ``save_pretrained`` folder, through the module its spec (or your factory) builds.

The command line (:mod:`ppml_torch.cli.to_flax`, :mod:`ppml_torch.cli.from_flax`) and the
``converters/`` scripts only parse arguments and print.  Every bad input (missing, empty,
truncated or foreign files, bad JSON, unknown names, an unwritable output, an output on top
of an input) is a one-line :class:`~ppml_torch.errors.PpmlError`, raised before the
expensive part where it can be known then.  Weights are read with safetensors or
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppml_torch.errors import InputFileError
from ppml_torch.weights import load_into_torch

from . import files

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.model import ConvertedModel

__all__ = [
    "FlaxToTorchResult",
    "flax_file_to_torch",
    "import_factory",
    "json_object",
    "load_hf_dir",
    "load_torch_module",
    "parse_widths",
    "torch_to_flax_file",
]

PathLike = str | os.PathLike[str]


def json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object from JSON text, or from a file if ``text`` ends in ``.json``."""
    if text.endswith(".json"):
        path = files.check_input_file(text, what)
        text_or_file = f"{what} file {text!r}"
        with files.reading(path, what, "write it as UTF-8 JSON"):
            text = path.read_text()
    else:
        text_or_file = what
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(
            f"{text_or_file} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            f"write a JSON object, e.g. '{{\"n_layer\": 2}}'"
        ) from e
    if not isinstance(value, dict):
        raise InputFileError(
            f"{text_or_file} must be a JSON object ({{...}}), got {type(value).__name__}"
        )
    return value


def parse_widths(text: str) -> list[int]:
    """``"30,15,8,1"`` -> ``[30, 15, 8, 1]`` (at least two positive integers)."""
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        widths = []
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise InputFileError(
            f"--mlp {text!r}: give the layer widths as positive integers, inputs first, "
            f"e.g. 30,15,8,1"
        )
    return widths


def import_factory(path: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``"package.module:factory_or_class"`` called with ``kwargs``; must give an ``nn.Module``.

    Like ``python -m``, modules in the current folder are found (it is put on ``sys.path``).
    """
    import torch.nn as nn

    from ..torch_to_stablehlo import import_object

    obj = import_object(path, error=InputFileError, label="--module")
    try:
        module = obj(**(kwargs or {}))
    except Exception as e:  # noqa: BLE001 - the user's factory; its message names the problem
        raise InputFileError(
            f"--module {path!r} with --kwargs {json.dumps(kwargs or {})} raised "
            f"{type(e).__name__}: {e}; fix the keyword arguments"
        ) from e
    if not isinstance(module, nn.Module):
        raise InputFileError(
            f"--module {path!r} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def load_hf_dir(path: PathLike, *, as_nanogpt: bool = False) -> nn.Module:
    """A HF GPT-2 ``save_pretrained`` folder as ``GPT2LMHeadModel`` (or nanoGPT ``GPT``).

    No network access; ``config.json`` is checked (``model_type`` ``gpt2``) before any
    weights are read.
    """
    folder = Path(path)
    what = f"--hf-dir {os.fspath(path)!r}"
    if not folder.is_dir():
        raise InputFileError(f"{what}: no such folder (give a save_pretrained folder)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputFileError(f"{what}: no config.json (give a save_pretrained folder)")
    config = json_object(str(config_file), "config.json")
    if config.get("model_type") != "gpt2":
        raise InputFileError(
            f"{what}: model_type {config.get('model_type')!r}; only GPT-2 (gpt2) has a Flax "
            f"family here.  Use ppml-torch export-stablehlo (graph route) for other models"
        )
    weights = [n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
    if not weights:
        raise InputFileError(f"{what}: no model.safetensors or pytorch_model.bin")
    for name in weights:
        files.check_input_file(folder / name, "weights file")
    fix = "save the model again with save_pretrained"
    if as_nanogpt:
        from ppml_torch.models.nanogpt import GPT

        with files.reading(folder, "HF GPT-2 folder", fix):
            return GPT.from_pretrained(folder).eval()
    from transformers import GPT2LMHeadModel

    with files.reading(folder, "HF GPT-2 folder", fix):
        return GPT2LMHeadModel.from_pretrained(folder, local_files_only=True).eval()


def load_torch_module(
    *,
    hf_dir: PathLike | None = None,
    as_nanogpt: bool = False,
    nanogpt_config: str | None = None,
    mlp: str | None = None,
    activation: str | None = None,
    final_activation: str | None = None,
    module: str | None = None,
    kwargs: str | None = None,
    checkpoint: PathLike | None = None,
) -> nn.Module:
    """The torch module with its weights, in eval mode, from exactly one source.

    ``hf_dir`` (+ ``as_nanogpt``): a HF GPT-2 folder; ``nanogpt_config`` (JSON text or a
    ``.json`` file of a ``GPTConfig``) + ``checkpoint``; ``mlp`` (widths ``"30,15,8,1"``,
    ``activation`` default relu, ``final_activation``) + ``checkpoint``: an
    ``nn.Sequential`` with keys ``0.weight``, ``2.weight``...; ``module``
    (``package.module:factory``, ``kwargs`` as JSON) + optional ``checkpoint``.
    """
    _check_source(
        hf_dir, as_nanogpt, nanogpt_config, mlp, activation, final_activation, module, kwargs
    )
    if hf_dir is not None:
        if checkpoint is not None:
            raise InputFileError(
                "--checkpoint does not go with --hf-dir: the weights are in the folder"
            )
        return load_hf_dir(hf_dir, as_nanogpt=as_nanogpt)
    if checkpoint is None and module is None:
        raise InputFileError("--checkpoint is needed with --nanogpt-config and --mlp")
    if checkpoint is not None:  # cheap checks first: the file is read after the model is built
        files.check_suffix(checkpoint, files.TORCH_SUFFIXES, "torch checkpoint")
        files.check_input_file(checkpoint, "torch checkpoint")

    if nanogpt_config is not None:
        from ppml_torch.models.nanogpt import GPT, GPTConfig

        cfg = json_object(nanogpt_config, "--nanogpt-config")
        names = {f.name for f in dataclasses.fields(GPTConfig)}
        if set(cfg) - names:
            raise InputFileError(
                f"--nanogpt-config: unknown GPTConfig fields {sorted(set(cfg) - names)}; "
                f"known: {', '.join(sorted(names))}"
            )
        try:
            torch_module = GPT(GPTConfig(**cfg))
        except (TypeError, ValueError) as e:
            raise InputFileError(f"--nanogpt-config: {e}") from e
    elif mlp is not None:
        from .mlp import FAMILY

        spec = {
            "family": "mlp",
            "widths": parse_widths(mlp),
            "activation": activation or "relu",
            "final_activation": final_activation,
        }
        torch_module = FAMILY.build(spec)
    else:
        assert module is not None
        torch_module = import_factory(module, json_object(kwargs, "--kwargs") if kwargs else {})
    if checkpoint is not None:
        load_into_torch(
            torch_module,
            files.load_torch_state_dict(checkpoint),
            what=f"--checkpoint {os.fspath(checkpoint)}",
        )
    return torch_module.eval()


def _check_source(
    hf_dir: Any,
    as_nanogpt: bool,
    nanogpt_config: Any,
    mlp: Any,
    activation: Any,
    final_activation: Any,
    module: Any,
    kwargs: Any,
) -> None:
    given = {
        "--hf-dir": hf_dir,
        "--nanogpt-config": nanogpt_config,
        "--mlp": mlp,
        "--module": module,
    }
    named = [k for k, v in given.items() if v is not None]
    if len(named) != 1:
        raise InputFileError(
            f"give exactly one model source (--hf-dir, --nanogpt-config, --mlp or --module), "
            f"got {', '.join(named) or 'none'}"
        )
    for opt, value, owner, owner_opt in (
        ("--as-nanogpt", as_nanogpt or None, hf_dir, "--hf-dir"),
        ("--activation", activation, mlp, "--mlp"),
        ("--final-activation", final_activation, mlp, "--mlp"),
        ("--kwargs", kwargs, module, "--module"),
    ):
        if value is not None and owner is None:
            raise InputFileError(f"{opt} goes only with {owner_opt}")


def torch_to_flax_file(out: PathLike, **source: Any) -> ConvertedModel:
    """Write the Flax params (and spec) of the torch model ``source`` names to ``out``.

    ``out``: ``.safetensors`` or ``.msgpack``, checked (suffix, folder, writable, not an
    input file) before the model is loaded.  ``source``: the keyword arguments of
    :func:`load_torch_module`.  Returns the :class:`ConvertedModel`.
    """
    from . import to_flax

    files.check_suffix(out, files.FLAX_SUFFIXES, "--out Flax params file")
    inputs = [source[k] for k in ("checkpoint", "nanogpt_config") if source.get(k) is not None]
    if source.get("hf_dir") is not None:
        inputs += [Path(source["hf_dir"]) / n for n in ("model.safetensors", "pytorch_model.bin")]
    files.check_output_file(out, "--out", inputs=tuple(inputs))
    torch_module = load_torch_module(**source)
    converted = to_flax(torch_module)
    files.save_flax(out, converted.params, converted.extras["spec"])
    return converted


@dataclasses.dataclass(frozen=True)
class FlaxToTorchResult:
    """What :func:`flax_file_to_torch` wrote: the spec read, the loaded module, the path."""

    spec: dict[str, Any]
    module: nn.Module
    path: Path

    @property
    def n_tensors(self) -> int:
        return len(self.module.state_dict())


def flax_file_to_torch(
    params: PathLike,
    *,
    out: PathLike | None = None,
    hf_out: PathLike | None = None,
    module: str | None = None,
    kwargs: str | None = None,
) -> FlaxToTorchResult:
    """Load a Flax params file into torch and write it to ``out`` or ``hf_out``.

    The torch module is rebuilt from the spec in the file, or made by ``module``
    (``package.module:factory`` with ``kwargs`` JSON), whose config is then compared with
    the spec.  Keys and shapes are checked before anything is copied
    (``load_state_dict(strict=True)``).  ``out``: a state_dict file (``.safetensors``,
    ``.pt``, ``.pth``, ``.bin``); ``hf_out``: a ``save_pretrained`` folder (models that
    have ``save_pretrained``, i.e. HF GPT-2).
    """
    from . import check_spec, family_of, from_flax

    if (out is None) == (hf_out is None):
        raise InputFileError("give exactly one of --out (a state_dict file) and --hf-out")
    if kwargs is not None and module is None:
        raise InputFileError("--kwargs only goes with --module")
    files.check_suffix(params, files.FLAX_SUFFIXES, "--params Flax params file")
    files.check_input_file(params, "--params Flax params file")
    if out is not None:
        files.check_suffix(out, files.TORCH_SUFFIXES, "--out torch checkpoint")
        target = files.check_output_file(out, "--out", inputs=(params,))
    else:
        assert hf_out is not None
        target = Path(hf_out)
        if target.exists() and not target.is_dir():
            raise InputFileError(f"--hf-out {os.fspath(hf_out)!r} is a file; give a folder")
        parent = target if target.is_dir() else target.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise InputFileError(
                f"--hf-out {os.fspath(hf_out)!r}: folder {os.fspath(parent)!r} does not exist "
                f"or is not writable"
            )

    variables, spec = files.load_flax(params)
    if module is not None:
        torch_module = import_factory(module, json_object(kwargs, "--kwargs") if kwargs else {})
        check_spec(spec, family_of(torch_module).transfer(torch_module).spec)
    else:
        torch_module = files.build(spec, holds_bytes=files.arrays_bytes(variables))
    save_pretrained = getattr(torch_module, "save_pretrained", None)
    if hf_out is not None and not callable(save_pretrained):
        raise InputFileError(
            f"--hf-out writes a HF save_pretrained folder; these params are a "
            f"{spec['family']!r} model ({type(torch_module).__name__}); use --out FILE"
        )
    from_flax(variables, torch_module)

    if hf_out is not None:
        with files.writing(hf_out, "--hf-out folder"):
            save_pretrained(os.fspath(hf_out))
    else:
        files.save_torch_state_dict(target, torch_module.state_dict())
    return FlaxToTorchResult(spec=spec, module=torch_module, path=target)
