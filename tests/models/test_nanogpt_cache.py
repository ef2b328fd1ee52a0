"""ppml_torch/models/nanogpt_cache.py: the cached step equals full recomputation, in torch and
converted by the graph converter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppml_torch
from ppml_torch.models.nanogpt import GPT, GPTConfig
from ppml_torch.models.nanogpt_cache import CachedGPT

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

CFG = GPTConfig(block_size=32, vocab_size=300, n_layer=2, n_head=2, n_embd=32)


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG).eval()


def tokens(T: int, seed: int = 1, B: int = 2) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def incremental(c: CachedGPT, idx: torch.Tensor, chunks: list[int]) -> list[torch.Tensor]:
    """Logits after each chunk of ``idx`` fed through the cache, starting at position 0."""
    kc, vc = c.empty_cache(idx.shape[0])
    out, pos = [], 0
    with torch.no_grad():
        for n in chunks:
            lg, kc, vc = c(idx[:, pos : pos + n], kc, vc, torch.tensor(pos))
            pos += n
            out.append(lg)
    return out


@pytest.mark.parametrize("chunks", [[5, 1, 1, 1, 1], [1] * 6, [3, 4, 1], [12]])
def test_cached_steps_equal_full_recomputation(chunks):
    gpt = tiny_gpt()
    c = CachedGPT(gpt, max_len=12).eval()
    idx = tokens(sum(chunks))
    with torch.no_grad():
        full = gpt(idx)  # (B, T, V)
    ends = np.cumsum(chunks) - 1
    for lg, end in zip(incremental(c, idx, chunks), ends, strict=True):
        assert lg.shape == (2, CFG.vocab_size)
        err = (lg - full[:, end]).abs().max().item()
        assert err < 1e-5, f"position {end}: max |cached - full| = {err}"


def test_cache_slots_after_the_position_are_ignored():
    """Garbage in slots not yet written must not change the logits (they are masked)."""
    c = CachedGPT(tiny_gpt(), max_len=10).eval()
    idx = tokens(4)
    kc, vc = c.empty_cache(2)
    with torch.no_grad():
        a = c(idx, kc, vc, torch.tensor(0))[0]
        b = c(idx, kc + 7.0, vc - 3.0, torch.tensor(0))[0]
    assert torch.equal(a, b)


def test_same_weights_and_names_as_gpt():
    gpt = tiny_gpt()
    c = CachedGPT(gpt, max_len=8)
    assert list(c.state_dict()) == list(gpt.state_dict())
    assert c.transformer.wte.weight is gpt.transformer.wte.weight


def test_max_len_beyond_position_table_is_refused():
    with pytest.raises(ValueError, match="position table"):
        CachedGPT(tiny_gpt(), max_len=CFG.block_size + 1)


def test_converted_step_equals_torch_step_and_full_recomputation():
    """torch.export + graph converter: no mutated buffer, no index_put; numbers as torch."""
    gpt = tiny_gpt()
    c = CachedGPT(gpt, max_len=9).eval()
    idx = tokens(9)
    kc, vc = c.empty_cache(2)
    pre = ppml_torch.convert(c, (idx[:, :5], kc, vc, torch.tensor(0)))
    dec = ppml_torch.convert(c, (idx[:, :1], kc, vc, torch.tensor(5)))
    with torch.no_grad():
        full = gpt(idx).numpy()
    lg, k, v = pre.apply(pre.params, idx[:, :5].numpy(), kc.numpy(), vc.numpy(), np.int32(0))
    errs = [np.abs(np.asarray(lg) - full[:, 4]).max()]
    for t in range(5, 9):  # one converted program for every position
        lg, k, v = dec.apply(dec.params, idx[:, t : t + 1].numpy(), k, v, np.int32(t))
        errs.append(np.abs(np.asarray(lg) - full[:, t]).max())
    assert max(errs) < 1e-5, errs
    ops = {str(n.target) for n in pre.extras["exported_program"].graph.nodes}
    assert not any("index_put" in o or "copy_" in o for o in ops), ops


def test_position_table_is_cut_to_the_cache_and_the_gpt_is_untouched():
    """Catches a CachedGPT that puts (and converts) GPT's whole 1024-row position table, or
    one that cuts the user's own module's table."""
    gpt = tiny_gpt()
    c = CachedGPT(gpt, max_len=8)
    assert c.transformer.wpe.weight.shape == (8, CFG.n_embd)
    assert torch.equal(c.transformer.wpe.weight, gpt.transformer.wpe.weight[:8])
    assert gpt.transformer.wpe.weight.shape == (CFG.block_size, CFG.n_embd)


def test_one_query_attention_and_softmax_rows_equal_the_plain_formulas():
    """attend_one/mix_one (two products over all heads, diagonal blocks kept) and
    softmax_rows (one reciprocal per row) give torch's attention, batch and heads apart."""
    from ppml_torch.models.nanogpt_cache import attend_one, mix_one, softmax_rows

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (1, 5, 5))
    visible = torch.tensor([[True, True, True, False, False]])
    att = attend_one(q, k)
    assert torch.allclose(att, q @ k.transpose(-2, -1), atol=1e-5)
    want = torch.softmax(att.masked_fill(~visible, float("-inf")), dim=-1)
    got = softmax_rows(att, visible)
    assert torch.allclose(got, want, atol=1e-6) and not got[..., 3:].any()
    assert torch.allclose(mix_one(got, v), got @ v, atol=1e-5)


def test_a_prompts_last_block_runs_its_mlp_for_the_last_position_only():
    """Catches the last block computing every prompt position (its other rows feed nothing),
    while the earlier blocks compute all of them (their keys and values are cached)."""
    gpt = tiny_gpt()
    c = CachedGPT(gpt, max_len=8).eval()
    rows = {}

    def seen(i):
        def hook(module, args, out):
            rows[i] = args[0].shape[1]  # positions the block's MLP computes

        return hook

    hooks = [blk.mlp.gelu.register_forward_hook(seen(i)) for i, blk in enumerate(c.transformer.h)]
    kc, vc = c.empty_cache(2)
    with torch.no_grad():
        c(tokens(5), kc, vc, torch.tensor(0))
    for h in hooks:
        h.remove()
    assert rows == {0: 5, 1: 1}
