"""The two JAX programs of cached decoding, per route: prefill and one decode step.

* ``prefill(params, idx (B, T))``: the prompt at positions ``0..T-1`` into an empty cache;
* ``decode(params, idx (B, 1), k_cache, v_cache, pos)``: one token at public position ``pos``.

Both return ``(logits (B, vocab) of the last position, k_cache, v_cache)``.  Graph route:
the nanoGPT weights in :class:`~ppml_torch.models.nanogpt_cache.CachedGPT`, converted by
``ppml_torch.convert`` (once per shape: prefill ``(B, T)``, decode ``(B, 1)``).  Flax route:
the same weights moved by ``ppml_torch.to_flax`` into
:class:`~ppml_torch.models.flax_nanogpt_cache.CachedGPT`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ppml_torch.models.nanogpt import GPT, GPTConfig


@dataclasses.dataclass(frozen=True, eq=False)
class StepPrograms:
    route: str
    config: GPTConfig
    batch: int
    prompt_len: int
    max_len: int  # cache slots
    params: Any  # what the weights' owner puts (numpy pytree; tied weights once); None once
    # the Decoder has shared it (its plaintext copy dropped)
    approx: bool
    prefill: Callable[..., Any]
    decode: Callable[..., Any] | None  # None when no token is fed back (1 new token)

    @property
    def cache_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.n_layer, self.batch, c.n_head, self.max_len, c.n_embd // c.n_head)


def build(
    gpt: GPT, route: str, batch: int, prompt_len: int, max_len: int, approx: bool = False
) -> StepPrograms:
    """Prefill and decode programs for ``gpt`` (a nanoGPT ``GPT``) on the chosen route.

    ``approx``: MPC-friendly approximations that change the numbers (PUMA's piecewise GeLU).
    """
    if route == "graph":
        return _graph(gpt, batch, prompt_len, max_len, approx)
    return _flax(gpt, batch, prompt_len, max_len, approx)


def _graph(gpt: GPT, batch: int, prompt_len: int, max_len: int, approx: bool) -> StepPrograms:
    import jax.numpy as jnp
    import torch

    from ppml_torch.converters.fx import convert
    from ppml_torch.models.nanogpt_cache import CachedGPT

    was_training = gpt.training  # CachedGPT shares gpt's modules: restore the user's mode
    cached = CachedGPT(gpt, max_len, approx).eval()
    kz, vz = cached.empty_cache(batch)
    shape = tuple(kz.shape)
    with (
        _restore_mode(gpt, was_training),
        warnings.catch_warnings(),
    ):  # torch's pytree LeafSpec FutureWarning (third-party noise)
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
        )
        pre = convert(
            cached, (torch.zeros((batch, prompt_len), dtype=torch.long), kz, vz, torch.tensor(0))
        )
        dec = None
        if max_len > prompt_len:
            dec = convert(
                cached,
                (torch.zeros((batch, 1), dtype=torch.long), kz, vz, torch.tensor(prompt_len)),
            )
    # tied weights (lm_head.weight is transformer.wte.weight): put once, under the first name
    aliases = {k: g[0] for g in pre.extras["tied"] for k in g[1:]}
    params = {k: np.asarray(v) for k, v in pre.params.items() if k not in aliases}
    # the programs need the converted models' functions and checks, not their copies of the
    # weights (the decode conversion made a second one): keep weightless models
    pre = _weightless(pre)
    dec = _weightless(dec) if dec is not None else None

    def full(p):
        return {**p, **{k: p[c] for k, c in aliases.items()}}

    def prefill(p, idx):
        zeros = jnp.zeros(shape, jnp.float32)
        return tuple(pre.apply(full(p), idx, zeros, zeros, jnp.int32(0)))

    def decode(p, idx, kc, vc, pos):
        return tuple(dec.apply(full(p), idx, kc, vc, pos))

    return StepPrograms(
        "graph",
        gpt.config,
        batch,
        prompt_len,
        max_len,
        params,
        approx,
        prefill,
        decode if dec else None,
    )


def _weightless(model: Any) -> Any:
    """``model`` (a ConvertedModel) with its params as shapes only: ``apply`` works as before."""
    from ppml_torch.model import from_shipping_state, shipping_state

    return from_shipping_state(shipping_state(model))


@contextlib.contextmanager
def _restore_mode(module: Any, training: bool):
    try:
        yield
    finally:
        module.train(training)


def _flax(gpt: GPT, batch: int, prompt_len: int, max_len: int, approx: bool) -> StepPrograms:
    import jax
    import jax.numpy as jnp

    from ppml_torch.converters.flax import to_flax
    from ppml_torch.models.flax_nanogpt_cache import CachedGPT, cut_positions, kernels_out_in

    fm = to_flax(gpt)
    model = CachedGPT(gpt.config, max_len, approx)
    shape = model.cache_shape(batch)
    # kernels (out, in): the layout CachedGPT multiplies fast under SPU (a copy, made once);
    # the position table cut to the cache's max_len slots (the only positions read)
    params = cut_positions(kernels_out_in(fm.params), max_len)
    params = jax.tree_util.tree_map(np.ascontiguousarray, params)

    def prefill(p, idx):
        zeros = jnp.zeros(shape, jnp.float32)
        return model.apply(p, idx, zeros, zeros, jnp.int32(0))

    def decode(p, idx, kc, vc, pos):
        return model.apply(p, idx, kc, vc, pos)

    return StepPrograms(
        "flax",
        gpt.config,
        batch,
        prompt_len,
        max_len,
        params,
        approx,
        prefill,
        decode if max_len > prompt_len else None,
    )
