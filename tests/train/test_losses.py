"""Torch losses as JAX functions: values and gradients against torch, refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppml_torch.testing import Tolerance, assert_close
from ppml_torch.train.losses import LossMappingError, from_torch

TOL = Tolerance(atol=1e-6, rtol=1e-5)


def _check(loss_module, output: torch.Tensor, target: torch.Tensor, example=None) -> None:
    """Value and d loss / d output against torch (reduced losses: grad of the value; 'none':
    grad of a fixed weighted sum)."""
    loss = from_torch(loss_module, example)
    out_t = output.clone().requires_grad_(True)
    ref = loss_module(out_t, target)
    probe = torch.linspace(0.5, 1.5, ref.numel()).reshape(ref.shape)
    (ref * probe).sum().backward()

    o, t, p = jnp.asarray(output.numpy()), jnp.asarray(target.numpy()), jnp.asarray(probe.numpy())
    got = loss(o, t)
    grad = jax.grad(lambda x: jnp.sum(loss(x, t) * p))(o)
    assert_close(np.asarray(got), ref.detach().numpy(), tol=TOL, what=f"{loss.name} value")
    assert_close(np.asarray(grad), out_t.grad.numpy(), tol=TOL, what=f"{loss.name} grad")


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse(reduction: str) -> None:
    _check(torch.nn.MSELoss(reduction=reduction), _x(6, 3), _x(6, 3, seed=1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "weight", "pos_weight", "both"])
def test_bce_with_logits(reduction: str, weights: str) -> None:
    kw = {}
    if weights in ("weight", "both"):
        kw["weight"] = torch.tensor([0.5, 1.0, 2.0])
    if weights in ("pos_weight", "both"):
        kw["pos_weight"] = torch.tensor([3.0, 0.5, 1.0])
    target = (torch.rand(5, 3, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    _check(torch.nn.BCEWithLogitsLoss(reduction=reduction, **kw), _x(5, 3), target)


CE_OPTIONS = {
    "plain": {},
    "weight": {"weight": torch.tensor([0.2, 1.0, 3.0, 0.7])},
    "ignore_index": {"ignore_index": 2},
    "label_smoothing": {"label_smoothing": 0.1},
    "all": {
        "weight": torch.tensor([0.2, 1.0, 3.0, 0.7]),
        "ignore_index": 1,
        "label_smoothing": 0.2,
    },
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", list(CE_OPTIONS))
def test_cross_entropy_class_indices(reduction: str, options: str) -> None:
    target = torch.tensor([0, 2, 1, 3, 2, 1])
    _check(torch.nn.CrossEntropyLoss(reduction=reduction, **CE_OPTIONS[options]), _x(6, 4), target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_sequence_and_unbatched(reduction: str) -> None:
    """Class axis at dim 1 of (N, C, T) as in torch (a GPT's logits transposed), and (C,)."""
    target = torch.tensor([[0, 2, 4], [1, 1, 3]])
    _check(torch.nn.CrossEntropyLoss(reduction=reduction), _x(2, 5, 3), target)
    _check(torch.nn.CrossEntropyLoss(reduction=reduction), _x(5), torch.tensor(3))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", ["plain", "weight", "label_smoothing"])
def test_cross_entropy_probabilities(reduction: str, options: str) -> None:
    target = torch.softmax(_x(6, 4, seed=3), dim=1)
    _check(torch.nn.CrossEntropyLoss(reduction=reduction, **CE_OPTIONS[options]), _x(6, 4), target)


def test_mse_refuses_broadcasting_shapes() -> None:
    """torch only warns and broadcasts (n, 1) against (n,) to (n, n): refused here."""
    loss = from_torch(torch.nn.MSELoss())
    with pytest.raises(LossMappingError, match="differ in shape"):
        loss(jnp.zeros((4, 1)), jnp.zeros((4,)))


def test_user_function_through_the_graph_converter() -> None:
    def my_loss(output, target):
        return torch.mean(torch.abs(output - target) ** 1.5) + 0.1 * F.mse_loss(output, target)

    out, tgt = _x(4, 3), _x(4, 3, seed=1)
    loss = from_torch(my_loss, example=(out, tgt))
    assert loss.route == "graph" and loss.shapes == ((4, 3), (4, 3))
    _check(my_loss, out, tgt, example=(out, tgt))


def test_other_torch_loss_module_through_the_graph_converter() -> None:
    out, tgt = _x(4, 3), _x(4, 3, seed=1)
    _check(torch.nn.SmoothL1Loss(beta=0.5), out, tgt, example=(out, tgt))


def test_user_function_needs_example() -> None:
    with pytest.raises(LossMappingError, match="needs example"):
        from_torch(lambda o, t: ((o - t) ** 2).mean())


def test_refuses_non_callable() -> None:
    with pytest.raises(LossMappingError, match="not a loss"):
        from_torch("mse")  # type: ignore[arg-type]


def test_refuses_trainable_loss_parameters() -> None:
    class Learned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, o, t):
            return self.scale * ((o - t) ** 2).mean()

    with pytest.raises(LossMappingError, match="trainable parameters"):
        from_torch(Learned(), example=(_x(2), _x(2)))


def test_refuses_what_the_converter_cannot_lower() -> None:
    def sorted_loss(o, t):
        return (torch.sort(o, dim=1).values - t).abs().mean()

    with pytest.raises(LossMappingError, match="sorted_loss") as info:
        from_torch(sorted_loss, example=(_x(3, 4), _x(3, 4, seed=1)))
    assert "\n" not in str(info.value)


MPC_CASES = {
    "mse": (lambda: torch.nn.MSELoss(), lambda: (_x(8, 2) / 2, _x(8, 2, seed=1) / 2)),
    "bce": (
        lambda: torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 0.5])),
        lambda: (_x(8, 2) / 2, (_x(8, 2, seed=1) > 0).float()),
    ),
    "ce": (
        lambda: torch.nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1),
        lambda: (_x(8, 4) / 2, torch.tensor([0, 1, 2, 3, 3, 2, 1, 1])),
    ),
    "user_function": (
        lambda: lambda o, t: torch.mean((o - t) ** 2 * torch.sigmoid(t)) + 0.1 * o.abs().mean(),
        lambda: (_x(8, 2) / 2, _x(8, 2, seed=1) / 2),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(MPC_CASES))
def test_losses_on_spu(case: str) -> None:
    """Value and gradient under SEMI2K/FM64 (output from alice, target secret from bob)."""
    from ppml_torch.testing import tolerance
    from tests.sessions import get_session, record_error

    make, data = MPC_CASES[case]
    module, (output, target) = make(), data()
    loss = from_torch(module, example=(output, target))
    out_t = output.clone().requires_grad_(True)
    ref = module(out_t, target)
    ref.backward()

    session = get_session("spu", "SEMI2K", "FM64")
    oh = session.put(output.numpy(), owner="alice")
    th = session.put(target.numpy(), owner="bob")
    value, grad = session.reveal(session.call(jax.value_and_grad(loss.fn), oh, th))
    tol = tolerance("SEMI2K", "FM64")
    err = assert_close(value, ref.detach().numpy(), tol=tol, what=f"{case} value")
    err = max(err, assert_close(grad, out_t.grad.numpy(), tol=tol, what=f"{case} grad"))
    record_error(f"SEMI2K/FM64 loss {case}", err)
