"""norm lowerings vs torch: layer norm, batch norm (eval, training, no statistics), group norm.

Batch norm in training mode also returns the updated running statistics; through ``convert``
they come back with ``buffer_updates="return"`` (module-level tests below).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
from fx_op_cases import case, positive, randn, run
from opinfo_cases import check, samples

from ppml_torch.converters.fx import convert, registry
from ppml_torch.converters.fx.errors import ConversionError
from ppml_torch.testing import Tolerance, assert_close

aten = torch.ops.aten
_TOL = Tolerance(atol=2e-5, rtol=2e-5)  # float32 sums in another order than torch's
x = randn(3, 4, 6)
img = randn(4, 3, 5, 6) * 2 + 0.5

CASES = [
    # mean and rstd (outputs 1, 2) are not differentiable in torch; graphs only use output 0
    case(
        aten.native_layer_norm.default,
        x,
        [6],
        randn(6),
        randn(6),
        1e-5,
        grad=(0, 2, 3),
        grad_outputs=(0,),
    ),
    case(
        aten.native_layer_norm.default,
        x,
        [4, 6],
        None,
        None,
        1e-5,
        label="no-affine-2d",
        grad_outputs=(0,),
    ),
    case(
        aten._native_batch_norm_legit_no_training.default,
        randn(4, 3, 5),
        randn(3),
        randn(3),
        randn(3),
        positive(3),
        0.1,
        1e-5,
        grad=(0, 1, 2),
        grad_outputs=(0,),
    ),
    case(
        aten._native_batch_norm_legit_no_training.default,
        img,
        None,
        None,
        randn(3),
        positive(3),
        0.1,
        1e-3,
        grad=(0,),
        grad_outputs=(0,),
        label="2d-no-affine",
    ),
    # outputs: out, batch mean, batch rstd, new running mean, new running var (unbiased)
    case(
        aten._native_batch_norm_legit_functional.default,
        img,
        randn(3),
        randn(3),
        randn(3),
        positive(3),
        True,
        0.1,
        1e-5,
        grad=(0, 1, 2),
        grad_outputs=(0,),
    ),
    case(
        aten._native_batch_norm_legit_functional.default,
        randn(8, 5),
        None,
        None,
        randn(5),
        positive(5),
        True,
        0.3,
        1e-5,
        grad=(0,),
        grad_outputs=(0,),
        label="1d-no-affine",
    ),
    case(
        aten._native_batch_norm_legit.no_stats,
        img,
        randn(3),
        randn(3),
        True,
        0.1,
        1e-5,
        grad=(0, 1, 2),
        grad_outputs=(0,),
    ),
    case(
        aten.native_group_norm.default,
        randn(2, 6, 5, 4),
        randn(6),
        randn(6),
        2,
        6,
        20,
        3,
        1e-5,
        grad=(0, 1, 2),
        grad_outputs=(0,),
    ),
    case(
        aten.native_group_norm.default,
        randn(2, 4, 7),
        None,
        None,
        2,
        4,
        7,
        4,
        1e-5,
        grad=(0,),
        grad_outputs=(0,),
        label="per-channel-no-affine",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_norm(c):
    run(c)


_W, _B, _M, _V = (jnp.asarray(positive(3).numpy()) for _ in range(4))
_G = jnp.asarray(randn(6).numpy())
# op, input, other arguments, products over the activations: the scale's, plus the square
# of the batch variance in training mode (group norm squares in its (N, G, -1) view)
_CALLS = {
    "eval": (
        aten._native_batch_norm_legit_no_training.default,
        img,
        (_W, _B, _M, _V, 0.1, 1e-5),
        1,
    ),
    "train": (
        aten._native_batch_norm_legit_functional.default,
        img,
        (_W, _B, _M, _V, True, 0.1, 1e-5),
        2,
    ),
    "group": (aten.native_group_norm.default, randn(4, 6, 5), (_G, _G, 4, 6, 5, 3, 1e-5), 1),
}


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_one_secret_product_over_the_activations(name):
    """The scale (weight * rsqrt(var + eps)) is formed on the statistics, then multiplies the
    activations once: catches a lowering that multiplies by rstd and by the weight in turn
    (twice the secret products over the activations under MPC)."""
    op, xx, rest, want = _CALLS[name]
    fn = registry.load()[op].fn
    xx = jnp.asarray(xx.numpy())
    jaxpr = jax.make_jaxpr(lambda a: fn(a, *rest)[0])(xx)
    products = [
        e for e in jaxpr.eqns if e.primitive.name == "mul" and e.outvars[0].aval.shape == xx.shape
    ]
    assert len(products) == want, [str(e) for e in products]


class _Net(nn.Module):
    def __init__(self, momentum=0.1):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=momentum)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_in_training_mode_returns_torch_running_statistics(momentum):
    """Outputs use the batch statistics and the returned running statistics equal torch's
    after the same forward (num_batches_tracked included); catches a biased running variance
    or a momentum applied the wrong way round."""
    torch.manual_seed(0)
    net = _Net(momentum).train()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    xb = torch.randn(5, 3, 6, 6)
    cm = convert(net, (xb,), buffer_updates="return")
    assert sorted(cm.extras["buffer_updates"]) == [
        "bn.num_batches_tracked",
        "bn.running_mean",
        "bn.running_var",
    ]
    out, updates = cm.apply(cm.params, xb.numpy())
    expected = net(xb)  # updates net's buffers in place
    assert_close(np.asarray(out), expected.detach().numpy(), tol=_TOL)
    for key in cm.extras["buffer_updates"]:
        assert_close(np.asarray(updates[key]), net.state_dict()[key].numpy(), tol=_TOL, what=key)
    assert int(updates["bn.num_batches_tracked"]) == 1

    def loss(p):
        return jnp.sum(cm.apply(p, xb.numpy())[0])

    floats = {k: v for k, v in cm.params.items() if jnp.issubdtype(v.dtype, jnp.floating)}
    grads = jax.grad(lambda f: loss({**cm.params, **f}))(floats)
    net.zero_grad()
    net(xb).sum().backward()
    for name, p in net.named_parameters():
        assert_close(np.asarray(grads[name]), p.grad.numpy(), tol=_TOL, what=f"grad {name}")


def test_batch_norm_in_training_mode_is_refused_without_buffer_updates():
    """The default keeps fit's contract (a module that updates buffers is refused), naming
    the option; catches a conversion that would silently drop the running statistics."""
    m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).train()
    with pytest.raises(ConversionError, match=r"buffer_updates='return'") as info:
        convert(m, (torch.randn(4, 3),))
    assert "1.running_mean (BUFFER_MUTATION)" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "module, shape",
    [
        (nn.BatchNorm2d(3, track_running_stats=False), (4, 3, 5, 5)),
        (nn.InstanceNorm2d(3, affine=True), (2, 3, 5, 6)),
        (nn.InstanceNorm1d(4), (2, 4, 9)),
        (nn.GroupNorm(2, 6), (3, 6, 4, 4)),
    ],
    ids=["bn-no-stats", "instance2d", "instance1d", "group"],
)
def test_norm_modules_match_torch(module, shape):
    torch.manual_seed(1)
    for p in module.parameters():
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.3)
    xb = torch.randn(*shape) * 1.5 + 0.3
    cm = convert(module.train(), (xb,))
    assert_close(np.asarray(cm.apply(cm.params, xb.numpy())), module(xb).detach().numpy(), tol=_TOL)


_OPINFO = [
    s
    for name in ("batch_norm", "group_norm", "instance_norm", "layer_norm")
    for s in samples(f"nn.functional.{name}", limit=6)
]


@pytest.mark.parametrize("sid, info, sample", _OPINFO, ids=[s[0] for s in _OPINFO])
def test_opinfo_samples(sid, info, sample):
    """OpInfo's batch_norm samples run in training mode too: the running statistics are
    buffers, and their updates are compared with torch's in-place ones."""
    check(info, sample)
