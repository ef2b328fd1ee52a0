"""The Flax MLP: the homework's breast-cancer network, and the target of torch MLP transfer.

``MLP(features=(15, 8, 1), activation="relu")`` on 30 inputs is the homework model
``[30, 15, 8, 1]``: Dense layers with the activation between them, none after the last.
Layers are named ``Dense_0``, ``Dense_1``, ... (Flax's default), kernels are ``(in, out)``.

``dropout`` places ``nn.Dropout`` layers (no parameters) by stage: stage 0 is the input, stage
``2i + 1`` the output of ``Dense_i``, stage ``2i + 2`` the output of its activation.  They run
when ``deterministic=False``, with masks from the seed's stream (:mod:`ppml_torch.dropout`).
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
    dropout: Sequence[tuple[int, float]] = ()  # (stage, rate), in the order they run

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"MLP: unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        act = ACTIVATIONS[self.activation]

        def drop(x: jax.Array, stage: int) -> jax.Array:
            for at, rate in self.dropout:
                if at == stage:
                    x = nn.Dropout(rate)(x, deterministic)
            return x

        x = drop(x, 0)
        for i, width in enumerate(self.features):
            x = drop(nn.Dense(width)(x), 2 * i + 1)
            if i != len(self.features) - 1:
                x = drop(act(x), 2 * i + 2)
        return x


HOMEWORK_FEATURES = (15, 8, 1)  # with 30 inputs: the homework's [30, 15, 8, 1]
