"""The Flax twin of ``ppml_torch/models/nanogpt.py``: same blocks, same names, same numbers.

Reads in the same order (LayerNorm, CausalSelfAttention, MLP, Block, GPT) and takes the
same :class:`~ppml_torch.models.nanogpt.GPTConfig`.  Parameter paths mirror the torch
names with Flax's leaf names::

    torch  transformer.h.0.attn.c_attn.weight   (out, in)
    flax   transformer/h_0/attn/c_attn/kernel   (in, out)    transposed

``lm_head`` has no parameters of its own: it is ``wte.attend`` (tied, as in GPT-2).
Dropout (``config.dropout``) sits where torch has it (after the embeddings, on the attention
probabilities, after each residual projection) and runs when ``deterministic=False``; its masks
come from the seed's stream (:mod:`ppml_torch.dropout`), so the same seed drops the same units
as the graph route of the torch model.
Attention masks with :func:`causal_softmax`, which stays right under MPC.
The weight map between the two lives in ``ppml_torch/converters/flax/nanogpt.py``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ppml_torch.models.nanogpt import MASKED_SCORE, GPTConfig


class LayerNorm(nn.Module):
    """LayerNorm over the last axis, parameters ``scale`` (torch ``weight``) and ``bias``.

    The variance is ``mean((x - mean)**2)`` as in torch (Flax's ``nn.LayerNorm`` uses
    ``E[x**2] - E[x]**2``, which loses more digits in float32 and in fixed point).
    """

    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        C = x.shape[-1]
        mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
        var = jnp.square(x - mean).mean(axis=-1, keepdims=True)  # (B, T, 1)
        y = (x - mean) * jax.lax.rsqrt(var + self.config.layer_norm_eps)  # (B, T, C)
        y = y * self.param("scale", nn.initializers.ones, (C,))
        if self.config.bias:
            y = y + self.param("bias", nn.initializers.zeros, (C,))
        return y


def causal_softmax(att: jax.Array, causal: jax.Array) -> jax.Array:
    """Softmax over the last axis with masked positions exactly 0 -- written for MPC.

    torch computes ``softmax(masked_fill(att, ~causal, finfo.min))``.  Under SPU that
    breaks: ``finfo.min`` does not fit in fixed point, and SPU's default (Taylor) ``exp``
    of a large negative number is not small.  Here masked entries are zeroed *after*
    ``exp`` by a select on the public mask, so any garbage there never reaches the sum.
    In floating point the result is torch's (the masked terms are 0 there too).
    """
    scores = jnp.where(causal, att, MASKED_SCORE)
    top = jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True))  # (B, nh, T, 1)
    e = jnp.where(causal, jnp.exp(scores - top), 0.0)  # (B, nh, T, T)
    return e / e.sum(axis=-1, keepdims=True)


class CausalSelfAttention(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        B, T, C = x.shape  # batch, sequence length, embedding width (n_embd)
        nh, hs = cfg.n_head, C // cfg.n_head  # heads, head size

        qkv = nn.Dense(3 * C, use_bias=cfg.bias, name="c_attn")(x)  # (B, T, 3C)
        q, k, v = jnp.split(qkv, 3, axis=2)  # 3 x (B, T, C)
        q = q.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        k = k.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        v = v.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)

        att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        causal = jnp.tril(jnp.ones((T, T), dtype=bool))[None, None]  # (1, 1, T, T)
        att = causal_softmax(att, causal)  # (B, nh, T, T)
        att = nn.Dropout(cfg.dropout, name="attn_dropout")(att, deterministic)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C): heads side by side

        y = nn.Dense(C, use_bias=cfg.bias, name="c_proj")(y)
        return nn.Dropout(cfg.dropout, name="resid_dropout")(y, deterministic)


class MLP(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        C = self.config.n_embd
        x = nn.Dense(4 * C, use_bias=self.config.bias, name="c_fc")(x)
        x = nn.gelu(x, approximate=True)  # GPT-2's "gelu_new"
        x = nn.Dense(C, use_bias=self.config.bias, name="c_proj")(x)
        return nn.Dropout(self.config.dropout, name="dropout")(x, deterministic)


class Block(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        x = x + CausalSelfAttention(self.config, name="attn")(
            LayerNorm(self.config, name="ln_1")(x), deterministic
        )
        x = x + MLP(self.config, name="mlp")(LayerNorm(self.config, name="ln_2")(x), deterministic)
        return x


class Transformer(nn.Module):
    """Embeddings, blocks and final LayerNorm: torch's ``GPT.transformer``."""

    config: GPTConfig

    def setup(self) -> None:
        cfg = self.config
        self.wte = nn.Embed(cfg.vocab_size, cfg.n_embd)  # token embeddings
        self.wpe = nn.Embed(cfg.block_size, cfg.n_embd)  # position embeddings
        self.h = [Block(cfg) for _ in range(cfg.n_layer)]  # named h_0, h_1, ...
        self.ln_f = LayerNorm(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def __call__(self, idx: jax.Array, deterministic: bool = True) -> jax.Array:
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(jnp.arange(T))[None]  # (B, T, C)
        x = self.drop(x, deterministic)
        for block in self.h:
            x = block(x, deterministic)
        return self.ln_f(x)  # (B, T, C)

    def lm_head(self, x: jax.Array) -> jax.Array:
        return self.wte.attend(x)  # (B, T, vocab_size): tied to wte


class GPT(nn.Module):
    config: GPTConfig

    def setup(self) -> None:
        self.transformer = Transformer(self.config)

    def __call__(self, idx: jax.Array, deterministic: bool = True) -> jax.Array:
        """Token ids ``(B, T)`` -> logits ``(B, T, vocab_size)``; ``deterministic=False`` runs
        the dropout (training mode)."""
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"GPT: sequence length {T} > block_size {self.config.block_size}")
        return self.transformer.lm_head(self.transformer(idx, deterministic))
