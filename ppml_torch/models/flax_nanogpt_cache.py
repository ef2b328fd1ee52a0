"""The Flax twin of ``nanogpt_cache.py``: the Flax nanoGPT run with a fixed-length KV cache.

:class:`CachedGPT` has exactly the parameter tree of ``flax_nanogpt.GPT``
(``transformer/h_0/attn/c_attn/kernel``, ...), so the params ``to_flax`` makes for a torch
nanoGPT run it unchanged.  ``CachedGPT(config, max_len).apply(params, idx, k_cache, v_cache,
pos)`` returns ``(logits (B, vocab) of the last new position, k_cache, v_cache)`` with caches
``(n_layer, B, n_head, max_len, head_size)``.

``pos`` is public under MPC: the slots written, the attention mask and the position
embedding index derive from it only, so the cache update is a select on a public mask and
the same compiled program serves every position.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ppml_torch.models.flax_nanogpt import MLP, LayerNorm, causal_softmax
from ppml_torch.models.nanogpt import GPTConfig


def write_cache(cache: jax.Array, new: jax.Array, rel: jax.Array, written: jax.Array) -> jax.Array:
    """``cache`` (B, nh, S, hs) with slots ``written`` (S,) taken from ``new`` (B, nh, T, hs)."""
    T = new.shape[2]
    full = new if T == 1 else jnp.take(new, jnp.clip(rel, 0, T - 1), axis=2)  # (B, nh, S, hs)
    return jnp.where(written[:, None], full, cache)


class CachedAttention(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x, k_cache, v_cache, rel, written, visible):
        cfg = self.config
        B, T, C = x.shape
        nh, hs = cfg.n_head, C // cfg.n_head  # heads, head size
        qkv = nn.Dense(3 * C, use_bias=cfg.bias, name="c_attn")(x)  # (B, T, 3C)
        q, k, v = jnp.split(qkv, 3, axis=2)  # 3 x (B, T, C)
        q = q.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        k = k.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        v = v.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        kc = write_cache(k_cache, k, rel, written)  # (B, nh, S, hs)
        vc = write_cache(v_cache, v, rel, written)  # (B, nh, S, hs)
        att = (q @ kc.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
        att = causal_softmax(att, visible[None, None])  # (B, nh, T, S)
        y = (att @ vc).transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
        return nn.Dense(C, use_bias=cfg.bias, name="c_proj")(y), kc, vc


class CachedBlock(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x, k_cache, v_cache, rel, written, visible):
        a, kc, vc = CachedAttention(self.config, name="attn")(
            LayerNorm(self.config, name="ln_1")(x), k_cache, v_cache, rel, written, visible
        )
        x = x + a
        x = x + MLP(self.config, name="mlp")(LayerNorm(self.config, name="ln_2")(x))
        return x, kc, vc


class CachedTransformer(nn.Module):
    config: GPTConfig
    max_len: int

    def setup(self) -> None:
        cfg = self.config
        self.wte = nn.Embed(cfg.vocab_size, cfg.n_embd)  # token embeddings
        self.wpe = nn.Embed(cfg.block_size, cfg.n_embd)  # position embeddings
        self.h = [CachedBlock(cfg) for _ in range(cfg.n_layer)]  # named h_0, h_1, ...
        self.ln_f = LayerNorm(cfg)

    def __call__(self, idx, k_cache, v_cache, pos):
        B, T = idx.shape
        slots = jnp.arange(self.max_len)  # (S,)
        rel = slots - pos  # (S,) index of each slot inside this call's tokens
        written = (rel >= 0) & (rel < T)  # (S,)
        qpos = pos + jnp.arange(T)  # (T,) absolute positions
        visible = slots[None, :] <= qpos[:, None]  # (T, S)
        x = self.wte(idx) + self.wpe(qpos)[None]  # (B, T, C)
        ks, vs = [], []
        for i, block in enumerate(self.h):
            x, kc, vc = block(x, k_cache[i], v_cache[i], rel, written, visible)
            ks.append(kc)
            vs.append(vc)
        last = self.ln_f(x[:, -1])  # (B, C): the last position only
        return self.wte.attend(last), jnp.stack(ks), jnp.stack(vs)  # (B, V), 2 x (L, B, nh, S, hs)


class CachedGPT(nn.Module):
    """``apply(params, idx, k_cache, v_cache, pos)`` -> ``(logits (B, V), k_cache, v_cache)``."""

    config: GPTConfig
    max_len: int

    def setup(self) -> None:
        self.transformer = CachedTransformer(self.config, self.max_len)

    def __call__(self, idx, k_cache, v_cache, pos):
        return self.transformer(idx, k_cache, v_cache, pos)

    def cache_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        cfg = self.config
        return (cfg.n_layer, batch, cfg.n_head, self.max_len, cfg.n_embd // cfg.n_head)
