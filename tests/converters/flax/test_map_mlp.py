"""ppml_torch/converters/flax/mlp.py: torch MLPs <-> models/mlp.MLP."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from flax_cases import assert_state_dicts_equal, homework_mlp

from ppml_torch.converters.flax import WeightMapError, from_flax, to_flax
from ppml_torch.converters.flax import mlp as mlp_map


def _x(n: int = 7, d: int = 30) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(3))


def _check_outputs(module: nn.Module, d: int = 30) -> float:
    cm = to_flax(module)
    x = _x(d=d)
    with torch.no_grad():
        want = module(x).numpy()
    got = np.asarray(cm(jnp.asarray(x.numpy())))
    assert got.shape == want.shape
    err = float(np.abs(got - want).max())
    assert err < 1e-5, f"max |flax - torch| = {err}"
    return err


ACTS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
}


@pytest.mark.parametrize("act", sorted(ACTS))
def test_sequential_each_activation_matches_torch(act):
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(30, 12),
        ACTS[act](),
        nn.Dropout(0.1),
        nn.Linear(12, 5),
        ACTS[act](),
        nn.Identity(),
        nn.Linear(5, 2),
    ).eval()
    _check_outputs(m)
    spec = to_flax(m).extras["spec"]
    assert spec == {
        "family": "mlp",
        "widths": [30, 12, 5, 2],
        "activation": act,
        "final_activation": None,
    }


def test_homework_mlp_round_trip_is_bit_exact():
    m = homework_mlp()
    cm = to_flax(m)
    _check_outputs(m)
    params = cm.params["params"]
    assert params["Dense_0"]["kernel"].shape == (30, 15)  # transposed from (15, 30)
    np.testing.assert_array_equal(
        np.asarray(params["Dense_0"]["kernel"]), m[0].weight.detach().numpy().T
    )
    assert_state_dicts_equal(cm.state_dict(), m.state_dict())
    target = from_flax(cm.params, homework_mlp(seed=5))
    assert_state_dicts_equal(target.state_dict(), m.state_dict())


class FunctionalMLP(nn.Module):
    """Layers registered out of order, activation as a function: fx reads the true order."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(8, 3)
        self.inp = nn.Linear(30, 8)

    def forward(self, x):
        return torch.sigmoid(self.out(F.gelu(self.inp(x), approximate="tanh")))


def test_custom_module_in_forward_order_with_final_activation():
    m = FunctionalMLP()
    cm = to_flax(m)
    assert cm.extras["spec"] == {
        "family": "mlp",
        "widths": [30, 8, 3],
        "activation": "gelu_tanh",
        "final_activation": "sigmoid",
    }
    assert cm.extras["weight_map"].pairs["inp.weight"] == ("Dense_0", "kernel")
    _check_outputs(m)
    assert_state_dicts_equal(cm.state_dict(), m.state_dict())


def test_trained_params_come_back_under_torch_names():
    m = homework_mlp()
    cm = to_flax(m)
    trained = {
        "params": {
            k: {n: v + 1.0 for n, v in layer.items()} for k, layer in cm.params["params"].items()
        }
    }
    sd = cm.state_dict(trained)
    assert torch.equal(sd["0.bias"], m[0].bias.detach() + 1.0)
    assert torch.equal(sd["4.weight"], m[4].weight.detach() + 1.0)


def test_unknown_layers_are_listed_with_names_and_types():
    m = nn.Sequential(
        nn.Linear(30, 8),
        nn.ReLU(),
        nn.Sequential(nn.BatchNorm1d(8), nn.LayerNorm(8)),
        nn.Linear(8, 1),
    )
    with pytest.raises(WeightMapError) as e:
        to_flax(m)
    msg = str(e.value)
    assert "2.0 (BatchNorm1d)" in msg and "2.1 (LayerNorm)" in msg
    assert "ppml_torch.convert" in msg


def test_mixed_hidden_activations_are_listed_and_the_graph_route_named():
    """Issue 19: the Flax route's refusal names the route that takes the model."""
    m = nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 1))
    with pytest.raises(
        WeightMapError,
        match=r"one kind of hidden activation.*relu after 0.*tanh after 2; the graph route "
        r"converts it: route='graph' in fit",
    ) as e:
        to_flax(m)
    assert "\n" not in str(e.value)


def test_functions_that_are_not_a_chain_are_rejected():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.a(x)

    with pytest.raises(WeightMapError, match="not a plain Linear/activation chain"):
        to_flax(Residual())


def test_linear_without_bias_is_rejected():
    with pytest.raises(WeightMapError, match=r"without one: \['1'\]"):
        to_flax(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2, bias=False)))


def test_from_flax_into_other_widths_lists_shapes_and_copies_nothing():
    cm = to_flax(homework_mlp())
    target = nn.Sequential(
        nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)
    )
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightMapError) as e:
        from_flax(cm.params, target)
    msg = str(e.value)
    assert "nothing was copied" in msg
    assert "Dense_0/kernel: (30, 16) vs (30, 15)" in msg
    assert "Dense_1/kernel: (16, 8) vs (15, 8)" in msg
    assert_state_dicts_equal(target.state_dict(), before)


def test_build_from_spec_makes_an_equivalent_sequential():
    m = FunctionalMLP()
    cm = to_flax(m)
    rebuilt = mlp_map.build(cm.extras["spec"])
    assert [type(x).__name__ for x in rebuilt] == ["Linear", "GELU", "Linear", "Sigmoid"]
    assert to_flax(rebuilt).extras["spec"] == cm.extras["spec"]


def test_float64_module_is_rejected():
    with pytest.raises(WeightMapError, match=r"float32.*module.float\(\)"):
        to_flax(homework_mlp().double())
