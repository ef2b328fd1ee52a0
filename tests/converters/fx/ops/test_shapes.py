"""Shape, indexing, copy and creation lowerings vs torch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
import torch
from fx_op_cases import ONE_HOT, case, ints, primitives, randn, run

from ppml_torch.converters.fx import registry

aten = torch.ops.aten
x = randn(2, 3, 4)
idx = ints(3, 2, 5)

CASES = [
    case(aten.as_strided.default, randn(2, 5, 1, 1), [2, 5, 1, 1], [5, 1, 5, 5], label="restride"),
    case(aten.as_strided.default, randn(4, 6), [3, 2, 2], [6, 2, 1], 1, label="windows"),
    case(aten.view.default, x, [6, -1]),
    case(aten._unsafe_view.default, x, [4, 6]),
    case(aten.reshape.default, x, [-1]),
    case(aten.permute.default, x, [2, 0, 1]),
    case(aten.transpose.int, x, 0, 2),
    case(aten.t.default, randn(3, 4)),
    case(aten.expand.default, randn(3, 1), [2, 3, 5]),
    case(aten.expand.default, randn(3, 1), [-1, 4], label="minus-one"),
    case(aten.unsqueeze.default, x, -1),
    case(aten.squeeze.default, randn(2, 1, 3, 1)),
    case(aten.squeeze.dim, randn(2, 1, 3), 1),
    case(aten.squeeze.dims, randn(2, 1, 3, 1), [1, 3]),
    case(aten.clone.default, x),
    case(aten.alias.default, x),
    case(aten.lift_fresh_copy.default, x),
    case(aten.detach.default, x, grad=()),
    case(aten._to_copy.default, x, dtype=torch.int64, grad=(), label="to-int"),
    case(aten._to_copy.default, ints(5, 3), dtype=torch.float32, grad=(), label="to-float"),
    case(aten._to_copy.default, x, dtype=torch.bool, grad=(), label="to-bool"),
    case(aten.copy.default, x, randn(4), grad=()),  # torch has no derivative for aten.copy
    case(aten.slice.Tensor, x, 2, 1, 3),
    case(aten.slice.Tensor, x, 1, 0, 9223372036854775807, 2, label="huge-end-step"),
    case(aten.slice.Tensor, x, -1, -3, -1, label="negative"),
    case(aten.select.int, x, 1, -1),
    case(aten.slice_scatter.default, x, randn(2, 3, 2), 2, 1, 3, grad=(0, 1)),
    case(aten.select_scatter.default, x, randn(2, 4), 1, 0, grad=(0, 1)),
    case(aten.cat.default, [randn(2, 3), randn(2, 2)], 1, grad=()),
    case(aten.stack.default, [randn(2, 3), randn(2, 3)], 1, grad=()),
    case(aten.split_with_sizes.default, x, [1, 3], 2),
    case(aten.split.Tensor, x, 3, 2),
    case(aten.unbind.int, x, 1),
    case(aten.flip.default, x, [0, 2]),
    case(aten.roll.default, x, [1, -1], [0, 2]),
    case(aten.repeat.default, randn(2, 3), [2, 1, 2]),
    case(aten.constant_pad_nd.default, x, [1, 2, 0, 1], 0.5),
    case(aten.tril.default, randn(4, 4), -1),
    case(aten.triu.default, randn(4, 4), 1),
    case(aten.index.Tensor, x, [None, idx[:, :3]], const=(1,), label="const-index"),
    case(aten.index.Tensor, x, [idx[:1, :2] % 2, None, idx[:1, :2]], label="secret-index"),
    case(
        aten.index.Tensor,
        x,
        [idx[:1, :2] % 2, None, idx[:1, :2]],
        options=ONE_HOT,
        label="secret-index-one-hot",
    ),
    case(
        aten.index.Tensor,
        x,
        [None, idx[:, :3] - 3, idx[:1, :3]],
        label="secret-adjacent-negative",
    ),
    case(
        aten.index.Tensor,
        x,
        [torch.arange(2)[:, None], None, idx[:, :3]],
        const=(),
        options=ONE_HOT,
        label="mixed-one-hot",
    ),
    case(aten.index_select.default, x, 2, ints(4, 6), const=(2,), label="const-index"),
    case(aten.index_select.default, x, 1, ints(3, 5), label="secret-index"),
    case(aten.index_select.default, x, 1, ints(3, 5), options=ONE_HOT, label="secret-one-hot"),
    case(aten.index_select.default, x, 2, ints(4), label="secret-0d-index"),
    case(aten.gather.default, x, 2, ints(4, 2, 3, 6), const=(2,), label="const-index"),
    case(aten.gather.default, x, 1, ints(3, 2, 2, 4), label="secret-index"),
    case(aten.gather.default, x, 1, ints(3, 2, 2, 4), options=ONE_HOT, label="secret-one-hot"),
    case(aten.gather.default, randn(4, 6), 1, ints(6, 4, 1), label="class-labels"),
    case(
        aten.gather.default, randn(4, 6), 1, ints(6, 4, 1), options=ONE_HOT, label="labels-one-hot"
    ),
    case(aten.full.default, [2, 3], 1.5, grad=()),
    case(aten.full_like.default, x, 2.0, grad=()),
    case(aten.scalar_tensor.default, -2.5, grad=()),
    case(aten.arange.start_step, 1, 10, 3, grad=()),
    case(aten.arange.default, 5, grad=()),
    case(aten.arange.start, 2, 7, grad=()),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_shapes(c):
    run(c)


def test_assert_tensor_metadata_is_a_no_op():
    from ppml_torch.converters.fx.registry import load

    assert (
        load()[aten._assert_tensor_metadata.default].fn(x.numpy(), None, None, torch.float32)
        is None
    )


@pytest.mark.parametrize("op", [aten.gather.default, aten.index_select.default])
@pytest.mark.parametrize("how", ["take", "one_hot"])
def test_input_indices_follow_index_lowering_and_never_scatter(op, how):
    """Class labels that are inputs: a gather (no bounds compares) or a one-hot product; the
    gradient is a one-hot product either way, never a scatter with secret indices."""
    fn = registry.load()[op].bind(registry.LoweringOptions(how))
    v, i = randn(4, 6).numpy(), ints(6, 4, 1).numpy()
    if op == aten.index_select.default:
        i = i[:, 0]
    forward = primitives(lambda v, i: fn(v, 1, i), v, i)
    grad = primitives(jax.grad(lambda v, i: jnp.sum(fn(v, 1, i) ** 2)), v, i)
    compares = {"eq", "lt", "le", "gt", "ge", "ne"}
    if how == "take":
        assert "gather" in forward and not forward & compares
    else:
        assert "gather" not in forward and forward & compares == {"eq"}
    assert "eq" in grad and not any(p.startswith("scatter") for p in grad)


def test_as_strided_of_a_non_contiguous_tensor_is_refused():
    """Converted arrays are row-major: a strided view of a transposed tensor would read the
    wrong elements, so it is refused at conversion, naming the fix."""
    from ppml_torch.converters.fx import convert
    from ppml_torch.converters.fx.errors import UnsupportedOpError

    class Strided(torch.nn.Module):
        def forward(self, a):
            return torch.as_strided(a.t(), (2, 2), (1, 2))

    with pytest.raises(UnsupportedOpError, match=r"as_strided on a non-contiguous .*contiguous"):
        convert(Strided(), (torch.randn(3, 4),))
