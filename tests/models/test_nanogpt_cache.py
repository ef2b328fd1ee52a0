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
