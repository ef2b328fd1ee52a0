"""PyTorch's own OpInfo samples (``op_db``) run through ``convert`` and compared with torch.

Each sample (an input, positional and keyword arguments) becomes a one-call module whose
tensors are its inputs (non-tensor arguments are fixed at conversion); batch norm's running
statistics become buffers, converted with ``buffer_updates="return"``, and their updates
are compared too.  Outputs are compared in plaintext, and ``jax.grad`` of
``sum(out * cotangent)`` with torch autograd for every float input.  Large sample lists are
thinned evenly (``limit``).

Tolerance: float32 kernels of torch and XLA sum in other orders, so the error scales with the
largest magnitude involved (OpInfo draws values up to about 9, and a transposed 3-D
convolution's outputs reach 900): ``atol`` is 2e-5 times the largest expected magnitude (at
least 1); gradients, sums over the batch, get 1e-4.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.utils._pytree as pytree

from ppml_torch.converters.fx import convert
from ppml_torch.testing import Tolerance, assert_close

_BUFFERS = ("running_mean", "running_var")
_BUFFER_ARGS = {"nn.functional.batch_norm": (0, 1)}  # positions of sample.args that are buffers


def _tol(expected: np.ndarray, floor: float) -> Tolerance:
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    return Tolerance(atol=floor * scale, rtol=floor)


@functools.cache
def _op_db():
    from torch.testing._internal.common_methods_invocations import op_db

    return {(o.name, o.variant_test_name): o for o in op_db}


def samples(name: str, variant: str = "", limit: int = 12) -> list:
    """``(id, OpInfo, sample)`` for the first float32 samples of an OpInfo, evenly thinned."""
    info = _op_db()[(name, variant)]
    all_samples = list(info.sample_inputs("cpu", torch.float32, requires_grad=False))
    step = max(1, len(all_samples) // limit)
    label = name.removeprefix("nn.functional.") + (f".{variant}" if variant else "")
    return [(f"{label}-{i}", info, s) for i, s in enumerate(all_samples[::step][:limit])]


class _Call(torch.nn.Module):
    """``op(input, *args, **kwargs)`` with every tensor an input (buffers: see above)."""

    def __init__(self, info, sample):
        super().__init__()
        self.op = info.op
        self.kwargs = dict(sample.kwargs)
        args = list(sample.args)
        self.buffer_args = {}
        positions = _BUFFER_ARGS.get(info.name, ())
        for pos, k in zip(positions, _BUFFERS[: len(positions)], strict=True):
            if isinstance(args[pos], torch.Tensor):
                self.register_buffer(k, args[pos].clone())
                self.buffer_args[pos], args[pos] = k, None
        for k in _BUFFERS:
            if isinstance(self.kwargs.get(k), torch.Tensor):
                self.register_buffer(k, self.kwargs.pop(k).clone())
                self.kwargs[k] = None
        self.tree = (sample.input, tuple(args), self.kwargs)
        leaves, self.spec = pytree.tree_flatten(self.tree)
        self.slots = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
        self.fixed = leaves

    def inputs(self):
        return tuple(self.fixed[i].detach().clone() for i in self.slots)

    def forward(self, *tensors):
        leaves = list(self.fixed)
        for i, t in zip(self.slots, tensors, strict=True):
            leaves[i] = t
        x, args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        args, kwargs = list(args), dict(kwargs)
        for pos, k in self.buffer_args.items():
            args[pos] = getattr(self, k)
        for k in _BUFFERS:
            if k in kwargs and hasattr(self, k):
                kwargs[k] = getattr(self, k)
        return self.op(x, *args, **kwargs)


def check(info, sample) -> None:
    """Convert the sample's call; outputs, gradients (and updated buffers) as torch's."""
    module = _Call(info, sample)
    inputs = module.inputs()
    updates = bool(list(module.buffers()))
    cm = convert(module, inputs, buffer_updates="return" if updates else "refuse")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    expected = module(*inputs)
    got = cm.apply(cm.params, *[t.numpy() for t in inputs])
    if updates:
        got, new_buffers = got
        for k, v in new_buffers.items():
            want = module.state_dict()[k].numpy()
            assert_close(v, want, tol=_tol(want, 2e-5), what=f"updated {k}")
        module.load_state_dict(before)
    exp_leaves = [t for t in pytree.tree_leaves(expected) if isinstance(t, torch.Tensor)]
    got_leaves = jax.tree_util.tree_leaves(got)
    assert len(got_leaves) == len(exp_leaves)
    for i, (g, e) in enumerate(zip(got_leaves, exp_leaves, strict=True)):
        want = e.detach().numpy()
        assert_close(np.asarray(g), want, tol=_tol(want, 2e-5), what=f"output {i}")
    float_pos = [i for i, t in enumerate(inputs) if t.is_floating_point()]
    if not float_pos or not any(e.is_floating_point() for e in exp_leaves):
        return
    leaves = [t.clone().requires_grad_(i in float_pos) for i, t in enumerate(inputs)]
    outs = [t for t in pytree.tree_leaves(module(*leaves)) if isinstance(t, torch.Tensor)]
    gen = torch.Generator().manual_seed(0)
    cots = [torch.randn(o.shape, generator=gen) if o.is_floating_point() else None for o in outs]
    loss = sum((o * c).sum() for o, c in zip(outs, cots, strict=True) if c is not None)
    torch_grads = torch.autograd.grad(loss, [leaves[i] for i in float_pos], allow_unused=True)
    module.load_state_dict(before)

    def f(*floats):
        full = [jnp.asarray(t.numpy()) for t in inputs]
        for i, v in zip(float_pos, floats, strict=True):
            full[i] = v
        res = cm.apply(cm.params, *full)
        res = jax.tree_util.tree_leaves(res[0] if updates else res)
        return sum(jnp.sum(r * c.numpy()) for r, c in zip(res, cots, strict=True) if c is not None)

    jax_grads = jax.grad(f, argnums=tuple(range(len(float_pos))))(
        *[jnp.asarray(inputs[i].numpy()) for i in float_pos]
    )
    for pos, g, t in zip(float_pos, jax_grads, torch_grads, strict=True):
        want = np.zeros(inputs[pos].shape, np.float32) if t is None else t.numpy()
        assert_close(np.asarray(g), want, tol=_tol(want, 1e-4), what=f"grad of input {pos}")
