"""ppml-torch: PyTorch models trained and run under secure multi-party computation (SPU).

Public entry points (imported lazily, so ``import ppml_torch`` is cheap):

* ``convert(module, example_args, example_kwargs=None)``: graph conversion (torch.export ->
  JAX), returns a :class:`ConvertedModel`;
* ``to_flax(module)`` / ``from_flax(params, module)``: weight transfer to and from Flax;
* ``calibrate(model, sample_inputs, field=..., fraction_bits=...)``: the fixed-point range
  of every module on sample data, before any MPC run (:mod:`ppml_torch.calibrate`);
* ``ppml_torch.runners``: sessions on ``cpu``, ``spu`` and ``secretflow``.
"""

from __future__ import annotations

from typing import Any

from .model import ConvertedModel

__all__ = ["ConvertedModel", "calibrate", "convert", "from_flax", "to_flax"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "convert":
        from .converters.fx import convert

        return convert
    if name in ("to_flax", "from_flax"):
        from .converters import flax as _flax

        return getattr(_flax, name)
    if name == "calibrate":  # the package, callable as calibrate(model, sample_inputs, ...)
        import importlib

        return importlib.import_module(f"{__name__}.calibrate")
    raise AttributeError(f"module 'ppml_torch' has no attribute {name!r}")
