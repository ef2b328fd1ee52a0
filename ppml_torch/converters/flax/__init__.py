"""Flax weight transfer: a torch module's weights moved into a hand-written Flax model.

``to_flax(module)`` returns a :class:`~ppml_torch.model.ConvertedModel` (route ``"flax"``)
whose ``params`` are Flax variables ``{"params": ...}``; ``from_flax(params, module)``
loads Flax parameters (e.g. trained under MPC) back into the torch module.  The trip
torch -> Flax -> torch is bit-exact.

One file per model family, each with the same five functions (``matches``,
``weight_map``, ``to_flax``, ``spec``, ``build``); :data:`FAMILIES` is the table
``to_flax`` looks modules up in, most specific first:

=========  =====================================  ===============================  ===========
family     torch module                           Flax model                       ``apply``
=========  =====================================  ===============================  ===========
hf_gpt2    ``transformers.GPT2LMHeadModel``       ``FlaxGPT2LMHeadModel``          ``{"logits"}``
nanogpt    ``ppml_torch.models.nanogpt.GPT``      ``models/flax_nanogpt.GPT``      logits
mlp        Linear + one activation kind chain     ``models/mlp.MLP``               outputs
=========  =====================================  ===============================  ===========

To add a family: write ``<family>.py`` with those five functions and add it to
:data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .common import WeightMapError, load_into_torch

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.model import ConvertedModel

__all__ = ["FAMILIES", "WeightMapError", "family_of", "from_flax", "to_flax"]


def _families() -> dict[str, ModuleType]:
    from . import hf_gpt2, mlp, nanogpt

    return {"hf_gpt2": hf_gpt2, "nanogpt": nanogpt, "mlp": mlp}


FAMILIES = ("hf_gpt2", "nanogpt", "mlp")  # lookup order of to_flax


def family_of(module: nn.Module) -> ModuleType:
    """The family file whose ``matches(module)`` is true; an error naming unknown layers if none."""
    families = _families()
    for name in FAMILIES:
        if families[name].matches(module):
            return families[name]
    from .mlp import unknown_layers

    unknown = unknown_layers(module)
    listed = ", ".join(f"{n} ({t})" for n, t in unknown) or "none found"
    raise WeightMapError(
        f"to_flax: no Flax weight map for {type(module).__name__}; layers no map knows: "
        f"{listed}.  Supported: HF GPT2LMHeadModel, ppml_torch.models.nanogpt.GPT, and MLPs "
        f"of nn.Linear + one activation kind.  For other models use ppml_torch.convert "
        f"(graph route), or add a family in ppml_torch/converters/flax/"
    )


def to_flax(module: nn.Module) -> ConvertedModel:
    """Move ``module``'s weights into the matching Flax model (see the table above).

    Every key and shape is checked before anything is copied.  The torch module is not
    changed.  ``apply`` runs in float32 (JAX's default); ``extras["spec"]`` describes
    the model (family and config), ``extras["weight_map"]`` is the map used.
    """
    import torch

    bad = [
        k
        for k, v in module.state_dict().items()
        if v.is_floating_point() and v.dtype != torch.float32
    ]
    if bad:
        raise WeightMapError(
            f"to_flax: JAX runs in float32 here; these tensors are not: {bad[:8]}"
            f"{' ...' if len(bad) > 8 else ''}.  Call module.float() first"
        )
    cm = family_of(module).to_flax(module)
    vocab = (cm.extras.get("spec") or {}).get("config", {}).get("vocab_size")
    if vocab is not None and not cm.inputs:  # token ids: checked before sharing (check_inputs)
        import dataclasses

        from ppml_torch.model import InputSpec

        ids = InputSpec("input_ids", 0, index_size=int(vocab), used_by="the token embedding")
        cm = dataclasses.replace(cm, inputs=(ids,))
    return cm


def from_flax(params: Any, module: nn.Module) -> nn.Module:
    """Load Flax ``params`` into ``module`` (``load_state_dict(strict=True)``); returns it.

    ``params``: Flax variables ``{"params": ...}`` as ``to_flax`` made them (possibly
    trained), or the :class:`ConvertedModel` itself.  Keys and shapes are checked against
    both the Flax model for ``module``'s config and ``module.state_dict()`` before
    anything is copied.  Settings that change no shape (e.g. ``n_head``) cannot be read
    from bare arrays: pass the ``ConvertedModel`` to have its spec compared too.
    """
    from ppml_torch.model import ConvertedModel

    family = family_of(module)
    if isinstance(params, ConvertedModel):
        check_spec(params.extras.get("spec"), family.spec(module))
        params = params.params
    wmap, shapes = family.weight_map(module)[:2]
    arrays = dict(wmap.flax_to_torch(params, shapes))
    if family.__name__.endswith("hf_gpt2"):  # mask buffers an older transformers saved
        sd = module.state_dict()
        arrays.update({k: sd[k].numpy() for k in family.mask_buffer_keys(module)})
    load_into_torch(module, arrays, what=f"from_flax({type(module).__name__})")
    return module


def check_spec(saved: Mapping[str, Any] | None, module_spec: Mapping[str, Any]) -> None:
    """Raise unless the spec the params were made with equals the target module's."""
    if saved is None:
        return
    if saved.get("family") != module_spec.get("family"):
        raise WeightMapError(
            f"from_flax: params are for a {saved.get('family')!r} model, the module is "
            f"{module_spec.get('family')!r}"
        )
    a, b = _flat(saved), _flat(module_spec)
    diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    if diff:
        raise WeightMapError(
            "from_flax: the params were made for another config; nothing was copied.  "
            "Differences (params vs module): "
            + ", ".join(f"{k}: {x!r} vs {y!r}" for k, (x, y) in diff.items())
            + ".  Build the torch module with the params' config"
        )


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out
