"""Eval-mode batch norm folded into the convolution before it: ``convert(..., fold_batch_norm=True)``.

``bn(conv(x, W, b))`` with running statistics ``(mean, var)`` and affine ``(g, beta)`` equals
``conv(x, W * s) + (beta + (b - mean) * s)`` with ``s = g / sqrt(var + eps)`` per output
channel: the same function in real arithmetic.  The fold is a plaintext transform of the
weights, done here at conversion (by whoever converts: the weights' owner), so under MPC the
batch norm costs nothing at all: no rsqrt of the secret variance (its rounds), no product over
the activations.  Measured in ``bench/bench_cnn_ops.py`` (``bench/README.md``).

Folded when exact: the batch norm reads a (non-transposed) convolution's output that nothing
else reads, and both read their weights straight from the params, nowhere else.  The folded
weights replace the convolution's and the batch norm's params under two new keys,
``<conv>.weight@folded`` and ``<conv>.bias@folded``, so the state_dict's weights are refused
by ``apply`` (they would give a wrong number) and the model is for inference: its params do
not map back to the module (``state_dict`` raises; convert without folding to train).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ppml_torch.converters.fx.constants import Ref, refs
from ppml_torch.converters.fx.program import Program, Step

aten = torch.ops.aten
FOLDED = "@folded"


def _add_channel_bias(y: Any, bias: Any) -> tuple[Any, Any, Any]:
    import jax.numpy as jnp

    out = y + jnp.reshape(bias, (1, -1) + (1,) * (jnp.ndim(y) - 2))
    empty = jnp.zeros((0,), jnp.result_type(y))
    return out, empty, empty


def fold_batch_norm(program: Program, params: Mapping[str, Any]) -> tuple[Program, dict, list]:
    """The program with every exact conv -> eval batch norm pair folded, its params (numpy,
    folded in plaintext) and the folded pairs ``[(conv weight key, bn weight-or-bias key)]``."""
    slot_key = dict(program.param_slots)
    readers: dict[str, int] = {}
    for step in program.steps:
        for r in refs((step.args, step.kwargs)):
            readers[r.name] = readers.get(r.name, 0) + 1
    for r in refs(program.outputs):
        readers[r.name] = readers.get(r.name, 0) + 1
    by_name = {s.name: s for s in program.steps}

    def param(x: Any) -> str | None:  # the params key a Ref reads, if it is read once
        if isinstance(x, Ref) and x.name in slot_key and readers.get(x.name) == 1:
            return x.name
        return None

    steps = list(program.steps)
    new_params = {k: np.asarray(v) for k, v in params.items()}
    slots = list(program.param_slots)
    folded = []
    for i, bn in enumerate(steps):
        if bn.op != aten._native_batch_norm_legit_no_training.default:
            continue
        x, w, b, mean, var, _, eps = bn.args
        conv = by_name.get(x.name) if isinstance(x, Ref) else None
        if conv is None or conv.op != aten.convolution.default or readers.get(conv.name) != 1:
            continue
        cw, cb, transposed = conv.args[1], conv.args[2], conv.args[6]
        names = [param(v) for v in (cw, mean, var)]
        extra = [param(v) for v in (w, b, cb) if v is not None]
        if transposed or None in names or None in extra:
            continue
        key = lambda ref: slot_key[ref.name]  # noqa: E731
        s = np.asarray(new_params[key(w)]) if w is not None else 1.0
        s = s / np.sqrt(new_params[key(var)].astype(np.float64) + eps)
        weight = new_params[key(cw)] * s.reshape(-1, *([1] * (new_params[key(cw)].ndim - 1)))
        shift = -new_params[key(mean)] * s
        if b is not None:
            shift = shift + new_params[key(b)]
        if cb is not None:
            shift = shift + new_params[key(cb)] * s
        conv_w = key(cw)
        wkey, bkey = conv_w + FOLDED, conv_w.removesuffix(".weight") + ".bias" + FOLDED
        for ref in [cw, mean, var, *(v for v in (w, b, cb) if v is not None)]:
            new_params.pop(key(ref), None)
            slots = [sl for sl in slots if sl[0] != ref.name]
        new_params[wkey] = weight.astype(np.float32)
        new_params[bkey] = shift.astype(np.float32)
        wph, bph = f"{conv.name}{FOLDED}_w", f"{conv.name}{FOLDED}_b"
        slots += [(wph, wkey), (bph, bkey)]
        args = list(conv.args)
        args[1], args[2] = Ref(wph), None
        steps[steps.index(conv)] = dataclasses.replace(conv, args=tuple(args))
        steps[i] = Step(bn.name, aten.add.Tensor, _add_channel_bias, (Ref(conv.name), Ref(bph)), {},
                        bn.meta, bn.where)  # fmt: skip
        folded.append((conv_w, key(w) if w is not None else key(mean)))
    # integer buffers of the folded batch norms (num_batches_tracked) stay in the params,
    # unread, as apply expects every key it was given at conversion
    return dataclasses.replace(program, steps=steps, param_slots=slots), new_params, folded
