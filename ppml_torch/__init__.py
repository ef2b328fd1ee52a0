"""ppml-torch: PyTorch models trained and run under secure multi-party computation (SPU).

Public entry points (imported lazily, so ``import ppml_torch`` is cheap):

* ``convert(module, example_args, example_kwargs=None)``: graph conversion (torch.export ->
  JAX), returns a :class:`ConvertedModel`;
* ``to_flax(module)`` / ``from_flax(params, module)``: weight transfer to and from Flax;
* ``ppml_torch.runners``: sessions on ``cpu``, ``spu`` and ``secretflow``;
* ``generate(module, prompt_ids, max_new_tokens, session=..., route=...)``: greedy GPT-2
  generation with a KV cache, under MPC or in plaintext (``ppml_torch/generate/``).
"""

from __future__ import annotations

from typing import Any

from .model import ConvertedModel

__all__ = ["ConvertedModel", "convert", "from_flax", "generate", "to_flax"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "convert":
        from .converters.fx import convert

        return convert
    if name in ("to_flax", "from_flax"):
        from .converters import flax as _flax

        return getattr(_flax, name)
    if name == "generate":  # the package is callable: ppml_torch.generate(...) generates
        import importlib

        return importlib.import_module(".generate", __name__)
    raise AttributeError(f"module 'ppml_torch' has no attribute {name!r}")
