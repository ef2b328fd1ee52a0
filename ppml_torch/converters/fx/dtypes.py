"""torch dtype -> JAX dtype under 32-bit JAX (x64 disabled), as SPU runs it."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import torch

_TO_JNP: dict[torch.dtype, Any] = {
    torch.float32: jnp.float32,
    torch.float64: jnp.float32,  # x64 is disabled: doubles run as float32
    torch.float16: jnp.float16,
    torch.bfloat16: jnp.bfloat16,
    torch.int64: jnp.int32,  # ... and 64-bit integers as int32
    torch.int32: jnp.int32,
    torch.int16: jnp.int16,
    torch.int8: jnp.int8,
    torch.uint8: jnp.uint8,
    torch.bool: jnp.bool_,
}


def to_jnp(dtype: torch.dtype) -> Any:
    """The JAX dtype a torch dtype runs as; raises for complex and other exotic types."""
    if dtype not in _TO_JNP:
        raise TypeError(
            f"torch dtype {dtype} has no JAX counterpart here (supported: {sorted(map(str, _TO_JNP))})"
        )
    return _TO_JNP[dtype]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A constant tensor as a numpy array of the dtype JAX will run it as."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return np.asarray(jnp.asarray(t.float().numpy(), dtype=jnp.bfloat16))
    return t.numpy().astype(np.dtype(to_jnp(t.dtype)), copy=False)
