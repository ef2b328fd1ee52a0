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

import math

import torch
import torch.nn as nn

from ppml_torch.models.nanogpt import GPT, MASKED_SCORE, GPTConfig


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


def linear(lin: nn.Linear, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
    """``lin(x)`` computed as one matrix-vector product ``W @ row`` per row of ``x``, on the
    weight's own ``(out, in)`` layout; ``rows``: only these outputs (a slice of ``W``'s rows).

    Same numbers as ``F.linear``; under SPU (ABY3) a secret ``(out, in)`` matrix times ONE
    secret column is far faster than any matrix-matrix form (measured on this machine, see
    docs/generation.md: GPT-2's 50,257 x 128 head for one row, ``x @ W.T`` 3.5 s, ``W @ x``
    0.06 s; a 3072 x 768 MLP weight for a 7-row prompt, ``(W @ x.T).T`` 0.68-1.08 s, one
    product per row 0.11-0.13 s together), so a prompt of ``T`` rows costs ``T`` products.
    """
    w, b = lin.weight, lin.bias
    if rows is not None:
        w = w[rows]
        b = None if b is None else b[rows]
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])  # (R, in)
    # (out, in) @ (in, 1) per row: a matrix product (torch.export turns a matrix-VECTOR
    # product into an element-wise product and a sum, 7x the bytes of the weight under MPC)
    y = torch.cat([w @ flat[r : r + 1].T for r in range(flat.shape[0])], dim=1).T  # (R, out)
    if b is not None:
        y = y + b
    return y.reshape(*lead, y.shape[-1])


def softmax_rows(att: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where ``visible`` (bool, broadcast) is False gives exactly 0.

    Written for MPC: masked slots enter the row max as ``MASKED_SCORE`` (finite) and are
    zeroed after ``exp`` by a select on the public mask; each row is then scaled by ONE
    reciprocal of its sum (under SPU a division costs a reciprocal: one per row instead of one
    per slot).  Equal to torch's softmax with masked slots at -inf.
    """
    scores = torch.where(visible, att, MASKED_SCORE)
    top = scores.amax(dim=-1, keepdim=True)  # (..., 1)
    e = torch.where(visible, torch.exp(scores - top), 0.0)
    return e * (1.0 / e.sum(dim=-1, keepdim=True))


def attend_one(q: torch.Tensor, kc: torch.Tensor) -> torch.Tensor:
    """``q @ kc.T`` per head for ONE query: (B, nh, 1, hs) x (B, nh, S, hs) -> (B, nh, 1, S).

    One matrix product of every head's keys with every head's query, ``(nh S, hs) @ (hs,
    nh)``, of which the diagonal blocks (head ``h``'s keys with head ``h``'s query) are kept
    by a public select.  Same numbers; under SPU one product truncates ``nh^2 S`` sums
    instead of ``nh S hs`` element-wise products (GPT-2-small, 16 slots: 4x fewer bytes
    than the element-wise form).
    """
    B, nh, _, hs = q.shape
    S = kc.shape[2]
    same = torch.eye(nh, dtype=torch.bool)[:, None, :]  # (nh, 1, nh): key head == query head
    out = []
    for b in range(B):
        every = (kc[b].reshape(nh * S, hs) @ q[b, :, 0].T).reshape(nh, S, nh)
        out.append(torch.where(same, every, 0.0).sum(dim=-1))  # (nh, S)
    return torch.stack(out)[:, :, None, :]  # (B, nh, 1, S)


def mix_one(att: torch.Tensor, vc: torch.Tensor) -> torch.Tensor:
    """``att @ vc`` per head for ONE query: (B, nh, 1, S) x (B, nh, S, hs) -> (B, nh, 1, hs).

    Row ``h`` of a block-diagonal ``(nh, nh S)`` matrix holds head ``h``'s weights in block
    ``h`` (a public select), times all heads' values ``(nh S, hs)``: one matrix product.
    """
    B, nh, _, S = att.shape
    hs = vc.shape[3]
    same = torch.eye(nh, dtype=torch.bool)[:, :, None]  # (nh, nh, 1): block == row's head
    out = []
    for b in range(B):
        blocks = torch.where(same, att[b, :, 0][None].expand(nh, nh, S), 0.0)  # (nh, nh, S)
        out.append(blocks.reshape(nh, nh * S) @ vc[b].reshape(nh * S, hs))  # (nh, hs)
    return torch.stack(out)[:, :, None, :]  # (B, nh, 1, hs)


def attention(q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, visible: torch.Tensor):
    """Causal attention of ``q`` (B, nh, T, hs) over the cache ``kc``/``vc`` (B, nh, S, hs)
    with ``visible`` (T, S): (B, nh, T, hs).  One query: :func:`attend_one`/:func:`mix_one`;
    several: batched matrix products."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    if q.shape[2] == 1:
        return mix_one(softmax_rows(attend_one(q, kc) * scale, visible), vc)
    att = (q @ kc.transpose(-2, -1)) * scale  # (B, nh, T, S)
    return softmax_rows(att, visible) @ vc


class CachedGPT(nn.Module):
    """A GPT's weights run incrementally with a fixed-length key/value cache.

    Shares the GPT's modules (same weights, same ``state_dict`` names), except the position
    table: ``transformer.wpe`` is a copy of its first ``max_len`` rows (the GPT is untouched).
    """

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
        tr = gpt.transformer
        wpe = nn.Embedding(max_len, cfg.n_embd)
        with torch.no_grad():
            wpe.weight.copy_(tr.wpe.weight[:max_len])
        self.transformer = nn.ModuleDict(dict(wte=tr.wte, wpe=wpe, h=tr.h, ln_f=tr.ln_f))
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
        last = len(tr.h) - 1
        for i, block in enumerate(tr.h):
            attn = block.attn
            h = block.ln_1(x)  # (B, T, C)
            if i == last and T > 1:  # only the last position's output is read from here on
                k, v = linear(attn.c_attn, h, slice(C, 3 * C)).split(C, dim=2)  # 2 x (B, T, C)
                q = linear(attn.c_attn, h[:, -1:], slice(0, C))  # (B, 1, C)
                x, see = x[:, -1:], visible[-1:]  # (B, 1, C), (1, S)
            else:
                q, k, v = linear(attn.c_attn, h).split(C, dim=2)  # 3 x (B, T, C)
                see = visible
            q = q.view(B, q.shape[1], nh, hs).transpose(1, 2)  # (B, nh, Tq, hs)
            k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            kc = _write(k_cache[i], k, rel, written)  # (B, nh, S, hs)
            vc = _write(v_cache[i], v, rel, written)  # (B, nh, S, hs)
            y = attention(q, kc, vc, see)  # (B, nh, Tq, hs)
            y = y.transpose(1, 2).reshape(B, q.shape[2], C)  # (B, Tq, C)
            x = x + linear(attn.c_proj, y)
            mlp = block.mlp
            gelu = gelu_piecewise if self.approx else mlp.gelu
            x = x + linear(mlp.c_proj, gelu(linear(mlp.c_fc, block.ln_2(x))))
            ks.append(kc)
            vs.append(vc)
        final = tr.ln_f(x[:, -1])  # (B, C): only the last position's logits are needed
        return (
            linear(self.lm_head, final),
            torch.stack(ks),
            torch.stack(vs),
        )  # (B, V), 2 x (L, B, nh, S, hs)
