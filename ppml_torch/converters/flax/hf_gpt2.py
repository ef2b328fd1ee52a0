"""HF ``GPT2LMHeadModel`` (torch) <-> ``transformers.FlaxGPT2LMHeadModel`` parameters.

The Flax model is built from the same ``GPT2Config`` (``_do_init=False``: no random
weights are made).  ``apply(params, input_ids, attention_mask=None)`` returns
``{"logits": (B, T, vocab)}``, the same structure the graph route gives for a HF model.

A module in training mode runs Flax's dropout (``train=True``): the embedding, residual and
MLP dropouts are ``nn.Dropout`` modules and take their masks from the seed's stream
(:mod:`ppml_torch.dropout`).  FlaxGPT2's *attention* dropout is drawn inside transformers'
code with ``jax.random`` (whose bits SPU does not reproduce), so ``attn_pdrop > 0`` in training
mode is refused when the model is traced, naming the graph route, which runs it.

Weight map, for each block ``N`` (HF's ``Conv1D`` stores ``(in, out)``, HF's
``FlaxConv1D`` ``(out, in)``: the four Conv1D weights are transposed)::

    transformer.wte.weight              -> transformer/wte/embedding
    transformer.wpe.weight              -> transformer/wpe/embedding
    transformer.h.N.ln_1.weight / bias  -> transformer/h/N/ln_1/scale / bias
    transformer.h.N.attn.c_attn.weight  -> transformer/h/N/attn/c_attn/kernel   transposed
    transformer.h.N.attn.c_attn.bias    -> transformer/h/N/attn/c_attn/bias
    transformer.h.N.attn.c_proj.*       -> transformer/h/N/attn/c_proj/*        weight transposed
    transformer.h.N.ln_2.*              -> transformer/h/N/ln_2/*
    transformer.h.N.mlp.c_fc.*          -> transformer/h/N/mlp/c_fc/*           weight transposed
    transformer.h.N.mlp.c_proj.*        -> transformer/h/N/mlp/c_proj/*         weight transposed
    transformer.ln_f.weight / bias      -> transformer/ln_f/scale / bias
    lm_head.weight                      -> tied to transformer.wte.weight (no Flax array)
                                           or lm_head/kernel, transposed, if untied

Causal-mask buffers ``transformer.h.N.attn.bias`` / ``attn.masked_bias``: in transformers
4.57 they are non-persistent (not in ``state_dict``); if an older version saved them they
are the transfer's ``kept_buffers``: skipped on the way to Flax and left as the module has
them on the way back.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import jax
import jax.numpy as jnp
import torch.nn as nn

import ppml_torch.dropout as dropout

from .common import WeightMap, WeightMapError, flax_shapes
from .registry import Family, Transfer

CONV1D_WEIGHTS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
MASK_BUFFERS = ("attn.bias", "attn.masked_bias")
# config values the Flax GPT-2 does not implement: (field, value that Flax computes)
FLAX_CONFIG = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}


# the GPT2Config fields that decide shapes and numbers (others: defaults)
SPEC_FIELDS = (
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "layer_norm_epsilon",
    "tie_word_embeddings",
)


def matches(module: nn.Module) -> bool:
    if "transformers" not in sys.modules:  # not imported: cannot be a HF model (and stays cheap)
        return False
    from transformers import GPT2LMHeadModel

    return isinstance(module, GPT2LMHeadModel)


def mask_buffer_keys(module: nn.Module) -> list[str]:
    """The causal-mask buffers this module saves in its ``state_dict`` (none in 4.57)."""
    n = module.config.n_layer
    names = {f"transformer.h.{i}.{b}" for i in range(n) for b in MASK_BUFFERS}
    return sorted(names & set(module.state_dict()))


def transfer(module: nn.Module) -> Transfer:
    """The key map, the Flax shapes and the (weightless) ``FlaxGPT2LMHeadModel``."""
    from transformers import FlaxGPT2LMHeadModel

    config = module.config
    bad = {k: getattr(config, k) for k, v in FLAX_CONFIG.items() if getattr(config, k, v) != v}
    if bad:
        raise WeightMapError(
            f"to_flax(GPT2LMHeadModel): FlaxGPT2LMHeadModel does not implement {bad}; "
            f"it computes {FLAX_CONFIG}.  Use ppml_torch.convert (graph route) for this model"
        )
    pairs: dict[str, tuple[str, ...]] = {
        "transformer.wte.weight": ("transformer", "wte", "embedding"),
        "transformer.wpe.weight": ("transformer", "wpe", "embedding"),
        "transformer.ln_f.weight": ("transformer", "ln_f", "scale"),
        "transformer.ln_f.bias": ("transformer", "ln_f", "bias"),
    }
    transposed: set[str] = set()
    for i in range(config.n_layer):
        t, f = f"transformer.h.{i}", ("transformer", "h", str(i))
        for ln in ("ln_1", "ln_2"):
            pairs[f"{t}.{ln}.weight"] = (*f, ln, "scale")
            pairs[f"{t}.{ln}.bias"] = (*f, ln, "bias")
        for layer in CONV1D_WEIGHTS:
            path = (*f, *layer.split("."))
            pairs[f"{t}.{layer}.weight"] = (*path, "kernel")
            pairs[f"{t}.{layer}.bias"] = (*path, "bias")
            transposed.add(f"{t}.{layer}.weight")
    tied: dict[str, str] = {}
    if config.tie_word_embeddings:
        tied["lm_head.weight"] = "transformer.wte.weight"
    else:
        pairs["lm_head.weight"] = ("lm_head", "kernel")
        transposed.add("lm_head.weight")  # nn.Linear (vocab, C) -> Dense (C, vocab)

    # transformers 4.x says its Flax classes go away in v5; the lock pins transformers<5
    flax_log = logging.getLogger("transformers.modeling_flax_utils")
    level = flax_log.level
    flax_log.setLevel(logging.ERROR)
    try:
        hf = FlaxGPT2LMHeadModel(config, _do_init=False, dtype=jnp.float32)
    finally:
        flax_log.setLevel(level)
    shapes = flax_shapes(lambda: {"params": hf.init_weights(jax.random.PRNGKey(0), (1, 1))})

    sites = training_dropout(module)
    attn_pdrop = float(config.attn_pdrop) if sites else 0.0

    def apply_fn(
        params: Any, input_ids: jax.Array, attention_mask: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        if not sites:
            out = hf(input_ids, attention_mask=attention_mask, params=params["params"], train=False)
            return {"logits": out.logits}
        if attn_pdrop:
            raise dropout.DropoutError(
                f"route flax: FlaxGPT2LMHeadModel's attention dropout (attn_pdrop="
                f"{attn_pdrop}) is drawn with jax.random inside transformers, which SPU "
                "does not reproduce; use route='graph' (it runs it), or set attn_pdrop=0"
            )
        dropout.require(sites[0][1], sites[0][0])
        # train=True: Flax's nn.Dropout calls run, their masks from the stream (the key given
        # here is never read: the stream's interceptor answers every dropout call)
        out = hf(
            input_ids,
            attention_mask=attention_mask,
            params=params["params"],
            train=True,
            dropout_rng=jax.random.PRNGKey(0),
        )
        return {"logits": out.logits}

    return Transfer(
        weight_map=WeightMap(pairs, frozenset(transposed), tied, what="GPT2LMHeadModel"),
        flax_shapes=shapes,
        apply_fn=apply_fn,
        spec=spec(module),
        kept_buffers=frozenset(mask_buffer_keys(module)),
        source=type(module).__name__,
        extras={"flax_model": hf, dropout.EXTRA: sites},
    )


def training_dropout(module: nn.Module) -> tuple[tuple[str, float], ...]:
    """The dropout sites of ``module`` that run (training mode, ``p > 0``), in run order."""
    c = module.config
    if not module.training:
        return ()
    sites = [("transformer.drop: Dropout", float(c.embd_pdrop))]
    for i in range(c.n_layer):
        t = f"transformer.h.{i}"
        sites += [(f"{t}.attn.attn_dropout: Dropout", float(c.attn_pdrop))]
        sites += [(f"{t}.attn.resid_dropout: Dropout", float(c.resid_pdrop))]
        sites += [(f"{t}.mlp.dropout: Dropout", float(c.resid_pdrop))]
    return tuple((where, p) for where, p in sites if p)


def spec(module: nn.Module) -> dict[str, Any]:
    """What rebuilds the torch module: the family and its ``GPT2Config`` as a dict."""
    config = module.config
    return {"family": "hf_gpt2", "config": {k: getattr(config, k) for k in SPEC_FIELDS}}


def build(spec: dict[str, Any]) -> nn.Module:
    """A (randomly initialised) ``GPT2LMHeadModel`` from :func:`spec`'s output."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(**spec["config"])).eval()


FAMILY = Family(
    name="hf_gpt2",
    torch_model="HF GPT2LMHeadModel",
    flax_model="transformers.FlaxGPT2LMHeadModel",
    matches=matches,
    transfer=transfer,
    build=build,
)
