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


class CachedGPT(nn.Module):
    """A GPT's weights run incrementally with a fixed-length key/value cache."""

    def __init__(self, gpt: GPT, max_len: int) -> None:
        super().__init__()
        cfg = gpt.config
        if not 1 <= max_len <= cfg.block_size:
            raise ValueError(
                f"CachedGPT: max_len={max_len} must be between 1 and the position table's "
                f"{cfg.block_size} (block_size)"
            )
        self.config: GPTConfig = cfg
        self.max_len = max_len
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
            q, k, v = attn.c_attn(block.ln_1(x)).split(C, dim=2)  # 3 x (B, T, C)
            q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            kc = _write(k_cache[i], k, rel, written)  # (B, nh, S, hs)
            vc = _write(v_cache[i], v, rel, written)  # (B, nh, S, hs)
            y = F.scaled_dot_product_attention(q, kc, vc, attn_mask=visible)  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
            x = x + attn.c_proj(y)
            x = x + block.mlp(block.ln_2(x))
            ks.append(kc)
            vs.append(vc)
        last = tr.ln_f(x[:, -1])  # (B, C): only the last position's logits are needed
        return self.lm_head(last), torch.stack(ks), torch.stack(vs)  # (B, V), 2 x (L, B, nh, S, hs)
