"""ppml-torch: PyTorch models trained and run under secure multi-party computation (SPU).

Public entry points (imported lazily, so ``import ppml_torch`` is cheap):

* ``convert(module, example_args, example_kwargs=None)``: graph conversion (torch.export ->
  JAX), returns a :class:`ConvertedModel`;
* ``to_flax(module)`` / ``from_flax(params, module)``: weight transfer to and from Flax;
* ``fit(module, loss_fn, optimizer, data, ...)`` / ``predict(module, inputs, ...)``: training
  and inference of a torch module inside a session (``ppml_torch.train``);
* ``generate(module, prompt_ids, max_new_tokens, session=..., route=...)``: greedy GPT-2
  generation with a KV cache, under MPC or in plaintext (``ppml_torch.generation``);
* ``calibrate(model, sample_inputs, field=..., fraction_bits=...)``: per-module fixed-point
  headroom and risks, from a plaintext run of the program MPC will run
  (``ppml_torch.calibration``);
* ``check_equivalence(module, example_inputs, runs=..., grads=...)``: the module against its
  conversions in plaintext and under MPC, as a table (:mod:`ppml_torch.equivalence`);
* ``profile(module, example_inputs, session=..., grads=...)``: bytes, sends and time per torch
  module and kind of work under MPC, and LAN/WAN estimates (:mod:`ppml_torch.profiling`);
* ``ppml_torch.runners``: sessions on ``cpu``, ``spu`` and ``secretflow``.
"""

from __future__ import annotations

from typing import Any

from .model import ConvertedModel

__all__ = [
    "ConvertedModel",
    "calibrate",
    "check_equivalence",
    "convert",
    "fit",
    "from_flax",
    "generate",
    "predict",
    "profile",
    "to_flax",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "convert":
        from .converters.fx import convert

        return convert
    if name in ("to_flax", "from_flax"):
        from .converters.flax import from_flax, to_flax

        return {"to_flax": to_flax, "from_flax": from_flax}[name]
    if name in ("fit", "predict"):
        from .train import fit, predict

        return {"fit": fit, "predict": predict}[name]
    if name == "generate":
        from .generation import generate

        return generate
    if name == "calibrate":
        from .calibration import calibrate

        return calibrate
    if name == "profile":
        from .profiling import profile

        return profile
    if name == "check_equivalence":
        from .equivalence.check import check_equivalence

        return check_equivalence
    raise AttributeError(f"module 'ppml_torch' has no attribute {name!r}")
