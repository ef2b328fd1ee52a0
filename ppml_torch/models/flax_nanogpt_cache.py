"""The Flax twin of ``nanogpt_cache.py``: the Flax nanoGPT run with a fixed-length KV cache.

:class:`CachedGPT` has the parameter tree of ``flax_nanogpt.GPT``
(``transformer/h_0/attn/c_attn/kernel``, ...) with every Dense kernel stored ``(out, in)``
(torch's layout; :func:`kernels_out_in` turns ``to_flax``'s params into it), because SPU
multiplies a secret ``(out, in)`` matrix by one column at a time far faster
(:func:`linear_rows`).  ``CachedGPT(config, max_len).apply(params, idx, k_cache, v_cache,
pos)`` returns ``(logits (B, vocab) of the last new position, k_cache, v_cache)`` with caches
``(n_layer, B, n_head, max_len, head_size)``.

``pos`` is public under MPC: the slots written, the attention mask and the position
embedding index derive from it only, so the cache update is a select on a public mask and
the same compiled program serves every position.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ppml_torch.models.flax_nanogpt import LayerNorm
from ppml_torch.models.nanogpt import MASKED_SCORE, GPTConfig
from ppml_torch.models.nanogpt_cache import GELU_CUBIC, GELU_SEXTIC


def gelu_piecewise(x: jax.Array) -> jax.Array:
    """PUMA's piecewise GeLU, as ``nanogpt_cache.gelu_piecewise`` (``approx=True``)."""
    a0, a1, a2, a3 = GELU_CUBIC
    b0, b1, b2, b4, b6 = GELU_SEXTIC
    x2 = x * x
    cubic = a0 + x * (a1 + x * (a2 + x * a3))
    sextic = b0 + b1 * x + x2 * (b2 + x2 * (b4 + x2 * b6))
    low = jnp.where(x < -4.0, 0.0, cubic)
    mid = jnp.where(x < -1.95, low, sextic)
    return jnp.where(x > 3.0, x, mid)


def write_cache(cache: jax.Array, new: jax.Array, rel: jax.Array, written: jax.Array) -> jax.Array:
    """``cache`` (B, nh, S, hs) with slots ``written`` (S,) taken from ``new`` (B, nh, T, hs)."""
    T = new.shape[2]
    full = new if T == 1 else jnp.take(new, jnp.clip(rel, 0, T - 1), axis=2)  # (B, nh, S, hs)
    return jnp.where(written[:, None], full, cache)


def kernels_out_in(params: Any) -> Any:
    """``to_flax`` params with every Dense ``kernel`` transposed to ``(out, in)``: the layout
    :class:`Linear` reads (put this, not the ``(in, out)`` tree)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, v: v.T if getattr(path[-1], "key", None) == "kernel" else v, params
    )


def cut_positions(params: Any, max_len: int) -> Any:
    """``params`` with the position table ``transformer/wpe/embedding`` cut to its first
    ``max_len`` rows, the table :class:`CachedGPT` reads (the other rows are never used)."""
    out = jax.tree_util.tree_map(lambda v: v, params)  # new containers, same arrays
    tr = out["params"]["transformer"] if "params" in out else out["transformer"]
    tr["wpe"] = {**tr["wpe"], "embedding": tr["wpe"]["embedding"][:max_len]}
    return out


def linear_rows(w: jax.Array, x: jax.Array) -> jax.Array:
    """``x @ w.T`` for ``w`` in ``(out, in)`` layout, as one matrix-vector product ``w @ row``
    per row of ``x``.

    Same numbers; under SPU (ABY3) a secret ``(out, in)`` matrix times ONE secret column is
    far faster than any matrix-matrix form (``nanogpt_cache.linear`` has the figures), so a
    prompt of ``T`` rows costs ``T`` products.
    """
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])  # (R, in)
    y = jnp.concatenate([w @ flat[r : r + 1].T for r in range(flat.shape[0])], axis=1).T
    return y.reshape(*lead, y.shape[-1])  # (..., out)


def softmax_rows(att: jax.Array, visible: jax.Array) -> jax.Array:
    """Softmax over the last axis, 0 where ``visible`` is False: ``nanogpt_cache.softmax_rows``
    (the row max with masked slots at ``MASKED_SCORE``, a select after ``exp``, one
    reciprocal per row)."""
    scores = jnp.where(visible, att, MASKED_SCORE)
    top = jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True))  # (..., 1)
    e = jnp.where(visible, jnp.exp(scores - top), 0.0)
    return e * (1.0 / e.sum(axis=-1, keepdims=True))


def attend(q: jax.Array, kc: jax.Array) -> jax.Array:
    """``q @ kc.T`` per head: (B, nh, T, hs) x (B, nh, S, hs) -> (B, nh, T, S).

    For one new token (``T == 1``, every decode step) one matrix product of every head's keys
    with every head's query whose diagonal blocks are kept (``nanogpt_cache.attend_one``);
    prompts (``T > 1``) a batched matrix product.
    """
    if q.shape[2] != 1:
        return q @ kc.transpose(0, 1, 3, 2)
    B, nh, _, hs = q.shape
    S = kc.shape[2]
    same = np.eye(nh, dtype=bool)[:, None, :]  # (nh, 1, nh): key head == query head
    out = []
    for b in range(B):
        every = (kc[b].reshape(nh * S, hs) @ q[b, :, 0].T).reshape(nh, S, nh)
        out.append(jnp.where(same, every, 0.0).sum(axis=-1))  # (nh, S)
    return jnp.stack(out)[:, :, None, :]  # (B, nh, 1, S)


def mix(att: jax.Array, vc: jax.Array) -> jax.Array:
    """``att @ vc`` per head: (B, nh, T, S) x (B, nh, S, hs) -> (B, nh, T, hs); for ``T == 1``
    one product of a block-diagonal ``(nh, nh S)`` matrix of the weights with all heads'
    values (``nanogpt_cache.mix_one``)."""
    if att.shape[2] != 1:
        return att @ vc
    B, nh, _, S = att.shape
    hs = vc.shape[3]
    same = np.eye(nh, dtype=bool)[:, :, None]  # (nh, nh, 1): block == row's head
    out = []
    for b in range(B):
        blocks = jnp.where(same, jnp.broadcast_to(att[b, :, 0][None], (nh, nh, S)), 0.0)
        out.append(blocks.reshape(nh, nh * S) @ vc[b].reshape(nh * S, hs))  # (nh, hs)
    return jnp.stack(out)[:, :, None, :]  # (B, nh, 1, hs)


class Linear(nn.Module):
    """``nn.Dense`` with its kernel stored ``(out, in)`` (see :func:`kernels_out_in`);
    ``rows``: only these outputs (a slice of the kernel's rows)."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, rows: slice | None = None) -> jax.Array:
        w = self.param("kernel", nn.initializers.lecun_normal(), (self.features, x.shape[-1]))
        rows = slice(None) if rows is None else rows
        y = linear_rows(w[rows], x)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))[rows]
        return y


