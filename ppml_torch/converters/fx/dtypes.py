"""torch dtype -> JAX dtype under 32-bit JAX (x64 disabled), as SPU runs it.

The 64->32-bit rule itself is :data:`ppml_torch.dtypes.CASTS_64_TO_32` (one table for the
runners, this converter and ``export-stablehlo``); this module only maps torch's dtypes onto
numpy's names.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import torch

from ppml_torch.dtypes import CASTS_64_TO_32

# the torch dtypes the converter runs, by their numpy name (bfloat16: JAX's ml_dtypes type)
_SUPPORTED: dict[torch.dtype, str] = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
_TO_JNP: dict[torch.dtype, Any] = {
    t: getattr(jnp, "bool_" if n == "bool" else CASTS_64_TO_32.get(n, n))
    for t, n in _SUPPORTED.items()
}


def is_supported(dtype: torch.dtype) -> bool:
    """True for the torch dtypes the converter runs (real floats, integers and bool)."""
    return dtype in _TO_JNP


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
