"""Small torch models for the profile's tests and its command line (``tests.profiling.toy:costly``)."""

from __future__ import annotations

import torch
from torch import nn


class Costly(nn.Module):
    """Eight sigmoids in a row: made costly on purpose (each is an exp and a reciprocal
    under MPC, many rounds and bytes), next to two small Linear layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(8):
            x = torch.sigmoid(x * 1.5)
        return x


def costly() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 16), Costly(), nn.Linear(16, 4)).eval()


class UsesChildWeight(nn.Module):
    """A parent that multiplies by its child's weight itself, without calling the child."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) @ self.proj.weight.T


def uses_child_weight() -> nn.Module:
    torch.manual_seed(0)
    return UsesChildWeight().eval()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 15), nn.ReLU(), nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1))


def tiny_gpt2() -> nn.Module:
    """A seeded HF GPT-2: 2 layers, width 32, 2 heads, vocabulary 128."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=16)
    model = GPT2LMHeadModel(cfg).eval()
    model.config.use_cache = False
    return model
