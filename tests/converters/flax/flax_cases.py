"""Tiny torch models shared by the Flax weight-transfer tests (fixed seeds, no network)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

GPT2_TINY = dict(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)


def tiny_hf_gpt2(seed: int = 0, **overrides) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**{**GPT2_TINY, **overrides})).eval()


def tiny_nanogpt(seed: int = 0, **overrides) -> nn.Module:
    from ppml_torch.models.nanogpt import GPT, GPTConfig

    cfg = dict(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=32)
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def homework_mlp(seed: int = 0) -> nn.Sequential:
    """The homework network [30, 15, 8, 1] with ReLU, initialised by torch."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 15), nn.ReLU(), nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1))


def token_ids(seed: int = 1, B: int = 2, T: int = 11, vocab: int = 100) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, vocab, size=(B, T)).astype(np.int32)


def assert_state_dicts_equal(a: dict, b: dict) -> None:
    """Same keys, and torch.equal on every tensor (bit-exact)."""
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    differ = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not differ, f"tensors differ: {differ}"
