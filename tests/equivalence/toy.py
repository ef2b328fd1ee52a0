"""Small torch modules the equivalence tests (and `ppml-torch check` tests) import by path."""

from __future__ import annotations

import torch
from torch import nn


class Gates(nn.Module):
    """sigmoid/tanh gates: SPU approximates both (the module of issue 12)."""

    def __init__(self, n_in: int = 6, n_out: int = 4):
        super().__init__()
        self.a = nn.Linear(n_in, n_out)
        self.b = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gate": torch.sigmoid(self.a(x)) * torch.tanh(self.b(x)), "lin": self.a(x)}


def gates() -> nn.Module:
    torch.manual_seed(0)
    return Gates().eval()


def overflowing(n_in: int = 6) -> nn.Module:
    """Two linear layers with weights ~1e4: the second product leaves FM64's range."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(n_in, 8), nn.Linear(8, 2)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(0.5e4, 1e4)
    return m


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
