"""Flax weight transfer: a torch module's weights moved into a hand-written Flax model.

``to_flax(module)`` returns a :class:`~ppml_torch.model.ConvertedModel` (route ``"flax"``)
whose ``params`` are Flax variables ``{"params": ...}``; ``from_flax(params, module)``
loads Flax parameters (e.g. trained under MPC) back into the torch module.  The trip
torch -> Flax -> torch is bit-exact.

One file per model family, each ending in ``FAMILY = Family(...)`` (see
:mod:`.registry`: how to recognise a module, the key map with its transposed and tied
keys, the buffers Flax has no array for, the Flax model, the spec).  ``to_flax`` and
``from_flax`` look the module up in that one table, most specific first, and treat every
family alike:

=========  =====================================  ===============================  ===========
family     torch module                           Flax model                       ``apply``
=========  =====================================  ===============================  ===========
hf_gpt2    ``transformers.GPT2LMHeadModel``       ``FlaxGPT2LMHeadModel``          ``{"logits"}``
nanogpt    ``ppml_torch.models.nanogpt.GPT``      ``models/flax_nanogpt.GPT``      logits
hf_resnet  ``transformers.ResNetModel``           ``models/flax_cnn.ResNet``       HF's outputs
resnet     ``ppml_torch.models.resnet.ResNet``    ``models/flax_cnn.ResNet``       logits
cnn        ``nn.Sequential`` of Conv/BN/pool/...  ``models/flax_cnn.CNN``          outputs
mlp        Linear + one activation kind chain     ``models/mlp.MLP``               outputs
=========  =====================================  ===============================  ===========

CNN families take torch's ``(N, C, H, W)`` inputs (channels-last inside, handled by the Flax
twin) and hold batch norm's running statistics in the ``batch_stats`` collection:
``params`` is then ``{"params": ..., "batch_stats": ...}`` (eval mode only).

Files with params and spec: :mod:`.files`; the ``to-flax`` / ``from-flax`` jobs of the
command line and the ``converters/`` scripts: :mod:`.jobs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ppml_torch.weights import WeightMapError, load_into_torch

from .registry import FAMILY_MODULES, Family, Transfer, families, family_of

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.model import ConvertedModel

__all__ = [
    "FAMILY_MODULES",
    "Family",
    "Transfer",
    "WeightMapError",
    "check_spec",
    "families",
    "family_of",
    "from_flax",
    "to_flax",
]


GRAPH_ROUTE_HINT = (
    "the graph route converts it: route='graph' in fit, predict, calibrate and "
    "check_equivalence, or ppml_torch.convert(module, example_inputs)"
)


def to_flax(module: nn.Module) -> ConvertedModel:
    """Move ``module``'s weights into the matching Flax model (see the table above).

    Every key and shape is checked before anything is copied.  The torch module is not
    changed.  ``apply`` runs in float32 (JAX's default); ``extras["spec"]`` describes
    the model (family and config), ``extras["weight_map"]`` is the map used.
    """
    import jax
    import jax.numpy as jnp
    import torch

    from ppml_torch.model import ConvertedModel, InputSpec

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
    try:
        t = family_of(module).transfer(module)
    except WeightMapError as e:  # a refusal of this route names the other one
        if GRAPH_ROUTE_HINT in str(e):
            raise
        raise WeightMapError(f"{e}; {GRAPH_ROUTE_HINT}") from None
    wmap, shapes = t.weight_map, t.flax_shapes
    sd = {k: v for k, v in module.state_dict().items() if k not in t.kept_buffers}
    variables = jax.tree_util.tree_map(jnp.asarray, wmap.torch_to_flax(sd, shapes))
    inputs: tuple[InputSpec, ...] = ()
    vocab = (t.spec or {}).get("config", {}).get("vocab_size")
    if vocab is not None:  # token ids: checked on the owner's side before sharing (check_inputs)
        inputs = (InputSpec("input_ids", 0, index_size=int(vocab), used_by="the token embedding"),)
    return ConvertedModel(
        params=variables,
        apply_fn=t.apply_fn,
        params_to_torch=lambda params: wmap.flax_to_torch(params, shapes),
        route="flax",
        source=t.source,
        extras={**t.extras, "weight_map": wmap, "spec": t.spec},
        inputs=inputs,
    )


def from_flax(params: Any, module: nn.Module) -> nn.Module:
    """Load Flax ``params`` into ``module`` (``load_state_dict(strict=True)``); returns it.

    ``params``: Flax variables ``{"params": ...}`` as ``to_flax`` made them (possibly
    trained), or the :class:`ConvertedModel` itself.  Keys and shapes are checked against
    both the Flax model for ``module``'s config and ``module.state_dict()`` before
    anything is copied.  Settings that change no shape (e.g. ``n_head``) cannot be read
    from bare arrays: pass the ``ConvertedModel`` to have its spec compared too.
    """
    from ppml_torch.model import ConvertedModel

    t = family_of(module).transfer(module)
    if isinstance(params, ConvertedModel):
        check_spec(params.extras.get("spec"), t.spec)
        params = params.params
    arrays = dict(t.weight_map.flax_to_torch(params, t.flax_shapes))
    if t.kept_buffers:
        sd = module.state_dict()
        arrays.update({k: sd[k] for k in t.kept_buffers})
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
