"""The Flax MLP: the homework's breast-cancer network, and the target of torch MLP transfer.

``MLP(features=(15, 8, 1), activation="relu")`` on 30 inputs is the homework model
``[30, 15, 8, 1]``: Dense layers with the activation between them, none after the last.
Layers are named ``Dense_0``, ``Dense_1``, ... (Flax's default), kernels are ``(in, out)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),
    "silu": nn.silu,
    "identity": lambda x: x,
}


class MLP(nn.Module):
    """Dense layers of the given widths, ``activation`` between them (none after the last)."""

    features: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"MLP: unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        act = ACTIVATIONS[self.activation]
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i != len(self.features) - 1:
                x = act(x)
        return x


HOMEWORK_FEATURES = (15, 8, 1)  # with 30 inputs: the homework's [30, 15, 8, 1]
