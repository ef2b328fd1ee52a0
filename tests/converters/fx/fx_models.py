"""Tiny test models shared by the converter tests (built from configs with a fixed seed)."""

from __future__ import annotations

import torch


def tiny_gpt2(attn: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
    cfg._attn_implementation = attn
    return GPT2LMHeadModel(cfg).eval()


def tiny_nanogpt(seed: int = 0) -> torch.nn.Module:
    from ppml_torch.models.nanogpt import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=32)).eval()


def prompts(n: int, t: int, vocab: int = 100, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))
