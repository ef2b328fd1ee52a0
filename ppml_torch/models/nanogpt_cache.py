"""nanoGPT with a key/value cache of fixed length: one step program for every generated token.

:class:`CachedGPT` wraps a :class:`~ppml_torch.models.nanogpt.GPT` and reuses its modules, so
its ``state_dict`` names are the GPT's (``transformer.h.0.attn.c_attn.weight``, ...).  Its
``forward(idx, k_cache, v_cache, pos)`` runs ``T`` new tokens at positions
``pos .. pos+T-1`` against a cache of ``max_len`` positions and returns

* the logits of the LAST new position only, ``(B, vocab)`` (decode steps need no more);
* the updated caches, ``(n_layer, B, n_head, max_len, head_size)`` each.

Written for ``torch.export`` and the graph converter, which refuse mutated buffers and
``index_put``: the cache is an input and an output, and the update is a pure function of
them, ``where(slot is written, new, cache)``, with the written slots computed from ``pos``.
Under MPC ``pos`` is public (every party knows how many tokens were generated), so the
mask, the attention mask and the position embedding index are public values: the update
costs no secure comparison, and the program is the same for every position.  Slots at or
after ``pos + T`` are masked out of attention, whatever they hold.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ppml_torch.models.nanogpt import GPT, GPTConfig


def _write(cache: torch.Tensor, new: torch.Tensor, rel: torch.Tensor, written: torch.Tensor):
    """``cache`` (B, nh, S, hs) with slots ``written`` (S,) replaced by ``new`` (B, nh, T, hs).

    Slot ``s`` takes ``new[:, :, rel[s]]``; ``rel = s - pos``.  A pure function (no
    in-place write): the converter and SPU see a select on a public mask.
    """
    T = new.shape[2]
    if T == 1:
        full = new  # (B, nh, 1, hs): broadcast over the slots
    else:
        full = new.index_select(2, rel.clamp(0, T - 1))  # (B, nh, S, hs)
    return torch.where(written[:, None], full, cache)  # (B, nh, S, hs)


# PUMA's piecewise GeLU (Dong et al. 2023, "PUMA: Secure Inference of LLaMA-7B in Five
# Minutes"): 0 below -4, a cubic on [-4, -1.95), an even-ish sextic on [-1.95, 3], x above 3.
# Largest gap to GPT-2's tanh GeLU: 1.95e-2 (at x = 3), measured on a 8e-5 grid over [-8, 8].
GELU_CUBIC = (
    -0.5054031199708174,
    -0.42226581151983866,
    -0.11807612951181953,
    -0.011034134030615728,
)
GELU_SEXTIC = (
    0.008526321541038084,
    0.5,
    0.3603292692789629,
    -0.037688200365904236,
    0.0018067462606141187,
)


def gelu_piecewise(x: torch.Tensor) -> torch.Tensor:
    """PUMA's piecewise-polynomial GeLU (``approx=True``): 3 comparisons and 7 products per
    element under MPC instead of SPU's ``tanh``; differs from GPT-2's GeLU by up to 2e-2."""
    a0, a1, a2, a3 = GELU_CUBIC
    b0, b1, b2, b4, b6 = GELU_SEXTIC
    x2 = x * x
    cubic = a0 + x * (a1 + x * (a2 + x * a3))
    sextic = b0 + b1 * x + x2 * (b2 + x2 * (b4 + x2 * b6))
    low = torch.where(x < -4.0, torch.zeros_like(x), cubic)
    mid = torch.where(x < -1.95, low, sextic)
    return torch.where(x > 3.0, x, mid)


def linear(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)`` computed as one matrix-vector product ``W @ row`` per row of ``x``, on the
    weight's own ``(out, in)`` layout.

    Same numbers as ``F.linear``; under SPU (ABY3) a secret ``(out, in)`` matrix times ONE
    secret column is far faster than any matrix-matrix form (measured on this machine, see
    docs/generation.md: GPT-2's 50,257 x 128 head for one row, ``x @ W.T`` 3.5 s, ``W @ x``
    0.06 s; a 3072 x 768 MLP weight for a 7-row prompt, ``(W @ x.T).T`` 0.68-1.08 s, one
    product per row 0.11-0.13 s together), so a prompt of ``T`` rows costs ``T`` products.
    """
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])  # (R, in)
    if rows.shape[0] == 1:
        y = (lin.weight @ rows.T).T  # (1, out)
    else:
        y = torch.stack([lin.weight @ rows[r] for r in range(rows.shape[0])])  # (R, out)
    if lin.bias is not None:
        y = y + lin.bias
    return y.reshape(*lead, y.shape[-1])


class CachedGPT(nn.Module):
    """A GPT's weights run incrementally with a fixed-length key/value cache."""

    def __init__(self, gpt: GPT, max_len: int, approx: bool = False) -> None:
        super().__init__()
        cfg = gpt.config
        if not 1 <= max_len <= cfg.block_size:
            raise ValueError(
                f"CachedGPT: max_len={max_len} must be between 1 and the position table's "
                f"{cfg.block_size} (block_size)"
            )
        self.config: GPTConfig = cfg
        self.max_len = max_len
        self.approx = approx  # PUMA's piecewise GeLU instead of tanh (changes the numbers)
        self.transformer = gpt.transformer  # shared modules: same weights, same names
        self.lm_head = gpt.lm_head

    def cache_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        cfg = self.config
        return (cfg.n_layer, batch, cfg.n_head, self.max_len, cfg.n_embd // cfg.n_head)

    def empty_cache(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = self.cache_shape(batch)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(
        self, idx: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``idx`` (B, T) at positions ``pos..pos+T-1`` (``pos`` a 0-d integer tensor).

        Returns ``(logits (B, vocab) of position pos+T-1, k_cache, v_cache)``.
        """
        B, T = idx.shape
        C, nh = self.config.n_embd, self.config.n_head
        hs = C // nh  # head size
        tr = self.transformer
        slots = torch.arange(self.max_len, device=idx.device)  # (S,)
        rel = slots - pos  # (S,) index of each slot inside this call's tokens
        written = (rel >= 0) & (rel < T)  # (S,) slots this call writes
        qpos = pos + torch.arange(T, device=idx.device)  # (T,) absolute positions
        visible = slots[None, :] <= qpos[:, None]  # (T, S) causal mask over the cache

        x = tr.wte(idx) + tr.wpe(qpos)[None]  # (B, T, C)
        ks, vs = [], []
        for i, block in enumerate(tr.h):
            attn = block.attn
            q, k, v = linear(attn.c_attn, block.ln_1(x)).split(C, dim=2)  # 3 x (B, T, C)
            q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            kc = _write(k_cache[i], k, rel, written)  # (B, nh, S, hs)
            vc = _write(v_cache[i], v, rel, written)  # (B, nh, S, hs)
            y = F.scaled_dot_product_attention(q, kc, vc, attn_mask=visible)  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
            x = x + linear(attn.c_proj, y)
            mlp = block.mlp
            gelu = gelu_piecewise if self.approx else mlp.gelu
            x = x + linear(mlp.c_proj, gelu(linear(mlp.c_fc, block.ln_2(x))))
            ks.append(kc)
            vs.append(vc)
        last = tr.ln_f(x[:, -1])  # (B, C): only the last position's logits are needed
        return (
            linear(self.lm_head, last),
            torch.stack(ks),
            torch.stack(vs),
        )  # (B, V), 2 x (L, B, nh, S, hs)
