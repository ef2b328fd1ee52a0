"""Errors raised by the graph converter.  Each names what failed and where to fix it."""

from __future__ import annotations

from ppml_torch.errors import PpmlError


class ConversionError(PpmlError, RuntimeError):
    """The module cannot be converted as it is; the message says what to change."""


class UnsupportedOpError(ConversionError, NotImplementedError):
    """An ATen op in the exported graph has no JAX lowering, or is refused under MPC."""