class CachedMLP(nn.Module):
    config: GPTConfig
    approx: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        C = x.shape[-1]
        x = Linear(4 * C, use_bias=self.config.bias, name="c_fc")(x)
        x = gelu_piecewise(x) if self.approx else nn.gelu(x, approximate=True)  # "gelu_new"
        return Linear(C, use_bias=self.config.bias, name="c_proj")(x)


class CachedAttention(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x, k_cache, v_cache, rel, written, visible, last_only=False):
        """``last_only``: the query, and so the output, of the last position only."""
        cfg = self.config
        B, T, C = x.shape
        nh, hs = cfg.n_head, C // cfg.n_head  # heads, head size
        c_attn = Linear(3 * C, use_bias=cfg.bias, name="c_attn")
        if last_only:
            k, v = jnp.split(c_attn(x, slice(C, 3 * C)), 2, axis=2)  # 2 x (B, T, C)
            q = c_attn(x[:, -1:], slice(0, C))  # (B, 1, C)
            visible = visible[-1:]  # (1, S)
        else:
            q, k, v = jnp.split(c_attn(x), 3, axis=2)  # 3 x (B, T, C)
        Tq = q.shape[1]
        q = q.reshape(B, Tq, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, Tq, hs)
        k = k.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        v = v.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        kc = write_cache(k_cache, k, rel, written)  # (B, nh, S, hs)
        vc = write_cache(v_cache, v, rel, written)  # (B, nh, S, hs)
        att = attend(q, kc) * (1.0 / math.sqrt(hs))  # (B, nh, Tq, S)
        att = softmax_rows(att, visible[None, None])  # (B, nh, Tq, S)
        y = mix(att, vc).transpose(0, 2, 1, 3).reshape(B, Tq, C)  # (B, Tq, C)
        return Linear(C, use_bias=cfg.bias, name="c_proj")(y), kc, vc


class CachedBlock(nn.Module):
    config: GPTConfig
    approx: bool = False

    @nn.compact
    def __call__(self, x, k_cache, v_cache, rel, written, visible, last_only=False):
        """``last_only``: a prompt's last block, only the last position goes on."""
        a, kc, vc = CachedAttention(self.config, name="attn")(
            LayerNorm(self.config, name="ln_1")(x),
            k_cache,
            v_cache,
            rel,
            written,
            visible,
            last_only,
        )
        x = (x[:, -1:] if last_only else x) + a
        x = x + CachedMLP(self.config, self.approx, name="mlp")(
            LayerNorm(self.config, name="ln_2")(x)
        )
        return x, kc, vc


class CachedTransformer(nn.Module):
    config: GPTConfig
    max_len: int
    approx: bool = False

    def setup(self) -> None:
        cfg = self.config
        self.wte = nn.Embed(cfg.vocab_size, cfg.n_embd)  # token embeddings
        self.wpe = nn.Embed(self.max_len, cfg.n_embd)  # the positions the cache holds
        self.h = [CachedBlock(cfg, self.approx) for _ in range(cfg.n_layer)]  # named h_0, h_1, ...
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
            last_only = i == len(self.h) - 1 and T > 1  # a prompt's last block: last position
            x, kc, vc = block(x, k_cache[i], v_cache[i], rel, written, visible, last_only)
            ks.append(kc)
            vs.append(vc)
        last = self.ln_f(x[:, -1])  # (B, C): the last position only
        logits = linear_rows(self.wte.embedding, last)  # tied head: wte is already (V, C)
        return logits, jnp.stack(ks), jnp.stack(vs)  # (B, V), 2 x (L, B, nh, S, hs)


class CachedGPT(nn.Module):
    """``apply(params, idx, k_cache, v_cache, pos)`` -> ``(logits (B, V), k_cache, v_cache)``."""

    config: GPTConfig
    max_len: int
    approx: bool = False  # PUMA's piecewise GeLU instead of tanh (changes the numbers)

    def setup(self) -> None:
        self.transformer = CachedTransformer(self.config, self.max_len, self.approx)

    def __call__(self, idx, k_cache, v_cache, pos):
        return self.transformer(idx, k_cache, v_cache, pos)

    def cache_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        cfg = self.config
        return (cfg.n_layer, batch, cfg.n_head, self.max_len, cfg.n_embd // cfg.n_head)
