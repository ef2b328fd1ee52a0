"""nanoGPT (``ppml_torch.models.nanogpt.GPT``) <-> its Flax twin (``models/flax_nanogpt.py``).

``apply(params, idx)`` returns the logits array ``(B, T, vocab)`` (a plain array, like
the torch ``GPT.forward``; HF GPT-2 gives ``{"logits": ...}`` like HF's ModelOutput).  A module
in training mode with ``config.dropout > 0`` runs the Flax model's dropout, at the same sites
as torch, with masks from the seed's stream (:mod:`ppml_torch.dropout`).

Weight map, for each block ``N`` (``nn.Linear`` is ``(out, in)``, ``nn.Dense``
``(in, out)``: every Linear weight is transposed)::

    transformer.wte.weight              -> transformer/wte/embedding
    transformer.wpe.weight              -> transformer/wpe/embedding
    transformer.h.N.ln_1.weight / bias  -> transformer/h_N/ln_1/scale / bias
    transformer.h.N.attn.c_attn.weight  -> transformer/h_N/attn/c_attn/kernel   transposed
    transformer.h.N.attn.c_attn.bias    -> transformer/h_N/attn/c_attn/bias
    transformer.h.N.attn.c_proj.*       -> transformer/h_N/attn/c_proj/*        weight transposed
    transformer.h.N.ln_2.*              -> transformer/h_N/ln_2/*
    transformer.h.N.mlp.c_fc.*          -> transformer/h_N/mlp/c_fc/*           weight transposed
    transformer.h.N.mlp.c_proj.*        -> transformer/h_N/mlp/c_proj/*         weight transposed
    transformer.ln_f.weight / bias      -> transformer/ln_f/scale / bias
    lm_head.weight                      -> tied to transformer.wte.weight (wte.attend in Flax)

The causal mask (``attn.mask``) is a non-persistent buffer: in neither tree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import torch.nn as nn

import ppml_torch.dropout as dropout
from ppml_torch.models import flax_nanogpt
from ppml_torch.models.nanogpt import GPT, GPTConfig

from .common import WeightMap, flax_shapes
from .registry import Family, Transfer

LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def matches(module: nn.Module) -> bool:
    return isinstance(module, GPT)


def transfer(module: GPT) -> Transfer:
    """The key map, the Flax shapes and the Flax ``GPT`` for this module's config."""
    config = module.config
    ln_leaf = {"weight": "scale", "bias": "bias"}
    pairs: dict[str, tuple[str, ...]] = {
        "transformer.wte.weight": ("transformer", "wte", "embedding"),
        "transformer.wpe.weight": ("transformer", "wpe", "embedding"),
    }
    transposed: set[str] = set()
    params = ("weight", "bias") if config.bias else ("weight",)
    for leaf in params:
        pairs[f"transformer.ln_f.{leaf}"] = ("transformer", "ln_f", ln_leaf[leaf])
    for i in range(config.n_layer):
        t, f = f"transformer.h.{i}", ("transformer", f"h_{i}")
        for ln in ("ln_1", "ln_2"):
            for leaf in params:
                pairs[f"{t}.{ln}.{leaf}"] = (*f, ln, ln_leaf[leaf])
        for layer in LINEARS:
            path = (*f, *layer.split("."))
            pairs[f"{t}.{layer}.weight"] = (*path, "kernel")
            transposed.add(f"{t}.{layer}.weight")
            if config.bias:
                pairs[f"{t}.{layer}.bias"] = (*path, "bias")
    tied = {"lm_head.weight": "transformer.wte.weight"}

    flax_gpt = flax_nanogpt.GPT(config)
    shapes = flax_shapes(lambda: flax_gpt.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))

    sites = training_dropout(module)
    deterministic = not sites

    def apply_fn(params: Any, idx: jax.Array) -> jax.Array:
        if sites:
            dropout.require(sites[0][1], sites[0][0])
        return flax_gpt.apply(params, idx, deterministic=deterministic)

    return Transfer(
        weight_map=WeightMap(pairs, frozenset(transposed), tied, what="nanoGPT GPT"),
        flax_shapes=shapes,
        apply_fn=apply_fn,
        spec=spec(module),
        source="nanoGPT GPT",
        extras={"flax_module": flax_gpt, dropout.EXTRA: sites},
    )


def training_dropout(module: GPT) -> tuple[tuple[str, float], ...]:
    """The dropout sites of ``module`` that run (training mode, ``p > 0``), in run order."""
    p = float(module.config.dropout)
    if not (module.training and p):
        return ()
    sites = [("transformer.drop: Dropout", p)]
    for i in range(module.config.n_layer):
        t = f"transformer.h.{i}"
        sites += [(f"{t}.attn.attn_dropout: Dropout", p), (f"{t}.attn.resid_dropout: Dropout", p)]
        sites.append((f"{t}.mlp.dropout: Dropout", p))
    return tuple(sites)


def spec(module: GPT) -> dict[str, Any]:
    return {"family": "nanogpt", "config": dataclasses.asdict(module.config)}


def build(spec: dict[str, Any]) -> GPT:
    return GPT(GPTConfig(**spec["config"])).eval()


FAMILY = Family(
    name="nanogpt",
    torch_model="ppml_torch.models.nanogpt.GPT",
    flax_model="ppml_torch.models.flax_nanogpt.GPT",
    matches=matches,
    transfer=transfer,
    build=build,
)
