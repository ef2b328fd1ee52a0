"""ppml_torch/models/nanogpt.py: the torch GPT matches HF GPT-2 and loads its checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ppml_torch.models.nanogpt import GPT, GPTConfig
from ppml_torch.weights import WeightMapError

TINY = dict(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)


def tiny_hf(seed: int = 0, **overrides) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**{**TINY, **overrides})).eval()


def ids(seed: int = 1, B: int = 2, T: int = 11, vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_from_pretrained_matches_hf_logits(tmp_path, fmt):
    hf = tiny_hf()
    hf.save_pretrained(tmp_path, safe_serialization=(fmt == "safetensors"))
    assert (
        tmp_path / ("model.safetensors" if fmt == "safetensors" else "pytorch_model.bin")
    ).exists()

    gpt = GPT.from_pretrained(tmp_path).eval()
    x = ids()
    with torch.no_grad():
        want = hf(x).logits
        got = gpt(x)
    assert got.shape == (2, 11, 100)
    err = (got - want).abs().max().item()
    assert err < 1e-5, f"max |nanoGPT - HF| = {err}"
    assert gpt.lm_head.weight is gpt.transformer.wte.weight  # still tied after loading


def test_state_dict_has_no_mask_buffer_and_tied_head():
    gpt = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8))
    sd = gpt.state_dict()
    assert not any(k.endswith(".mask") for k in sd)
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (24, 8)  # nn.Linear: (out, in)


def test_old_style_checkpoint_without_prefix_and_with_mask_buffers():
    """The original hub "gpt2" files: GPT2Model keys (no ``transformer.``) + attn.bias buffers."""
    hf = tiny_hf()
    sd = {
        k.removeprefix("transformer."): v
        for k, v in hf.state_dict().items()
        if k != "lm_head.weight"
    }
    for i in range(TINY["n_layer"]):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    gpt = GPT.from_hf_state_dict(sd, GPT.config_from_hf(hf.config.to_dict())).eval()
    with torch.no_grad():
        assert (gpt(ids()) - hf(ids()).logits).abs().max().item() < 1e-5


def test_wrong_config_lists_keys_and_shapes_and_copies_nothing():
    hf = tiny_hf()
    cfg = GPT.config_from_hf(hf.config.to_dict())
    cfg.n_embd = 48  # wrong width (still divisible by n_head)
    with pytest.raises(WeightMapError) as e:
        GPT.from_hf_state_dict(hf.state_dict(), cfg)
    msg = str(e.value)
    assert "nothing was copied" in msg
    assert "transformer.wte.weight: (100, 48) vs (100, 32)" in msg
    assert "transformer.h.0.attn.c_attn.weight: (144, 48) vs (96, 32)" in msg


def test_missing_and_unexpected_keys_are_listed():
    hf = tiny_hf()
    sd = dict(hf.state_dict())
    del sd["transformer.ln_f.bias"]
    sd["transformer.h.0.attn.extra"] = torch.zeros(3)
    with pytest.raises(WeightMapError, match=r"missing in .*transformer\.ln_f\.bias") as e:
        GPT.from_hf_state_dict(sd, GPT.config_from_hf(hf.config.to_dict()))
    assert "transformer.h.0.attn.extra" in str(e.value)


def test_unsupported_hf_config_is_rejected(tmp_path):
    hf = tiny_hf(activation_function="relu")
    hf.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["activation_function"] == "relu"
    with pytest.raises(ValueError, match="activation_function"):
        GPT.from_pretrained(tmp_path)


def test_untied_head_is_rejected():
    hf = tiny_hf()
    sd = dict(hf.state_dict())
    sd["lm_head.weight"] = sd["lm_head.weight"].clone() + 1
    with pytest.raises(WeightMapError, match="lm_head.weight differs"):
        GPT.from_hf_state_dict(sd, GPT.config_from_hf(hf.config.to_dict()))
